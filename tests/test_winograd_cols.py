"""F(4, 5) along W (``fastconv.cpu.winograd_w.correlate_cols``), the GEMM algorithm's form
for 1 x 1 x 5 kernels (1-D layers, C1): against the float64 NumPy oracle and PyTorch over
Hypothesis shapes, every padding mode, the transform matrices' defining identity,
bit-identity across thread counts and NaN/Inf propagation as in the direct kernel.

float32 tolerance: measured max |error| / max |y| <= 1.1e-6 on 16-64 channels (random
normal data, C1's shape: 1.1e-6); the tests allow 4e-6, as for F(4, 3) along W.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastconv as fc
from fastconv.cpu import winograd_w
from tests.conftest import requires_torch
from tests.reference import conv_nd

MODES = ["zeros", "reflect", "replicate", "circular"]


def _close(got, want, dtype):
    tol = 1e-12 if dtype == np.float64 else 4e-6
    scale = float(np.max(np.abs(want))) or 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)


@pytest.fixture
def spy(monkeypatch):
    """Counts the calls of correlate_cols (so a test knows the F(4, 5) path ran)."""
    calls = []
    real = winograd_w.correlate_cols

    def counted(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(winograd_w, "correlate_cols", counted)
    return calls


@st.composite
def layers(draw):
    """A small 1-D layer with 5 taps (or a 2-D one with a 1 x 5 kernel)."""
    groups = draw(st.sampled_from([1, 1, 2]))
    Cg, Kg = draw(st.integers(16, 20)), draw(st.integers(8, 12))
    N = draw(st.integers(1, 2))
    mode = draw(st.sampled_from(MODES))
    pad = draw(st.integers(0, 4))
    W = draw(st.integers(max(5 - 2 * pad, pad + 1, 1), 300))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = rng.standard_normal((N, Cg * groups, W)).astype(dtype)
    w = rng.standard_normal((Kg * groups, Cg, 5)).astype(dtype)
    b = rng.standard_normal(Kg * groups).astype(dtype) if draw(st.booleans()) else None
    return x, w, b, dict(padding=pad, padding_mode=mode, groups=groups)


def _cols(x, w, b, padding, padding_mode, groups):
    """correlate_cols itself on a 1-D layer (fc.conv1d sends small layers elsewhere)."""
    x5, w5 = x[:, :, None, None, :], w[:, :, None, None, :]
    assert winograd_w.applies_cols(w5.shape, (1, 1, 1), (1, 1, 1), groups)
    out = np.empty(x.shape[:1] + (w.shape[0], 1, 1, x.shape[2] + 2 * padding - 4), x.dtype)
    bias = np.zeros(w.shape[0], x.dtype) if b is None else b
    pads = ((0, 0), (0, 0), (padding, padding))
    winograd_w.correlate_cols(x5, w5, bias, out, (1, 1, 1), (1, 1, 1), groups, pads,
                              padding_mode)
    return out[:, :, 0, 0]


@given(layers())
def test_matches_oracle(layer):
    x, w, b, kw = layer
    got = _cols(x, w, b, **kw)
    want = conv_nd(x, w, b, 1, [(kw["padding"], kw["padding"])], 1, kw["groups"],
                   kw["padding_mode"])
    assert got.dtype == x.dtype and got.shape == want.shape
    _close(got, want, x.dtype)


@requires_torch
@given(layers())
def test_matches_torch(layer):
    import torch

    x, w, b, kw = layer
    kw = dict(kw)
    mode = kw.pop("padding_mode")
    layer = torch.nn.Conv1d(x.shape[1], w.shape[0], 5, padding_mode=mode,
                            bias=b is not None, dtype=torch.from_numpy(x).dtype, **kw)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
        if b is not None:
            layer.bias.copy_(torch.from_numpy(b))
        want = layer(torch.from_numpy(x)).numpy()
    got = _cols(x, w, b, padding_mode=mode, **kw)
    _close(got, want, x.dtype)


def test_runs_the_f45_path_and_2d_row_kernels(spy):
    """conv1d and a 2-D 1 x 5 kernel (rows strided in H) both take correlate_cols."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 16, 7, 1100)).astype(np.float32)
    w = rng.standard_normal((8, 16, 1, 5)).astype(np.float32)
    got = fc.conv2d(x, w, stride=(2, 1), padding=(1, 2), padding_mode="reflect",
                    algorithm="gemm")
    want = conv_nd(x, w, None, (2, 1), [(1, 1), (2, 2)], 1, 1, "reflect")
    _close(got, want, np.float32)
    fc.conv1d(x[:, :, 0], w[:, :, 0], padding=2, algorithm="gemm")
    assert len(spy) == 2


