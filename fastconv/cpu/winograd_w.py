"""Winograd F(4, 3) along W, fused with the folded GEMM (``fastconv.cpu.gemm.folded``):
3-D (and 2-D) correlations with 3 kernel columns, unit stride and dilation along W.

Along W, the 4 outputs ``y[4t : 4t+4]`` of one row and output channel are::

    y = A^T [ (G w[k, c, a, b, :]) * (B^T xpad[c, d*sd + a*dd, h + b*dh, 4t : 4t+6]) ]

(F(4, 3), the matrices of ``fastconv.cpu.winograd``: points 0, +-1, +-2, infinity), so each
of the 6 transform points ``p`` is one folded product over the channels and the depth taps::

    M[p] (Kg x rows*T) (+)= U[p, b] (Kg x Cg*KD) @ V[p][:, b*dh*T : b*dh*T + rows*T]

one per kernel row ``b`` (a kernel row is a shift of the chunk's ``V`` by whole rows of
``T = ceil(OW/4)`` tiles). ``V`` holds the transformed input depth slices in depth-major
order, so the ``KD`` depth taps of an output slice are ``KD * Cg`` consecutive rows
(dilation 1 in depth: one product; else one per tap). That is 6/4 products per output
per (channel, depth tap, kernel row) where the GEMM does 3: 2x fewer multiplies (C3,
32 -> 32 channels 3x3x3: 2.8 -> 1.4 GMAC).

A task (image, group, chunk of output depth slices and rows: :func:`chunks`, fixed by
the shape) is one nogil Numba call (:func:`run_task`) that walks its output slices in
order: it transforms each input slice when the first output slice that reads it comes
up (straight from the unpadded input, every padding mode; once per task, and still in
L2 for the products of the next ``KD`` output slices), runs that slice's products
through the BLAS function pointer (no Python and no GIL between them, so threads
scale), and inverse-transforms into ``out`` (plus bias). The tasks are the iterations of
one Numba parallel region (:func:`run_tasks`), each in its thread's scratch row.

Error: the 1-D F(4, 3) transform; measured float32 max |error| / max |y| (random normal
data, tests' layers) below 2e-6 (the tests allow 4e-6). NaN/Inf: Winograd mixes a tile's
pixels, so a non-finite weight or any non-finite output sends the call to the folded GEMM,
whose NaN/Inf pattern is the direct kernel's. Bit-identical run to run and for any thread
count (fixed chunks, one task per output element, single-threaded BLAS).

1-D layers with 5 taps (``1 x 1 x 5`` kernels) run F(4, 5) along W on the same pattern
(:func:`correlate_cols`, below): 8 products of depth ``Cg`` per 4 outputs where the folded
GEMM's one product has depth ``5 * Cg`` (2.5x fewer multiplies); float32 max |error| /
max |y| 1.7e-6 on C1 (64 channels), 1.1e-6 on the tests' 16-20 channels.
"""

from __future__ import annotations

import numpy as np
from numba import get_thread_id, njit, prange

from fastconv._config import GEMM_COL_CHUNK_BYTES, JIT_PARALLEL, JIT_SERIAL
from fastconv.cpu import blas
from fastconv.cpu.gemm import folded, scratch_rows
from fastconv.cpu.gemm import padding_core as gemm_padding_core
from fastconv.cpu.microkernel import (
    LANES32,
    LANES64,
    vadd,
    vload,
    vload4,
    vmul,
    vsplat,
    vstore,
    vstore4,
    vsub,
)
from fastconv.cpu.pad import MODE_CODES, source_index
from fastconv.cpu.rules import winograd_cols as applies_cols  # noqa: F401 (re-exported)
from fastconv.cpu.rules import winograd_depth as applies  # noqa: F401 (re-exported)
from fastconv.cpu.winograd import _G, _carve_len

#: Product columns (output rows x tiles) of a task's row chunk: about 256 keeps the part
#: of ``V`` that one output slice reads (``KD`` input slices), ``M`` and ``U`` near a
#: 1 MiB L2 at 32 channels.
ROW_COLUMNS = 256
#: Fewest tasks a layer is split into (by depth chunks, where its depth allows): equal
#: shares for 2-4 threads. The split is fixed by the shape, never by the thread count.
MIN_TASKS = 16


@njit(inline="always", **JIT_SERIAL)
def _bt4_tile(a0, a1, a2, a3, a4, a5):
    """The 6 values ``B^T [a0, ..., a5]`` of one F(4, 3) input tile."""
    f2, f4, f5 = np.float32(2), np.float32(4), np.float32(5)
    return (f4 * a0 - f5 * a2 + a4, (a3 + a4) - f4 * (a1 + a2), f4 * (a1 - a2) + (a4 - a3),
            f2 * (a3 - a1) + (a4 - a2), f2 * (a1 - a3) + (a4 - a2), f4 * a1 - f5 * a3 + a5)


