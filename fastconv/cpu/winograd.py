"""Winograd correlation for 3x3 kernels at stride 1: F(4x4, 3x3) and F(2x2, 3x3).

Each ``m x m`` output tile ``Y`` of one output channel is computed from the
``alpha x alpha`` input tile ``d`` (``alpha = m + 2``) of every input channel as::

    Y = A^T [ sum_c (G w[k, c] G^T) * (B^T d[c] B) ] A          (* elementwise)

so the ``alpha^2`` tile points each become one matrix product over the channels:
``M[a] (tiles x Cout) = V[a] (tiles x Cin) @ U[a] (Cin x Cout)``. F(4x4) (points 0, +-1,
+-2 and infinity; Lavin & Gray's matrices) does 36 products per 16 outputs where the
direct loop does 144 (4x fewer), F(2x2) 16 per 4 (2.25x fewer).

Fused form (what makes it pay): the tiles are cut into blocks (a few image rows of
tiles, or whole small images), one iteration per (group, block) of a Numba parallel
region, with a single-threaded BLAS. An iteration
copies its input rows into a channels-innermost buffer ``(rows, columns, Cin)`` reading
zero padding in place, transforms every tile into ``V (alpha^2, tiles, Cin)`` (Numba,
vectorised over the channels), runs the ``alpha^2`` products ``V[a] @ U[a]`` on
pre-transformed weights ``U`` (:func:`fastconv.cpu.wino_gemm.product` on ``U`` packed
once beside the weight cache where ``Cout`` is a whole number of its panels, else plain
``sgemm``/``dgemm`` calls), then inverse-transforms ``M`` (adding the bias) and writes
its output rows -- all while the block is in the core's L2 cache, and all in one
``nogil`` Numba call (:func:`fused_block`; the BLAS through a function pointer,
:func:`products`). Where the channels are whole SIMD vectors, the row copies in and out
are ``L x L`` register transposes (:func:`transpose_block`) and F(4x4)'s transforms run
on explicit vectors (:func:`transform_input4_vec`, :func:`transform_output4_vec`). W3
(8x64x56^2, 1 thread, CPU time, EPYC Zen 4, 2026-12-02): 12.3 -> 7.3 ms; of the scalar
form's 12.8 ms, the element-wise transposes took 1.9 + 2.5 ms and the input transform
2.2 ms (per-call view and alias-check overhead of its channel loops). Images of
fewer than ``FUSED_MIN_IMAGE_TILES`` tiles (14x14: 16) run *staged*: transform every
image, then each point's product over all the batch's tiles (at most ``STAGED_TILES``),
then inverse-transform, three parallel loops: a product of 16 rows runs at a third of
the speed of one of 64. ``U = G w G^T`` (:func:`weight_rows`)
is kept between calls and reused while the weights are bit-identical; ``V``, ``M`` and
``U`` live in pooled buffers (first-touch page faults of fresh multi-MB arrays cost
milliseconds here).

Exactness: the block split depends only on the shapes, and every output element is
computed by one fixed sequence of operations (one task, single-threaded BLAS), so
results are bit-identical from run to run and for any thread count. Winograd mixes the
pixels of a tile: a NaN or Inf input would spread to outputs whose 3x3 window never
reads it (and ``inf - inf`` makes NaN where direct gives inf). So a weight holding
NaN/Inf, or any non-finite value among the computed tile outputs (an input NaN/Inf
always reaches one), sends the call to the direct kernel, whose NaN/Inf pattern is
exact.

Measured float32 error against a float64 reference (relative RMS; max error / max|y|),
random normal data: see ``fastconv._algorithms``.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import numpy as np
from llvmlite import ir
from numba import get_thread_id, njit, prange
from numba.core import types
from numba.extending import intrinsic

from fastconv._config import JIT_PARALLEL, JIT_SERIAL, WINOGRAD_BLOCK_BYTES
from fastconv.cpu import blas, wino_gemm
from fastconv.cpu.gemm import _buffer, scratch_rows
from fastconv.cpu.microkernel import (
    LANES32,
    LANES64,
    _lanes,
    vadd,
    vfma,
    vload,
    vsplat_at,
    vstore,
    vsub,
)
from fastconv.cpu.rules import FUSED_MIN_IMAGE_TILES, tile_size
from fastconv.cpu.rules import winograd_2d as applies  # noqa: F401 (re-exported)
from fastconv.cpu.sched import claim

# Kernel transforms G (alpha x 3) in float64.
_G = {
    2: np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]),
    4: np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                 [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]),
}


# --- transforms (Numba, vectorised over the channel vectors) --------------------------


@njit(inline="always", **JIT_SERIAL)
def _bt4(s0, s1, s2, s3, s4, s5, d0, d1, d2, d3, d4, d5):
    """d_p = sum_r B^T[p, r] s_r, F(4x4, 3x3), for every channel."""
    f2, f4, f5 = np.float32(2), np.float32(4), np.float32(5)
    for c in range(s0.shape[0]):
        a0, a1, a2, a3, a4, a5 = s0[c], s1[c], s2[c], s3[c], s4[c], s5[c]
        d0[c] = f4 * a0 - f5 * a2 + a4
        d1[c] = (a3 + a4) - f4 * (a1 + a2)
        d2[c] = f4 * (a1 - a2) + (a4 - a3)
        d3[c] = f2 * (a3 - a1) + (a4 - a2)
        d4[c] = f2 * (a1 - a3) + (a4 - a2)
        d5[c] = f4 * a1 - f5 * a3 + a5


@njit(inline="always", **JIT_SERIAL)
def _bt2(s0, s1, s2, s3, d0, d1, d2, d3):
    """d_p = sum_r B^T[p, r] s_r, F(2x2, 3x3), for every channel."""
    for c in range(s0.shape[0]):
        a0, a1, a2, a3 = s0[c], s1[c], s2[c], s3[c]
        d0[c] = a0 - a2
        d1[c] = a1 + a2
        d2[c] = a2 - a1
        d3[c] = a1 - a3


@njit(inline="always", **JIT_SERIAL)
def _at4(s0, s1, s2, s3, s4, s5, d0, d1, d2, d3):
    """d_i = sum_p A^T[i, p] s_p, F(4x4, 3x3), for every channel."""
    f2, f4, f8 = np.float32(2), np.float32(4), np.float32(8)
    for c in range(s0.shape[0]):
        a0, a1, a2, a3, a4, a5 = s0[c], s1[c], s2[c], s3[c], s4[c], s5[c]
        p12, m12, p34, m34 = a1 + a2, a1 - a2, a3 + a4, a3 - a4
        d0[c] = a0 + p12 + p34
        d1[c] = m12 + f2 * m34
        d2[c] = p12 + f4 * p34
        d3[c] = m12 + f8 * m34 + a5


@njit(inline="always", **JIT_SERIAL)
def _at4_out(s0, s1, s2, s3, s4, s5, d0, d1, d2, d3, bias, acc):
    """As :func:`_at4` plus the bias; ``acc`` sums the results (a non-finite sum flags a
    NaN/Inf among them)."""
    f2, f4, f8 = np.float32(2), np.float32(4), np.float32(8)
    for c in range(s0.shape[0]):
        a0, a1, a2, a3, a4, a5 = s0[c], s1[c], s2[c], s3[c], s4[c], s5[c]
        p12, m12, p34, m34 = a1 + a2, a1 - a2, a3 + a4, a3 - a4
        b = bias[c]
        y0 = a0 + p12 + p34 + b
        y1 = m12 + f2 * m34 + b
        y2 = p12 + f4 * p34 + b
        y3 = m12 + f8 * m34 + a5 + b
        d0[c], d1[c], d2[c], d3[c] = y0, y1, y2, y3
        acc[c] += (y0 + y1) + (y2 + y3)


@njit(inline="always", **JIT_SERIAL)
def _at2(s0, s1, s2, s3, d0, d1):
    for c in range(s0.shape[0]):
        a1, a2 = s1[c], s2[c]
        d0[c] = s0[c] + a1 + a2
        d1[c] = a1 - a2 - s3[c]


@njit(inline="always", **JIT_SERIAL)
def _at2_out(s0, s1, s2, s3, d0, d1, bias, acc):
    for c in range(s0.shape[0]):
        a1, a2 = s1[c], s2[c]
        b = bias[c]
        y0 = s0[c] + a1 + a2 + b
        y1 = a1 - a2 - s3[c] + b
        d0[c], d1[c] = y0, y1
        acc[c] += y0 + y1


@intrinsic
def transpose_block(typingctx, like, src, ss, dst, ds):
    """Copy an ``L x L`` block (``L`` the host's lanes of ``like``'s dtype) transposed:
    ``dst[j * ds + i] = src[i * ss + j]`` (addresses ``src`` / ``dst`` in bytes, row
    strides ``ss`` / ``ds`` in bytes, rows contiguous): ``L`` vector loads, ``log2 L``
    stages of shuffles (each swaps one bit of the row and column index), ``L`` vector
    stores. No bounds checks. A copy: no arithmetic, bits unchanged."""
    if not isinstance(like, types.Array):
        return None
    n = _lanes(like.dtype)
    if n is None:
        return None

    def codegen(context, builder, sig, args):
        _, src_a, ss_a, dst_a, ds_a = args
        elt = context.get_value_type(like.dtype)
        vty = ir.VectorType(elt, n)
        align = like.dtype.bitwidth // 8
        i8p = ir.IntType(8).as_pointer()
        sp, dp = builder.inttoptr(src_a, i8p), builder.inttoptr(dst_a, i8p)
        rows = []
        for r in range(n):
            off = builder.mul(ss_a, ir.Constant(ss_a.type, r))
            ptr = builder.bitcast(builder.gep(sp, [off]), vty.as_pointer())
            rows.append(builder.load(ptr, align=align))
        h = n // 2
        mty = ir.VectorType(ir.IntType(32), n)
        while h >= 1:
            lo = ir.Constant(mty, [j if not j & h else n + j - h for j in range(n)])
            hi = ir.Constant(mty, [j + h if not j & h else n + j for j in range(n)])
            for r in range(n):
                if not r & h:
                    a, b = rows[r], rows[r + h]
                    rows[r] = builder.shuffle_vector(a, b, lo)
                    rows[r + h] = builder.shuffle_vector(a, b, hi)
            h //= 2
        for r in range(n):
            off = builder.mul(ds_a, ir.Constant(ds_a.type, r))
            ptr = builder.bitcast(builder.gep(dp, [off]), vty.as_pointer())
            builder.store(rows[r], ptr, align=align)
        return context.get_dummy_value()

    return types.none(like, types.intp, types.intp, types.intp, types.intp), codegen


@intrinsic
def stream_vector(typingctx, like, dst, src):
    """Copy ``L`` elements of ``like``'s dtype (``L`` as :func:`transpose_block`) from
    address ``src`` to the 64-byte aligned address ``dst`` as one non-temporal vector
    store: the line is written without first being read (no read for ownership). Call
    :func:`_fence` before the data is handed on. A copy: bits unchanged."""
    if not isinstance(like, types.Array):
        return None
    n = _lanes(like.dtype)
    if n is None:
        return None

    def codegen(context, builder, sig, args):
        _, dst_a, src_a = args
        vty = ir.VectorType(context.get_value_type(like.dtype), n)
        sp = builder.inttoptr(src_a, vty.as_pointer())
        dp = builder.inttoptr(dst_a, vty.as_pointer())
        v = builder.load(sp, align=like.dtype.bitwidth // 8)
        st = builder.store(v, dp, align=64)
        st.set_metadata("nontemporal", builder.module.add_metadata(
            [ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return types.none(like, types.intp, types.intp), codegen


@intrinsic
def _fence(typingctx):
    """A full memory fence (orders the non-temporal stores before what follows)."""
    def codegen(context, builder, sig, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


@njit(inline="always", **JIT_SERIAL)
def _block_lanes(a):
    """The lanes of :func:`transpose_block` for ``a``'s dtype."""
    return LANES32 if a.itemsize == 4 else LANES64


