"""The rest of the pooling family: adaptive avg/max pooling, max-unpooling, Lp pooling,
unfold/fold, forward and backward. Hand cases, NumPy loop oracles, adjoint identities,
then PyTorch (values, indices, autograd gradients) over Hypothesis shapes, including
output sizes that do not divide the input, outputs larger than the input and empty
batches; every error message."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_torch
from hypothesis import given
from hypothesis import strategies as st
from reference import adaptive_pool_nd, conv_nd, unfold_loop

import fastconv as fc

ADAPTIVE = {
    ("avg", 1): fc.adaptive_avg_pool1d, ("avg", 2): fc.adaptive_avg_pool2d,
    ("avg", 3): fc.adaptive_avg_pool3d, ("max", 1): fc.adaptive_max_pool1d,
    ("max", 2): fc.adaptive_max_pool2d, ("max", 3): fc.adaptive_max_pool3d,
}
ADAPTIVE_GRAD = {
    ("avg", 1): fc.grad.adaptive_avg_pool1d, ("avg", 2): fc.grad.adaptive_avg_pool2d,
    ("avg", 3): fc.grad.adaptive_avg_pool3d, ("max", 1): fc.grad.adaptive_max_pool1d,
    ("max", 2): fc.grad.adaptive_max_pool2d, ("max", 3): fc.grad.adaptive_max_pool3d,
}
UNPOOL = {1: fc.max_unpool1d, 2: fc.max_unpool2d, 3: fc.max_unpool3d}
UNPOOL_GRAD = {1: fc.grad.max_unpool1d, 2: fc.grad.max_unpool2d, 3: fc.grad.max_unpool3d}
MAXPOOL = {1: fc.max_pool1d, 2: fc.max_pool2d, 3: fc.max_pool3d}
LP = {1: fc.lp_pool1d, 2: fc.lp_pool2d, 3: fc.lp_pool3d}
LP_GRAD = {1: fc.grad.lp_pool1d, 2: fc.grad.lp_pool2d, 3: fc.grad.lp_pool3d}


def _torch():
    import torch
    import torch.nn.functional as F

    return torch, F


# --- hand cases ------------------------------------------------------------------------


def test_adaptive_windows_overlap_when_not_dividing():
    # windows [0, 3) and [2, 5): the middle element belongs to both
    np.testing.assert_array_equal(fc.adaptive_avg_pool1d([[1.0, 2, 3, 4, 5]], 2), [[2, 4]])
    y, i = fc.adaptive_max_pool1d([[1.0, 5, 2, 0, 3]], 2, return_indices=True)
    np.testing.assert_array_equal(y, [[5, 3]])
    np.testing.assert_array_equal(i, [[1, 4]])
    g = fc.grad.adaptive_avg_pool1d([[3.0, 6.0]], np.zeros((1, 5)), 2)
    np.testing.assert_allclose(g, [[1, 1, 3, 2, 2]])


def test_global_average_pooling_and_none_entries():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    np.testing.assert_allclose(fc.adaptive_avg_pool2d(x, 1), x.mean(axis=(2, 3), keepdims=True),
                               rtol=1e-6)
    y = fc.adaptive_avg_pool2d(x, (None, 1))
    np.testing.assert_allclose(y, x.mean(axis=3, keepdims=True), rtol=1e-6)
    assert y.dtype == np.float32
    assert fc.adaptive_max_pool2d(x, (None, None)).tolist() == x.tolist()


def test_output_larger_than_input_repeats_elements():
    x = np.array([[[1.0, 2.0]]])
    np.testing.assert_array_equal(fc.adaptive_avg_pool1d(x, 4), [[[1, 1, 2, 2]]])
    y, i = fc.adaptive_max_pool1d(x, 3, return_indices=True)
    np.testing.assert_array_equal(y, [[[1, 2, 2]]])  # windows [0,1) [0,2) [1,2)
    np.testing.assert_array_equal(i, [[[0, 1, 1]]])


def test_adaptive_max_ties_first_nan_wins():
    y, i = fc.adaptive_max_pool1d([[7.0, 7.0, 1.0, np.nan]], 2, return_indices=True)
    assert y[0, 0] == 7 and i[0, 0] == 0
    assert np.isnan(y[0, 1]) and i[0, 1] == 3


def test_unfold_fold_hand_case_and_conv_as_matmul():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    cols = fc.unfold(x, 2)
    np.testing.assert_array_equal(cols[0], [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7],
                                            [4, 5, 7, 8]])
    np.testing.assert_array_equal(fc.fold(np.ones((1, 4, 4)), (3, 3), 2)[0, 0],
                                  [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6))
    w = rng.standard_normal((4, 3, 3, 2))
    y = (w.reshape(4, -1) @ fc.unfold(x, (3, 2), padding=1, stride=2)).reshape(2, 4, 4, 4)
    np.testing.assert_allclose(y, fc.conv2d(x, w, padding=1, stride=2), atol=1e-12)


def test_max_unpool_inverts_max_pool_at_the_maxima():
    x = np.array([[[[1.0, 2.0, 0.0, 9.0], [4.0, 3.0, 5.0, 1.0]]]])
    y, idx = fc.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(fc.max_unpool2d(y, idx, 2),
                                  [[[[0, 0, 0, 9], [4, 0, 0, 0]]]])
    g = np.arange(8.0).reshape(1, 1, 2, 4)
    np.testing.assert_array_equal(fc.grad.max_unpool2d(g, y, idx, 2), [[[[4.0, 3.0]]]])


def test_lp_pool_hand_values_zero_and_negative_sums():
    np.testing.assert_allclose(fc.lp_pool1d([[3.0, 4.0, 0.0, 0.0]], 2, 2), [[5, 0]])
    # p = 1: sum pooling keeps the sign; p = 3 with a negative sum: NaN (pow of a negative)
    np.testing.assert_allclose(fc.lp_pool1d([[-1.0, -2.0]], 1, 2), [[-3]])
    with np.errstate(invalid="ignore"):
        assert np.isnan(fc.lp_pool1d([[-1.0, -2.0]], 3, 2)[0, 0])
    g = fc.grad.lp_pool1d([[1.0]], [[0.0, 0.0]], 2, 2)
    np.testing.assert_array_equal(g, [[0, 0]])  # zero sum: zero gradient, as autograd


# --- NumPy oracles and adjoint identities ----------------------------------------------


@given(nsp=st.integers(1, 3), data=st.data())
def test_adaptive_matches_loop_oracle(nsp, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    spatial = tuple(data.draw(st.integers(1, 6)) for _ in range(nsp))
    out = tuple(data.draw(st.integers(1, 7)) for _ in range(nsp))
    x = rng.standard_normal((2, 2) + spatial)
    for kind in ("avg", "max"):
        want, widx = adaptive_pool_nd(x, out, kind)
        if kind == "avg":
            np.testing.assert_allclose(ADAPTIVE[kind, nsp](x, out), want, rtol=1e-12,
                                       atol=1e-12)
        else:
            y, idx = ADAPTIVE[kind, nsp](x, out, return_indices=True)
            np.testing.assert_array_equal(y, want)
            np.testing.assert_array_equal(idx, widx)


@given(nsp=st.integers(1, 3), data=st.data())
def test_adaptive_avg_backward_is_the_adjoint(nsp, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    spatial = tuple(data.draw(st.integers(1, 6)) for _ in range(nsp))
    out = tuple(data.draw(st.integers(1, 7)) for _ in range(nsp))
    x = rng.standard_normal((2, 3) + spatial)
    g = rng.standard_normal((2, 3) + out)
    lhs = np.vdot(fc.adaptive_avg_pool3d(x, out) if nsp == 3 else ADAPTIVE["avg", nsp](x, out),
                  g)
    rhs = np.vdot(x, ADAPTIVE_GRAD["avg", nsp](g, x, out))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10)


@given(data=st.data())
def test_unfold_matches_loop_and_fold_is_its_adjoint(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    k = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    d = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    p = (data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2)))
    s = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    H = data.draw(st.integers(max(1, d[0] * (k[0] - 1) + 1 - 2 * p[0]), 8))
    W = data.draw(st.integers(max(1, d[1] * (k[1] - 1) + 1 - 2 * p[1]), 8))
    x = rng.standard_normal((2, 3, H, W))
    cols = fc.unfold(x, k, d, p, s)
    np.testing.assert_array_equal(cols, unfold_loop(x, k, d, p, s))
    g = rng.standard_normal(cols.shape)
    folded = fc.fold(g, (H, W), k, d, p, s)
    np.testing.assert_allclose(np.vdot(cols, g), np.vdot(x, folded), rtol=1e-10)
    np.testing.assert_allclose(fc.grad.unfold(g, x, k, d, p, s), folded)
    np.testing.assert_array_equal(fc.grad.fold(x, g, (H, W), k, d, p, s), cols)


def test_adaptive_max_gradient_by_finite_differences():
    rng = np.random.default_rng(3)
    x = rng.permutation(60).reshape(1, 3, 4, 5).astype(np.float64)  # distinct: smooth
    g = rng.standard_normal((1, 3, 3, 2))
    gx = fc.grad.adaptive_max_pool2d(g, x, (3, 2))
    eps = 1e-6
    for i in rng.choice(x.size, 10, replace=False):
        e = np.zeros(x.size)
        e[i] = eps
        e = e.reshape(x.shape)
        num = (np.vdot(fc.adaptive_max_pool2d(x + e, (3, 2)), g)
               - np.vdot(fc.adaptive_max_pool2d(x - e, (3, 2)), g)) / (2 * eps)
        np.testing.assert_allclose(gx.flat[i], num, atol=1e-6)


# --- PyTorch as an independent oracle --------------------------------------------------


@st.composite
def adaptive_cases(draw):
    nsp = draw(st.integers(1, 3))
    n = draw(st.sampled_from([0, 1, 2]))
    c = draw(st.integers(1, 3))
    spatial = tuple(draw(st.integers(1, 7 if nsp < 3 else 5)) for _ in range(nsp))
    out = tuple(draw(st.one_of(st.integers(1, 8), st.none())) for _ in range(nsp))
    unbatched = draw(st.booleans())
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return nsp, n, c, spatial, out, unbatched, dtype, draw(st.integers(0, 2**32 - 1))


@requires_torch
@pytest.mark.torch
@given(case=adaptive_cases())
def test_adaptive_against_torch(case):
    torch, F = _torch()
    nsp, n, c, spatial, out, unbatched, dtype, seed = case
    rng = np.random.default_rng(seed)
    shape = ((c,) if unbatched else (n, c)) + spatial
    x = rng.standard_normal(shape).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    tsize = out if nsp > 1 else (spatial[0] if out[0] is None else out[0])  # 1-D: no None
    for kind in ("avg", "max"):
        tf = getattr(F, f"adaptive_{kind}_pool{nsp}d")
        tx = torch.from_numpy(x).requires_grad_(True)
        if kind == "avg":
            ty = tf(tx, tsize)
            y = ADAPTIVE[kind, nsp](x, out)
        else:
            ty, ti = tf(tx, tsize, return_indices=True)
            y, idx = ADAPTIVE[kind, nsp](x, out, return_indices=True)
            np.testing.assert_array_equal(idx, ti.numpy())
        assert y.shape == tuple(ty.shape) and y.dtype == dtype
        np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
        g = rng.standard_normal(y.shape).astype(dtype)
        if ty.numel():
            ty.backward(torch.from_numpy(g))
            want = tx.grad.numpy()
        else:
            want = np.zeros_like(x)
        np.testing.assert_allclose(ADAPTIVE_GRAD[kind, nsp](g, x, out), want, **tol)


@st.composite
def unpool_cases(draw):
    nsp = draw(st.integers(1, 3))
    k = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    s = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    p = tuple(draw(st.integers(0, kk // 2)) for kk in k)
    spatial = tuple(draw(st.integers(max(1, kk - 2 * pp), 7 if nsp < 3 else 5))
                    for kk, pp in zip(k, p, strict=True))
    n = draw(st.sampled_from([0, 1, 2]))
    grow = tuple(draw(st.integers(0, ss - 1)) for ss in s)  # output_size within the range
    return nsp, n, k, s, p, spatial, grow, draw(st.integers(0, 2**32 - 1))


@requires_torch
@pytest.mark.torch
@given(case=unpool_cases())
def test_max_unpool_against_torch(case):
    torch, F = _torch()
    nsp, n, k, s, p, spatial, grow, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2) + spatial)
    tfp = getattr(F, f"max_pool{nsp}d")
    tv, ti = tfp(torch.from_numpy(x), k, s, p, return_indices=True)
    v, idx = MAXPOOL[nsp](x, k, s, p, return_indices=True)
    np.testing.assert_array_equal(idx, ti.numpy())
    pooled = v.shape[2:]
    default = tuple((m - 1) * ss + kk - 2 * pp for m, kk, ss, pp in zip(pooled, k, s, p,
                                                                        strict=True))
    size = tuple(dd + gg for dd, gg in zip(default, grow, strict=True))
    if min(size) < 1 or any(int(ix) >= np.prod(size) for ix in idx.reshape(-1)):
        return  # torch and fastconv both reject these (tested separately)
    tu = getattr(F, f"max_unpool{nsp}d")
    tx = torch.from_numpy(v).requires_grad_(True)
    ty = tu(tx, ti, k, s, p, output_size=size)
    y = UNPOOL[nsp](v, idx, k, s, p, output_size=size)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    g = rng.standard_normal(y.shape)
    if ty.numel():
        ty.backward(torch.from_numpy(g))
        want = tx.grad.numpy()
    else:
        want = np.zeros_like(v)
    np.testing.assert_array_equal(UNPOOL_GRAD[nsp](g, v, idx, k, s, p, output_size=size), want)


@st.composite
def lp_cases(draw):
    nsp = draw(st.integers(1, 3))
    k = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    s = draw(st.one_of(st.none(), st.tuples(*[st.integers(1, 3)] * nsp)))
    spatial = tuple(draw(st.integers(kk, 7 if nsp < 3 else 5)) for kk in k)
    ceil_mode = draw(st.booleans())
    norm = draw(st.sampled_from([1, 2, 3, 1.5, 2.5, 0.5, np.inf, -np.inf]))
    n = draw(st.sampled_from([0, 1, 2]))
    return nsp, n, k, s, spatial, ceil_mode, norm, draw(st.integers(0, 2**32 - 1))


@requires_torch
@pytest.mark.torch
@given(case=lp_cases())
def test_lp_pool_against_torch(case):
    torch, F = _torch()
    nsp, n, k, s, spatial, ceil_mode, norm, seed = case
    rng = np.random.default_rng(seed)
    # mixed signs, and whole zero windows (zero sums) in the first channel
    x = rng.standard_normal((n, 2) + spatial)
    x[:, 0] = np.where(rng.random(x[:, 0].shape) < 0.5, 0.0, x[:, 0])
    if 0 < norm < 1:
        x = np.abs(x) + 0.5  # p < 1: pow of zero has an infinite derivative
    if np.isinf(norm):
        x += rng.standard_normal(x.shape) * 1e-3  # no ties between |x| and |-x|
    tk = k if nsp > 1 else k[0]
    ts = s if (s is None or nsp > 1) else s[0]
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = getattr(F, f"lp_pool{nsp}d")(tx, norm, tk, ts, ceil_mode)
    with np.errstate(invalid="ignore"):
        y = LP[nsp](x, norm, k, s, ceil_mode)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(y.shape)
    if ty.numel():
        ty.backward(torch.from_numpy(g))
        want = tx.grad.numpy()
    else:
        want = np.zeros_like(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        got = LP_GRAD[nsp](g, x, norm, k, s, ceil_mode)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


@requires_torch
@pytest.mark.torch
@pytest.mark.parametrize("norm", [2, 3, 1, np.inf, -np.inf])
def test_lp_pool_zero_windows_match_torch_gradient(norm):
    torch, F = _torch()
    x = np.array([[[0.0, 0.0, 1.0, -1.0, -2.0, 0.5]]])
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = F.lp_pool1d(tx, norm, 2)
    ty.backward(torch.ones_like(ty))
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(fc.lp_pool1d(x, norm, 2), ty.detach().numpy())
        np.testing.assert_allclose(fc.grad.lp_pool1d(np.ones(ty.shape), x, norm, 2),
                                   tx.grad.numpy())


@requires_torch
@pytest.mark.torch
@given(data=st.data())
def test_unfold_fold_against_torch(data):
    torch, F = _torch()
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    k = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    d = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    p = (data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2)))
    s = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    H = data.draw(st.integers(max(1, d[0] * (k[0] - 1) + 1 - 2 * p[0]), 8))
    W = data.draw(st.integers(max(1, d[1] * (k[1] - 1) + 1 - 2 * p[1]), 8))
    lead = data.draw(st.sampled_from([(0, 2), (2, 3), (3,)]))
    x = rng.standard_normal(lead + (H, W)).astype(np.float32)
    tx = torch.from_numpy(x)
    cols = fc.unfold(x, k, d, p, s)
    np.testing.assert_array_equal(cols, F.unfold(tx, k, d, p, s).numpy())
    g = rng.standard_normal(cols.shape).astype(np.float32)
    np.testing.assert_allclose(fc.fold(g, (H, W), k, d, p, s),
                               F.fold(torch.from_numpy(g), (H, W), k, d, p, s).numpy(),
                               rtol=1e-5, atol=1e-5)


# --- layers ----------------------------------------------------------------------------


def test_layers_forward_backward():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 7))
    gap = fc.AdaptiveAvgPool2d((2, None))
    y = gap(x)
    assert y.shape == (2, 3, 2, 7)
    g = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(gap.backward(g), fc.grad.adaptive_avg_pool2d(g, x, (2, None)))
    amp = fc.AdaptiveMaxPool2d(3, return_indices=True)
    v, i = amp(x)
    np.testing.assert_array_equal(v, fc.adaptive_max_pool2d(x, 3))
    np.testing.assert_array_equal(amp.backward(np.ones_like(v)),
                                  fc.grad.adaptive_max_pool2d(np.ones_like(v), x, 3))
    pool, unpool = fc.MaxPool2d(2, return_indices=True), fc.MaxUnpool2d(2)
    v, i = pool(x)
    u = unpool(v, i, output_size=x.shape)
    assert u.shape == x.shape
    gu = rng.standard_normal(u.shape)
    np.testing.assert_array_equal(unpool.backward(gu),
                                  np.take_along_axis(gu.reshape(2, 3, -1),
                                                     i.reshape(2, 3, -1), 2).reshape(v.shape))
    with pytest.raises(RuntimeError, match=r"MaxUnpool2d.backward: call forward"):
        fc.MaxUnpool2d(2).backward(gu)


# --- errors (ValueError where PyTorch raises, naming the parameter) --------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: fc.adaptive_avg_pool2d(np.ones((2, 3, 0, 4)), 2), r"non-zero spatial sizes"),
        (lambda: fc.adaptive_avg_pool2d(np.ones((3, 4)), 2), r"x must be 4-D .* got 2-D"),
        (lambda: fc.adaptive_max_pool2d(np.ones((1, 3, 4)), (1, 2, 3)),
         r"output_size must be an int or a tuple of 2"),
        (lambda: fc.adaptive_avg_pool1d(np.ones((1, 3, 4)), -1), r"output_size must be >= 0"),
        (lambda: fc.grad.adaptive_avg_pool2d(np.ones((1, 1, 2, 3)), np.ones((1, 1, 4, 4)), 2),
         r"grad_output.shape=\(1, 1, 2, 3\) does not match"),
        (lambda: fc.max_unpool2d(np.ones((1, 1, 2, 2)), np.full((1, 1, 2, 2), 16), 2),
         r"invalid max index 16 in indices"),
        (lambda: fc.max_unpool2d(np.ones((1, 1, 2, 2)), np.zeros((1, 1, 2, 1), int), 2),
         r"indices must have the shape of x"),
        (lambda: fc.max_unpool2d(np.ones((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)), 2),
         r"indices must be an integer array"),
        (lambda: fc.max_unpool2d(np.ones((1, 1, 2, 2)), np.zeros((1, 1, 2, 2), int), 2,
                                 output_size=(6, 4)),
         r"invalid output_size \(6, 4\) \(dim 0 must be between 2 and 6"),
        (lambda: fc.max_unpool2d(np.ones((1, 1, 2, 2)), np.zeros((1, 1, 2, 2), int), 2,
                                 output_size=(4,)),
         r"output_size should be a sequence containing 2 or 4 elements"),
        (lambda: fc.max_unpool1d(np.ones((1, 2)), np.zeros((1, 2), int), 0),
         r"kernel_size must be >= 1"),
        (lambda: fc.unfold(np.ones((4, 4)), 2), r"x must be 4-D \(N, C, H, W\) or 3-D"),
        (lambda: fc.unfold(np.ones((1, 1, 2, 2)), 3), r"sliding blocks would be \(0, 0\)"),
        (lambda: fc.unfold(np.ones((1, 1, 4, 4)), 2, padding=-1), r"padding must be >= 0"),
        (lambda: fc.fold(np.ones((1, 5, 4)), 3, 2), r"positive multiple of the product"),
        (lambda: fc.fold(np.ones((1, 4, 5)), 3, 2),
         r"cols.shape\[-1\] must be the number of sliding blocks 2 \* 2 = 4, got 5"),
        (lambda: fc.lp_pool2d(np.ones((1, 1, 4, 4)), "2", 2), r"norm_type must be a real"),
        (lambda: fc.lp_pool2d(np.ones((1, 1, 1, 1)), 2, 2), r"lp_pool2d"),
    ],
)
def test_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_empty_batch_and_channels():
    assert fc.adaptive_avg_pool2d(np.ones((0, 3, 5, 5)), 2).shape == (0, 3, 2, 2)
    assert fc.adaptive_max_pool2d(np.ones((2, 0, 5, 5)), 2).shape == (2, 0, 2, 2)
    assert fc.adaptive_avg_pool2d(np.ones((2, 3, 5, 5)), (0, 2)).shape == (2, 3, 0, 2)
    assert fc.grad.adaptive_max_pool2d(np.ones((0, 3, 2, 2)), np.ones((0, 3, 5, 5)),
                                       2).shape == (0, 3, 5, 5)
    assert fc.max_unpool2d(np.ones((0, 3, 2, 2)), np.zeros((0, 3, 2, 2), int), 2).shape == (
        0, 3, 4, 4)
    assert fc.unfold(np.ones((0, 3, 5, 5)), 2).shape == (0, 12, 16)
    assert fc.fold(np.ones((0, 12, 16)), 5, 2).shape == (0, 3, 5, 5)
    assert fc.lp_pool2d(np.ones((0, 3, 4, 4)), 2, 2).shape == (0, 3, 2, 2)


def test_reference_conv_matches_unfold_product():
    """The README's claim with the NumPy oracle: conv2d == weight.reshape(K, -1) @ unfold."""
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 2, 2))
    y = (w.reshape(3, -1) @ fc.unfold(x, 2)).reshape(1, 3, 4, 4)
    np.testing.assert_allclose(y, conv_nd(x, w), atol=1e-12)


