"""Small images (a few hundred to a thousand outputs per plane, few channels): every op of
a correlation as one BLAS product per chunk of images on their ``im2col`` block.

LeNet's layers (28x28 and 14x14 planes, 1-16 channels, 5x5 kernels) are too small for
the row-chunked GEMM and too few-channelled for the direct kernel's 4-channel blocks; a
training step spent most of its time in per-call and per-row overheads. Here the batch
is cut into chunks of consecutive images (:func:`chunks`: about ``SMALL_CHUNK_COLS``
output pixels each, a function of the shapes only); a chunk's receptive-field matrix
``col`` (``R x B*M`` with ``R = Cg * taps``, ``B`` images and ``M`` output pixels per
image, the images side by side) is gathered by a serial Numba kernel (whole-row copies
at unit stride; zero padding through a padded copy of the chunk) and multiplied by
Numba's ``np.dot`` (the BLAS SciPy links), all in one ``nogil`` call per chunk (large
forward products: gather, NumPy's BLAS through ``blas.Gemm``, bias; ``SMALL_GEMM_MACS``). The
forward's and the weight gradient's chunks are the iterations of one Numba parallel region
per call (:func:`_forward_chunks`, :func:`_weight_chunks`; single-threaded BLAS
meanwhile, scratch rows per thread from ``gemm.scratch_rows``): Numba's workers spin
between regions, so a training step's bursts of calls keep both threads busy, where
Python worker threads woke late. The large forward products and the input gradient run
as tasks on the fastconv threads (``fastconv.cpu.blas.parallel``) with scratch blocks
kept per calling thread (fresh multi-megabyte blocks cost more in first-touch page faults
than the products):

- forward: ``out[chunk, g] (Kg x B*M) = W_g (Kg x R) @ col_g (R x B*M) + bias``;
  :func:`correlate` can hand its blocks to the caller (``saved``: a layer keeps them, as
  PyTorch keeps its saved tensors) for the weight gradient (``cols``);
- input gradient (``col2im``): ``dcol (R x B*M) = W_g^T (R x Kg) @ grad_output[chunk,
  g] (Kg x B*M)``, then scatter-added onto each image's padded grid and cropped (no
  spread grid, no flipped-kernel correlation of mostly zeros);
- weight gradient: ``dW_g (Kg x R) = grad_output[chunk, g] (Kg x B*M) @ col_g^T`` per
  chunk (``col_g @ grad_output^T`` with operands as stored from ``SMALL_DW_TRANSPOSED_R``
  rows), the chunks' products added in order.

Every chunk's products are the same BLAS calls whatever the thread count and however the
chunks fall to threads, so results are bit-identical run to run and for any thread
count. The error is that of a BLAS product (as ``"gemm"``).

With a cold kernel cache the forward's first calls in a process run a NumPy form instead
of compiling (``SMALL_NUMPY_SECONDS``): the gather as one strided NumPy copy, the product
by the very BLAS call the kernels make, the bias by NumPy; the same operations, so the
same bits (tests/test_small.py). ``fastconv warmup`` compiles the kernels ahead of use.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
from numba import get_thread_id, njit, prange

from fastconv._config import JIT_PARALLEL, JIT_SERIAL
from fastconv.cpu import blas, gemm

#: Most bytes of one image's ``col`` block (it and the product stay in the L2 cache).
SMALL_MAX_COL_BYTES = 1 << 20
#: Most output pixels per plane (larger images take the row-chunked paths).
SMALL_MAX_PIXELS = 1024
#: Most rows of ``col`` (``Cg * taps``): wider receptive fields are the big GEMMs' work.
SMALL_MAX_R = 1024
#: Fewest output channels per group (thinner products lose to the direct kernel).
SMALL_MIN_KG = 4
#: Fewest rows of ``col``.
SMALL_MIN_R = 16
#: Fewest multiply-adds (smaller problems run the serial direct kernel).
SMALL_MIN_MACS = 1 << 18


#: Fewest multiply-adds of one chunk's forward product for NumPy's BLAS (``blas.Gemm``, a
#: separate call) instead of Numba's ``np.dot`` inside the chunk's kernel (SciPy's BLAS):
#: LeNet's conv2 product ``(16 x 150) @ (150 x 1600)`` took 139-243 us by ``np.dot`` and
#: 100-115 us by NumPy's OpenBLAS, same bits (the layer's forward 1.20 -> 1.15 ms CPU);
#: conv1's ``(6 x 25) @ (25 x 2352)``, 0.35 M, 7-9 vs 8-10 us (two extra calls would cost
#: more). One thread, loaded machine, measured 2026-12-02. 1 M: ``fastconv warmup``'s
#: small-image case (8 images, 1.9 M) compiles this path's kernels too.
SMALL_GEMM_MACS = 1 << 20

#: Rows of ``col`` from which the weight gradient multiplies ``col @ g^T`` (operands as
#: stored) instead of ``g @ col^T`` (1.12 -> 0.54 ms for LeNet's conv2, R = 150; 0.29 vs
#: 0.40 ms the other way for conv1, R = 25; one thread, measured 2026-12-02).
SMALL_DW_TRANSPOSED_R = 64


def applies(N: int, w_shape: tuple, out_spatial: tuple, groups: int, itemsize: int) -> bool:
    """Whether the small-image path runs a correlation of ``N`` images with weight
    ``(K, Cg, KD, KH, KW)`` and output spatial shape ``out_spatial`` (all its ops: the
    forward, input and weight gradients use the same rule on the forward's shapes). A 1x1
    kernel needs no ``im2col``: the shifted GEMM multiplies the planes in place."""
    K, Cg = int(w_shape[0]), int(w_shape[1])
    taps = math.prod(int(v) for v in w_shape[2:])
    R = Cg * taps
    M = math.prod(int(v) for v in out_spatial)
    return (taps > 1 and K // groups >= SMALL_MIN_KG and SMALL_MIN_R <= R <= SMALL_MAX_R
            and M <= SMALL_MAX_PIXELS and R * M * itemsize <= SMALL_MAX_COL_BYTES
            and N * K * R * M >= SMALL_MIN_MACS)


#: Target columns of one chunk's ``col`` block (``R x B*M``): the images are cut into
#: chunks of ``B`` consecutive images (a function of the shapes only, never of threads).
SMALL_CHUNK_COLS = 2048


def chunks(N: int, M: int):
    """``[(n0, n1), ...]``: the batch cut into equal chunks of consecutive images of about
    ``SMALL_CHUNK_COLS`` output pixels each (at least one image); a function of the shapes
    only, so every op's products are the same whatever the thread count."""
    count = max(1, min(N, -(-N * M // SMALL_CHUNK_COLS)))
    B = -(-N // count)
    return [(n, min(N, n + B)) for n in range(0, N, B)]


@njit(**JIT_SERIAL)
def _spans(KW, OW, W, sw, dw, bw):
    """Per kernel column ``e``: the first and one-past-last output column ``ow`` whose
    input column ``ow*sw + e*dw - bw`` lies inside ``[0, W)``."""
    lo = np.empty(KW, np.int64)
    hi = np.empty(KW, np.int64)
    for e in range(KW):
        w0 = e * dw - bw
        a = 0
        while a < OW and a * sw + w0 < 0:
            a += 1
        b = a
        while b < OW and b * sw + w0 < W:
            b += 1
        lo[e], hi[e] = a, b
    return lo, hi


@njit(**JIT_SERIAL)
def _gather_unit(x, xn0, cnt, c0, kshape, oshape, col):
    """:func:`_gather`'s stride-1, undilated, unpadded case: col[(c, a, b, e), j*M + (od,
    oh, ow)] = x[xn0 + j, c0 + c, od + a, oh + b, ow + e] for ``j`` in ``[0, cnt)``, whole
    rows of ``col`` filled by contiguous runs; each input row is read once for the ``KW``
    rows ``e`` it feeds (0.61 -> 0.34 ms for LeNet's conv2 at batch 64, one thread)."""
    KD, KH, KW = kshape
    OD, OH, OW = oshape
    M = OD * OH * OW
    Cg = col.shape[0] // (KD * KH * KW)
    for c in range(Cg):
        for a in range(KD):
            for b in range(KH):
                r0 = ((c * KD + a) * KH + b) * KW
                rows = col[r0 : r0 + KW]
                for j in range(cnt):
                    for od in range(OD):
                        for oh in range(OH):
                            src = x[xn0 + j, c0 + c, od + a, oh + b]
                            o = j * M + (od * OH + oh) * OW
                            for e in range(KW):
                                dst = rows[e, o : o + OW]
                                s = src[e : e + OW]
                                for i in range(OW):
                                    dst[i] = s[i]


@njit(**JIT_SERIAL)
def _pad_chunk(x, n0, n1, c0, Cg, before, grid):
    """``(n1 - n0, Cg, *grid)``: the images ``[n0, n1)``, channels ``[c0, c0 + Cg)`` of
    ``x`` zero-padded by ``before`` (and cropped or zero-filled to ``grid`` after)."""
    D, H, W = x.shape[2], x.shape[3], x.shape[4]
    bd, bh, bw = before
    Dp, Hp, Wp = grid
    xs = np.zeros((n1 - n0, Cg, Dp, Hp, Wp), x.dtype)
    for n in range(n0, n1):
        for c in range(Cg):
            for d in range(max(0, -bd), min(D, Dp - bd)):
                for h in range(max(0, -bh), min(H, Hp - bh)):
                    dst = xs[n - n0, c, d + bd, h + bh]
                    src = x[n, c0 + c, d, h]
                    for i in range(max(0, -bw), min(W, Wp - bw)):
                        dst[i + bw] = src[i]
    return xs


@njit(**JIT_SERIAL)
def _gather(x, n0, n1, c0, kshape, stride, dilation, oshape, before, col):
    """col[(c, a, b, e), (n - n0)*M + (od, oh, ow)] = x[n, c0 + c, od*sd + a*dd - bd,
    oh*sh + b*dh - bh, ow*sw + e*dw - bw] for the images ``[n0, n1)``, 0 outside ``x``
    (zero padding read in place; ``before`` is ``(bd, bh, bw)``, zeros for an input padded
    already). ``col`` is ``(Cg * taps, (n1 - n0) * M)`` with ``M = OD * OH * OW``.
    ``stride`` None: unit stride and dilation (Numba then compiles only that branch)."""
    KD, KH, KW = kshape
    OD, OH, OW = oshape
    bd, bh, bw = before
    D, H, W = x.shape[2], x.shape[3], x.shape[4]
    zero = col.dtype.type(0)
    Cg = col.shape[0] // (KD * KH * KW)
    M = OD * OH * OW
    if stride is None:
        grid = (OD + KD - 1, OH + KH - 1, OW + KW - 1)
        if bd == 0 and bh == 0 and bw == 0 and grid[0] <= D and grid[1] <= H and grid[2] <= W:
            _gather_unit(x, n0, n1 - n0, c0, kshape, oshape, col)
        else:  # a padded copy of the chunk (zero padding before and, e.g. "same" with an
            # even kernel, only after): whole-row copies beat in-place bounds tests
            xs = _pad_chunk(x, n0, n1, c0, Cg, before, grid)
            _gather_unit(xs, n0 - n0, n1 - n0, c0 - c0, kshape, oshape, col)  # int64, not
        return  # Literal[int](0): one compiled signature
    sd, sh, sw = stride
    dd, dh, dw = dilation
    lo, hi = _spans(KW, OW, W, sw, dw, bw)
    for n in range(n0, n1):
        m0 = (n - n0) * M
        for c in range(Cg):
            for a in range(KD):
                for b in range(KH):
                    r0 = ((c * KD + a) * KH + b) * KW
                    for od in range(OD):
                        d = od * sd + a * dd - bd
                        for oh in range(OH):
                            h = oh * sh + b * dh - bh
                            o = m0 + (od * OH + oh) * OW
                            if d < 0 or d >= D or h < 0 or h >= H:
                                for e in range(KW):
                                    for i in range(OW):
                                        col[r0 + e, o + i] = zero
                                continue
                            for e in range(KW):
                                r = r0 + e
                                w0 = e * dw - bw
                                for i in range(lo[e]):
                                    col[r, o + i] = zero
                                if sw == 1:
                                    for i in range(lo[e], hi[e]):
                                        col[r, o + i] = x[n, c0 + c, d, h, w0 + i]
                                else:
                                    for i in range(lo[e], hi[e]):
                                        col[r, o + i] = x[n, c0 + c, d, h, w0 + i * sw]
                                for i in range(hi[e], OW):
                                    col[r, o + i] = zero


@njit(**JIT_SERIAL)
def _scatter(dcol, m0, gp, kshape, stride, dilation, oshape):
    """The adjoint of :func:`_gather` for one image and group: gp[c, od*sd + a*dd,
    oh*sh + b*dh, ow*sw + e*dw] += dcol[(c, a, b, e), m0 + (od, oh, ow)] (``gp`` is the
    group's ``(Cg, Dp, Hp, Wp)`` padded grid; positions past it are dropped)."""
    KD, KH, KW = kshape
    sd, sh, sw = stride
    dd, dh, dw = dilation
    OD, OH, OW = oshape
    Cg, Dp, Hp, Wp = gp.shape
    if (sd == 1 and sh == 1 and sw == 1 and dd == 1 and dh == 1 and dw == 1
            and OD + KD - 1 <= Dp and OH + KH - 1 <= Hp and OW + KW - 1 <= Wp):
        for c in range(Cg):  # every tap inside the grid: whole-row adds
            for a in range(KD):
                for b in range(KH):
                    for e in range(KW):
                        src = dcol[((c * KD + a) * KH + b) * KW + e]
                        for od in range(OD):
                            for oh in range(OH):
                                dst = gp[c, od + a, oh + b]
                                o = m0 + (od * OH + oh) * OW
                                for i in range(OW):
                                    dst[e + i] += src[o + i]
        return
    lo, hi = _spans(KW, OW, Wp, sw, dw, 0)
    for c in range(Cg):
        for a in range(KD):
            for b in range(KH):
                r0 = ((c * KD + a) * KH + b) * KW
                for od in range(OD):
                    d = od * sd + a * dd
                    if d >= Dp:
                        break
                    for oh in range(OH):
                        h = oh * sh + b * dh
                        if h >= Hp:
                            break
                        o = m0 + (od * OH + oh) * OW
                        for e in range(KW):
                            r = r0 + e
                            w0 = e * dw
                            if sw == 1:
                                for i in range(hi[e]):
                                    gp[c, d, h, w0 + i] += dcol[r, o + i]
                            else:
                                for i in range(hi[e]):
                                    gp[c, d, h, w0 + i * sw] += dcol[r, o + i]


@njit(**JIT_SERIAL)
def _forward_chunk(xp, wm, bias, out, n0, n1, kshape, stride, dilation, oshape, before, col,
                   y, gathered):
    """out[n, g*Kg:(g+1)*Kg] = wm[g] @ col[g] + bias for the images ``[n0, n1)`` (``out``
    is ``(N, K, M)``, ``wm`` is ``(groups, Kg, R)``, ``col`` the chunk's ``(groups, R,
    (n1 - n0) * M)`` block, gathered here unless ``gathered``; ``y`` a ``(Kg, (n1 - n0) *
    M)`` scratch)."""
    groups, Kg = wm.shape[0], wm.shape[1]
    Cg = col.shape[1] // (kshape[0] * kshape[1] * kshape[2])
    for g in range(groups):
        if not gathered:
            _gather(xp, n0, n1, g * Cg, kshape, stride, dilation, oshape, before, col[g])
        np.dot(wm[g], col[g], y)
        _bias_rows(y, bias, out, n0, n1, g * Kg)


@njit(**JIT_SERIAL)
def _bias_rows(y, bias, out, n0, n1, k0):
    """out[n, k0 + k] = y[k, (n - n0)*M : (n - n0 + 1)*M] + bias[k0 + k] for the images
    ``[n0, n1)``: a chunk's product (``y`` is ``(Kg, (n1 - n0) * M)``) into ``out``
    ``(N, K, M)``."""
    M = out.shape[2]
    for n in range(n0, n1):
        m0 = (n - n0) * M
        for k in range(y.shape[0]):
            bk = bias[k0 + k]
            dst = out[n, k0 + k]
            src = y[k, m0 : m0 + M]
            for i in range(M):
                dst[i] = src[i] + bk


@njit(**JIT_SERIAL)
def _chunk_rows(g, n0, n1, k0, gk):
    """gk[k, (n - n0)*M + i] = g[n, k0 + k, i]: output-gradient rows of the images ``[n0,
    n1)`` side by side (``g`` is ``(N, K, M)``)."""
    M = g.shape[2]
    for n in range(n0, n1):
        m0 = (n - n0) * M
        for k in range(gk.shape[0]):
            src = g[n, k0 + k]
            dst = gk[k, m0 : m0 + M]
            for i in range(M):
                dst[i] = src[i]


@njit(**JIT_SERIAL)
def _input_chunk(g, wt, bias, out, n0, n1, kshape, stride, dilation, oshape, before, gp, gk,
                 dcol):
    """out[n] = crop(scatter(wt[grp] @ g[n, grp])) + bias for the images ``[n0, n1)``, one
    product per group for the whole chunk: ``g`` is ``(N, K, M)``, ``wt`` is ``(groups,
    R, Kg)``, ``out`` is ``(N, C, D, H, W)``, ``gp`` a ``(C, Dp, Hp, Wp)`` padded scratch
    grid, ``gk`` and ``dcol`` ``(Kg, B*M)`` and ``(R, B*M)`` scratch, ``before`` the
    leading padding per axis."""
    groups, R, Kg = wt.shape
    C, D, H, W = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    Cg = C // groups
    M = g.shape[2]
    bd, bh, bw = before
    for grp in range(groups):
        _chunk_rows(g, n0, n1, grp * Kg, gk)
        np.dot(wt[grp], gk, dcol)
        for n in range(n0, n1):
            gpg = gp[grp * Cg : (grp + 1) * Cg]
            gpg[...] = 0
            _scatter(dcol, (n - n0) * M, gpg, kshape, stride, dilation, oshape)
            for c in range(grp * Cg, (grp + 1) * Cg):
                bc = bias[c]
                for d in range(D):
                    for h in range(H):
                        src = gp[c, bd + d, bh + h]
                        dst = out[n, c, d, h]
                        for i in range(W):
                            dst[i] = src[bw + i] + bc


@njit(**JIT_SERIAL)
def _chunk_cols(g, n0, n1, k0, gkt):
    """gkt[(n - n0)*M + i, k] = g[n, k0 + k, i]: :func:`_chunk_rows` transposed."""
    M = g.shape[2]
    for n in range(n0, n1):
        m0 = (n - n0) * M
        for k in range(gkt.shape[1]):
            src = g[n, k0 + k]
            for i in range(M):
                gkt[m0 + i, k] = src[i]


@njit(**JIT_SERIAL)
def _weight_chunk(xp, g, acc, n0, n1, kshape, stride, dilation, oshape, before, col, gk, acct,
                  gathered):
    """acc[grp] = g[n0:n1, grp] (Kg x (n1 - n0)*M) @ col[grp]^T: the chunk's share of the
    weight gradient (``g`` is ``(N, K, M)``, ``acc`` is ``(groups, Kg, R)``, ``col`` the
    chunk's ``(groups, R, (n1 - n0) * M)`` block, gathered here unless ``gathered``).
    ``gk`` is a ``(Kg, B*M)`` scratch, or ``(B*M, Kg)`` with ``acct`` ``(R, Kg)``: then
    the product runs as ``acc^T = col @ g^T``, operands as stored (2x faster for
    LeNet's conv2, measured; a transposed ``col`` costs BLAS a copy)."""
    groups, Kg = acc.shape[0], acc.shape[1]
    Cg = col.shape[1] // (kshape[0] * kshape[1] * kshape[2])
    transposed = acct.shape[0] > 0
    for grp in range(groups):
        if not gathered:
            _gather(xp, n0, n1, grp * Cg, kshape, stride, dilation, oshape, before, col[grp])
        if transposed:
            _chunk_cols(g, n0, n1, grp * Kg, gk)
            np.dot(col[grp], gk, acct)
            acc[grp] = acct.T
        else:
            _chunk_rows(g, n0, n1, grp * Kg, gk)
            np.dot(gk, col[grp].T, acc[grp])


@njit(**JIT_PARALLEL)
def _forward_chunks(xp, wm, bias, out, parts, kshape, stride, dilation, oshape, before,
                    colbuf, coff, per_thread, scratch):
    """Every chunk of :func:`_forward_chunk` (``parts`` rows are ``(n0, n1)``) as one
    iteration of one parallel region. Chunk ``i`` gathers into ``colbuf[i]`` (a layer's
    kept blocks) or, ``per_thread``, into the running thread's row ``colbuf[t]`` from
    element ``coff``; its product lands in ``scratch[t]``. The same calls on the same
    operands whichever thread runs a chunk, so the same bits for any thread count."""
    groups, Kg, R = wm.shape
    M = out.shape[2]
    for i in prange(parts.shape[0]):
        n0, n1 = parts[i, 0], parts[i, 1]
        cols = (n1 - n0) * M
        t = get_thread_id()
        row = colbuf[t] if per_thread else colbuf[i]
        col = row[coff : coff + groups * R * cols].reshape((groups, R, cols))
        y = scratch[t, : Kg * cols].reshape((Kg, cols))
        _forward_chunk(xp, wm, bias, out, n0, n1, kshape, stride, dilation, oshape, before,
                       col, y, False)


@njit(**JIT_PARALLEL)
def _weight_chunks(xp, g, acc, parts, kshape, stride, dilation, oshape, before, colbuf, coff,
                   per_thread, scratch, transposed, gathered):
    """Every chunk of :func:`_weight_chunk` as one iteration of one parallel region, chunk
    ``i``'s share into ``acc[i]`` (``acc`` is ``(chunks, groups, Kg, R)``); the ``col``
    blocks as in :func:`_forward_chunks` (``gathered``: a layer's kept blocks, read only),
    ``gk`` (and ``acct``, ``transposed``) in the running thread's ``scratch`` row."""
    groups, Kg, R = acc.shape[1], acc.shape[2], acc.shape[3]
    M = g.shape[2]
    for i in prange(parts.shape[0]):
        n0, n1 = parts[i, 0], parts[i, 1]
        cols = (n1 - n0) * M
        t = get_thread_id()
        row = colbuf[t] if per_thread else colbuf[i]
        col = row[coff : coff + groups * R * cols].reshape((groups, R, cols))
        if transposed:
            gk = scratch[t, : cols * Kg].reshape((cols, Kg))
            acct = scratch[t, cols * Kg : (cols + R) * Kg].reshape((R, Kg))
        else:
            gk = scratch[t, : Kg * cols].reshape((Kg, cols))
            acct = scratch[t, :0].reshape((0, Kg))
        _weight_chunk(xp, g, acc[i], n0, n1, kshape, stride, dilation, oshape, before, col,
                      gk, acct, gathered)


def _round16(n: int) -> int:
    """``n`` rounded up to 16 elements (64 bytes of float32): scratch parts stay aligned."""
    return -(-n // 16) * 16


def _kept_blocks(saved: list, parts, groups: int, R: int, M: int, dtype) -> np.ndarray:
    """The ``(chunks, groups * R * B * M)`` array of a layer's kept ``col`` blocks
    (``saved[0]``; allocated again when the shapes change), chunk ``i``'s block at the
    start of row ``i``."""
    shape = (len(parts), groups * R * max(n1 - n0 for n0, n1 in parts) * M)
    if len(saved) != 1 or saved[0].shape != shape or saved[0].dtype != dtype:
        saved[:] = [np.empty(shape, dtype)]
    return saved[0]


def _block_views(buf, parts, groups: int, R: int, M: int) -> list:
    """Chunk ``i``'s ``(groups, R, (n1 - n0) * M)`` block of kept blocks ``buf``."""
    return [buf[i, : groups * R * (n1 - n0) * M].reshape(groups, R, (n1 - n0) * M)
            for i, (n0, n1) in enumerate(parts)]


def _geometry(w_shape, stride, dilation, oshape):
    ints = lambda v: tuple(int(i) for i in v)  # noqa: E731 - Numba types them as UniTuples
    return ints(w_shape[2:]), ints(stride), ints(dilation), ints(oshape)


def _gather_stride(st, dil):
    """:func:`_gather`'s ``stride``: None for unit stride and dilation (a first call then
    compiles only the unit-stride gather: about half of its cold compile)."""
    return None if st == (1, 1, 1) and dil == (1, 1, 1) else st


_LOCAL = threading.local()


class _ThreadBlocks:
    """``blocks[i]``: a scratch array of ``shapes[i]`` for task ``i``, the calling thread's
    own (one flat buffer per tag, grown as needed and reused call after call). The tasks
    a thread runs one after another share it, so a chunk's block is still in the cache
    when the next chunk is gathered into it: per-chunk blocks of a whole batch (LeNet's
    first layer: 22 blocks, 5 MB of ``col``) were written once and never reread while
    cached."""

    def __init__(self, tag: str, shapes: list, dtype):
        self.tag, self.shapes, self.dtype = tag, shapes, np.dtype(dtype)

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, i: int) -> np.ndarray:
        bufs = getattr(_LOCAL, "blocks", None)
        if bufs is None:
            bufs = _LOCAL.blocks = {}
        shape = self.shapes[i]
        n = math.prod(shape)
        key = (self.tag, self.dtype.str)
        buf = bufs.get(key)
        if buf is None or buf.size < n:
            buf = bufs[key] = np.empty(n, self.dtype)
        return buf[:n].reshape(shape)


def correlate(xp, w, bias, out, stride, dilation, groups, before=(0, 0, 0), saved=None):
    """Forward correlation, same arguments and result as
    :func:`fastconv.cpu.conv.correlate` (5-D arrays; ``xp`` padded, or unpadded with its
    zero padding read in place when ``before`` gives the leading padding per axis).
    ``saved``, a list, receives the chunks' ``col`` blocks for :func:`weight_gradient`'s
    ``cols`` (a layer's saved state: the backward pass need not gather them again); blocks
    of the right shapes already in it are reused."""
    N = xp.shape[0]
    K, Cg = w.shape[:2]
    kshape, st, dil, oshape = _geometry(w.shape, stride, dilation, out.shape[2:])
    st = _gather_stride(st, dil)
    R = Cg * math.prod(kshape)
    M = math.prod(oshape)
    Kg = K // groups
    wm = np.ascontiguousarray(w.reshape(groups, Kg, R))
    b = np.ascontiguousarray(bias, dtype=out.dtype)
    out3 = out.reshape(N, K, M)
    bf = tuple(int(v) for v in before)
    parts = chunks(N, M)
    col_shapes = [(groups, R, (n1 - n0) * M) for n0, n1 in parts]
    if saved is None:
        kept = None
        cols = _ThreadBlocks("col", col_shapes, out.dtype)
    else:
        kept = _kept_blocks(saved, parts, groups, R, M, out.dtype)
        cols = _block_views(kept, parts, groups, R, M)
    ys = _ThreadBlocks("y", [(Kg, (n1 - n0) * M) for n0, n1 in parts], out.dtype)

    itemsize = out.dtype.itemsize
    blas_ok = blas.available() and out.dtype in (np.float32, np.float64)
    large = blas_ok and Kg * R * (parts[0][1] - parts[0][0]) * M >= SMALL_GEMM_MACS
    n0, n1 = parts[0]

    def region(nthreads=None):  # the compiled form's parallel region: its arguments
        per_thread = kept is None
        need = _round16(Kg * max(n1 - n0 for n0, n1 in parts) * M)
        block = math.prod(col_shapes[0])  # the first chunk is the largest
        scratch = gemm.scratch_rows(need + (block if per_thread else 0), out.dtype, nthreads)
        return (xp, wm, b, out3, np.array(parts, dtype=np.int64), kshape, st, dil, oshape,
                bf, scratch if per_thread else kept, need if per_thread else 0, per_thread,
                scratch)

    def single():  # one chunk: its kernel on the calling thread, as the region's iteration
        # 0 would run it (a fresh process's first small call then starts no thread pool)
        args = region(nthreads=1)
        colbuf, coff, scratch, cols_n = args[10], args[11], args[13], (n1 - n0) * M
        col = colbuf[0][coff:coff + groups * R * cols_n].reshape((groups, R, cols_n))
        y = scratch[0, :Kg * cols_n].reshape((Kg, cols_n))
        return (xp, wm, b, out3, n0, n1, kshape, st, dil, oshape, bf, col, y, False)

    def kernels():  # what the compiled form calls (the first chunk's arguments)
        if large:
            return [(_gather, (xp, n0, n1, 0, kshape, st, dil, oshape, bf, cols[0][0])),
                    (_bias_rows, (ys[0], b, out3, n0, n1, 0))]
        return [(_forward_chunk, single()) if len(parts) == 1 else (_forward_chunks, region())]

    # (Numba's np.dot multiplies a single row or column by gemv or dot, not gemm: those
    # shapes, off the "auto" rule's path, keep the kernels; the last chunk is the smallest)
    numpy_form = blas_ok and (large or (Kg > 1 and (parts[-1][1] - parts[-1][0]) * M > 1))
    if numpy_form and not _compiled((large, st is None), (xp, wm, b, out3), kernels):
        _numpy_forward(xp, wm, b, out3, parts, kshape, st, dil, oshape, bf, cols, ys, large)
        return out
    if large:
        gemms = {B: blas.Gemm(out.dtype, Kg, B * M, R, R, B * M, B * M)
                 for B in {n1 - n0 for n0, n1 in parts}}
        wa = blas.address(wm)

        def task(i):  # gather, NumPy's BLAS product, bias: three GIL-free calls
            n0, n1 = parts[i]
            col, y = cols[i], ys[i]
            ca, ya = blas.address(col), blas.address(y)
            gemm = gemms[n1 - n0]
            for g in range(groups):
                _gather(xp, n0, n1, g * Cg, kshape, st, dil, oshape, bf, col[g])
                gemm(wa + g * Kg * R * itemsize, ca + g * R * col.shape[2] * itemsize, ya,
                     False)
                _bias_rows(y, b, out3, n0, n1, g * Kg)
    else:  # one parallel region (Numba's workers spin between regions: bursts of calls,
        # as a training step's, scale; no Python between a chunk's calls)
        with blas.single_threaded_blas(), np.errstate(invalid="ignore", over="ignore"):
            if len(parts) == 1:
                _forward_chunk(*single())
            else:
                _forward_chunks(*region())
        return out

    with np.errstate(invalid="ignore", over="ignore"):
        blas.parallel(task, len(parts))
    return out


# --- the first calls in a process whose kernel cache is cold ---------------------------

#: Seconds of forward work in the NumPy form (below) after which a process compiles the
#: forward kernels: with a cold kernel cache the first calls (a script's one layer, the
#: README's set-up example) answer without the ~4 s compile of ``_forward_chunk`` (or
#: ``_gather`` and ``_bias_rows``), and a training loop compiles once the NumPy form has
#: cost a second. The NumPy form takes 1.4-2.3x the kernels' time (the gather is a strided
#: NumPy copy, a chunk's steps are separate calls): LeNet's layers at batch 64 2.2 / 1.7
#: ms against 0.9 / 1.2 ms, the set-up shape 0.14 against 0.06 ms (one thread, CPU time,
#: loaded EPYC, 2026-12-02). ``fastconv warmup`` compiles the kernels ahead of use.
SMALL_NUMPY_SECONDS = 1.0

#: Which form the forward runs: None (the compiled kernels when they are compiled in this
#: process or in the on-disk cache, else the NumPy form until ``SMALL_NUMPY_SECONDS``),
#: True (the kernels: ``fastconv warmup``), False (the NumPy form: tests).
KERNELS: bool | None = None

_TIER = {"seconds": 0.0, "ready": {}}


def _compiled(key: tuple, arrays: tuple, kernels) -> bool:
    """Whether the forward runs its compiled kernels (``KERNELS``). ``kernels()`` lists
    them with their first chunk's arguments; ``key`` and the ``arrays`` among those
    arguments (by type, dtype, layout and writeability) stand for their Numba signature,
    which costs ~100 us to work out (the key ~1 us): the answer is kept per key."""
    if KERNELS is not None:
        return KERNELS
    if _TIER["seconds"] >= SMALL_NUMPY_SECONDS:
        return True
    key += tuple((type(a), a.dtype, a.flags.num & _LAYOUT_FLAGS) for a in arrays)
    ready = _TIER["ready"].get(key)
    if ready is None:
        ready = _TIER["ready"][key] = all(_compiled_or_cached(d, a) for d, a in kernels())
    return ready


def _compiled_or_cached(dispatcher, args) -> bool:
    """Whether ``dispatcher(*args)`` runs without compiling: its signature is compiled in
    this process, or in the on-disk cache (the call then loads it; an entry compiled for
    another CPU counts too, and the call compiles). Reads the cache's index only: neither
    Numba's target nor its compiler start. True for a plain function
    (``NUMBA_DISABLE_JIT``)."""
    overloads = getattr(dispatcher, "overloads", None)
    if overloads is None:
        return True
    sig = tuple(dispatcher.typeof_pyval(a) for a in args)
    if sig in overloads:
        return True
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    if cache_file is None:
        return False
    try:
        return any(key[0] == sig for key in cache_file._load_index())
    except Exception:  # an unreadable index: as if absent (the call would compile)
        return False


#: NumPy's C_CONTIGUOUS, F_CONTIGUOUS, ALIGNED and WRITEABLE flag bits (``flags.num``):
#: what Numba's array type holds besides dtype and rank.
_LAYOUT_FLAGS = 0x1 | 0x2 | 0x100 | 0x400


def _gather_numpy(xp, n0, n1, c0, Cg, kshape, stride, dilation, oshape, before, col):
    """:func:`_gather` by NumPy, the same copies (so the same ``col``): the images
    ``[n0, n1)``, channels ``[c0, c0 + Cg)`` of ``xp`` (zero-padded in a copy where the
    receptive fields pass its edges) viewed as ``(Cg, KD, KH, KW, n1 - n0, OD, OH, OW)``
    and copied into ``col`` in one call. ``stride`` None: unit stride."""
    x = xp[n0:n1, c0 : c0 + Cg]
    st = stride if stride is not None else (1, 1, 1)
    reach = tuple((o - 1) * s + (k - 1) * d + 1
                  for o, s, k, d in zip(oshape, st, kshape, dilation, strict=True))
    if any(before) or any(r > n for r, n in zip(reach, x.shape[2:], strict=True)):
        xs = np.zeros(x.shape[:2] + reach, x.dtype)
        src = [slice(max(0, -b), max(0, -b, min(n, r - b)))
               for b, n, r in zip(before, x.shape[2:], reach, strict=True)]
        dst = [slice(s.start + b, s.stop + b) for s, b in zip(src, before, strict=True)]
        xs[(..., *dst)] = x[(..., *src)]
        x = xs
    sn, sc, sd, sh, sw = x.strides
    steps = (sd, sh, sw)
    view = np.lib.stride_tricks.as_strided(
        x, (Cg, *kshape, n1 - n0, *oshape),
        (sc, *(a * d for a, d in zip(steps, dilation, strict=True)), sn,
         *(a * s for a, s in zip(steps, st, strict=True))), writeable=False)
    col.reshape(view.shape)[...] = view


def _numpy_forward(xp, wm, b, out3, parts, kshape, st, dil, oshape, before, cols, ys, large):
    """The forward's NumPy form (no compile), the same operations in the same order as
    the kernels: per chunk and group the gather (:func:`_gather_numpy`), the product by
    the BLAS call that the kernels make (NumPy's, ``blas.Gemm``, for ``large`` products;
    else SciPy's, the call inside Numba's ``np.dot``) and the bias, one rounding each,
    so the same bits."""
    groups, Kg, R = wm.shape
    Cg = R // math.prod(kshape)
    M = out3.shape[2]
    itemsize = out3.dtype.itemsize
    gemms = {B: blas.Gemm(out3.dtype, Kg, B * M, R, R, B * M, B * M, scipy=not large)
             for B in {n1 - n0 for n0, n1 in parts}}
    wa = blas.address(wm)

    def task(i):
        n0, n1 = parts[i]
        col, y = cols[i], ys[i]
        ca, ya = blas.address(col), blas.address(y)
        gemm = gemms[n1 - n0]
        for g in range(groups):
            _gather_numpy(xp, n0, n1, g * Cg, Cg, kshape, st, dil, oshape, before, col[g])
            gemm(wa + g * Kg * R * itemsize, ca + g * R * col.shape[2] * itemsize, ya, False)
            np.add(y.reshape(Kg, n1 - n0, M).transpose(1, 0, 2), b[g * Kg : (g + 1) * Kg, None],
                   out=out3[n0:n1, g * Kg : (g + 1) * Kg])

    t0 = time.perf_counter()
    with np.errstate(invalid="ignore", over="ignore"):
        blas.parallel(task, len(parts))
    _TIER["seconds"] += time.perf_counter() - t0


def zero_padding_core(pads):
    """:func:`correlate` reading the zero padding ``pads`` (3 ``(before, after)`` pairs) in
    place: the core is given the unpadded input."""
    before = tuple(int(b) for b, _ in pads)

    def core(x, w, bias, out, stride, dilation, groups):
        return correlate(x, w, bias, out, stride, dilation, groups, before)

    core.small_before = before  # marks the small-image core (layers keep its col blocks)
    return core


def input_gradient(g, w, bias, out, stride, dilation, before, groups):
    """``out[n, c, i] = bias[c] + sum_{k, r, o : o*stride + r*dilation == i + before}
    g[n, k, o] * w[k, c - group(k)*Cg, r]``: the input gradient of a zero-padded
    correlation (or a transposed convolution) by ``col2im``. ``g`` is ``(N, K, OD, OH,
    OW)``, ``w`` the forward weight ``(K, Cg, KD, KH, KW)``, ``out`` ``(N, C, D, H, W)``;
    ``stride``, ``dilation`` and ``before`` (the forward's leading padding) are per-axis
    triples."""
    N, K = g.shape[:2]
    Cg = w.shape[1]
    C = out.shape[1]
    kshape, st, dil, oshape = _geometry(w.shape, stride, dilation, g.shape[2:])
    R = Cg * math.prod(kshape)
    M = math.prod(oshape)
    Kg = K // groups
    wt = np.ascontiguousarray(w.reshape(groups, Kg, R).transpose(0, 2, 1))
    g3 = np.ascontiguousarray(g, dtype=out.dtype).reshape(N, K, M)
    b = np.ascontiguousarray(bias, dtype=out.dtype)
    bf = tuple(int(v) for v in before)
    # the padded grid: the input plus its leading padding, long enough for every tap
    grid = tuple(max(bf[i] + out.shape[2 + i], (oshape[i] - 1) * st[i] + (kshape[i] - 1)
                     * dil[i] + 1) for i in range(3))
    parts = chunks(N, M)
    gps = _ThreadBlocks("gp", [(C,) + grid] * len(parts), out.dtype)
    gks = _ThreadBlocks("gk", [(Kg, (n1 - n0) * M) for n0, n1 in parts], out.dtype)
    dcols = _ThreadBlocks("dcol", [(R, (n1 - n0) * M) for n0, n1 in parts], out.dtype)

    def task(i):
        _input_chunk(g3, wt, b, out, *parts[i], kshape, st, dil, oshape, bf, gps[i],
                     gks[i], dcols[i])

    with np.errstate(invalid="ignore", over="ignore"):
        blas.parallel(task, len(parts))
    return out


def weight_gradient(xp, g, gw, stride, dilation, groups, before=(0, 0, 0), cols=None):
    """gw[k, c, r] = sum_{n, o} g[n, k, o] * xp[n, group(k)*Cg + c, o*stride + r*dilation]
    (same arguments as ``fastconv.cpu.grad.correlate_weight_direct``; ``xp`` padded, or
    unpadded with its zero padding read in place when ``before`` gives the leading padding
    per axis). The chunks' products are added in order. ``cols``: the blocks
    :func:`correlate` saved for this input and geometry (not gathered again)."""
    N = xp.shape[0]
    K, Cg = gw.shape[:2]
    kshape, st, dil, oshape = _geometry(gw.shape, stride, dilation, g.shape[2:])
    st = _gather_stride(st, dil)
    R = Cg * math.prod(kshape)
    M = math.prod(oshape)
    Kg = K // groups
    g3 = np.ascontiguousarray(g, dtype=gw.dtype).reshape(N, K, M)
    bf = tuple(int(v) for v in before)
    parts = chunks(N, M)
    block = groups * R * max(n1 - n0 for n0, n1 in parts) * M
    gathered = (cols is not None and len(cols) == 1 and cols[0].dtype == gw.dtype
                and cols[0].shape == (len(parts), block))
    transposed = R >= SMALL_DW_TRANSPOSED_R
    need = _round16(Kg * (max(n1 - n0 for n0, n1 in parts) * M + (R if transposed else 0)))
    scratch = gemm.scratch_rows(need + (0 if gathered else block), gw.dtype)
    acc = np.empty((len(parts), groups, Kg, R), dtype=gw.dtype)
    with blas.single_threaded_blas(), np.errstate(invalid="ignore", over="ignore"):
        _weight_chunks(xp, g3, acc, np.array(parts, dtype=np.int64), kshape, st, dil, oshape,
                       bf, cols[0] if gathered else scratch, 0 if gathered else need,
                       not gathered, scratch, transposed, gathered)
    total = acc[0]
    for j in range(1, len(parts)):  # in order: the same sum for any thread count
        total += acc[j]
    gw[...] = total.reshape(gw.shape)
    return gw


# --- max pooling with non-overlapping windows, for MaxPool2d layers --------------------

#: Planes per task of the pooling kernels, at least (a function of the shapes only: the
#: same tasks for any thread count).
POOL_BLOCK = 64
#: Input elements per pooling task, at least: small planes go in larger blocks (each task
#: is one Numba call, ~5-10 us of dispatch: LeNet's second pooling, 1024 planes of 10x10,
#: ran 16 tasks in 0.19 ms per backward call, one thread).
POOL_TASK_ELEMENTS = 1 << 15
#: Most input elements of a pooling call that runs on the calling thread as one task
#: (no fastconv threads): below it the worker threads' wake-up and the tasks' join cost
#: more than the second thread saves on a memory-bound pass (LeNet's poolings, 301k and
#: 102k elements: 0.51 ms for the second one's backward on 2 threads against 0.06 ms
#: inline, bench/RESULTS.md 2026-12-02 14:xx). The values are the same whatever the split:
#: pooling only moves them.
POOL_INLINE_ELEMENTS = 1 << 19


def _plane_blocks(P: int, plane: int) -> list:
    """``[(p0, p1), ...]``: ``P`` planes of ``plane`` elements in blocks of at least
    ``POOL_BLOCK`` planes and ``POOL_TASK_ELEMENTS`` elements; one block (run inline) up
    to ``POOL_INLINE_ELEMENTS`` elements."""
    if P * plane <= POOL_INLINE_ELEMENTS:
        return [(0, P)]
    B = max(POOL_BLOCK, -(-POOL_TASK_ELEMENTS // max(plane, 1)))
    return [(p, min(P, p + B)) for p in range(0, P, B)]


def _run_blocks(kernel, blocks) -> None:
    """``kernel(p0, p1)`` for every block: inline for one block, else as tasks on the
    fastconv threads."""
    if len(blocks) == 1:
        kernel(*blocks[0])
    else:
        blas.parallel(lambda i: kernel(*blocks[i]), len(blocks))


@njit(**JIT_SERIAL)
def _pool_block(x, out, code, p0, p1, kh, kw):
    """out[p, oh, ow] = max of the window ``x[p, oh*kh : oh*kh + kh, ow*kw : ow*kw + kw]``
    and code[p, oh, ow] = its position ``a*kw + e`` in the window: the first maximum in
    row-major order, a NaN always winning (the last one; PyTorch's rule)."""
    if kh == 2 and kw == 2:
        _pool_block_2x2(x, out, code, p0, p1)
        return
    OH, OW = out.shape[1], out.shape[2]
    for p in range(p0, p1):
        for oh in range(OH):
            orow, crow = out[p, oh], code[p, oh]
            r0 = x[p, oh * kh]
            for ow in range(OW):
                orow[ow] = r0[ow * kw]
                crow[ow] = 0
            for a in range(kh):
                row = x[p, oh * kh + a]
                for e in range(kw):
                    if a == 0 and e == 0:
                        continue
                    j = a * kw + e
                    for ow in range(OW):
                        v, m = row[ow * kw + e], orow[ow]
                        if v > m or v != v:
                            orow[ow] = v
                            crow[ow] = j


@njit(**JIT_SERIAL)
def _pool_block_2x2(x, out, code, p0, p1):
    """:func:`_pool_block` for 2x2 windows, the same comparisons in the same order on
    scalars, each output written once (0.26 against 1.34 ms for LeNet's first pooling,
    64 x 6 planes of 28 x 28, one thread)."""
    OH, OW = out.shape[1], out.shape[2]
    for p in range(p0, p1):
        for oh in range(OH):
            orow, crow = out[p, oh], code[p, oh]
            r0, r1 = x[p, 2 * oh], x[p, 2 * oh + 1]
            for ow in range(OW):
                m, c = r0[2 * ow], 0
                v = r0[2 * ow + 1]
                if v > m or v != v:
                    m, c = v, 1
                v = r1[2 * ow]
                if v > m or v != v:
                    m, c = v, 2
                v = r1[2 * ow + 1]
                if v > m or v != v:
                    m, c = v, 3
                orow[ow] = m
                crow[ow] = c


@njit(**JIT_SERIAL)
def _unpool_block(g, code, gx, p0, p1, kh, kw):
    """gx[p] = 0, then g[p, oh, ow] at the window position code[p, oh, ow]."""
    OH, OW = g.shape[1], g.shape[2]
    if kh == 2 and kw == 2:
        _unpool_block_2x2(g, code, gx, p0, p1)
        return
    for p in range(p0, p1):
        gx[p] = 0
        for oh in range(OH):
            for ow in range(OW):
                j = code[p, oh, ow]
                gx[p, oh * kh + j // kw, ow * kw + j % kw] = g[p, oh, ow]


@njit(**JIT_SERIAL)
def _unpool_block_2x2(g, code, gx, p0, p1):
    """:func:`_unpool_block` for 2x2 windows: the plane zeroed, then each gradient
    stored at ``(2*oh + j // 2, 2*ow + j % 2)`` by shifts and masks (no integer division
    by a run-time window size, no data-dependent branch): the same values."""
    OH, OW = g.shape[1], g.shape[2]
    z = gx.dtype.type(0)
    for p in range(p0, p1):
        plane = gx[p]
        for h in range(plane.shape[0]):
            row = plane[h]
            for w in range(row.shape[0]):
                row[w] = z
        for oh in range(OH):
            grow, crow = g[p, oh], code[p, oh]
            for ow in range(OW):
                j = np.int64(crow[ow])
                plane[2 * oh + (j >> 1), 2 * ow + (j & 1)] = grow[ow]


def max_pool_windows(x, kh: int, kw: int):
    """``(out, code)``: 2-D max pooling of ``x`` ``(P, H, W)`` over non-overlapping
    ``kh x kw`` windows (stride = window, no padding, floor), with each maximum's position
    in its window for :func:`max_pool_windows_backward` (uint8)."""
    P, H, W = x.shape
    out = np.empty((P, H // kh, W // kw), dtype=x.dtype)
    code = np.empty(out.shape, dtype=np.uint8)
    _run_blocks(lambda p0, p1: _pool_block(x, out, code, p0, p1, kh, kw),
                _plane_blocks(P, H * W))
    return out, code


def max_pool_windows_backward(g, code, shape, kh: int, kw: int):
    """The gradient of :func:`max_pool_windows` w.r.t. its input of ``shape`` ``(P, H, W)``:
    each ``g`` value at its window's maximum, zeros elsewhere."""
    gx = np.empty(shape, dtype=g.dtype)
    _run_blocks(lambda p0, p1: _unpool_block(g, code, gx, p0, p1, kh, kw),
                _plane_blocks(shape[0], shape[1] * shape[2]))
    return gx
