"""Pooling, forward and backward: the seeds' numbers, a NumPy loop oracle over drawn
shapes, PyTorch as an independent oracle (values, indices, autograd), finite differences,
and every error message."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from reference import (
    avg_pool_backward_nd,
    avg_pool_nd,
    max_pool_backward_nd,
    max_pool_nd,
    pool_output_size,
)

import fastconv as fc
from fastconv import pool
from fastconv._shapes import pool_empty_window

MAX = {1: fc.max_pool1d, 2: fc.max_pool2d, 3: fc.max_pool3d}
AVG = {1: fc.avg_pool1d, 2: fc.avg_pool2d, 3: fc.avg_pool3d}
MAX_BW = {1: pool.max_pool1d_backward, 2: pool.max_pool2d_backward, 3: pool.max_pool3d_backward}
AVG_BW = {1: pool.avg_pool1d_backward, 2: pool.avg_pool2d_backward, 3: pool.avg_pool3d_backward}


# --- the seeds' examples ---------------------------------------------------------------


def test_d2l_3x3_input_2x2_window():
    X = np.arange(9.0).reshape(1, 3, 3)
    np.testing.assert_array_equal(fc.max_pool2d(X, 2, stride=1), [[[4, 5], [7, 8]]])
    np.testing.assert_array_equal(fc.avg_pool2d(X, 2, stride=1), [[[2, 3], [5, 6]]])


def test_d2l_padding_and_stride():
    X = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(fc.max_pool2d(X, 3), [[[[10]]]])
    np.testing.assert_array_equal(fc.max_pool2d(X, 3, padding=1, stride=2),
                                  [[[[5, 7], [13, 15]]]])
    np.testing.assert_array_equal(fc.max_pool2d(X, (2, 3), stride=(2, 3), padding=(0, 1)),
                                  [[[[5, 7], [13, 15]]]])


def test_d2l_two_channels():
    X = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    X2 = np.concatenate([X, X + 1], axis=1)
    y = fc.max_pool2d(X2, 3, padding=1, stride=2)
    np.testing.assert_array_equal(y, [[[[5, 7], [13, 15]], [[6, 8], [14, 16]]]])
    assert y.dtype == np.float32


def test_stride_defaults_to_kernel_size_and_unbatched():
    x = np.arange(12.0).reshape(2, 6)
    np.testing.assert_array_equal(fc.max_pool1d(x, 3), [[2, 5], [8, 11]])
    np.testing.assert_array_equal(fc.avg_pool1d(x, 3), [[1, 4], [7, 10]])


def test_return_indices_hand_case():
    x = np.array([[[1.0, 5.0, 5.0, 0.0], [2.0, 2.0, 7.0, 7.0]]])  # (1, 2, 4)
    y, i = fc.max_pool1d(x, 2, return_indices=True)
    np.testing.assert_array_equal(y, [[[5, 5], [2, 7]]])
    np.testing.assert_array_equal(i, [[[1, 2], [0, 2]]])  # ties: the first maximum
    assert i.dtype == np.int64


def test_avg_ceil_mode_divisor_stops_at_padded_end():
    # n=4, k=3, s=2, p=1, ceil: windows [-1,2) [1,4) [3,6), the last capped at n+p=5:
    # sums 2, 3, 1 over window sizes 3, 3, 2
    x = np.ones((1, 1, 4))
    np.testing.assert_allclose(fc.avg_pool1d(x, 3, 2, 1, ceil_mode=True), [[[2 / 3, 1, 1 / 2]]])
    np.testing.assert_allclose(
        fc.avg_pool1d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False), [[[1, 1, 1]]]
    )
    np.testing.assert_allclose(
        fc.avg_pool1d(x, 3, 2, 1, ceil_mode=True, divisor_override=2), [[[1, 1.5, 0.5]]]
    )


def test_nan_and_inf_propagate_in_max():
    x = np.array([[1.0, np.nan, 3.0, -np.inf, -np.inf, np.inf]])
    y, i = fc.max_pool1d(x, 2, return_indices=True)
    np.testing.assert_array_equal(y, [[np.nan, 3.0, np.inf]])
    np.testing.assert_array_equal(i, [[1, 2, 5]])
    x = np.array([[-np.inf, -np.inf, np.nan, 0.0, np.nan, np.nan]])
    y, i = fc.max_pool1d(x, 3, return_indices=True)
    np.testing.assert_array_equal(y, [[np.nan, np.nan]])
    np.testing.assert_array_equal(i, [[2, 5]])  # the last NaN, as PyTorch
    np.testing.assert_array_equal(fc.max_pool1d(x[:, :2], 2, return_indices=True)[1], [[0]])


def test_integer_input_is_promoted():
    x = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)
    assert fc.max_pool2d(x, 2).dtype == np.float32
    assert fc.avg_pool2d(x.astype(np.int64), 2).dtype == np.float64


# --- NumPy loop oracle over drawn shapes -------------------------------------------------


@st.composite
def pool_case(draw, kind):
    nsp = draw(st.integers(1, 3))
    k = [draw(st.integers(1, 3)) for _ in range(nsp)]
    d = [draw(st.integers(1, 2)) if kind == "max" else 1 for _ in range(nsp)]
    s = [draw(st.integers(1, 3)) for _ in range(nsp)]
    p = [draw(st.integers(0, ki // 2)) for ki in k]  # PyTorch's rule, max and avg alike
    shape = [draw(st.integers(max(1, di * (ki - 1) + 1 - 2 * pi), 6))
             for ki, di, pi in zip(k, d, p, strict=True)]
    ceil = draw(st.booleans())
    # a dilated window lying entirely in the padding is refused (tested on its own)
    assume(all(
        pool_empty_window(n, ki, si, pi, di, pool_output_size(n, ki, si, pi, di, ceil)) is None
        for n, ki, si, pi, di in zip(shape, k, s, p, d, strict=True)
    ))
    seed = draw(st.integers(0, 2**16))
    x = np.random.default_rng(seed).standard_normal((2, 2, *shape))
    if draw(st.booleans()):  # ties on a coarse grid
        x = np.round(x)
    return nsp, x, k, (None if draw(st.booleans()) else s), p, d, ceil


@given(pool_case("max"))
def test_max_pool_matches_loop_oracle(case):
    nsp, x, k, s, p, d, ceil = case
    y, i = MAX[nsp](x, k, s, p, d, ceil, return_indices=True)
    ry, ri = max_pool_nd(x, k, s, p, d, ceil)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_array_equal(MAX[nsp](x, k, s, p, d, ceil), ry)
    g = np.random.default_rng(1).standard_normal(ry.shape)
    np.testing.assert_allclose(MAX_BW[nsp](g, x, k, s, p, d, ceil),
                               max_pool_backward_nd(g, x, k, s, p, d, ceil), atol=1e-12)


@given(pool_case("avg"), st.booleans(), st.sampled_from([None, 1, 3, -2]))
def test_avg_pool_matches_loop_oracle(case, count_include_pad, divisor):
    nsp, x, k, s, p, _, ceil = case
    y = AVG[nsp](x, k, s, p, ceil, count_include_pad, divisor)
    np.testing.assert_allclose(y, avg_pool_nd(x, k, s, p, ceil, count_include_pad, divisor),
                               rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(2).standard_normal(y.shape)
    np.testing.assert_allclose(
        AVG_BW[nsp](g, x, k, s, p, ceil, count_include_pad, divisor),
        avg_pool_backward_nd(g, x, k, s, p, ceil, count_include_pad, divisor),
        rtol=1e-12, atol=1e-12,
    )


def test_window_with_no_input_tap_is_refused():
    # n=1, k=2, dilation=2, padding=1: taps at -1 and 1, both outside. PyTorch returns -inf
    # and index 1 (outside the 1-element plane) and its backward writes outside the
    # gradient; fastconv refuses the configuration, forward and backward.
    x = np.array([[[3.0]]])
    match = (r"max_pool1d: window 0 of spatial axis 0 lies entirely in the padding "
             r"\(PyTorch returns -inf and an index outside the input there\)")
    with pytest.raises(ValueError, match=match):
        fc.max_pool1d(x, 2, padding=1, dilation=2, return_indices=True)
    with pytest.raises(ValueError, match=match.replace("max_pool1d", "max_pool1d_backward")):
        pool.max_pool1d_backward(np.ones((1, 1, 1)), x, 2, padding=1, dilation=2)


# --- PyTorch as an independent oracle ----------------------------------------------------

TORCH_CASES = [
    # nsp, shape, kernel, stride, padding, dilation, ceil_mode
    (1, (2, 3, 11), 3, 2, 1, 1, False),
    (1, (3, 10), 4, 3, 2, 1, True),
    (2, (2, 3, 9, 8), 3, 2, 1, 1, False),
    (2, (2, 2, 9, 8), (3, 2), (2, 1), (1, 0), (2, 1), True),
    (2, (1, 2, 7, 10), (2, 4), None, (1, 2), 1, True),
    (3, (2, 2, 5, 6, 7), (2, 3, 2), (2, 1, 2), (1, 1, 0), (1, 2, 1), True),
    (3, (2, 5, 4, 6), 3, 2, 1, 1, False),
]


def _torch_max(nsp, x, *args):
    import torch
    import torch.nn.functional as F

    xt = torch.from_numpy(x).requires_grad_()
    y, i = getattr(F, f"max_pool{nsp}d")(xt, *args, return_indices=True)
    g = np.random.default_rng(3).standard_normal(tuple(y.shape)).astype(x.dtype)
    y.backward(torch.from_numpy(g))
    return y.detach().numpy(), i.numpy(), g, xt.grad.numpy()


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", TORCH_CASES)
def test_max_pool_matches_torch(case, dtype):
    nsp, shape, k, s, p, d, ceil = case
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[rng.choice(x.size, 3, replace=False)] = [np.nan, np.inf, -np.inf]
    x = np.round(x, 1)  # ties
    ty, ti, g, tgx = _torch_max(nsp, x, k, s, p, d, ceil)
    y, i = MAX[nsp](x, k, s, p, d, ceil, return_indices=True)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(i, ti)
    np.testing.assert_array_equal(MAX_BW[nsp](g, x, k, s, p, d, ceil), tgx)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", TORCH_CASES)
@pytest.mark.parametrize("count_include_pad,divisor", [(True, None), (False, None), (True, 5)])
def test_avg_pool_matches_torch(case, dtype, count_include_pad, divisor):
    import torch
    import torch.nn.functional as F

    nsp, shape, k, s, p, _, ceil = case
    x = np.random.default_rng(5).standard_normal(shape).astype(dtype)
    xt = torch.from_numpy(x).requires_grad_()
    args = (k, s, p, ceil, count_include_pad, divisor)
    if nsp == 1:  # torch's avg_pool1d has no divisor_override: run it as 2-D (1, k)
        s2 = None if s is None else (1, s)
        ty = F.avg_pool2d(xt.unsqueeze(-2), (1, k), s2, (0, p), ceil, count_include_pad,
                          divisor).squeeze(-2)
    else:
        ty = getattr(F, f"avg_pool{nsp}d")(xt, *args)
    g = np.random.default_rng(6).standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(torch.from_numpy(g))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    y = AVG[nsp](x, *args)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(AVG_BW[nsp](g, x, *args), xt.grad.numpy(), **tol)


@requires_torch
def test_non_contiguous_and_byteswapped_input_matches_torch():
    import torch
    import torch.nn.functional as F

    base = np.random.default_rng(7).standard_normal((2, 6, 10, 12))
    x = base[:, ::2, :, ::-1].astype(">f8")
    ref = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    np.testing.assert_array_equal(fc.max_pool2d(x, 3, 2, 1), F.max_pool2d(ref, 3, 2, 1).numpy())
    np.testing.assert_allclose(fc.avg_pool2d(x, 3, 2, 1), F.avg_pool2d(ref, 3, 2, 1).numpy(),
                               rtol=1e-12)


# --- finite differences (avg pooling is linear: exact up to rounding) --------------------


def test_avg_backward_finite_differences():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 2, 5, 6))
    g = rng.standard_normal(fc.avg_pool2d(x, 3, 2, 1, True, False).shape)
    gx = pool.avg_pool2d_backward(g, x, 3, 2, 1, True, False)
    eps = 1e-6
    for pos in [(0, 0, 0, 0), (0, 1, 2, 3), (0, 1, 4, 5), (0, 0, 3, 1)]:
        e = np.zeros_like(x)
        e[pos] = eps
        num = np.vdot(fc.avg_pool2d(x + e, 3, 2, 1, True, False)
                      - fc.avg_pool2d(x - e, 3, 2, 1, True, False), g) / (2 * eps)
        np.testing.assert_allclose(gx[pos], num, rtol=1e-6, atol=1e-9)


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda x: fc.max_pool2d(x[0, 0], 2), ValueError,
         r"max_pool2d: x must be 4-D \(N, C, \*spatial\) or 3-D \(C, \*spatial\), got 2-D "
         r"with x.shape=\(5, 6\)"),
        (lambda x: fc.avg_pool1d(x, 2), ValueError, r"avg_pool1d: x must be 3-D .* got 4-D"),
        (lambda x: fc.max_pool2d(x, 0), ValueError, r"max_pool2d: kernel_size must be >= 1, got 0"),
        (lambda x: fc.max_pool2d(x, (2, 2, 2)), ValueError,
         r"max_pool2d: kernel_size must be an int or a tuple of 2 ints, got \(2, 2, 2\)"),
        (lambda x: fc.avg_pool2d(x, 2, stride=0), ValueError,
         r"avg_pool2d: stride must be >= 1, got 0"),
        (lambda x: fc.max_pool2d(x, 2, dilation=(1, 0)), ValueError,
         r"max_pool2d: dilation must be >= 1, got \(1, 0\)"),
        (lambda x: fc.max_pool2d(x, 2, padding=-1), ValueError,
         r"max_pool2d: padding must be >= 0, got -1"),
        (lambda x: fc.max_pool2d(x, 3, padding=2), ValueError,
         r"max_pool2d: padding=\(2, 2\) must be at most half the window, "
         r"kernel_size // 2 = \(1, 1\) \(kernel_size=\(3, 3\), "
         r".*x.shape=\(1, 2, 5, 6\)\)"),
        (lambda x: fc.max_pool2d(x, 3, padding=2, dilation=2), ValueError,  # PyTorch's rule
         r"max_pool2d: padding=\(2, 2\) must be at most half the window, "
         r"kernel_size // 2 = \(1, 1\) \(kernel_size=\(3, 3\), stride=\(3, 3\), "
         r"padding=\(2, 2\), dilation=\(2, 2\), x.shape=\(1, 2, 5, 6\)\)"),
        (lambda x: fc.avg_pool2d(x, 3, padding=(0, 2)), ValueError,
         r"avg_pool2d: padding=\(0, 2\) must be at most half the window, kernel_size // 2 = "
         r"\(1, 1\)"),
        (lambda x: fc.max_pool2d(x, 7), ValueError,
         r"max_pool2d: output size \(0, 0\) < 1 for input spatial size \(5, 6\) "
         r"\(ceil_mode=False, kernel_size=\(7, 7\).*x.shape=\(1, 2, 5, 6\)\)"),
        (lambda x: fc.avg_pool2d(x, 2, divisor_override=0), ValueError,
         r"avg_pool2d: divisor_override must be None or a non-zero int, got 0"),
        (lambda x: fc.max_pool2d(x.astype(complex), 2), TypeError,
         r"max_pool2d: x has dtype complex128; expected a real numeric dtype"),
        (lambda x: fc.avg_pool2d(x > 0, 2), TypeError, r"avg_pool2d: x has dtype bool"),
        (lambda x: fc.max_pool2d(x, 2.0), TypeError,
         r"max_pool2d: kernel_size must be an int or a tuple of 2 ints, got 2.0"),
        (lambda x: fc.max_pool2d(x, 2, device="tpu"), ValueError,
         r"max_pool2d: invalid device 'tpu'"),
        (lambda x: pool.max_pool2d_backward(np.ones((1, 2, 3, 3)), x, 2), ValueError,
         r"max_pool2d_backward: grad_output.shape=\(1, 2, 3, 3\) does not match the pooling "
         r"output shape \(1, 2, 2, 3\) \(x.shape=\(1, 2, 5, 6\)\)"),
        (lambda x: pool.avg_pool3d_backward(np.ones((1, 1, 1)), x[0], 2), ValueError,
         r"avg_pool3d_backward: x must be 5-D .* got 3-D"),
    ],
)
def test_errors(call, exc, match):
    x = np.zeros((1, 2, 5, 6))
    with pytest.raises(exc, match=match):
        call(x)


def test_docstring_examples_hold():
    np.testing.assert_array_equal(fc.max_pool1d([[1.0, 3.0, 2.0, 0.0]], 2), [[3, 2]])
    np.testing.assert_array_equal(fc.avg_pool1d([[1.0, 3.0, 2.0, 0.0]], 2), [[2, 1]])
    np.testing.assert_array_equal(fc.max_pool3d(np.arange(8.0).reshape(1, 2, 2, 2), 2),
                                  [[[[7]]]])
    np.testing.assert_array_equal(fc.avg_pool3d(np.arange(8.0).reshape(1, 2, 2, 2), 2),
                                  [[[[3.5]]]])
    gx = pool.max_pool2d_backward(np.ones((1, 1, 1)), np.arange(4.0).reshape(1, 2, 2), 2)
    np.testing.assert_array_equal(gx, [[[0, 0], [0, 1]]])


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dilation", [1, 2])
def test_max_backward_sends_grad_to_the_returned_indices(stride, dilation):
    """The backward kernel finds each window's maximum itself (a row of windows at a
    time); it must pick the element ``return_indices`` names: first of tied maxima,
    a NaN over everything, nothing from a window outside the input."""
    rng = np.random.default_rng(stride * 10 + dilation)
    x = rng.integers(-2, 3, (2, 3, 13, 17)).astype(np.float32)  # many ties
    x[0, 1, 4, 5] = np.nan
    x[1, 2, 7, 3] = -np.inf
    y, idx = fc.max_pool2d(x, 3, stride, 1, dilation, return_indices=True)
    g = rng.standard_normal(y.shape).astype(np.float32)
    want = np.zeros((6, 13 * 17), np.float32)
    for p, (gp, ip) in enumerate(zip(g.reshape(6, -1), idx.reshape(6, -1), strict=True)):
        np.add.at(want[p], ip, gp)
    got = fc.grad.max_pool2d(g, x, 3, stride, 1, dilation)
    np.testing.assert_allclose(got.reshape(6, -1), want, rtol=1e-6, atol=1e-6)


def test_single_plane_pooling_splits_rows_and_matches_oracle():
    """One image plane: the forward kernels split it into row blocks across tasks."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 1, 301, 97)).astype(np.float32)
    for k, s, p in ((3, 2, 1), (2, 2, 0), (5, 1, 2)):
        np.testing.assert_array_equal(fc.max_pool2d(x, k, s, p),
                                      max_pool_nd(x, (k, k), (s, s), (p, p))[0])
        np.testing.assert_allclose(fc.avg_pool2d(x, k, s, p),
                                   avg_pool_nd(x, (k, k), (s, s), (p, p)), rtol=1e-5,
                                   atol=1e-6)


