"""Correlation as matrix products on a BLAS ``gemm``.

**Shifted GEMM** (stride 1, SciPy's BLAS; see ``fastconv.cpu.blas``): no ``im2col``. The
padded input planes are flat rows of pitch ``P = Dp*Hp*Wp``; the output is computed on the
input's grid (pitch ``Hp*Wp`` per depth slice, ``Wp`` per row) and its garbage columns
(``ow >= OW``, ``oh >= OH``) are dropped afterwards. For each image ``n``, group ``g`` and
kernel tap ``t = (a, b, e)`` with ``off_t = a*dd*Hp*Wp + b*dh*Wp + e*dw``::

    Y[n, g] (Kg x L) += W_t[g] (Kg x Cg) @ Xflat[n, g, :, off_t : off_t + L]   (ld = P)

with ``L = (OD-1)*Hp*Wp + (OH-1)*Wp + OW``: one strided BLAS call per tap, ``beta = 1``
after the first. The columns are split into chunks of ``GEMM_CHUNK_BYTES`` of output so a
chunk's accumulator stays in the L2 cache across the taps.

**im2col** (stride > 1, or without SciPy): for each image ``n`` and group ``g``::

    out[n, g*Kg:(g+1)*Kg].reshape(Kg, L) = W_g (Kg x R) @ col (R x L)

with ``R = Cg * KD * KH * KW`` (the receptive field of one output) and ``L = OD * OH * OW``.
``col[(c, a, b, e), (od, oh, ow)] = xp[n, g*Cg + c, od*sd + a*dd, oh*sh + b*dh, ow*sw + e*dw]``
is gathered by a parallel Numba kernel. The bias rides in the product as an extra row of
ones in ``col``. A 1x1, stride-1 correlation of an unpadded input needs no ``col`` at all.

Threads: the shifted products run as independent tasks (image, group, column chunk), the
iterations of one Numba parallel region (:func:`shifted_tasks`; each in its thread's row
of a scratch buffer, the BLAS single-threaded and called through its function pointer);
the im2col and folded tasks run on ``blas.parallel``'s Python threads. A parallel region
never calls a threaded BLAS, so the cores are never oversubscribed, and each output
element is computed by one fixed sequence of calls, whatever the thread count.
"""

from __future__ import annotations

import threading

import numba
import numpy as np
from numba import get_thread_id, njit, prange

from fastconv._config import (
    GEMM_CHUNK_BYTES,
    GEMM_COL_BYTES,
    GEMM_COL_CHUNK_BYTES,
    JIT_PARALLEL,
    JIT_SERIAL,
)
from fastconv._config import GEMM_MIN_CHUNK_COLUMNS as MIN_CHUNK_COLUMNS
from fastconv._config import GEMM_SHIFTED_MIN_CG as SHIFTED_MIN_CG
from fastconv.cpu import blas, microkernel
from fastconv.cpu.microkernel import (
    vfma,
    vload,
    vsplat_at,
    vstore,
    vstore_nt,
    vstore_nt64,
    vzero,
)
from fastconv.cpu.pad import MODE_CODES, pad, source_index


