"""The tiny direct kernel (``fastconv.cpu.tiny``) against the big one, byte for byte.

``correlate_tiny`` replaces ``correlate``/``correlate_serial`` below
``fastconv._algorithms.TINY_MAX_MACS`` multiply-adds only to cut the cold compile, so
``algorithm="direct"`` must keep its bits: every output, every shape, dtype, stride,
dilation, group count, and NaN/Inf/signed zeros included.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import fastconv as fc
from fastconv import _algorithms
from fastconv.cpu.conv import correlate, correlate_serial
from fastconv.cpu.tiny import correlate_tiny
from tests.reference import conv_nd


@st.composite
def problems(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    groups = draw(st.integers(1, 3))
    Cg = draw(st.integers(1, 3))
    Kg = draw(st.integers(1, 9))  # full and partial blocks of CHANNEL_BLOCK channels
    ks = [draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 8))]
    stride = tuple(draw(st.integers(1, 3)) for _ in range(3))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(3))
    outs = [draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 9))]
    extent = [(o - 1) * s + (k - 1) * d + 1 + draw(st.integers(0, s - 1))
              for o, s, k, d in zip(outs, stride, ks, dilation, strict=True)]
    N = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    xp = rng.standard_normal((N, groups * Cg, *extent)).astype(dtype)
    w = rng.standard_normal((groups * Kg, Cg, *ks)).astype(dtype)
    bias = rng.standard_normal(groups * Kg).astype(dtype)
    if draw(st.booleans()):  # specials: NaN/Inf propagate, signed zeros
        for a in (xp, w):
            flat = a.reshape(-1)
            idx = rng.integers(0, flat.size, 2)
            flat[idx] = draw(st.sampled_from([np.nan, np.inf, -np.inf, -0.0, 0.0]))
    out_shape = (N, groups * Kg, *outs)
    return xp, w, bias, out_shape, stride, dilation, groups


@given(problems())
def test_the_tiny_kernel_has_the_big_kernels_bits(problem):
    xp, w, bias, out_shape, stride, dilation, groups = problem
    outs = []
    for kernel in (correlate_tiny, correlate_serial, correlate):
        out = np.empty(out_shape, dtype=xp.dtype)
        kernel(xp, w, bias, out, stride, dilation, groups)
        outs.append(out.tobytes())
    assert outs[0] == outs[1] == outs[2]


def test_the_tiny_kernel_matches_the_numpy_oracle():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 4, 5, 6))
    w = rng.standard_normal((4, 2, 3, 2))  # 864 multiply-adds: the tiny kernel
    y = fc.conv2d(x, w, stride=(2, 1), padding=1, dilation=(1, 2), groups=2,
                  algorithm="direct")
    ref = conv_nd(x, w, None, (2, 1), [(1, 1), (1, 1)], (1, 2), 2)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_tiny_problems_run_the_tiny_kernel_and_small_ones_the_serial_twin():
    assert _algorithms._serial_kernel(_algorithms.TINY_MAX_MACS - 1) is correlate_tiny
    assert _algorithms._serial_kernel(_algorithms.TINY_MAX_MACS) is correlate_serial
    # the quick start's first call: a 3x3 image, 2x2 kernel
    assert fc.corr2d([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]]).tolist() == [
        [19.0, 25.0], [37.0, 43.0]]