@njit(**JIT_SERIAL)
def fill_rows(x, n0, c0, h0, pt, pl, xb):
    """:func:`fill_rows_scalar` with :func:`transpose_block` on whole ``L x L`` blocks
    (channels x columns) where ``x``'s rows are contiguous and the row is at least ``L``
    wide (a last, partial column block overlaps the one before: the same values written
    twice); the channels left over as :func:`fill_rows_scalar`."""
    nimg, Hr, Wt, Cin = xb.shape
    H, W = x.shape[2], x.shape[3]
    L = _block_lanes(xb)
    s = xb.itemsize
    wl = min(max(pl, 0), Wt)
    wr = max(min(W + pl, Wt), wl)
    if x.strides[3] != s or wr - wl < L or Cin < L:
        fill_rows_scalar(x, n0, c0, h0, pt, pl, xb)
        return
    sn, sc, sh = x.strides[0], x.strides[1], x.strides[2]
    cfull = Cin - Cin % L
    for i in range(nimg):
        for r in range(Hr):
            h = h0 + r - pt
            dst = xb[i, r]
            if h < 0 or h >= H:
                dst[:, :] = 0
                continue
            dst[:wl, :] = 0
            dst[wr:, :] = 0
            base = x.ctypes.data + (n0 + i) * sn + c0 * sc + h * sh
            dbase = dst.ctypes.data
            for cb in range(0, cfull, L):
                w = wl
                while w < wr:
                    w1 = min(w, wr - L)
                    transpose_block(xb, base + cb * sc + (w1 - pl) * s, sc,
                                    dbase + (w1 * Cin + cb) * s, Cin * s)
                    w += L
            if cfull < Cin:
                src = x[n0 + i, c0:c0 + Cin, h]
                for c in range(cfull, Cin):
                    for w2 in range(wl, wr):
                        dst[w2, c] = src[c, w2 - pl]


@njit(**JIT_SERIAL)
def fill_rows_scalar(x, n0, c0, h0, pt, pl, xb):
    """xb[i, r, w, c] = x[n0 + i, c0 + c, h0 + r - pt, w - pl], zero outside ``x``: the
    block's input rows, channels innermost (``x`` is ``(N, C, H, W)``). Transposed in
    8 x 8 blocks through a small buffer, rows read and written as contiguous slices
    (25-35% faster than 16 x 16 blocks indexed element by element; 2.5x faster than no
    blocking)."""
    nimg, Hr, Wt, Cin = xb.shape
    H, W = x.shape[2], x.shape[3]
    wl = min(max(pl, 0), Wt)
    wr = max(min(W + pl, Wt), wl)
    blk = np.empty((8, 8), dtype=xb.dtype)
    for i in range(nimg):
        for r in range(Hr):
            h = h0 + r - pt
            dst = xb[i, r]
            if h < 0 or h >= H or wr == wl:
                dst[:, :] = 0
                continue
            dst[:wl, :] = 0
            dst[wr:, :] = 0
            src = x[n0 + i, c0:c0 + Cin, h]
            for cb in range(0, Cin - 7, 8):
                w = wl
                while w + 8 <= wr:
                    for cc in range(8):
                        s = src[cb + cc, w - pl:w - pl + 8]
                        for ww in range(8):
                            blk[ww, cc] = s[ww]
                    for ww in range(8):
                        d = dst[w + ww, cb:cb + 8]
                        for cc in range(8):
                            d[cc] = blk[ww, cc]
                    w += 8
                for c in range(cb, cb + 8):
                    for w2 in range(w, wr):
                        dst[w2, c] = src[c, w2 - pl]
            for c in range(Cin - Cin % 8, Cin):
                for w2 in range(wl, wr):
                    dst[w2, c] = src[c, w2 - pl]


@njit(inline="always", **JIT_SERIAL)
def block_tiles(shape, m, edge):
    """(tile rows, tile columns, tiles) of a channels-innermost block ``(images, rows,
    columns, channels)`` whose tiles every ``m`` pixels reach ``edge`` pixels further."""
    th, tw = (shape[1] - edge) // m, (shape[2] - edge) // m
    return th, tw, shape[0] * th * tw


@njit(inline="always", **JIT_SERIAL)
def tile_origin(k, th, tw, m):
    """(image, top row, left column) of tile ``k`` of a block of images of ``th x tw``
    tiles every ``m`` pixels, tiles in row-major order (image, tile row, tile column)."""
    i, r = divmod(k, th * tw)
    ty, tx = divmod(r, tw)
    return i, ty * m, tx * m


@njit(**JIT_SERIAL)
def transform_input(xb, m, tmp, V, t0):
    """V[a, t0 + t, :] = (B^T d_t B)[a] for every tile ``t = (i, ty, tx)`` of ``xb``
    (row-major tile order, ``alpha x alpha`` tiles every ``m`` pixels); ``tmp`` is
    ``(alpha, alpha, Cin)`` scratch."""
    th, tw, ntiles = block_tiles(xb.shape, m, 2)
    for k in range(ntiles):
        i, r0, w0 = tile_origin(k, th, tw, m)
        t = t0 + k
        if m == 4:
            for j in range(6):  # down each column: tmp[p, j] = sum_r B^T[p, r] d[r, j]
                _bt4(xb[i, r0, w0 + j], xb[i, r0 + 1, w0 + j], xb[i, r0 + 2, w0 + j],
                     xb[i, r0 + 3, w0 + j], xb[i, r0 + 4, w0 + j], xb[i, r0 + 5, w0 + j],
                     tmp[0, j], tmp[1, j], tmp[2, j], tmp[3, j], tmp[4, j], tmp[5, j])
            for p in range(6):  # along each row: V[p*6 + q] = sum_j tmp[p, j] B[j, q]
                _bt4(tmp[p, 0], tmp[p, 1], tmp[p, 2], tmp[p, 3], tmp[p, 4], tmp[p, 5],
                     V[6 * p, t], V[6 * p + 1, t], V[6 * p + 2, t], V[6 * p + 3, t],
                     V[6 * p + 4, t], V[6 * p + 5, t])
        else:
            for j in range(4):
                _bt2(xb[i, r0, w0 + j], xb[i, r0 + 1, w0 + j], xb[i, r0 + 2, w0 + j],
                     xb[i, r0 + 3, w0 + j], tmp[0, j], tmp[1, j], tmp[2, j], tmp[3, j])
            for p in range(4):
                _bt2(tmp[p, 0], tmp[p, 1], tmp[p, 2], tmp[p, 3], V[4 * p, t],
                     V[4 * p + 1, t], V[4 * p + 2, t], V[4 * p + 3, t])


