"""Gradients of convolution (fastconv.grad) and transposed convolution.

Oracles: hand-computed cases, the adjoint identity, the scatter-loop references in
``tests/reference.py``, float64 central finite differences, and PyTorch autograd.
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np
import pytest
import reference
from conftest import requires_torch
from hypothesis import given
from hypothesis import strategies as st

import fastconv as fc
from fastconv import conv, grad

CONV = {1: conv.conv1d, 2: conv.conv2d, 3: conv.conv3d}
INPUT = {1: grad.conv1d_input, 2: grad.conv2d_input, 3: grad.conv3d_input}
WEIGHT = {1: grad.conv1d_weight, 2: grad.conv2d_weight, 3: grad.conv3d_weight}
TRANSPOSE = {1: conv.conv_transpose1d, 2: conv.conv_transpose2d, 3: conv.conv_transpose3d}
MODES = ("zeros", "reflect", "replicate", "circular")


# --- hand-computed --------------------------------------------------------------------


def test_input_grad_by_hand():
    # y = [x0 - x1, x1 - x2]; dL/dy = [1, 1] -> dL/dx = [1, 0, -1]
    got = grad.conv1d_input((1, 1, 3), [[[1.0, -1.0]]], [[[1.0, 1.0]]])
    np.testing.assert_array_equal(got, [[[1.0, 0.0, -1.0]]])


def test_weight_grad_by_hand():
    # y = [w0*x0 + w1*x1, w0*x1 + w1*x2]; dL/dw = [x0 + x1, x1 + x2] = [1, 3]
    got = grad.conv1d_weight([[[0.0, 1.0, 2.0]]], (1, 1, 2), [[[1.0, 1.0]]])
    np.testing.assert_array_equal(got, [[[1.0, 3.0]]])


def test_weight_grad_seed_numbers():
    # 2x2 windows of arange(9) summed: [[0+1+3+4, 1+2+4+5], [3+4+6+7, 4+5+7+8]]
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    got = grad.conv2d_weight(x, (1, 1, 2, 2), np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(got, [[[[8.0, 12.0], [20.0, 24.0]]]])


def test_replicate_fold_by_hand():
    # replicate padding 1 of [a, b] is [a, a, b, b]; a 1-tap identity kernel reads each
    # padded position once, so a's gradient collects positions 0 and 1
    got = grad.conv1d_input((1, 1, 2), [[[1.0]]], [[[1.0, 2.0, 3.0, 4.0]]], padding=1,
                            padding_mode="replicate")
    np.testing.assert_array_equal(got, [[[3.0, 7.0]]])


def test_conv_bias():
    g = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(grad.conv_bias(g), g.sum(axis=(0, 2)))
    np.testing.assert_array_equal(grad.conv_bias(g[0], batched=False), g[0].sum(axis=1))
    assert grad.conv_bias(g.astype(np.float32)).dtype == np.float32


def test_transpose_by_hand():
    out = conv.conv_transpose2d(np.ones((1, 1, 1, 1)), np.arange(4.0).reshape(1, 1, 2, 2),
                                stride=2, output_padding=1)
    np.testing.assert_array_equal(out[0, 0], [[0, 1, 0], [2, 3, 0], [0, 0, 0]])


# --- random configurations ------------------------------------------------------------


@st.composite
def configs(draw, modes=MODES):
    nsp = draw(st.integers(1, 3))
    kmax = {1: 4, 2: 3, 3: 2}[nsp]
    kernel = [draw(st.integers(1, kmax)) for _ in range(nsp)]
    dil = [draw(st.integers(1, 2)) for _ in range(nsp)]
    form = draw(st.sampled_from(["int", "pairs", "same", "full"]))
    strides = [1] * nsp if form == "same" else [draw(st.integers(1, 3)) for _ in range(nsp)]
    if form == "int":
        padding = draw(st.integers(0, 2))
    elif form == "pairs":
        padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(nsp))
    else:
        padding = form
    pairs = reference.padding_pairs(padding, kernel, dil)
    mode = draw(st.sampled_from(modes))
    spatial = []
    for k, d, (b, a) in zip(kernel, dil, pairs, strict=True):
        lo = max(d * (k - 1) + 1 - b - a, max(b, a) + 1, 1)
        spatial.append(draw(st.integers(lo, lo + (4 if nsp < 3 else 2))))
    groups = draw(st.integers(1, 2))
    C = groups * draw(st.integers(1, 2))
    K = groups * draw(st.integers(1, 3))
    N = draw(st.integers(1, 2))
    return dict(nsp=nsp, x_shape=(N, C, *spatial), w_shape=(K, C // groups, *kernel),
                kw=dict(stride=tuple(strides), padding=padding, dilation=tuple(dil),
                        groups=groups, padding_mode=mode),
                pairs=pairs)


@given(configs(), st.integers(0, 2**32 - 1))
def test_adjoint_identity(cfg, seed):
    rng = np.random.default_rng(seed)
    nsp, kw = cfg["nsp"], cfg["kw"]
    x = rng.standard_normal(cfg["x_shape"])
    w = rng.standard_normal(cfg["w_shape"])
    y = CONV[nsp](x, w, **kw)
    g = rng.standard_normal(y.shape)
    gx = INPUT[nsp](x.shape, w, g, **kw)
    gw = WEIGHT[nsp](x, w.shape, g, **kw)
    assert gx.shape == x.shape and gw.shape == w.shape
    lhs = np.vdot(y, g)
    np.testing.assert_allclose(np.vdot(x, gx), lhs, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.vdot(w, gw), lhs, rtol=1e-10, atol=1e-10)


@given(configs(), st.integers(0, 2**32 - 1))
def test_against_scatter_reference(cfg, seed):
    rng = np.random.default_rng(seed)
    nsp, kw = cfg["nsp"], dict(cfg["kw"])
    x = rng.standard_normal(cfg["x_shape"])
    w = rng.standard_normal(cfg["w_shape"])
    g = rng.standard_normal(CONV[nsp](x, w, **kw).shape)
    ref_kw = dict(stride=kw["stride"], padding_pairs=cfg["pairs"], dilation=kw["dilation"],
                  groups=kw["groups"], padding_mode=kw["padding_mode"])
    np.testing.assert_allclose(INPUT[nsp](x.shape, w, g, **kw),
                               reference.conv_input_nd(x.shape, w, g, **ref_kw),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(WEIGHT[nsp](x, w.shape, g, **kw),
                               reference.conv_weight_nd(x, w.shape, g, **ref_kw),
                               rtol=1e-10, atol=1e-12)


@st.composite
def transpose_configs(draw):
    nsp = draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, 3)) for _ in range(nsp)]
    strides = [draw(st.integers(1, 3)) for _ in range(nsp)]
    dil = [draw(st.integers(1, 3)) for _ in range(nsp)]
    opad = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(strides, dil, strict=True)]
    spatial = [draw(st.integers(1, 4)) for _ in range(nsp)]
    full = [(n - 1) * s + d * (k - 1) + 1 + op
            for n, s, d, k, op in zip(spatial, strides, dil, kernel, opad, strict=True)]
    pad = [draw(st.integers(0, (f - 1) // 2)) for f in full]
    groups = draw(st.integers(1, 2))
    C = groups * draw(st.integers(1, 2))
    Kg = draw(st.integers(1, 2))
    return dict(nsp=nsp, x_shape=(draw(st.integers(1, 2)), C, *spatial),
                w_shape=(C, Kg, *kernel),
                kw=dict(stride=tuple(strides), padding=tuple(pad), output_padding=tuple(opad),
                        groups=groups, dilation=tuple(dil)))


@given(transpose_configs(), st.integers(0, 2**32 - 1))
def test_transpose_against_reference(cfg, seed):
    rng = np.random.default_rng(seed)
    nsp, kw = cfg["nsp"], cfg["kw"]
    x = rng.standard_normal(cfg["x_shape"])
    w = rng.standard_normal(cfg["w_shape"])
    b = rng.standard_normal(cfg["w_shape"][1] * kw["groups"])
    got = TRANSPOSE[nsp](x, w, b, **kw)
    np.testing.assert_allclose(got, reference.conv_transpose_nd(x, w, b, **kw),
                               rtol=1e-10, atol=1e-12)


@given(transpose_configs(), st.integers(0, 2**32 - 1))
def test_transpose_is_input_gradient(cfg, seed):
    # conv_transpose(g, w) == conv_input(x.shape, w, g) whenever output_padding < stride
    rng = np.random.default_rng(seed)
    nsp, kw = cfg["nsp"], dict(cfg["kw"])
    opad = tuple(op % s for op, s in zip(kw["output_padding"], kw["stride"], strict=True))
    # a smaller output_padding shrinks the output: keep the padding within it (size >= 1)
    n_in, k = cfg["x_shape"][2:], cfg["w_shape"][2:]
    kw["padding"] = tuple(
        min(p, ((n - 1) * s + d * (kk - 1) + op) // 2)
        for p, n, s, d, kk, op in zip(kw["padding"], n_in, kw["stride"], kw["dilation"], k, opad,
                                      strict=True))
    kw["output_padding"] = opad
    g = rng.standard_normal(cfg["x_shape"])
    w = rng.standard_normal(cfg["w_shape"])
    out = TRANSPOSE[nsp](g, w, **kw)
    gx = INPUT[nsp](out.shape, w, g, stride=kw["stride"], padding=kw["padding"],
                    dilation=kw["dilation"], groups=kw["groups"])
    np.testing.assert_array_equal(out, gx)


# --- finite differences ---------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_central_differences(mode):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 2, 5, 6))
    w = rng.standard_normal((2, 1, 3, 2))
    kw = dict(stride=(1, 2), padding=((2, 1), (1, 1)), dilation=(1, 2), groups=2,
              padding_mode=mode)
    g = rng.standard_normal(conv.conv2d(x, w, **kw).shape)

    def loss(xx, ww):
        return float(np.vdot(conv.conv2d(xx, ww, **kw), g))

    gx = grad.conv2d_input(x.shape, w, g, **kw)
    gw = grad.conv2d_weight(x, w.shape, g, **kw)
    h = 1e-6
    for idx in [(0, 0, 0, 0), (0, 1, 2, 3), (0, 0, 4, 5), (0, 1, 0, 5)]:
        e = np.zeros_like(x)
        e[idx] = h
        fd = (loss(x + e, w) - loss(x - e, w)) / (2 * h)
        np.testing.assert_allclose(gx[idx], fd, rtol=1e-6, atol=1e-8)
    for idx in [(0, 0, 0, 0), (1, 0, 2, 1)]:
        e = np.zeros_like(w)
        e[idx] = h
        fd = (loss(x, w + e) - loss(x, w - e)) / (2 * h)
        np.testing.assert_allclose(gw[idx], fd, rtol=1e-6, atol=1e-8)


# --- PyTorch autograd -----------------------------------------------------------------


def _torch_forward(F, nsp, xt, wt, bt, kw, pairs):
    mode = kw["padding_mode"]
    flat = tuple(v for b, a in reversed(pairs) for v in (b, a))
    xt = F.pad(xt, flat, mode="constant" if mode == "zeros" else mode)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nsp]
    return fn(xt, wt, bt, stride=kw["stride"], dilation=kw["dilation"], groups=kw["groups"])


TORCH_CASES = [
    (1, (2, 4, 11), (6, 2, 3), dict(stride=2, padding=2, dilation=2, groups=2)),
    (2, (2, 3, 9, 8), (4, 3, 3, 3), dict(stride=1, padding="same", dilation=1, groups=1)),
    (2, (1, 4, 7, 9), (4, 1, 2, 3), dict(stride=(2, 1), padding=((1, 0), (2, 1)),
                                         dilation=(1, 2), groups=4)),
    (3, (1, 2, 5, 6, 4), (2, 2, 2, 3, 2), dict(stride=(1, 2, 1), padding=1, dilation=1,
                                               groups=1)),
]


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: f"{c[0]}d-{c[1]}")
def test_against_torch_autograd(case, mode, dtype):
    import torch
    import torch.nn.functional as F

    nsp, xs, ws, kw = case
    kw = dict(kw, padding_mode=mode)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    pairs = reference.padding_pairs(kw["padding"], ws[2:], kw["dilation"])
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = _torch_forward(F, nsp, xt, wt, bt, kw, pairs)
    g = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.tensor(g))
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    gx = INPUT[nsp](x.shape, w, g, **kw)
    gw = WEIGHT[nsp](x, w.shape, g, **kw)
    gb = grad.conv_bias(g)
    assert gx.dtype == gw.dtype == gb.dtype == dtype
    np.testing.assert_allclose(gx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(gw, wt.grad.numpy(), **tol)
    np.testing.assert_allclose(gb, bt.grad.numpy(), **tol)


TRANSPOSE_CASES = [
    (1, (2, 4, 6), (4, 3, 3), dict(stride=3, padding=1, output_padding=2, groups=2,
                                   dilation=2)),
    (2, (2, 3, 5, 4), (3, 2, 3, 2), dict(stride=2, padding=(1, 0), output_padding=(1, 0),
                                         groups=1, dilation=1)),
    (2, (1, 4, 3, 3), (4, 1, 2, 2), dict(stride=1, padding=0, output_padding=(1, 2),
                                         groups=4, dilation=(2, 3))),
    (3, (1, 2, 3, 2, 3), (2, 2, 2, 2, 2), dict(stride=(2, 1, 2), padding=(0, 1, 1),
                                               output_padding=(1, 0, 0), groups=1,
                                               dilation=1)),
]


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=lambda c: f"{c[0]}d-{c[3]['stride']}")
def test_transpose_against_torch(case, dtype):
    import torch
    import torch.nn.functional as F

    nsp, xs, ws, kw = case
    rng = np.random.default_rng(5)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[1] * kw["groups"]).astype(dtype)
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nsp]
    want = fn(torch.tensor(x), torch.tensor(w), torch.tensor(b), **kw).numpy()
    got = TRANSPOSE[nsp](x, w, b, **kw)
    assert got.dtype == dtype
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, want, **tol)


@requires_torch
def test_unbatched_matches_torch_grad():
    import torch

    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 7, 6))
    w = rng.standard_normal((2, 3, 3, 2))
    g = rng.standard_normal((2, 3, 5))
    want_x = torch.nn.grad.conv2d_input((1, 3, 7, 6), torch.tensor(w), torch.tensor(g[None]),
                                        stride=(2, 1))
    want_w = torch.nn.grad.conv2d_weight(torch.tensor(x[None]), (2, 3, 3, 2),
                                         torch.tensor(g[None]), stride=(2, 1))
    np.testing.assert_allclose(grad.conv2d_input(x.shape, w, g, stride=(2, 1)),
                               want_x.numpy()[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad.conv2d_weight(x, w.shape, g, stride=(2, 1)),
                               want_w.numpy(), rtol=1e-12, atol=1e-12)


# --- determinism ----------------------------------------------------------------------


def test_deterministic_across_runs_and_threads():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 12, 13)).astype(np.float32)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    kw = dict(padding=1, groups=2, padding_mode="reflect")
    g = rng.standard_normal(conv.conv2d(x, w, **kw).shape).astype(np.float32)

    def both():
        return (grad.conv2d_input(x.shape, w, g, **kw).tobytes(),
                grad.conv2d_weight(x, w.shape, g, **kw).tobytes(),
                conv.conv_transpose2d(g, w, stride=1, padding=1, groups=2).tobytes())

    before = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        first, second = both(), both()
        numba.set_num_threads(1)
        single = both()
    finally:
        numba.set_num_threads(before)
    assert first == second
    assert first == single


# --- errors ---------------------------------------------------------------------------


def test_error_input_size():
    with pytest.raises(ValueError, match=r"conv2d_input: input_size must be a tuple of ints"):
        grad.conv2d_input((1, 4), np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3)))
    with pytest.raises(ValueError, match=r"conv1d_input: input_size .* got 'abc'"):
        grad.conv1d_input("abc", np.ones((1, 1, 2)), np.ones((1, 1, 3)))


def test_error_weight_size():
    with pytest.raises(ValueError, match=r"conv2d_weight: weight_size must be a tuple of ints "
                                         r"\(K, C // groups, \*kernel\)"):
        grad.conv2d_weight(np.ones((1, 1, 4, 4)), (1, 1, 2), np.ones((1, 1, 3, 3)))


def test_error_grad_output_shape():
    with pytest.raises(ValueError, match=r"conv2d_input: grad_output.shape=\(1, 1, 2, 2\) does "
                                         r"not match the forward output shape \(1, 1, 3, 3\)"):
        grad.conv2d_input((1, 1, 4, 4), np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)))
    with pytest.raises(ValueError, match=r"conv1d_weight: grad_output.shape=\(1, 2, 3\) does "
                                         r"not match .*\(1, 1, 3\).*weight_size=\(1, 1, 2\)"):
        grad.conv1d_weight(np.ones((1, 1, 4)), (1, 1, 2), np.ones((1, 2, 3)))


def test_error_forward_checks_apply():
    with pytest.raises(ValueError, match=r"conv2d_input: channel mismatch: x has C=3"):
        grad.conv2d_input((1, 3, 4, 4), np.ones((1, 2, 2, 2)), np.ones((1, 1, 3, 3)))
    with pytest.raises(ValueError, match=r"conv2d_weight: padding='same' is not supported"):
        grad.conv2d_weight(np.ones((1, 1, 4, 4)), (1, 1, 2, 2), np.ones((1, 1, 2, 2)),
                           stride=2, padding="same")
    with pytest.raises(ValueError, match=r"conv1d_input: invalid padding_mode 'mirror'"):
        grad.conv1d_input((1, 1, 4), np.ones((1, 1, 2)), np.ones((1, 1, 3)),
                          padding_mode="mirror")
    with pytest.raises(TypeError, match=r"conv1d_weight: grad_output has dtype complex128"):
        grad.conv1d_weight(np.ones((1, 1, 4)), (1, 1, 2), np.ones((1, 1, 3), complex))


def test_error_conv_bias_rank():
    with pytest.raises(ValueError, match=r"conv_bias: grad_output must be at least 2-D "
                                         r"\(\(N, K, \*spatial\)\), got 1-D"):
        grad.conv_bias(np.ones(3))


def test_errors_transpose():
    x = np.ones((1, 4, 3, 3))
    with pytest.raises(ValueError, match=r"conv_transpose2d: channel mismatch: x has C=4 but "
                                         r"weight.shape\[0\] = 2"):
        conv.conv_transpose2d(x, np.ones((2, 1, 2, 2)))
    with pytest.raises(ValueError, match=r"conv_transpose2d: groups=3 must divide the input "
                                         r"channels C=4"):
        conv.conv_transpose2d(x, np.ones((4, 1, 2, 2)), groups=3)
    with pytest.raises(ValueError, match=r"conv_transpose2d: bias must have shape \(K,\) = "
                                         r"\(2,\).*got bias.shape=\(3,\)"):
        conv.conv_transpose2d(x, np.ones((4, 1, 2, 2)), np.ones(3), groups=2)
    with pytest.raises(ValueError, match=r"conv_transpose2d: output_padding=\(2, 2\) must be "
                                         r"smaller than either stride=\(2, 2\) or dilation"):
        conv.conv_transpose2d(x, np.ones((4, 1, 2, 2)), stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"conv_transpose1d: output size \(-2,\) < 1 for "
                                         r"padding=\(2,\)"):
        conv.conv_transpose1d(np.ones((1, 1, 1)), np.ones((1, 1, 2)), padding=2)
    with pytest.raises(ValueError, match=r"conv_transpose3d: x must be 5-D .* got 2-D"):
        conv.conv_transpose3d(np.ones((2, 2)), np.ones((1, 1, 1, 1, 1)))
    with pytest.raises(ValueError, match=r"conv_transpose1d: weight must be 3-D "
                                         r"\(C, K // groups, \*kernel\), got 2-D"):
        conv.conv_transpose1d(np.ones((1, 1, 3)), np.ones((1, 1)))
    with pytest.raises(ValueError, match=r"conv_transpose1d: padding must be >= 0"):
        conv.conv_transpose1d(np.ones((1, 1, 3)), np.ones((1, 1, 2)), padding=-1)
    with pytest.raises(ValueError, match=r"conv_transpose1d: groups must be an int >= 1"):
        conv.conv_transpose1d(np.ones((1, 1, 3)), np.ones((1, 1, 2)), groups=0)
    with pytest.raises(ValueError, match=r"conv_transpose1d: x has an empty spatial axis"):
        conv.conv_transpose1d(np.ones((1, 1, 0)), np.ones((1, 1, 2)))


def test_public_exports():
    assert fc.grad is grad
    assert fc.conv_transpose2d is conv.conv_transpose2d


# --- pooling gradients (re-exported from fastconv.pool) --------------------------------

POOL_CASES = [
    ("max", 1, (2, 3, 11), dict(kernel_size=3, stride=2, padding=1, dilation=2,
                                ceil_mode=True)),
    ("max", 2, (1, 2, 7, 8), dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 1),
                                  dilation=1, ceil_mode=False)),
    ("max", 3, (1, 1, 5, 4, 6), dict(kernel_size=2, stride=None, padding=0, dilation=1,
                                     ceil_mode=True)),
    ("avg", 1, (2, 3, 9), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True,
                               count_include_pad=False)),
    ("avg", 2, (1, 2, 7, 8), dict(kernel_size=3, stride=2, padding=1, ceil_mode=False,
                                  count_include_pad=True, divisor_override=5)),
    ("avg", 3, (1, 2, 4, 5, 4), dict(kernel_size=(2, 3, 2), stride=1, padding=(1, 1, 0),
                                     ceil_mode=True, count_include_pad=False)),
]


@requires_torch
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: f"{c[0]}{c[1]}d")
def test_pool_grad_against_torch(case, ties):
    import torch
    import torch.nn.functional as F

    kind, nsp, xs, kw = case
    rng = np.random.default_rng(9)
    # ties: a few distinct values, so windows hold repeated maxima (PyTorch: first wins)
    x = rng.integers(0, 3, xs).astype(np.float64) if ties else rng.standard_normal(xs)
    xt = torch.tensor(x, requires_grad=True)
    fn = getattr(F, f"{kind}_pool{nsp}d")
    yt = fn(xt, **kw)
    g = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(g))
    got = getattr(grad, f"{kind}_pool{nsp}d")(g, x, **kw)
    np.testing.assert_allclose(got, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


# --- GEMM gradients (shifted GEMM on SciPy's BLAS) -----------------------------------


@contextlib.contextmanager
def shifted_always():
    """Force the shifted GEMM for any channel count (it needs Cg >= 32 by default)."""
    from fastconv.cpu import gemm

    before = gemm.SHIFTED_MIN_CG
    gemm.SHIFTED_MIN_CG = 1
    try:
        yield
    finally:
        gemm.SHIFTED_MIN_CG = before


@st.composite
def gemm_configs(draw):
    """Mostly stride 1 (where the shifted GEMM runs), every padding mode, groups, dilation."""
    cfg = draw(configs())
    if draw(st.integers(0, 3)):
        cfg["kw"]["stride"] = (1,) * cfg["nsp"]
    return cfg


@given(gemm_configs(), st.integers(0, 2**32 - 1))
def test_gemm_grads_match_direct(cfg, seed):
    """algorithm="gemm" and "direct" agree to float64 rounding (and the adjoint holds)."""
    rng = np.random.default_rng(seed)
    nsp, kw = cfg["nsp"], cfg["kw"]
    x = rng.standard_normal(cfg["x_shape"])
    w = rng.standard_normal(cfg["w_shape"])
    y = CONV[nsp](x, w, **kw)
    g = rng.standard_normal(y.shape)
    with shifted_always():
        got = {a: (INPUT[nsp](x.shape, w, g, algorithm=a, **kw),
                   WEIGHT[nsp](x, w.shape, g, algorithm=a, **kw)) for a in ("gemm", "direct")}
    for i in range(2):
        np.testing.assert_allclose(got["gemm"][i], got["direct"][i], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.vdot(w, got["gemm"][1]), np.vdot(y, g), rtol=1e-10,
                               atol=1e-10)


@requires_torch
@pytest.mark.parametrize("seed", range(12))
def test_gemm_grads_match_torch(seed):
    """float32 gemm gradients against PyTorch autograd on seeded small configurations
    (ranks 1-3, groups, dilation, every padding mode, stride 1)."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    nsp = 1 + seed % 3
    mode = MODES[seed % 4]
    groups = 1 + seed % 2
    kernel = tuple(int(v) for v in rng.integers(1, 4, nsp))
    dil = tuple(int(v) for v in rng.integers(1, 3, nsp))
    pad = tuple(int(v) for v in rng.integers(0, 3, nsp))
    spatial = tuple(d * (k - 1) + p + 2 + int(rng.integers(0, 5))
                    for k, d, p in zip(kernel, dil, pad, strict=True))
    C, K = groups * int(rng.integers(2, 6)), groups * int(rng.integers(8, 12))
    x = rng.standard_normal((2, C, *spatial)).astype(np.float32)
    w = rng.standard_normal((K, C // groups, *kernel)).astype(np.float32)
    kw = dict(stride=1, padding=pad, dilation=dil, groups=groups, padding_mode=mode)
    pairs = [(p, p) for p in pad]
    xt, wt = (torch.tensor(a, requires_grad=True) for a in (x, w))
    yt = _torch_forward(F, nsp, xt, wt, None, kw, pairs)
    g = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.tensor(g))
    with shifted_always():
        gx = INPUT[nsp](x.shape, w, g, algorithm="gemm", **kw)
        gw = WEIGHT[nsp](x, w.shape, g, algorithm="gemm", **kw)
    for got, want in ((gx, xt.grad.numpy()), (gw, wt.grad.numpy())):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * (1 + np.abs(want).max()))


