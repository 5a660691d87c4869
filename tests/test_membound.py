"""The few-channel kernel reading zero padding in place (``few_channel_core(pads)``)
against "direct" and the float64 oracle, for any thread count."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import fastconv as fc
from fastconv.cpu.conv import few_channel_core
from tests.reference import conv_nd


def _rows(x, w, b, pad, dil, groups):
    """conv2d through the few-channel kernel, zero padding ``pad`` = (before, after) read
    in place."""
    N, C, H, W = x.shape
    k = w.shape[-1]
    OH, OW = (H + sum(pad) - dil * (k - 1)), (W + sum(pad) - dil * (k - 1))
    out = np.empty((N, w.shape[0], 1, OH, OW), x.dtype)
    x5, w5 = x[:, :, None], w[:, :, None]
    core = few_channel_core(((0, 0), pad, pad))
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


def _same_bits(a, b):
    """Equal values, NaN where NaN, and the same sign of every zero."""
    return np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b))


def _specials(rng, x, w):
    """NaN, Inf and -0.0 inputs, and an Inf weight on channel 0 (Inf * 0 in the padding
    is NaN, as on a padded copy)."""
    x.flat[rng.integers(x.size, size=3)] = [np.nan, np.inf, -np.inf]
    x[rng.random(x.shape) < 0.2] = -0.0
    w[0].flat[rng.integers(w[0].size)] = np.inf


@pytest.mark.parametrize("kh, kw, dil, stride, Cg, nsp3, extra", [
    (3, 3, 1, 1, 1, False, 0),   # the fused 3x3 pass on flat runs (W7's depthwise)
    (3, 3, 1, 1, 1, False, 1),   # ... on single rows (output narrower than the input)
    (5, 5, 1, 1, 1, False, 0),   # fused 3 + 2 rows of 5 taps (W2's single channel)
    (5, 5, 1, 1, 1, False, -1),  # ... on single rows
    (4, 5, 1, 1, 2, False, 0),   # 2 + 2 rows of 5, two input channels per group
    (7, 3, 1, 1, 1, False, 0),   # 3 + 3 + 1 rows
    (3, 3, 2, 1, 1, False, 0),   # dilation: one-row passes
    (3, 3, 1, 2, 1, False, 1),   # stride: per-row path, border rows side by side
    (2, 7, 1, 1, 1, False, 0),   # 5 + 2 taps a row
    (3, 3, 1, 1, 1, True, 0),    # 3-D: depth taps in the padding fold into the base
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_few_channel_in_place_padding_bit_identical_to_padded_copy(kh, kw, dil, stride, Cg,
                                                                   nsp3, extra, dtype):
    """Zero padding read in place (border columns rows side by side, fused tap passes)
    gives the same bits as the same kernel on a zero-padded copy (which always runs the
    row-by-row path, one kernel row a pass): what Dask's blocks and the in-memory call
    rely on. ``extra``: columns of padding beyond "same" (-1: one fewer)."""
    rng = np.random.default_rng(kh * 100 + kw * 10 + dil + stride + extra)
    groups, kd = 3, (3 if nsp3 else 1)
    x = rng.standard_normal((2, Cg * groups, 5 if nsp3 else 1, 29, 37)).astype(dtype)
    w = rng.standard_normal((groups, Cg, kd, kh, kw)).astype(dtype)
    b = rng.standard_normal(groups).astype(dtype)
    _specials(rng, x, w)
    pads = [((kd - 1) // 2, kd // 2), (dil * (kh - 1) // 2, dil * (kh - 1) - dil * (kh - 1) // 2),
            (dil * (kw - 1) // 2 + extra, dil * (kw - 1) - dil * (kw - 1) // 2)]
    shape = [(n + p0 + p1 - d * (k - 1) - 1) // s + 1 for n, (p0, p1), k, d, s in
             zip(x.shape[2:], pads, (kd, kh, kw), (1, dil, dil), (1, stride, stride), strict=True)]
    st, dl = (1, stride, stride), (1, dil, dil)
    inplace = np.full((2, groups, *shape), 7, dtype)
    few_channel_core(pads)(x, w, b, inplace, st, dl, groups)
    copied = np.full_like(inplace, 7)
    few_channel_core(None)(np.pad(x, [(0, 0), (0, 0)] + pads), w, b, copied, st, dl, groups)
    assert _same_bits(inplace, copied)
    assert np.isnan(inplace[:, 0]).any() and not np.isnan(inplace[:, 1:]).all()
    with np.errstate(invalid="ignore"):  # Inf * 0 in the oracle's sums
        want = conv_nd(x, w, b, st, pads, dl, groups)
    assert np.array_equal(np.isnan(inplace), np.isnan(want))
    ok = np.isfinite(want)
    tol = (1e-4 if dtype == np.float32 else 1e-12) * (1 + np.abs(want[ok]).max())
    np.testing.assert_allclose(inplace[ok], want[ok], rtol=0, atol=tol)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("case", ["depthwise3x3", "single5x5"])
def test_few_channel_direct_every_padding_mode_against_reference(mode, case):
    """The few-channel kernel (large enough not to run serially) against the float64
    oracle for every padding mode, NaN/Inf propagating to exactly the oracle's outputs."""
    rng = np.random.default_rng(len(mode) + len(case))
    if case == "depthwise3x3":
        x = rng.standard_normal((2, 8, 33, 41)).astype(np.float32)
        w = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
        groups, pad = 8, 1
    else:
        x = rng.standard_normal((1, 1, 64, 71)).astype(np.float32)
        w = rng.standard_normal((1, 1, 5, 5)).astype(np.float32)
        groups, pad = 1, 2
    x[0, 0, 3, 0] = np.nan
    x[-1, -1, -1, 5] = np.inf
    got = fc.conv2d(x, w, padding=pad, groups=groups, padding_mode=mode, algorithm="direct")
    with np.errstate(invalid="ignore"):  # Inf - Inf in the oracle's sums
        want = conv_nd(x, w, None, 1, pad, 1, groups, padding_mode=mode)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got).any()
    ok = np.isfinite(want)
    assert np.array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_allclose(got[ok], want[ok], rtol=0, atol=1e-4 * (1 + np.abs(want[ok]).max()))


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("H, W", [(8, 9), (9, 9), (6, 530), (7, 1100), (12, 13)])
def test_depthwise_row_pairs_bit_identical_to_padded_copy(H, W, k):
    """The two-rows-a-pass interior of one 3x3 or 5x5 plane (even and odd row counts,
    rows wider than COLUMN_CHUNK) gives the same bits as the padded copy's one-row
    passes: each output keeps the fma chain of ``_rows3_taps3`` / ``_rows3_taps5`` +
    ``_rows2_taps5``."""
    rng = np.random.default_rng(H * 1000 + W + k)
    x = rng.standard_normal((2, 3, 1, H, W)).astype(np.float32)
    w = rng.standard_normal((3, 1, 1, k, k)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    _specials(rng, x, w)
    pads = [(0, 0), (k // 2, k // 2), (k // 2, k // 2)]
    inplace = np.full((2, 3, 1, H, W), 7, np.float32)
    few_channel_core(pads)(x, w, b, inplace, (1, 1, 1), (1, 1, 1), 3)
    copied = np.full_like(inplace, 7)
    few_channel_core(None)(np.pad(x, [(0, 0), (0, 0)] + pads), w, b, copied, (1, 1, 1),
                           (1, 1, 1), 3)
    assert _same_bits(inplace, copied)