@njit(inline="always", **JIT_SERIAL)
def _bt4v(a0, a1, a2, a3, a4, a5, k2, k4, km4, km5):
    """:func:`_bt4` on vectors (``k*`` the constants 2, 4, -4, -5 as vectors; fused
    multiply-adds, one fixed sequence per lane)."""
    d0 = vfma(k4, a0, vfma(km5, a2, a4))
    d1 = vfma(km4, vadd(a1, a2), vadd(a3, a4))
    d2 = vfma(k4, vsub(a1, a2), vsub(a4, a3))
    m42 = vsub(a4, a2)
    d3 = vfma(k2, vsub(a3, a1), m42)
    d4 = vfma(k2, vsub(a1, a3), m42)
    d5 = vfma(k4, a1, vfma(km5, a3, a5))
    return d0, d1, d2, d3, d4, d5


@njit(inline="always", **JIT_SERIAL)
def _at4v(a0, a1, a2, a3, a4, a5, k2, k4, k8):
    """:func:`_at4` on vectors (``k*`` the constants 2, 4, 8 as vectors)."""
    p12, m12, p34, m34 = vadd(a1, a2), vsub(a1, a2), vadd(a3, a4), vsub(a3, a4)
    return (vadd(vadd(a0, p12), p34), vfma(k2, m34, m12), vfma(k4, p34, p12),
            vadd(vfma(k8, m34, m12), a5))


@njit(**JIT_SERIAL)
def transform_input4_vec(xf, nimg, Hr, Wt, Cin, Vf, T, tmp, K):
    """:func:`transform_input` for F(4x4) on explicit vectors of the host's lanes ``L``
    (``Cin % L == 0``), on the flat block ``xf`` (``(nimg, Hr, Wt, Cin)``) into the flat
    ``Vf`` (``(36, T, Cin)``); ``tmp`` holds 36 vectors, ``K`` the constants 2, 4, -4, -5,
    8. Tiles in row-major order from ``t = 0``."""
    L = _block_lanes(xf)
    th, tw = (Hr - 2) // 4, (Wt - 2) // 4
    k2, k4, km4, km5 = vsplat_at(K, 0), vsplat_at(K, 1), vsplat_at(K, 2), vsplat_at(K, 3)
    rs = Wt * Cin
    ps = T * Cin
    t = 0
    for i in range(nimg):
        for ty in range(th):
            for tx in range(tw):
                for cv in range(0, Cin, L):
                    b = ((i * Hr + 4 * ty) * Wt + 4 * tx) * Cin + cv
                    for j in range(6):  # down each column
                        q = b + j * Cin
                        d0, d1, d2, d3, d4, d5 = _bt4v(
                            vload(xf, q), vload(xf, q + rs), vload(xf, q + 2 * rs),
                            vload(xf, q + 3 * rs), vload(xf, q + 4 * rs), vload(xf, q + 5 * rs),
                            k2, k4, km4, km5)
                        vstore(tmp, j * L, d0)
                        vstore(tmp, (6 + j) * L, d1)
                        vstore(tmp, (12 + j) * L, d2)
                        vstore(tmp, (18 + j) * L, d3)
                        vstore(tmp, (24 + j) * L, d4)
                        vstore(tmp, (30 + j) * L, d5)
                    o = t * Cin + cv
                    for p in range(6):  # along each row
                        e = 6 * p * L
                        d0, d1, d2, d3, d4, d5 = _bt4v(
                            vload(tmp, e), vload(tmp, e + L), vload(tmp, e + 2 * L),
                            vload(tmp, e + 3 * L), vload(tmp, e + 4 * L), vload(tmp, e + 5 * L),
                            k2, k4, km4, km5)
                        a = o + 6 * p * ps
                        vstore(Vf, a, d0)
                        vstore(Vf, a + ps, d1)
                        vstore(Vf, a + 2 * ps, d2)
                        vstore(Vf, a + 3 * ps, d3)
                        vstore(Vf, a + 4 * ps, d4)
                        vstore(Vf, a + 5 * ps, d5)
                t += 1


@njit(**JIT_SERIAL)
def transform_output4_vec(Mf, T, bias, nimg, Hy, Wy, Cout, yf, acc, tmp, K):
    """:func:`transform_output` for F(4x4) on explicit vectors (``Cout % L == 0``): the
    flat ``Mf`` (``(36, T, Cout)``) into the flat block ``yf`` (``(nimg, Hy, Wy, Cout)``)
    plus ``bias``; ``acc`` sums the results; ``tmp`` holds 24 vectors, ``K`` as
    :func:`transform_input4_vec`."""
    L = _block_lanes(Mf)
    th, tw = Hy // 4, Wy // 4
    k2, k4, k8 = vsplat_at(K, 0), vsplat_at(K, 1), vsplat_at(K, 4)
    rs = Wy * Cout
    ps = T * Cout
    t = 0
    for i in range(nimg):
        for ty in range(th):
            for tx in range(tw):
                for kv in range(0, Cout, L):
                    o = t * Cout + kv
                    for q in range(6):  # down each column
                        a = o + q * ps
                        d0, d1, d2, d3 = _at4v(
                            vload(Mf, a), vload(Mf, a + 6 * ps), vload(Mf, a + 12 * ps),
                            vload(Mf, a + 18 * ps), vload(Mf, a + 24 * ps),
                            vload(Mf, a + 30 * ps), k2, k4, k8)
                        vstore(tmp, q * L, d0)
                        vstore(tmp, (6 + q) * L, d1)
                        vstore(tmp, (12 + q) * L, d2)
                        vstore(tmp, (18 + q) * L, d3)
                    bv = vload(bias, kv)
                    sv = vload(acc, kv)
                    b = ((i * Hy + 4 * ty) * Wy + 4 * tx) * Cout + kv
                    for u in range(4):  # along each row, plus the bias
                        e = 6 * u * L
                        y0, y1, y2, y3 = _at4v(
                            vload(tmp, e), vload(tmp, e + L), vload(tmp, e + 2 * L),
                            vload(tmp, e + 3 * L), vload(tmp, e + 4 * L), vload(tmp, e + 5 * L),
                            k2, k4, k8)
                        y0, y1, y2, y3 = vadd(y0, bv), vadd(y1, bv), vadd(y2, bv), vadd(y3, bv)
                        r = b + u * rs
                        vstore(yf, r, y0)
                        vstore(yf, r + Cout, y1)
                        vstore(yf, r + 2 * Cout, y2)
                        vstore(yf, r + 3 * Cout, y3)
                        sv = vadd(sv, vadd(vadd(y0, y1), vadd(y2, y3)))
                    vstore(acc, kv, sv)
                t += 1


@njit(**JIT_SERIAL)
def transform_output(M, bias, m, tmp, yb, acc, t0):
    """yb[i, ty*m + u, tx*m + v, :] = (A^T M_{t0 + t} A)[u, v] + bias for every tile ``t``
    of ``yb`` (the inverse of :func:`transform_input`'s tiling); ``acc`` (Cout)
    accumulates the results; ``tmp`` is ``(m, alpha, Cout)`` scratch."""
    th, tw, ntiles = block_tiles(yb.shape, m, 0)
    for k in range(ntiles):
        i, r0, w0 = tile_origin(k, th, tw, m)
        t = t0 + k
        if m == 4:
            for q in range(6):  # down each column: tmp[u, q] = sum_p A^T[u, p] M[p, q]
                _at4(M[q, t], M[6 + q, t], M[12 + q, t], M[18 + q, t], M[24 + q, t],
                     M[30 + q, t], tmp[0, q], tmp[1, q], tmp[2, q], tmp[3, q])
            for u in range(4):
                _at4_out(tmp[u, 0], tmp[u, 1], tmp[u, 2], tmp[u, 3], tmp[u, 4], tmp[u, 5],
                         yb[i, r0 + u, w0], yb[i, r0 + u, w0 + 1], yb[i, r0 + u, w0 + 2],
                         yb[i, r0 + u, w0 + 3], bias, acc)
        else:
            for q in range(4):
                _at2(M[q, t], M[4 + q, t], M[8 + q, t], M[12 + q, t], tmp[0, q], tmp[1, q])
            for u in range(2):
                _at2_out(tmp[u, 0], tmp[u, 1], tmp[u, 2], tmp[u, 3], yb[i, r0 + u, w0],
                         yb[i, r0 + u, w0 + 1], bias, acc)


