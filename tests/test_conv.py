"""Forward convolution: the seeds' worked examples, then the NumPy reference over random
grids and hypothesis, PyTorch and SciPy as independent oracles, dtypes and layouts,
NaN/Inf, and every SPEC §4 error message."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_scipy, requires_torch
from hypothesis import given
from hypothesis import strategies as st
from reference import conv_nd, conv_nd_loop, corr2d_loop, output_size, padding_pairs

import fastconv as fc
import fastconv._run
import fastconv.conv
import fastconv.cpu
from fastconv.conv import convolve2d

CONV = {1: fc.conv1d, 2: fc.conv2d, 3: fc.conv3d}
CONVOLVE = {1: fc.convolve1d, 2: convolve2d, 3: fc.convolve3d}
RTOL = {np.float32: 1e-4, np.float64: 1e-10}
SPATIAL = {1: (11,), 2: (7, 6), 3: (5, 6, 6)}
KERNEL = {1: (3,), 2: (3, 2), 3: (2, 3, 2)}


def rand(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def assert_matches(got, x, w, bias=None, *, stride=1, padding=0, dilation=1, groups=1,
                   padding_mode="zeros", dtype=np.float64):
    """``got`` equals the NumPy reference within a rounding bound scaled by |x| * |w|."""
    nsp = np.ndim(w) - 2
    kernel = np.shape(w)[2:]
    pairs = padding_pairs(padding, kernel, dilation)
    args = dict(stride=stride, padding_pairs=pairs, dilation=dilation, groups=groups,
                padding_mode=padding_mode)
    want = conv_nd(x, w, bias, **args)
    scale = conv_nd(np.abs(x), np.abs(w), None if bias is None else np.abs(bias), **args)
    assert got.dtype == dtype
    assert got.shape == want.shape, (got.shape, want.shape, nsp)
    np.testing.assert_array_less(np.abs(got - want), RTOL[dtype] * scale + 1e-30)


# --- the seeds' worked examples ------------------------------------------------------------

X3 = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
K2 = [[0, 1], [2, 3]]


def test_corr2d_seed_example():
    np.testing.assert_array_equal(fc.corr2d(X3, K2), [[19, 25], [37, 43]])


def test_corr2d_seed_loop_agrees():
    np.testing.assert_array_equal(corr2d_loop(X3, K2), [[19, 25], [37, 43]])
    rng = np.random.default_rng(0)
    X, K = rand(rng, (7, 9)), rand(rng, (3, 2))
    np.testing.assert_allclose(fc.corr2d(X, K), corr2d_loop(X, K), rtol=1e-12)


def test_conv2d_seed_example_float64():
    out = fc.conv2d(np.arange(9.0).reshape(1, 1, 3, 3), np.array(K2, float)[None, None])
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[[[19, 25], [37, 43]]]])


X2CH = np.array([[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]], float)
K2CH = np.array([[[0, 1], [2, 3]], [[1, 2], [3, 4]]], float)


def test_multi_input_channels_d2l():
    np.testing.assert_array_equal(fc.conv2d(X2CH, K2CH[None]), [[[56, 72], [104, 120]]])


def test_multi_output_channels_d2l():
    """The seed prints 224 for the last element: (2*4+3*5+4*7+5*8) + (3*5+4*6+5*8+6*9)."""
    K = np.stack([K2CH, K2CH + 1, K2CH + 2])
    assert K.shape == (3, 2, 2, 2)
    np.testing.assert_array_equal(
        fc.conv2d(X2CH, K),
        [[[56, 72], [104, 120]], [[76, 100], [148, 172]], [[96, 128], [192, 224]]],
    )


def test_1x1_conv_is_matmul():
    rng = np.random.default_rng(1)
    x, w = rand(rng, (3, 3, 3)), rand(rng, (2, 3, 1, 1))
    want = (w[:, :, 0, 0] @ x.reshape(3, -1)).reshape(2, 3, 3)
    np.testing.assert_allclose(fc.conv2d(x, w), want, rtol=1e-12)


def edge_image():
    X = np.ones((6, 8))
    X[:, 2:6] = 0
    return X


def test_edge_detection_d2l():
    Y = fc.corr2d(edge_image(), [[1, -1]])
    want = np.zeros((6, 7))
    want[:, 1], want[:, 5] = 1, -1
    np.testing.assert_array_equal(Y, want)


def test_edge_detection_transposed_image_finds_nothing():
    np.testing.assert_array_equal(fc.corr2d(edge_image().T, [[1, -1]]), np.zeros((8, 5)))
    np.testing.assert_array_equal(fc.corr2d(edge_image(), [[1], [-1]]), np.zeros((5, 8)))


def test_lab_sobel_on_column_of_ones():
    image = np.zeros((1, 1, 5, 5), np.float32)
    image[0, 0, :, 2] = 1
    k = np.array([[1.0, 0, -1.0], [2.0, 0, -2.0], [1.0, 0.0, -1.0]], np.float32)[None, None]
    z = fc.conv2d(image, k, np.zeros(1, np.float32))
    np.testing.assert_array_equal(z, np.tile([-4.0, 0.0, 4.0], (1, 1, 3, 1)))


@pytest.mark.parametrize(
    "stride, padding, want",
    [
        (1, 0, np.full((3, 3), 4.0)),  # kernel 2 on 4x4 -> 3x3
        (2, 0, np.full((2, 2), 4.0)),  # stride 2 -> 2x2
        (3, 0, np.full((1, 1), 4.0)),  # kernel 2, stride 3 -> 1x1
        (3, 1, np.array([[1.0, 2.0], [2.0, 4.0]])),  # ... with padding 1 -> 2x2
    ],
)
def test_lab_kernel2_on_ones(stride, padding, want):
    z = fc.conv2d(np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 2, 2), np.float32),
                  stride=stride, padding=padding)
    np.testing.assert_array_equal(z[0, 0], want)


@pytest.mark.parametrize(
    "kernel, padding, stride, want",
    [
        ((3, 3), 1, 1, (8, 8)),
        ((5, 3), (2, 1), 1, (8, 8)),
        ((3, 3), 1, 2, (4, 4)),
        ((3, 5), (0, 1), (3, 4), (2, 2)),
    ],
)
def test_d2l_padding_stride_shapes(kernel, padding, stride, want):
    x = np.random.default_rng(2).standard_normal((1, 1, 8, 8))
    out = fc.conv2d(x, np.ones((1, 1, *kernel)), padding=padding, stride=stride)
    assert out.shape[2:] == want
    assert fc.output_shape((8, 8), kernel, stride=stride, padding=padding) == want


# --- the reference itself --------------------------------------------------------------------


@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_reference_vectorised_equals_loop(nsp):
    rng = np.random.default_rng(3)
    x, w, b = rand(rng, (2, 4, *SPATIAL[nsp])), rand(rng, (6, 2, *KERNEL[nsp])), rand(rng, 6)
    args = dict(stride=2, padding_pairs=[(1, 2)] * nsp, dilation=2, groups=2,
                padding_mode="reflect")
    np.testing.assert_allclose(conv_nd(x, w, b, **args), conv_nd_loop(x, w, b, **args),
                               rtol=1e-12, atol=1e-12)


@requires_scipy
@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_scipy_oracle_single_channel(nsp):
    from scipy import signal

    rng = np.random.default_rng(4)
    x, w = rand(rng, SPATIAL[nsp]), rand(rng, KERNEL[nsp])
    np.testing.assert_allclose(CONV[nsp](x[None], w[None, None])[0],
                               signal.correlate(x, w, mode="valid"), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(CONVOLVE[nsp](x[None], w[None, None], padding="full")[0],
                               signal.convolve(x, w, mode="full"), rtol=1e-10, atol=1e-12)


# --- every parameter against the reference -------------------------------------------------

PADDINGS = [0, 2, "valid", "same", "full", "tuple", "pairs"]


def _padding(form, nsp):
    return {"tuple": tuple(range(1, nsp + 1)), "pairs": ((0, 2), (1, 0), (2, 1))[:nsp]}.get(
        form, form)


@pytest.mark.parametrize("nsp", [1, 2, 3])
@pytest.mark.parametrize("padding", PADDINGS)
def test_padding_forms(nsp, padding):
    rng = np.random.default_rng(5)
    x, w = rand(rng, (2, 3, *SPATIAL[nsp])), rand(rng, (4, 3, *KERNEL[nsp]))
    pad = _padding(padding, nsp)
    assert_matches(CONV[nsp](x, w, padding=pad, dilation=2), x, w, padding=pad, dilation=2)


@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_same_padding_keeps_size_even_kernel(nsp):
    rng = np.random.default_rng(6)
    x, w = rand(rng, (1, 2, *SPATIAL[nsp])), rand(rng, (3, 2) + (4,) * nsp)
    out = CONV[nsp](x, w, padding="same")
    assert out.shape[2:] == SPATIAL[nsp]
    assert_matches(out, x, w, padding="same")


@pytest.mark.parametrize("nsp", [1, 2, 3])
@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_padding_modes(nsp, mode):
    rng = np.random.default_rng(7)
    x, w = rand(rng, (2, 2, *SPATIAL[nsp])), rand(rng, (3, 2, *KERNEL[nsp]))
    pad = ((3, 1), (0, 2), (2, 2))[:nsp]
    assert_matches(CONV[nsp](x, w, padding=pad, padding_mode=mode), x, w, padding=pad,
                   padding_mode=mode)


@pytest.mark.parametrize("mode", ["reflect", "circular"])
def test_padding_mode_at_its_width_limit(mode):
    """reflect pads up to n - 1, circular up to n (the whole input wraps around)."""
    rng = np.random.default_rng(8)
    x, w = rand(rng, (1, 1, 4)), rand(rng, (1, 1, 3))
    pad = 3 if mode == "reflect" else 4
    assert_matches(fc.conv1d(x, w, padding=pad, padding_mode=mode), x, w, padding=pad,
                   padding_mode=mode)


@pytest.mark.parametrize("nsp", [1, 2, 3])
@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 1), (1, 2), (3, 2), ("t", "t")])
def test_stride_and_dilation(nsp, stride, dilation):
    rng = np.random.default_rng(9)
    x, w = rand(rng, (2, 3, *(s + 4 for s in SPATIAL[nsp]))), rand(rng, (5, 3, *KERNEL[nsp]))
    stride = tuple(range(1, nsp + 1)) if stride == "t" else stride
    dilation = tuple(range(nsp, 0, -1)) if dilation == "t" else dilation
    assert_matches(CONV[nsp](x, w, stride=stride, dilation=dilation, padding=1), x, w,
                   stride=stride, dilation=dilation, padding=1)


@pytest.mark.parametrize("nsp", [1, 2, 3])
@pytest.mark.parametrize("c, k, groups", [(4, 6, 2), (6, 3, 3), (4, 4, 4), (3, 6, 3), (2, 9, 1)])
def test_groups_and_depthwise(nsp, c, k, groups):
    rng = np.random.default_rng(10)
    x, w = rand(rng, (2, c, *SPATIAL[nsp])), rand(rng, (k, c // groups, *KERNEL[nsp]))
    b = rand(rng, k)
    assert_matches(CONV[nsp](x, w, b, groups=groups, padding="same"), x, w, b, groups=groups,
                   padding="same")


@pytest.mark.parametrize("k", range(1, 10))
def test_every_output_channel_count(k):
    """Output channels are computed in blocks: every remainder must be right."""
    rng = np.random.default_rng(11)
    x, w, b = rand(rng, (1, 2, 5, 6)), rand(rng, (k, 2, 2, 3)), rand(rng, k)
    assert_matches(fc.conv2d(x, w, b), x, w, b)


@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_bias_and_unbatched(nsp):
    rng = np.random.default_rng(12)
    x, w, b = rand(rng, (3, *SPATIAL[nsp])), rand(rng, (4, 3, *KERNEL[nsp])), rand(rng, 4)
    out = CONV[nsp](x, w, b, padding=1)
    assert out.ndim == nsp + 1
    assert_matches(out[None], x[None], w, b, padding=1)
    np.testing.assert_allclose(out - CONV[nsp](x, w, padding=1),
                               np.broadcast_to(b.reshape((4,) + (1,) * nsp), out.shape),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_convolve_is_correlation_with_flipped_kernel(nsp):
    rng = np.random.default_rng(13)
    x, w, b = rand(rng, (2, 2, *SPATIAL[nsp])), rand(rng, (4, 1, *KERNEL[nsp])), rand(rng, 4)
    flipped = w[(slice(None), slice(None)) + (slice(None, None, -1),) * nsp]
    out = CONVOLVE[nsp](x, w, b, stride=2, padding="full", groups=2, padding_mode="zeros")
    assert_matches(out, x, flipped, b, stride=2, padding="full", groups=2)


def test_convolve2d_nchw_style_via_fc():
    """fc.convolve2d with a 3-D/4-D first argument is the NCHW true convolution."""
    rng = np.random.default_rng(14)
    x, w = rand(rng, (2, 3, 6, 5)), rand(rng, (2, 3, 3, 2))
    want = fc.conv2d(x, w[:, :, ::-1, ::-1], padding=1)
    np.testing.assert_allclose(fc.convolve2d(x, w, padding=1), want, rtol=1e-12)
    np.testing.assert_allclose(fc.convolve2d(x[0], w, padding=1), want[0], rtol=1e-12)
    np.testing.assert_array_equal(
        fc.convolve2d(np.arange(9.0).reshape(1, 3, 3), [[[[3.0, 2.0], [1.0, 0.0]]]]),
        [[[19, 25], [37, 43]]])


@requires_scipy
@pytest.mark.parametrize("mode", ["full", "valid", "same"])
def test_convolve2d_scipy_style_via_fc(mode):
    """fc.convolve2d with a 2-D first argument is scipy.signal.convolve2d."""
    from scipy import signal

    rng = np.random.default_rng(15)
    a, k = rand(rng, (6, 7)), rand(rng, (3, 2))
    np.testing.assert_allclose(fc.convolve2d(a, k, mode=mode),
                               signal.convolve2d(a, k, mode=mode), rtol=1e-10, atol=1e-12)


# --- hypothesis over the whole parameter space ----------------------------------------------


@st.composite
def conv_cases(draw):
    nsp = draw(st.integers(1, 3))
    kernel = draw(st.lists(st.integers(1, 3), min_size=nsp, max_size=nsp))
    dilation = draw(st.lists(st.integers(1, 2), min_size=nsp, max_size=nsp))
    form = draw(st.sampled_from(["int", "pairs", "valid", "same", "full"]))
    stride = [1] * nsp if form == "same" else draw(
        st.lists(st.integers(1, 3), min_size=nsp, max_size=nsp))
    if form == "int":
        padding = draw(st.integers(0, 2))
    elif form == "pairs":
        padding = tuple(draw(st.tuples(st.integers(0, 2), st.integers(0, 2)))
                        for _ in range(nsp))
    else:
        padding = form
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    pairs = padding_pairs(padding, kernel, dilation)
    spatial = []
    for k, d, (b, a) in zip(kernel, dilation, pairs, strict=True):
        lo = max(1, d * (k - 1) + 1 - b - a, max(b, a) + 1 if mode == "reflect" else 0,
                 max(b, a) if mode == "circular" else 0)
        spatial.append(draw(st.integers(lo, lo + 3)))
    groups = draw(st.sampled_from([1, 2]))
    c = groups * draw(st.integers(1, 2))
    k = groups * draw(st.integers(1, 5))
    return dict(nsp=nsp, shape=(draw(st.integers(1, 2)), c, *spatial),
                wshape=(k, c // groups, *kernel), stride=stride, padding=padding,
                dilation=dilation, groups=groups, padding_mode=mode,
                dtype=draw(st.sampled_from([np.float32, np.float64])),
                bias=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


@given(conv_cases())
def test_hypothesis_against_reference(case):
    rng = np.random.default_rng(case["seed"])
    dt = case["dtype"]
    x, w = rand(rng, case["shape"], dt), rand(rng, case["wshape"], dt)
    b = rand(rng, case["wshape"][0], dt) if case["bias"] else None
    kw = {k: case[k] for k in ("stride", "padding", "dilation", "groups", "padding_mode")}
    assert_matches(CONV[case["nsp"]](x, w, b, **kw), x, w, b, dtype=dt, **kw)


def test_output_size_formula_matches_engine():
    for n, k, s, b, a, d in [(8, 3, 2, 1, 1, 1), (10, 3, 3, 0, 2, 2), (5, 5, 1, 0, 0, 1)]:
        out = fc.conv1d(np.ones((1, 1, n)), np.ones((1, 1, k)), stride=s,
                        padding=((b, a),), dilation=d)
        assert out.shape[-1] == output_size(n, k, s, b, a, d)


# --- PyTorch as an oracle --------------------------------------------------------------------


@requires_torch
@pytest.mark.parametrize("nsp", [1, 2, 3])
@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_oracle(nsp, mode, dtype):
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(16)
    x, w, b = rand(rng, (2, 4, *SPATIAL[nsp]), dtype), rand(rng, (6, 2, *KERNEL[nsp]), dtype), \
        rand(rng, 6, dtype)
    stride, dilation, pad = (2, 1, 1)[:nsp], (1, 2, 1)[:nsp], (1, 2, 1)[:nsp]
    got = CONV[nsp](x, w, b, stride=stride, padding=pad, dilation=dilation, groups=2,
                    padding_mode=mode)
    tx = torch.from_numpy(x)
    if mode != "zeros":
        tx = F.pad(tx, [p for p in reversed(pad) for _ in range(2)], mode=mode)
    want = getattr(F, f"conv{nsp}d")(tx, torch.from_numpy(w), torch.from_numpy(b),
                                      stride=stride, padding=0 if mode != "zeros" else pad,
                                      dilation=dilation, groups=2).numpy()
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype] * 10, atol=RTOL[dtype] * 10)


@requires_torch
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_torch_same_padding_even_kernel_dilated(nsp):
    """PyTorch's own 'same' puts the odd extra element after: ours must agree."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(17)
    x, w = rand(rng, (1, 2, *SPATIAL[nsp])), rand(rng, (3, 2) + (2,) * nsp)
    want = getattr(F, f"conv{nsp}d")(torch.from_numpy(x), torch.from_numpy(w), padding="same",
                                      dilation=3).numpy()
    np.testing.assert_allclose(CONV[nsp](x, w, padding="same", dilation=3), want,
                               rtol=1e-10, atol=1e-12)