@njit(inline="always", **JIT_SERIAL)
def _bt4_block(q, i, cst, v0, v1, v2, v3, v4, v5, u):
    """:func:`_bt4_tile` on the ``LANES`` tiles whose inputs start at ``q[i]``, ``q[i + 4]``,
    ... (explicit vectors: 8 loads and the phase shuffles), stored at ``v_p[u:]``;
    ``cst = (2, 4, 5, 8)``."""
    a0, a1, a2, a3 = vload4(q, i)
    a4, a5, _, _ = vload4(q, i + 4)
    f2, f4, f5 = vsplat(cst[0]), vsplat(cst[1]), vsplat(cst[2])
    vstore(v0, u, vadd(vsub(vmul(f4, a0), vmul(f5, a2)), a4))
    vstore(v1, u, vsub(vadd(a3, a4), vmul(f4, vadd(a1, a2))))
    vstore(v2, u, vadd(vmul(f4, vsub(a1, a2)), vsub(a4, a3)))
    vstore(v3, u, vadd(vmul(f2, vsub(a3, a1)), vsub(a4, a2)))
    vstore(v4, u, vadd(vmul(f2, vsub(a1, a3)), vsub(a4, a2)))
    vstore(v5, u, vadd(vsub(vmul(f4, a1), vmul(f5, a3)), a5))


@njit(inline="always", **JIT_SERIAL)  # part of run_task (one cached kernel)
def transform_slice(x, n, c0, Cg, pads, mode, zp, h0, T, q, ext, cst, V, r0):
    """``V[p, r0 + c, j*T + t] = (B^T xpad[n, c0 + c, zp, h0 + j, 4t : 4t+6])_p`` for every
    channel ``c < Cg`` and row ``j < V.shape[2] // T`` (``xpad``: ``x`` padded by
    ``pads`` (before) in ``mode``; ``zp``, ``h0`` padded coordinates).

    Per channel, the rows' padded columns ``[0, 4T)`` are copied into ``q`` (row pitch
    ``4T``) and columns ``4T``, ``4T + 1`` into ``ext``; one loop over all the channel's
    tiles then reads ``q[4u : 4u+6]``, ``LANES`` tiles at a time as explicit vectors
    (:func:`_bt4_block`; left to LLVM, the six output rows' alias checks kept this loop
    scalar, 7.5 ns a tile), and the last tile of each row, whose ``a4``, ``a5`` are in
    ``ext``, is recomputed."""
    N, C, D, H, W = x.shape
    pd, ph, pw = pads[0], pads[1], pads[2]
    nrows = V.shape[2] // T
    Q = 4 * T
    nt = nrows * T
    lo = min(pw, Q)
    hi = max(min(W + pw, Q), lo)
    ds = source_index(zp - pd, D, mode)
    q4 = q[: 4 * (nt + 1)].reshape(nt + 1, 4)  # tile u: q4[u], q4[u + 1, :2]
    q4[nt, :] = 0  # read by the last row's last tile, then replaced
    lanes = LANES32 if q.itemsize == 4 else LANES64
    for c in range(Cg):
        for j in range(nrows):
            hs = source_index(h0 + j - ph, H, mode)
            row = q[j * Q : (j + 1) * Q]
            if ds < 0 or hs < 0:
                row[:] = 0
                ext[2 * j] = ext[2 * j + 1] = 0
                continue
            src = x[n, c0 + c, ds, hs]
            for k in range(lo):
                m = source_index(k - pw, W, mode)
                row[k] = 0 if m < 0 else src[m]
            seg = src[lo - pw : hi - pw]
            dst = row[lo:hi]
            for k in range(hi - lo):
                dst[k] = seg[k]
            for k in range(hi, Q):
                m = source_index(k - pw, W, mode)
                row[k] = 0 if m < 0 else src[m]
            for e in range(2):
                m = source_index(Q + e - pw, W, mode)
                ext[2 * j + e] = 0 if m < 0 else src[m]
        v0, v1, v2 = V[0, r0 + c], V[1, r0 + c], V[2, r0 + c]
        v3, v4, v5 = V[3, r0 + c], V[4, r0 + c], V[5, r0 + c]
        u = 0
        while u + lanes <= nt:
            _bt4_block(q, 4 * u, cst, v0, v1, v2, v3, v4, v5, u)
            u += lanes
        for t in range(u, nt):
            b0, b1, b2, b3, b4, b5 = _bt4_tile(q4[t, 0], q4[t, 1], q4[t, 2], q4[t, 3],
                                               q4[t + 1, 0], q4[t + 1, 1])
            v0[t], v1[t], v2[t], v3[t], v4[t], v5[t] = b0, b1, b2, b3, b4, b5
        for j in range(nrows):  # the last tile of each row: its a4, a5 from ext
            u = j * T + T - 1
            b0, b1, b2, b3, b4, b5 = _bt4_tile(q[4 * u], q[4 * u + 1], q[4 * u + 2],
                                               q[4 * u + 3], ext[2 * j], ext[2 * j + 1])
            v0[u], v1[u], v2[u], v3[u], v4[u], v5[u] = b0, b1, b2, b3, b4, b5


