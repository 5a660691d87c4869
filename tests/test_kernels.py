"""fc.kernels: hand-checked values, sign conventions (vs scipy.ndimage), registry parsing."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_scipy

import fastconv as fc
from fastconv import kernels

SPEC_NAMES = ["identity", "edge", "sobel_x", "sobel_y", "prewitt_x", "prewitt_y", "laplace",
              "laplace8", "second_derivative", "box", "gaussian", "sharpen", "emboss"]
ARRAYS = [n for n in SPEC_NAMES if n not in ("box", "gaussian")]

RAMP_RIGHT = np.tile(2.0 * np.arange(6), (5, 1))  # x[i, j] = 2 j: brighter to the right
RAMP_DOWN = RAMP_RIGHT.T.copy()  # x[i, j] = 2 i: brighter downward


# ----------------------------------------------------------------- values by hand


def test_sobel_x_on_a_ramp_is_positive():
    # (-x[j-1] + x[j+1]) * (1 + 2 + 1) = (2 * 2) * 4 = 16 everywhere
    np.testing.assert_array_equal(fc.corr2d(RAMP_RIGHT, kernels.sobel_x), np.full((3, 4), 16))
    np.testing.assert_array_equal(fc.corr2d(RAMP_RIGHT, kernels.sobel_y), np.zeros((3, 4)))


def test_sobel_y_on_a_downward_ramp_is_positive():
    np.testing.assert_array_equal(fc.corr2d(RAMP_DOWN, kernels.sobel_y), np.full((4, 3), 16))
    np.testing.assert_array_equal(fc.corr2d(RAMP_DOWN, kernels.sobel_x), np.zeros((4, 3)))


def test_prewitt_on_ramps():
    np.testing.assert_array_equal(fc.corr2d(RAMP_RIGHT, kernels.prewitt_x), np.full((3, 4), 12))
    np.testing.assert_array_equal(fc.corr2d(RAMP_DOWN, kernels.prewitt_y), np.full((4, 3), 12))


def test_edge_on_the_seed_image():
    X = np.ones((6, 8))
    X[:, 2:6] = 0  # the seeds' picture: white | black | white
    expected = np.zeros((6, 7))
    expected[:, 1] = 1  # bright-to-dark going right
    expected[:, 5] = -1  # dark-to-bright
    np.testing.assert_array_equal(fc.corr2d(X, kernels.edge), expected)


def test_derivative_kernels_on_quadratics():
    i, j = np.mgrid[0:6, 0:7].astype(np.float64)
    row_quadratic = j**2
    np.testing.assert_array_equal(fc.corr2d(row_quadratic, kernels.second_derivative),
                                  np.full((6, 5), 2.0))
    bowl = i**2 + j**2  # Laplacian 4 (4-neighbour); 8-neighbour stencil gives 3 * 4 = 12
    np.testing.assert_array_equal(fc.corr2d(bowl, kernels.laplace), np.full((4, 5), 4.0))
    np.testing.assert_array_equal(fc.corr2d(bowl, kernels.laplace8), np.full((4, 5), 12.0))


def test_identity_returns_the_image():
    x = np.random.default_rng(0).standard_normal((4, 5))
    np.testing.assert_array_equal(fc.correlate2d(x, kernels.identity, mode="same"), x)


@pytest.mark.parametrize("name", ["identity", "sharpen", "emboss"])
def test_brightness_preserving_kernels_keep_a_flat_image(name):
    flat = np.full((5, 5), 3.0)
    k = getattr(kernels, name)
    assert k.sum() == 1.0
    np.testing.assert_array_equal(fc.corr2d(flat, k), np.full((3, 3), 3.0))


@pytest.mark.parametrize("name", ["sobel_x", "sobel_y", "prewitt_x", "prewitt_y", "laplace",
                                  "laplace8", "second_derivative", "edge"])
def test_derivative_kernels_sum_to_zero(name):
    assert getattr(kernels, name).sum() == 0.0


def test_sharpen_is_identity_minus_laplace():
    np.testing.assert_array_equal(kernels.sharpen, kernels.identity - kernels.laplace)


@pytest.mark.parametrize("name", ARRAYS)
def test_constants_are_2d_float64_and_read_only(name):
    k = getattr(kernels, name)
    assert k.ndim == 2 and k.dtype == np.float64
    with pytest.raises(ValueError, match="read-only"):
        k[0, 0] = 5.0


@pytest.mark.parametrize("size", [1, 3, 5])
def test_box(size):
    k = kernels.box(size)
    assert k.shape == (size, size) and k.dtype == np.float64
    np.testing.assert_allclose(k, np.ones((size, size)) / size**2, rtol=0, atol=1e-15)
    np.testing.assert_allclose(k.sum(), 1.0, rtol=1e-14)


def test_box_blurs_to_the_mean():
    x = np.arange(9.0).reshape(3, 3)
    np.testing.assert_allclose(fc.corr2d(x, kernels.box(3)), [[4.0]], rtol=1e-12)


@pytest.mark.parametrize(("size", "sigma"), [(1, 1.0), (3, 0.5), (5, 1.0), (7, 2.5), (9, 30.0)])
def test_gaussian_matches_the_2d_formula_and_sums_to_one(size, sigma):
    k = kernels.gaussian(size, sigma)
    c = size // 2
    i, j = np.mgrid[0:size, 0:size] - c
    direct = np.exp(-(i**2 + j**2) / (2 * sigma**2))  # not separable by construction
    np.testing.assert_allclose(k, direct / direct.sum(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(k.sum(), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(k, k.T)
    np.testing.assert_array_equal(k, k[::-1, ::-1])
    assert k[c, c] == k.max()


def test_gaussian_by_hand():
    # 1-D weights e^-0.5, 1, e^-0.5 normalised; the centre is (1 / (1 + 2 e^-0.5))^2
    g0 = 1 / (1 + 2 * np.exp(-0.5))
    np.testing.assert_allclose(kernels.gaussian(3, 1.0)[1, 1], g0**2, rtol=1e-14)


@requires_scipy
@pytest.mark.parametrize(("name", "func", "axis"),
                         [("sobel_x", "sobel", 1), ("sobel_y", "sobel", 0),
                          ("prewitt_x", "prewitt", 1), ("prewitt_y", "prewitt", 0)])
def test_sign_convention_matches_scipy_ndimage(name, func, axis):
    from scipy import ndimage

    x = np.random.default_rng(1).standard_normal((6, 7))
    expected = getattr(ndimage, func)(x, axis=axis)[1:-1, 1:-1]  # interior: no boundary
    np.testing.assert_allclose(fc.corr2d(x, getattr(kernels, name)), expected, rtol=1e-12,
                               atol=1e-12)


@requires_scipy
def test_laplace_matches_scipy_ndimage():
    from scipy import ndimage

    x = np.random.default_rng(2).standard_normal((6, 7))
    np.testing.assert_allclose(fc.corr2d(x, kernels.laplace), ndimage.laplace(x)[1:-1, 1:-1],
                               rtol=1e-12, atol=1e-12)


@requires_scipy
def test_gaussian_blur_close_to_scipy_ndimage():
    from scipy import ndimage

    x = np.random.default_rng(3).standard_normal((12, 12))
    # ndimage truncates at 4 sigma = radius 2 for sigma=0.5 and renormalises: same kernel
    expected = ndimage.gaussian_filter(x, 0.5, mode="mirror", truncate=4.0)
    ours = fc.correlate2d(x, kernels.gaussian(5, 0.5), mode="same", boundary="symm")
    np.testing.assert_allclose(ours[2:-2, 2:-2], expected[2:-2, 2:-2], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------- registry


def test_names_cover_the_spec_and_are_described():
    assert sorted(kernels.names()) == sorted(SPEC_NAMES)
    for name in kernels.names():
        text = kernels.describe(name)
        assert text and "\n" not in text
        assert kernels.usage(name).startswith(name)


@pytest.mark.parametrize("name", ARRAYS)
@pytest.mark.parametrize("spell", [str, lambda n: n.replace("_", "-"), str.upper])
def test_get_fixed_kernels(name, spell):
    k = kernels.get(spell(name))
    np.testing.assert_array_equal(k, getattr(kernels, name))
    k[0, 0] = 99.0  # a fresh writable copy: the module constant is untouched
    assert getattr(kernels, name)[0, 0] != 99.0


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("box", kernels.box(3)), ("box:5", kernels.box(5)), ("BOX: 7", kernels.box(7)),
     ("gaussian", kernels.gaussian(5, 1.0)), ("gaussian:7", kernels.gaussian(7, 1.0)),
     ("gaussian:5:1.0", kernels.gaussian(5, 1.0)), ("gaussian:3:0.5", kernels.gaussian(3, 0.5)),
     (" sobel-x ", kernels.sobel_x)],
)
def test_get_parametrised_specs(spec, expected):
    np.testing.assert_array_equal(kernels.get(spec), expected)


def test_usage_strings():
    assert kernels.usage("gaussian") == "gaussian:SIZE:SIGMA"
    assert kernels.usage("box") == "box:SIZE"
    assert kernels.usage("sobel-x") == "sobel_x"


@pytest.mark.parametrize(
    ("spec", "exc", "match"),
    [
        ("sobel", ValueError, r"get: unknown kernel 'sobel'; valid names are identity, edge, "
         r"sobel_x, sobel_y, .*, gaussian"),
        ("", ValueError, r"get: unknown kernel ''; valid names are identity"),
        ("sobel-x:3", ValueError, r"get: kernel 'sobel_x' takes no parameters, got spec "
         r"'sobel-x:3'"),
        ("box:3:1", ValueError, r"get: kernel spec 'box:3:1' has 2 parameters; expected at "
         r"most 1 \(box:SIZE\)"),
        ("box:x", ValueError, r"get: kernel spec 'box:x': size must be an int, got 'x'"),
        ("box:2.5", ValueError, r"get: kernel spec 'box:2.5': size must be an int, got '2.5'"),
        ("box:4", ValueError, r"get: kernel spec 'box:4': box: size must be an odd int >= 1 "
         r"\(the kernel needs a centre pixel\), got size=4"),
        ("box:-3", ValueError, r"get: kernel spec 'box:-3': box: size must be an odd "
         r"int >= 1 .*got size=-3"),
        ("box:0", ValueError, r"get: kernel spec 'box:0': box: size must be an odd "
         r"int >= 1 .*got size=0"),
        ("gaussian:4:1.0", ValueError, r"get: kernel spec 'gaussian:4:1.0': gaussian: size "
         r"must be an odd int >= 1 .*got size=4"),
        ("gaussian:5:0", ValueError, r"get: kernel spec 'gaussian:5:0': gaussian: sigma must "
         r"be > 0 and finite, got sigma=0.0"),
        ("gaussian:5:-1", ValueError, r"get: kernel spec 'gaussian:5:-1': gaussian: sigma must "
         r"be > 0 and finite, got sigma=-1.0"),
        ("gaussian:5:nan", ValueError, r"get: kernel spec 'gaussian:5:nan': gaussian: sigma "
         r"must be > 0 and finite, got sigma=nan"),
        ("gaussian:5:wide", ValueError, r"get: kernel spec 'gaussian:5:wide': sigma must be a "
         r"number, got 'wide'"),
        (3, TypeError, r"get: kernel spec must be a string like 'sobel-x' or 'box:3', got 3"),
    ],
)
def test_get_errors(spec, exc, match):
    with pytest.raises(exc, match=f"^{match}"):
        kernels.get(spec)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: kernels.box(2), ValueError, r"^box: size must be an odd int >= 1 "
         r"\(the kernel needs a centre pixel\), got size=2"),
        (lambda: kernels.box(3.0), TypeError, r"^box: size must be an odd int >= 1, got 3.0"),
        (lambda: kernels.box(True), TypeError, r"^box: size must be an odd int >= 1, got True"),
        (lambda: kernels.gaussian(6), ValueError, r"^gaussian: size must be an odd int"),
        (lambda: kernels.gaussian(5, 0.0), ValueError,
         r"^gaussian: sigma must be > 0 and finite, got sigma=0.0"),
        (lambda: kernels.gaussian(5, -2), ValueError,
         r"^gaussian: sigma must be > 0 and finite, got sigma=-2"),
        (lambda: kernels.gaussian(5, float("inf")), ValueError,
         r"^gaussian: sigma must be > 0 and finite, got sigma=inf"),
        (lambda: kernels.gaussian(5, "1"), TypeError,
         r"^gaussian: sigma must be a real number > 0, got '1'"),
        (lambda: kernels.describe("nope"), ValueError,
         r"^describe: unknown kernel 'nope'; valid names are identity"),
        (lambda: kernels.usage("nope"), ValueError,
         r"^usage: unknown kernel 'nope'; valid names are identity"),
    ],
)
def test_function_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