# --- dtypes and layouts ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_dtypes_preserved(dtype):
    rng = np.random.default_rng(18)
    x, w = rand(rng, (2, 3, 9, 8), dtype), rand(rng, (4, 3, 3, 3), dtype)
    assert_matches(fc.conv2d(x, w, padding=1), x, w, padding=1, dtype=dtype)


@pytest.mark.parametrize(
    "xdt, wdt, want",
    [
        (np.uint8, np.float32, np.float32),
        (np.int64, np.int64, np.float64),
        (np.int16, np.float32, np.float32),
        (np.float32, np.float64, np.float64),
        (np.float16, np.float16, np.float32),
        (np.int32, np.float32, np.float64),
    ],
)
def test_dtype_promotion(xdt, wdt, want):
    x = np.arange(2 * 5 * 5).reshape(2, 5, 5).astype(xdt)
    w = np.array([[[[1, 2], [3, 4]]] * 2], dtype=wdt)
    out = fc.conv2d(x, w)
    assert out.dtype == want
    assert np.result_type(xdt, wdt, np.float32) == want  # the SPEC's rule
    np.testing.assert_array_equal(out, conv_nd(x[None], w)[0])


@pytest.mark.parametrize("bad", [np.complex128, object, np.str_])  # bool: tests/test_edges.py
@pytest.mark.parametrize("which", ["x", "weight", "bias"])
def test_non_real_dtypes_raise_type_error(bad, which):
    args = {"x": np.ones((1, 2, 4, 4)), "weight": np.ones((3, 2, 2, 2)), "bias": np.ones(3)}
    args[which] = args[which].astype(bad)
    with pytest.raises(TypeError, match=rf"conv2d: {which} has dtype .*expected a real numeric"):
        fc.conv2d(args["x"], args["weight"], args["bias"])


