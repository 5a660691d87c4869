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
each part sums its blocks in its own accumulator (one iteration of a Numba parallel loop,
single-threaded BLAS) and the parts are added in order: bit-identical from run to run and
for any thread count.

A NaN/Inf in the input or ``grad_output`` (seen in the filled blocks), or a non-finite
result, returns False: the caller runs the direct kernel, whose NaN/Inf pattern is exact
(Winograd mixes the pixels of a tile).
"""

from __future__ import annotations

import numpy as np
from numba import get_thread_id, njit, prange

from fastconv._config import JIT_PARALLEL, JIT_SERIAL
from fastconv.cpu import blas
from fastconv.cpu.gemm import scratch_rows
from fastconv.cpu.winograd import (
    _G,
    _carve_len,
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
    runs of blocks, each summed in its own accumulator by one iteration, added in order.
    Staged form (many channels: W5's 256 x 256): each stage of at most ``STAGED_TILES``
    tiles is transformed (iterations: group x block), then each point's product spans the
    whole stage (iterations: group x point), accumulated over the stages in order.

    Each form is one Numba parallel region per step (:func:`fused_parts`,
    :func:`staged_parts`), single-threaded BLAS called from inside Numba, each
    iteration in the running thread's row of one scratch buffer; the last step (``G^T M
    G``, :func:`finish`) runs in the same call. Not :func:`fastconv.cpu.blas.parallel`'s
    Python threads: on a 2-vCPU VM they ran B3's weight gradient no faster on 2 threads
    than on 1 when calls came in short bursts after idle time (as the forward's, see
    :func:`fastconv.cpu.winograd._run_fused`)."""
    K, Cg = gw.shape[:2]
    Kg = K // groups
    OH, OW = g.shape[2], g.shape[3]
    m = tile_size(OH, OW)
    a2 = (m + 2) ** 2
    dt = gw.dtype
    with np.errstate(invalid="ignore", over="ignore"):
        res = gw if gw.flags.c_contiguous else np.empty(gw.shape, dtype=dt)
        fin = _Finish(dt, groups, Kg, Cg, m, res)
        if a2 * Kg * Cg * dt.itemsize <= FUSED_MAX_ACC_BYTES:
            ok = _fused(xp, g, groups, Kg, Cg, m, parts, before, fin)
        else:
            ok = _staged(xp, g, groups, Kg, Cg, m, before, fin)
        if not ok:
            return False
        if res is not gw:
            gw[...] = res
        return bool(np.isfinite(res).all())


#: ``args`` row of :func:`_call_args`: the index of beta = 0 (overwrite) and beta = 1.
_BETA0, _BETA1 = 8, 10


def _call_args(prod: blas.Gemm) -> np.ndarray:
    """:func:`fastconv.cpu.blas.numba_call`'s constant arguments of ``prod``, with the
    address of beta = 1 appended (index ``_BETA1``; ``_BETA0`` holds beta = 0)."""
    return blas.numba_call(prod, beta_one=True)[1]


@njit(inline="always", **JIT_SERIAL)
def _gemm(gemm, args, a, b, c, beta):
    """``prod(a, b, c, accumulate)`` of the :class:`fastconv.cpu.blas.Gemm` whose
    :func:`_call_args` are ``args`` (``beta``: ``_BETA0`` or ``_BETA1``), addresses
    given as arrays whose first element is the operand's."""
    gemm(args[0], args[1], args[2], args[3], args[4], args[5], b.ctypes.data, args[6],
         a.ctypes.data, args[7], args[beta], c.ctypes.data, args[9])


