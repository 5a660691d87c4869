"""F(4, 3) along W fused with the folded GEMM (``fastconv.cpu.winograd_w``), the GEMM
algorithm's form for 3-D layers with 3 kernel columns: against the float64 NumPy oracle and
PyTorch over Hypothesis shapes, every padding mode, bit-identity across thread counts and
NaN/Inf propagation as in the direct kernel.

float32 tolerance: measured max |error| / max |y| <= 1.0e-6 on these layers (8-16
channels per group, 3x3x3 and 2x3x3 kernels, random normal data); the tests allow 4e-6.
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


@st.composite
def layers(draw):
    """A small 3-D layer with 3 kernel columns, stride and dilation 1 along H and W."""
    groups = draw(st.sampled_from([1, 1, 2]))
    KD, KH = draw(st.integers(2, 3)), draw(st.integers(1, 3))
    Cg = draw(st.integers(-(-16 // KD), 12))
    Kg = draw(st.integers(8, 12))
    N = draw(st.integers(1, 2))
    sd, dd, dh = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    mode = draw(st.sampled_from(MODES))
    pad = (draw(st.integers(0, 1)), draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    span = (dd * (KD - 1) + 1, dh * (KH - 1) + 1, 3)
    lo = [max(sp - 2 * p, p + 1, 1) for sp, p in zip(span, pad, strict=True)]
    D, H = draw(st.integers(lo[0], lo[0] + 3)), draw(st.integers(lo[1], lo[1] + 5))
    W = draw(st.integers(lo[2], 23))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = rng.standard_normal((N, Cg * groups, D, H, W)).astype(dtype)
    w = rng.standard_normal((Kg * groups, Cg, KD, KH, 3)).astype(dtype)
    b = rng.standard_normal(Kg * groups).astype(dtype) if draw(st.booleans()) else None
    kw = dict(stride=(sd, 1, 1), padding=pad, dilation=(dd, dh, 1), padding_mode=mode,
              groups=groups)
    return x, w, b, kw


@given(layers())
def test_matches_oracle(layer):
    x, w, b, kw = layer
    assert winograd_w.applies(w.shape, kw["stride"], kw["dilation"], kw["groups"])
    got = fc.conv3d(x, w, b, algorithm="gemm", **kw)
    want = conv_nd(x, w, b, kw["stride"], [(p, p) for p in kw["padding"]], kw["dilation"],
                   kw["groups"], kw["padding_mode"])
    assert got.dtype == x.dtype and got.shape == want.shape
    _close(got, want, x.dtype)


@requires_torch
@given(layers())
def test_matches_torch(layer):
    import torch

    x, w, b, kw = layer
    kw = dict(kw)
    mode = kw.pop("padding_mode")
    layer = torch.nn.Conv3d(x.shape[1], w.shape[0], w.shape[2:], padding_mode=mode,
                            bias=b is not None, dtype=torch.from_numpy(x).dtype, **kw)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
        if b is not None:
            layer.bias.copy_(torch.from_numpy(b))
        want = layer(torch.from_numpy(x)).numpy()
    got = fc.conv3d(x, w, b, algorithm="gemm", padding_mode=mode, **kw)
    _close(got, want, x.dtype)


def test_chunked_rows_and_bit_identical_for_any_thread_count(monkeypatch):
    """One output depth slice per chunk (a small chunk budget) computes the same values,
    and the result does not depend on the thread count."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 16, 4, 21, 30)).astype(np.float32)
    w = rng.standard_normal((8, 16, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    want = conv_nd(x, w, b, 1, 1)
    base = fc.conv3d(x, w, b, padding=1, algorithm="gemm")
    _close(base, want, np.float32)
    monkeypatch.setattr(winograd_w, "GEMM_COL_CHUNK_BYTES", 1)
    assert len(winograd_w.chunks(2, 4, 21, 3, 1, 1, 2, 16, 8, 4)) == 4  # a depth slice each
    n = numba.get_num_threads()
    runs = []
    for t in sorted({1, n}):
        numba.set_num_threads(t)
        try:
            runs += [fc.conv3d(x, w, b, padding=1, algorithm="gemm") for _ in range(2)]
        finally:
            numba.set_num_threads(n)
    _close(runs[0], want, np.float32)
    for r in runs[1:]:
        assert np.array_equal(r, runs[0])


@pytest.mark.parametrize("where", ["input", "weight"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_propagate_as_in_direct(where, bad):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 8, 4, 6, 13)).astype(np.float32)
    w = rng.standard_normal((8, 8, 2, 3, 3)).astype(np.float32)
    (x if where == "input" else w)[(0, 3, 1, 2, 5) if where == "input" else (2, 3, 1, 1, 1)] = bad
    got = fc.conv3d(x, w, padding=1, algorithm="gemm")
    want = fc.conv3d(x, w, padding=1, algorithm="direct")
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=0, atol=4e-6 * np.abs(want[fin]).max())


def test_applies_only_to_3d_layers_with_three_columns():
    assert winograd_w.applies((32, 32, 3, 3, 3), (1, 1, 1), (1, 1, 1), 1)
    assert not winograd_w.applies((32, 32, 1, 3, 3), (1, 1, 1), (1, 1, 1), 1)  # 2-D
    assert not winograd_w.applies((32, 32, 3, 3, 5), (1, 1, 1), (1, 1, 1), 1)
    assert not winograd_w.applies((32, 32, 3, 3, 3), (1, 1, 2), (1, 1, 1), 1)
    assert not winograd_w.applies((32, 32, 3, 3, 3), (1, 1, 1), (1, 1, 2), 1)
    assert not winograd_w.applies((32, 4, 3, 3, 3), (1, 1, 1), (1, 1, 1), 8)  # Cg*KD < 16


def test_several_row_chunks_match_oracle():
    """A tall, narrow volume: its rows are split into chunks (about ``ROW_COLUMNS``
    product columns each), its depth into one chunk per slice (``MIN_TASKS``)."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 16, 3, 150, 12)).astype(np.float32)
    w = rng.standard_normal((8, 16, 3, 3, 3)).astype(np.float32)
    assert len({c[2:] for c in winograd_w.chunks(1, 3, 150, 3, 1, 1, 2, 16, 3, 4)}) == 2
    got = fc.conv3d(x, w, padding=1, padding_mode="reflect", algorithm="gemm")
    _close(got, conv_nd(x, w, None, 1, 1, padding_mode="reflect"), np.float32)


def test_c3_splits_into_equal_tasks_for_two_threads():
    """C3 (2x32x16x56^2, 3x3x3, pad 1) makes at least ``MIN_TASKS`` chunk tasks of equal
    size (the split depends on the shape only), so 2 threads take equal shares."""
    parts = winograd_w.chunks(2, 16, 56, 3, 1, 1, 2, 32, 14, 4)
    assert 2 * len(parts) >= winograd_w.MIN_TASKS
    assert len({(d1 - d0, h1 - h0) for d0, d1, h0, h1 in parts}) == 1