def test_string_argument_raises_type_error():
    with pytest.raises(TypeError, match="conv1d: x has dtype <U"):
        fc.conv1d("abc", np.ones((1, 1, 1)))


@pytest.mark.parametrize(
    "layout",
    ["transposed", "reversed", "sliced", "byteswapped", "broadcast", "fortran"],
)
def test_memory_layouts(layout):
    rng = np.random.default_rng(19)
    x = rand(rng, (2, 3, 7, 6))
    w = rand(rng, (4, 3, 3, 2))
    if layout == "transposed":
        xa, wa = rand(rng, (6, 7, 3, 2)).T, rand(rng, (2, 3, 3, 4)).T
        assert not xa.flags.c_contiguous
        x, w = xa.copy(), wa.copy()
    elif layout == "reversed":
        xa, wa = x[:, :, ::-1, ::-1].copy()[:, :, ::-1, ::-1], w[:, ::-1].copy()[:, ::-1]
    elif layout == "sliced":
        big = rand(rng, (2, 6, 7, 12))
        xa, x = big[:, ::2, :, ::2], big[:, ::2, :, ::2].copy()
        wa = w
    elif layout == "byteswapped":
        xa, wa = x.astype(">f8"), w.astype(">f4")
        w = wa.astype(np.float64)
    elif layout == "broadcast":
        xa = np.broadcast_to(x[:1], x.shape)
        assert xa.strides[0] == 0
        x = xa.copy()
        wa = w
    else:
        xa, wa = np.asfortranarray(x), np.asfortranarray(w)
    out = fc.conv2d(xa, wa, padding=(1, 2), stride=(1, 2))
    assert_matches(out, x, w, padding=(1, 2), stride=(1, 2))


