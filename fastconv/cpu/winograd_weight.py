"""Winograd weight gradient of a 2-D 3x3 correlation at stride 1: F(3x3, 2x2) and F(3x3, 4x4).

The weight gradient ``dW[k, c, a, b] = sum_{n, i, j} dY[n, k, i, j] * xp[n, c, i + a, j + b]``
is itself a correlation: of each ``m x m`` tile of ``dY`` (the "kernel") with the
``alpha x alpha`` input tile under it (``alpha = m + 2``), giving 3x3 outputs. By the
transposition principle the forward F(m, 3) matrices serve (``B^T``, ``A``, ``G``, see
``fastconv.cpu.winograd``)::

    dW[k, c] = G^T [ sum_tiles (A dY_t[k] A^T) * (B^T d_t[c] B) ] G       (* elementwise)

so the ``alpha^2`` points each become one product over the tiles,
``M[p] (Kg x Cg) += U[p]^T (Kg x T) @ V[p] (T x Cg)``, and ``G^T M G`` runs once per weight
(in float64) at the end. F(3x3, 2x2) does 16 multiplies per 4 positions where the direct
sum does 36 (2.25x fewer), F(3x3, 4x4) 36 per 16 (4x fewer).

Blocks of tiles (``fastconv.cpu.winograd.blocks``) are filled channels-innermost, both
sides transformed and multiplied while in L2. The block sequence is split into a constant
number of consecutive parts (``fastconv.cpu.grad.WEIGHT_PARTS``, not the thread count);
each part sums its blocks in its own accumulator (one task, single-threaded BLAS) and the
parts are added in order: bit-identical from run to run and for any thread count.

A NaN/Inf in the input or ``grad_output`` (seen in the filled blocks), or a non-finite
result, returns False: the caller runs the direct kernel, whose NaN/Inf pattern is exact
(Winograd mixes the pixels of a tile).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fastconv._config import JIT_SERIAL
from fastconv.cpu import blas
from fastconv.cpu.winograd import (
    _G,
    _Carve,
    _release,
    _take,
    block_tiles,
    blocks,
    fill_rows,
    target_tiles,
    tile_origin,
    transform_input,
)


def applies(x_shape, w_shape, out_shape, stride, dilation) -> bool:
    """Whether this weight gradient can run here: 2-D 3x3, stride 1, dilation 1 (5-D
    shapes, 3-tuples)."""
    return (tuple(int(v) for v in w_shape[2:]) == (1, 3, 3) and int(out_shape[2]) == 1
            and all(int(s) == 1 for s in stride) and all(int(d) == 1 for d in dilation))


def tile_size(out_h: int, out_w: int) -> int:
    """``m`` of F(3x3, m x m): 4 unless its edge tiles waste more than F(2x2)'s cost."""
    f4 = -(-out_h // 4) * -(-out_w // 4) * 36
    f2 = -(-out_h // 2) * -(-out_w // 2) * 16
    return 4 if f4 <= f2 else 2


@njit(inline="always", **JIT_SERIAL)
def _a2(s0, s1, d0, d1, d2, d3):
    """d_p = sum_u A[p, u] s_u, F(3, 2) (A is F(2, 3)'s output transform, transposed)."""
    for c in range(s0.shape[0]):
        a0, a1 = s0[c], s1[c]
        d0[c] = a0
        d1[c] = a0 + a1
        d2[c] = a0 - a1
        d3[c] = -a1


@njit(inline="always", **JIT_SERIAL)
def _a4(s0, s1, s2, s3, d0, d1, d2, d3, d4, d5):
    """d_p = sum_u A[p, u] s_u, F(3, 4) (rows 1, (1,1,1,1), (1,-1,1,-1), (1,2,4,8),
    (1,-2,4,-8), e_3)."""
    f2, f4, f8 = np.float32(2), np.float32(4), np.float32(8)
    for c in range(s0.shape[0]):
        a0, a1, a2, a3 = s0[c], s1[c], s2[c], s3[c]
        e1, o1 = a0 + a2, a1 + a3
        e2, o2 = a0 + f4 * a2, f2 * a1 + f8 * a3
        d0[c] = a0
        d1[c] = e1 + o1
        d2[c] = e1 - o1
        d3[c] = e2 + o2
        d4[c] = e2 - o2
        d5[c] = a3


@njit(**JIT_SERIAL)
def transform_grad(gb, m, tmp, U, t0):
    """U[p*alpha + q, t0 + t, :] = (A g_t A^T)[p, q] for every ``m x m`` tile
    ``t = (i, ty, tx)`` of ``gb`` ``(nimg, rows, cols, K)`` (row-major tile order); ``tmp``
    is ``(alpha, m, K)`` scratch."""
    th, tw, ntiles = block_tiles(gb.shape, m, 0)
    for k in range(ntiles):
        i, r0, w0 = tile_origin(k, th, tw, m)
        t = t0 + k
        if m == 4:
            for j in range(4):  # down each column
                _a4(gb[i, r0, w0 + j], gb[i, r0 + 1, w0 + j], gb[i, r0 + 2, w0 + j],
                    gb[i, r0 + 3, w0 + j], tmp[0, j], tmp[1, j], tmp[2, j], tmp[3, j],
                    tmp[4, j], tmp[5, j])
            for p in range(6):  # along each row
                _a4(tmp[p, 0], tmp[p, 1], tmp[p, 2], tmp[p, 3], U[6 * p, t], U[6 * p + 1, t],
                    U[6 * p + 2, t], U[6 * p + 3, t], U[6 * p + 4, t], U[6 * p + 5, t])
        else:
            for j in range(2):
                _a2(gb[i, r0, w0 + j], gb[i, r0 + 1, w0 + j], tmp[0, j], tmp[1, j], tmp[2, j],
                    tmp[3, j])
            for p in range(4):
                _a2(tmp[p, 0], tmp[p, 1], U[4 * p, t], U[4 * p + 1, t], U[4 * p + 2, t],
                    U[4 * p + 3, t])


@njit(**JIT_SERIAL)
def finite_block(b, acc):
    """Whether every element of the channels-innermost block ``b`` (4-D) is finite
    (``acc`` scratch of its last extent; elementwise across channels, so it vectorises)."""
    acc[:] = 0
    z = acc[0]
    for i in range(b.shape[0]):
        for r in range(b.shape[1]):
            for w in range(b.shape[2]):
                v = b[i, r, w]
                for c in range(v.shape[0]):
                    acc[c] += v[c] * z
    for c in range(acc.shape[0]):
        if acc[c] != 0:  # NaN (inf * 0, NaN * 0) compares unequal
            return False
    return True


#: Most bytes of one part's accumulator ``(alpha^2, Kg, Cg)`` for the fused form (it stays
#: in L2 while the part's blocks stream through); larger ones run staged.
FUSED_MAX_ACC_BYTES = 1 << 20
#: Most tiles of one stage of the staged form.
STAGED_TILES = 512
#: Tiles of one transform task of the staged form (fewer calls; whole images or rows).
STAGED_BLOCK_TILES = 64


def correlate_weight(xp, g, gw, groups: int, parts: int, before=(0, 0)) -> bool:
    """gw[k, c, a, b] = sum_{n, i, j} g[n, k, i, j] * xp[n, group(k)*Cg + c, i + a, j + b]
    for a 3x3 kernel at stride 1 (``xp`` ``(N, C, Hp, Wp)`` padded, ``g`` ``(N, K, OH, OW)``,
    ``gw`` ``(K, Cg, 3, 3)``; ``xp`` may also be the unpadded input, its zero padding read
    in place: ``before`` = (top, left) padding). False (``gw`` partly written) when a value
    is not finite.

    Fused form (the accumulator within ``FUSED_MAX_ACC_BYTES``): ``parts`` consecutive
    runs of blocks, each summed in its own accumulator by one task, added in order.
    Staged form (many channels: W5's 256 x 256): each stage of at most ``STAGED_TILES``
    tiles is transformed (tasks: group x block), then each point's product spans the
    whole stage (tasks: group x point), accumulated over the stages in order."""
    K, Cg = gw.shape[:2]
    Kg = K // groups
    OH, OW = g.shape[2], g.shape[3]
    m = tile_size(OH, OW)
    alpha = m + 2
    a2 = alpha * alpha
    dt = gw.dtype
    with np.errstate(invalid="ignore", over="ignore"):
        if a2 * Kg * Cg * dt.itemsize <= FUSED_MAX_ACC_BYTES:
            acc = _fused(xp, g, groups, Kg, Cg, m, parts, before)
        else:
            acc = _staged(xp, g, groups, Kg, Cg, m, before)
        if acc is None:
            return False
        # dW[k, c, i, j] = sum_{p, q} G[p, i] G[q, j] M[p*alpha + q, k, c]: one product
        # (columns x alpha^2) @ (alpha^2 x 9) per group, part and column chunk, written in
        # dW's own layout, the parts added in order (beta = 1)
        G = _G[m]
        W9 = np.ascontiguousarray(np.einsum("pi,qj->pqij", G, G).reshape(a2, 9), dtype=dt)
        parts = acc.shape[0]
        KC = Kg * Cg
        nch = max(1, min(8, KC // 2048))
        cols = [(j * KC // nch, (j + 1) * KC // nch) for j in range(nch)]
        res = gw if gw.flags.c_contiguous else np.empty(gw.shape, dtype=dt)
        aa, wa, ra = blas.address(acc), blas.address(W9), blas.address(res)
        s = dt.itemsize
        prods = {c1 - c0: blas.Gemm(dt, c1 - c0, 9, a2, lda=KC, ldb=9, ldc=9, ta=True)
                 for c0, c1 in cols}

        def task(i):
            grp, j = divmod(i, nch)
            c0, c1 = cols[j]
            for part in range(parts):
                prods[c1 - c0](aa + ((part * groups + grp) * a2 * KC + c0) * s, wa,
                               ra + (grp * KC + c0) * 9 * s, part > 0)

        blas.parallel(task, groups * nch)
        _release(acc)
        if res is not gw:
            gw[...] = res
        return bool(np.isfinite(res).all())


def _scratch(dt, nimg, nty, tw, m, Cg, Kg, *extra) -> _Carve:
    """This thread's scratch for one block (:func:`_fill_transform`), then ``extra``."""
    alpha = m + 2
    return _Carve(dt, nimg * (nty * m + 2) * (tw * m + 2) * Cg, nimg * nty * m * tw * m * Kg,
                  alpha * alpha * max(Cg, Kg), max(Cg, Kg), *extra)


def _fill_transform(xp, g, n0, nimg, ty0, nty, tw, m, xc0, gc0, V, U, t0, c, before) -> bool:
    """Fill one block (``nimg`` images from ``n0``, ``nty`` tile rows from ``ty0``) of
    both operands channels-innermost and transform it into ``V[:, t0:]`` and ``U[:, t0:]``
    (False, nothing transformed, when a value is not finite); ``c`` is
    :func:`_scratch`."""
    Cg, Kg = V.shape[2], U.shape[2]
    alpha = m + 2
    Hr, Wt = nty * m + 2, tw * m + 2
    xb = c.views[0].reshape(nimg, Hr, Wt, Cg)
    gb = c.views[1].reshape(nimg, nty * m, tw * m, Kg)
    tmp, chk = c.views[2], c.views[3]
    fill_rows(xp, n0, xc0, ty0 * m, before[0], before[1], xb)
    fill_rows(g, n0, gc0, ty0 * m, 0, 0, gb)
    if not (finite_block(xb, chk[:Cg]) and finite_block(gb, chk[:Kg])):
        return False
    transform_input(xb, m, tmp[: alpha * alpha * Cg].reshape(alpha, alpha, Cg), V, t0)
    transform_grad(gb, m, tmp[: alpha * m * Kg].reshape(alpha, m, Kg), U, t0)
    return True


def _geometry(xp, g, m):
    """(N, alpha^2, dtype, itemsize, tile rows, tile columns) of a weight gradient."""
    th, tw = -(-g.shape[2] // m), -(-g.shape[3] // m)
    return xp.shape[0], (m + 2) ** 2, g.dtype, g.dtype.itemsize, th, tw


def _fused(xp, g, groups, Kg, Cg, m, parts, before):
    """The fused form: the parts' sums ``(parts, groups, alpha^2, Kg, Cg)`` (pooled), or
    None (not finite)."""
    N, a2, dt, s, th, tw = _geometry(xp, g, m)
    blist = blocks(N, th, tw, target_tiles(m, Cg, Kg, s))
    parts = max(1, min(len(blist), -(-parts // groups)))
    bounds = [j * len(blist) // parts for j in range(parts + 1)]
    acc = _take((parts, groups, a2, Kg, Cg), dt)
    gemms: dict = {}
    for _, nimg, _, nty in blist:
        T = nimg * nty * tw
        if T not in gemms:
            gemms[T] = blas.Gemm(dt, Kg, Cg, T, lda=Kg, ldb=Cg, ldc=Cg, ta=True)
    aa = blas.address(acc)
    finite = [True] * (parts * groups)

    def task(i):
        part, grp = divmod(i, groups)
        cbase = aa + (part * groups + grp) * a2 * Kg * Cg * s
        for j in range(bounds[part], bounds[part + 1]):
            n0, nimg, ty0, nty = blist[j]
            T = nimg * nty * tw
            c = _scratch(dt, nimg, nty, tw, m, Cg, Kg, a2 * T * Cg, a2 * T * Kg)
            V = c.views[4].reshape(a2, T, Cg)
            U = c.views[5].reshape(a2, T, Kg)
            if not _fill_transform(xp, g, n0, nimg, ty0, nty, tw, m, grp * Cg, grp * Kg, V, U,
                                   0, c, before):
                finite[i] = False
                return
            prod = gemms[T]
            ua, va = blas.address(U), blas.address(V)
            for a in range(a2):
                prod(ua + a * T * Kg * s, va + a * T * Cg * s, cbase + a * Kg * Cg * s,
                     j > bounds[part])

    blas.parallel(task, parts * groups)
    if all(finite):
        return acc
    _release(acc)
    return None


def _staged(xp, g, groups, Kg, Cg, m, before):
    """The staged form: M ``(1, groups, alpha^2, Kg, Cg)`` (pooled), or None (not
    finite)."""
    N, a2, dt, s, th, tw = _geometry(xp, g, m)
    per = th * tw
    if per <= STAGED_TILES:  # stages of whole images, blocks of whole images (~64 tiles)
        ipb = max(1, min(N, STAGED_TILES // per))
        bi = max(1, min(ipb, STAGED_BLOCK_TILES // per))
        stages = [[(n, min(bi, n0 + ipb - n, N - n), 0, th)
                   for n in range(n0, min(N, n0 + ipb), bi)]
                  for n0 in range(0, N, ipb)]
    else:  # stages of tile rows of one image, blocks of ~64 tiles
        rows = max(1, STAGED_TILES // tw)
        brows = max(1, STAGED_BLOCK_TILES // tw)
        stages = [[(n, 1, b, min(brows, r0 + rows - b, th - b))
                   for b in range(r0, min(th, r0 + rows), brows)]
                  for n in range(N) for r0 in range(0, th, rows)]
    Tmax = max(sum(b[1] * b[3] * tw for b in st) for st in stages)
    V = _take((groups, a2, Tmax, Cg), dt)
    U = _take((groups, a2, Tmax, Kg), dt)
    M = _take((groups, a2, Kg, Cg), dt)
    va, ua, ma = blas.address(V), blas.address(U), blas.address(M)
    ok = True
    for si, stage in enumerate(stages):
        offs = np.cumsum([0] + [b[1] * b[3] * tw for b in stage]).tolist()
        T = offs[-1]
        nb = len(stage)
        flags = [True] * (groups * nb)

        def transform(i, stage=stage, offs=offs, nb=nb, flags=flags):
            grp, j = divmod(i, nb)
            n0, nimg, ty0, nty = stage[j]
            c = _scratch(dt, nimg, nty, tw, m, Cg, Kg)
            flags[i] = _fill_transform(xp, g, n0, nimg, ty0, nty, tw, m, grp * Cg, grp * Kg,
                                       V[grp], U[grp], offs[j], c, before)

        blas.parallel(transform, groups * nb)
        if not all(flags):
            ok = False
            break
        prod = blas.Gemm(dt, Kg, Cg, T, lda=Kg, ldb=Cg, ldc=Cg, ta=True)

        def products(i, prod=prod, si=si):
            grp, a = divmod(i, a2)
            o = grp * a2 + a
            prod(ua + o * Tmax * Kg * s, va + o * Tmax * Cg * s, ma + o * Kg * Cg * s, si > 0)

        blas.parallel(products, groups * a2)
    _release(V, U)
    if ok:
        return M[None]
    _release(M)
    return None
