"""The small-image GEMM (fastconv.cpu.small): forward, col2im input gradient and weight
gradient against the float64 oracles, PyTorch, the routing rule and determinism."""

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastconv as fc
from fastconv import _algorithms, grad
from fastconv._plan import plan_conv
from fastconv.cpu import small
from tests import reference as ref

LENET = [  # (x shape, weight shape, padding): LeNet's two layers at batch 64
    ((64, 1, 28, 28), (6, 1, 5, 5), 2),
    ((64, 6, 14, 14), (16, 6, 5, 5), 0),
]


def _data(xs, ws, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)


def _rel(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


@pytest.mark.parametrize("xs, ws, pad", LENET[:1] + [((64, 6, 14, 14), (32, 6, 5, 5), 0)])
def test_lenet_layers_take_the_small_path(xs, ws, pad):
    """conv1's forward and a wider conv2 (LeNet's own conv2, 16 output channels, runs
    direct_vec's one-vector form since 2026-12-02: ``test_microkernel``)."""
    x, w = _data(xs, ws)
    plan = plan_conv("conv2d", 2, x, w, None, 1, pad, 1, 1, "zeros")
    assert _algorithms.choose(plan) == "gemm"
    from fastconv import cpu

    core = _algorithms.correlation_core("cpu", cpu, "auto", plan)
    assert core.__module__ == "fastconv.cpu.small"
    assert _algorithms.correlation_core("cpu", cpu, "direct", plan).__module__ != (
        "fastconv.cpu.small")


@pytest.mark.parametrize("N, w_shape, out_spatial, groups, want", [
    (64, (6, 1, 1, 5, 5), (1, 28, 28), 1, True),
    (64, (16, 6, 1, 5, 5), (1, 10, 10), 1, True),
    (1, (16, 6, 1, 5, 5), (1, 10, 10), 1, False),  # too little work: the serial kernel
    (8, (64, 64, 1, 3, 3), (1, 56, 56), 1, False),  # a large image: the row-chunked GEMMs
    (64, (8, 1, 1, 5, 5), (1, 28, 28), 8, False),  # depthwise: one output channel per group
    (64, (64, 256, 1, 3, 3), (1, 7, 7), 1, False),  # a wide receptive field (R = 2304)
    (8, (128, 256, 1, 1, 1), (1, 28, 28), 1, False),  # 1x1: no im2col needed
])
def test_applies(N, w_shape, out_spatial, groups, want):
    assert small.applies(N, w_shape, out_spatial, groups, 4) is want


@given(
    nsp=st.integers(1, 3), n=st.integers(1, 3), cg=st.integers(1, 3), kg=st.integers(1, 4),
    groups=st.integers(1, 2), k=st.integers(1, 3), stride=st.integers(1, 3),
    dilation=st.integers(1, 2), pad=st.integers(0, 2), extra=st.integers(0, 4),
    seed=st.integers(0, 2**16),
)
def test_cores_match_the_oracles(nsp, n, cg, kg, groups, k, stride, dilation, pad, extra, seed):
    """Every core on any geometry (the rule aside): forward, input and weight gradient
    against the float64 NumPy oracles, in float64."""
    size = dilation * (k - 1) + 1 + extra
    C, K = cg * groups, kg * groups
    x, w = _data((n, C) + (size,) * nsp, (K, cg) + (k,) * nsp, seed, np.float64)
    bias = np.random.default_rng(seed + 1).standard_normal(K)
    pairs = [(pad, pad)] * nsp
    want = ref.conv_nd(x, w, bias, stride, pairs, dilation, groups)
    x5 = x.reshape((n, C) + (1,) * (3 - nsp) + x.shape[2:])
    w5 = w.reshape((K, cg) + (1,) * (3 - nsp) + w.shape[2:])
    xp = np.pad(x5, [(0, 0), (0, 0)] + [(0, 0)] * (3 - nsp) + pairs)
    st3 = (1,) * (3 - nsp) + (stride,) * nsp
    dl3 = (1,) * (3 - nsp) + (dilation,) * nsp
    out = np.empty((n, K) + (1,) * (3 - nsp) + want.shape[2:])
    small.correlate(xp, w5, bias, out, st3, dl3, groups)
    np.testing.assert_allclose(out.reshape(want.shape), want, rtol=1e-12, atol=1e-12)
    before = (0,) * (3 - nsp) + (pad,) * nsp
    in_place = np.empty_like(out)  # the zero padding read in place: the same sums
    small.correlate(x5, w5, bias, in_place, st3, dl3, groups, before)
    assert np.array_equal(in_place, out)

    g = np.random.default_rng(seed + 2).standard_normal(want.shape)
    g5 = g.reshape(out.shape)
    gx = np.empty(x5.shape)
    small.input_gradient(g5, w5, np.zeros(C), gx, st3, dl3, before, groups)
    np.testing.assert_allclose(gx.reshape(x.shape),
                               ref.conv_input_nd(x.shape, w, g, stride, pairs, dilation, groups),
                               rtol=1e-12, atol=1e-12)
    gw = np.empty(w5.shape)
    small.weight_gradient(xp, g5, gw, st3, dl3, groups)
    gw_in_place = np.empty(w5.shape)  # the zero padding read in place: the same sums
    small.weight_gradient(x5, g5, gw_in_place, st3, dl3, groups, before)
    assert np.array_equal(gw_in_place, gw)
    np.testing.assert_allclose(gw.reshape(w.shape),
                               ref.conv_weight_nd(x, w.shape, g, stride, pairs, dilation, groups),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "circular"])