# --- command line ----------------------------------------------------------------------


def _cli(*args):
    from click.testing import CliRunner

    from fastconv_cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="fastconv")


def test_cli_pool_adaptive(tmp_path):
    x = np.arange(2 * 9 * 10, dtype=np.float32).reshape(2, 9, 10)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    r = _cli("pool", tmp_path / "x.npy", "--adaptive", "2x3", "--mode", "avg", "-o", out)
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(np.load(out), fc.adaptive_avg_pool2d(x, (2, 3)))
    r = _cli("pool", tmp_path / "x.npy", "--adaptive", "1")
    assert r.exit_code == 0
    assert "".join(r.output.split()) == "[[[89.]][[179.]]]"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("--adaptive", "2", "--stride", "2"), "Error: --stride cannot be used with --adaptive"),
        (("--adaptive", "2", "--size", "2"),
         "Error: give either --size (a window) or --adaptive (an output size), not both"),
        ((), "Error: Missing option '--size' (a window) or '--adaptive' (an output size)."),
        (("--adaptive", "2x2x2"), "Error: Invalid value for --adaptive: '2x2x2': expected "
                                  "HxW or N"),
    ],
)
def test_cli_pool_adaptive_errors(tmp_path, args, line):
    np.save(tmp_path / "x.npy", np.ones((1, 4, 4), np.float32))
    out = tmp_path / "y.npy"
    r = _cli("pool", tmp_path / "x.npy", *args, "-o", out)
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1] == line
    assert not out.exists()