def test_transforms_match_the_matrices():
    """The hand-written transforms equal A^T [(G w) * (B^T d)] of cook_toom's matrices,
    and those compute the correlation exactly in float64."""
    AT, G, BT = winograd_w.cook_toom(4, 5, (0, 1, -1, 2, -2, 0.5, -0.5))
    rng = np.random.default_rng(4)
    d, g = rng.standard_normal(8), rng.standard_normal(5)
    np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), np.correlate(d, g, "valid"),
                               rtol=0, atol=1e-12)
    x = rng.standard_normal((1, 1, 1, 1, 8))
    V, q = np.empty((8, 1, 1)), np.empty((4, 2))
    winograd_w.transform_cols(x, 0, 0, np.zeros(3, np.int64), 1, 1, 0, 0, 0, 0, q, V)
    np.testing.assert_allclose(V[:, 0, 0], BT @ x.ravel(), rtol=0, atol=1e-12)
    M = rng.standard_normal((8, 1, 1))
    out = np.empty((1, 1, 1, 1, 4))
    winograd_w.store_cols(M, np.zeros(1), out, 0, 0, 0, 0, 0, np.empty((4, 1)), np.empty(1))
    np.testing.assert_allclose(out.ravel(), AT @ M.ravel(), rtol=0, atol=1e-12)


def test_chunked_tiles_and_bit_identical_for_any_thread_count(monkeypatch, spy):
    """Several tile chunks a row (a small COL_TILES) compute the same values, and the
    result does not depend on the thread count."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 16, 1250)).astype(np.float32)
    w = rng.standard_normal((8, 16, 5)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    want = conv_nd(x, w, b, 1, 2, padding_mode="circular")
    monkeypatch.setattr(winograd_w, "COL_TILES", 100)
    n = numba.get_num_threads()
    runs = []
    for t in sorted({1, n}):
        numba.set_num_threads(t)
        try:
            runs += [fc.conv1d(x, w, b, padding=2, padding_mode="circular", algorithm="gemm")
                     for _ in range(2)]
        finally:
            numba.set_num_threads(n)
    _close(runs[0], want, np.float32)
    for r in runs[1:]:
        assert np.array_equal(r, runs[0])
    assert spy


@pytest.mark.parametrize("where", ["input", "weight"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_propagate_as_in_direct(where, bad, spy):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 16, 1030)).astype(np.float32)
    w = rng.standard_normal((8, 16, 5)).astype(np.float32)
    (x if where == "input" else w)[(0, 3, 17) if where == "input" else (2, 3, 1)] = bad
    got = fc.conv1d(x, w, padding=2, algorithm="gemm")
    want = fc.conv1d(x, w, padding=2, algorithm="direct")
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=0, atol=4e-6 * np.abs(want[fin]).max())
    assert spy


def test_applies_only_to_five_column_rows():
    assert winograd_w.applies_cols((64, 64, 1, 1, 5), (1, 1, 1), (1, 1, 1), 1)
    assert winograd_w.applies_cols((64, 64, 1, 1, 5), (2, 2, 1), (1, 1, 1), 1)
    assert not winograd_w.applies_cols((64, 64, 1, 3, 5), (1, 1, 1), (1, 1, 1), 1)
    assert not winograd_w.applies_cols((64, 64, 1, 1, 3), (1, 1, 1), (1, 1, 1), 1)
    assert not winograd_w.applies_cols((64, 64, 1, 1, 5), (1, 1, 2), (1, 1, 1), 1)
    assert not winograd_w.applies_cols((64, 64, 1, 1, 5), (1, 1, 1), (1, 1, 2), 1)
    assert not winograd_w.applies_cols((64, 8, 1, 1, 5), (1, 1, 1), (1, 1, 1), 1)  # Cg < 16