# --- threads: the task split never changes a bit -------------------------------------------

THREAD_CASES = [
    # nsp, shape, kernel, stride, padding, dilation, ceil_mode
    (2, (2, 3, 41, 37), 3, 2, 1, 1, False),
    (2, (1, 2, 40, 33), (3, 4), (2, 3), (1, 2), (2, 1), True),
    (1, (3, 4, 501), 5, 3, 2, 2, True),
    (3, (2, 2, 9, 12, 13), (3, 2, 3), (2, 1, 2), (1, 1, 1), (1, 2, 1), True),
    (2, (2, 3, 20, 25), 2, 2, 0, 1, False),  # P2's 2x2/2 windows (2-row and pair paths)
    (2, (2, 2, 15, 19), (3, 7), 1, (1, 3), 1, False),  # 7 W taps a column: the long kernel
]

#: Every ``prange`` form :func:`fastconv.cpu.pool._split` runs.
PAR_KERNELS = {"max_pool_values_par", "max_pool_indices_par", "avg_pool_sums_par",
               "max_pool_codes_3s2_par", "max_pool_grad_par", "avg_pool_grad_par",
               "avg_pool_grad_pairs_par", "avg_pool_grad_long_par"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", THREAD_CASES)
def test_pool_bit_identical_for_any_thread_count_and_task_split(case, dtype, monkeypatch):
    """Every kernel runs over task ranges split across threads (Python workers, or a
    prange region); one thread, two threads and the threaded path forced on small calls
    give the same bits, MaxPool2d's too, and the
    values match the loop oracle (float32 avg within rounding)."""
    import numba

    from fastconv.cpu import pool as cpu_pool

    nsp, shape, k, s, p, d, ceil = case
    rng = np.random.default_rng(5)
    x = np.round(rng.standard_normal(shape), 1).astype(dtype)  # ties
    x.flat[rng.choice(x.size, 4, replace=False)] = [np.nan, np.inf, -np.inf, -0.0]

    def run():
        y, i = MAX[nsp](x, k, s, p, d, ceil, return_indices=True)
        a = AVG[nsp](x, k, s, p, ceil, False, None)
        g = np.linspace(-1, 1, y.size).reshape(y.shape).astype(dtype)
        ga = np.linspace(-1, 1, a.size).reshape(a.shape).astype(dtype)
        out = [y, i, MAX[nsp](x, k, s, p, d, ceil), a, MAX_BW[nsp](g, x, k, s, p, d, ceil),
               AVG_BW[nsp](ga, x, k, s, p, ceil, False, None)]
        if nsp == 2:  # the layer (3x3/2: its code kernels, prange backward)
            layer = fc.MaxPool2d(k, s, p, d, ceil)
            out += [layer(x), layer.backward(g)]
        return out

    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run()
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        many = run()
        monkeypatch.setattr(cpu_pool, "SERIAL_ELEMENTS", 0)
        forced = run()
    finally:
        numba.set_num_threads(before)
    for a, b, c in zip(one, many, forced, strict=True):
        assert a.tobytes() == b.tobytes() == c.tobytes()
    ry, ri = max_pool_nd(x, k, s, p, d, ceil)
    np.testing.assert_array_equal(one[0], ry.astype(dtype))
    np.testing.assert_array_equal(one[1], ri)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(one[3], avg_pool_nd(x, k, s, p, ceil, False), rtol=tol, atol=tol)


def test_every_split_kernel_runs_its_prange_form(monkeypatch):
    """With two threads and the threaded path forced, each pooling kernel runs as its
    ``prange`` form (no Python worker threads are left), with the same bits as the serial
    kernel over all tasks."""
    import numba

    from fastconv.cpu import pool as cpu_pool
    from fastconv.cpu import small

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 threads")
    assert not hasattr(cpu_pool, "_run") and not hasattr(cpu_pool, "_pool")
    ran = set()
    split = cpu_pool._split

    def both(kernel, par, ntasks, elements, *args):
        want = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        kernel(*want, 0, ntasks)  # the serial kernel over every task, on copies
        split(kernel, par, ntasks, elements, *args)
        ran.add(par.__name__)
        for a, b in zip(args, want, strict=True):
            if isinstance(a, np.ndarray):
                assert a.tobytes() == b.tobytes()

    monkeypatch.setattr(cpu_pool, "_split", both)
    monkeypatch.setattr(small, "KERNELS", True)  # (not the cold-cache NumPy form)
    monkeypatch.setattr(cpu_pool, "SERIAL_ELEMENTS", 0)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        for nsp, shape, k, s, p, d, ceil in THREAD_CASES:
            x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
            y, _ = MAX[nsp](x, k, s, p, d, ceil, return_indices=True)
            MAX[nsp](x, k, s, p, d, ceil)
            a = AVG[nsp](x, k, s, p, ceil, False, None)
            MAX_BW[nsp](np.ones_like(y), x, k, s, p, d, ceil)
            AVG_BW[nsp](np.ones_like(a), x, k, s, p, ceil, False, None)
            if nsp == 2:
                fc.MaxPool2d(k, s, p, d, ceil)(x)
    finally:
        numba.set_num_threads(before)
    assert ran == PAR_KERNELS


def _pool_in_child(x, want, q):
    q.put(bool(np.array_equal(fc.max_pool2d(x, 3, 2, 1), want)))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_threaded_pooling_works_in_a_forked_child():
    """A child forked after the parent's OpenMP workers started (GNU OpenMP would terminate
    it at its first parallel region) pools on its calling thread, with the same result."""
    import multiprocessing as mp

    x = np.random.default_rng(6).standard_normal((2, 8, 64, 64)).astype(np.float32)
    want = fc.max_pool2d(x, 3, 2, 1)  # the parent's pool now exists
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_pool_in_child, args=(x, want, q))
    p.start()
    p.join(60)
    if p.is_alive():
        p.kill()
        pytest.fail("max_pool2d hung in a forked child")
    assert q.get(timeout=5) is True


