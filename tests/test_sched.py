"""fastconv.cpu.sched.claim: every work item claimed once, by whichever thread."""

import numba
import numpy as np
import pytest
from numba import get_thread_id, njit, prange

from fastconv.cpu.sched import claim


@njit(parallel=True, cache=True)
def _claim_all(n, nt, hits, who, counter):
    for _ in prange(nt):
        i = claim(counter)
        while i < n:
            hits[i] += 1
            who[i] = get_thread_id()
            i = claim(counter)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [0, 1, 7, 1000])
def test_claim_gives_each_item_once(threads, n):
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"needs {threads} Numba threads")
    numba.set_num_threads(threads)
    try:
        hits, who = np.zeros(n, np.int64), np.full(n, -1, np.int64)
        counter = np.zeros(1, np.int64)
        _claim_all(n, threads, hits, who, counter)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert (hits == 1).all()
    assert ((who >= 0) & (who < threads)).all()
    assert counter[0] == n + threads  # each thread's last claim found nothing left


def test_claim_rejects_other_counters():
    with pytest.raises(numba.TypingError):
        njit(lambda c: claim(c))(np.zeros(1, np.int32))