def test_public_ops_on_the_small_path(mode):
    """conv2d / conv2d_input / conv2d_weight with "auto" (small path: float32 error as
    the GEMM's) against the float64 oracles, every padding mode."""
    x, w = _data((16, 4, 12, 12), (8, 4, 3, 3), 3)
    assert small.applies(16, w.shape[:2] + (1, 3, 3), (1, 12, 12), 1, 4)
    bias = np.linspace(-1, 1, 8).astype(np.float32)
    pairs = [(1, 1), (1, 1)]
    y = fc.conv2d(x, w, bias, padding=1, padding_mode=mode)
    assert _rel(y, ref.conv_nd(x, w, bias, 1, pairs, padding_mode=mode)) < 1e-6
    g = np.random.default_rng(4).standard_normal(y.shape).astype(np.float32)
    gx = grad.conv2d_input(x.shape, w, g, padding=1, padding_mode=mode)
    assert _rel(gx, ref.conv_input_nd(x.shape, w, g, 1, pairs, padding_mode=mode)) < 1e-6
    gw = grad.conv2d_weight(x, w.shape, g, padding=1, padding_mode=mode)
    assert _rel(gw, ref.conv_weight_nd(x, w.shape, g, 1, pairs, padding_mode=mode)) < 1e-6


def _forward_both_forms(x5, w5, bias, out_shape, st3, dl3, groups, before, macs):
    """``small.correlate`` run by its compiled kernels and by its NumPy form (the cold
    cache's first calls), with ``SMALL_GEMM_MACS`` = ``macs``: (outputs, saved blocks)."""
    results = []
    saved_kernels, saved_macs = small.KERNELS, small.SMALL_GEMM_MACS
    try:
        small.SMALL_GEMM_MACS = macs
        for kernels in (True, False):
            small.KERNELS = kernels
            out = np.full(out_shape, np.nan, x5.dtype)
            saved = []
            small.correlate(x5, w5, bias, out, st3, dl3, groups, before, saved=saved)
            results.append((out, saved))
    finally:
        small.KERNELS, small.SMALL_GEMM_MACS = saved_kernels, saved_macs
    return results