def test_inputs_are_not_modified():
    rng = np.random.default_rng(20)
    x, w = rand(rng, (1, 2, 5, 5)), rand(rng, (2, 2, 3, 3))
    x0, w0 = x.copy(), w.copy()
    fc.conv2d(x, w, padding=2, padding_mode="reflect")
    fc.convolve2d(x, w)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


@pytest.mark.parametrize("algorithm", ["auto", "direct", "gemm", "fft"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_propagate(dtype, algorithm):
    """Locally (only outputs whose window holds them), silently (warnings are errors here)."""
    x = np.ones((1, 1, 5, 6), dtype)
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 3, 4] = np.inf
    w = np.ones((2, 1, 2, 2), dtype)
    w[1, 0, 0, 0] = 0.0  # inf * 0 is NaN, as in NumPy
    out = fc.conv2d(x, w, algorithm=algorithm)
    with np.errstate(invalid="ignore"):
        want = conv_nd(x, w)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(out), np.isposinf(want))
    assert np.isnan(out[0, 0, 0, 0]) and np.isposinf(out[0, 0, 3, 4])
    assert np.isnan(out[0, 1, 3, 4]) and np.isposinf(out[0, 1, 2, 3])
    assert np.isfinite(out).sum() == np.isfinite(want).sum() > 0


