"""No state change outlives a call: the BLAS thread limit (threadpoolctl) is held only
while products run, Numba's thread count is never set, and calls from several Python
threads at once give the serial results bit for bit."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest

import fastconv as fc


def _blas_info() -> list:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    return sorted((i["filepath"], i["num_threads"]) for i in threadpoolctl.threadpool_info())


def _calls():
    """GEMM-backed calls of every kind (forward shifted and im2col, Winograd, both
    gradients) on small seeded shapes."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 32, 10, 10)).astype(np.float32)
    w = rng.standard_normal((16, 32, 3, 3)).astype(np.float32)
    g = rng.standard_normal((2, 16, 10, 10)).astype(np.float32)
    return [
        lambda: fc.conv2d(x, w, padding=1, algorithm="gemm"),
        lambda: fc.conv2d(x, w, stride=2, padding=1, algorithm="gemm"),
        lambda: fc.conv2d(x, w, padding=1, algorithm="winograd"),
        lambda: fc.grad.conv2d_weight(x, w.shape, g, padding=1, algorithm="gemm"),
        lambda: fc.grad.conv2d_input(x.shape, w, g, padding=1, algorithm="gemm"),
    ]


def test_concurrent_calls_leave_blas_and_numba_threads_as_they_were():
    calls = _calls()
    want = [f() for f in calls]
    before, nthreads = _blas_info(), numba.get_num_threads()
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: calls[i % len(calls)](), range(4 * len(calls))))
    for i, a in enumerate(got):
        np.testing.assert_array_equal(a, want[i % len(calls)])
    assert _blas_info() == before
    assert numba.get_num_threads() == nthreads


def test_learn_kernel_never_sets_numba_threads(monkeypatch):
    """Tiny problems used to run on one thread by setting Numba's thread count; now the
    count is only read (set_num_threads would raise here), and unchanged afterwards."""
    nthreads = numba.get_num_threads()

    def refuse(n):
        raise AssertionError(f"numba.set_num_threads({n}) called")

    monkeypatch.setattr(numba, "set_num_threads", refuse)
    X = np.ones((6, 8))
    X[:, 2:6] = 0
    Y = np.zeros((6, 7))
    Y[:, 1], Y[:, 5] = 1, -1
    res = fc.learn_kernel(X, Y, (1, 2), seed=0)
    np.testing.assert_allclose(res.kernel, [[1.0, -1.0]], atol=0.1)
    big = np.random.default_rng(0).standard_normal((2, 3, 24, 24))
    fc.learn_kernel(big, big[:, :2, 1:-1, 1:-1], 3, epochs=2, seed=0)
    assert numba.get_num_threads() == nthreads
