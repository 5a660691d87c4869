"""The library at its edges (issue 11): empty batches and channels, None, NumPy scalars,
integers beyond int64, PyTorch's pooling-padding rule and argument forms, SciPy's exact
direct sums, bool promotion, and layers that keep what backward needs.

Every test here failed before its fix; PyTorch (``torch==2.13.0``) is the oracle where
it answers, and where fastconv deliberately differs the test says so explicitly.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import requires_scipy, requires_torch
from reference import conv_nd, conv_transpose_nd, max_pool_backward_nd, max_pool_nd

import fastconv as fc
from fastconv import pool

MAX = {1: fc.max_pool1d, 2: fc.max_pool2d, 3: fc.max_pool3d}
AVG = {1: fc.avg_pool1d, 2: fc.avg_pool2d, 3: fc.avg_pool3d}
CONV = {1: fc.conv1d, 2: fc.conv2d, 3: fc.conv3d}
CONVT = {1: fc.conv_transpose1d, 2: fc.conv_transpose2d, 3: fc.conv_transpose3d}


def _torch():
    import torch
    import torch.nn.functional as F

    return torch, F


# --- empty batches and channels ----------------------------------------------------------


@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_pooling_an_empty_batch_gives_empty_results(nsp):
    x = np.zeros((0, 3) + (8,) * nsp, np.float32)
    want = (0, 3) + (4,) * nsp
    y, i = MAX[nsp](x, 2, return_indices=True)
    assert y.shape == i.shape == want and y.dtype == np.float32 and i.dtype == np.int64
    assert AVG[nsp](x, 2).shape == want
    g = np.zeros(want, np.float32)
    assert getattr(fc.grad, f"max_pool{nsp}d")(g, x, 2).shape == x.shape
    assert getattr(fc.grad, f"avg_pool{nsp}d")(g, x, 2).shape == x.shape
    assert MAX[nsp](x, 3, 2, 1, 2, True).shape == (0, 3) + (4,) * nsp


@requires_torch
@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_pooling_an_empty_batch_matches_torch(nsp):
    torch, F = _torch()
    x = np.zeros((0, 2) + (7,) * nsp)
    ty, ti = getattr(F, f"max_pool{nsp}d")(torch.from_numpy(x), 3, 2, 1, return_indices=True)
    y, i = MAX[nsp](x, 3, 2, 1, return_indices=True)
    assert y.shape == tuple(ty.shape) and i.shape == tuple(ti.shape)
    ta = getattr(F, f"avg_pool{nsp}d")(torch.from_numpy(x), 2, ceil_mode=True)
    assert AVG[nsp](x, 2, ceil_mode=True).shape == tuple(ta.shape)


@pytest.mark.parametrize("shape", [(2, 0, 8, 8), (0, 8, 8), (1, 2, 0, 8), (0, 0, 8, 8)])
def test_pooling_zero_channels_or_empty_plane_is_refused_as_in_torch(shape):
    x = np.zeros(shape)
    msg = (r"x must have at least one channel and a non-empty spatial extent \(only the "
           rf"batch axis may be empty, as in PyTorch\), got x.shape=\({shape[0]}, ")
    with pytest.raises(ValueError, match=r"max_pool2d: " + msg):
        fc.max_pool2d(x, 2, padding=1)
    with pytest.raises(ValueError, match=r"avg_pool2d: " + msg):
        fc.avg_pool2d(x, 2, padding=1)


@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_conv_of_an_empty_batch_is_empty(nsp):
    rng = np.random.default_rng(0)
    x = np.zeros((0, 4) + (6,) * nsp)
    w = rng.standard_normal((6, 2) + (3,) * nsp)
    b = rng.standard_normal(6)
    y = CONV[nsp](x, w, b, stride=2, padding=1, groups=2)
    assert y.shape == (0, 6) + (3,) * nsp
    convolve = {1: fc.convolve1d, 2: fc.convolve2d, 3: fc.convolve3d}[nsp]
    assert convolve(x, w, groups=2).shape == (0, 6) + (4,) * nsp
    g = np.zeros(y.shape)
    gi = getattr(fc.grad, f"conv{nsp}d_input")(x.shape, w, g, stride=2, padding=1, groups=2)
    assert gi.shape == x.shape
    gw = getattr(fc.grad, f"conv{nsp}d_weight")(x, w.shape, g, stride=2, padding=1, groups=2)
    np.testing.assert_array_equal(gw, np.zeros(w.shape))  # a sum over nothing
    np.testing.assert_array_equal(fc.grad.conv_bias(g), np.zeros(6))
    wt = rng.standard_normal((4, 3) + (3,) * nsp)
    assert CONVT[nsp](x, wt, None, 2, 1, 1).shape == (0, 3) + (12,) * nsp


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_conv_with_zero_input_channels_is_the_bias(padding_mode):
    # y[n, k, o] = bias[k] + (an empty sum): the bias broadcast, zeros without one
    x, w = np.zeros((2, 0, 7, 8), np.float32), np.zeros((4, 0, 3, 3), np.float32)
    b = np.arange(1, 5, dtype=np.float32)
    y = fc.conv2d(x, w, b, stride=2, padding=1, padding_mode=padding_mode)
    assert y.shape == (2, 4, 4, 4) and y.dtype == np.float32
    np.testing.assert_array_equal(y, np.broadcast_to(b[:, None, None], y.shape))
    np.testing.assert_array_equal(fc.conv2d(x, w, padding_mode=padding_mode, padding=1),
                                  np.zeros((2, 4, 7, 8)))
    np.testing.assert_array_equal(fc.conv2d(x[0], w, b, groups=2), conv_nd(x, w, b, groups=2)[0])
    gi = fc.grad.conv2d_input(x.shape, w, np.ones((2, 4, 5, 6)))
    assert gi.shape == x.shape
    assert fc.grad.conv2d_weight(x, w.shape, np.ones((2, 4, 5, 6))).shape == w.shape


@requires_torch
def test_torch_zero_input_channels_difference_is_explicit():
    # Documented deliberate difference: PyTorch 2.13 returns an (N, 0, ...) tensor that
    # drops the weight's K output channels; fastconv returns the K-channel bias.
    torch, F = _torch()
    x, w, b = np.zeros((2, 0, 8, 8)), np.zeros((4, 0, 3, 3)), np.arange(4.0)
    t = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b))
    assert tuple(t.shape) == (2, 0, 6, 6)
    assert fc.conv2d(x, w, b).shape == (2, 4, 6, 6)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: fc.conv2d(np.zeros((1, 3, 8, 8)), np.zeros((0, 3, 3, 3))),
         r"conv2d: weight has no output channels \(K=0\) \(x.shape=\(1, 3, 8, 8\)"),
        (lambda: fc.conv2d(np.zeros((1, 3, 0, 8)), np.zeros((2, 3, 3, 3)), padding=2),
         r"conv2d: x has an empty spatial axis \(x.shape=\(1, 3, 0, 8\)"),
        (lambda: fc.conv1d(np.zeros((1, 3, 8)), np.zeros((2, 3, 0))),
         r"conv1d: weight has an empty kernel axis \(x.shape=\(1, 3, 8\), "
         r"weight.shape=\(2, 3, 0\)\)"),
        (lambda: fc.conv_transpose2d(np.zeros((2, 0, 4, 4)), np.zeros((0, 2, 3, 3))),
         r"conv_transpose2d: x has no input channels \(C=0; PyTorch refuses them too\)"),
        (lambda: fc.conv_transpose1d(np.zeros((2, 3, 4)), np.zeros((3, 0, 3))),
         r"conv_transpose1d: weight has no output channels \(K=0\)"),
    ],
)
def test_empty_axes_pytorch_refuses_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@requires_torch
@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_empty_batch_conv_and_gradients_match_torch(nsp):
    torch, F = _torch()
    rng = np.random.default_rng(1)
    x = torch.zeros((0, 4) + (7,) * nsp, dtype=torch.float64, requires_grad=True)
    w = torch.from_numpy(rng.standard_normal((6, 2) + (3,) * nsp)).requires_grad_()
    b = torch.from_numpy(rng.standard_normal(6)).requires_grad_()
    y = getattr(F, f"conv{nsp}d")(x, w, b, stride=2, padding=1, groups=2)
    y.sum().backward()
    xn, wn = x.detach().numpy(), w.detach().numpy()
    ours = CONV[nsp](xn, wn, b.detach().numpy(), stride=2, padding=1, groups=2)
    assert ours.shape == tuple(y.shape)
    g = np.ones(ours.shape)
    np.testing.assert_array_equal(
        getattr(fc.grad, f"conv{nsp}d_weight")(xn, wn.shape, g, 2, 1, 1, 2), w.grad.numpy())
    np.testing.assert_array_equal(fc.grad.conv_bias(g), b.grad.numpy())
    t = getattr(F, f"conv_transpose{nsp}d")(x.detach(), w.detach()[:4], None, 2, 1, 1)
    assert CONVT[nsp](xn, wn[:4], None, 2, 1, 1).shape == tuple(t.shape)


# --- None, NumPy scalars, integers beyond int64 ------------------------------------------

X4, W3 = np.ones((1, 2, 6, 6)), np.ones((2, 2, 3, 3))


@pytest.mark.parametrize(
    "call, func, name",
    [
        (lambda: fc.conv2d(None, W3), "conv2d", "x"),
        (lambda: fc.conv2d(X4, None), "conv2d", "weight"),
        (lambda: fc.conv_transpose2d(None, W3), "conv_transpose2d", "x"),
        (lambda: fc.max_pool2d(None, 2), "max_pool2d", "x"),
        (lambda: fc.avg_pool1d(None, 2), "avg_pool1d", "x"),
        (lambda: fc.grad.max_pool2d(None, X4, 2), "max_pool2d_backward", "grad_output"),
        (lambda: fc.grad.avg_pool2d(np.ones((1, 2, 3, 3)), None, 2), "avg_pool2d_backward", "x"),
        (lambda: fc.grad.conv2d_input(X4.shape, None, np.ones((1, 2, 4, 4))),
         "conv2d_input", "weight"),
        (lambda: fc.grad.conv2d_weight(None, W3.shape, np.ones((1, 2, 4, 4))),
         "conv2d_weight", "input"),
        (lambda: fc.grad.conv_bias(None), "conv_bias", "grad_output"),
        (lambda: fc.corr2d(None, [[1.0]]), "corr2d", "X"),
        (lambda: fc.correlate2d([[1.0]], None), "correlate2d", "in2"),
        (lambda: fc.convolve2d(None, [[1.0]]), "convolve2d", "in1"),
        (lambda: fc.learn_kernel(None, np.ones((2, 2)), 2), "learn_kernel", "x"),
        (lambda: fc.Conv2d(2, 2, 3)(None), "conv2d", "x"),
    ],
)
def test_none_as_an_array_is_a_type_error_naming_it(call, func, name):
    with pytest.raises(TypeError, match=rf"^{func}: {name} must be an array, got None$"):
        call()


def test_numpy_scalars_are_accepted_everywhere():
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((1, 4, 6, 6)), rng.standard_normal((4, 2, 3, 3))
    i64, i32 = np.int64, np.int32
    np.testing.assert_array_equal(
        fc.conv_transpose2d(x, w, stride=i64(2), padding=i32(1), output_padding=i64(1),
                            groups=i64(2), dilation=(i64(1), 1)),
        fc.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1, groups=2))
    np.testing.assert_array_equal(
        fc.avg_pool2d(x, i64(2), stride=i32(1), padding=i64(1), divisor_override=i64(3)),
        fc.avg_pool2d(x, 2, stride=1, padding=1, divisor_override=3))
    np.testing.assert_array_equal(fc.max_pool2d(x, (i64(3), 2), dilation=i64(2)),
                                  fc.max_pool2d(x, (3, 2), dilation=2))
    gi = fc.grad.conv2d_input((i64(1), i64(4), 6, 6), w, np.ones((1, 4, 4, 4)), groups=i64(2))
    np.testing.assert_array_equal(gi, fc.grad.conv2d_input((1, 4, 6, 6), w, np.ones((1, 4, 4, 4)),
                                                           groups=2))
    layer = fc.Conv2d(i64(4), i64(4), i64(3), groups=i64(2), bias=np.True_, seed=0)
    assert layer.weight.shape == (4, 2, 3, 3) and layer.bias.shape == (4,)
    X = np.ones((6, 8))
    X[:, 2:6] = 0
    Y = fc.corr2d(X, [[1.0, -1.0]])
    for lr in (np.float32(0.03), np.float64(0.03), np.float16(0.03)):
        got = fc.learn_kernel(X, Y, (1, 2), lr=lr, epochs=i64(3), seed=0)
        want = fc.learn_kernel(X, Y, (1, 2), lr=float(lr), epochs=3, seed=0)
        np.testing.assert_array_equal(got.kernel, want.kernel)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: fc.conv2d(X4, W3, stride=np.True_), TypeError,
         r"conv2d: stride must be an int or a tuple of 2 ints, got np.True_"),
        (lambda: fc.conv2d(X4, W3, stride=True), TypeError,
         r"conv2d: stride must be an int or a tuple of 2 ints, got True"),
        (lambda: fc.conv2d(X4, W3, padding=(np.False_, 1)), ValueError,
         r"conv2d: padding must be an int or a tuple of 2 ints"),
        (lambda: fc.conv2d(X4, W3, groups=np.True_), ValueError,
         r"conv2d: groups must be an int >= 1, got np.True_"),
        (lambda: fc.conv_transpose2d(X4, W3, groups=np.True_), ValueError,
         r"conv_transpose2d: groups must be an int >= 1, got np.True_"),
        (lambda: fc.avg_pool2d(X4, 2, divisor_override=np.True_), ValueError,
         r"avg_pool2d: divisor_override must be None or a non-zero int, got np.True_"),
        (lambda: fc.Conv2d(np.True_, 2, 3), ValueError,
         r"Conv2d: in_channels must be an int >= 1, got np.True_"),
        (lambda: fc.learn_kernel(np.ones((3, 3)), np.ones((2, 2)), 2, lr=np.True_),
         ValueError, r"learn_kernel: lr must be a finite number > 0, got np.True_"),
        (lambda: fc.learn_kernel(np.ones((3, 3)), np.ones((2, 2)), 2, epochs=np.True_),
         ValueError, r"learn_kernel: epochs must be an int >= 0, got np.True_"),
    ],
)
def test_numpy_bools_are_refused_like_bools(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


BIG = [2**63, 2**64, 10**30]


@pytest.mark.parametrize("big", BIG)
@pytest.mark.parametrize(
    "call, name",
    [
        (lambda v: fc.conv2d(X4, W3, stride=v), "stride"),
        (lambda v: fc.conv2d(X4, W3, stride=(1, v)), "stride"),
        (lambda v: fc.conv2d(X4, W3, padding=v), "padding"),
        (lambda v: fc.conv2d(X4, W3, padding=((0, v), (1, 1))), "padding"),
        (lambda v: fc.conv2d(X4, W3, dilation=v), "dilation"),
        (lambda v: fc.conv2d(X4, W3, groups=v), "groups"),
        (lambda v: fc.conv_transpose2d(X4, W3, stride=v), "stride"),
        (lambda v: fc.conv_transpose2d(X4, W3, padding=(v, 0)), "padding"),
        (lambda v: fc.conv_transpose2d(X4, W3, output_padding=v), "output_padding"),
        (lambda v: fc.conv_transpose2d(X4, W3, groups=v), "groups"),
        (lambda v: fc.max_pool2d(X4, v), "kernel_size"),
        (lambda v: fc.max_pool2d(X4, 2, stride=v), "stride"),
        (lambda v: fc.max_pool2d(X4, 2, padding=v), "padding"),
        (lambda v: fc.max_pool2d(X4, 2, dilation=v), "dilation"),
        (lambda v: fc.avg_pool2d(X4, (2, v)), "kernel_size"),
        (lambda v: fc.avg_pool2d(X4, 2, divisor_override=v), "divisor_override"),
        (lambda v: fc.grad.conv2d_input((1, 2, v, 6), W3, np.ones((1, 2, 4, 4))), "input_size"),
        (lambda v: fc.grad.max_pool2d(np.ones((1, 2, 3, 3)), X4, 2, stride=v), "stride"),
        (lambda v: fc.output_shape((8, 8), 3, padding=v), "padding"),
        (lambda v: fc.Conv2d(2, 2, v), "kernel_size"),
        (lambda v: fc.Conv2d(2, v, 3), "out_channels"),
    ],
)
def test_integers_beyond_int64_are_a_value_error_naming_the_parameter(call, name, big):
    with pytest.raises(ValueError, match=rf"^\w+: {name} must be"):
        call(big)


def test_impossible_sizes_are_refused_before_any_allocation():
    with pytest.raises(ValueError, match=r"conv2d: the padded input would have shape "
                                         r"\(1, 2, 1099511627782, 1099511627782\), more than "
                                         r"2\*\*59 elements; check padding"):
        fc.conv2d(X4, W3, padding=2**39)
    with pytest.raises(ValueError, match=r"conv_transpose2d: the output would have shape"):
        fc.conv_transpose2d(X4, W3, stride=2**40, output_padding=2**39)


# --- max pooling: PyTorch's padding rule, and PyTorch's answer everywhere ----------------


@pytest.mark.parametrize(
    "k, d, p", [(3, 2, 2), (2, 3, 2), (2, 4, 2), (1, 3, 1), (4, 1, 3), ((2, 3), 1, (1, 2))]
)
def test_max_pool_padding_is_at_most_half_the_kernel_as_in_pytorch(k, d, p):
    x = np.zeros((1, 1, 9, 9))
    with pytest.raises(ValueError, match=r"max_pool2d: padding=\(\d, \d\) must be at most "
                                         r"half the window, kernel_size // 2 = "):
        fc.max_pool2d(x, k, 1, p, d)
    with pytest.raises(ValueError, match=r"max_pool2d_backward: padding="):
        fc.grad.max_pool2d(np.zeros((1, 1, 9, 9)), x, k, 1, p, d)


def _max_configs():
    """Every 1-D configuration PyTorch accepts in a small grid (k, s, d <= 3, n <= 6)."""
    from fastconv._shapes import pool_empty_window, pool_out

    out = []
    for k, s, d, ceil, n in itertools.product((1, 2, 3), (1, 2, 3), (1, 2, 3), (False, True),
                                              (1, 2, 3, 5, 6)):
        for p in range(k // 2 + 1):
            o = pool_out(n, k, s, p, d, ceil)
            if o >= 1 and pool_empty_window(n, k, s, p, d, o) is None:
                out.append((n, k, s, p, d, ceil))
    return out


@requires_torch
def test_max_pool_matches_torch_on_every_accepted_configuration():
    torch, F = _torch()
    rng = np.random.default_rng(5)
    configs = _max_configs()
    assert len(configs) > 300
    for n, k, s, p, d, ceil in configs:
        x = np.round(rng.standard_normal((2, 2, n)), 0)  # ties
        xt = torch.from_numpy(x).requires_grad_()
        ty, ti = F.max_pool1d(xt, k, s, p, d, ceil, return_indices=True)
        g = rng.standard_normal(tuple(ty.shape))
        ty.backward(torch.from_numpy(g))
        y, i = fc.max_pool1d(x, k, s, p, d, ceil, return_indices=True)
        where = f"n={n} k={k} s={s} p={p} d={d} ceil={ceil}"
        np.testing.assert_array_equal(y, ty.detach().numpy(), err_msg=where)
        np.testing.assert_array_equal(i, ti.numpy(), err_msg=where)
        np.testing.assert_array_equal(fc.grad.max_pool1d(g, x, k, s, p, d, ceil),
                                      xt.grad.numpy(), err_msg=where)


@requires_torch
@pytest.mark.parametrize(
    "nsp, shape, k, s, p, d, ceil",
    [
        (2, (2, 3, 7, 5), (3, 2), (2, 1), (1, 1), (2, 3), True),
        (2, (1, 2, 7, 9), 3, 1, 1, 3, False),
        (3, (1, 2, 5, 4, 6), (3, 2, 3), (2, 1, 2), 1, (1, 2, 1), True),
        (3, (2, 1, 3, 7, 4), 2, 1, 1, 2, False),
    ],
)
def test_dilated_max_pool_matches_torch_values_indices_gradients(nsp, shape, k, s, p, d, ceil):
    torch, F = _torch()
    x = np.round(np.random.default_rng(6).standard_normal(shape), 1)
    xt = torch.from_numpy(x).requires_grad_()
    ty, ti = getattr(F, f"max_pool{nsp}d")(xt, k, s, p, d, ceil, return_indices=True)
    g = np.random.default_rng(7).standard_normal(tuple(ty.shape))
    ty.backward(torch.from_numpy(g))
    y, i = MAX[nsp](x, k, s, p, d, ceil, return_indices=True)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(i, ti.numpy())
    np.testing.assert_array_equal(getattr(fc.grad, f"max_pool{nsp}d")(g, x, k, s, p, d, ceil),
                                  xt.grad.numpy())
    np.testing.assert_array_equal(y, max_pool_nd(x, k, s, p, d, ceil)[0])
    np.testing.assert_allclose(getattr(fc.grad, f"max_pool{nsp}d")(g, x, k, s, p, d, ceil),
                               max_pool_backward_nd(g, x, k, s, p, d, ceil))


@pytest.mark.parametrize(
    "nsp, shape, k, d, p",
    [(1, (1, 1, 1), 2, 2, 1), (3, (1, 1, 1, 4, 4), 2, 2, 1), (2, (1, 2, 1, 9), 2, 2, 1)],
)
def test_max_pool_window_entirely_in_padding_is_refused(nsp, shape, k, d, p):
    # PyTorch accepts these, returns -inf and an index outside the plane, and its backward
    # writes outside the gradient (a double free in torch 2.13's max_pool3d): refused here.
    with pytest.raises(ValueError, match=rf"max_pool{nsp}d: window 0 of spatial axis 0 lies "
                                         r"entirely in the padding"):
        MAX[nsp](np.zeros(shape), k, 1, p, d, return_indices=True)


# --- PyTorch argument forms --------------------------------------------------------------


@requires_torch
def test_one_element_tuples_broadcast_as_in_pytorch():
    torch, F = _torch()
    rng = np.random.default_rng(8)
    x2, w2 = rng.standard_normal((1, 2, 7, 8)), rng.standard_normal((3, 2, 3, 3))
    x3, w3 = rng.standard_normal((1, 2, 5, 6, 7)), rng.standard_normal((3, 2, 2, 3, 2))
    T = torch.from_numpy
    for kw in ({"padding": (1,)}, {"stride": (2,)}, {"dilation": (2,)},
               {"stride": [2], "padding": (1,), "dilation": (1,)}):
        np.testing.assert_allclose(fc.conv2d(x2, w2, **kw), F.conv2d(T(x2), T(w2), **kw),
                                   atol=1e-12)
        np.testing.assert_allclose(fc.conv3d(x3, w3, **kw), F.conv3d(T(x3), T(w3), **kw),
                                   atol=1e-12)
    kw = {"stride": (2,), "padding": (1,), "output_padding": (1,), "dilation": (1,)}
    np.testing.assert_allclose(fc.conv_transpose2d(x2, w2.swapaxes(0, 1), **kw),
                               F.conv_transpose2d(T(x2), T(w2.swapaxes(0, 1)), **kw), atol=1e-12)
    for nsp, x in ((2, x2), (3, x3)):
        for kw in ({"kernel_size": (2,)}, {"kernel_size": 2, "stride": ()},
                   {"kernel_size": (3,), "stride": [], "padding": (1,)},
                   {"kernel_size": 2, "stride": (1,), "padding": (1,), "dilation": (2,)}):
            ty, ti = getattr(F, f"max_pool{nsp}d")(T(x), return_indices=True, **kw)
            y, i = MAX[nsp](x, return_indices=True, **kw)
            np.testing.assert_array_equal(y, ty.numpy())
            np.testing.assert_array_equal(i, ti.numpy())
            kw.pop("dilation", None)
            np.testing.assert_allclose(AVG[nsp](x, **kw), getattr(F, f"avg_pool{nsp}d")(T(x), **kw),
                                       atol=1e-12)
    assert fc.grad.max_pool2d(np.ones((1, 2, 3, 4)), x2, 2, stride=()).shape == x2.shape


def test_one_element_tuples_broadcast():
    x, w = np.ones((1, 1, 7, 8)), np.ones((1, 1, 3, 3))
    np.testing.assert_array_equal(fc.conv2d(x, w, padding=(1,), stride=(2,)),
                                  fc.conv2d(x, w, padding=1, stride=2))
    assert fc.max_pool3d(np.ones((1, 1, 4, 6, 8)), (2,), stride=()).shape == (1, 1, 2, 3, 4)
    assert fc.output_shape((8, 8), (3,), padding=(1,)) == (8, 8)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: fc.conv2d(X4, W3, stride=()), r"conv2d: stride must be an int or a tuple of 2 "
                                               r"ints, got \(\)"),
        (lambda: fc.conv2d(X4, W3, padding=()), r"conv2d: padding must be an int or a tuple"),
        (lambda: fc.conv3d(np.ones((1, 1, 4, 4, 4)), np.ones((1, 1, 2, 2, 2)), stride=(1, 2)),
         r"conv3d: stride must be an int or a tuple of 3 ints, got \(1, 2\)"),
        (lambda: fc.max_pool2d(X4, ()), r"max_pool2d: kernel_size must be an int or a tuple of "
                                         r"2 ints, got \(\)"),
        (lambda: fc.max_pool2d(X4, 2, padding=()), r"max_pool2d: padding must be an int"),
        (lambda: fc.max_pool2d(X4, (2, 3), stride=(2, 3, 4)), r"max_pool2d: stride must be"),
    ],
)
def test_argument_forms_pytorch_refuses_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- SciPy: always the direct sum --------------------------------------------------------


@requires_scipy
@pytest.mark.parametrize("func", ["correlate2d", "convolve2d"])
def test_scipy_dropins_keep_exact_zeros_with_large_kernels(func):
    # SciPy's own firwin_2d impulse-response test: a 31x31 (961-tap) kernel, where the
    # engine's "auto" picks the FFT (exact zeros became ~1e-17).
    from scipy import signal

    rng = np.random.default_rng(9)
    taps = rng.standard_normal((31, 31))
    impulse = np.zeros((63, 63))
    impulse[31, 31] = 1
    ours = getattr(fc, func)(impulse, taps, mode="same")
    ref = getattr(signal, func)(impulse, taps, mode="same")
    zero = ref == 0
    assert zero.sum() > 2000
    np.testing.assert_array_equal(ours[zero], 0.0)
    np.testing.assert_array_equal(ours, ref)  # one nonzero product per output: exact


@requires_scipy
def test_scipy_firwin_2d_impulse_response_is_exact():
    from scipy import signal

    if not hasattr(signal, "firwin_2d"):
        pytest.skip("scipy.signal.firwin_2d needs SciPy >= 1.15")
    taps = signal.firwin_2d((31, 31), ("hamming", "hamming"), fc=0.4)
    impulse = np.zeros((63, 63))
    impulse[31, 31] = 1
    response = fc.convolve2d(impulse, taps, mode="same")
    np.testing.assert_array_equal(response, signal.convolve2d(impulse, taps, mode="same"))
    np.testing.assert_array_equal(response[16:47, 16:47], taps)


def test_scipy_dropins_never_run_fft_or_gemm(monkeypatch):
    import fastconv._algorithms as alg
    import fastconv._run as conv_module

    real = alg.correlation_core
    seen = []

    def spy(backend_name, be, algorithm, plan):
        seen.append(algorithm)
        return real(backend_name, be, algorithm, plan)

    monkeypatch.setattr(alg, "correlation_core", spy)
    monkeypatch.setattr(conv_module, "correlation_core", spy)
    img, k = np.ones((40, 40)), np.ones((25, 25))
    for boundary in ("fill", "wrap", "symm"):
        fc.correlate2d(img, k, mode="same", boundary=boundary)
        fc.convolve2d(img, k, boundary=boundary, fillvalue=2)
    assert seen and set(seen) == {"direct"}


# --- the contract: bool promotion, layers ------------------------------------------------


def test_bool_mixed_with_a_number_is_promoted_as_numpy_does():
    rng = np.random.default_rng(10)
    xb = rng.random((1, 2, 6, 6)) > 0.5
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    y = fc.conv2d(xb, w)
    assert y.dtype == np.result_type(xb, w, np.float32) == np.float32
    np.testing.assert_array_equal(y, fc.conv2d(xb.astype(np.float32), w))
    np.testing.assert_allclose(y, conv_nd(xb.astype(np.float64), w), rtol=1e-5, atol=1e-5)
    wb = w > 0
    np.testing.assert_array_equal(fc.conv2d(xb.astype(np.uint8), wb),
                                  fc.conv2d(xb.astype(np.float32), wb.astype(np.float32)))
    np.testing.assert_array_equal(fc.conv2d(np.ones((1, 2, 4, 4)), w, bias=np.ones(3, bool)),
                                  fc.conv2d(np.ones((1, 2, 4, 4)), w, bias=np.ones(3)))
    img = rng.random((5, 6)) > 0.5
    np.testing.assert_array_equal(fc.correlate2d(img, [[1.0, -1.0]]),
                                  fc.correlate2d(img.astype(float), [[1.0, -1.0]]))
    np.testing.assert_array_equal(fc.corr2d(img, np.ones((2, 2))),
                                  fc.corr2d(img.astype(float), np.ones((2, 2))))
    wt = rng.standard_normal((2, 3, 2, 2))
    np.testing.assert_array_equal(fc.conv_transpose2d(xb, wt),
                                  conv_transpose_nd(xb.astype(np.float64), wt))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda b: fc.conv2d(b((1, 1, 3, 3)), b((1, 1, 2, 2))),
         r"conv2d: x and weight have dtype bool; expected a real numeric dtype"),
        (lambda b: fc.conv2d(b((1, 1, 3, 3)), b((1, 1, 2, 2)), b(1)),
         r"conv2d: x and weight and bias have dtype bool"),
        (lambda b: fc.max_pool2d(b((1, 1, 4, 4)), 2), r"max_pool2d: x has dtype bool"),
        (lambda b: fc.correlate2d(b((3, 3)), b((2, 2))), r"correlate2d: in1 and in2 have dtype"),
        (lambda b: fc.corr2d(b((3, 3)), b((2, 2))), r"corr2d: X and K have dtype bool"),
        (lambda b: fc.grad.conv_bias(b((1, 2, 3))), r"conv_bias: grad_output has dtype bool"),
        (lambda b: fc.learn_kernel(b((3, 3)), b((2, 2)), 2), r"learn_kernel: x and y have dtype"),
    ],
)
def test_all_bool_inputs_are_a_type_error(call, match):
    with pytest.raises(TypeError, match=match):
        call(lambda shape: np.ones(shape, bool))


@pytest.mark.parametrize("layer_cls, shape", [(fc.Conv1d, (2, 2, 9)), (fc.Conv2d, (2, 2, 7, 6)),
                                              (fc.Conv3d, (1, 2, 4, 5, 4))])
def test_layer_backward_uses_the_input_as_it_was_at_forward(layer_cls, shape):
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape)
    layer = layer_cls(2, 3, 2, padding=1, seed=0, dtype=np.float64)
    y = layer(x)
    g = rng.standard_normal(y.shape)
    want = layer_cls(2, 3, 2, padding=1, seed=0, dtype=np.float64)
    want(x.copy())
    want.backward(g)
    x[...] = 7.0  # changed in place between forward and backward
    gx = layer.backward(g)
    np.testing.assert_array_equal(layer.weight_grad, want.weight_grad)
    np.testing.assert_array_equal(gx, want.backward(g))


def test_pool_layers_backward_uses_the_input_as_it_was_at_forward():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    mp, ap = fc.MaxPool2d(2), fc.AvgPool2d(2)
    mp(x), ap(x)
    want_m = pool.max_pool2d_backward(np.ones((1, 1, 2, 2)), x.copy(), 2)
    want_a = pool.avg_pool2d_backward(np.ones((1, 1, 2, 2)), x.copy(), 2)
    x[...] = x[..., ::-1, ::-1].copy()  # the maxima move
    np.testing.assert_array_equal(mp.backward(np.ones((1, 1, 2, 2))), want_m)
    np.testing.assert_array_equal(ap.backward(np.ones((1, 1, 2, 2))), want_a)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_, np.complex64, "i8"])
def test_integer_dtype_layers_are_a_type_error(dtype):
    with pytest.raises(TypeError, match=r"Conv2d: dtype must be float32 or float64 \(the "
                                        r"weights are learned\), got dtype"):
        fc.Conv2d(1, 1, 2, dtype=dtype)


@pytest.mark.parametrize("lr", [np.inf, -np.inf, np.nan, 0, -1e-3, np.float32(np.inf), "0.1",
                                True, None])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_learn_kernel_refuses_non_finite_and_non_positive_lr(lr, optimizer):
    with pytest.raises(ValueError, match=r"learn_kernel: lr must be a finite number > 0, got "):
        fc.learn_kernel(np.ones((3, 3)), np.ones((2, 2)), 2, lr=lr, optimizer=optimizer)