@pytest.mark.parametrize("k, p", [(2, 0), (2, 1), (3, 0), (3, 1), (4, 1), (4, 2)])
@pytest.mark.parametrize("width", [12, 13])
def test_stride2_backward_fast_paths_match_oracles(k, p, width):
    """Stride 2 takes dedicated paths (max: fused 3-row / 3-wide windows; average: each
    gx row in one pass by column parity, odd or even padding, odd widths): against the
    loop oracles, ties and NaN included, ceil_mode reaching past the input."""
    rng = np.random.default_rng(k * 100 + p * 10 + width)
    x = rng.integers(-2, 3, (2, 3, 11, width)).astype(np.float32)  # many ties
    x[1, 0, 3, 4] = np.nan
    for ceil in (False, True):
        y = fc.max_pool2d(x, k, 2, p, ceil_mode=ceil)
        g = rng.standard_normal(y.shape).astype(np.float32)
        np.testing.assert_allclose(
            fc.grad.max_pool2d(g, x, k, 2, p, ceil_mode=ceil),
            max_pool_backward_nd(g, x, (k, k), (2, 2), (p, p), ceil_mode=ceil),
            rtol=1e-6, atol=1e-6)
        for cip in (True, False):
            y = fc.avg_pool2d(x, k, 2, p, ceil_mode=ceil, count_include_pad=cip)
            g = rng.standard_normal(y.shape).astype(np.float32)
            np.testing.assert_allclose(
                fc.grad.avg_pool2d(g, x, k, 2, p, ceil_mode=ceil, count_include_pad=cip),
                avg_pool_backward_nd(g, x, (k, k), (2, 2), (p, p), ceil_mode=ceil,
                                     count_include_pad=cip), rtol=1e-5, atol=1e-6)


