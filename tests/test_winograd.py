"""The Winograd algorithm (``fastconv.cpu.winograd``): forward and input gradient against
the float64 NumPy oracle and PyTorch over Hypothesis shapes, the adjoint identity,
NaN/Inf propagation as in the direct kernel, bit-identity across thread counts, and the
errors raised where it does not apply.

float32 tolerances come from ``bench/winograd_error.py``: over 200 random layers of this
test domain (batch 1-2, 8-16 channels, 3-20 pixels) the worst max |error| / max |y| was
4.5-5.1e-6 with F(4x4) and 2.8-3.0e-7 with F(2x2) (two runs); the tests allow about
twice (F(4x4): 1e-5) and three times (F(2x2): 1e-6) that, relative to max |y|.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastconv as fc
from fastconv._algorithms import choose
from fastconv._plan import plan_conv
from fastconv.cpu import winograd
from tests.conftest import requires_torch
from tests.reference import conv_input_nd, conv_nd, padding_pairs

TOL = {4: 1e-5, 2: 1e-6}
MODES = ["zeros", "reflect", "replicate", "circular"]


def _close(got, want, tol):
    scale = float(np.max(np.abs(want))) or 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)


@st.composite
def layers(draw):
    """A small stride-1 3x3 layer: shapes, padding (any form), mode, groups, bias, dtype."""
    groups = draw(st.sampled_from([1, 1, 2]))
    Cg, Kg = draw(st.integers(8, 16)), draw(st.integers(8, 16))
    N = draw(st.integers(1, 2))
    padding = draw(st.sampled_from([0, 1, 2, (1, 0), ((0, 2), (1, 1)), "same", "valid"]))
    mode = draw(st.sampled_from(MODES))
    pairs = padding_pairs(padding, (3, 3), (1, 1))
    lo = [max(3 - b - a, max(b, a) + 1, 1) for b, a in pairs]
    H, W = (draw(st.integers(lo_i, 20)) for lo_i in lo)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, Cg * groups, H, W)).astype(dtype)
    w = rng.standard_normal((Kg * groups, Cg, 3, 3)).astype(dtype)
    b = rng.standard_normal(Kg * groups).astype(dtype) if draw(st.booleans()) else None
    return x, w, b, dict(padding=padding, padding_mode=mode, groups=groups), pairs


def _tol(dtype, out_hw):
    return 1e-12 if dtype == np.float64 else TOL[winograd.tile_size(*out_hw)]


@given(layers())
def test_forward_matches_oracle(layer):
    x, w, b, kw, pairs = layer
    got = fc.conv2d(x, w, b, algorithm="winograd", **kw)
    want = conv_nd(x, w, b, 1, pairs, 1, kw["groups"], kw["padding_mode"])
    assert got.dtype == x.dtype and got.shape == want.shape
    _close(got, want, _tol(x.dtype, got.shape[2:]))


@given(layers())
def test_input_gradient_matches_oracle(layer):
    x, w, _, kw, pairs = layer
    mode = kw["padding_mode"]
    out_hw = tuple(n + b + a - 2 for n, (b, a) in zip(x.shape[2:], pairs, strict=True))
    rng = np.random.default_rng(x.size)
    g = rng.standard_normal((x.shape[0], w.shape[0]) + out_hw).astype(x.dtype)
    got = fc.grad.conv2d_input(x.shape, w, g, algorithm="winograd", **kw)
    want = conv_input_nd(x.shape, w, g, 1, pairs, 1, kw["groups"], mode)
    assert got.dtype == x.dtype
    grid = x.shape[2:] if mode == "zeros" else tuple(
        n + b + a for n, (b, a) in zip(x.shape[2:], pairs, strict=True))
    _close(got, want, _tol(x.dtype, grid))


@requires_torch
@given(layers())
def test_forward_and_input_gradient_match_torch(layer):
    import torch

    x, w, b, kw, pairs = layer
    if kw["padding_mode"] != "zeros":
        x = np.pad(x, ((0, 0), (0, 0), *pairs), mode={"reflect": "reflect",
                   "replicate": "edge", "circular": "wrap"}[kw["padding_mode"]])
        pairs = [(0, 0), (0, 0)]
    (t, bt), (lft, r) = pairs
    tx = torch.nn.functional.pad(torch.from_numpy(x), (lft, r, t, bt))
    tw = torch.from_numpy(w)
    tb = None if b is None else torch.from_numpy(b)
    want = torch.nn.functional.conv2d(tx, tw, tb, groups=kw["groups"]).numpy()
    got = fc.conv2d(x, w, b, padding=pairs, groups=kw["groups"], algorithm="winograd")
    _close(got, want, _tol(x.dtype, got.shape[2:]) + 1e-6 * (x.dtype == np.float32))
    g = np.random.default_rng(1).standard_normal(want.shape).astype(x.dtype)
    gx = fc.grad.conv2d_input(x.shape, w, g, padding=pairs, groups=kw["groups"],
                              algorithm="winograd")
    tgx = torch.nn.grad.conv2d_input(tx.shape, tw, torch.from_numpy(g), groups=kw["groups"])
    tgx = tgx.numpy()[:, :, t : t + x.shape[2], lft : lft + x.shape[3]]
    _close(gx, tgx, _tol(x.dtype, x.shape[2:]) + 1e-6 * (x.dtype == np.float32))


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("shape", [(1, 16, 1, 1), (2, 8, 5, 9), (1, 12, 14, 14),
                                   (2, 16, 17, 6)])
def test_each_tile_size(m, shape, monkeypatch):
    """F(2x2) and F(4x4) forced, on sizes below, at and past a tile multiple."""
    monkeypatch.setattr(winograd, "tile_size", lambda oh, ow: m)
    rng = np.random.default_rng(m)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((8, shape[1], 3, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    got = fc.conv2d(x, w, b, padding=1, algorithm="winograd")
    _close(got, conv_nd(x, w, b, 1, 1), TOL[m])


@pytest.mark.parametrize("blocks", [1, 10**9], ids=["one-tile-blocks", "one-block"])
def test_block_split_does_not_change_values(blocks, monkeypatch):
    """Row blocks of one image and multi-image blocks compute the same tiles."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 16, 19, 13)).astype(np.float32)
    w = rng.standard_normal((8, 16, 3, 3)).astype(np.float32)
    base = fc.conv2d(x, w, padding=1, algorithm="winograd")
    monkeypatch.setattr(winograd, "target_tiles", lambda *a: blocks)
    got = fc.conv2d(x, w, padding=1, algorithm="winograd")
    _close(got, base, 1e-6)
    _close(got, conv_nd(x, w, None, 1, 1), TOL[4])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adjoint_identity(dtype):
    """vdot(conv(x, w), g) == vdot(x, conv_input(g)) with Winograd on both sides."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 16, 15, 18)).astype(dtype)
    w = rng.standard_normal((24, 8, 3, 3)).astype(dtype)
    y = fc.conv2d(x, w, padding=(1, 2), groups=2, algorithm="winograd")
    g = rng.standard_normal(y.shape).astype(dtype)
    gx = fc.grad.conv2d_input(x.shape, w, g, padding=(1, 2), groups=2, algorithm="winograd")
    lhs = np.vdot(y.astype(np.float64), g)
    rhs = np.vdot(x.astype(np.float64), gx)
    scale = np.abs(y).sum() * np.abs(g).max()
    assert abs(lhs - rhs) <= (1e-5 if dtype == np.float32 else 1e-12) * scale


@pytest.mark.parametrize("where", ["input", "weight", "grad"])
def test_nan_and_inf_propagate_as_direct(where):
    """Winograd mixes a tile's pixels, so non-finite values take the direct kernel: the
    NaN/Inf pattern equals direct's exactly (not a whole tile of NaN)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 16, 13, 11)).astype(np.float32)
    w = rng.standard_normal((8, 16, 3, 3)).astype(np.float32)
    g = rng.standard_normal((2, 8, 13, 11)).astype(np.float32)
    if where == "input":
        x[0, 3, 5, 5], x[1, 2, 0, 7] = np.nan, np.inf
    elif where == "weight":
        w[2, 1, 0, 0] = np.inf
    else:
        g[0, 1, 4, 4], g[1, 5, 12, 0] = np.nan, -np.inf
    if where != "grad":
        got = fc.conv2d(x, w, padding=1, algorithm="winograd")
        want = fc.conv2d(x, w, padding=1, algorithm="direct")
    else:
        got = fc.grad.conv2d_input(x.shape, w, g, padding=1, algorithm="winograd")
        want = fc.grad.conv2d_input(x.shape, w, g, padding=1, algorithm="direct")
    assert not np.isfinite(want).all()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got, want)


