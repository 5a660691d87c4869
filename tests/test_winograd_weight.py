"""The Winograd weight gradient (``fastconv.cpu.winograd_weight``): against the float64
NumPy oracle and PyTorch over Hypothesis shapes, both forms (fused, staged), the adjoint
identity, NaN/Inf as in the direct kernel, bit-identity across runs and thread counts,
and the rule that sends "auto" to it.

float32 tolerances: over 200 random layers of this test domain (batch 1-2, 8-16
channels, 3-20 pixels, padding 0-2) the worst max |error| / max |dW| was 4.5e-6 with
F(3x3, 4x4) and 3.0e-7 with F(3x3, 2x2) (as the forward's F(4x4) / F(2x2)); the tests
allow about twice and three times that (the forward's ``TOL``).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv as fc
from fastconv import _algorithms
from fastconv import cpu as cgrad  # the backend contract: correlate_weight(algorithm=)
from fastconv.cpu import winograd_weight as ww
from tests.conftest import requires_torch
from tests.reference import conv_weight_nd, pad_nd

TOL = {4: 1e-5, 2: 1e-6}
ONES = np.array([1, 1, 1])


def _close(got, want, tol):
    scale = float(np.max(np.abs(want))) or 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)


def _winograd(x, w_shape, g, pairs, groups, mode="zeros"):
    """The weight gradient through ``correlate_weight(algorithm="winograd")``."""
    xp = pad_nd(x, pairs, mode).astype(x.dtype)[:, :, None]
    gw = np.full(tuple(w_shape[:2]) + (1, 3, 3), np.nan, dtype=x.dtype)
    cgrad.correlate_weight(xp, g[:, :, None], gw, ONES, ONES, groups, algorithm="winograd")
    return gw[:, :, 0]


@st.composite
def layers(draw):
    groups = draw(st.sampled_from([1, 1, 2]))
    Cg, Kg = draw(st.integers(8, 16)), draw(st.integers(8, 16))
    N = draw(st.integers(1, 2))
    p = draw(st.integers(0, 2))
    H, W = draw(st.integers(max(1, 3 - 2 * p), 20)), draw(st.integers(max(1, 3 - 2 * p), 20))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    mode = draw(st.sampled_from(["zeros", "reflect"])) if p < min(H, W) else "zeros"
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = rng.standard_normal((N, Cg * groups, H, W)).astype(dtype)
    OH, OW = H + 2 * p - 2, W + 2 * p - 2
    g = rng.standard_normal((N, Kg * groups, OH, OW)).astype(dtype)
    return x, (Kg * groups, Cg, 3, 3), g, [(p, p), (p, p)], groups, mode


def _tol(dtype, g):
    return 1e-12 if dtype == np.float64 else TOL[ww.tile_size(*g.shape[2:])]


@settings(max_examples=25, deadline=None)
@given(layers(), st.sampled_from(["fused", "staged", "stages"]))
def test_matches_oracle_in_every_form(layer, form):
    x, wsh, g, pairs, groups, mode = layer
    with pytest.MonkeyPatch.context() as mp:
        if form != "fused":
            mp.setattr(ww, "FUSED_MAX_ACC_BYTES", 0)
        if form == "stages":  # several stages, and stages of tile rows of one image
            mp.setattr(ww, "STAGED_TILES", 4)
        got = _winograd(x, wsh, g, pairs, groups, mode)
    want = conv_weight_nd(x, wsh, g, 1, pairs, 1, groups, mode)
    _close(got, want, _tol(x.dtype, g))


@requires_torch
def test_auto_runs_it_and_matches_torch(monkeypatch):
    import torch

    calls = []
    real = ww.correlate_weight
    monkeypatch.setattr(ww, "correlate_weight", lambda *a: calls.append(1) or real(*a))

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 32, 48, 48), dtype=np.float32)
    g = rng.standard_normal((2, 32, 48, 48), dtype=np.float32)
    assert _algorithms.winograd_weight_wins(2, (32, 32, 1, 3, 3), (1, 48, 48), (1, 1, 1),
                                      (1, 1, 1), 1)
    got = fc.grad.conv2d_weight(x, (32, 32, 3, 3), g, padding=1)
    want = torch.nn.grad.conv2d_weight(torch.from_numpy(x), (32, 32, 3, 3),
                                       torch.from_numpy(g), padding=1).numpy()
    assert calls  # "auto" ran the Winograd weight gradient
    _close(got, want, TOL[4] + 1e-6)
    direct = fc.grad.conv2d_weight(x.astype(np.float64), (32, 32, 3, 3), g.astype(np.float64),
                                   padding=1, algorithm="direct")
    _close(got, direct, TOL[4])


def test_rule():
    wins = _algorithms.winograd_weight_wins
    assert wins(8, (64, 64, 1, 3, 3), (1, 56, 56), (1, 1, 1), (1, 1, 1), 1)  # B3
    assert wins(8, (256, 256, 1, 3, 3), (1, 14, 14), (1, 1, 1), (1, 1, 1), 1)  # B5
    assert not wins(8, (64, 64, 1, 3, 3), (1, 28, 28), (2, 2, 2), (1, 1, 1), 1)  # stride
    assert not wins(8, (64, 64, 1, 3, 3), (1, 54, 54), (1, 1, 1), (1, 2, 2), 1)  # dilation
    assert not wins(8, (64, 64, 1, 5, 5), (1, 54, 54), (1, 1, 1), (1, 1, 1), 1)  # 5x5
    assert not wins(8, (64, 8, 1, 3, 3), (1, 56, 56), (1, 1, 1), (1, 1, 1), 1)  # 8 channels
    assert not wins(1, (16, 16, 1, 3, 3), (1, 8, 8), (1, 1, 1), (1, 1, 1), 1)  # tiny


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adjoint_identity(dtype):
    """<conv(x, w), g> == <w, dW(x, g)>."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 12, 11, 13)).astype(dtype)
    w = rng.standard_normal((10, 12, 3, 3)).astype(dtype)
    g = rng.standard_normal((2, 10, 11, 13)).astype(dtype)
    y = fc.conv2d(x, w, padding=1, algorithm="direct").astype(np.float64)
    dw = _winograd(x, w.shape, g, [(1, 1)] * 2, 1).astype(np.float64)
    lhs, rhs = np.vdot(y, g), np.vdot(w.astype(np.float64), dw)
    assert abs(lhs - rhs) <= (1e-12 if dtype == np.float64 else 1e-5) * np.abs(y).sum()