def test_cli_shape_adaptive_layer():
    r = _cli("shape", "--input", "224x224", "--layer", "conv:k=7,s=2,p=3", "--layer",
             "pool:k=3,s=2,p=1", "--layer", "adaptive:7x7")
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1] == "224x224 -> 7x7"
    assert "39x39" in r.output and "32x32" in r.output  # receptive field and jump
    r = _cli("shape", "--input", "10x10", "--layer", "adaptive:zz")
    assert r.exit_code == 2
    assert "expected an adaptive layer like adaptive:7x7" in r.output


# --- Dask ------------------------------------------------------------------------------


def test_dask_adaptive_and_lp_are_lazy_and_match():
    da = pytest.importorskip("dask.array", reason="Dask not installed")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 11, 9)).astype(np.float32)
    dx = da.from_array(x, chunks=(2, 3, 4, 5))
    y = fc.adaptive_avg_pool2d(dx, (3, None))
    assert isinstance(y, da.Array) and y.shape == (3, 4, 3, 9)
    np.testing.assert_array_equal(y.compute(), fc.adaptive_avg_pool2d(x, (3, None)))
    v, i = fc.adaptive_max_pool2d(dx, 4, return_indices=True)
    wv, wi = fc.adaptive_max_pool2d(x, 4, return_indices=True)
    np.testing.assert_array_equal(v.compute(), wv)
    np.testing.assert_array_equal(i.compute(), wi)
    lp = fc.lp_pool2d(dx, 2, 3, 2)
    assert isinstance(lp, da.Array)
    np.testing.assert_allclose(lp.compute(), fc.lp_pool2d(x, 2, 3, 2), rtol=1e-6)
    # eager ones: NumPy out
    pv, pi = fc.max_pool2d(x, 3, return_indices=True)
    u = fc.max_unpool2d(da.from_array(pv), da.from_array(pi), 3, output_size=(11, 9))
    assert isinstance(u, np.ndarray)
    np.testing.assert_array_equal(u, fc.max_unpool2d(pv, pi, 3, output_size=(11, 9)))
    cols = fc.unfold(dx, 2, padding=1, stride=(2, 1))
    assert isinstance(cols, da.Array) and cols.chunks[1] == (12, 4)
    np.testing.assert_array_equal(cols.compute(), fc.unfold(x, 2, padding=1, stride=(2, 1)))
    folded = fc.fold(cols, (11, 9), 2, padding=1, stride=(2, 1))  # eager
    assert isinstance(folded, np.ndarray)
    np.testing.assert_array_equal(folded, fc.fold(cols.compute(), (11, 9), 2, padding=1,
                                                  stride=(2, 1)))