@njit(inline="always", **JIT_SERIAL)
def _at4_tile(m0, m1, m2, m3, m4, m5, i, b):
    """The 4 outputs ``A^T [m0[i], ..., m5[i]] + b`` of one F(4, 3) tile."""
    f2, f4, f8 = np.float32(2), np.float32(4), np.float32(8)
    a0, a1, a2, a3, a4, a5 = m0[i], m1[i], m2[i], m3[i], m4[i], m5[i]
    p12, m12, p34, m34 = a1 + a2, a1 - a2, a3 + a4, a3 - a4
    return (a0 + p12 + p34 + b, m12 + f2 * m34 + b, p12 + f4 * p34 + b,
            m12 + f8 * m34 + a5 + b)


@njit(inline="always", **JIT_SERIAL)
def _at4_block(m0, m1, m2, m3, m4, m5, u, b, cst, acc, yb, i):
    """:func:`_at4_tile` on the ``LANES`` tiles ``u, u + 1, ...`` (explicit vectors),
    interleaved into ``yb[i : i + 4 * LANES]``; their sums added to ``acc[u:]``;
    ``cst = (2, 4, 5, 8)``."""
    f2, f4, f8 = vsplat(cst[0]), vsplat(cst[1]), vsplat(cst[3])
    a1, a2, a3, a4 = vload(m1, u), vload(m2, u), vload(m3, u), vload(m4, u)
    p12, m12, p34, m34 = vadd(a1, a2), vsub(a1, a2), vadd(a3, a4), vsub(a3, a4)
    y0 = vadd(vadd(vadd(vload(m0, u), p12), p34), b)
    y1 = vadd(vadd(m12, vmul(f2, m34)), b)
    y2 = vadd(vadd(p12, vmul(f4, p34)), b)
    y3 = vadd(vadd(vadd(m12, vmul(f8, m34)), vload(m5, u)), b)
    vstore(acc, u, vadd(vload(acc, u), vadd(vadd(y0, y1), vadd(y2, y3))))
    vstore4(yb, i, y0, y1, y2, y3)


@njit(inline="always", **JIT_SERIAL)  # part of run_task (one cached kernel)
def store_slice(M, bias, out, oflat, n, k0, d, h0, T, cst, yb, acc):
    """``out[n, k0 + k, d, h0 + j, 4t + i] = (A^T M[:, k, j*T + t])_i + bias[k]`` (columns
    below ``OW``); returns whether every stored value is finite. Per output channel, one
    loop over all its tiles (``LANES`` at a time as explicit vectors) writes the outputs
    at a constant stride: straight into ``out`` through its flat view ``oflat`` when
    ``OW = 4T`` (the chunk's rows are then one contiguous block), else into ``yb`` (row
    pitch ``4T``), whose rows are copied into ``out``. ``acc`` (``rows * T``) sums the
    results (a non-finite sum flags a NaN/Inf)."""
    K, OD, OH, OW = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    Kg = M.shape[1]
    nt = M.shape[2]
    rows = nt // T
    Q = 4 * T
    direct = oflat.size > 0 and OW == Q
    lanes = LANES32 if M.itemsize == 4 else LANES64
    acc[:] = 0
    for k in range(Kg):
        if direct:
            base = (((n * K + k0 + k) * OD + d) * OH + h0) * OW
            dst = oflat[base : base + 4 * nt]
        else:
            dst = yb[: 4 * nt]
        d4 = dst.reshape(nt, 4)
        b = bias[k]
        m0, m1, m2, m3, m4, m5 = M[0, k], M[1, k], M[2, k], M[3, k], M[4, k], M[5, k]
        bv = vsplat(b)
        u = 0
        while u + lanes <= nt:
            _at4_block(m0, m1, m2, m3, m4, m5, u, bv, cst, acc, dst, 4 * u)
            u += lanes
        for t in range(u, nt):
            y0, y1, y2, y3 = _at4_tile(m0, m1, m2, m3, m4, m5, t, b)
            acc[t] += (y0 + y1) + (y2 + y3)
            d4[t, 0] = y0
            d4[t, 1] = y1
            d4[t, 2] = y2
            d4[t, 3] = y3
        if not direct:
            for j in range(rows):
                row = out[n, k0 + k, d, h0 + j]
                src = yb[j * Q : j * Q + OW]
                for o in range(OW):
                    row[o] = src[o]
    return np.isfinite(acc.sum())