def _frozen_avg_backward_2d(g, x_shape, k, s, p, divisor_h, divisor_w):
    """The average-pooling gradient's operations as of 2026-12-02 06:00 (frozen, NumPy
    float32 scalars, one plane): each output's ``0 + g / (div_h * div_w)``; per input row
    the covering rows summed in output order from the first; per column the covering
    entries of that row summed in output order from the first (0 when none)."""
    H, W = x_shape
    OH, OW = g.shape
    dt = g.dtype.type
    planes = np.zeros((OH, OW), g.dtype)
    for oh in range(OH):
        f = dt(1) * dt(divisor_h[oh])
        for ow in range(OW):
            planes[oh, ow] = dt(0) + g[oh, ow] / (f * dt(divisor_w[ow]))
    gx = np.zeros((H, W), g.dtype)
    for j in range(H):
        rows = [oh for oh in range(OH) if oh * s[0] - p[0] <= j < oh * s[0] - p[0] + k[0]]
        row = planes[rows[0]].copy() if rows else np.zeros(OW, g.dtype)
        for oh in rows[1:]:
            row += planes[oh]
        for e in range(W):
            cols = [ow for ow in range(OW) if ow * s[1] - p[1] <= e < ow * s[1] - p[1] + k[1]]
            acc = row[cols[0]] if cols else dt(0)
            for ow in cols[1:]:
                acc = acc + row[ow]
            gx[j, e] = acc
    return gx


