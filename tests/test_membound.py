"""The memory-bound kernels' variants: the few-channel kernel under "auto" (border
columns with the rows side by side) against "direct" and the float64 oracle, for any
thread count."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import fastconv as fc
from tests.reference import conv_nd


@pytest.mark.parametrize("k, dil, dtype", [(3, 1, np.float32), (5, 2, np.float32),
                                           (3, 1, np.float64), (2, 1, np.float32)])
def test_depthwise_auto_matches_direct_and_reference(k, dil, dtype):
    rng = np.random.default_rng(k * 10 + dil)
    x = rng.standard_normal((2, 6, 23, 19)).astype(dtype)
    w = rng.standard_normal((6, 1, k, k)).astype(dtype)
    w[1, 0, 0, 0] = np.nan  # a NaN weight reaches every output of its channel, borders too
    b = rng.standard_normal(6).astype(dtype)
    kw = dict(padding="same", dilation=dil, groups=6)
    auto = fc.conv2d(x, w, b, **kw)
    direct = fc.conv2d(x, w, b, algorithm="direct", **kw)
    pairs = [((dil * (k - 1)) // 2, dil * (k - 1) - (dil * (k - 1)) // 2)] * 2
    want = conv_nd(x, w, b, 1, pairs, dil, 6)
    assert np.isnan(auto[:, 1]).all() and np.isnan(direct[:, 1]).all()
    ok = np.arange(6) != 1
    tol = (1e-5 if dtype == np.float32 else 1e-13) * (1 + np.abs(want[:, ok]).max())
    np.testing.assert_allclose(auto[:, ok], want[:, ok], rtol=0, atol=tol)
    np.testing.assert_allclose(auto[:, ok], direct[:, ok], rtol=0, atol=tol)


def test_depthwise_auto_bit_identical_for_any_thread_count():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 16, 30, 30)).astype(np.float32)
    w = rng.standard_normal((16, 1, 3, 3)).astype(np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = fc.conv2d(x, w, padding=1, groups=16)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = fc.conv2d(x, w, padding=1, groups=16)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, two)