@njit(**JIT_SERIAL)
def run_task(x, n, g, pads, mode, sd, dd, dh, d0, d1, h0, T, U, gemm, args, V, M, q,
             ext, cst, yb, bias, out, oflat, acc):
    """One task of :func:`correlate` in one call (no Python, no GIL): for each output
    depth slice ``d`` of ``[d0, d1)``, transform the input slices it reads that are not
    yet in ``V`` (each once per task, while hot), run the ``6 * KH`` (times ``KD`` when
    ``dd > 1``) products into ``M`` through the BLAS pointer ``gemm`` with the constant
    arguments ``args`` (:func:`fastconv.cpu.blas.numba_call` with ``beta_one``), and
    inverse-transform into ``out``. Returns whether every stored value is finite."""
    _, KH, groups, Kg, R = U.shape
    Cg = x.shape[1] // groups
    KD = R // Cg
    nzc = V.shape[1]
    width = V.shape[2]
    lc = M.shape[2]
    s = V.itemsize
    merged = dd == 1
    ua, va, ma = U.ctypes.data, V.ctypes.data, M.ctypes.data
    done = 0
    finite = True
    for d in range(d0, d1):
        need = (d - d0) * sd + (KD - 1) * dd + 1
        while done < need:
            transform_slice(x, n, g * Cg, Cg, pads, mode, d0 * sd + done, h0, T, q, ext, cst,
                            V, done * Cg)
            done += 1
        for p in range(6):
            first = True
            for b in range(KH):
                for a in range(1 if merged else KD):
                    z = (d - d0) * sd + a * dd
                    uo = np.uint64((((p * KH + b) * groups + g) * Kg * R + a * Cg) * s)
                    vo = np.uint64(((p * nzc + z * Cg) * width + b * dh * T) * s)
                    mo = np.uint64(p * Kg * lc * s)
                    gemm(args[0], args[1], args[2], args[3], args[4], args[5], va + vo,
                         args[6], ua + uo, args[7], args[8] if first else args[10], ma + mo,
                         args[9])
                    first = False
        if not store_slice(M, bias, out, oflat, n, g * Kg, d, h0, T, cst, yb, acc):
            finite = False
    return finite