@pytest.mark.parametrize("kw, pw", [(2, 0), (2, 1), (3, 0), (3, 1), (4, 1), (4, 2)])
@pytest.mark.parametrize("width", [12, 13])
def test_avg_backward_stride2_is_bit_identical_to_the_frozen_order(kw, pw, width):
    """The stride-2 average-pooling gradient (each column sums 1 or 2 entries: whole
    rows by column parity, float32 pairs stored as 64-bit words) keeps today's bits:
    exactly the frozen operation order, with -0.0 and every divisor form."""
    from fastconv._shapes import pool_divisors

    rng = np.random.default_rng(kw * 10 + pw + width)
    H = 11
    x = np.zeros((1, 1, H, width), np.float32)
    for ceil in (False, True):
        for cip, override in ((True, None), (False, None), (True, 3)):
            kwargs = dict(ceil_mode=ceil, count_include_pad=cip, divisor_override=override)
            y = fc.avg_pool2d(x, (3, kw), (2, 2), (1, pw), **kwargs)
            g = rng.standard_normal(y.shape).astype(np.float32)
            g[0, 0, 1, :2] = -0.0
            OH, OW = y.shape[2:]
            if override is None:
                dh = pool_divisors(H, 3, 2, 1, OH, cip)
                dw = pool_divisors(width, kw, 2, pw, OW, cip)
            else:
                dh, dw = (1,) * OH, (override,) * OW
            got = fc.grad.avg_pool2d(g, x, (3, kw), (2, 2), (1, pw), **kwargs)
            want = _frozen_avg_backward_2d(g[0, 0], (H, width), (3, kw), (2, 2), (1, pw), dh,
                                           dw)
            assert got[0, 0].tobytes() == want.tobytes(), (ceil, cip, override)