@njit(**JIT_SERIAL)
def store_rows(yb, out, n0, k0, h0):
    """:func:`store_rows_scalar` with :func:`transpose_block` on whole ``L x L`` blocks
    (columns x channels; a last, partial column block overlaps the one before) where
    ``out``'s rows are contiguous and at least ``L`` wide; channels left over as
    :func:`store_rows_scalar`."""
    nimg, Hy, Wy, Cout = yb.shape
    OH, OW = out.shape[2], out.shape[3]
    L = _block_lanes(yb)
    s = yb.itemsize
    rows = min(Hy, OH - h0)
    cols = min(Wy, OW)
    if out.strides[3] != s or cols < L or Cout < L:
        store_rows_scalar(yb, out, n0, k0, h0)
        return
    sn, sk, sh = out.strides[0], out.strides[1], out.strides[2]
    kfull = Cout - Cout % L
    for i in range(nimg):
        for r in range(rows):
            src = yb[i, r]
            sbase = src.ctypes.data
            base = out.ctypes.data + (n0 + i) * sn + k0 * sk + (h0 + r) * sh
            for kb in range(0, kfull, L):
                w = 0
                while w < cols:
                    w1 = min(w, cols - L)
                    transpose_block(yb, sbase + (w1 * Cout + kb) * s, Cout * s,
                                    base + kb * sk + w1 * s, sk)
                    w += L
            for k in range(kfull, Cout):
                dst = out[n0 + i, k0 + k, h0 + r]
                for w in range(cols):
                    dst[w] = src[w, k]