# --- errors (SPEC §4), all raised before any kernel runs ------------------------------------


@pytest.fixture
def no_kernels(monkeypatch):
    """Fail loudly if a backend kernel runs: errors must come from validation."""

    def boom(*args, **kwargs):
        raise AssertionError("a kernel ran before the argument error was raised")

    monkeypatch.setattr(fastconv.cpu, "correlate", boom)
    monkeypatch.setattr(fastconv.cpu, "pad", boom)
    monkeypatch.setattr(fastconv._run, "correlation_core", boom)


X44 = np.ones((1, 3, 8, 8))
W33 = np.ones((4, 3, 3, 3))

ERRORS = [
    # (exception, match, call)
    (ValueError, r"conv2d: x must be 4-D \(N, C, \*spatial\) or 3-D \(C, \*spatial\), got 2-D "
     r"with x.shape=\(8, 8\)", lambda: fc.conv2d(np.ones((8, 8)), W33)),
    (ValueError, r"conv1d: x must be 3-D .* got 5-D", lambda: fc.conv1d(np.ones((1,) * 5),
                                                                         np.ones((1, 1, 1)))),
    (ValueError, r"conv3d: weight must be 5-D \(K, C // groups, \*kernel\), got 4-D",
     lambda: fc.conv3d(np.ones((1, 3, 4, 4, 4)), W33)),
    (ValueError, r"conv2d: channel mismatch: x has C=3 but weight.shape\[1\] \* groups = 2 "
     r"\(x.shape=\(1, 3, 8, 8\), weight.shape=\(4, 2, 3, 3\)\)",
     lambda: fc.conv2d(X44, np.ones((4, 2, 3, 3)))),
    (ValueError, r"conv2d: channel mismatch: x has C=4 but weight.shape\[1\] \* groups = 6",
     lambda: fc.conv2d(np.ones((1, 4, 8, 8)), np.ones((4, 3, 3, 3)), groups=2)),
    (ValueError, r"conv2d: kernel larger than the padded input: padded input \(4, 10\) vs "
     r"dilated kernel \(5, 5\) gives output size \(0, 6\) < 1 \(x.shape=",
     lambda: fc.conv2d(np.ones((1, 3, 4, 10)), np.ones((4, 3, 5, 5)))),
    (ValueError, r"conv1d: kernel larger than the padded input: padded input \(6,\) vs dilated "
     r"kernel \(7,\)", lambda: fc.conv1d(np.ones((1, 1, 4)), np.ones((1, 1, 4)), padding=1,
                                         dilation=2)),
    (ValueError, r"conv2d: stride must be >= 1, got 0", lambda: fc.conv2d(X44, W33, stride=0)),
    (ValueError, r"conv2d: stride must be >= 1, got \(1, -1\)",
     lambda: fc.conv2d(X44, W33, stride=(1, -1))),
    (ValueError, r"conv3d: dilation must be >= 1, got 0",
     lambda: fc.conv3d(np.ones((1, 1, 4, 4, 4)), np.ones((1, 1, 2, 2, 2)), dilation=0)),
    (ValueError, r"conv2d: stride must be an int or a tuple of 2 ints, got \(1, 2, 3\)",
     lambda: fc.conv2d(X44, W33, stride=(1, 2, 3))),
    (TypeError, r"conv2d: dilation must be an int or a tuple of 2 ints, got '2'",
     lambda: fc.conv2d(X44, W33, dilation="2")),
    (ValueError, r"conv2d: padding must be >= 0, got -1", lambda: fc.conv2d(X44, W33,
                                                                              padding=-1)),
    (ValueError, r"conv2d: padding must be >= 0, got \(\(0, 1\), \(-1, 0\)\)",
     lambda: fc.conv2d(X44, W33, padding=((0, 1), (-1, 0)))),
    (ValueError, r"conv2d: padding must be an int, a tuple of 2 ints or of 2 \(before, after\) "
     r"pairs, got \(\(0, 1, 2\), \(1, 0\)\)",
     lambda: fc.conv2d(X44, W33, padding=((0, 1, 2), (1, 0)))),
    (ValueError, r"conv2d: padding='same' is not supported for strided convolutions "
     r"\(stride=\(2, 2\)\)", lambda: fc.conv2d(X44, W33, padding="same", stride=2)),
    (ValueError, r"conv2d: invalid padding string 'foo', should be one of "
     r"\('valid', 'same', 'full'\)", lambda: fc.conv2d(X44, W33, padding="foo")),
    (ValueError, r"conv2d: invalid padding_mode 'mirror', should be one of \('zeros', "
     r"'reflect', 'replicate', 'circular'\)",
     lambda: fc.conv2d(X44, W33, padding=1, padding_mode="mirror")),
    (ValueError, r"conv2d: invalid padding_mode 'wrap'",
     lambda: fc.conv2d(X44, W33, padding_mode="wrap")),
    (ValueError, r"conv2d: reflect padding \(\(0, 0\), \(8, 8\)\) must be smaller than the "
     r"input's spatial size \(8, 8\)",
     lambda: fc.conv2d(X44, W33, padding=(0, 8), padding_mode="reflect")),
    (ValueError, r"conv1d: circular padding \(\(5, 5\),\) must not exceed the input's spatial "
     r"size \(4,\)", lambda: fc.conv1d(np.ones((1, 1, 4)), np.ones((1, 1, 3)), padding=5,
                                       padding_mode="circular")),
    (ValueError, r"conv2d: groups=2 must divide both the input channels C=3 and the output "
     r"channels K=4", lambda: fc.conv2d(X44, np.ones((4, 1, 3, 3)), groups=2)),
    (ValueError, r"conv2d: groups=2 must divide both the input channels C=4 and the output "
     r"channels K=3", lambda: fc.conv2d(np.ones((1, 4, 8, 8)), np.ones((3, 2, 3, 3)),
                                        groups=2)),
    (ValueError, r"conv2d: groups must be an int >= 1, got 0",
     lambda: fc.conv2d(X44, W33, groups=0)),
    (ValueError, r"conv2d: groups must be an int >= 1, got 1.0",
     lambda: fc.conv2d(X44, W33, groups=1.0)),
    (ValueError, r"conv2d: bias must have shape \(K,\) = \(4,\), got bias.shape=\(3,\)",
     lambda: fc.conv2d(X44, W33, np.ones(3))),
    (ValueError, r"conv2d: bias must have shape \(K,\) = \(4,\), got bias.shape=\(1, 4\)",
     lambda: fc.conv2d(X44, W33, np.ones((1, 4)))),
    (ValueError, r"conv2d: x has an empty spatial axis \(x.shape=\(1, 3, 0, 8\)",
     lambda: fc.conv2d(np.ones((1, 3, 0, 8)), W33)),
    (ValueError, r"conv2d: x is not a rectangular array",
     lambda: fc.conv2d([[[1.0, 2.0], [3.0]]], W33)),
    (ValueError, r"conv2d: invalid algorithm 'winograd2'",
     lambda: fc.conv2d(X44, W33, algorithm="winograd2")),
    (ValueError, r"conv2d: invalid device 'tpu', should be one of \('cpu', 'cuda'\)",
     lambda: fc.conv2d(X44, W33, device="tpu")),
    (ValueError, r"corr2d: X must be 2-D, got 3-D with X.shape=\(1, 3, 3\)",
     lambda: fc.corr2d(np.ones((1, 3, 3)), np.ones((2, 2)))),
    (ValueError, r"corr2d: K must be 2-D, got 1-D", lambda: fc.corr2d(np.ones((3, 3)),
                                                                       np.ones(2))),
    (ValueError, r"corr2d: kernel larger than the padded input",
     lambda: fc.corr2d(np.ones((3, 3)), np.ones((4, 1)))),
    (ValueError, r"convolve3d: channel mismatch", lambda: fc.convolve3d(
        np.ones((2, 4, 4, 4)), np.ones((1, 3, 2, 2, 2)))),
    (ValueError, r"convolve2d: padding='same' is not supported for strided",
     lambda: convolve2d(X44, W33, padding="same", stride=(1, 2))),
]


