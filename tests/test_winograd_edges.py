"""The staged Winograd form's F(2x2) edge tiles and its SIMD products
(``fastconv.cpu.winograd.edge_split`` / ``point_classes``, ``fastconv.cpu.wino_gemm``):
the float64 oracle's values within F(4x4)'s tolerance, the same bits for any thread
count, and the products' last rows computed by the same chain as the blocked ones."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import fastconv as fc
from fastconv.cpu import wino_gemm, winograd
from tests.reference import conv_input_nd, conv_nd

TOL4 = 1e-5  # tests/test_winograd.py's F(4x4) tolerance (bench/winograd_error.py)


def _close(got, want):
    scale = float(np.max(np.abs(want))) or 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL4 * scale)


@pytest.mark.parametrize("n, want", [(14, (3, 4)), (13, (3, 4)), (12, (3, 3)), (15, (4, 4)),
                                     (4, (1, 1)), (5, (1, 2)), (6, (1, 2)), (7, (2, 2))])
def test_edge_split(n, want):
    assert winograd.edge_split(n, 4) == want
    assert winograd.edge_split(n, 2) == (-(-n // 2),) * 2


def test_point_classes_count_rows_and_order_every_point():
    cls, cnt, order = winograd.point_classes(4, 3, 4, 3, 4)
    assert sorted(order.tolist()) == list(range(36))
    assert cnt.tolist() == [16, 12, 12, 9]
    assert np.bincount(cls).tolist() == [16, 8, 8, 4]
    rows = cnt[cls[order]]
    assert (np.diff(rows) <= 0).all()  # longest first: the threads claim them in turn


def test_point_classes_built_once_and_returned_fresh():
    """The greedy order is computed once per shape; each call gets its own arrays, so a
    caller writing into them cannot change the next call's."""
    winograd._point_classes.cache_clear()
    first = winograd.point_classes(4, 3, 4, 3, 4)
    want = [a.copy() for a in first]
    for a in first:
        a[:] = -1
    again = winograd.point_classes(4, 3, 4, 3, 4)
    assert winograd._point_classes.cache_info().hits == 1
    for got, ref in zip(again, want, strict=True):
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("shape", [(3, 32, 32, 14, 14), (2, 16, 24, 13, 9), (2, 8, 32, 6, 10),
                                   (1, 32, 16, 5, 7)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edge_tiles_match_oracle_and_thread_counts(shape, dtype):
    N, C, K, H, W = shape
    rng = np.random.default_rng(H * W + K)
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
    for r in runs[1:]:
        for a, c in zip(r, runs[0], strict=True):
            np.testing.assert_array_equal(a, c)
    y, dx = runs[0]
    want_y = conv_nd(x, w, b, 1, 1)
    want_dx = conv_input_nd(x.shape, w, g, 1, 1)
    if dtype == np.float64:
        np.testing.assert_allclose(y, want_y, rtol=0, atol=1e-12 * np.abs(want_y).max())
        np.testing.assert_allclose(dx, want_dx, rtol=0, atol=1e-12 * np.abs(want_dx).max())
    else:
        _close(y, want_y)
        _close(dx, want_dx)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_simd_product_rows_share_one_chain(dtype):
    """Rows past the last multiple of 8 (one at a time) get the bits the 8-row blocks
    give the same rows; values as a float64 product."""
    ln = wino_gemm.lanes(dtype)
    cin, cout = 24, 4 * ln
    rng = np.random.default_rng(3)
    V = rng.standard_normal((16, cin)).astype(dtype)
    U = rng.standard_normal((1, 1, cin, cout)).astype(dtype)
    Up = wino_gemm.pack(U)
    full, part = np.zeros((16, cout), dtype), np.zeros((13, cout), dtype)
    wino_gemm.product(V.reshape(-1), 0, Up, 0, full.reshape(-1), 0, 16, cin, cout, ln)
    wino_gemm.product(V.reshape(-1), 0, Up, 0, part.reshape(-1), 0, 13, cin, cout, ln)
    np.testing.assert_array_equal(part, full[:13])
    want = V.astype(np.float64) @ U[0, 0].astype(np.float64)
    np.testing.assert_allclose(full, want, rtol=0, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [14, 22, 29, 72, 96, 128])
def test_simd_product_row_blocks_same_bits(dtype, rows):
    """The 14-row, 8-row and single-row paths of ``wino_gemm.product`` give every row the
    bits that row gets alone (one FMA chain over ``Cin`` in order); ``rows`` chosen so
    each mix occurs (``rows14``: 128 = 8 x 14 + 2 x 8, 29 = 2 x 14 + 1); values as a float64
    product."""
    ln = wino_gemm.lanes(dtype)
    cin, cout = 40, 4 * ln
    rng = np.random.default_rng(rows)
    V = rng.standard_normal((rows, cin)).astype(dtype)
    U = rng.standard_normal((1, 1, cin, cout)).astype(dtype)
    Up = wino_gemm.pack(U)
    full = np.zeros((rows, cout), dtype)
    wino_gemm.product(V.reshape(-1), 0, Up, 0, full.reshape(-1), 0, rows, cin, cout, ln)
    one = np.zeros((1, cout), dtype)
    for t in range(rows):
        wino_gemm.product(V[t].copy(), 0, Up, 0, one.reshape(-1), 0, 1, cin, cout, ln)
        np.testing.assert_array_equal(full[t], one[0])
    want = V.astype(np.float64) @ U[0, 0].astype(np.float64)
    np.testing.assert_allclose(full, want, rtol=0, atol=1e-5 * np.abs(want).max())
    assert 14 * wino_gemm.rows14(rows) <= rows
