"""The fused Winograd form's vector kernels (``fastconv.cpu.winograd``): the SIMD block
transposes (:func:`~fastconv.cpu.winograd.fill_rows`, :func:`~fastconv.cpu.winograd.store_rows`)
copy exactly what their scalar forms copy, and the explicit-vector F(4x4) transforms
(channels a multiple of the host's lanes, images of at least 64 tiles) agree with the
float64 oracle within the F(4x4) bound of ``tests/test_winograd.py``, stay bit-identical
for any thread count and send non-finite results to the direct kernel.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

import fastconv as fc
from fastconv.cpu import winograd
from tests.reference import conv_input_nd, conv_nd

TOL4 = 1e-5  # F(4x4) float32 bound of tests/test_winograd.py (max |error| / max |y|)


def _close(got, want, tol):
    scale = float(np.max(np.abs(want))) or 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cin, W, pl", [(40, 37, 1), (16, 16, 0), (35, 23, 2), (64, 56, 1)])
def test_block_transposes_copy_as_the_scalar_forms(dtype, cin, W, pl):
    rng = np.random.default_rng(cin + W + pl)
    full = rng.standard_normal((3, cin + 5, 21, W)).astype(dtype)
    x = full[:, 2:2 + cin]  # a channel slice: rows contiguous, channels strided
    xb = np.full((2, 9, W + 2 * pl + 3, cin), 7, dtype)
    xs = xb.copy()
    winograd.fill_rows(x, 1, 0, 14, 1, pl, xb)  # rows 13 .. 21: past the bottom edge too
    winograd.fill_rows_scalar(x, 1, 0, 14, 1, pl, xs)
    np.testing.assert_array_equal(xb, xs)
    assert np.array_equal(xb[0, 1, pl:pl + W, :], x[1, :, 14].T)

    yb = rng.standard_normal((2, 6, W + 3, cin)).astype(dtype)
    o1 = np.zeros((4, cin + 4, 20, W), dtype)
    o2 = o1.copy()
    winograd.store_rows(yb, o1, 1, 3, 16)  # 4 of the 6 rows fit
    winograd.store_rows_scalar(yb, o2, 1, 3, 16)
    np.testing.assert_array_equal(o1, o2)
    assert np.array_equal(o1[2, 3:3 + cin, 19], yb[1, 3, :W].T)
    o3 = np.zeros_like(o1)
    lanes = winograd._block_lanes(yb)
    stg = np.full(lanes * 4 * W + 7, np.nan, dtype)  # its tail never read
    winograd.store_rows_stream(yb, o3, 1, 3, 16, stg)  # non-temporal stores, same bytes
    np.testing.assert_array_equal(o3, o2)


def test_streamed_output_is_exact_for_any_thread_count():
    """W3's shape: an output over ``STREAM_OUT_BYTES`` goes through
    :func:`~fastconv.cpu.winograd.store_rows_stream` (an odd width too)."""
    rng = np.random.default_rng(3)
    for shape in [(8, 64, 56, 56), (4, 32, 61, 75)]:
        x = rng.standard_normal(shape, dtype=np.float32)
        w = rng.standard_normal((shape[1], shape[1], 3, 3), dtype=np.float32)
        assert x.nbytes >= winograd.STREAM_OUT_BYTES
        outs = []
        for t in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(t)
            try:
                outs.append(fc.conv2d(x, w, padding=1, algorithm="winograd"))
            finally:
                numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        np.testing.assert_array_equal(outs[0], outs[1])
        _close(outs[0], fc.conv2d(x, w, padding=1, algorithm="direct"), TOL4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 32, 36, 40, 32), (1, 16, 33, 34, 48), (3, 64, 32, 32, 16)])
def test_vector_transforms_match_oracle_and_thread_counts(dtype, shape):
    N, C, H, W, K = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C, 3, 3)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    g = rng.standard_normal((N, K, H, W)).astype(dtype)
    threads = numba.get_num_threads()
    runs = []
    try:
        for t in sorted({1, 2, threads}):
            numba.set_num_threads(min(t, numba.config.NUMBA_NUM_THREADS))
            runs.append((fc.conv2d(x, w, b, padding=1, algorithm="winograd"),
                         fc.grad.conv2d_input(x.shape, w, g, padding=1, algorithm="winograd")))
    finally:
        numba.set_num_threads(threads)
    for y, gx in runs[1:]:
        np.testing.assert_array_equal(y, runs[0][0])
        np.testing.assert_array_equal(gx, runs[0][1])
    tol = TOL4 if dtype == np.float32 else 1e-12
    _close(runs[0][0], conv_nd(x, w, b, 1, ((1, 1), (1, 1))), tol)
    _close(runs[0][1], conv_input_nd(x.shape, w, g, 1, ((1, 1), (1, 1))), tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vector_transforms_send_non_finite_to_direct(dtype):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 32, 36, 36)).astype(dtype)
    w = rng.standard_normal((32, 32, 3, 3)).astype(dtype)
    x[1, 7, 20, 33], x[0, 31, 0, 0] = np.nan, np.inf
    got = fc.conv2d(x, w, padding=1, algorithm="winograd")
    want = fc.conv2d(x, w, padding=1, algorithm="direct")
    assert not np.isfinite(want).all()
    np.testing.assert_array_equal(got, want)
