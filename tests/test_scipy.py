"""fc.correlate2d / fc.convolve2d as drop-ins for scipy.signal.correlate2d / convolve2d.

Hand-computed cases first, then scipy.signal as the oracle over hypothesis-drawn shapes
(every mode x boundary, kernels larger than the image, even kernels, 1xN / Nx1), then
a plain NumPy oracle (numpy.pad + sliding windows) that needs no SciPy, then errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_scipy
from hypothesis import given
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

import fastconv as fc

try:
    from scipy import signal
except ImportError:  # pragma: no cover - SciPy is a test extra
    signal = None

MODES = ("full", "same", "valid")
BOUNDARIES = ("fill", "wrap", "symm")
# (fastconv function, SciPy function name, flips the kernel)
PAIRS = [(fc.correlate2d, "correlate2d", False), (fc.convolve2d, "convolve2d", True)]
PAIR_IDS = ["correlate2d", "convolve2d"]


def numpy_oracle(in1, in2, mode, boundary, fillvalue=0.0, flip=False):
    """SciPy's documented semantics re-derived with numpy.pad, in float64."""
    a, b = np.asarray(in1, np.float64), np.asarray(in2, np.float64)
    swapped = mode == "valid" and not (a.shape[0] >= b.shape[0] and a.shape[1] >= b.shape[1])
    if swapped:
        a, b = b, a
    if flip:
        b = b[::-1, ::-1]
    pads = []
    for k in b.shape:
        if mode == "valid":
            pads.append((0, 0))
        elif mode == "full":
            pads.append((k - 1, k - 1))
        else:  # SciPy centres "same" from opposite sides for correlate and convolve
            before = k // 2 if flip else (k - 1) // 2
            pads.append((before, k - 1 - before))
    np_mode = {"fill": "constant", "wrap": "wrap", "symm": "symmetric"}[boundary]
    extra = {"constant_values": fillvalue} if boundary == "fill" else {}
    padded = np.pad(a, pads, mode=np_mode, **extra)
    out = np.einsum("ijkl,kl->ij", sliding_window_view(padded, b.shape), b)
    return out[::-1, ::-1] if swapped and not flip else out


# ---------------------------------------------------------------- hand-computed cases


def test_seed_example_valid():
    out = fc.correlate2d([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]], mode="valid")
    np.testing.assert_array_equal(out, [[19, 25], [37, 43]])


@pytest.mark.parametrize(
    ("boundary", "fillvalue", "expected"),
    [
        ("fill", 0, [3, 6, 5]),  # 0 | 1 2 3 | 0
        ("fill", 10, [13, 6, 15]),  # 10 | 1 2 3 | 10
        ("wrap", 0, [6, 6, 6]),  # 3 | 1 2 3 | 1
        ("symm", 0, [4, 6, 8]),  # 1 | 1 2 3 | 3 (edge repeated)
    ],
)
def test_boundaries_by_hand(boundary, fillvalue, expected):
    out = fc.correlate2d([[1, 2, 3]], [[1, 1, 1]], mode="same", boundary=boundary,
                         fillvalue=fillvalue)
    np.testing.assert_array_equal(out, [expected])


def test_symm_is_not_reflect_by_hand():
    # 'symm' repeats the edge (2 1 | 1 2 3 | 3 2); numpy 'reflect' would give 3 2 | 1 2 3 | 2 1
    out = fc.correlate2d([[1, 2, 3]], [[1, 0, 0, 0, 0]], mode="same", boundary="symm")
    np.testing.assert_array_equal(out, [[2, 1, 1]])


def test_even_kernel_same_centring_by_hand():
    # correlate: (k-1)//2 = 0 before -> [1*1 + 2*10, 2*1 + 3*10, 3*1 + 0*10]
    corr = fc.correlate2d([[1, 2, 3]], [[1, 10]], mode="same")
    np.testing.assert_array_equal(corr, [[21, 32, 3]])
    # convolve: kernel flipped to [[10, 1]], k//2 = 1 before -> [0*10 + 1, 1*10 + 2, 2*10 + 3]
    conv = fc.convolve2d([[1, 2, 3]], [[1, 10]], mode="same")
    np.testing.assert_array_equal(conv, [[1, 12, 23]])


def test_full_by_hand():
    out = fc.convolve2d([[1, 2]], [[1, 1]])
    np.testing.assert_array_equal(out, [[1, 3, 2]])


