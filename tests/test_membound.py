"""The few-channel kernel's row-borders variant (border columns with the rows side by
side, ``few_channel_core(row_borders=True)``) against "direct" and the float64 oracle,
for any thread count."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import fastconv as fc
from fastconv.cpu.conv import few_channel_core
from tests.reference import conv_nd


def _rows(x, w, b, pad, dil, groups):
    """conv2d through the row-borders variant (zero padding ``pad`` = (before, after))."""
    N, C, H, W = x.shape
    k = w.shape[-1]
    OH, OW = (H + sum(pad) - dil * (k - 1)), (W + sum(pad) - dil * (k - 1))
    out = np.empty((N, w.shape[0], 1, OH, OW), x.dtype)
    x5, w5 = x[:, :, None], w[:, :, None]
    core = few_channel_core(((0, 0), pad, pad), row_borders=True)
    core(x5, w5, b, out, (1, 1, 1), (1, dil, dil), groups)
    return out[:, :, 0]


@pytest.mark.parametrize("k, dil, dtype", [(3, 1, np.float32), (5, 2, np.float32),
                                           (3, 1, np.float64), (2, 1, np.float32)])
def test_depthwise_auto_matches_direct_and_reference(k, dil, dtype):
    rng = np.random.default_rng(k * 10 + dil)
    x = rng.standard_normal((2, 6, 23, 19)).astype(dtype)
    w = rng.standard_normal((6, 1, k, k)).astype(dtype)
    w[1, 0, 0, 0] = np.nan  # a NaN weight reaches every output of its channel, borders too
    b = rng.standard_normal(6).astype(dtype)
    kw = dict(padding="same", dilation=dil, groups=6)
    direct = fc.conv2d(x, w, b, algorithm="direct", **kw)
    auto = _rows(x, w, b, ((dil * (k - 1)) // 2, dil * (k - 1) - (dil * (k - 1)) // 2), dil, 6)
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
        one = _rows(x, w, np.zeros(16, np.float32), (1, 1), 1, 16)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = _rows(x, w, np.zeros(16, np.float32), (1, 1), 1, 16)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, two)