@given(
    nsp=st.integers(1, 3), n=st.integers(1, 3), cg=st.integers(1, 3), kg=st.integers(1, 4),
    groups=st.integers(1, 2), k=st.integers(1, 3), stride=st.integers(1, 3),
    dilation=st.integers(1, 2), before=st.integers(0, 2), after=st.integers(0, 2),
    extra=st.integers(0, 4), dtype=st.sampled_from([np.float32, np.float64]),
    large=st.booleans(), readonly=st.booleans(), seed=st.integers(0, 2**16),
)
def test_the_numpy_form_has_the_kernels_bits(nsp, n, cg, kg, groups, k, stride, dilation,
                                             before, after, extra, dtype, large, readonly,
                                             seed):
    """The forward's NumPy form (what a process with a cold kernel cache runs first) gives
    the compiled kernels' bits and ``col`` blocks: any geometry, zero padding before and
    after (read in place), both product paths (Numba's ``np.dot``, i.e. SciPy's BLAS,
    and NumPy's BLAS above ``SMALL_GEMM_MACS``), a read-only input."""
    size = dilation * (k - 1) + 1 + extra
    C, K = cg * groups, kg * groups
    x, w = _data((n, C) + (size,) * nsp, (K, cg) + (k,) * nsp, seed, dtype)
    bias = np.random.default_rng(seed + 1).standard_normal(K).astype(dtype)
    pad = (0,) * (3 - nsp)
    x5 = x.reshape((n, C) + (1,) * (3 - nsp) + x.shape[2:])
    x5.flags.writeable = not readonly
    w5 = w.reshape((K, cg) + (1,) * (3 - nsp) + w.shape[2:])
    st3, dl3 = pad + (stride,) * nsp, pad + (dilation,) * nsp
    spatial = tuple((s + before + after - dilation * (k - 1) - 1) // stride + 1
                    for s in x.shape[2:])
    out_shape = (n, K) + (1,) * (3 - nsp) + spatial
    (y1, cols1), (y0, cols0) = _forward_both_forms(
        x5, w5, bias, out_shape, st3, dl3, groups, pad + (before,) * nsp,
        0 if large else 1 << 62)
    assert not np.isnan(y1).any()
    assert y0.tobytes() == y1.tobytes()
    assert [c.tobytes() for c in cols0] == [c.tobytes() for c in cols1]
    want = ref.conv_nd(x.astype(np.float64), w.astype(np.float64), bias.astype(np.float64),
                       stride, [(before, after)] * nsp, dilation, groups)
    assert _rel(y0.reshape(want.shape), want) < (1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("xs, ws, pad", LENET + [((2, 8, 16, 16), (8, 8, 3, 3), 1)])
def test_lenet_layers_numpy_form_bits(xs, ws, pad):
    """LeNet's layers and the README's set-up shape: the NumPy form has the kernels' bits
    on the "auto" route's own geometry and products."""
    x, w = _data(xs, ws, 14)
    bias = np.linspace(-1, 1, ws[0]).astype(np.float32)
    out_shape = (xs[0], ws[0], 1) + (xs[2] + 2 * pad - ws[2] + 1,) * 2
    (y1, _), (y0, _) = _forward_both_forms(
        x[:, :, None], w[:, :, None], bias, out_shape, (1, 1, 1), (1, 1, 1), 1,
        (0, pad, pad), small.SMALL_GEMM_MACS)
    assert y0.tobytes() == y1.tobytes()


@pytest.mark.parametrize("ws", [(16, 6, 2, 2), (16, 6, 4, 4)])
def test_zero_padding_only_after_is_read_as_zeros(ws):
    """``padding="same"`` with an even kernel pads after only (``before`` all zeros): the
    unit-stride gather must pad a copy, not read past the input's end (it read beyond
    the array before 2026-12-02: NaN or garbage)."""
    x, w = _data((64, 6, 14, 14), ws, 12)
    k = ws[2]
    pairs = [((k - 1) // 2, k // 2)] * 2
    plan = plan_conv("conv2d", 2, x, w, None, 1, "same", 1, 1, "zeros")
    assert plan.pads[1:] == tuple(pairs) and (k > 2 or pairs[0][0] == 0)
    from fastconv import cpu

    assert _algorithms.correlation_core("cpu", cpu, "auto", plan).__module__ == (
        "fastconv.cpu.small")
    y = fc.conv2d(x, w, padding="same")
    assert _rel(y, ref.conv_nd(x, w, None, 1, pairs)) < 1e-6
    g = np.random.default_rng(13).standard_normal(y.shape).astype(np.float32)
    gw = grad.conv2d_weight(x, w.shape, g, padding="same")
    assert _rel(gw, ref.conv_weight_nd(x, w.shape, g, 1, pairs)) < 1e-6


def test_transposed_convolution_with_output_padding():
    """conv_transpose2d runs the col2im core (stride 2, output_padding 1, bias)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 8, 10, 10)).astype(np.float32)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    assert small.applies(16, (8, 4, 1, 3, 3), (1, 10, 10), 1, 4)
    y = fc.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)
    want = ref.conv_transpose_nd(x, w, b, 2, 1, 1)
    assert y.shape == want.shape == (16, 4, 20, 20)
    assert _rel(y, want) < 1e-6


@pytest.mark.torch
@pytest.mark.parametrize("xs, ws, pad", LENET)
def test_lenet_layers_match_pytorch(xs, ws, pad):
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle")
    x, w = _data(xs, ws, 6)
    b = np.linspace(-1, 1, ws[0]).astype(np.float32)
    tx = torch.from_numpy(x.astype(np.float64)).requires_grad_()
    tw = torch.from_numpy(w.astype(np.float64)).requires_grad_()
    ty = torch.nn.functional.conv2d(tx, tw, torch.from_numpy(b.astype(np.float64)), padding=pad)
    g = np.random.default_rng(7).standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.from_numpy(g.astype(np.float64)))
    assert _rel(fc.conv2d(x, w, b, padding=pad), ty.detach().numpy()) < 1e-6
    assert _rel(grad.conv2d_input(x.shape, w, g, padding=pad), tx.grad.numpy()) < 1e-6
    assert _rel(grad.conv2d_weight(x, w.shape, g, padding=pad), tw.grad.numpy()) < 1e-6


@pytest.mark.parametrize("xs, ws, pad", LENET)
def test_bit_identical_for_any_thread_count(xs, ws, pad):
    x, w = _data(xs, ws, 8)
    g = np.random.default_rng(9).standard_normal(
        fc.conv2d(x, w, padding=pad).shape).astype(np.float32)

    def run():
        return (fc.conv2d(x, w, padding=pad), grad.conv2d_input(x.shape, w, g, padding=pad),
                grad.conv2d_weight(x, w.shape, g, padding=pad))

    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run()
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many, again = run(), run()
    finally:
        numba.set_num_threads(before)
    for a, b, c in zip(one, many, again, strict=True):
        assert np.array_equal(a, b) and np.array_equal(b, c)


def test_large_forward_products_take_numpy_blas(monkeypatch):
    """A chunk's forward product of at least ``SMALL_GEMM_MACS`` runs as a separate BLAS
    call (NumPy's, ``blas.Gemm``): the same sums as the in-kernel ``np.dot``, within the
    float32 product error of the float64 oracle, groups included."""
    for C, K, groups in ((6, 16, 1), (12, 32, 2)):
        x, w = _data((16, C, 14, 14), (K, 6, 5, 5), 11)
        bias = np.linspace(-1, 1, K).astype(np.float32)
        x5, w5 = x[:, :, None], w[:, :, None]
        assert small.chunks(16, 100) == [(0, 16)]
        assert K // groups * 150 * 1600 >= small.SMALL_GEMM_MACS  # Kg * R * columns
        y = np.empty((16, K, 1, 10, 10), np.float32)
        small.correlate(x5, w5, bias, y, (1, 1, 1), (1, 1, 1), groups)
        monkeypatch.setattr(small, "SMALL_GEMM_MACS", 1 << 62)  # the in-kernel np.dot
        y_dot = np.empty_like(y)
        small.correlate(x5, w5, bias, y_dot, (1, 1, 1), (1, 1, 1), groups)
        monkeypatch.undo()
        want = ref.conv_nd(x.astype(np.float64), w.astype(np.float64), bias.astype(np.float64),
                           1, [(0, 0), (0, 0)], 1, groups)
        assert _rel(y[:, :, 0], want) < 1e-6 and _rel(y_dot[:, :, 0], want) < 1e-6
        assert _rel(y, y_dot) < 1e-6


def test_nan_and_inf_propagate():
    x, w = _data(*LENET[1][:2], 10)
    x[3, 2, 5, 5] = np.nan
    x[7, 0, 0, 0] = np.inf
    y = fc.conv2d(x, w)
    yd = fc.conv2d(x, w, algorithm="direct")
    assert np.array_equal(np.isnan(y), np.isnan(yd))
    assert np.isnan(y[3]).any() and not np.isnan(y[4]).any()
    gw = grad.conv2d_weight(x, w.shape, np.ones_like(y))
    assert np.isnan(gw).any()


def test_first_layer_can_skip_its_input_gradient():
    x, _ = _data((64, 1, 28, 28), (6, 1, 5, 5), 11)
    a, b = fc.Conv2d(1, 6, 5, padding=2, seed=0), fc.Conv2d(1, 6, 5, padding=2, seed=0)
    g = np.ones_like(a(x))
    b(x)
    assert a.backward(g, input_grad=False) is None
    assert b.backward(g).shape == x.shape
    assert np.array_equal(a.weight_grad, b.weight_grad)
    assert np.array_equal(a.bias_grad, b.bias_grad)


@pytest.mark.parametrize("shape, kernel, dtype", [
    ((64, 6, 28, 28), 2, np.float32),
    ((3, 4, 7, 9), (2, 3), np.float64),  # odd sizes: the floor drops the last rows/columns
    ((3, 4, 7, 9), 2, np.float64),  # the 2x2 kernel, odd sizes
    ((4, 5, 6), 3, np.float32),  # unbatched
])
@pytest.mark.parametrize("inline", [1 << 19, 0])  # one block inline / blocks as tasks
def test_max_pool_layer_windows_match_the_library(shape, kernel, dtype, inline, monkeypatch):
    """MaxPool2d's non-overlapping-window path: the values and gradients of max_pool2d
    and grad.max_pool2d exactly, ties (first maximum) and NaN (it wins) included, run
    inline as one block or as blocks on the fastconv threads."""
    monkeypatch.setattr(small, "POOL_INLINE_ELEMENTS", inline)
    assert (len(small._plane_blocks(64 * 6, 28 * 28)) == 1) == (inline > 0)
    rng = np.random.default_rng(12)
    x = rng.integers(-3, 3, shape).astype(dtype)  # many ties
    x.reshape(-1)[[5, 17, 40]] = np.nan
    layer = fc.MaxPool2d(kernel)
    y = layer(x)
    assert layer._codes is not None
    want = fc.max_pool2d(x, kernel)
    assert y.shape == want.shape and np.array_equal(y, want, equal_nan=True)
    g = rng.standard_normal(y.shape).astype(dtype)
    assert np.array_equal(layer.backward(g), grad.max_pool2d(g, x, kernel))


def test_max_pool_layer_other_windows_take_the_library_path():
    x = np.random.default_rng(13).standard_normal((2, 3, 9, 9)).astype(np.float32)
    for kw in (dict(kernel_size=3, stride=1), dict(kernel_size=2, padding=1),
               dict(kernel_size=2, ceil_mode=True), dict(kernel_size=3, stride=2, dilation=2)):
        layer = fc.MaxPool2d(**kw)
        y = layer(x)
        assert layer._codes is None
        assert np.array_equal(y, fc.max_pool2d(x, **kw))
        g = np.ones_like(y)
        assert np.array_equal(layer.backward(g), grad.max_pool2d(g, x, **kw))
    with pytest.raises(ValueError, match="max_pool2d: padding"):
        fc.MaxPool2d(2, padding=2)(x)


@pytest.mark.parametrize("xs, ws, pad", LENET[:1] + [((64, 6, 14, 14), (32, 6, 5, 5), 0),
                                                      ((16, 4, 12, 12), (8, 2, 3, 4), 1)])
def test_conv_layer_keeps_its_blocks_and_matches_the_functions(xs, ws, pad, monkeypatch):
    """A Conv2d layer on the small path keeps its forward's im2col blocks for the weight
    gradient: the same numbers as conv2d / conv2d_weight / conv2d_input exactly, and a
    change to the input after forward (or another layer's call) changes nothing."""
    x, _ = _data(xs, ws, 14)
    groups = xs[1] // ws[1]
    layer = fc.Conv2d(xs[1], ws[0], ws[2:], padding=pad, groups=groups, seed=3)
    other = fc.Conv2d(xs[1], ws[0], ws[2:], padding=pad, groups=groups, seed=4)
    y = layer(x)
    assert layer._small is not None and layer._cols  # the small path ran and kept blocks
    kw = dict(padding=pad, groups=groups)
    want_y = fc.conv2d(x, layer.weight, layer.bias, **kw)
    assert np.array_equal(y, want_y)
    g = np.random.default_rng(15).standard_normal(y.shape).astype(np.float32)
    want_w = grad.conv2d_weight(x, layer.weight.shape, g, **kw)
    want_x = grad.conv2d_input(x.shape, layer.weight, g, **kw)
    x0 = x.copy()
    x[...] = 7  # the layer's state is its own copy
    other(x)  # another layer of the same shapes keeps its own blocks
    given = []
    weight_gradient = small.weight_gradient

    def spy(*args):
        given.append(args[7])
        return weight_gradient(*args)

    monkeypatch.setattr(small, "weight_gradient", spy)
    gx = layer.backward(g)
    assert given == [layer._cols]  # the kept blocks, not gathered again
    assert np.array_equal(layer.weight_grad, want_w)
    assert np.array_equal(gx, want_x)
    oracle = ref.conv_weight_nd(x0.astype(np.float64), layer.weight.shape,
                                g.astype(np.float64), 1, [(pad, pad)] * 2, 1, groups)
    assert _rel(layer.weight_grad, oracle) < 1e-5


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint8, np.bool_])
def test_kernel_argument_types_match_numbas_typeof(dtype):
    """fastconv's kernels type plain ndarrays themselves (``_warmup.light_typeof``:
    Numba's own rule imports numpy.ma): the type must equal ``numba.typeof``'s for every
    layout, rank and writeability, else a call would compile a second signature (and
    small's cache lookup miss). Masked arrays and other values keep Numba's rule."""
    assert getattr(numba.core.dispatcher.Dispatcher.typeof_pyval, "_fastconv", False)
    kernel = small._forward_chunk
    a = np.zeros((3, 4, 5), dtype)
    ro = a.copy()
    ro.flags.writeable = False
    for v in (a, a.T, a[:, ::2], a[0], a.reshape(-1), ro, np.zeros((), dtype)):
        assert kernel.typeof_pyval(v) == numba.typeof(v), (v.shape, v.strides)
    for v in ((1, 2, 3), 7, np.float32(1.5)):
        assert kernel.typeof_pyval(v) == numba.typeof(v)
    with pytest.raises(numba.core.errors.NumbaTypeError, match="MaskedArray"):
        kernel.typeof_pyval(np.ma.masked_array(a))