class _Finish:
    """The last step, ``dW[k, c, i, j] = sum_{p, q} G[p, i] G[q, j] M[p*alpha + q, k,
    c]``: one product (columns x alpha^2) @ (alpha^2 x 9) per group, part and column chunk
    (``cols`` ``(nch, 2)``), written in dW's own layout (``res``), the parts added in
    order (beta = 1). ``args`` has one :func:`_call_args` row per chunk."""

    def __init__(self, dt, groups, Kg, Cg, m, res):
        a2 = (m + 2) ** 2
        G = _G[m]
        self.W9 = np.ascontiguousarray(np.einsum("pi,qj->pqij", G, G).reshape(a2, 9), dtype=dt)
        KC = Kg * Cg
        nch = max(1, min(8, KC // 2048))
        self.cols = np.array([(j * KC // nch, (j + 1) * KC // nch) for j in range(nch)],
                             dtype=np.int64)
        self._prods = {c1 - c0: blas.Gemm(dt, c1 - c0, 9, a2, lda=KC, ldb=9, ldc=9, ta=True)
                       for c0, c1 in self.cols.tolist()}  # args point into these
        self.args = np.stack([_call_args(self._prods[c1 - c0])
                              for c0, c1 in self.cols.tolist()])
        self.res = res.reshape(groups, KC * 9)


@njit(**JIT_SERIAL)
def finish(i, gemm, cols, args, acc, W9, res):
    """Task ``i`` (group x column chunk) of :class:`_Finish`: its column chunk of every
    part of ``acc`` ``(parts, groups, alpha^2 * Kg * Cg)`` into ``res`` ``(groups,
    Kg * Cg * 9)``, the parts in order."""
    nch = cols.shape[0]
    grp = i // nch
    j = i - grp * nch
    c0 = cols[j, 0]
    for part in range(acc.shape[0]):
        _gemm(gemm, args[j], acc[part, grp, c0:], W9, res[grp, c0 * 9:],
              _BETA0 if part == 0 else _BETA1)


@njit(**JIT_SERIAL)
def fill_transform(xp, g, n0, ty0, m, xc0, gc0, pt, pl, xb, gb, tmp, chk, V, U, t0):
    """Fill one block of both operands channels-innermost (``xb`` ``(nimg, rows + 2,
    columns + 2, Cg)`` from image ``n0``, tile row ``ty0``, channel ``xc0`` of ``xp``
    (its zero padding ``pt``, ``pl`` read in place); ``gb`` ``(nimg, rows, columns, Kg)``
    from channel ``gc0`` of ``g``) and transform it into ``V[:, t0:]`` and ``U[:, t0:]``
    (False, nothing transformed, when a value is not finite); ``tmp``, ``chk``
    scratch of at least ``alpha^2 * max(Cg, Kg)`` and ``max(Cg, Kg)`` elements."""
    Cg, Kg = xb.shape[3], gb.shape[3]
    alpha = m + 2
    fill_rows(xp, n0, xc0, ty0 * m, pt, pl, xb)
    fill_rows(g, n0, gc0, ty0 * m, 0, 0, gb)
    if not (finite_block(xb, chk[:Cg]) and finite_block(gb, chk[:Kg])):
        return False
    transform_input(xb, m, tmp[: alpha * alpha * Cg].reshape((alpha, alpha, Cg)), V, t0)
    transform_grad(gb, m, tmp[: alpha * m * Kg].reshape((alpha, m, Kg)), U, t0)
    return True


@njit(inline="always", **JIT_SERIAL)
def _block_scratch(buf, nimg, nty, tw, m, Cg, Kg):
    """(xb, gb, tmp, chk) of one block in a thread's scratch row ``buf`` and the number
    of elements they take (64-byte aligned offsets, as :func:`_scratch_len`)."""
    alpha = m + 2
    Hr, Wt = nty * m + 2, tw * m + 2
    nx, ng = nimg * Hr * Wt * Cg, nimg * nty * m * tw * m * Kg
    l1, l2 = _carve_len(nx), _carve_len(ng)
    l3 = _carve_len(alpha * alpha * max(Cg, Kg))
    c = max(Cg, Kg)
    xb = buf[:nx].reshape((nimg, Hr, Wt, Cg))
    gb = buf[l1:l1 + ng].reshape((nimg, nty * m, tw * m, Kg))
    tmp = buf[l1 + l2:l1 + l2 + l3]
    chk = buf[l1 + l2 + l3:l1 + l2 + l3 + c]
    return xb, gb, tmp, chk, l1 + l2 + l3 + _carve_len(c)


def _scratch_len(nimg, nty, tw, m, Cg, Kg) -> int:
    """Elements of :func:`_block_scratch`."""
    Hr, Wt = nty * m + 2, tw * m + 2
    return sum(_carve_len(n) for n in (nimg * Hr * Wt * Cg, nimg * nty * m * tw * m * Kg,
                                       (m + 2) ** 2 * max(Cg, Kg), max(Cg, Kg)))


@njit(**JIT_PARALLEL)
def fused_parts(xp, g, pt, pl, m, tw, blist, bounds, gemm, args, scratch, acc, finite,
                fcols, fargs, W9, res):
    """The fused form in one call: iteration ``i`` = (part, group) fills and transforms
    each block ``blist[bounds[part]:bounds[part + 1]]`` (rows (n0, nimg, ty0, nty,
    ``args`` row)) in the running thread's scratch row and adds its ``alpha^2``
    products into ``acc[part, group]`` (``(parts, groups, alpha^2, Kg, Cg)``); then, if
    every ``finite`` flag holds, :func:`finish` (``fcols``, ``fargs``, ``W9``, ``res``)
    over group x column chunk. Results do not depend on which thread runs what."""
    parts, groups, a2, Kg, Cg = acc.shape
    for i in prange(parts * groups):
        part = i // groups
        grp = i - part * groups
        buf = scratch[get_thread_id()]
        C = acc[part, grp]
        for j in range(bounds[part], bounds[part + 1]):
            n0, nimg, ty0, nty, row = (blist[j, 0], blist[j, 1], blist[j, 2], blist[j, 3],
                                       blist[j, 4])
            T = nimg * nty * tw
            xb, gb, tmp, chk, o = _block_scratch(buf, nimg, nty, tw, m, Cg, Kg)
            V = buf[o:o + a2 * T * Cg].reshape((a2, T, Cg))
            o += _carve_len(a2 * T * Cg)
            U = buf[o:o + a2 * T * Kg].reshape((a2, T, Kg))
            if not fill_transform(xp, g, n0, ty0, m, grp * Cg, grp * Kg, pt, pl, xb, gb, tmp,
                                  chk, V, U, 0):
                finite[i] = False
                break
            beta = _BETA0 if j == bounds[part] else _BETA1
            for a in range(a2):
                _gemm(gemm, args[row], U[a], V[a], C[a], beta)
    if finite.all():
        accf = acc.reshape((parts, groups, a2 * Kg * Cg))
        for i in prange(groups * fcols.shape[0]):
            finish(i, gemm, fcols, fargs, accf, W9, res)


def _fused(xp, g, groups, Kg, Cg, m, parts, before, fin) -> bool:
    """The fused form (:func:`fused_parts`): whether every value was finite."""
    N, a2, dt, s, th, tw = _geometry(xp, g, m)
    blist = blocks(N, th, tw, target_tiles(m, Cg, Kg, s))
    parts = max(1, min(len(blist), -(-parts // groups)))
    bounds = np.array([j * len(blist) // parts for j in range(parts + 1)], dtype=np.int64)
    acc = _take((parts, groups, a2, Kg, Cg), dt)
    gemms: dict = {}
    rows, need = [], 0
    for n0, nimg, ty0, nty in blist:
        T = nimg * nty * tw
        if T not in gemms:
            gemms[T] = (len(gemms), blas.Gemm(dt, Kg, Cg, T, lda=Kg, ldb=Cg, ldc=Cg, ta=True))
        rows.append((n0, nimg, ty0, nty, gemms[T][0]))
        need = max(need, _scratch_len(nimg, nty, tw, m, Cg, Kg) + _carve_len(a2 * T * Cg)
                   + a2 * T * Kg)
    prods = [p for _, p in sorted(gemms.values(), key=lambda v: v[0])]  # args point into these
    args = np.stack([_call_args(p) for p in prods])
    finite = np.ones(parts * groups, dtype=np.bool_)
    with blas.single_threaded_blas():
        fused_parts(xp, g, before[0], before[1], m, tw, np.array(rows, dtype=np.int64), bounds,
                    blas.numba_call(prods[0])[0], args, scratch_rows(need, dt), acc, finite,
                    fin.cols, fin.args, fin.W9, fin.res)
    _release(acc)
    return bool(finite.all())


@njit(**JIT_PARALLEL)
def staged_parts(xp, g, pt, pl, m, tw, sblocks, sbounds, gemm, sargs, scratch, V, U, M,
                 flags, fcols, fargs, W9, res):
    """The staged form in one call: for each stage ``s`` (blocks ``sblocks[sbounds[s]:
    sbounds[s + 1]]``, rows (n0, nimg, ty0, nty, first tile)), iterations group x block
    fill and transform into ``V``/``U`` ``(groups, alpha^2, Tmax, Cg/Kg)``, then
    iterations group x point add the stage's product (``sargs[s]``) into ``M``
    ``(groups, alpha^2, Kg, Cg)``; then :func:`finish`. False (``flags`` not all true)
    when a value is not finite."""
    groups, a2, Kg, Cg = M.shape
    for si in range(sbounds.shape[0] - 1):
        b0 = sbounds[si]
        nb = sbounds[si + 1] - b0
        for i in prange(groups * nb):
            grp = i // nb
            j = b0 + i - grp * nb
            n0, nimg, ty0, nty, t0 = (sblocks[j, 0], sblocks[j, 1], sblocks[j, 2],
                                      sblocks[j, 3], sblocks[j, 4])
            xb, gb, tmp, chk, _ = _block_scratch(scratch[get_thread_id()], nimg, nty, tw, m,
                                                 Cg, Kg)
            flags[i] = fill_transform(xp, g, n0, ty0, m, grp * Cg, grp * Kg, pt, pl, xb, gb,
                                      tmp, chk, V[grp], U[grp], t0)
        if not flags[:groups * nb].all():
            return False
        beta = _BETA0 if si == 0 else _BETA1
        for i in prange(groups * a2):
            grp = i // a2
            a = i - grp * a2
            _gemm(gemm, sargs[si], U[grp, a], V[grp, a], M[grp, a], beta)
    Mf = M.reshape((1, groups, a2 * Kg * Cg))
    for i in prange(groups * fcols.shape[0]):
        finish(i, gemm, fcols, fargs, Mf, W9, res)
    return True


def _geometry(xp, g, m):
    """(N, alpha^2, dtype, itemsize, tile rows, tile columns) of a weight gradient."""
    th, tw = -(-g.shape[2] // m), -(-g.shape[3] // m)
    return xp.shape[0], (m + 2) ** 2, g.dtype, g.dtype.itemsize, th, tw


def _staged(xp, g, groups, Kg, Cg, m, before, fin) -> bool:
    """The staged form (:func:`staged_parts`): whether every value was finite."""
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
    sblocks, sbounds, prods, need = [], [0], [], 0
    for stage in stages:
        t0 = 0
        for n0, nimg, ty0, nty in stage:
            sblocks.append((n0, nimg, ty0, nty, t0))
            t0 += nimg * nty * tw
            need = max(need, _scratch_len(nimg, nty, tw, m, Cg, Kg))
        sbounds.append(len(sblocks))
        prods.append(blas.Gemm(dt, Kg, Cg, t0, lda=Kg, ldb=Cg, ldc=Cg, ta=True))
    Tmax = max(sum(b[1] * b[3] * tw for b in st) for st in stages)
    V = _take((groups, a2, Tmax, Cg), dt)
    U = _take((groups, a2, Tmax, Kg), dt)
    M = _take((groups, a2, Kg, Cg), dt)
    flags = np.ones(groups * max(len(st) for st in stages), dtype=np.bool_)
    with blas.single_threaded_blas():
        ok = staged_parts(xp, g, before[0], before[1], m, tw, np.array(sblocks, dtype=np.int64),
                          np.array(sbounds, dtype=np.int64), blas.numba_call(prods[0])[0],
                          np.stack([_call_args(p) for p in prods]), scratch_rows(need, dt), V, U, M,
                          flags, fin.cols, fin.args, fin.W9, fin.res)
    _release(V, U, M)
    return bool(ok)