def test_valid_swap_by_hand():
    # in2 larger: SciPy correlates in2 with in1 and reverses the result
    out = fc.correlate2d([[1, 10]], [[1, 2, 3]], mode="valid")
    np.testing.assert_array_equal(out, [[32, 21]])
    out = fc.convolve2d([[1, 10]], [[1, 2, 3]], mode="valid")
    np.testing.assert_array_equal(out, [[12, 23]])


# ------------------------------------------------------------- SciPy as the oracle

dims = st.integers(1, 6)
kdims = st.integers(1, 8)  # can exceed the image: several periods of wrap/symm


@requires_scipy
@pytest.mark.parametrize(("ours", "name", "flip"), PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("mode", ["full", "same"])
@given(shape1=st.tuples(dims, dims), shape2=st.tuples(kdims, kdims),
       fillvalue=st.sampled_from([0.0, 1.5, -3.0]), seed=st.integers(0, 2**16))
def test_full_same_match_scipy(ours, name, flip, mode, boundary, shape1, shape2, fillvalue,
                               seed):
    rng = np.random.default_rng(seed)
    in1, in2 = rng.standard_normal(shape1), rng.standard_normal(shape2)
    expected = getattr(signal, name)(in1, in2, mode=mode, boundary=boundary,
                                     fillvalue=fillvalue)
    out = ours(in1, in2, mode=mode, boundary=boundary, fillvalue=fillvalue)
    assert out.dtype == np.float64
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@requires_scipy
@pytest.mark.parametrize(("ours", "name", "flip"), PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("boundary", BOUNDARIES)
@given(big=st.tuples(dims, dims), grow=st.tuples(st.integers(0, 3), st.integers(0, 3)),
       swap=st.booleans(), seed=st.integers(0, 2**16))
def test_valid_matches_scipy_incl_swap(ours, name, flip, boundary, big, grow, swap, seed):
    rng = np.random.default_rng(seed)
    small = (max(1, big[0] - grow[0]), max(1, big[1] - grow[1]))
    shape1, shape2 = (small, big) if swap else (big, small)
    in1, in2 = rng.standard_normal(shape1), rng.standard_normal(shape2)
    expected = getattr(signal, name)(in1, in2, mode="valid", boundary=boundary)
    out = ours(in1, in2, mode="valid", boundary=boundary)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@requires_scipy
@pytest.mark.parametrize(("ours", "name", "flip"), PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize(
    ("shape1", "shape2"),
    [((1, 7), (1, 3)), ((7, 1), (2, 1)), ((1, 6), (1, 6)), ((5, 1), (5, 1)), ((1, 9), (1, 4)),
     ((4, 4), (2, 2)), ((3, 5), (3, 2))],
)
def test_row_column_and_even_shapes(ours, name, flip, mode, boundary, shape1, shape2):
    rng = np.random.default_rng(7)
    in1, in2 = rng.standard_normal(shape1), rng.standard_normal(shape2)
    expected = getattr(signal, name)(in1, in2, mode=mode, boundary=boundary, fillvalue=2.0)
    out = ours(in1, in2, mode=mode, boundary=boundary, fillvalue=2.0)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@requires_scipy
@pytest.mark.parametrize(("ours", "name", "flip"), PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("mode", ["full", "same"])
@pytest.mark.parametrize("boundary", ["wrap", "symm"])
@pytest.mark.parametrize(("shape1", "shape2"), [((2, 3), (7, 9)), ((1, 1), (4, 5)),
                                                ((3, 1), (10, 2))])
def test_kernel_much_larger_than_image(ours, name, flip, mode, boundary, shape1, shape2):
    """SciPy >= 1.9 extends the image by as many periods as the kernel needs."""
    rng = np.random.default_rng(3)
    in1, in2 = rng.standard_normal(shape1), rng.standard_normal(shape2)
    expected = getattr(signal, name)(in1, in2, mode=mode, boundary=boundary)
    out = ours(in1, in2, mode=mode, boundary=boundary)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@requires_scipy
@pytest.mark.parametrize(("ours", "name", "flip"), PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize(
    ("dtype1", "dtype2", "expected_dtype"),
    [(np.uint8, np.uint8, np.float32), (np.int16, np.uint8, np.float32),
     (np.int8, np.float32, np.float32), (np.int64, np.int64, np.float64),
     (np.uint8, np.float64, np.float64), (np.float32, np.float32, np.float32)],
)
def test_dtypes_follow_fastconv_rule(ours, name, flip, dtype1, dtype2, expected_dtype):
    rng = np.random.default_rng(11)
    in1 = rng.integers(0, 5, (5, 6)).astype(dtype1)
    in2 = rng.integers(0, 3, (3, 2)).astype(dtype2)
    expected = getattr(signal, name)(in1.astype(np.float64), in2.astype(np.float64),
                                     mode="same", boundary="symm")
    out = ours(in1, in2, mode="same", boundary="symm")
    assert out.dtype == expected_dtype
    np.testing.assert_array_equal(out, expected)  # small integers: exact in float32


@requires_scipy
def test_uint8_does_not_overflow_unlike_scipy():
    img = np.full((3, 3), 200, dtype=np.uint8)
    ker = np.ones((2, 2), dtype=np.uint8)
    out = fc.correlate2d(img, ker, mode="valid")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.full((2, 2), 800.0))
    # SciPy keeps uint8 and wraps around: the documented difference
    np.testing.assert_array_equal(signal.correlate2d(img, ker, mode="valid"), 800 % 256)


@requires_scipy
@pytest.mark.parametrize(("alias", "canonical"),
                         [("pad", "fill"), ("circular", "wrap"), ("symmetric", "symm")])
def test_boundary_aliases(alias, canonical):
    rng = np.random.default_rng(5)
    in1, in2 = rng.standard_normal((4, 5)), rng.standard_normal((3, 2))
    out = fc.correlate2d(in1, in2, boundary=alias, fillvalue=1.0)
    np.testing.assert_array_equal(out, fc.correlate2d(in1, in2, boundary=canonical,
                                                      fillvalue=1.0))
    np.testing.assert_allclose(out, signal.correlate2d(in1, in2, boundary=alias,
                                                       fillvalue=1.0), rtol=1e-12)


@requires_scipy
def test_default_arguments_match_scipy():
    rng = np.random.default_rng(9)
    in1, in2 = rng.standard_normal((4, 5)), rng.standard_normal((2, 3))
    np.testing.assert_allclose(fc.correlate2d(in1, in2), signal.correlate2d(in1, in2))
    np.testing.assert_allclose(fc.convolve2d(in1, in2), signal.convolve2d(in1, in2))


# -------------------------------------------------- NumPy oracle (no SciPy needed)


@pytest.mark.parametrize(("ours", "name", "flip"), PAIRS, ids=PAIR_IDS)
@given(mode=st.sampled_from(["full", "same"]), boundary=st.sampled_from(BOUNDARIES),
       shape1=st.tuples(dims, dims), shape2=st.tuples(kdims, kdims),
       seed=st.integers(0, 2**16))
def test_matches_numpy_oracle(ours, name, flip, mode, boundary, shape1, shape2, seed):
    rng = np.random.default_rng(seed)
    in1 = rng.standard_normal(shape1).astype(np.float32)
    in2 = rng.standard_normal(shape2).astype(np.float32)
    out = ours(in1, in2, mode=mode, boundary=boundary, fillvalue=-1.0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, numpy_oracle(in1, in2, mode, boundary, -1.0, flip),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("ours", "name", "flip"), PAIRS, ids=PAIR_IDS)
def test_noncontiguous_and_byteswapped_inputs(ours, name, flip):
    rng = np.random.default_rng(2)
    base = rng.standard_normal((8, 10))
    in1 = base[::2, ::-1]  # strided, reversed view
    in2 = rng.standard_normal((3, 2)).astype(">f8")
    out = ours(in1, in2, mode="same", boundary="wrap")
    assert out.flags.c_contiguous
    np.testing.assert_allclose(out, numpy_oracle(in1, in2, "same", "wrap", flip=flip),
                               rtol=1e-12, atol=1e-12)


def test_swapped_result_is_contiguous():
    out = fc.correlate2d(np.ones((2, 2)), np.arange(12.0).reshape(3, 4), mode="valid")
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, numpy_oracle(np.ones((2, 2)),
                                                    np.arange(12.0).reshape(3, 4),
                                                    "valid", "fill"))


def test_nan_fillvalue_and_nan_input_propagate():
    out = fc.correlate2d([[1.0, 2.0]], [[1.0, 1.0]], mode="full", fillvalue=np.nan)
    np.testing.assert_array_equal(out, [[np.nan, 3.0, np.nan]])  # border windows only
    out = fc.correlate2d([[1.0, np.nan, 3.0]], [[1.0]], mode="same")
    np.testing.assert_array_equal(out, [[1.0, np.nan, 3.0]])


def test_one_element_array_fillvalue():
    out = fc.correlate2d([[1.0]], [[1.0, 1.0]], mode="full", fillvalue=np.array([2.0]))
    np.testing.assert_array_equal(out, [[3.0, 3.0]])


def test_complex_fillvalue_with_zero_imaginary_part_is_accepted():
    out = fc.correlate2d([[1.0]], [[1.0, 1.0]], mode="full", fillvalue=2 + 0j)
    np.testing.assert_array_equal(out, [[3.0, 3.0]])


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("ours", "func"), [(fc.correlate2d, "correlate2d"),
                                            (fc.convolve2d, "convolve2d")])
@pytest.mark.parametrize(
    ("in1", "in2", "kwargs", "exc", "match"),
    [
        (np.ones(3), np.ones((2, 2)), {}, ValueError,
         r"inputs must both be 2-D arrays, got in1.shape=\(3,\) and in2.shape=\(2, 2\)"),
        (np.ones((3, 3)), np.ones((1, 2, 2)), {}, ValueError,
         r"inputs must both be 2-D arrays, got in1.shape=\(3, 3\) and in2.shape=\(1, 2, 2\)"),
        (np.ones((3, 3)), np.ones((2, 2)), {"mode": "nope"}, ValueError,
         r"invalid mode 'nope'; acceptable mode flags are 'valid', 'same', or 'full'"),
        (np.ones((3, 3)), np.ones((2, 2)), {"boundary": "reflect"}, ValueError,
         r"invalid boundary 'reflect'; acceptable boundary flags are 'fill', 'circular' "
         r"\(or 'wrap'\), and 'symmetric' \(or 'symm'\)"),
        (np.ones((2, 5)), np.ones((3, 3)), {"mode": "valid"}, ValueError,
         r"for 'valid' mode, one input must be at least as large as the other in every "
         r"dimension, got in1.shape=\(2, 5\) and in2.shape=\(3, 3\)"),
        (np.ones((2, 0)), np.ones((2, 2)), {}, ValueError,
         r"inputs must not be empty, got in1.shape=\(2, 0\) and in2.shape=\(2, 2\)"),
        (np.ones((3, 3)), np.ones((0, 2)), {"mode": "same"}, ValueError,
         r"inputs must not be empty, got in1.shape=\(3, 3\) and in2.shape=\(0, 2\)"),
        (np.ones((3, 3)), np.ones((2, 2)), {"fillvalue": [1.0, 2.0]}, ValueError,
         r"`fillvalue` must be scalar or an array with one element \(as in SciPy\), got "
         r"fillvalue.shape=\(2,\)"),
        (np.ones((3, 3)), np.ones((2, 2)), {"fillvalue": 1 + 1j}, ValueError,
         r"could not cast `fillvalue` directly to the output \(as in SciPy\): "
         r"fillvalue=\(1\+1j\)"),
        (np.ones((3, 3)), np.ones((2, 2)), {"fillvalue": "a"}, TypeError,
         r"fillvalue must be a real number, got 'a'"),
        (np.ones((3, 3)), np.ones((2, 2)), {"fillvalue": None}, TypeError,
         r"fillvalue must be a real number, got None"),
        (np.ones((3, 3), complex), np.ones((2, 2)), {}, TypeError,
         r"in1 has dtype complex128; expected a real numeric dtype"),
        (np.ones((3, 3)), np.ones((2, 2), np.complex64), {}, TypeError,
         r"in2 has dtype complex64; expected a real numeric dtype"),
        (np.ones((3, 3), bool), np.ones((2, 2), bool), {}, TypeError,
         r"in1 and in2 have dtype bool; expected a real numeric dtype"),
    ],
)
def test_errors(ours, func, in1, in2, kwargs, exc, match):
    with pytest.raises(exc, match=f"^{func}: {match}"):
        ours(in1, in2, **kwargs)


@requires_scipy
@pytest.mark.parametrize(
    ("in1", "in2", "kwargs"),
    [(np.ones(3), np.ones((2, 2)), {}), (np.ones((3, 3)), np.ones((2, 2)), {"mode": "x"}),
     (np.ones((3, 3)), np.ones((2, 2)), {"boundary": "reflect"}),
     (np.ones((2, 5)), np.ones((3, 3)), {"mode": "valid"})],
)
def test_scipy_raises_valueerror_for_the_same_cases(in1, in2, kwargs):
    with pytest.raises(ValueError, match="."):
        signal.correlate2d(in1, in2, **kwargs)
    with pytest.raises(ValueError, match="^correlate2d: "):
        fc.correlate2d(in1, in2, **kwargs)