@njit(**JIT_SERIAL)
def store_rows_stream(yb, out, n0, k0, h0, stg):
    """:func:`store_rows` where ``out``'s rows are whole and contiguous (each channel's
    rows of the block one run of memory): ``L`` channels at a time transposed into
    ``stg`` (``L x rows x OW`` elements, in cache), then each channel's run copied to
    ``out`` with non-temporal stores (:func:`stream_vector`) on its whole 64-byte lines,
    plain ones at its ends. Same bits as :func:`store_rows`; no read for ownership of
    ``out``'s lines."""
    nimg, Hy, Wy, Cout = yb.shape
    OW = out.shape[3]
    L = _block_lanes(yb)
    s = yb.itemsize
    rows = min(Hy, out.shape[2] - h0)
    run = rows * OW
    kfull = Cout - Cout % L
    sb = stg.ctypes.data
    for i in range(nimg):
        for kb in range(0, kfull, L):
            for r in range(rows):
                sbase = yb[i, r].ctypes.data
                w = 0
                while w < OW:
                    w1 = min(w, OW - L)
                    transpose_block(yb, sbase + (w1 * Cout + kb) * s, Cout * s,
                                    sb + (r * OW + w1) * s, run * s)
                    w += L
            for j in range(L):
                dst = out[n0 + i, k0 + kb + j]
                src = stg[j * run:(j + 1) * run]
                a = dst.ctypes.data + h0 * OW * s
                head = min(run, ((-a) & 63) // s)
                body = head + (run - head) // L * L
                for e in range(head):
                    dst[h0 + e // OW, e % OW] = src[e]
                sa = src.ctypes.data
                for e in range(head, body, L):
                    stream_vector(yb, a + e * s, sa + e * s)
                for e in range(body, run):
                    dst[h0 + e // OW, e % OW] = src[e]
        for k in range(kfull, Cout):
            for r in range(rows):
                d = out[n0 + i, k0 + k, h0 + r]
                for w in range(OW):
                    d[w] = yb[i, r, w, k]
    _fence()


#: Output arrays of at least this many bytes are stored by :func:`store_rows_stream`
#: where it applies (larger than L2: their lines would be read from memory first).
STREAM_OUT_BYTES = 2 << 20


@njit(**JIT_SERIAL)
def store_rows_scalar(yb, out, n0, k0, h0):
    """out[n0 + i, k0 + k, h0 + r, w] = yb[i, r, w, k] inside ``out`` (``(N, K, OH, OW)``)."""
    nimg, Hy, Wy, Cout = yb.shape
    OH, OW = out.shape[2], out.shape[3]
    rows = min(Hy, OH - h0)
    cols = min(Wy, OW)
    KB = 16
    for i in range(nimg):
        for kb in range(0, Cout, KB):
            ke = min(kb + KB, Cout)
            for r in range(rows):
                src = yb[i, r]
                for k in range(kb, ke):
                    dst = out[n0 + i, k0 + k, h0 + r]
                    for w in range(cols):
                        dst[w] = src[w, k]


# --- weights ---------------------------------------------------------------------------

_GT: dict = {}


def _g(m: int, dtype) -> np.ndarray:
    """The kernel transform ``G`` (alpha x 3) in ``dtype`` (from float64)."""
    key = (m, np.dtype(dtype))
    if key not in _GT:
        _GT[key] = np.ascontiguousarray(_G[m], dtype=dtype)
    return _GT[key]


@njit(**JIT_SERIAL)
def weight_rows(w, G, transposed, g, lo, hi, taps, tmp, U):
    """U[g, p*alpha + q, ci, :] = (G w'[:, ci] G^T)[p, q] for ``ci`` in ``[lo, hi)``, with
    ``w'[co, ci] = w[g*Kg + co, ci]`` or, ``transposed``, ``w[g*Kg + ci, co, ::-1, ::-1]``
    (``w`` is ``(K, Cg, 3, 3)``); vectorised over ``co``. ``taps`` ``(9, Cout)`` and
    ``tmp`` ``(alpha, 3, Cout)`` are scratch."""
    A = G.shape[0]
    Cout = U.shape[3]
    Kg = w.shape[0] // U.shape[0]
    for ci in range(lo, hi):
        for i in range(3):
            for j in range(3):
                row = taps[i * 3 + j]
                if transposed:
                    for co in range(Cout):
                        row[co] = w[g * Kg + ci, co, 2 - i, 2 - j]
                else:
                    for co in range(Cout):
                        row[co] = w[g * Kg + co, ci, i, j]
        for p in range(A):  # tmp[p, j] = sum_i G[p, i] w'[i, j]
            g0, g1, g2 = G[p, 0], G[p, 1], G[p, 2]
            for j in range(3):
                r0, r1, r2, d = taps[j], taps[3 + j], taps[6 + j], tmp[p, j]
                for co in range(Cout):
                    d[co] = g0 * r0[co] + g1 * r1[co] + g2 * r2[co]
        for p in range(A):  # U[p, q] = sum_j tmp[p, j] G[q, j]
            t0, t1, t2 = tmp[p, 0], tmp[p, 1], tmp[p, 2]
            for q in range(A):
                h0, h1, h2 = G[q, 0], G[q, 1], G[q, 2]
                d = U[g, p * A + q, ci]
                for co in range(Cout):
                    d[co] = h0 * t0[co] + h1 * t1[co] + h2 * t2[co]


def weight_transform(w, groups: int, m: int, transposed: bool, out=None) -> np.ndarray:
    """U[g, a, ci, co] = (G w' G^T)[a] with ``w'`` the correlation's weight: the forward
    ``w[g*Kg + co, ci]`` (``transposed=False``), or for the input gradient the flipped,
    channel-transposed ``w[g*Kg + ci, co, ::-1, ::-1]`` (``transposed=True``: the flip and
    the transposition cost no copy). ``w`` is ``(K, Cg, 3, 3)``; computed in ``w``'s dtype
    (:func:`weight_rows`) in row chunks on the task threads. ``U`` is ``out`` if given,
    else a pooled buffer: give it back with :func:`_release` when done."""
    K, Cg = w.shape[:2]
    Kg = K // groups
    a2 = (m + 2) ** 2
    dt = w.dtype
    w = np.ascontiguousarray(w)
    cin, cout = (Kg, Cg) if transposed else (Cg, Kg)
    U = _take((groups, a2, cin, cout), dt) if out is None else out
    G = _g(m, dt)
    nch = max(1, min(8, cin // 8))
    chunks = [(j * cin // nch, (j + 1) * cin // nch) for j in range(nch)]

    def task(i):
        g, j = divmod(i, nch)
        c = _Carve(dt, 9 * cout, (m + 2) * 3 * cout)
        weight_rows(w, G, transposed, g, chunks[j][0], chunks[j][1],
                    c.views[0].reshape(9, cout), c.views[1].reshape(m + 2, 3, cout), U)

    blas.parallel(task, groups * nch)
    return U


# --- transformed weights, reused while the weights are unchanged ---------------------

#: Most bytes of transformed weights kept between calls (a few layers' worth).
U_CACHE_BYTES = 64 << 20
_U_CACHE: dict = {}  # key -> (copy of w, U); insertion order = age
_U_LOCK = threading.Lock()


def _words(a) -> np.ndarray:
    """The bits of the C-contiguous ``a`` as one 1-D run of 64-bit words (32-bit where
    its size is not a multiple of 8 bytes), for a bit-for-bit ``np.array_equal``: W5's
    2.4 MB of weights in 0.08 ms (a Numba XOR loop over the same words took 0.28 ms, 2
    threads; EPYC Zen 4, 2026-12-03)."""
    flat = a.reshape(-1)
    return flat.view(np.uint64) if flat.nbytes % 8 == 0 else flat.view(np.uint32)


def cached_weight_transform(w, groups: int, m: int, transposed: bool) -> np.ndarray | None:
    """:func:`weight_transform`, reused when called again with bit-identical weights (a
    layer's weights between optimiser steps, or inference): the previous call's ``w`` is
    kept as a copy and compared bit for bit (one read of ``w``, no hashing), so a reused
    ``U`` is exactly the one a fresh transform would give. None when ``w`` holds a NaN or
    Inf (checked on a miss only: the cache holds finite weights alone). The returned ``U``
    is shared and read-only to the caller."""
    w = np.ascontiguousarray(w)
    key = (m, transposed, groups, w.shape, w.dtype.str)
    with _U_LOCK:
        hit = _U_CACHE.get(key)
    if hit is not None and np.array_equal(_words(hit[0]), _words(w)):
        return hit[1]
    if not np.isfinite(w).all():
        return None
    K, Cg = w.shape[:2]
    shape = (groups, (m + 2) ** 2) + ((K // groups, Cg) if transposed else (Cg, K // groups))
    if np.prod(shape) * w.dtype.itemsize > U_CACHE_BYTES // 4:
        return weight_transform(w, groups, m, transposed)  # pooled, not kept
    U = weight_transform(w, groups, m, transposed, out=np.empty(shape, w.dtype))
    with _U_LOCK:
        _U_CACHE.pop(key, None)
        _U_CACHE[key] = (w.copy(), U)
        while sum(u.nbytes + c.nbytes for c, u in _U_CACHE.values()) > U_CACHE_BYTES:
            del _U_CACHE[next(iter(_U_CACHE))]
    return U


# --- pooled buffers (first-touch page faults of fresh multi-MB arrays cost milliseconds)

_POOL: list = []


def _take(shape, dtype) -> np.ndarray:
    """A C-contiguous array from the pool of freed buffers (or a new one)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    for buf in list(_POOL):
        if buf.size >= n:
            try:
                _POOL.remove(buf)
            except ValueError:  # taken meanwhile by another thread
                continue
            return buf[:n].view(dtype).reshape(shape)
    return np.empty(max(n, 1), dtype=np.uint8)[:n].view(dtype).reshape(shape)


def _release(*arrays) -> None:
    """Give arrays from :func:`_take` back to the pool (at most ``_POOL_MAX`` buffers and
    ``_POOL_BYTES`` kept)."""
    for a in arrays:
        base = a
        while base.base is not None:
            base = base.base
        if (isinstance(base, np.ndarray) and base.dtype == np.uint8 and len(_POOL) < _POOL_MAX
                and sum(b.size for b in _POOL) + base.size <= _POOL_BYTES):
            _POOL.append(base)


_POOL_MAX = 6
_POOL_BYTES = 64 << 20


def _release_pooled(U) -> None:
    """Give ``U`` back to the pool unless the weight cache holds it."""
    with _U_LOCK:
        cached = any(u is U for _, u in _U_CACHE.values())
    if not cached:
        _release(U)


# --- the fused correlation --------------------------------------------------------------


def blocks(N: int, th: int, tw: int, target: int) -> list[tuple[int, int, int, int]]:
    """(n0, nimg, ty0, nty) blocks of about ``target`` tiles: tile rows of one image, or
    whole images when one image has fewer tiles; at least ``MIN_BLOCKS`` blocks where
    that leaves ``FUSED_MIN_IMAGE_TILES`` per block (so two threads share even one
    image). A rule of the shapes only: the same blocks for any thread count."""
    per_image = th * tw
    parts = -(-per_image // target)
    if N * parts < MIN_BLOCKS and per_image >= MIN_BLOCKS * FUSED_MIN_IMAGE_TILES:
        parts = min(th, -(-MIN_BLOCKS // N))
    if parts > 1:
        rows = -(-th // parts)
        return [(n, 1, ty, min(rows, th - ty)) for n in range(N) for ty in range(0, th, rows)]
    per = max(1, target // per_image)
    nb = max(-(-N // per), min(N, MIN_BLOCKS))
    per = -(-N // nb)  # even out the last block
    return [(n, min(per, N - n), 0, th) for n in range(0, N, per)]


#: Fewest blocks of the fused form (where each keeps ``FUSED_MIN_IMAGE_TILES`` tiles).
MIN_BLOCKS = 2


def target_tiles(m: int, cin: int, cout: int, itemsize: int, packed: bool = False) -> int:
    """Tiles per block: the block's ``V`` and ``M`` in about ``WINOGRAD_BLOCK_BYTES``, half
    that with ``packed`` products (:func:`fastconv.cpu.wino_gemm.product`, efficient from
    14 rows on, where the BLAS wants long products). W3 on wino_gemm (1 thread, CPU time,
    median of 9, EPYC Zen 4, 2026-12-02): 196-tile blocks 7.55 / 7.99 ms, 98 tiles 7.24 /
    7.28, 28 tiles 7.46 / 7.72 (two runs; ``U``'s 590 KB no longer stays in L2 beside
    small blocks: 36 products of 28 rows ran 5.7 ms against 4.3)."""
    per_tile = (m + 2) ** 2 * (cin + cout) * itemsize
    budget = WINOGRAD_BLOCK_BYTES // 2 if packed else WINOGRAD_BLOCK_BYTES
    return int(min(256, max(16, budget // per_tile)))


def run(x, U, bias, out, groups: int, m: int, pads) -> bool:
    """out[n, k] = bias[k] + correlation of the zero-padded ``x`` (``(N, C, H, W)``, padding
    ``pads`` = ((top, bottom), (left, right)), read in place) with the 3x3 weights whose
    transform is ``U`` (``(groups, alpha^2, Cin, Cout)``); ``out`` is ``(N, K, OH, OW)``.
    False (``out`` partly written) when a computed output is not finite.

    Images of at least ``FUSED_MIN_IMAGE_TILES`` tiles run fused (:func:`_run_fused`),
    smaller ones staged (:func:`_run_staged`), whose products span many images (W5, 8
    images of 16 tiles, 1 thread CPU time: 12.2 ms staged against 15.3 fused in 2 blocks
    of 4 images, EPYC 2026-12-02: products of 128 rows run faster than of 64)."""
    OH, OW = out.shape[2], out.shape[3]
    tiles = -(-OH // m) * -(-OW // m)
    with np.errstate(invalid="ignore", over="ignore"):
        if tiles >= FUSED_MIN_IMAGE_TILES:
            return _run_fused(x, U, bias, out, groups, m, pads)
        return _run_staged(x, U, bias, out, groups, m, pads)
#: Most tiles of one stage of the staged form (its ``V`` and ``M`` span them).
STAGED_TILES = 512


class _Carve:
    """Views of one per-thread scratch buffer (64-byte aligned offsets)."""

    def __init__(self, dtype, *sizes):
        total = sum(-(-n // 16) * 16 for n in sizes)
        buf = _buffer(total * dtype.itemsize + 64).view(dtype)
        self.views, o = [], 0
        for n in sizes:
            self.views.append(buf[o : o + n])
            o += -(-n // 16) * 16


@njit(**JIT_SERIAL)
def products(gemm, args, V, U, M):
    """M[a] = V[a] @ U[a] for every point ``a`` (one single-threaded BLAS call each,
    through :func:`fastconv.cpu.blas.numba_call`'s pointer and arguments; ``V (a2, T,
    Cin)``, ``U (a2, Cin, Cout)``, ``M (a2, T, Cout)``, C-contiguous)."""
    for a in range(V.shape[0]):
        gemm(args[0], args[1], args[2], args[3], args[4], args[5], U[a].ctypes.data, args[6],
             V[a].ctypes.data, args[7], args[8], M[a].ctypes.data, args[9])


@njit(**JIT_SERIAL)
def products_packed(V, Up, uo, M, ln):
    """M[a] = V[a] @ U[a] for every point ``a`` on :func:`fastconv.cpu.wino_gemm.product`
    (``U``'s points packed at ``Up[uo:]``, :func:`fastconv.cpu.wino_gemm.pack`)."""
    a2, T, Cin = V.shape
    Cout = M.shape[2]
    Vf, Mf = V.reshape(-1), M.reshape(-1)
    for a in range(a2):
        wino_gemm.product(Vf, a * T * Cin, Up, uo + a * Cin * Cout, Mf, a * T * Cout, T, Cin,
                          Cout, ln)


@njit(**JIT_SERIAL)
def fused_block(x, n0, c0, h0, pt, pl, xb, tmp_in, V, gemm, args, U, M, bias, m, tmp_out, yb,
                acc, out, k0, Up, uo, ln, K):
    """One block of :func:`_run_fused` in one call (no GIL): fill, transform, products
    (:func:`products_packed` where ``ln`` is not 0, else the BLAS), inverse transform
    (``acc`` sums the results), store; whether the results are finite."""
    fill_rows(x, n0, c0, h0, pt, pl, xb)
    a2, T, Cin = V.shape
    Cout = M.shape[2]
    L = _block_lanes(V)
    vec = m == 4 and Cin % L == 0 and Cout % L == 0
    if vec:
        transform_input4_vec(xb.reshape(-1), xb.shape[0], xb.shape[1], xb.shape[2], Cin,
                             V.reshape(-1), T, tmp_in.reshape(-1), K)
    else:
        transform_input(xb, m, tmp_in, V, 0)
    if ln > 0:
        products_packed(V, Up, uo, M, ln)
    else:
        products(gemm, args, V, U, M)
    acc[:] = 0
    if vec:
        transform_output4_vec(M.reshape(-1), T, bias, yb.shape[0], yb.shape[1], yb.shape[2],
                              Cout, yb.reshape(-1), acc, tmp_out.reshape(-1), K)
    else:
        transform_output(M, bias, m, tmp_out, yb, acc, 0)
    s = out.itemsize
    L = _block_lanes(yb)
    if (out.nbytes >= STREAM_OUT_BYTES and out.strides[3] == s
            and out.strides[2] == out.shape[3] * s and out.shape[3] >= L and Cout >= L
            and yb.shape[2] >= out.shape[3] and M.size >= L * yb.shape[1] * out.shape[3]
            and out.ctypes.data % s == 0):
        store_rows_stream(yb, out, n0, k0, h0, M.reshape(-1))  # M is dead: the staging
    else:
        store_rows(yb, out, n0, k0, h0)
    return np.isfinite(acc.sum())


@njit(inline="always", **JIT_SERIAL)
def _carve_len(n):
    """``n`` rounded up to 16 elements (64-byte aligned views, as :class:`_Carve`)."""
    return -(-n // 16) * 16


@njit(**JIT_PARALLEL)
def fused_blocks(x, U, bias_g, out, m, pt, pl, blist, tw, gemm, args, scratch, finite, Up, ln,
                 K):
    """Every (group, block) of :func:`_run_fused` in one parallel region: the threads
    claim the blocks in turn (:mod:`fastconv.cpu.sched`: a thread on a faster vCPU takes
    more of them) and run :func:`fused_block` in their own scratch rows. ``blist`` rows
    are (n0, nimg, ty0, nty, gemm-argument row); results do not depend on which thread
    runs a block."""
    groups, a2, Cin, Cout = U.shape
    alpha = m + 2
    nblocks = blist.shape[0]
    Wt = tw * m + 2
    counter = np.zeros(1, np.int64)
    for _ in prange(scratch.shape[0]):  # a thread each; blocks claimed (fastconv.cpu.sched)
        i = claim(counter)
        while i < groups * nblocks:
            g = i // nblocks
            b = i - g * nblocks
            n0, nimg, ty0, nty, row = (blist[b, 0], blist[b, 1], blist[b, 2], blist[b, 3],
                                       blist[b, 4])
            T = nimg * nty * tw
            Hr = nty * m + 2
            nx, ny = nimg * Hr * Wt * Cin, nimg * nty * m * tw * m * Cout
            l1 = _carve_len(max(a2 * T * Cin, ny))
            l2 = _carve_len(max(a2 * T * Cout, nx))
            l3 = _carve_len(alpha * alpha * max(Cin, Cout))
            buf = scratch[get_thread_id()]
            r1 = buf[:l1]
            r2 = buf[l1:l1 + l2]
            tmp = buf[l1 + l2:l1 + l2 + l3]
            acc = buf[l1 + l2 + l3:l1 + l2 + l3 + Cout]
            xb = r2[:nx].reshape((nimg, Hr, Wt, Cin))
            V = r1[: a2 * T * Cin].reshape((a2, T, Cin))
            M = r2[: a2 * T * Cout].reshape((a2, T, Cout))
            yb = r1[:ny].reshape((nimg, nty * m, tw * m, Cout))
            finite[i] = fused_block(
                x, n0, g * Cin, ty0 * m, pt, pl, xb,
                tmp[: alpha * alpha * Cin].reshape((alpha, alpha, Cin)), V, gemm, args[row],
                U[g], M, bias_g[g], m, tmp[: m * alpha * Cout].reshape((m, alpha, Cout)), yb,
                acc, out, g * Cout, Up, g * a2 * Cin * Cout, ln, K)
            i = claim(counter)


def _run_fused(x, U, bias, out, groups, m, pads) -> bool:
    """One iteration per (group, block of tiles) of one Numba parallel region
    (:func:`fused_blocks`): fill, transform, ``alpha^2`` products, inverse transform and
    store while the block is in L2. ``V`` shares its memory with the output rows ``yb``,
    ``M`` with the input rows ``xb`` (each dead by then), in the running thread's row of
    one scratch buffer.

    A parallel region, not :func:`fastconv.cpu.blas.parallel`'s Python threads: Numba's
    OpenMP workers spin between regions, as PyTorch's do; on a 2-vCPU VM, Python workers
    that sleep between calls ran W3 no faster on 2 threads than on 1 whenever calls came
    in short bursts after idle time (13.8 against 9.1 ms, 2026-12-02)."""
    N = x.shape[0]
    _, a2, Cin, Cout = U.shape
    OH, OW = out.shape[2], out.shape[3]
    th, tw = -(-OH // m), -(-OW // m)
    dt = out.dtype
    pt, pl = pads[0][0], pads[1][0]
    ln = wino_gemm.lanes(dt) if wino_gemm.applies(Cout, dt) else 0
    target = target_tiles(m, Cin, Cout, dt.itemsize, ln > 0)
    key = (N, th, tw, m, Cin, Cout, a2, dt.str, target)
    plan = _FUSED_PLANS.get(key)
    if plan is None:
        plan = _fused_plan(N, th, tw, m, a2, Cin, Cout, dt, target)
        with _U_LOCK:
            _FUSED_PLANS[key] = plan
            while len(_FUSED_PLANS) > 32:
                del _FUSED_PLANS[next(iter(_FUSED_PLANS))]
    rows, gemm, args, need, _ = plan
    nblocks = len(rows)
    scratch = scratch_rows(need, dt)
    finite = np.ones(groups * nblocks, dtype=np.bool_)
    bias_g = np.ascontiguousarray(bias, dtype=dt).reshape(groups, Cout)
    Up = _packed(U) if ln else np.zeros(1, dt)
    K = np.array([2, 4, -4, -5, 8], dtype=dt)
    with _blas_limit(ln):
        fused_blocks(x, U, bias_g, out, m, pt, pl, rows, tw, gemm, args, scratch, finite, Up,
                     ln, K)
    return bool(finite.all())


def _blas_limit(ln: int):
    """The single-threaded-BLAS limit where the products call the BLAS (``ln == 0``);
    none where they run on :mod:`fastconv.cpu.wino_gemm` (taking the limit and restoring
    it costs ~0.15 ms a call)."""
    return contextlib.nullcontext() if ln else blas.single_threaded_blas()


#: Block lists and BLAS arguments of :func:`_run_fused` by shape (rules of the shapes
#: only): key -> :func:`_fused_plan`'s tuple (its ``Gemm`` objects keep the arguments'
#: addresses alive).
_FUSED_PLANS: dict = {}


def _fused_plan(N, th, tw, m, a2, Cin, Cout, dt, target):
    """(block rows, gemm pointer, gemm arguments, scratch elements per thread, Gemms) of
    :func:`_run_fused`: rows (n0, nimg, ty0, nty, argument row) from :func:`blocks` of
    about ``target`` tiles."""
    alpha = m + 2
    blist = blocks(N, th, tw, target)
    gemms: dict = {}
    rows = []
    need = 0
    Wt = tw * m + 2
    for n0, nimg, ty0, nty in blist:
        T = nimg * nty * tw
        if T not in gemms:
            prod = blas.Gemm(dt, T, Cout, Cin, lda=Cin, ldb=Cout, ldc=Cout)
            gemms[T] = (len(gemms), prod, *blas.numba_call(prod))
        rows.append((n0, nimg, ty0, nty, gemms[T][0]))
        Hr = nty * m + 2
        nx, ny = nimg * Hr * Wt * Cin, nimg * nty * m * tw * m * Cout
        need = max(need, sum(_carve_len(n) for n in (max(a2 * T * Cin, ny), max(
            a2 * T * Cout, nx), alpha * alpha * max(Cin, Cout), Cout)))
    args = np.stack([g[3] for g in sorted(gemms.values(), key=lambda g: g[0])])
    gemm = next(iter(gemms.values()))[2]
    return np.array(rows, dtype=np.int64), gemm, args, need, [g[1] for g in gemms.values()]


@njit(inline="always", **JIT_SERIAL)
def _bt2s(s0, s1, s2, s3, d0, d1, d2, d3):
    """:func:`_bt2` scaled for F(4x4)'s weights: F(2x2)'s points 0, 1, -1, inf are
    F(4x4)'s points 0, 1, 2, 5 and ``G2``'s rows are ``G4``'s times (4, -3, -3, 1), so
    ``(c_p c_q) (B2^T d B2)[p, q]`` times ``U4`` is F(2x2)'s product term."""
    f3, f4 = np.float32(3), np.float32(4)
    for c in range(s0.shape[0]):
        a0, a1, a2, a3 = s0[c], s1[c], s2[c], s3[c]
        d0[c] = f4 * (a0 - a2)
        d1[c] = -(f3 * (a1 + a2))
        d2[c] = f3 * (a1 - a2)
        d3[c] = a1 - a3


@njit(inline="always", **JIT_SERIAL)
def _mixed_rows(j, ty, tx, tw4, tw, cnt):
    """Rows of tile ``(ty, tx)`` of stage image ``j`` in ``V[a]`` / ``M[a]`` by point class
    (:func:`point_classes`): tiles in row-major order among those the class includes."""
    return (j * cnt[0] + ty * tw + tx, j * cnt[1] + ty * tw4 + tx,
            j * cnt[2] + ty * tw + tx, j * cnt[3] + ty * tw4 + tx)


@njit(**JIT_SERIAL)
def transform_input_mixed(xb, th4, th, tw4, tw, tmp, V, j, cnt):
    """:func:`transform_input` for F(4x4) with F(2x2) edge tiles: tile rows ``ty >= th4``
    (columns ``tx >= tw4``) are 2 pixels high (wide) and transformed by :func:`_bt2s`
    into F(4x4)'s points 0, 1, 2, 5 of that dimension only; rows of ``V[a]`` per point
    class as :func:`_mixed_rows` (stage image ``j``)."""
    for ty in range(th):
        r0 = 4 * ty
        rows4 = ty < th4
        for tx in range(tw):
            c0 = 4 * tx
            cols4 = tx < tw4
            r_ss, r_sb, r_bs, r_bb = _mixed_rows(j, ty, tx, tw4, tw, cnt)
            nc = 6 if cols4 else 4
            for q in range(nc):  # down each column: tmp[p, q] = sum_r B^T[p, r] d[r, q]
                if rows4:
                    _bt4(xb[0, r0, c0 + q], xb[0, r0 + 1, c0 + q], xb[0, r0 + 2, c0 + q],
                         xb[0, r0 + 3, c0 + q], xb[0, r0 + 4, c0 + q], xb[0, r0 + 5, c0 + q],
                         tmp[0, q], tmp[1, q], tmp[2, q], tmp[3, q], tmp[4, q], tmp[5, q])
                else:
                    _bt2s(xb[0, r0, c0 + q], xb[0, r0 + 1, c0 + q], xb[0, r0 + 2, c0 + q],
                          xb[0, r0 + 3, c0 + q], tmp[0, q], tmp[1, q], tmp[2, q], tmp[5, q])
            for p in range(6):  # along each row
                big = p == 3 or p == 4
                if big and not rows4:
                    continue
                rs = r_bs if big else r_ss
                rb = r_bb if big else r_sb
                a = 6 * p
                if cols4:
                    _bt4(tmp[p, 0], tmp[p, 1], tmp[p, 2], tmp[p, 3], tmp[p, 4], tmp[p, 5],
                         V[a, rs], V[a + 1, rs], V[a + 2, rs], V[a + 3, rb], V[a + 4, rb],
                         V[a + 5, rs])
                else:
                    _bt2s(tmp[p, 0], tmp[p, 1], tmp[p, 2], tmp[p, 3], V[a, rs], V[a + 1, rs],
                          V[a + 2, rs], V[a + 5, rs])


@njit(**JIT_SERIAL)
def transform_output_mixed(M, bias, th4, th, tw4, tw, tmp, yb, acc, j, cnt):
    """The inverse of :func:`transform_input_mixed`: F(4x4)'s ``A^T`` on 4-pixel tile
    rows / columns, F(2x2)'s (:func:`_at2`, points 0, 1, 2, 5) on the 2-pixel edge ones;
    ``tmp`` is ``(4, 6, Cout)`` scratch, ``acc`` as :func:`transform_output`."""
    for ty in range(th):
        r0 = 4 * ty
        rows4 = ty < th4
        for tx in range(tw):
            c0 = 4 * tx
            cols4 = tx < tw4
            r_ss, r_sb, r_bs, r_bb = _mixed_rows(j, ty, tx, tw4, tw, cnt)
            for q in range(6):  # down each column: tmp[u, q] = sum_p A^T[u, p] M[p, q]
                big = q == 3 or q == 4
                if big and not cols4:
                    continue
                rs = r_sb if big else r_ss
                rb = r_bb if big else r_bs
                if rows4:
                    _at4(M[q, rs], M[6 + q, rs], M[12 + q, rs], M[18 + q, rb], M[24 + q, rb],
                         M[30 + q, rs], tmp[0, q], tmp[1, q], tmp[2, q], tmp[3, q])
                else:
                    _at2(M[q, rs], M[6 + q, rs], M[12 + q, rs], M[30 + q, rs], tmp[0, q],
                         tmp[1, q])
            for u in range(4 if rows4 else 2):
                if cols4:
                    _at4_out(tmp[u, 0], tmp[u, 1], tmp[u, 2], tmp[u, 3], tmp[u, 4], tmp[u, 5],
                             yb[0, r0 + u, c0], yb[0, r0 + u, c0 + 1], yb[0, r0 + u, c0 + 2],
                             yb[0, r0 + u, c0 + 3], bias, acc)
                else:
                    _at2_out(tmp[u, 0], tmp[u, 1], tmp[u, 2], tmp[u, 5], yb[0, r0 + u, c0],
                             yb[0, r0 + u, c0 + 1], bias, acc)


def edge_split(out_len: int, m: int) -> tuple[int, int]:
    """(full tiles, tiles) along one staged dimension: F(4x4) ends in one 2-pixel F(2x2)
    tile where 1 or 2 pixels are left over (14 = 4 + 4 + 4 + 2: 16 % fewer products on
    W5's 14 x 14 than padding to 16), else every tile is ``m`` pixels."""
    if m == 4 and out_len > 4 and out_len % 4 in (1, 2):
        return out_len // 4, out_len // 4 + 1
    n = -(-out_len // m)
    return n, n


def point_classes(m: int, th4: int, th: int, tw4: int, tw: int):
    """(class of each point, tiles an image per class, point order) of the staged form.
    Class ``2 * big_p + big_q`` (``big``: F(4x4)'s points 2 and -2, indices 3 and 4, which
    the 2-pixel edge tiles lack) counts ``(th4 if big_p else th) * (tw4 if big_q else
    tw)`` tiles an image. The order is longest first (the threads claim the points in
    it, so the last claims are the shortest products); it does not change any result.
    Fresh arrays, built once per shape."""
    return tuple(np.array(v, dtype=np.int64) for v in _point_classes(m, th4, th, tw4, tw))


@functools.lru_cache(maxsize=64)
def _point_classes(m: int, th4: int, th: int, tw4: int, tw: int):
    """:func:`point_classes` as tuples."""
    a = m + 2
    big = [m == 4 and i in (3, 4) for i in range(a)]
    cls = [2 * big[p] + big[q] for p in range(a) for q in range(a)]
    cnt = [th * tw, th * tw4, th4 * tw, th4 * tw4]
    order = sorted(range(a * a), key=lambda p: (-cnt[cls[p]], p))
    return tuple(cls), tuple(cnt), tuple(order)


@njit(**JIT_PARALLEL)
def staged_stage(x, U, bias_g, out, m, pt, pl, n0, nimg, th4, th, tw4, tw, gemm, args, cls,
                 cnt, order, V, M, scratch, finite, Up, ln):
    """One stage of :func:`_run_staged` (images ``n0 .. n0 + nimg``): three parallel
    loops whose work items the threads claim (:mod:`fastconv.cpu.sched`), (1) group x
    image: fill and transform into ``V``, (2) group x point (in ``order``): the products
    into ``M``, point ``a`` over ``nimg * cnt[cls[a]]`` rows with ``args[cls[a]]``, (3)
    group x image: inverse transform and store (``finite[g * nimg + j]``: whether the
    image's outputs are finite). Tiles ``th4 x tw4`` of ``m`` pixels, plus F(2x2) edge
    tiles up to ``th x tw`` (``m = 4`` only: :func:`transform_input_mixed`). The products
    run on :func:`fastconv.cpu.wino_gemm.product` with the packed weights ``Up`` where
    ``ln`` (its lanes) is not 0, else on the BLAS. Scratch rows per thread as
    :func:`fused_blocks`."""
    groups, a2, Cin, Cout = U.shape
    alpha = m + 2
    per = th * tw
    Hy, Wy = th4 * m + 2 * (th - th4), tw4 * m + 2 * (tw - tw4)
    Wt, Hr = Wy + 2, Hy + 2
    nx, ny = Hr * Wt * Cin, Hy * Wy * Cout
    lx, ly, lt = _carve_len(nx), _carve_len(ny), _carve_len(alpha * alpha * max(Cin, Cout))
    nt = scratch.shape[0]  # a thread each; work items claimed (fastconv.cpu.sched)
    c1, c2, c3 = np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64)
    for _ in prange(nt):
        i = claim(c1)
        while i < groups * nimg:
            g = i // nimg
            j = i - g * nimg
            buf = scratch[get_thread_id()]
            xb = buf[:nx].reshape((1, Hr, Wt, Cin))
            fill_rows(x, n0 + j, g * Cin, 0, pt, pl, xb)
            tmp = buf[lx:lx + alpha * alpha * Cin].reshape((alpha, alpha, Cin))
            if m == 4:
                transform_input_mixed(xb, th4, th, tw4, tw, tmp, V[g], j, cnt)
            else:
                transform_input(xb, m, tmp, V[g], j * per)
            i = claim(c1)
    Vf, Mf, Vt = V.reshape(-1), M.reshape(-1), V.shape[2]
    for _ in prange(nt):
        i = claim(c2)
        while i < groups * a2:
            g = i // a2
            a = order[i - g * a2]
            if ln > 0:
                ga = g * a2 + a
                wino_gemm.product(Vf, ga * Vt * Cin, Up, ga * Cin * Cout, Mf, ga * Vt * Cout,
                                  nimg * cnt[cls[a]], Cin, Cout, ln)
            else:
                r = args[cls[a]]
                gemm(r[0], r[1], r[2], r[3], r[4], r[5], U[g, a].ctypes.data, r[6],
                     V[g, a].ctypes.data, r[7], r[8], M[g, a].ctypes.data, r[9])
            i = claim(c2)
    for _ in prange(nt):
        i = claim(c3)
        while i < groups * nimg:
            g = i // nimg
            j = i - g * nimg
            buf = scratch[get_thread_id()]
            yb = buf[:ny].reshape((1, Hy, Wy, Cout))
            acc = buf[ly + lt:ly + lt + Cout]
            acc[:] = 0
            tmp = buf[ly:ly + m * alpha * Cout].reshape((m, alpha, Cout))
            if m == 4:
                transform_output_mixed(M[g], bias_g[g], th4, th, tw4, tw, tmp, yb, acc, j, cnt)
            else:
                transform_output(M[g], bias_g[g], m, tmp, yb, acc, j * per)
            finite[i] = np.isfinite(acc.sum())
            store_rows(yb, out, n0 + j, g * Cout, 0)
            i = claim(c3)


def _run_staged(x, U, bias, out, groups, m, pads) -> bool:
    """Small images: for each stage of at most ``STAGED_TILES`` tiles of whole images,
    (1) transform every image into ``V (groups, alpha^2, tiles, Cin)``, (2) the products
    ``M[g, a] = V[g, a] @ U[g, a]`` over the stage's tiles that have point ``a``, (3)
    inverse-transform and store: one :func:`staged_stage` call (a Numba parallel region
    per step). F(4x4) ends each dimension in a 2-pixel F(2x2) edge tile where that
    wastes less (:func:`edge_split`; its products reuse F(4x4)'s weights, on fewer rows
    for the points it lacks: :func:`point_classes`)."""
    N = x.shape[0]
    _, a2, Cin, Cout = U.shape
    OH, OW = out.shape[2], out.shape[3]
    alpha = m + 2
    (th4, th), (tw4, tw) = edge_split(OH, m), edge_split(OW, m)
    per = th * tw
    cls, cnt, order = point_classes(m, th4, th, tw4, tw)
    dt = out.dtype
    ipb = max(1, min(N, STAGED_TILES // per))  # images per stage
    V = _take((groups, a2, ipb * per, Cin), dt)
    M = _take((groups, a2, ipb * per, Cout), dt)
    pt, pl = pads[0][0], pads[1][0]
    bias_g = np.ascontiguousarray(bias, dtype=dt).reshape(groups, Cout)
    Hy, Wy = th4 * m + 2 * (th - th4), tw4 * m + 2 * (tw - tw4)
    need = (max(_carve_len((Hy + 2) * (Wy + 2) * Cin), _carve_len(Hy * Wy * Cout))
            + _carve_len(alpha * alpha * max(Cin, Cout)) + _carve_len(Cout))
    scratch = scratch_rows(need, dt)
    finite = np.ones(groups * N, dtype=np.bool_)
    ln = wino_gemm.lanes(dt) if wino_gemm.applies(Cout, dt) else 0
    Up = _packed(U) if ln else np.zeros(1, dt)
    with _blas_limit(ln):
        for n0 in range(0, N, ipb):
            nimg = min(ipb, N - n0)
            prods = [blas.Gemm(dt, max(1, nimg * int(c)), Cout, Cin, lda=Cin, ldb=Cout,
                               ldc=Cout) for c in cnt]
            calls = [blas.numba_call(p) for p in prods]
            args = np.stack([c[1] for c in calls])
            staged_stage(x, U, bias_g, out, m, pt, pl, n0, nimg, th4, th, tw4, tw, calls[0][0],
                         args, cls, cnt, order, V, M, scratch,
                         finite[n0 * groups:(n0 + nimg) * groups], Up, ln)
            del prods  # kept alive (their arguments) until the products are done
    _release(V, M)
    return bool(finite.all())


#: Packed weights (:func:`fastconv.cpu.wino_gemm.pack`) of cached transforms: id(U) -> (U, Up).
_PACKED: dict = {}


def _packed(U) -> np.ndarray:
    """``U`` packed for :func:`fastconv.cpu.wino_gemm.product`: kept beside a cached
    transform (and dropped with it), packed afresh for a pooled one."""
    with _U_LOCK:
        cached = any(u is U for _, u in _U_CACHE.values())
        hit = _PACKED.get(id(U))
        if hit is not None and hit[0] is U:
            return hit[1]
    Up = wino_gemm.pack(U)
    if cached:
        with _U_LOCK:
            live = {id(u) for _, u in _U_CACHE.values()}
            for k in [k for k in _PACKED if k not in live]:
                del _PACKED[k]
            _PACKED[id(U)] = (U, Up)
    return Up


def correlate(xp, w, bias, out, stride, dilation, groups):
    """out[n, k, o] = bias[k] + sum_{c in group(k), r} xp[n, c, o + r] * w[k, c, r] for a
    2-D 3x3 kernel at stride 1 (arguments of :func:`fastconv.cpu.conv.correlate`, 5-D,
    ``xp`` padded)."""
    return _correlate(xp, w, bias, out, stride, dilation, groups, _NO_PADS)


def zero_padding_core(pads):
    """:func:`correlate` on an unpadded input with zero padding ``pads`` (3 (before, after)
    pairs) read in place (the caller makes no padded copy)."""

    def core(x, w, bias, out, stride, dilation, groups):
        return _correlate(x, w, bias, out, stride, dilation, groups, pads)

    return core


_NO_PADS = ((0, 0),) * 3


def _correlate(x, w, bias, out, stride, dilation, groups, pads):
    N, K, OD, OH, OW = out.shape
    if N == 0:
        return out
    m = tile_size(OH, OW)
    # no BLAS limit around the whole call: the phases that run BLAS products take it
    # (taking and restoring it costs ~0.2 ms, and the fused form on wino_gemm needs none)
    U = cached_weight_transform(w[:, :, 0], groups, m, transposed=False)
    if U is not None:
        done = run(x[:, :, 0], U, bias, out[:, :, 0], groups, m, pads[1:])
        _release_pooled(U)
        if done:
            return out
    return _direct(x, w, bias, out, stride, dilation, groups, pads)


def correlate_input(g, w, bias, out, pads, groups):
    """Input gradient at stride 1 (dilation 1, 3x3): ``out (N, C, H, W)`` = correlation of
    ``g (N, K, OH, OW)`` zero-padded by ``pads`` (2 (before, after) pairs, each >= 0) with
    the flipped, channel-transposed ``w (K, Cg, 3, 3)`` (the flip and the transposition
    are folded into the weight transform), plus ``bias`` (C). False when a result is not
    finite (the caller then runs the direct path)."""
    H, W = out.shape[2:]
    m = tile_size(H, W)
    U = cached_weight_transform(w, groups, m, transposed=True)  # BLAS limits: as _correlate
    if U is None:
        return False
    done = run(g, U, bias, out, groups, m, pads)
    _release_pooled(U)
    return done


def _direct(x, w, bias, out, stride, dilation, groups, pads):
    """The direct kernel (NaN/Inf present), on the zero-padded input."""
    from fastconv.cpu.conv import correlate as direct_correlate
    from fastconv.cpu.pad import pad

    if any(b or a for b, a in pads):
        x = pad(x, pads, "zeros")
    return direct_correlate(x, w, bias, out, stride, dilation, groups)