@settings(max_examples=60, deadline=None)
@given(
    nsp=st.sampled_from([1, 2, 3]), k=st.integers(1, 4), s=st.integers(1, 3),
    d=st.integers(1, 2), ceil=st.booleans(), size=st.integers(1, 9),
    dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16),
)
def test_max_pool_numpy_form_has_the_kernels_bits(nsp, k, s, d, ceil, size, dtype, seed):
    """The NumPy form a cold kernel cache runs (``max_pool_numpy``) gives the kernel's
    bits: ties of -0.0 and 0.0 (the first wins), -inf, NaN, padding, dilation, ceil_mode,
    1-D/2-D/3-D."""
    from fastconv.cpu import small

    rng = np.random.default_rng(seed)
    shape = (2, 3) + (size + (k - 1) * d,) * nsp
    x = rng.integers(-2, 3, size=shape).astype(dtype)  # many ties
    x[rng.random(shape) < 0.1] = -0.0
    x[rng.random(shape) < 0.05] = -np.inf
    x[rng.random(shape) < 0.05] = np.nan
    pad = min(k // 2, 1)
    op = {1: fc.max_pool1d, 2: fc.max_pool2d, 3: fc.max_pool3d}[nsp]
    saved = small.KERNELS
    try:
        small.KERNELS = True
        want = op(x, k, s, pad, d, ceil_mode=ceil)
        small.KERNELS = False
        got = op(x, k, s, pad, d, ceil_mode=ceil)
    finally:
        small.KERNELS = saved
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
def _max_backward_reference(g, x, idx):
    """gx from ``idx`` (return_indices) by unbuffered in-order adds from zero, in g's dtype."""
    P = x.shape[0] * x.shape[1]
    want = np.zeros((P, int(np.prod(x.shape[2:]))), g.dtype)
    for q, (gp, ip) in enumerate(zip(g.reshape(P, -1), idx.reshape(P, -1), strict=True)):
        np.add.at(want[q], ip, gp)
    return want.reshape(x.shape)


def _tricky(rng, shape, dtype, nan):
    """Inputs with ties (a coarse grid), -inf runs and optionally NaN."""
    x = rng.integers(-2, 3, shape).astype(dtype)
    x[rng.random(shape) < 0.15] = -np.inf
    if nan:
        x[rng.random(shape) < 0.03] = np.nan
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("H, W", [(11, 12), (12, 13), (9, 64), (10, 67), (7, 112), (5, 31)])
@pytest.mark.parametrize("p", [0, 1])
def test_max_backward_3x3_stride2_is_bit_identical_to_in_order_adds(dtype, H, W, p):
    """The 3x3 stride-2 gradient kernel (rows split by parity, vector window maxima,
    per-row accumulators) keeps today's bits: the same sums as adding each g at its
    ``return_indices`` position in output order, from zero (-0.0 in g becomes +0.0), with
    ties, -inf, NaN rows beside NaN-free ones, odd widths, ceil_mode; and the same bytes
    as the general kernel (a 3x3 stride-1 window path is not involved: called directly)."""
    from fastconv.cpu import pool as cpu_pool

    rng = np.random.default_rng(H * 100 + W + p)
    for nan in (False, True):
        x = _tricky(rng, (2, 3, H, W), dtype, nan)
        for ceil in (False, True):
            y, idx = fc.max_pool2d(x, 3, 2, p, ceil_mode=ceil, return_indices=True)
            g = rng.standard_normal(y.shape).astype(dtype)
            g[rng.random(g.shape) < 0.1] = -0.0
            got = fc.grad.max_pool2d(g, x, 3, 2, p, ceil_mode=ceil)
            want = _max_backward_reference(g, x, idx)
            assert got.tobytes() == want.tobytes(), (nan, ceil)
            general = np.empty((6, 1, 1, H, W), dtype)
            ints = lambda v: np.array(v, np.int64)  # noqa: E731
            nbuf = cpu_pool._row_buffer(W, y.shape[3], 3, 2, p, 1)
            cpu_pool.max_pool_grad(x.reshape(6, 1, 1, H, W), g.reshape(6, 1, 1, *y.shape[2:]),
                                   general.reshape(6, -1), ints((1, 3, 3)), ints((1, 2, 2)),
                                   ints((0, p, p)), ints((1, 1, 1)), nbuf,
                                   np.empty(0, np.int64), 0, 6)
            assert got.tobytes() == general.reshape(x.shape).tobytes(), (nan, ceil)


@given(st.integers(1, 40), st.integers(1, 80), st.sampled_from([0, 1]), st.booleans(),
       st.booleans(), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**16))
