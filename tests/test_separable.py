"""The separable path: rank-1 detection, "auto" on rank-1 kernels against the float64
oracle (every padding mode, stride, dilation, groups), ``algorithm="direct"`` and the
SciPy drop-ins never taking it, thread-count bit-identity, and ``fc.sep_conv2d``.

float32 tolerance: |got - want| <= 1e-5 * (1 + max|want|) (the two passes sum in
another order than the 2-D kernel; measured errors are ~3e-7 of the scale).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastconv as fc
import fastconv.cpu.separable as sep
from fastconv.cpu.separable import rank1_factors
from tests.conftest import requires_torch
from tests.reference import conv_nd, padding_pairs

MODES = ["zeros", "reflect", "replicate", "circular"]
RTOL32 = 1e-5


def _close(got, want, rtol=RTOL32):
    scale = 1.0 + float(np.max(np.abs(want)))
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale)


def _rank1(rng, K, Cg, kh, kw, dtype=np.float32):
    col = rng.standard_normal((K, Cg, kh, 1))
    row = rng.standard_normal((K, Cg, 1, kw))
    return (col * row).astype(dtype)


@pytest.fixture
def no_separable(monkeypatch):
    """Make the separable kernel raise, to show which calls never reach it."""
    def boom(*args, **kwargs):
        raise AssertionError("separable path taken")

    monkeypatch.setattr(sep, "separable", boom)


def test_rank1_factors_detects_named_kernels():
    for k in (fc.kernels.gaussian(31, 5.0), fc.kernels.box(5), fc.kernels.sobel_x):
        f = rank1_factors(k[None, None], np.float64)
        assert f is not None
        np.testing.assert_allclose(np.outer(f[0][0, 0], f[1][0, 0]), k, atol=1e-12)
    assert rank1_factors(fc.kernels.laplace[None, None], np.float64) is None
    rnd = np.random.default_rng(0).standard_normal((1, 1, 5, 5))
    assert rank1_factors(rnd, np.float32) is None


def test_rank1_tolerance_follows_dtype():
    # a rank-2 part 1e-9 of the norm: rank 1 at float32 precision, not at float64
    g = fc.kernels.gaussian(7, 1.5)
    k = (g + 1e-9 * np.linalg.norm(g, 2) * np.eye(7))[None, None]
    assert rank1_factors(k, np.float32) is not None
    assert rank1_factors(k, np.float64) is None
    assert rank1_factors(np.zeros((1, 1, 5, 5)), np.float32) is not None
    bad = g.copy()
    bad[0, 0] = np.nan
    assert rank1_factors(bad[None, None], np.float32) is None


@given(seed=st.integers(0, 10_000))
def test_auto_separable_matches_reference(seed):
    rng = np.random.default_rng(seed)
    groups = int(rng.choice([1, 2]))
    Cg, Kg = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    kh, kw = int(rng.integers(7, 10)), int(rng.integers(7, 10))
    dil = tuple(int(v) for v in rng.integers(1, 3, 2))
    mode = str(rng.choice(MODES))
    if rng.random() < 0.3:
        padding, stride = "same", (1, 1)
    else:
        padding = tuple(int(v) for v in rng.integers(0, 4, 2))
        stride = tuple(int(v) for v in rng.integers(1, 3, 2))
    pairs = padding_pairs(padding, (kh, kw), dil)
    spatial = tuple(max(d * (k - 1) + 1, max(p) + 1) + int(rng.integers(0, 12))
                    for k, d, p in zip((kh, kw), dil, pairs, strict=True))
    x = rng.standard_normal((2, Cg * groups, *spatial)).astype(np.float32)
    w = _rank1(rng, Kg * groups, Cg, kh, kw)
    b = rng.standard_normal(Kg * groups).astype(np.float32)
    kw_ = dict(stride=stride, padding=padding, dilation=dil, groups=groups, padding_mode=mode)
    got = fc.conv2d(x, w, b, **kw_)
    want = conv_nd(x, w, b, stride, pairs, dil, groups, mode)
    assert got.dtype == np.float32
    _close(got, want)
    # float64 in, float64 out, close to the oracle at float64 precision
    got64 = fc.conv2d(x.astype(np.float64), w.astype(np.float64), b, **kw_)
    _close(got64, want, rtol=1e-12)


def test_auto_takes_separable_and_direct_does_not(no_separable):
    x = np.random.default_rng(1).standard_normal((1, 1, 40, 40)).astype(np.float32)
    g = fc.kernels.gaussian(9, 2.0).astype(np.float32)[None, None]
    with pytest.raises(AssertionError, match="separable path taken"):
        fc.conv2d(x, g, padding=4)
    fc.conv2d(x, g, padding=4, algorithm="direct")  # the 2-D kernel
    fc.conv2d(x, g[..., :3, :3], padding=1)  # 3x3: too small to gain
    fc.conv3d(x[:, :, None], g[:, :, None])  # 3-D: never


def test_scipy_drop_ins_never_take_separable(no_separable):
    img = np.random.default_rng(2).standard_normal((30, 30))
    g = fc.kernels.gaussian(9, 2.0)
    for boundary in ("fill", "wrap", "symm"):
        fc.correlate2d(img, g, mode="same", boundary=boundary)
        fc.convolve2d(img, g, mode="same", boundary=boundary)
    with pytest.raises(AssertionError):  # the switch is restored after each call
        fc.conv2d(img[None, None], g[None, None], padding=4)


def test_not_rank1_falls_back_to_the_rule(no_separable):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 30, 31)).astype(np.float32)
    w = rng.standard_normal((2, 1, 7, 7)).astype(np.float32)
    for mode in MODES:
        got = fc.conv2d(x, w, padding=3, groups=2, padding_mode=mode)  # never separable
        want = conv_nd(x, w, None, 1, [(3, 3), (3, 3)], 1, 2, mode)
        _close(got, want)


def test_separable_bit_identical_for_any_thread_count():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 1, 257, 131)).astype(np.float32)
    w = _rank1(rng, 1, 1, 11, 11)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = fc.conv2d(x, w, padding=5, padding_mode="reflect")
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = fc.conv2d(x, w, padding=5, padding_mode="reflect")
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, fc.conv2d(x, w, padding=5, padding_mode="reflect"))


@requires_torch
def test_separable_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 64, 48)).astype(np.float32)
    w = np.broadcast_to(fc.kernels.gaussian(15, 3.0).astype(np.float32), (3, 1, 15, 15)).copy()
    got = fc.conv2d(x, w, padding=7, groups=3, stride=2)
    want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=7,
                                      groups=3, stride=2).numpy()
    _close(got, want)


# --- fc.sep_conv2d ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding", [0, 2, "same", "full", ((1, 3), (0, 2))])
def test_sep_conv2d_matches_outer_kernel(mode, padding):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 17, 19)).astype(np.float32)
    col, row = rng.standard_normal(5), rng.standard_normal(4)
    w = np.broadcast_to(np.outer(col, row), (3, 1, 5, 4))
    cases = [((1, 1), (1, 1)), ((1, 1), (1, 2))]
    if padding != "same":  # "same" needs stride 1
        cases.append(((2, 1), (2, 1)))
    for stride, dil in cases:
        got = fc.sep_conv2d(x, col, row, stride=stride, padding=padding, dilation=dil,
                            padding_mode=mode)
        want = conv_nd(x, w, None, stride, padding_pairs(padding, (5, 4), dil), dil, 3, mode)
        assert got.dtype == np.float64  # col/row are float64: numpy.result_type
        _close(got, want, rtol=1e-12)


def test_sep_conv2d_ranks_and_dtypes():
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    col = np.array([1, 2, 1], np.float32)
    row = np.array([-1, 0, 1], np.float32)
    got = fc.sep_conv2d(img, col, row, padding=1)
    assert got.shape == (20, 30) and got.dtype == np.float32
    want = fc.conv2d(img[None, None].astype(np.float32), fc.kernels.sobel_x[None, None]
                     .astype(np.float32), padding=1, algorithm="direct")[0, 0]
    np.testing.assert_array_equal(got, want)  # small integers: exact either way
    chw = rng.standard_normal((3, 12, 13))
    got3 = fc.sep_conv2d(chw, col, row)
    assert got3.shape == (3, 10, 11)
    _close(got3, conv_nd(chw[None], np.broadcast_to(np.outer(col, row), (3, 1, 3, 3)),
                         None, 1, 0, 1, 3)[0], rtol=1e-12)


def test_sep_conv2d_errors():
    x = np.zeros((8, 8))
    with pytest.raises(ValueError, match=r"sep_conv2d: col must be a non-empty 1-D array"):
        fc.sep_conv2d(x, [[1.0]], [1.0])
    with pytest.raises(ValueError, match=r"sep_conv2d: row must be a non-empty 1-D array"):
        fc.sep_conv2d(x, [1.0], [])
    with pytest.raises(ValueError, match=r"sep_conv2d: x must be 2-D"):
        fc.sep_conv2d(np.zeros(8), [1.0], [1.0])
    with pytest.raises(ValueError, match=r"sep_conv2d: .*stride"):
        fc.sep_conv2d(x, [1.0], [1.0], stride=0)
    with pytest.raises(TypeError):
        fc.sep_conv2d(x.astype(complex), [1.0], [1.0])
