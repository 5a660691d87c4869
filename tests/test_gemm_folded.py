"""The folded GEMM (``fastconv.cpu.gemm.folded``): taps folded into the reduction, gathered
straight from the unpadded input in every padding mode. Against the float64 NumPy oracle
and PyTorch over Hypothesis shapes, bit-identity across thread counts, NaN/Inf.

float32 tolerance: the products reduce over ``Cg * taps`` terms like any GEMM; measured
max |error| / max |y| <= 3e-7 on these shapes; the tests allow 2e-6 (1e-12 in float64).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastconv as fc
from fastconv.cpu import gemm
from tests.conftest import requires_torch
from tests.reference import conv_nd

MODES = ["zeros", "reflect", "replicate", "circular"]


def _close(got, want, dtype):
    tol = 1e-12 if dtype == np.float64 else 2e-6
    scale = float(np.max(np.abs(want))) or 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)


@st.composite
def layers(draw, nsp):
    """A small layer of ``nsp`` spatial axes: any stride, dilation, padding, mode, groups."""
    groups = draw(st.sampled_from([1, 1, 2]))
    Cg, Kg = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    N = draw(st.integers(1, 2))
    k = tuple(draw(st.integers(1, 4)) for _ in range(nsp))
    s = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    d = tuple(draw(st.integers(1, 2)) for _ in range(nsp))
    mode = draw(st.sampled_from(MODES))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(nsp))
    pairs = [(p, p) for p in pad]
    span = [di * (ki - 1) + 1 for ki, di in zip(k, d, strict=True)]
    lo = [max(sp - 2 * p, p + 1, 1) for sp, p in zip(span, pad, strict=True)]
    hi = 300 if nsp == 1 else 12
    size = tuple(draw(st.integers(lo_i, max(lo_i, hi))) for lo_i in lo)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = rng.standard_normal((N, Cg * groups) + size).astype(dtype)
    w = rng.standard_normal((Kg * groups, Cg) + k).astype(dtype)
    b = rng.standard_normal(Kg * groups).astype(dtype) if draw(st.booleans()) else None
    return x, w, b, dict(stride=s, padding=pad, dilation=d, padding_mode=mode,
                         groups=groups), pairs


def _folded(x, w, b, kw, pairs):
    """``gemm.folded`` on 5-D views of an ``nsp``-axis layer."""
    lead = (1,) * (5 - x.ndim)
    x5 = x.reshape(x.shape[:2] + lead + x.shape[2:])
    w5 = w.reshape(w.shape[:2] + lead + w.shape[2:])
    pads = [(0, 0)] * len(lead) + list(pairs)
    st_ = lead + tuple(kw["stride"])
    dl = lead + tuple(kw["dilation"])
    osz = [(n + bb + a - dd * (k - 1) - 1) // s + 1 for n, (bb, a), k, s, dd in
           zip(x5.shape[2:], pads, w5.shape[2:], st_, dl, strict=True)]
    out = np.empty((x.shape[0], w.shape[0], *osz), dtype=x.dtype)
    bias = np.zeros(w.shape[0], x.dtype) if b is None else b
    gemm.folded(x5, w5, bias, out, st_, dl, kw["groups"], pads, kw["padding_mode"])
    return out.reshape((x.shape[0], w.shape[0]) + tuple(osz[len(lead):]))


@pytest.mark.parametrize("nsp", [1, 2, 3])
@given(data=st.data())
def test_folded_matches_oracle(nsp, data):
    x, w, b, kw, pairs = data.draw(layers(nsp))
    want = conv_nd(x, w, b, kw["stride"], pairs, kw["dilation"], kw["groups"],
                   kw["padding_mode"])
    got = _folded(x, w, b, kw, pairs)
    _close(got, want, x.dtype)


@given(layers(1))
def test_conv1d_gemm_runs_folded_and_matches_oracle(layer):
    x, w, b, kw, pairs = layer
    assert gemm.folded_ok(x.shape[:2] + (1, 1) + x.shape[2:],
                          w.shape[:2] + (1, 1) + w.shape[2:], (1, 1) + kw["stride"])
    got = fc.conv1d(x, w, b, algorithm="gemm", **kw)
    want = conv_nd(x, w, b, kw["stride"], pairs, kw["dilation"], kw["groups"],
                   kw["padding_mode"])
    _close(got, want, x.dtype)


@requires_torch
@given(layers(1))
def test_conv1d_gemm_matches_torch(layer):
    import torch

    x, w, b, kw, _ = layer
    mode = kw.pop("padding_mode")
    tb = None if b is None else torch.from_numpy(b)
    want = torch.nn.Conv1d(x.shape[1], w.shape[0], w.shape[2], padding_mode=mode,
                           bias=b is not None, dtype=torch.from_numpy(x).dtype, **kw)
    with torch.no_grad():
        want.weight.copy_(torch.from_numpy(w))
        if tb is not None:
            want.bias.copy_(tb)
        y = want(torch.from_numpy(x)).numpy()
    got = fc.conv1d(x, w, b, algorithm="gemm", padding_mode=mode, **kw)
    _close(got, y, x.dtype)


def test_bit_identical_for_any_thread_count():
    """C1's shape, scaled down: the chunks depend only on the shapes."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 16, 5000)).astype(np.float32)
    w = rng.standard_normal((24, 16, 5)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    n = numba.get_num_threads()
    runs = []
    for t in sorted({1, n}):
        numba.set_num_threads(t)
        try:
            runs += [fc.conv1d(x, w, b, padding=2, algorithm="gemm") for _ in range(2)]
        finally:
            numba.set_num_threads(n)
    for r in runs[1:]:
        assert np.array_equal(r, runs[0])
    _close(runs[0], conv_nd(x, w, b, 1, 2), np.float32)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_propagate_as_in_direct(bad):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 4, 40)).astype(np.float32)
    w = rng.standard_normal((8, 4, 3)).astype(np.float32)
    x[0, 1, 17] = bad
    got = fc.conv1d(x, w, padding=1, algorithm="gemm")
    want = fc.conv1d(x, w, padding=1, algorithm="direct")
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.isinf(got), np.isinf(want))


def test_chunks_cover_every_output_once():
    for shape in [(1, 1, 4096), (16, 56, 56), (3, 7, 100000), (1, 2, 3)]:
        for extra in (0, 2):
            seen = np.zeros(shape, dtype=int)
            for d, h0, h1, w0, w1 in gemm.folded_chunks(*shape, extra, 288, 4):
                seen[d, h0:h1, w0:w1] += 1
            assert (seen == 1).all()


def test_the_scratch_buffer_views_as_any_dtype_after_an_odd_float32_request():
    # a float32 call's scratch (4 x an odd count of bytes) is reused by a float64 call
    gemm._scratch.buf = None
    gemm._buffer((1 << 16) + 4 * 1001)
    buf = gemm._buffer(8)
    assert buf.size % 64 == 0
    assert buf.view(np.float64).size == buf.size // 8