# --- determinism -----------------------------------------------------------------------


def test_bit_identical_for_any_thread_count():
    import numba

    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 5, 13, 11)).astype(np.float32)
    g = rng.standard_normal((3, 5, 4, 6)).astype(np.float32)
    v, idx = fc.max_pool2d(x, 3, 2, 1, return_indices=True)
    cols = fc.unfold(x, 3, 1, 1, 2)

    def run():
        return [fc.adaptive_avg_pool2d(x, (4, 6)), fc.adaptive_avg_pool2d(x, 1),
                fc.grad.adaptive_avg_pool2d(g, x, (4, 6)),
                fc.grad.adaptive_max_pool2d(g, x, (4, 6)),
                fc.max_unpool2d(v, idx, 3, 2, 1, output_size=(13, 11)),
                fc.fold(cols, (13, 11), 3, 1, 1, 2), fc.lp_pool2d(x, 2, 3, 2),
                fc.grad.lp_pool2d(np.ones_like(fc.lp_pool2d(x, 2, 3, 2)), x, 2, 3, 2)]

    before = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        many = run()
        numba.set_num_threads(1)
        one = run()
    finally:
        numba.set_num_threads(before)
    for a, b in zip(many, one, strict=True):
        np.testing.assert_array_equal(a, b)


@requires_torch
@pytest.mark.torch
@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_adaptive_max_ties_and_nans_against_torch(nsp):
    torch, F = _torch()
    rng = np.random.default_rng(nsp)
    spatial = (9, 7, 6)[:nsp] if nsp < 3 else (4, 5, 6)
    x = rng.integers(-2, 3, (2, 3) + spatial).astype(np.float64)  # many ties
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, 6, replace=False)] = np.nan
    for out in [(3, 4, 2)[:nsp], (10, 3, 7)[:nsp], (1,) * nsp]:
        tx = torch.from_numpy(x).requires_grad_(True)
        ty, ti = getattr(F, f"adaptive_max_pool{nsp}d")(tx, out if nsp > 1 else out[0],
                                                        return_indices=True)
        y, idx = ADAPTIVE["max", nsp](x, out, return_indices=True)
        np.testing.assert_array_equal(idx, ti.numpy())
        np.testing.assert_array_equal(y, ty.detach().numpy())
        g = rng.standard_normal(y.shape)
        ty.backward(torch.from_numpy(g))
        np.testing.assert_allclose(ADAPTIVE_GRAD["max", nsp](g, x, out), tx.grad.numpy(),
                                   rtol=1e-12)