def test_small_images_run_staged(monkeypatch):
    """Images of fewer than FUSED_MIN_IMAGE_TILES tiles (W5's form: 8 images of 16
    tiles) run staged, never fused: the oracle's values, the same bits for any thread
    count."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((8, 16, 14, 14)).astype(np.float32)
    w = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    calls = []
    staged = winograd._run_staged
    monkeypatch.setattr(winograd, "_run_fused", lambda *a: calls.append("fused"))
    monkeypatch.setattr(winograd, "_run_staged", lambda *a: calls.append("staged") or staged(*a))
    threads = numba.get_num_threads()
    runs = []
    try:
        for t in sorted({1, 2, threads}):
            numba.set_num_threads(min(t, numba.config.NUMBA_NUM_THREADS))
            runs.append(fc.conv2d(x, w, b, padding=1, algorithm="winograd"))
    finally:
        numba.set_num_threads(threads)
    assert calls and set(calls) == {"staged"}
    for y in runs[1:]:
        np.testing.assert_array_equal(y, runs[0])
    _close(runs[0], conv_nd(x, w, b, 1, 1), TOL[4])


def test_bit_identical_for_any_thread_count():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 32, 30, 29)).astype(np.float32)
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    g = rng.standard_normal((4, 32, 30, 29)).astype(np.float32)
    threads = numba.get_num_threads()
    runs = []
    try:
        for t in sorted({1, 2, threads}):
            numba.set_num_threads(min(t, numba.config.NUMBA_NUM_THREADS))
            runs.append((fc.conv2d(x, w, padding=1, algorithm="winograd"),
                         fc.grad.conv2d_input(x.shape, w, g, padding=1, algorithm="winograd")))
    finally:
        numba.set_num_threads(threads)
    for y, gx in runs[1:]:
        np.testing.assert_array_equal(y, runs[0][0])
        np.testing.assert_array_equal(gx, runs[0][1])


def test_convolve_and_unbatched_and_conv3d():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((8, 9, 10)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    got = fc.convolve2d(x, w, padding=1, algorithm="winograd")
    _close(got, conv_nd(x[None], w[:, :, ::-1, ::-1], None, 1, 1)[0], TOL[4])
    got3 = fc.conv3d(x[None, :, None], w[:, :, None], padding=(0, 1, 1), algorithm="winograd")
    _close(got3[:, :, 0], conv_nd(x[None], w, None, 1, 1), TOL[4])


@pytest.mark.parametrize("call, match", [
    (lambda: fc.conv2d(np.ones((1, 8, 9, 9)), np.ones((8, 8, 3, 3)), stride=2,
                       algorithm="winograd"), r"conv2d: algorithm='winograd' needs stride 1"),
    (lambda: fc.conv2d(np.ones((1, 8, 9, 9)), np.ones((8, 8, 3, 3)), dilation=2,
                       algorithm="winograd"), r"needs dilation 1"),
    (lambda: fc.conv2d(np.ones((1, 8, 9, 9)), np.ones((8, 8, 5, 5)), algorithm="winograd"),
     r"needs a 2-D 3x3 kernel \(weight.shape=\(8, 8, 5, 5\)"),
    (lambda: fc.conv1d(np.ones((1, 8, 9)), np.ones((8, 8, 3)), algorithm="winograd"),
     r"conv1d: algorithm='winograd' needs a 2-D 3x3 kernel"),
    (lambda: fc.conv2d(np.ones((1, 8, 9, 9)), np.ones((8, 2, 3, 3)), groups=4,
                       algorithm="winograd"),
     r"needs at least 8 channels per group, got 2 input and 2 output"),
    (lambda: fc.grad.conv2d_input((1, 8, 9, 9), np.ones((8, 8, 3, 3)), np.ones((1, 8, 4, 4)),
                                  stride=2, algorithm="winograd"),
     r"conv2d_input: algorithm='winograd' needs stride 1, got stride \(2, 2\)"),
    (lambda: fc.grad.conv2d_weight(np.ones((1, 8, 9, 9)), (8, 8, 3, 3), np.ones((1, 8, 7, 7)),
                                   algorithm="winograd"),
     r"conv2d_weight: invalid algorithm 'winograd'"),
])
def test_where_it_does_not_apply_it_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _plan(x_shape, w_shape, **kw):
    kw = {"stride": 1, "padding": 1, "dilation": 1, "groups": 1, **kw}
    return plan_conv("conv2d", 2, np.zeros(x_shape, np.float32),
                     np.zeros(w_shape, np.float32), None, kw["stride"], kw["padding"],
                     kw["dilation"], kw["groups"], "zeros")


def test_auto_rule():
    """auto picks Winograd for W3/W5-like layers and never where it does not apply."""
    assert choose(_plan((8, 64, 56, 56), (64, 64, 3, 3))) == "winograd"
    assert choose(_plan((8, 256, 14, 14), (256, 256, 3, 3))) == "winograd"
    assert choose(_plan((8, 64, 56, 56), (64, 64, 3, 3), stride=2)) != "winograd"
    assert choose(_plan((8, 64, 56, 56), (64, 64, 3, 3), dilation=2)) != "winograd"
    assert choose(_plan((8, 64, 56, 56), (64, 8, 3, 3), groups=8)) != "winograd"
    assert choose(_plan((1, 16, 8, 8), (16, 16, 3, 3))) != "winograd"  # tiny
    assert choose(_plan((1, 256, 14, 14), (256, 256, 3, 3))) != "winograd"  # 16 tiles
    assert choose(_plan((5, 32, 28, 28), (32, 32, 3, 3))) != "winograd"  # staged, few channels
    assert choose(_plan((8, 16, 56, 56), (16, 16, 3, 3))) == "winograd"


@pytest.mark.parametrize("c", [16, 9], ids=["64-bit-words", "odd-size-32-bit-words"])
def test_weight_cache_sees_in_place_updates(c):
    """Transformed weights are reused only while the weights are bit-identical (compared
    as 64-bit words, or 32-bit ones where the size is odd: 9 x 9 x 3 x 3 float32)."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, c, 12, 12)).astype(np.float32)
    w = rng.standard_normal((c, c, 3, 3)).astype(np.float32)
    fc.conv2d(x, w, padding=1, algorithm="winograd")
    w[3, 2, 1, 1] += 1.0  # an optimiser step, in place
    w[0, 0, 0, 0] = -0.0
    got = fc.conv2d(x, w, padding=1, algorithm="winograd")
    _close(got, conv_nd(x, w, None, 1, 1), TOL[4])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_cache_sees_a_change_past_the_first_chunk_and_a_nan(dtype):
    """The cache compares the weights chunk by chunk (4096 words): a change in the last
    element is seen, and a NaN weight after a cached finite one of the same shape still
    takes the direct kernel (the finiteness check runs on every miss)."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 64, 8, 8)).astype(dtype)
    w = rng.standard_normal((64, 64, 3, 3)).astype(dtype)  # 36,864 elements
    gx = rng.standard_normal((1, 64, 8, 8)).astype(dtype)
    for _ in range(2):  # the second pass hits the cache
        fc.conv2d(x, w, padding=1, algorithm="winograd")
        fc.grad.conv2d_input(x.shape, w, gx, padding=1, algorithm="winograd")
    w[-1, -1, -1, -1] += 3.0
    got = fc.conv2d(x, w, padding=1, algorithm="winograd")
    _close(got, conv_nd(x, w, None, 1, 1), TOL[4] if dtype == np.float32 else 1e-12)
    w[-1, -1, -1, -1] = np.nan
    for got, want in (
            (fc.conv2d(x, w, padding=1, algorithm="winograd"),
             fc.conv2d(x, w, padding=1, algorithm="direct")),
            (fc.grad.conv2d_input(x.shape, w, gx, padding=1, algorithm="winograd"),
             fc.grad.conv2d_input(x.shape, w, gx, padding=1, algorithm="direct"))):
        np.testing.assert_array_equal(got, want)


def test_blas_limit_held_once_per_call_and_restored():
    """A Winograd call holds the single-threaded-BLAS limit across its parallel phases
    (nested on the calling thread: taken once) and every product runs on one BLAS thread
    (checked as each parallel region starts); afterwards each BLAS has its own setting
    back, and the results equal the 1-thread call's bit for bit (staged and fused forms,
    forward and input gradient)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"}

    from fastconv.cpu import blas

    blas.available()  # loads every BLAS a call touches
    rng = np.random.default_rng(10)
    before = blas_threads()
    seen = []
    regions = {name: getattr(winograd, name) for name in ("fused_blocks", "staged_stage")}

    def spy(name):
        def run(*args):
            seen.append((name, max(blas_threads().values(), default=1)))
            return regions[name](*args)
        return run

    # staged, fused; 16 channels: products on the BLAS (whole 32-lane panels run on
    # wino_gemm, which takes no limit)
    for shape in ((4, 16, 14, 14), (1, 16, 40, 36)):
        x = rng.standard_normal(shape).astype(np.float32)
        w = rng.standard_normal((shape[1], shape[1], 3, 3)).astype(np.float32)
        g = rng.standard_normal(shape).astype(np.float32)
        numba.set_num_threads(1)
        try:
            ref = (fc.conv2d(x, w, padding=1, algorithm="winograd"),
                   fc.grad.conv2d_input(shape, w, g, padding=1, algorithm="winograd"))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        for name in regions:
            setattr(winograd, name, spy(name))
        try:
            got = (fc.conv2d(x, w, padding=1, algorithm="winograd"),
                   fc.grad.conv2d_input(shape, w, g, padding=1, algorithm="winograd"))
        finally:
            for name, f in regions.items():
                setattr(winograd, name, f)
        for a, b in zip(got, ref, strict=True):
            np.testing.assert_array_equal(a, b)
    assert blas_threads() == before
    assert {name for name, _ in seen} == set(regions)
    assert {threads for _, threads in seen} == {1}