def test_auto_grads_pick_gemm_for_dense_layers():
    """The rule sends B3/B5-shaped gradients (dense 3x3, many channels) to the GEMM."""
    from fastconv._algorithms import choose_for

    assert choose_for(8, (64, 64, 3, 3, 1), (58, 58, 1), (1, 1, 1), 1) == "gemm"  # B3 dx
    assert choose_for(8, (64, 64, 1, 3, 3), (1, 56, 56), (1, 1, 1), 1) == "gemm"  # B3 dw
    assert choose_for(8, (128, 1, 1, 3, 3), (1, 56, 56), (1, 1, 1), 128) == "direct"


def test_gemm_weight_grad_with_inf_matches_direct():
    """NaN/Inf in the input: the weight gradient takes the direct path (exact NaN pattern)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 8, 9, 9)).astype(np.float32)
    x[0, 3, 4, 8] = np.inf
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    g = rng.standard_normal((1, 8, 7, 7)).astype(np.float32)
    got = grad.conv2d_weight(x, w.shape, g, algorithm="gemm")
    want = grad.conv2d_weight(x, w.shape, g, algorithm="direct")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isfinite(got[:, :3]).all() and not np.isfinite(got[:, 3]).all()
    # an infinite pixel at the start of a row segment: +-inf where it is read, never NaN
    x = rng.standard_normal((1, 2, 6, 6))
    x[0, 1, 0, 0] = np.inf
    g = np.abs(rng.standard_normal((1, 8, 4, 4))) + 0.5
    for algorithm in ("direct", "gemm"):
        gw = grad.conv2d_weight(x, (8, 2, 3, 3), g, algorithm=algorithm)
        assert not np.isnan(gw).any()
        assert np.isinf(gw[:, 1, 0, 0]).all() and np.isfinite(gw[:, 1, 1:, :]).all()


def test_gemm_paths_deterministic_across_runs_and_threads(monkeypatch):
    """Shifted-GEMM forward and gradients (auto picks gemm here), several column chunks:
    the same bytes run to run and for 1 or 2 threads (single-threaded BLAS per task)."""
    from fastconv._algorithms import choose_for
    from fastconv.cpu import gemm

    monkeypatch.setattr(gemm, "GEMM_CHUNK_BYTES", 1)
    monkeypatch.setattr(gemm, "MIN_CHUNK_COLUMNS", 100)
    monkeypatch.setattr(gemm, "SHIFTED_MIN_CG", 1)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 32, 20, 21)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    kw = dict(padding=1, groups=2, padding_mode="reflect")
    g = rng.standard_normal(conv.conv2d(x, w, **kw).shape).astype(np.float32)
    assert choose_for(3, (32, 16, 1, 3, 3), (1, 20, 21), (1, 1, 1), 2) == "gemm"

    def run():
        return (conv.conv2d(x, w, **kw).tobytes(),
                grad.conv2d_input(x.shape, w, g, **kw).tobytes(),
                grad.conv2d_weight(x, w.shape, g, **kw).tobytes(),
                conv.conv_transpose2d(g, w, stride=1, padding=1, groups=2).tobytes())

    before = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        first, second = run(), run()
        numba.set_num_threads(1)
        single = run()
    finally:
        numba.set_num_threads(before)
    assert first == second
    assert first == single
    direct = conv.conv2d(x, w, algorithm="direct", **kw)
    np.testing.assert_allclose(np.frombuffer(first[0], np.float32).reshape(direct.shape),
                               direct, rtol=0, atol=1e-4 * (1 + np.abs(direct).max()))


def test_grad_algorithm_is_checked():
    with pytest.raises(ValueError, match=r"conv2d_input: invalid algorithm 'fft', should be"):
        grad.conv2d_input((1, 1, 4, 4), np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3)),
                          algorithm="fft")
    with pytest.raises(ValueError, match=r"conv2d_weight: invalid algorithm 'x', should be"):
        grad.conv2d_weight(np.ones((1, 1, 4, 4)), (1, 1, 2, 2), np.ones((1, 1, 3, 3)),
                           algorithm="x")


def test_gemm_grads_without_scipy_blas(monkeypatch):
    """Without SciPy's BLAS, algorithm="gemm" gradients fall back (im2col + numpy.matmul
    for the input gradient, the direct kernel for the weight) and still agree."""
    from fastconv.cpu import blas

    monkeypatch.setattr(blas, "available", lambda: False)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 6, 7, 8))
    w = rng.standard_normal((8, 3, 3, 2))
    kw = dict(padding=1, dilation=(1, 2), groups=2, padding_mode="circular")
    g = rng.standard_normal(conv.conv2d(x, w, **kw).shape)
    for fn, args in ((grad.conv2d_input, (x.shape, w, g)), (grad.conv2d_weight, (x, w.shape, g))):
        np.testing.assert_allclose(fn(*args, algorithm="gemm", **kw),
                                   fn(*args, algorithm="direct", **kw), rtol=1e-10, atol=1e-10)