def weight_transform(w, groups: int) -> np.ndarray:
    """``U[p, b, g, k, a*Cg + c] = sum_e G[p, e] w[g*Kg + k, c, a, b, e]`` (float64 sums)."""
    K, Cg, KD, KH, _ = w.shape
    w6 = w.astype(np.float64).reshape(groups, K // groups, Cg, KD, KH, 3)
    U = np.einsum("pe,gkcabe->pbgkac", _G[4], w6)
    return np.ascontiguousarray(U.reshape(6, KH, groups, K // groups, Cg * KD), dtype=w.dtype)


def chunks(batch: int, OD: int, OH: int, KD: int, sd: int, dd: int, extra: int, Cg: int,
           T: int, itemsize: int):
    """Fixed ``(d0, d1, h0, h1)`` chunks of the output: rows of about ``ROW_COLUMNS``
    product columns (``rows * T``), and depth chunks, as few as give ``batch`` (images x
    groups) times the chunks at least ``MIN_TASKS`` tasks (each chunk's input slices
    beyond its own are transformed twice) and keep a task's ``V`` (all its input
    slices) within ``4 * GEMM_COL_CHUNK_BYTES``. A function of the shape only."""
    nh = min(OH, max(1, -(-OH * T // ROW_COLUMNS)))
    hs = [(OH * p // nh, OH * (p + 1) // nh) for p in range(nh)]
    width = (-(-OH // nh) + extra) * T
    slices = max(1, 4 * GEMM_COL_CHUNK_BYTES // (6 * Cg * width * itemsize))
    dch = max(1, (slices - (KD - 1) * dd - 1) // sd + 1)  # output slices within the budget
    nd = min(OD, max(-(-OD // dch), -(-MIN_TASKS // (batch * nh))))
    ds = [(OD * p // nd, OD * (p + 1) // nd) for p in range(nd)]
    return [(d0, d1, h0, h1) for d0, d1 in ds for h0, h1 in hs]


@njit(inline="always", **JIT_SERIAL)
def _carve(buf, o, n):
    """(``buf[o : o + n]``, the next offset): ``n`` rounded up to 16 elements, so every view
    of a 64-byte-aligned scratch row is 64-byte aligned (as ``winograd._Carve``)."""
    return buf[o : o + n], o + _carve_len(n)


@njit(inline="always", **JIT_SERIAL)
def _task_lens(nz, Cg, Kg, width, lc, nrows):
    """Scratch lengths of one :func:`run_task`: ``V``, ``M``, ``q``, ``ext``, ``yb``, ``acc``."""
    return 6 * nz * Cg * width, 6 * Kg * lc, 4 * width + 4, 2 * nrows, 4 * lc, lc


@njit(**JIT_PARALLEL)
def run_tasks(x, pads, mode, sd, dd, dh, parts, T, extra, U, gemm, args, cst, bias, out,
              oflat, scratch, finite):
    """Every (image, group, chunk) task of :func:`correlate` as one iteration of one
    parallel region: :func:`run_task` in the running thread's scratch row. ``parts`` rows
    are (d0, d1, h0, h1, ``args`` row); ``finite[i]``: whether iteration ``i``'s outputs are
    finite. Results do not depend on which thread runs an iteration."""
    _, KH, groups, Kg, R = U.shape
    N, C = x.shape[0], x.shape[1]
    Cg = C // groups
    KD = R // Cg
    nchunks = parts.shape[0]
    for i in prange(N * groups * nchunks):
        c = i % nchunks
        g = (i // nchunks) % groups
        n = i // (nchunks * groups)
        d0, d1, h0, h1, row = parts[c, 0], parts[c, 1], parts[c, 2], parts[c, 3], parts[c, 4]
        lc, width = (h1 - h0) * T, (h1 - h0 + extra) * T
        nz = (d1 - 1 - d0) * sd + (KD - 1) * dd + 1  # input depth slices (padded coords)
        nv, nm, nq, ne, ny, na = _task_lens(nz, Cg, Kg, width, lc, h1 - h0 + extra)
        buf = scratch[get_thread_id()]
        V, o = _carve(buf, 0, nv)
        M, o = _carve(buf, o, nm)
        q, o = _carve(buf, o, nq)
        ext, o = _carve(buf, o, ne)
        yb, o = _carve(buf, o, ny)
        acc, o = _carve(buf, o, na)
        finite[i] = run_task(x, n, g, pads, mode, sd, dd, dh, d0, d1, h0, T, U, gemm, args[row],
                             V.reshape((6, nz * Cg, width)), M.reshape((6, Kg, lc)), q, ext,
                             cst, yb, bias[g * Kg : (g + 1) * Kg], out, oflat, acc)


def correlate(x, w, bias, out, stride, dilation, groups, pads, mode):
    """``out`` = the correlation of the unpadded ``x`` (padded by ``pads`` in ``mode``)
    with ``w`` plus ``bias``, by F(4, 3) along W (module docstring); falls back to the
    folded GEMM where a weight or an output is not finite.

    The tasks are the iterations of one Numba parallel region (:func:`run_tasks`), not
    tasks on :func:`fastconv.cpu.blas.parallel`'s Python threads: Numba's OpenMP workers
    spin between regions, so 2 threads scale when calls come in short bursts after idle
    time (2026-12-02)."""
    if not np.isfinite(w).all():
        return folded(x, w, bias, out, stride, dilation, groups, pads, mode)
    x = np.ascontiguousarray(x)
    N = x.shape[0]
    K, Cg, KD, KH, _ = w.shape
    OD, OH, OW = out.shape[2:]
    Kg = K // groups
    sd = int(stride[0])
    dd, dh = int(dilation[0]), int(dilation[1])
    extra = (KH - 1) * dh
    T = -(-OW // 4)
    s = out.itemsize
    dt = out.dtype
    U = weight_transform(w, groups)
    parts_ = chunks(N * groups, OD, OH, KD, sd, dd, extra, Cg, T, s)
    before = np.array([b for b, _ in pads], dtype=np.int64)
    biasv = np.ascontiguousarray(bias, dtype=dt)
    cst = np.array([2, 4, 5, 8], dtype=dt)
    # the flat output for direct stores (store_slice), or an empty stand-in
    oflat = out.reshape(-1) if out.flags.c_contiguous else out[:0, :0, :0, :0, :0].ravel()
    merged = dd == 1  # the KD depth taps' rows are contiguous in V: one product
    prods: dict = {}  # (lc, width) -> (row, Gemm, pointer, arguments); the Gemm keeps them
    rows = []
    need = 0
    for d0, d1, h0, h1 in parts_:
        lc, width = (h1 - h0) * T, (h1 - h0 + extra) * T
        if (lc, width) not in prods:
            prod = blas.Gemm(dt, Kg, lc, KD * Cg if merged else Cg, lda=KD * Cg, ldb=width,
                             ldc=lc)
            prods[lc, width] = (len(prods), prod, *blas.numba_call(prod, beta_one=True))
        rows.append((d0, d1, h0, h1, prods[lc, width][0]))
        nz = (d1 - 1 - d0) * sd + (KD - 1) * dd + 1
        need = max(need, sum(-(-v // 16) * 16 for v in _task_lens.py_func(
            nz, Cg, Kg, width, lc, h1 - h0 + extra)))
    args = np.stack([p[3] for p in sorted(prods.values(), key=lambda p: p[0])])
    gemm = next(iter(prods.values()))[2]
    finite = np.ones(N * groups * len(rows), dtype=np.bool_)
    with np.errstate(invalid="ignore", over="ignore"), blas.single_threaded_blas():
        run_tasks(x, before, MODE_CODES[mode], sd, dd, dh, np.array(rows, dtype=np.int64), T,
                  extra, U, gemm, args, cst, biasv, out, oflat, scratch_rows(need, dt), finite)
    if not finite.all():
        return folded(x, w, bias, out, stride, dilation, groups, pads, mode)
    return out


# --- F(4, 5) along W for layers with a 1 x 1 x 5 kernel (1-D layers: C1) -----------------
#
# One row ``xpad[n, c, od*sd, oh*sh, :]`` per (channel, output row): the 4 outputs
# ``y[4t : 4t+4]`` of a row and output channel are ``A^T [(G w[k, c]) * (B^T xpad[4t : 4t+8])]``
# summed over the channels, so each of the 8 transform points is one product
# ``M[p] (Kg x tiles) = U[p] (Kg x Cg) @ V[p] (Cg x tiles)``: 8 multiplies per 4 outputs
# where the GEMM does 20 (2.5x fewer). A task (image, group, output row, chunk of tiles)
# copies its input segment into ``q`` split into the 4 phases ``q[i, u] = xpad[4(t0+u) + i]``
# (so every transform term is a unit-stride vector), transforms, multiplies and
# inverse-transforms into ``out``.


def cook_toom(m: int, r: int, points) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A^T, G, B^T)`` (float64) of the 1-D Winograd F(m, r) on the finite ``points`` and
    infinity: ``y = A^T [(G w) * (B^T d)]`` is the correlation of ``d`` (``m + r - 1``) with
    ``w`` (``r``). ``B^T`` solves the defining identity; its entries are multiples of 1/64."""
    a = m + r - 1
    pts = [float(f) for f in points]
    AT, G = np.zeros((m, a)), np.zeros((a, r))
    for p, f in enumerate(pts):
        norm = np.prod([f - g for q, g in enumerate(pts) if q != p])
        AT[:, p] = [f**i for i in range(m)]
        G[p] = [f**e / norm for e in range(r)]
    AT[m - 1, a - 1] = G[a - 1, r - 1] = 1
    A = np.einsum("ip,pe->iep", AT, G).reshape(m * r, a)
    rhs = np.array([[float(j == i + e) for j in range(a)] for i in range(m) for e in range(r)])
    BT = np.round(np.linalg.lstsq(A, rhs, rcond=None)[0] * 64) / 64
    assert np.allclose(A @ BT, rhs, rtol=0, atol=1e-12)
    return AT, G, BT


#: F(4, 5) on the points 0, +-1, +-2, +-1/2 and infinity.
_AT5, _G5, _BT5 = cook_toom(4, 5, (0, 1, -1, 2, -2, 0.5, -0.5))


@njit(**JIT_SERIAL)
def transform_cols(x, n, c0, pads, sd, sh, mode, od, oh, t0, q, V):
    """``V[p, c, u] = sum_j B^T[p, j] xpad[n, c0 + c, od*sd, oh*sh, 4(t0 + u) + j]``
    (F(4, 5), ``_BT5``) for ``u < V.shape[2]`` (``xpad``: ``x`` padded by ``pads``
    (before) in ``mode``), through the phase split ``q[i, u] = xpad[..., 4(t0 + u) + i]``
    (unit-stride vectors for every term)."""
    N, C, D, H, W = x.shape
    Cg, nt = V.shape[1], V.shape[2]
    nq = q.shape[1]
    w0 = 4 * t0 - pads[2]
    inside = w0 >= 0 and w0 + 4 * nq <= W
    ds = source_index(od * sd - pads[0], D, mode)
    hs = source_index(oh * sh - pads[1], H, mode)
    f05, f025, f125, f2 = np.float32(0.5), np.float32(0.25), np.float32(1.25), np.float32(2)
    f25, f4, f425, f5, f525 = (np.float32(2.5), np.float32(4), np.float32(4.25),
                               np.float32(5), np.float32(5.25))
    q0, q1, q2, q3 = q[0], q[1], q[2], q[3]
    for c in range(Cg):
        if ds < 0 or hs < 0:
            V[:, c, :] = 0
            continue
        src = x[n, c0 + c, ds, hs]
        if inside:
            seg = src[w0 : w0 + 4 * nq]
            for u in range(nq):
                q0[u] = seg[4 * u]
                q1[u] = seg[4 * u + 1]
                q2[u] = seg[4 * u + 2]
                q3[u] = seg[4 * u + 3]
        else:  # an edge chunk: source_index only outside [0, W)
            for u in range(nq):
                for i in range(4):
                    k = w0 + 4 * u + i
                    if k < 0 or k >= W:
                        k = source_index(k, W, mode)
                    q[i, u] = 0 if k < 0 else src[k]
        d0, d1, d2, d3 = V[0, c], V[1, c], V[2, c], V[3, c]
        d4, d5, d6, d7 = V[4, c], V[5, c], V[6, c], V[7, c]
        for u in range(nt):
            a0, a1, a2, a3 = q0[u], q1[u], q2[u], q3[u]
            a4, a5, a6, a7 = q0[u + 1], q1[u + 1], q2[u + 1], q3[u + 1]
            p = a2 - f425 * a4 + a6
            m = a1 - f425 * a3 + a5
            d1[u] = p + m
            d2[u] = p - m
            p = f025 * a2 - f125 * a4 + a6
            m = f05 * a1 - f25 * a3 + f2 * a5
            d3[u] = p + m
            d4[u] = p - m
            p = f4 * a2 - f5 * a4 + a6
            m = f2 * a1 - f25 * a3 + f05 * a5
            d5[u] = p + m
            d6[u] = p - m
            d0[u] = (a6 - a0) + f525 * (a2 - a4)
            d7[u] = (a7 - a1) + f525 * (a3 - a5)


@njit(**JIT_SERIAL)
def store_cols(M, bias, out, n, k0, od, oh, t0, y, acc):
    """``out[n, k0 + k, od, oh, 4(t0 + u) + i] = sum_p A^T[i, p] M[p, k, u] + bias[k]``
    (F(4, 5), ``_AT5``; columns < OW); returns whether every stored value is finite."""
    Kg, nt = M.shape[1], M.shape[2]
    OW = out.shape[4]
    w0 = 4 * t0
    full = min(nt, (OW - w0) // 4)
    f05, f025, f0125 = np.float32(0.5), np.float32(0.25), np.float32(0.125)
    f2, f4, f8 = np.float32(2), np.float32(4), np.float32(8)
    y0, y1, y2, y3 = y[0], y[1], y[2], y[3]
    acc[:] = 0
    for k in range(Kg):
        bk = bias[k]
        s0, s1, s2, s3 = M[0, k], M[1, k], M[2, k], M[3, k]
        s4, s5, s6, s7 = M[4, k], M[5, k], M[6, k], M[7, k]
        for u in range(nt):
            p12, m12 = s1[u] + s2[u], s1[u] - s2[u]
            p34, m34 = s3[u] + s4[u], s3[u] - s4[u]
            p56, m56 = s5[u] + s6[u], s5[u] - s6[u]
            v0 = (s0[u] + p12 + p34 + p56) + bk
            v1 = (m12 + f2 * m34 + f05 * m56) + bk
            v2 = (p12 + f4 * p34 + f025 * p56) + bk
            v3 = (m12 + f8 * m34 + f0125 * m56 + s7[u]) + bk
            y0[u], y1[u], y2[u], y3[u] = v0, v1, v2, v3
            acc[u] += (v0 + v1) + (v2 + v3)
        row = out[n, k0 + k, od, oh]
        dst = row[w0 : w0 + 4 * full]
        for u in range(full):
            dst[4 * u] = y0[u]
            dst[4 * u + 1] = y1[u]
            dst[4 * u + 2] = y2[u]
            dst[4 * u + 3] = y3[u]
        for o in range(w0 + 4 * full, min(OW, w0 + 4 * nt)):
            row[o] = y[(o - w0) % 4, (o - w0) // 4]
    return np.isfinite(acc.sum())


#: Tiles per task of :func:`correlate_cols` (its ``V`` and ``M`` about 2 x 256 KiB at 64
#: float32 channels).
COL_TILES = 128


@njit(**JIT_PARALLEL)
def cols_tasks(x, U, bias, out, pads, sd, sh, mode, parts, gemm, args, scratch, finite):
    """Every (image, group, output row, chunk of tiles) task of :func:`correlate_cols` as
    one iteration of one parallel region, in the running thread's scratch row: transform
    (:func:`transform_cols`), the 8 products ``M[p] = U[p, g] @ V[p]`` through the BLAS
    pointer ``gemm`` (``args`` rows: one per product shape), inverse transform into ``out``
    (:func:`store_cols`). ``parts`` rows are (t0, t1, ``args`` row); ``finite[i]``: whether
    iteration ``i``'s outputs are finite."""
    alpha, groups, Kg, Cg = U.shape
    m = 4
    ext = -(-(alpha - m) // m)
    N = x.shape[0]
    OH = out.shape[3]
    rows = out.shape[2] * OH
    nch = parts.shape[0]
    s = x.itemsize
    ua = U.ctypes.data
    for i in prange(N * groups * rows * nch):
        t0, t1, a = parts[i % nch, 0], parts[i % nch, 1], args[parts[i % nch, 2]]
        r = (i // nch) % rows
        g = (i // (nch * rows)) % groups
        n = i // (nch * rows * groups)
        nt = t1 - t0
        buf = scratch[get_thread_id()]
        V, o = _carve(buf, 0, alpha * Cg * nt)
        M, o = _carve(buf, o, alpha * Kg * nt)
        q, o = _carve(buf, o, m * (nt + ext))
        y, o = _carve(buf, o, m * nt)
        acc, o = _carve(buf, o, nt)
        V3, M3 = V.reshape((alpha, Cg, nt)), M.reshape((alpha, Kg, nt))
        transform_cols(x, n, g * Cg, pads, sd, sh, mode, r // OH, r % OH, t0,
                       q.reshape((m, nt + ext)), V3)
        va, ma = V.ctypes.data, M.ctypes.data
        for p in range(alpha):
            gemm(a[0], a[1], a[2], a[3], a[4], a[5], va + np.uint64(p * Cg * nt * s), a[6],
                 ua + np.uint64((p * groups + g) * Kg * Cg * s), a[7], a[8],
                 ma + np.uint64(p * Kg * nt * s), a[9])
        finite[i] = store_cols(M3, bias[g * Kg : (g + 1) * Kg], out, n, g * Kg, r // OH,
                               r % OH, t0, y.reshape((m, nt)), acc)


def correlate_cols(x, w, bias, out, stride, dilation, groups, pads, mode):
    """``out`` = the correlation of the unpadded ``x`` (padded by ``pads`` in ``mode``)
    with the 1 x 1 x 5 kernels ``w`` plus ``bias``, by F(4, 5) along W (see above); falls
    back to the folded GEMM where a weight or an output is not finite. The tasks run as
    one Numba parallel region (:func:`cols_tasks`)."""
    if not np.isfinite(w).all():
        return folded(x, w, bias, out, stride, dilation, groups, pads, mode)
    x = np.ascontiguousarray(x)
    N = x.shape[0]
    K, Cg = w.shape[:2]
    OD, OH, OW = out.shape[2:]
    Kg = K // groups
    dt = out.dtype
    alpha, m = _BT5.shape[0], _AT5.shape[0]
    U = np.einsum("pe,gkce->pgkc", _G5, w.astype(np.float64).reshape(groups, Kg, Cg, 5))
    U = np.ascontiguousarray(U, dtype=dt)
    T = -(-OW // m)
    nch = -(-T // COL_TILES)
    ext = -(-(alpha - m) // m)
    prods: dict = {}  # nt -> (row, Gemm, pointer, arguments); the Gemm keeps them alive
    parts_ = []
    need = 0
    for i in range(nch):
        t0, t1 = T * i // nch, T * (i + 1) // nch
        nt = t1 - t0
        if nt not in prods:
            prod = blas.Gemm(dt, Kg, nt, Cg, lda=Cg, ldb=nt, ldc=nt)
            prods[nt] = (len(prods), prod, *blas.numba_call(prod, beta_one=True))
        parts_.append((t0, t1, prods[nt][0]))
        need = max(need, sum(-(-v // 16) * 16 for v in (
            alpha * Cg * nt, alpha * Kg * nt, m * (nt + ext), m * nt, nt)))
    args = np.stack([p[3] for p in sorted(prods.values(), key=lambda p: p[0])])
    gemm = next(iter(prods.values()))[2]
    before = np.array([b for b, _ in pads], dtype=np.int64)
    finite = np.ones(N * groups * OD * OH * nch, dtype=np.bool_)
    with np.errstate(invalid="ignore", over="ignore"), blas.single_threaded_blas():
        cols_tasks(x, U, np.ascontiguousarray(bias, dtype=dt), out, before, int(stride[0]),
                   int(stride[1]), MODE_CODES[mode], np.array(parts_, dtype=np.int64), gemm,
                   args, scratch_rows(need, dt), finite)
    if not finite.all():
        return folded(x, w, bias, out, stride, dilation, groups, pads, mode)
    return out


def padding_core(pads, mode):
    """The GEMM algorithm's core for an input padded by ``pads`` in ``mode``: this module's
    :func:`correlate` where it :func:`applies`, else ``fastconv.cpu.gemm.padding_core``'s."""
    other = gemm_padding_core(pads, mode)

    def core(x, w, bias, out, stride, dilation, groups):
        if applies(w.shape, stride, dilation, groups):
            return correlate(x, w, bias, out, stride, dilation, groups, pads, mode)
        if applies_cols(w.shape, stride, dilation, groups):
            return correlate_cols(x, w, bias, out, stride, dilation, groups, pads, mode)
        return other(x, w, bias, out, stride, dilation, groups)

    return core
