"""fastconv.ndimage against scipy.ndimage (the oracle) and by hand.

Hand-computed cases first, then SciPy over hypothesis-drawn shapes, kernels, every mode,
origins, axes and dtypes; output-dtype rules; errors; Dask (lazy, bit-identical).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_scipy
from hypothesis import given
from hypothesis import strategies as st

from fastconv import ndimage as fnd

try:
    from scipy import ndimage as snd
except ImportError:  # pragma: no cover - SciPy is a test extra
    snd = None

MODES = ("reflect", "grid-mirror", "mirror", "nearest", "wrap", "grid-wrap", "constant",
         "grid-constant")

# ---------------------------------------------------------------- by hand


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("reflect", [4, 6, 8]),  # 1 | 1 2 3 | 3
        ("mirror", [5, 6, 7]),  # 2 | 1 2 3 | 2
        ("nearest", [4, 6, 8]),  # 1 | 1 2 3 | 3
        ("wrap", [6, 6, 6]),  # 3 | 1 2 3 | 1
        ("constant", [13, 6, 15]),  # 10 | 1 2 3 | 10
    ],
)
def test_modes_by_hand(mode, expected):
    out = fnd.correlate1d(np.array([1.0, 2.0, 3.0]), [1, 1, 1], mode=mode, cval=10)
    np.testing.assert_array_equal(out, expected)


def test_origin_and_even_kernel_by_hand():
    # out[i] = w0*in[i-1] + w1*in[i] (k // 2 = 1 before); origin=-1 shifts one right
    x = np.array([2.0, 8.0, 0.0, 4.0])
    np.testing.assert_array_equal(fnd.correlate1d(x, [1, 3], mode="constant"), [6, 26, 8, 12])
    np.testing.assert_array_equal(fnd.correlate1d(x, [1, 3], mode="constant", origin=-1),
                                  [26, 8, 12, 4])


def test_integer_output_truncates_like_scipy():
    x = np.array([5, 0, 0, -5, 0, 0], np.int32)
    np.testing.assert_array_equal(fnd.correlate1d(x, [0.5, 0, 0.5]), [2, 2, -2, 0, -2, 0])


def test_uint8_wraps_like_a_c_cast():
    out = fnd.correlate1d(np.array([1, 2, 3], np.uint8), [1, -3], mode="constant")
    np.testing.assert_array_equal(out, [253, 251, 249])
    assert out.dtype == np.uint8


# ---------------------------------------------------------------- SciPy as the oracle

shapes = st.lists(st.integers(1, 7), min_size=1, max_size=4).map(tuple)


def _kernel_and_origin(draw, ndim):
    kshape = tuple(draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim)))
    origin = tuple(draw(st.integers(-(k // 2), (k - 1) // 2)) for k in kshape)
    return kshape, origin


@st.composite
def nd_cases(draw):
    shape = draw(shapes)
    kshape, origin = _kernel_and_origin(draw, len(shape))
    return shape, kshape, origin


@requires_scipy
@pytest.mark.parametrize("name", ["correlate", "convolve"])
@pytest.mark.parametrize("mode", MODES)
@given(case=nd_cases(), cval=st.sampled_from([0.0, 1.5]), seed=st.integers(0, 2**16))
def test_correlate_convolve_match_scipy(name, mode, case, cval, seed):
    shape, kshape, origin = case
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(shape), rng.standard_normal(kshape)
    expected = getattr(snd, name)(x, w, mode=mode, cval=cval, origin=origin)
    out = getattr(fnd, name)(x, w, mode=mode, cval=cval, origin=origin)
    assert out.dtype == expected.dtype and out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)


@requires_scipy
@pytest.mark.parametrize("name", ["correlate1d", "convolve1d"])
@pytest.mark.parametrize("mode", MODES)
@given(shape=shapes, k=st.integers(1, 9), data=st.data(), seed=st.integers(0, 2**16))
def test_1d_filters_match_scipy(name, mode, shape, k, data, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    origin = data.draw(st.integers(-(k // 2), (k - 1) // 2))
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(k)
    expected = getattr(snd, name)(x, w, axis=axis, mode=mode, cval=-2.0, origin=origin)
    out = getattr(fnd, name)(x, w, axis=axis, mode=mode, cval=-2.0, origin=origin)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@requires_scipy
@pytest.mark.parametrize("mode", MODES)
@given(shape=shapes, sigma=st.floats(0.3, 3.0), order=st.integers(0, 2),
       truncate=st.sampled_from([4.0, 2.0, 1.0]), seed=st.integers(0, 2**16))
def test_gaussian_filter_matches_scipy(mode, shape, sigma, order, truncate, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    expected = snd.gaussian_filter(x, sigma, order=order, mode=mode, truncate=truncate)
    out = fnd.gaussian_filter(x, sigma, order=order, mode=mode, truncate=truncate)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)


@requires_scipy
@pytest.mark.parametrize("mode", MODES)
@given(case=nd_cases(), seed=st.integers(0, 2**16))
def test_uniform_filter_matches_scipy(mode, case, seed):
    shape, size, origin = case
    x = np.random.default_rng(seed).standard_normal(shape)
    expected = snd.uniform_filter(x, size, mode=mode, origin=origin, cval=0.5)
    out = fnd.uniform_filter(x, size, mode=mode, origin=origin, cval=0.5)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)


@requires_scipy
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.int64, np.float32])
@pytest.mark.parametrize("func", ["gaussian_filter", "uniform_filter", "correlate"])
def test_dtypes_follow_scipy(dtype, func):
    rng = np.random.default_rng(3)
    x = (rng.random((9, 11)) * 100).astype(dtype)
    args = {"gaussian_filter": (1.2,), "uniform_filter": (3,),
            "correlate": (np.array([[1, -2, 0.5], [0.25, 1, 0]]),)}[func]
    expected = getattr(snd, func)(x, *args)
    out = getattr(fnd, func)(x, *args)
    assert out.dtype == expected.dtype == dtype
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1 if x.dtype.kind in "iu" else 1e-4)


@requires_scipy
@pytest.mark.parametrize("output", [np.float32, "float64", np.dtype(np.int16)])
def test_output_dtype_and_array(output):
    x = np.arange(20.0).reshape(4, 5)
    expected = snd.gaussian_filter(x, 1.0, output=output)
    out = fnd.gaussian_filter(x, 1.0, output=output)
    assert out.dtype == expected.dtype
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-5)
    buf = np.zeros((4, 5), np.float32)
    res = fnd.correlate(x, np.ones((2, 2)), output=buf)
    assert res is buf
    np.testing.assert_allclose(buf, snd.correlate(x, np.ones((2, 2))))


@requires_scipy
def test_axes_and_per_axis_arguments():
    x = np.random.default_rng(0).standard_normal((5, 6, 7))
    np.testing.assert_allclose(fnd.correlate(x, np.ones((3, 2)), axes=(0, 2), origin=(1, 0)),
                               snd.correlate(x, np.ones((3, 2)), axes=(0, 2), origin=(1, 0)),
                               atol=1e-12)
    kw = dict(sigma=(1.0, 0.0, 2.0), order=(0, 0, 1), mode=("wrap", "reflect", "mirror"),
              radius=(2, None, 3))
    np.testing.assert_allclose(fnd.gaussian_filter(x, **kw), snd.gaussian_filter(x, **kw),
                               atol=1e-12)
    kw = dict(size=(3, 1, 4), origin=(0, 0, -1), mode=("nearest", "constant", "wrap"))
    np.testing.assert_allclose(fnd.uniform_filter(x, **kw), snd.uniform_filter(x, **kw),
                               atol=1e-12)
    np.testing.assert_allclose(fnd.gaussian_filter(x, 1.5, axes=-1),
                               snd.gaussian_filter(x, 1.5, axes=-1), atol=1e-12)


def test_non_contiguous_and_byteswapped_inputs():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 9))
    w = rng.standard_normal((3, 3))
    expected = fnd.correlate(np.ascontiguousarray(x.T), w)
    np.testing.assert_array_equal(fnd.correlate(x.T, w), expected)
    np.testing.assert_array_equal(fnd.correlate(x.T.astype(">f8"), w), expected)


def test_nan_propagates():
    x = np.ones((5, 5))
    x[2, 2] = np.nan
    out = fnd.uniform_filter(x, 3)
    assert np.isnan(out[1:4, 1:4]).all() and np.isfinite(out[0, 0])


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: fnd.correlate(np.ones((4, 4)), np.ones(3)), RuntimeError, "weights.ndim"),
        (lambda: fnd.correlate(np.ones((4, 4)), np.ones((3, 3)), origin=2), ValueError,
         "Invalid origin"),
        (lambda: fnd.correlate(np.ones(4), np.ones(3), mode="foo"), RuntimeError,
         "boundary mode not supported"),
        (lambda: fnd.correlate(np.ones(4), np.ones(3), mode=["wrap"]), RuntimeError,
         "sequence of modes"),
        (lambda: fnd.correlate1d(np.ones(4), []), RuntimeError, "no filter weights"),
        (lambda: fnd.correlate(np.ones(4), np.ones(3), output=np.ones(3)), RuntimeError,
         "output shape not correct"),
        (lambda: fnd.correlate(np.ones(4, np.complex128), np.ones(3)), TypeError, "complex"),
        (lambda: fnd.correlate(np.ones(4, np.float16), np.ones(3)), RuntimeError,
         "not supported"),
        (lambda: fnd.uniform_filter1d(np.ones(4), 0), RuntimeError, "incorrect filter size"),
        (lambda: fnd.gaussian_filter(np.ones(4), 1.0, radius=-1), ValueError, "Radius"),
        (lambda: fnd.gaussian_filter(np.ones(4), 1.0, order=-1), ValueError, "order"),
        (lambda: fnd.uniform_filter(np.ones((4, 4)), (3, 3, 3)), RuntimeError, "sequence"),
        (lambda: fnd.correlate(np.ones((4, 4)), np.ones((3, 3)), axes=(0, 0)), ValueError,
         "unique"),
    ],
)
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_ndimage_error_is_both_value_and_runtime_error():
    assert issubclass(fnd.NdimageError, ValueError)
    assert issubclass(fnd.NdimageError, RuntimeError)


# ---------------------------------------------------------------- Dask


@pytest.mark.parametrize("mode", ["reflect", "mirror", "nearest", "wrap", "constant"])
def test_dask_lazy_and_bit_identical(mode):
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((30, 27)).astype(np.float32)
    dx = da.from_array(x, chunks=(11, 8))
    w = rng.standard_normal((5, 3)).astype(np.float32)
    cases = [
        (lambda a: fnd.correlate(a, w, mode=mode, cval=2.0, origin=(1, -1))),
        (lambda a: fnd.convolve(a, w, mode=mode)),
        (lambda a: fnd.gaussian_filter(a, 1.5, mode=mode)),
        (lambda a: fnd.uniform_filter(a, (3, 4), mode=mode)),
        (lambda a: fnd.convolve1d(a, [1.0, 2.0, 3.0, 4.0], axis=0, mode=mode)),
    ]
    for f in cases:
        lazy = f(dx)
        assert isinstance(lazy, da.Array)
        np.testing.assert_array_equal(lazy.compute(scheduler="threads"), f(x))


def test_dask_integer_separable_matches_memory():
    da = pytest.importorskip("dask.array")
    x = (np.random.default_rng(4).random((20, 17)) * 200).astype(np.int16)
    dx = da.from_array(x, chunks=(7, 9))
    out = fnd.gaussian_filter(dx, 2.0)
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out.compute(), fnd.gaussian_filter(x, 2.0))


# ---------------------------------------------------------------- the pass kernels


@requires_scipy
@pytest.mark.parametrize("axis", [0, 1])
def test_long_kernels_take_the_fft_and_match_scipy(axis):
    x = np.random.default_rng(5).standard_normal((40, 37))
    out = fnd.gaussian_filter1d(x, 60.0, axis=axis, mode="wrap")  # 481 taps >= 400
    np.testing.assert_allclose(out, snd.gaussian_filter1d(x, 60.0, axis=axis, mode="wrap"),
                               rtol=1e-9, atol=1e-9)


def test_passes_bit_identical_for_any_thread_count():
    import numba

    x = np.random.default_rng(6).standard_normal((64, 80)).astype(np.float32)
    n = numba.get_num_threads()
    ref = fnd.gaussian_filter(x, 2.0)
    numba.set_num_threads(1)
    try:
        one = fnd.gaussian_filter(x, 2.0)
    finally:
        numba.set_num_threads(n)
    np.testing.assert_array_equal(one, ref)