def test_max_backward_3x3_stride2_matches_in_order_adds(H, W, p, ceil, nan, dtype, seed):
    """Hypothesis: any plane size (widths below and above a vector block, planes of one
    row or column), both paddings, ceil_mode, NaN or not: bytes equal to the in-order adds;
    a 3-D pooling with a depth-1 window takes the same kernel per depth plane."""
    assume(H + 2 * p >= 3 and W + 2 * p >= 3)
    rng = np.random.default_rng(seed)
    x = _tricky(rng, (1, 2, H, W), dtype, nan)
    y, idx = fc.max_pool2d(x, 3, 2, p, ceil_mode=ceil, return_indices=True)
    g = rng.standard_normal(y.shape).astype(dtype)
    got = fc.grad.max_pool2d(g, x, 3, 2, p, ceil_mode=ceil)
    assert got.tobytes() == _max_backward_reference(g, x, idx).tobytes()
    x3 = np.stack([x, x[:, ::-1]], axis=2)  # (1, 2, 2, H, W)
    y3, idx3 = fc.max_pool3d(x3, (1, 3, 3), (1, 2, 2), (0, p, p), ceil_mode=ceil,
                             return_indices=True)
    g3 = rng.standard_normal(y3.shape).astype(dtype)
    got3 = fc.grad.max_pool3d(g3, x3, (1, 3, 3), (1, 2, 2), (0, p, p), ceil_mode=ceil)
    assert got3.tobytes() == _max_backward_reference(g3, x3, idx3).tobytes()


