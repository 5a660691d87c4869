"""fastconv.signal against scipy.signal (the oracle) and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_scipy
from hypothesis import given
from hypothesis import strategies as st

import fastconv as fc
from fastconv import signal as fsig

try:
    from scipy import signal as ssig
except ImportError:  # pragma: no cover - SciPy is a test extra
    ssig = None

MODES = ("full", "same", "valid")


def test_by_hand():
    np.testing.assert_array_equal(fsig.convolve([1, 2, 3], [0, 1, 0.5]), [0, 1, 2.5, 4, 1.5])
    np.testing.assert_array_equal(fsig.correlate([1, 2, 3], [0, 1, 0.5]), [0.5, 2, 3.5, 3, 0])
    np.testing.assert_array_equal(fsig.convolve([1, 2, 3], [0, 1, 0.5], "same"), [1, 2.5, 4])
    # valid with the larger second input: swapped, as SciPy
    np.testing.assert_array_equal(fsig.convolve([1, 1], [1, 2, 3], "valid"), [3, 5])


def test_2d_dropins_are_reexported():
    assert fsig.correlate2d is fc.correlate2d
    np.testing.assert_array_equal(fsig.convolve2d([[1, 2], [3, 4]], [[1, 1]], mode="valid"),
                                  [[3], [7]])
    with pytest.raises(ValueError, match="2-D"):
        fsig.convolve2d(np.ones((1, 3, 3)), np.ones((1, 1, 2, 2)))


shape_pairs = st.integers(1, 4).flatmap(
    lambda n: st.tuples(st.lists(st.integers(1, 7), min_size=n, max_size=n).map(tuple),
                        st.lists(st.integers(1, 7), min_size=n, max_size=n).map(tuple)))


def _both(f_ours, f_ref):
    """(ours, reference) or the exception types when SciPy raises."""
    try:
        ref = f_ref()
    except ValueError:
        with pytest.raises(ValueError):
            f_ours()
        return None, None
    return f_ours(), ref


@requires_scipy
@pytest.mark.parametrize("name", ["correlate", "convolve"])
@pytest.mark.parametrize("method", ["direct", "fft", "auto"])
@pytest.mark.parametrize("mode", MODES)
@given(shapes=shape_pairs, seed=st.integers(0, 2**16))
def test_correlate_convolve_match_scipy(name, method, mode, shapes, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    ours, ref = _both(lambda: getattr(fsig, name)(a, b, mode, method),
                      lambda: getattr(ssig, name)(a, b, mode, method))
    if ref is not None:
        assert ours.shape == ref.shape and ours.dtype == np.float64
        np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9)


@requires_scipy
@pytest.mark.parametrize("name", ["fftconvolve", "oaconvolve"])
@pytest.mark.parametrize("mode", MODES)
@given(shapes=shape_pairs, seed=st.integers(0, 2**16), data=st.data())
def test_fft_functions_match_scipy_with_axes(name, mode, shapes, seed, data):
    rng = np.random.default_rng(seed)
    s1, s2 = shapes
    nd = len(s1)
    axes = data.draw(st.one_of(st.none(), st.lists(st.integers(0, nd - 1), min_size=1,
                                                   max_size=nd, unique=True)))
    if axes is not None:  # other axes must broadcast
        s2 = tuple(s if i in axes else data.draw(st.sampled_from([1, s1[i]]))
                   for i, s in enumerate(s2))
    a, b = rng.standard_normal(s1), rng.standard_normal(s2)
    ours, ref = _both(lambda: getattr(fsig, name)(a, b, mode, axes),
                      lambda: getattr(ssig, name)(a, b, mode, axes))
    if ref is not None:
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9)


@requires_scipy
def test_float32_and_integer_dtypes():
    a = np.arange(10, dtype=np.float32)
    assert fsig.convolve(a, np.ones(3, np.float32)).dtype == np.float32
    assert fsig.fftconvolve(a, np.ones(3, np.float32)).dtype == np.float32
    u = np.full(8, 200, np.uint8)
    out = fsig.convolve(u, np.ones(3, np.uint8), method="direct")
    assert out.dtype == np.float32 and out.max() == 600  # SciPy's uint8 overflows
    np.testing.assert_allclose(fsig.correlate(a, a[:4]), ssig.correlate(a, a[:4]), rtol=1e-5)


def test_choose_conv_method():
    assert fsig.choose_conv_method(np.ones(100), np.ones(5)) == "direct"
    assert fsig.choose_conv_method(np.ones((64, 64)), np.ones((21, 21))) == "fft"
    best, times = fsig.choose_conv_method(np.ones(50), np.ones(5), measure=True)
    assert best in ("direct", "fft") and set(times) == {"direct", "fft"}


@requires_scipy
def test_fft_method_on_integers_rounds_and_choose_keeps_sums_exact():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, 500, np.uint8), rng.integers(0, 256, 450, np.uint8)
    small = a // 64, b // 64  # sums < 4,050: float32's FFT error rounds away
    out = fsig.convolve(*small, method="fft")  # rounded to the exact sums, as SciPy
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.convolve(*(v.astype(np.int64) for v in small)))
    # 255 * 255 * 450 > 2**24: the float32 FFT could not give exact integers
    assert fsig.choose_conv_method(a, b) == "direct"
    assert fsig.choose_conv_method(a, b // 64) == "fft"  # 255 * 3 * 450 < 2**24
    assert fsig.choose_conv_method(a.astype(np.int64), b) == "fft"  # float64: exact
    assert fsig.choose_conv_method(a > 9, b > 9) == "direct"  # booleans, as SciPy


def test_fft_method_warns_on_nan_as_scipy():
    x = np.ones(1000)
    x[100] = np.nan
    with pytest.warns(RuntimeWarning, match="Use of fft convolution on input with NAN"):
        fsig.correlate(x, np.ones(500), mode="same", method="fft")
    assert np.isnan(fsig.convolve(x, np.ones(3), method="direct")[101])  # no warning


def test_empty_and_scalar_inputs():
    assert fsig.convolve(np.array([]), np.ones(3)).size == 0
    assert fsig.convolve(np.array(2.0), np.array(3.0)) == 6.0


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: fsig.convolve(np.ones(3), np.ones((2, 2))), ValueError, "dimensionality"),
        (lambda: fsig.convolve(np.ones(3), np.ones(2), mode="x"), ValueError, "mode"),
        (lambda: fsig.convolve(np.ones(3), np.ones(2), method="x"), ValueError, "method"),
        (lambda: fsig.correlate(np.ones((2, 5)), np.ones((3, 2)), "valid"), ValueError,
         "at least as large"),
        (lambda: fsig.convolve(np.ones(3, complex), np.ones(2)), TypeError, "complex"),
        (lambda: fsig.fftconvolve(np.ones((3, 4)), np.ones((2, 3)), axes=[]), ValueError,
         "axes cannot be empty"),
        (lambda: fsig.fftconvolve(np.ones((3, 4)), np.ones((2, 3)), axes=[0]), ValueError,
         "incompatible shapes"),
    ],
)
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