@pytest.mark.parametrize("where", ["x_nan", "x_inf", "g_inf", "g_nan"])
def test_nan_and_inf_as_direct(where):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 16, 12, 12), dtype=np.float32)
    g = rng.standard_normal((2, 16, 12, 12), dtype=np.float32)
    arr, val = (x if where[0] == "x" else g), (np.inf if "inf" in where else np.nan)
    arr[1, 3, 5, 6] = val
    got = _winograd(x, (16, 16, 3, 3), g, [(1, 1)] * 2, 1)
    want = fc.grad.conv2d_weight(x, (16, 16, 3, 3), g, padding=1, algorithm="direct")
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", [((3, 16, 30, 26), 24, 1, "fused"),
                                   ((8, 16, 40, 40), 16, 2, "fused"),
                                   ((2, 32, 10, 10), 32, 2, "staged"),
                                   ((2, 24, 21, 19), 16, 1, "stages")])
def test_bit_identical_for_any_thread_count(shape, monkeypatch):
    """Each form, with more iterations than threads (parts of several blocks, several
    stages whose products accumulate), runs the same bits on 1 and 2 threads."""
    (N, C, H, W), K, groups, form = shape
    if form != "fused":
        monkeypatch.setattr(ww, "FUSED_MAX_ACC_BYTES", 0)
    if form == "stages":
        monkeypatch.setattr(ww, "STAGED_TILES", 12)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((N, C, H, W), dtype=np.float32)
    g = rng.standard_normal((N, K, H, W), dtype=np.float32)
    wsh = (K, C // groups, 3, 3)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        a = _winograd(x, wsh, g, [(1, 1)] * 2, groups)
        b = _winograd(x, wsh, g, [(1, 1)] * 2, groups)
        numba.set_num_threads(1)
        c = _winograd(x, wsh, g, [(1, 1)] * 2, groups)
    finally:
        numba.set_num_threads(before)
    assert a.tobytes() == b.tobytes() == c.tobytes()
    _close(a, conv_weight_nd(x, wsh, g, 1, [(1, 1)] * 2, 1, groups), TOL[4])


def test_other_shapes_take_the_old_paths():
    """"winograd" asked where it does not apply (stride 2, 5x5) runs gemm/direct."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 8, 9, 9))
    g = rng.standard_normal((1, 8, 4, 4))
    gw = np.empty((8, 8, 1, 3, 3))
    cgrad.correlate_weight(x[:, :, None], g[:, :, None], gw, np.array([1, 2, 2]), ONES, 1,
                           algorithm="winograd")
    _close(gw[:, :, 0], conv_weight_nd(x, (8, 8, 3, 3), g, 2), 1e-12)


@pytest.mark.parametrize(("padding", "form"), [(0, "fused"), ((2, 1), "fused"),
                                               ((0, 2), "staged"), ("same", "staged")])
def test_zero_padding_read_in_place(padding, form, monkeypatch):
    """The public weight gradient passes the unpadded input and its zero padding; the
    Winograd path reads it in place (the others pad first)."""
    if form == "staged":
        monkeypatch.setattr(ww, "FUSED_MAX_ACC_BYTES", 0)
    calls = []
    real = ww.correlate_weight
    monkeypatch.setattr(ww, "correlate_weight", lambda *a: calls.append(a[-1]) or real(*a))
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 32, 40, 38), dtype=np.float32)
    wsh = (32, 32, 3, 3)
    y = fc.conv2d(x, np.zeros(wsh, np.float32), padding=padding)
    g = rng.standard_normal(y.shape, dtype=np.float32)
    got = fc.grad.conv2d_weight(x, wsh, g, padding=padding)
    pt, pl = (1, 1) if padding == "same" else np.broadcast_to(padding, 2)
    assert calls == [(pt, pl)]
    want = fc.grad.conv2d_weight(x.astype(np.float64), wsh, g.astype(np.float64),
                                 padding=padding, algorithm="direct")
    _close(got, want, TOL[4])


def test_overflow_in_the_transforms_runs_direct():
    """Finite inputs whose transforms overflow (a non-finite result) take the direct
    kernel, so the result is the direct one bit for bit."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 16, 10, 10), dtype=np.float32)
    g = rng.standard_normal((1, 16, 10, 10), dtype=np.float32)
    x[0, 2, 4, 4] = 3e38
    got = _winograd(x, (16, 16, 3, 3), g, [(1, 1)] * 2, 1)
    want = fc.grad.conv2d_weight(x, (16, 16, 3, 3), g, padding=1, algorithm="direct")
    np.testing.assert_array_equal(got, want)