@given(st.integers(1, 40), st.integers(1, 80), st.sampled_from([0, 1]), st.booleans(),
       st.booleans(), st.sampled_from([np.float32, np.float64]), st.booleans(),
       st.integers(0, 2**16))
def test_max_pool_layer_3x3_stride2_codes_match_the_functions(H, W, p, ceil, nan, dtype,
                                                              batched, seed):
    """Hypothesis: MaxPool2d(3, 2, p) keeps a uint8 code per window instead of x; its
    forward has max_pool2d's bytes (-0.0 beside 0.0 included: the same comparisons in
    the same order), its backward grad.max_pool2d's bytes (ties, -inf, NaN, -0.0 in g,
    edges, odd sizes, ceil_mode), and neither changes when x changes after forward."""
    assume(H + 2 * p >= 3 and W + 2 * p >= 3)
    rng = np.random.default_rng(seed)
    x = _tricky(rng, (2, 3, H, W) if batched else (3, H, W), dtype, nan)
    x[rng.random(x.shape) < 0.1] = -0.0
    layer = fc.MaxPool2d(3, stride=2, padding=p, ceil_mode=ceil)
    keep = x.copy()
    y = layer(x)
    assert layer._codes is not None and layer._codes[0].dtype == np.uint8
    want = fc.max_pool2d(keep, 3, 2, p, ceil_mode=ceil)
    assert y.shape == want.shape and y.tobytes() == want.tobytes()
    g = rng.standard_normal(y.shape).astype(dtype)
    g[rng.random(g.shape) < 0.1] = -0.0
    x[...] = 7  # (the layer holds no view of x)
    got = layer.backward(g)
    assert got.dtype == dtype
    assert got.tobytes() == fc.grad.max_pool2d(g, keep, 3, 2, p, ceil_mode=ceil).tobytes()
    assert layer.backward(g).tobytes() == got.tobytes()  # (again: the codes are kept)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, p", [((2, 5, 112, 112), 1), ((1, 3, 57, 67), 0),
                                      ((1, 2, 6, 200), 1)])
def test_max_pool_layer_3x3_stride2_codes_on_larger_planes(dtype, shape, p):
    """Whole vector blocks and their remainders (widths 67, 112, 200), rows with a NaN
    among NaN-free ones, and a plane of all -inf: the layer's bytes equal the
    functions'."""
    rng = np.random.default_rng(sum(shape) + p)
    x = _tricky(rng, shape, dtype, False)
    x[0, 0, 3, 5] = np.nan
    x[0, -1] = -np.inf
    layer = fc.MaxPool2d(3, 2, p)
    y = layer(x)
    assert y.tobytes() == fc.max_pool2d(x, 3, 2, p).tobytes()
    g = rng.standard_normal(y.shape).astype(dtype)
    assert layer.backward(g).tobytes() == fc.grad.max_pool2d(g, x, 3, 2, p).tobytes()