@njit(**JIT_PARALLEL)
def im2col(xp, n0, c0, kshape, stride, dilation, oshape, col):
    """col[i, (c, a, b, e), (od, oh, ow)] =
    xp[n0 + i, c0 + c, od*sd + a*dd, oh*sh + b*dh, ow*sw + e*dw]."""
    nb, R, L = col.shape
    KD, KH, KW = kshape[0], kshape[1], kshape[2]
    OD, OH, OW = oshape[0], oshape[1], oshape[2]
    sd, sh, sw = stride[0], stride[1], stride[2]
    dd, dh, dw = dilation[0], dilation[1], dilation[2]
    taps = KD * KH * KW
    for t in prange(nb * R * OD):
        od = t % OD
        q = t // OD
        r = q % R
        i = q // R
        c = r // taps
        tap = r % taps
        a = tap // (KH * KW)
        b = (tap // KW) % KH
        e = tap % KW
        dst = col[i, r]
        for oh in range(OH):
            src = xp[n0 + i, c0 + c, od * sd + a * dd, oh * sh + b * dh]
            base = (od * OH + oh) * OW
            if sw == 1:
                dst[base : base + OW] = src[e * dw : e * dw + OW]
            else:
                for ow in range(OW):
                    dst[base + ow] = src[e * dw + ow * sw]


def correlate(xp, w, bias, out, stride, dilation, groups):
    """out[n, k, o] = bias[k] + sum_{c in group(k), r} xp[n, c, o*stride + r*dilation] * w[k, c, r].

    Same arguments and result as :func:`fastconv.cpu.conv.correlate` (``xp`` padded,
    5-D arrays, ``bias`` with K entries).
    """
    # NaN/Inf propagate silently (inf * 0 -> NaN), as in the direct core: no RuntimeWarning
    with np.errstate(invalid="ignore", over="ignore"):
        if shifted_ok(stride) and w.shape[1] >= SHIFTED_MIN_CG:
            return shifted(xp, w, bias, out, dilation, groups)
        if blas.available():
            return im2col_tasks(xp, w, bias, out, stride, dilation, groups)
        return _im2col_correlate(xp, w, bias, out, stride, dilation, groups)


def padding_core(pads, mode):
    """:func:`correlate` for an input padded by ``pads`` (three (before, after) pairs) in
    ``mode``: the padded copy is one Numba parallel region (``fastconv.cpu.pad.pad``), as
    the shifted products are (on 2 vCPUs, Python worker threads woken after idle time did
    not scale; 2026-12-02)."""

    def core(x, w, bias, out, stride, dilation, groups):
        if folded_ok(x.shape, w.shape, stride):
            return folded(x, w, bias, out, stride, dilation, groups, pads, mode)
        return correlate(pad(x, pads, mode), w, bias, out, stride, dilation, groups)

    return core


def folded_ok(x_shape, w_shape, stride) -> bool:
    """Whether :func:`folded` runs a correlation (given the unpadded input's shape): 1-D
    layers (C1, 8x64x4096 k5: CPU time 21.6 ms vs the shifted GEMM's 23.4, 1 thread
    85 vs 108 ms, no padded copy and no crop of garbage columns)."""
    return blas.available() and x_shape[2] * x_shape[3] * w_shape[2] * w_shape[3] == 1


def shifted_ok(stride) -> bool:
    """Whether the shifted GEMM applies: unit strides and a BLAS with strided gemm."""
    return all(int(s) == 1 for s in stride) and blas.available()


@njit(**JIT_SERIAL)
def crop_rows(y, bias, out, r0, r1, Hp, Wp):
    """out[k, d, h, :] = y[k, (r - r0)*Wp : (r - r0)*Wp + OW] + bias[k] for the pitch rows
    ``r = d*Hp + h`` in ``[r0, r1)`` with ``h < OH`` (the others are garbage rows).
    ``y`` is ``(Kg, (r1 - r0) * Wp)``, ``out`` one image's ``(Kg, OD, OH, OW)`` block."""
    Kg, OD, OH, OW = out.shape
    for k in range(Kg):
        bk = bias[k]
        yk = y[k]
        for d in range(r0 // Hp, (r1 - 1) // Hp + 1):  # the valid rows of each depth slice
            for h in range(max(r0 - d * Hp, 0), min(r1 - d * Hp, OH)):
                o = (d * Hp + h - r0) * Wp
                src = yk[o : o + OW]
                dst = out[k, d, h]
                for i in range(OW):
                    dst[i] = src[i] + bk


_scratch = threading.local()


def _buffer(nbytes: int) -> np.ndarray:
    """A per-thread scratch byte buffer of at least ``nbytes`` (reused across calls), its
    size a multiple of 64 bytes so that it views as any dtype (a float32 call's buffer
    is reused by a float64 call)."""
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.size < nbytes:
        buf = _scratch.buf = np.empty(max(-(-nbytes // 64) * 64, 1 << 16), dtype=np.uint8)
    return buf


def _row_chunks(nrows: int, Wp: int, rows_out: int, itemsize: int):
    """(first, stop) pitch-row chunks of at most GEMM_CHUNK_BYTES of ``rows_out`` outputs."""
    cols = max(MIN_CHUNK_COLUMNS, GEMM_CHUNK_BYTES // max(1, rows_out * itemsize))
    step = max(1, cols // Wp)
    return [(r, min(nrows, r + step)) for r in range(0, nrows, step)]


def scratch_rows(need: int, dtype, nthreads: int | None = None) -> np.ndarray:
    """``(numba.get_num_threads(), need)`` elements of ``dtype`` from the calling thread's
    :func:`_buffer`, each row 64-byte aligned: the per-thread scratch of one parallel
    region (an iteration works in ``scratch[numba.get_thread_id()]``); ``nthreads`` rows
    instead for a caller that runs no region (asking the thread count starts Numba's
    thread pool)."""
    dtype = np.dtype(dtype)
    nthreads = numba.get_num_threads() if nthreads is None else nthreads
    row = max(16, -(-need // 16) * 16)  # elements: 64 bytes at float32
    nbytes = nthreads * row * dtype.itemsize
    buf = _buffer(nbytes + 64)
    off = -buf.ctypes.data % 64
    return buf[off : off + nbytes].view(dtype).reshape(nthreads, row)


@njit(**JIT_PARALLEL)
def shifted_tasks(xp, wt, out, bias_g, chunks, offs, gemm, args, Hp, Wp, L, in_place,
                  add_bias, scratch):
    """Every (image, group, chunk of pitch rows) task of :func:`shifted` as one iteration of
    one parallel region (single-threaded BLAS through the pointer ``gemm``; ``args`` rows:
    :func:`fastconv.cpu.blas.numba_call` with ``beta_one``, one per product shape). ``xp`` is
    ``(N, C, P)``, ``wt`` ``(taps, K, Cg)``, ``out`` ``(N, groups, Kg, OD, OH, OW)``;
    ``chunks`` rows are (first pitch row, stop, ``args`` row), ``offs`` the taps' column
    offsets. In place, the products land in ``out``'s own rows (then ``bias_g`` is added
    if ``add_bias``), else in the running thread's scratch row, cropped into ``out`` with
    the bias. Results do not depend on which thread runs an iteration."""
    N, C, P = xp.shape
    taps, K, Cg = wt.shape
    groups, Kg = out.shape[1], out.shape[2]
    M = out.shape[3] * out.shape[4] * out.shape[5]
    nchunks = chunks.shape[0]
    s = xp.itemsize
    xa, wa = xp.ctypes.data, wt.ctypes.data
    for i in prange(N * groups * nchunks):
        c = i % nchunks
        g = (i // nchunks) % groups
        n = i // (nchunks * groups)
        r0, r1, a = chunks[c, 0], chunks[c, 1], args[chunks[c, 2]]
        l0 = r0 * Wp
        lc = min(r1 * Wp, L) - l0
        ldc = (r1 - r0) * Wp
        blk = out[n, g]
        y = scratch[get_thread_id(), : Kg * ldc].reshape((Kg, ldc))
        c0 = blk.ctypes.data + np.uint64(l0 * s) if in_place else y.ctypes.data
        b0 = xa + np.uint64(((n * C + g * Cg) * P + l0) * s)
        for t in range(taps):
            gemm(a[0], a[1], a[2], a[3], a[4], a[5], b0 + np.uint64(offs[t] * s), a[6],
                 wa + np.uint64((t * K + g * Kg) * Cg * s), a[7], a[8] if t == 0 else a[10],
                 c0, a[9])
        if not in_place:
            crop_rows(y, bias_g[g], blk, r0, r1, Hp, Wp)
        elif add_bias:  # while the block is in L2 (the same rounding as a pass over out)
            rows = blk.reshape((Kg, M))
            for k in range(Kg):
                bk = bias_g[g, k]
                dst = rows[k, l0 : l0 + lc]
                for j in range(lc):
                    dst[j] = dst[j] + bk


def shifted(xp, w, bias, out, dilation, groups):
    """Stride-1 correlation as one strided GEMM per kernel tap (module docstring).

    Tasks are (image, group, chunk of pitch rows), the iterations of one Numba parallel
    region (:func:`shifted_tasks`); a task multiplies into its thread's scratch
    (``Kg x rows*Wp``, L2-sized) and crops the valid rows into ``out`` with the bias, so
    there is no full-size intermediate. A parallel region, not
    :func:`fastconv.cpu.blas.parallel`'s Python threads: Numba's OpenMP workers spin
    between regions, so 2 threads scale when calls come in short bursts after idle time
    (W6, 2026-12-02), and no Python runs between a task's BLAS calls.
    """
    if not out.flags.c_contiguous:  # (one compiled signature; the same bits)
        res = shifted(xp, w, bias, np.empty(out.shape, dtype=out.dtype), dilation, groups)
        out[...] = res
        return out
    xp = np.ascontiguousarray(xp)
    N, C, Dp, Hp, Wp = xp.shape
    K, Cg, KD, KH, KW = w.shape
    OD, OH, OW = out.shape[2:]
    Kg = K // groups
    dd, dh, dw = (int(v) for v in dilation)
    P = Dp * Hp * Wp
    L = (OD - 1) * Hp * Wp + (OH - 1) * Wp + OW
    nrows = (OD - 1) * Hp + OH  # pitch rows holding outputs (the last one partly)
    taps = KD * KH * KW
    in_place = OH == Hp and OW == Wp  # no garbage columns
    if (taps == 1 and N * groups >= 4 and in_place and OD == Dp
            and pointwise_ok(xp.dtype, Kg, P)):  # first: little Python before the kernel
        return pointwise(xp, w, bias, out, groups)
    wt = np.ascontiguousarray(w.reshape(K, Cg, taps).transpose(2, 0, 1))  # (taps, K, Cg)
    offs = np.array([a * dd * Hp * Wp + b * dh * Wp + e * dw
                     for a in range(KD) for b in range(KH) for e in range(KW)], dtype=np.int64)
    if taps == 1 and N * groups >= 4:
        # one product per image: nothing to keep in L2 across taps (a constant rule, not
        # the thread count, so the products are the same for any thread count)
        chunks = [(0, nrows)]
    else:
        chunks = _row_chunks(nrows, Wp, Kg, xp.itemsize)
    prods: dict = {}  # (lc, ldc) -> (row, Gemm, pointer, arguments); the Gemm keeps them alive
    rows = []
    for r0, r1 in chunks:
        lc = min(r1 * Wp, L) - r0 * Wp
        ldc = OD * Hp * Wp if in_place else (r1 - r0) * Wp  # in place: out's own rows
        if (lc, ldc) not in prods:
            prod = blas.Gemm(xp.dtype, Kg, lc, Cg, lda=Cg, ldb=P, ldc=ldc)
            prods[lc, ldc] = (len(prods), prod, *blas.numba_call(prod, beta_one=True))
        rows.append((r0, r1, prods[lc, ldc][0]))
    args = np.stack([p[3] for p in sorted(prods.values(), key=lambda p: p[0])])
    gemm = next(iter(prods.values()))[2]
    scratch = scratch_rows(Kg * max((r1 - r0) * Wp for r0, r1 in chunks), out.dtype)
    bias_g = np.ascontiguousarray(bias, dtype=out.dtype).reshape(groups, Kg)
    with blas.single_threaded_blas():
        shifted_tasks(xp.reshape(N, C, P), wt, out.reshape(N, groups, Kg, OD, OH, OW), bias_g,
                      np.array(rows, dtype=np.int64), offs, gemm, args, Hp, Wp, L, in_place,
                      bool(np.any(bias)), scratch)
    return out


@njit(**JIT_SERIAL)
def im2col_rows(xq, n, c0, kshape, stride, dilation, OH, OW, r0, r1, col):
    """col[(c, a, b, e), (r - r0)*OW + ow] = x[n, c0 + c, od*sd + a*dd, oh*sh + b*dh,
    ow*sw + e*dw] for the output rows ``r = od*OH + oh`` in ``[r0, r1)`` (one task's chunk;
    the first ``Cg*taps`` rows of ``col``). ``xq`` is the padded input with its W axis
    split into ``sw`` phases, ``xq[..., p, j] = x[..., j*sw + p]``, so every copied run is
    contiguous."""
    KD, KH, KW = kshape[0], kshape[1], kshape[2]
    sd, sh, sw = stride[0], stride[1], stride[2]
    dd, dh, dw = dilation[0], dilation[1], dilation[2]
    R = col.shape[0]
    taps = KD * KH * KW
    Cg = R // taps
    for c in range(Cg):
        for a in range(KD):
            for b in range(KH):
                for r in range(r0, r1):  # one source row serves the KW taps (2.5x faster
                    od = r // OH  # than a row view per tap and row: W4's gather 10 -> 4 ms)
                    oh = r - od * OH
                    row = xq[n, c0 + c, od * sd + a * dd, oh * sh + b * dh]
                    base = (r - r0) * OW
                    for e in range(KW):
                        src = row[(e * dw) % sw, (e * dw) // sw : (e * dw) // sw + OW]
                        dst = col[((c * KD + a) * KH + b) * KW + e, base : base + OW]
                        for i in range(OW):
                            dst[i] = src[i]


def _phases(xp, sw: int):
    """``xq[n, c, d, h, p, j] = xp[n, c, d, h, j*sw + p]`` (a view when ``sw == 1``); the
    copy runs per image in the task threads."""
    N, C, Dp, Hp, Wp = xp.shape
    if sw == 1:
        return np.ascontiguousarray(xp).reshape(N, C, Dp, Hp, 1, Wp)
    Wq = -(-Wp // sw)
    xq = np.empty((N, C, Dp, Hp, sw, Wq), dtype=xp.dtype)

    def split(n):
        for p in range(sw):
            m = len(range(p, Wp, sw))
            xq[n, :, :, :, p, :m] = xp[n, :, :, :, p::sw]
            xq[n, :, :, :, p, m:] = 0

    blas.parallel(split, N)
    return xq


def im2col_tasks(xp, w, bias, out, stride, dilation, groups):
    """im2col + GEMM in tasks of (image, group, chunk of output rows): each task gathers
    its ``col`` chunk (``GEMM_COL_CHUNK_BYTES``, in its thread's scratch) with a serial
    Numba kernel and multiplies it straight into ``out`` (the bias as a row of ones in
    ``col``). A W stride first splits the input into stride phases (one copy), so the
    gather copies contiguous runs."""
    N, C = xp.shape[:2]
    K, Cg, KD, KH, KW = w.shape
    OD, OH, OW = out.shape[2:]
    Kg = K // groups
    R = Cg * KD * KH * KW
    M = OD * OH * OW
    s = out.itemsize
    wm = np.empty((groups, Kg, R + 1), dtype=out.dtype)
    wm[:, :, :R] = w.reshape(groups, Kg, R)
    wm[:, :, R] = bias.reshape(groups, Kg)
    rows_total = OD * OH
    cols = max(MIN_CHUNK_COLUMNS, GEMM_COL_CHUNK_BYTES // ((R + 1) * s))
    step = max(1, cols // OW)
    chunks = [(r, min(rows_total, r + step)) for r in range(0, rows_total, step)]
    nchunks = len(chunks)
    kshape = (KD, KH, KW)
    st = tuple(int(v) for v in stride)
    dil = tuple(int(v) for v in dilation)
    xq = _phases(xp, st[2])
    wa, oa = blas.address(wm), blas.address(out)
    prods = {(r1 - r0) * OW: blas.Gemm(out.dtype, Kg, (r1 - r0) * OW, R + 1, lda=R + 1,
                                       ldb=(r1 - r0) * OW, ldc=M) for r0, r1 in chunks}

    def task(i):
        r0, r1 = chunks[i % nchunks]
        g = (i // nchunks) % groups
        n = i // (nchunks * groups)
        lc = (r1 - r0) * OW
        col = _buffer((R + 1) * lc * s).view(out.dtype)[: (R + 1) * lc].reshape(R + 1, lc)
        im2col_rows(xq, n, g * Cg, kshape, st, dil, OH, OW, r0, r1, col[:R])
        col[R] = 1
        prods[lc](wa + g * Kg * (R + 1) * s, blas.address(col),
                  oa + ((n * K + g * Kg) * M + r0 * OW) * s, False)

    blas.parallel(task, N * groups * nchunks)
    return out


def _im2col_correlate(xp, w, bias, out, stride, dilation, groups):
    """im2col + ``numpy.matmul`` (the path without SciPy's BLAS)."""
    N = xp.shape[0]
    K, Cg, KD, KH, KW = w.shape
    oshape = np.array(out.shape[2:], dtype=np.int64)
    L = int(np.prod(oshape))
    R = Cg * KD * KH * KW
    Kg = K // groups
    out4 = out.reshape(N, groups, Kg, L)
    wm = w.reshape(groups, Kg, R)
    one_by_one = (
        R == Cg
        and all(int(s) == 1 for s in stride)
        and tuple(xp.shape[2:]) == tuple(out.shape[2:])
    )
    has_bias = bool(np.any(bias))
    if one_by_one:
        xv = xp.reshape(N, groups, Cg, L)
        for g in range(groups):
            for n in range(N):
                np.matmul(wm[g], xv[n, g], out=out4[n, g])
        if has_bias:
            out += bias.reshape(1, K, 1, 1, 1)
        return out
    rows = R + 1 if has_bias else R
    if has_bias:
        wm = np.concatenate([wm, bias.reshape(groups, Kg, 1)], axis=2)
    nb = int(max(1, min(N, GEMM_COL_BYTES // (rows * L * xp.itemsize))))
    col = np.empty((nb, rows, L), dtype=xp.dtype)
    if has_bias:
        col[:, R, :] = 1
    kshape = np.array((KD, KH, KW), dtype=np.int64)
    for g in range(groups):
        for n0 in range(0, N, nb):
            m = min(nb, N - n0)
            im2col(xp, n0, g * Cg, kshape, stride, dilation, oshape, col[:m, :R])
            for i in range(m):  # one 2-D product per image: a plain BLAS sgemm/dgemm call
                np.matmul(wm[g], col[i], out=out4[n0 + i, g])
    return out


@njit(**JIT_SERIAL)
def gather_folded(x, n, c0, pads, stride, dilation, kshape, mode, khf, d, h0, nrows, w0, q,
                  col):
    """One task's folded im2col block, read from the *unpadded* input (padding by ``mode``):

    ``col[((c*KD + a)*khf + b)*KW + e, j*cw + (ow - w0)] =
    xpad[n, c0 + c, d*sd + a*dd, (h0 + j)*sh + b*dh, ow*sw + e*dw]`` for ``j < nrows``,
    ``w0 <= ow < w0 + cw`` (``cw = col.shape[1] // nrows``), ``xpad`` the input padded by
    ``pads`` (before) in ``mode`` (``fastconv.cpu.pad.source_index``). ``khf`` is KH when
    the kernel rows are folded into ``col``'s rows, else 1 (the rows then come as extra
    ``j`` rows, each kernel row a column shift of ``dh*cw``). Each source row is first
    copied, padded and split into its ``sw`` stride phases, into the scratch ``q``
    (``q[p, i] = xpad[..., (w0 + i)*sw + p]``), so every tap's copy is contiguous."""
    N, C, D, H, W = x.shape
    KD, KW = kshape[0], kshape[2]
    sd, sh, sw = stride[0], stride[1], stride[2]
    dd, dh, dw = dilation[0], dilation[1], dilation[2]
    pd, ph, pw = pads[0], pads[1], pads[2]
    cw = col.shape[1] // nrows
    Cg = col.shape[0] // (KD * khf * KW)
    k0 = w0 * sw
    nq = (cw - 1) * sw + (KW - 1) * dw + 1  # padded columns the chunk reads
    lo = min(max(pw - k0, 0), nq)  # q's columns [lo, hi) are inside the row
    hi = max(min(W + pw - k0, nq), lo)
    for c in range(Cg):
        for a in range(KD):
            ds = source_index(d * sd + a * dd - pd, D, mode)
            for b in range(khf):
                for j in range(nrows):
                    hs = source_index((h0 + j) * sh + b * dh - ph, H, mode)
                    base = j * cw
                    r0 = ((c * KD + a) * khf + b) * KW
                    if ds < 0 or hs < 0:
                        for e in range(KW):
                            col[r0 + e, base : base + cw] = 0
                        continue
                    src = x[n, c0 + c, ds, hs]  # one source row serves the KW taps
                    for p in range(sw):  # q[p, i]: padded column k = i*sw + p
                        qp = q[p]
                        i0 = (lo - p + sw - 1) // sw if lo > p else 0
                        i1 = max((hi - p + sw - 1) // sw, i0) if hi > p else i0
                        for i in range(i0):
                            m = source_index(k0 + i * sw + p - pw, W, mode)
                            qp[i] = 0 if m < 0 else src[m]
                        s0 = k0 + p - pw
                        if sw == 1:
                            sr = src[s0 + i0 : s0 + i1]
                            qr = qp[i0:i1]
                            for i in range(i1 - i0):
                                qr[i] = sr[i]
                        else:
                            for i in range(i0, i1):
                                qp[i] = src[s0 + i * sw]
                        for i in range(i1, (nq - p + sw - 1) // sw):
                            m = source_index(k0 + i * sw + p - pw, W, mode)
                            qp[i] = 0 if m < 0 else src[m]
                    for e in range(KW):
                        t = e * dw
                        qs = q[t % sw, t // sw : t // sw + cw]
                        dst = col[r0 + e, base : base + cw]
                        for k in range(cw):
                            dst[k] = qs[k]


def folded_chunks(OD: int, OH: int, OW: int, extra_rows: int, R: int, itemsize: int):
    """Fixed (d, h0, h1, w0, w1) output chunks of the folded GEMM: whole output rows of
    one depth slice (``h1 - h0`` of them) while a row is narrower than the chunk, else
    pieces of one row; each chunk's ``col`` (``R`` rows, ``h1 - h0 + extra_rows`` rows of
    ``w1 - w0`` columns) is at most about ``GEMM_COL_CHUNK_BYTES``."""
    cols = max(MIN_CHUNK_COLUMNS, GEMM_COL_CHUNK_BYTES // (R * itemsize))
    chunks = []
    if OW * (1 + extra_rows) <= cols:
        step = max(1, cols // OW - extra_rows)
        npieces = -(-OH // step)
        for d in range(OD):
            for p in range(npieces):
                chunks.append((d, OH * p // npieces, OH * (p + 1) // npieces, 0, OW))
    else:
        npieces = -(-OW * (1 + extra_rows) // cols)
        for d in range(OD):
            for h in range(OH):
                for p in range(npieces):
                    chunks.append((d, h, h + 1, OW * p // npieces, OW * (p + 1) // npieces))
    return chunks


def folded(x, w, bias, out, stride, dilation, groups, pads, mode):
    """Correlation of the unpadded ``x`` (padded by ``pads``, three (before, after) pairs,
    in ``mode``) as products with the kernel's depth and column taps folded into the
    reduction (``R = Cg*KD*KW``, times KH when the kernel rows are folded too)::

        out[n, g, :, chunk] (+)= W_b (Kg x R) @ col[:, b*dh*cw : b*dh*cw + len(chunk)]

    one product per kernel row ``b`` (stride 1 in H: a kernel row is a shift of the
    chunk's ``col`` by whole rows), or one product with ``R = Cg*taps`` (H stride > 1).
    Each task (image, group, chunk of output rows) gathers its ``col`` into its thread's
    scratch (L2-sized) straight from ``x`` and multiplies into ``out`` in place: no
    padded copy, no crop, and a reduction 3-9x deeper than the shifted GEMM's ``Cg``."""
    x = np.ascontiguousarray(x)
    N, C = x.shape[:2]
    K, Cg, KD, KH, KW = w.shape
    OD, OH, OW = out.shape[2:]
    Kg = K // groups
    st = tuple(int(v) for v in stride)
    dil = tuple(int(v) for v in dilation)
    fold_h = st[1] != 1 or KH == 1
    khf, nb = (KH, 1) if fold_h else (1, KH)
    extra = 0 if fold_h else (KH - 1) * dil[1]
    R = Cg * KD * khf * KW
    M = OD * OH * OW
    s = out.itemsize
    wt = w.reshape(groups, Kg, Cg, KD, KH, KW)
    if fold_h:
        wt = np.ascontiguousarray(wt.reshape(1, groups, Kg, R))
    else:  # (b, g, k, (c, a, e))
        wt = np.ascontiguousarray(wt.transpose(4, 0, 1, 2, 3, 5).reshape(KH, groups, Kg, R))
    chunks = folded_chunks(OD, OH, OW, extra, R, s)
    nchunks = len(chunks)
    before = np.array([b for b, _ in pads], dtype=np.int64)
    kshape = np.array((KD, KH, KW), dtype=np.int64)
    sta, dla = np.array(st, dtype=np.int64), np.array(dil, dtype=np.int64)
    code = MODE_CODES[mode]
    wa, oa = blas.address(wt), blas.address(out)
    bias_g = np.ascontiguousarray(bias, dtype=out.dtype).reshape(groups, Kg, 1)
    out_rows = out.reshape(N, groups, Kg, M) if np.any(bias) else None
    prods: dict = {}

    def product(lc, width):
        key = (lc, width)
        if key not in prods:
            prods[key] = blas.Gemm(out.dtype, Kg, lc, R, lda=R, ldb=width, ldc=M)
        return prods[key]

    def task(i):
        d, h0, h1, w0, w1 = chunks[i % nchunks]
        g = (i // nchunks) % groups
        n = i // (nchunks * groups)
        cw, nrows = w1 - w0, h1 - h0 + extra
        lc, width = (h1 - h0) * cw, nrows * cw
        nq = (cw - 1) * st[2] + (KW - 1) * dil[2] + 1
        qlen = -(-nq // st[2])
        buf = _buffer((R * width + st[2] * qlen) * s).view(out.dtype)
        col = buf[: R * width].reshape(R, width)
        q = buf[R * width : R * width + st[2] * qlen].reshape(st[2], qlen)
        gather_folded(x, n, g * Cg, before, sta, dla, kshape, code, khf, d, h0, nrows, w0, q,
                      col)
        l0 = (d * OH + h0) * OW + w0
        c0 = oa + ((n * K + g * Kg) * M + l0) * s
        prod, ca = product(lc, width), blas.address(col)
        for b in range(nb):
            prod(wa + ((b * groups + g) * Kg * R) * s, ca + b * dil[1] * cw * s, c0, b > 0)
        if out_rows is not None:
            block = out_rows[n, g, :, l0 : l0 + lc]
            np.add(block, bias_g[g], out=block)

    with np.errstate(invalid="ignore", over="ignore"):
        blas.parallel(task, N * groups * nchunks)
    return out


# --- the 1x1 form: a Numba AVX-512 register block instead of OpenBLAS --------------------

#: Rows of the reduction per pass of :func:`pointwise_rows` over its packed ``B`` panel
#: (256 x 48 float32 = 48 KiB, in L2 across the row blocks): W6 (256 channels) in one pass,
#: each output stored once (2 threads, bench pattern: 2.46-2.55 ms against 2.50-2.69 with
#: passes of 128, 2026-12-02).
POINTWISE_KC = 256


@njit(inline="always", **JIT_SERIAL)
def _put(cf, o, v, nt):
    """``cf[o : o + 16] = v``, non-temporal when ``nt`` (1: ``cf[o]`` 16-byte aligned,
    2: 64-byte aligned)."""
    if nt == 2:
        vstore_nt64(cf, o, v)
    elif nt:
        vstore_nt(cf, o, v)
    else:
        vstore(cf, o, v)


@njit(inline="always", **JIT_SERIAL)
def _block_8x48(ap, a0, lda, bf, b0, ldb, cf, c0, ldc, k0, k1, first, nt):
    """``C[8 x 48] (+)= A[8, k0:k1] @ B[k0:k1, 48]`` in 24 float32 vector accumulators:
    ``ap[a0 + i*lda + k]`` = A[i, k] (the weight rows as they are: each A element one
    broadcast load, so A needs no packing), ``bf[b0 + k*ldb + j]`` = B[k, j],
    ``cf[c0 + i*ldc + j]`` = C[i, j]; zero-started when ``first``, else continued from C
    (each C element one FMA chain over k in order); stored non-temporally when ``nt``."""
    if first:
        c = _zero_8x48(ap[0])
    else:
        c = _load_8x48(cf, c0, ldc)
    for k in range(k0, k1):
        b = b0 + k * ldb
        c = _step_8x48(ap, a0 + k, lda, vload(bf, b), vload(bf, b + 16), vload(bf, b + 32), c)
    _put_8x48(cf, c0, ldc, nt, c)


@njit(inline="always", **JIT_SERIAL)
def _block_8x16(ap, a0, lda, bf, b0, ldb, cf, c0, ldc, k0, k1, first):
    """:func:`_block_8x48` for one vector of 16 columns (the last columns of a row)."""
    z = ap[0]
    if first:
        c0_, c1_, c2_, c3_ = vzero(z), vzero(z), vzero(z), vzero(z)
        c4_, c5_, c6_, c7_ = vzero(z), vzero(z), vzero(z), vzero(z)
    else:
        c0_, c1_ = vload(cf, c0), vload(cf, c0 + ldc)
        c2_, c3_ = vload(cf, c0 + 2 * ldc), vload(cf, c0 + 3 * ldc)
        c4_, c5_ = vload(cf, c0 + 4 * ldc), vload(cf, c0 + 5 * ldc)
        c6_, c7_ = vload(cf, c0 + 6 * ldc), vload(cf, c0 + 7 * ldc)
    for k in range(k0, k1):
        x0 = vload(bf, b0 + k * ldb)
        a = a0 + k
        c0_ = vfma(vsplat_at(ap, a), x0, c0_)
        c1_ = vfma(vsplat_at(ap, a + 1 * lda), x0, c1_)
        c2_ = vfma(vsplat_at(ap, a + 2 * lda), x0, c2_)
        c3_ = vfma(vsplat_at(ap, a + 3 * lda), x0, c3_)
        c4_ = vfma(vsplat_at(ap, a + 4 * lda), x0, c4_)
        c5_ = vfma(vsplat_at(ap, a + 5 * lda), x0, c5_)
        c6_ = vfma(vsplat_at(ap, a + 6 * lda), x0, c6_)
        c7_ = vfma(vsplat_at(ap, a + 7 * lda), x0, c7_)
    vstore(cf, c0, c0_)
    vstore(cf, c0 + ldc, c1_)
    vstore(cf, c0 + 2 * ldc, c2_)
    vstore(cf, c0 + 3 * ldc, c3_)
    vstore(cf, c0 + 4 * ldc, c4_)
    vstore(cf, c0 + 5 * ldc, c5_)
    vstore(cf, c0 + 6 * ldc, c6_)
    vstore(cf, c0 + 7 * ldc, c7_)


@njit(inline="always", **JIT_SERIAL)
def _pack_panel(bf, j, ldb, rows, width, bp):
    """``bp[k*width : (k+1)*width] = B[k, j : j + width]`` for the ``rows`` rows of ``B``
    (``bf[k*ldb + c]`` = B[k, c]; ``width`` 48 or 16): one column panel of the input made
    contiguous (one stream instead of ``rows`` strided ones)."""
    for k in range(rows):
        _copy_row(bf, k * ldb + j, bp, k * width, width)


@njit(inline="always", **JIT_SERIAL)
def _step_8x48(ap, a, lda, x0, x1, x2, c):
    """One channel of an 8x48 block: the 24 accumulators ``c`` (row-major) plus
    ``A[i, k] * B[k, :48]`` (``ap[a + i*lda]`` = A[i, k], ``x0, x1, x2`` = B[k, :48]),
    one FMA each."""
    (c00, c01, c02, c10, c11, c12, c20, c21, c22, c30, c31, c32, c40, c41, c42,
     c50, c51, c52, c60, c61, c62, c70, c71, c72) = c
    v = vsplat_at(ap, a)
    c00, c01, c02 = vfma(v, x0, c00), vfma(v, x1, c01), vfma(v, x2, c02)
    v = vsplat_at(ap, a + 1 * lda)
    c10, c11, c12 = vfma(v, x0, c10), vfma(v, x1, c11), vfma(v, x2, c12)
    v = vsplat_at(ap, a + 2 * lda)
    c20, c21, c22 = vfma(v, x0, c20), vfma(v, x1, c21), vfma(v, x2, c22)
    v = vsplat_at(ap, a + 3 * lda)
    c30, c31, c32 = vfma(v, x0, c30), vfma(v, x1, c31), vfma(v, x2, c32)
    v = vsplat_at(ap, a + 4 * lda)
    c40, c41, c42 = vfma(v, x0, c40), vfma(v, x1, c41), vfma(v, x2, c42)
    v = vsplat_at(ap, a + 5 * lda)
    c50, c51, c52 = vfma(v, x0, c50), vfma(v, x1, c51), vfma(v, x2, c52)
    v = vsplat_at(ap, a + 6 * lda)
    c60, c61, c62 = vfma(v, x0, c60), vfma(v, x1, c61), vfma(v, x2, c62)
    v = vsplat_at(ap, a + 7 * lda)
    c70, c71, c72 = vfma(v, x0, c70), vfma(v, x1, c71), vfma(v, x2, c72)
    return (c00, c01, c02, c10, c11, c12, c20, c21, c22, c30, c31, c32, c40, c41, c42,
            c50, c51, c52, c60, c61, c62, c70, c71, c72)


@njit(inline="always", **JIT_SERIAL)
def _put_8x48(cf, c0, ldc, nt, c):
    """``C[8 x 48]`` at ``cf[c0 + i*ldc + j]`` = the 24 accumulators ``c`` (row-major)."""
    o = c0
    _put(cf, o, c[0], nt)
    _put(cf, o + 16, c[1], nt)
    _put(cf, o + 32, c[2], nt)
    o += ldc
    _put(cf, o, c[3], nt)
    _put(cf, o + 16, c[4], nt)
    _put(cf, o + 32, c[5], nt)
    o += ldc
    _put(cf, o, c[6], nt)
    _put(cf, o + 16, c[7], nt)
    _put(cf, o + 32, c[8], nt)
    o += ldc
    _put(cf, o, c[9], nt)
    _put(cf, o + 16, c[10], nt)
    _put(cf, o + 32, c[11], nt)
    o += ldc
    _put(cf, o, c[12], nt)
    _put(cf, o + 16, c[13], nt)
    _put(cf, o + 32, c[14], nt)
    o += ldc
    _put(cf, o, c[15], nt)
    _put(cf, o + 16, c[16], nt)
    _put(cf, o + 32, c[17], nt)
    o += ldc
    _put(cf, o, c[18], nt)
    _put(cf, o + 16, c[19], nt)
    _put(cf, o + 32, c[20], nt)
    o += ldc
    _put(cf, o, c[21], nt)
    _put(cf, o + 16, c[22], nt)
    _put(cf, o + 32, c[23], nt)


@njit(inline="always", **JIT_SERIAL)
def _zero_8x48(z):
    """24 zero accumulators."""
    return (vzero(z), vzero(z), vzero(z), vzero(z), vzero(z), vzero(z), vzero(z), vzero(z),
            vzero(z), vzero(z), vzero(z), vzero(z), vzero(z), vzero(z), vzero(z), vzero(z),
            vzero(z), vzero(z), vzero(z), vzero(z), vzero(z), vzero(z), vzero(z), vzero(z))


@njit(inline="always", **JIT_SERIAL)
def _load_8x48(cf, c0, ldc):
    """The 24 accumulators (row-major) loaded from ``C[8 x 48]`` at ``cf[c0 + i*ldc + j]``."""
    o = c0
    return (vload(cf, o), vload(cf, o + 16), vload(cf, o + 32),
            vload(cf, o + ldc), vload(cf, o + ldc + 16), vload(cf, o + ldc + 32),
            vload(cf, o + 2 * ldc), vload(cf, o + 2 * ldc + 16), vload(cf, o + 2 * ldc + 32),
            vload(cf, o + 3 * ldc), vload(cf, o + 3 * ldc + 16), vload(cf, o + 3 * ldc + 32),
            vload(cf, o + 4 * ldc), vload(cf, o + 4 * ldc + 16), vload(cf, o + 4 * ldc + 32),
            vload(cf, o + 5 * ldc), vload(cf, o + 5 * ldc + 16), vload(cf, o + 5 * ldc + 32),
            vload(cf, o + 6 * ldc), vload(cf, o + 6 * ldc + 16), vload(cf, o + 6 * ldc + 32),
            vload(cf, o + 7 * ldc), vload(cf, o + 7 * ldc + 16), vload(cf, o + 7 * ldc + 32))


@njit(inline="always", **JIT_SERIAL)
def _block_8x48_packing(ap, a0, lda, bf, b0, ldb, cf, c0, ldc, K, nt, bp):
    """:func:`_block_8x48` over all ``K`` channels in one pass, B read in place
    (``bf[b0 + k*ldb + j]``) and copied as it is used into ``bp[k*48 + j]``: a panel's
    first row block packs it, its loads overlapped by the block's FMAs."""
    c = _zero_8x48(ap[0])
    for k in range(K):
        b = b0 + k * ldb
        x0, x1, x2 = vload(bf, b), vload(bf, b + 16), vload(bf, b + 32)
        d = k * 48
        vstore(bp, d, x0)
        vstore(bp, d + 16, x1)
        vstore(bp, d + 32, x2)
        c = _step_8x48(ap, a0 + k, lda, x0, x1, x2, c)
    _put_8x48(cf, c0, ldc, nt, c)


@njit(inline="always", **JIT_SERIAL)
def _copy_row(bf, s, bn, d, width):
    """``bn[d : d + width] = bf[s : s + width]`` (``width`` 48 or 16)."""
    vstore(bn, d, vload(bf, s))
    if width == 48:
        vstore(bn, d + 16, vload(bf, s + 16))
        vstore(bn, d + 32, vload(bf, s + 32))


@njit(inline="always", **JIT_SERIAL)
def _block_8x48_next(ap, a0, lda, bp, cf, c0, ldc, K, nt, bf, ldb, jn, wn, bn, r0, r1):
    """:func:`_block_8x48` over the packed panel ``bp`` (48 wide), all ``K`` channels in
    one pass, copying rows ``r0:r1`` of the next panel (``bf[r*ldb + jn :][:wn]`` to
    ``bn[r*wn :]``) on the way, one row per 16 channels (the rest after the last):
    the next panel's loads are overlapped by this block's FMAs."""
    c = _zero_8x48(ap[0])
    r = r0
    K16 = K - K % 16
    for kk in range(0, K16, 16):
        if r < r1:
            _copy_row(bf, r * ldb + jn, bn, r * wn, wn)
            r += 1
        for k in range(kk, kk + 16):
            b = k * 48
            c = _step_8x48(ap, a0 + k, lda, vload(bp, b), vload(bp, b + 16), vload(bp, b + 32),
                           c)
    for k in range(K16, K):
        b = k * 48
        c = _step_8x48(ap, a0 + k, lda, vload(bp, b), vload(bp, b + 16), vload(bp, b + 32), c)
    for rr in range(r, r1):
        _copy_row(bf, rr * ldb + jn, bn, rr * wn, wn)
    _put_8x48(cf, c0, ldc, nt, c)


@njit(**JIT_PARALLEL)
def pointwise_rows(ap, x, out, bias_g, add_bias, kc, pieces, scratch, nt):
    """out[n, g] (Kg x L) = A_g @ x[n, g] (Cg x L) (+ bias_g[g] per row after the sum).

    ``ap[g]`` is A_g ``(Kg, Cg)``, the weight as it is (not packed: each element is one
    broadcast load). One iteration per (image, group, piece of the columns; ``pieces``
    per image); in a piece, column panels of 48 (the last ones 16) are made contiguous
    in the running thread's row of ``scratch`` (two buffers of ``Cg * 48`` elements),
    then every 8-row block of the output is computed over that panel in passes of ``kc``
    channels (each output one FMA chain over the channels in order, whatever the thread
    count or the split). In one pass (``kc >= Cg``) the packing is software-pipelined:
    a 48-wide panel's first row block packs it while computing, the other row blocks
    copy the next panel into the other buffer, a row per 16 channels, so the input's
    loads overlap the FMAs instead of stalling them in a copy of their own. float32,
    AVX-512, ``Kg % 8 == 0``, ``L % 16 == 0``. ``nt``: the 48-column blocks are stored
    non-temporally (1: ``out`` 16-byte aligned, 2: 64-byte aligned; one pass, no bias:
    the caller checks).
    """
    N, G, Cg, L = x.shape
    Kg = out.shape[2]
    nb = Kg // 8
    S = Cg * 48
    npan = (L + 47) // 48  # column panels (the last one 16 or 32 wide)
    per = -(-npan // pieces)
    one_pass = kc >= Cg
    for t in prange(N * G * pieces):
        q = t // pieces
        n = q // G
        g = q - n * G
        p0 = (t - q * pieces) * per
        j, j1 = min(L, p0 * 48), min(L, (p0 + per) * 48)
        af = ap[g].reshape(-1)
        bf = x[n, g].reshape(-1)
        cf = out[n, g].reshape(-1)
        sc = scratch[get_thread_id()]
        cur = 0
        packed = False  # the panel at j is already in sc[cur]
        while j < j1:
            width = 48 if j + 48 <= j1 else 16
            bp = sc[cur * S : cur * S + S]
            if one_pass and width == 48:
                jn = j + 48
                wn = 48 if jn + 48 <= j1 else 16
                ib0 = 0
                if not packed:
                    _block_8x48_packing(af, 0, Cg, bf, j, L, cf, j, L, Cg, nt, bp)
                    ib0 = 1
                packed = jn < j1 and ib0 < nb
                if packed:
                    bn = sc[(1 - cur) * S : (1 - cur) * S + S]
                    step = -(-Cg // (nb - ib0))  # next-panel rows per row block
                    for ib in range(ib0, nb):
                        r0 = min(Cg, (ib - ib0) * step)
                        _block_8x48_next(af, ib * 8 * Cg, Cg, bp, cf, ib * 8 * L + j, L, Cg,
                                         nt, bf, L, jn, wn, bn, r0, min(Cg, r0 + step))
                    cur = 1 - cur
                else:
                    for ib in range(ib0, nb):
                        _block_8x48(af, ib * 8 * Cg, Cg, bp, 0, 48, cf, ib * 8 * L + j, L, 0, Cg,
                                    True, nt)
            else:
                if not packed:
                    _pack_panel(bf, j, L, Cg, width, bp)
                packed = False
                for k0 in range(0, Cg, kc):
                    k1 = min(Cg, k0 + kc)
                    for ib in range(nb):
                        if width == 48:
                            _block_8x48(af, ib * 8 * Cg, Cg, bp, 0, 48, cf, ib * 8 * L + j, L,
                                        k0, k1, k0 == 0, nt)
                        else:
                            _block_8x16(af, ib * 8 * Cg, Cg, bp, 0, 16, cf, ib * 8 * L + j, L,
                                        k0, k1, k0 == 0)
            if add_bias:
                rows = out[n, g]
                for k in range(Kg):
                    bk = bias_g[g, k]
                    dst = rows[k]
                    for c in range(j, j + width):
                        dst[c] = dst[c] + bk
            j += width


def pointwise_scratch(Cg: int, dtype) -> np.ndarray:
    """The per-thread scratch of :func:`pointwise_rows`: two column panels of ``Cg x 48``."""
    return scratch_rows(2 * Cg * 48, dtype)


def pointwise_pieces(tasks: int, L: int) -> int:
    """Column pieces per (image, group) product of :func:`pointwise_rows`: 1 when the
    products divide evenly among the threads (W6: 8 images, 2 threads), else enough
    pieces (whole 48-column panels) for about 4 iterations per thread. Pieces split
    outputs, never a sum, so the bits do not depend on the thread count."""
    nthreads = numba.get_num_threads()
    if tasks % nthreads == 0:
        return 1
    return max(1, min((L + 47) // 48, -(-4 * nthreads // tasks)))


def pointwise_ok(dtype, Kg: int, L: int) -> bool:
    """Whether :func:`pointwise_rows` runs a 1x1 layer's products (float32 on AVX-512,
    output channels per group a multiple of 8, output pixels a multiple of 16): W6
    (8x256x28^2, 128 1x1), 2 threads, bench pattern, quiet machine: 2.89 ms against 3.23
    for one single-threaded OpenBLAS sgemm per image (torch 2.87), 2026-12-02."""
    return (microkernel.AVX512 and np.dtype(dtype) == np.float32 and Kg % 8 == 0
            and L % 16 == 0)


def pointwise(x, w, bias, out, groups):
    """A 1x1, stride-1 correlation of an unpadded input by :func:`pointwise_rows`
    (``x (N, C, D, H, W)``, ``out (N, K, D, H, W)``, both C-contiguous)."""
    N, C = x.shape[:2]
    K, Cg = w.shape[:2]
    Kg = K // groups
    L = out.shape[2] * out.shape[3] * out.shape[4]
    ap = np.ascontiguousarray(w).reshape(groups, Kg, Cg)
    bias_g = np.ascontiguousarray(bias, dtype=out.dtype).reshape(groups, Kg)
    scratch = pointwise_scratch(Cg, out.dtype)
    add_bias = bool(np.any(bias))
    # non-temporal output stores: W6, 2 threads, bench pattern 2.38-2.44 ms vs 2.46-2.55
    nt = 0
    if Cg <= POINTWISE_KC and not add_bias and out.ctypes.data % 16 == 0:
        nt = 2 if out.ctypes.data % 64 == 0 and L % 16 == 0 else 1
    pointwise_rows(ap, x.reshape(N, groups, Cg, L), out.reshape(N, groups, Kg, L), bias_g,
                   add_bias, POINTWISE_KC, pointwise_pieces(N * groups, L), scratch, nt)
    return out