@pytest.mark.parametrize("exc, match, call", ERRORS, ids=[e[1][:50] for e in ERRORS])
def test_error_messages(no_kernels, exc, match, call):
    with pytest.raises(exc, match=match):
        call()


def test_no_kernels_fixture_can_fail(no_kernels):
    with pytest.raises(AssertionError, match="a kernel ran"):
        fc.conv2d(X44, W33)


def test_numpy_integer_parameters_accepted():
    rng = np.random.default_rng(21)
    x, w = rand(rng, (1, 4, 6, 6)), rand(rng, (4, 2, 3, 3))
    out = fc.conv2d(x, w, stride=np.int64(2), padding=(np.int32(1), 1), groups=np.int64(2))
    assert_matches(out, x, w, stride=2, padding=1, groups=2)


def test_plan_cache_reuses_only_identical_plain_calls():
    from fastconv import _plan

    rng = np.random.default_rng(77)
    x = rng.standard_normal((1, 2, 6, 7))
    w = rng.standard_normal((3, 2, 3, 3))
    first = fc.conv2d(x, w, padding=1)
    key_count = len(_plan._CONV_PLANS)
    np.testing.assert_array_equal(fc.conv2d(x, w, padding=1), first)
    assert len(_plan._CONV_PLANS) == key_count  # the second call hit the cache
    # same shapes but another dtype or parameter: a new plan, a new result shape
    assert fc.conv2d(x.astype(np.float32), w, padding=1).dtype == np.float64
    assert fc.conv2d(x, w, padding=0).shape == (1, 3, 4, 5)
    # values that compare equal to cached ints still reach the checks, every time
    for _ in range(2):
        with pytest.raises(TypeError, match="conv2d: stride must be an int or a tuple"):
            fc.conv2d(x, w, stride=True, padding=1)
        with pytest.raises(ValueError, match="conv2d: padding must be >= 0"):
            fc.conv2d(x, w, padding=-1)
