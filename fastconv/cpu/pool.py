"""Max and average pooling on 5-D arrays ``(N, C, D, H, W)``, forward and backward.

Padding never materialises: each window is clipped to the input (max pooling pads with
-inf, average pooling counts padding only through its divisor).

- Forward values are separable: one task per output depth plane ``(n, c, od)`` reduces
  its depth taps into a plane, the H taps into ``(OH, W)`` rows (contiguous rows,
  vectorized), then the W taps straight into the output row.
- Max indices (``return_indices`` and the backward pass) scan each window in row-major
  order with PyTorch's rule ``v > m or isnan(v)``: the first maximum wins a tie, a NaN
  wins over everything (the last NaN in the window).
- Backward is race-free without atomics: max scatters per ``(n, c)`` volume (one task
  owns a whole input volume; it finds each window's first maximum itself, a whole
  output row at a time: the window's rows reduce column-wise, then its columns combine
  by an order equal to PyTorch's row-major scan; no index array is stored), average
  gathers per input plane ``(n, c, id)`` (each gx row by column phase, from the
  covering output rows).
- 3x3 windows at stride 2 (the CNN stem's max pool) take :func:`max_pool_grad_3s2`: one
  pass per plane, rows split by column parity once, each window's maximum and first
  position in explicit vectors, three row accumulators streamed out as rows finish (no
  scratch volume: large planes no longer spill the cache); the same sums in the same order.
- ``MaxPool2d``'s 3x3 stride-2 windows: :func:`max_pool_codes_3s2` pools and keeps each
  window's winner as one uint8 (instead of a copy of x); :func:`max_pool_codes_grad_3s2`
  is the gradient from those codes and g alone (the same sums, rows streamed out).
- Stride-2 windows 2-3 wide read only the columns they use (interleaved loads) rather
  than reducing every column and gathering every second one; the stride-2 average
  gradient (windows 2-4 wide) writes each gx row from two contiguous rows (its even and
  odd columns), with no per-row array views.

Threads: every kernel is a serial ``nogil`` loop over a range of independent tasks; its
``*_par`` form runs ``numba.get_num_threads()`` contiguous task ranges in one ``prange``
region (:func:`_split`; small calls stay on the calling thread). The kernels themselves stay
serial functions called from the region, so the parallel passes compile only the few-line
wrapper (a whole ``prange`` kernel compiled 3-4x slower). Python worker threads did this
before: in the bursts of a training step or the bench (sleep, then a few calls) they woke
too slowly to gain from a second core, while OpenMP's workers, spinning between regions,
did (the layer's max-pool backward: 2.0 against 3.7 ms). Each task writes its own outputs
with a fixed sequence of operations, so results are bit-identical for any thread count. A
child forked after OpenMP started runs every call serially (GNU OpenMP would terminate it).
"""

from __future__ import annotations

import os
import time

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.ufunc import parallel as numba_parallel

from fastconv._config import JIT_ORDERED, JIT_SERIAL
from fastconv.cpu.microkernel import (
    LANES32,
    LANES64,
    vadd_eq,
    vdeinterleave,
    vinterleave,
    vload,
    vload_bytes,
    vmax,
    vpick_eq,
    vsplat,
    vstore,
)

#: Tasks the forward kernels aim for (row blocks split planes when there are few).
PLANE_TASKS = 64

#: Below this many input + output elements a call runs on the calling thread only.
SERIAL_ELEMENTS = 1 << 15

#: Max-pooling backward (3x3, stride 2): gradient rows are staged up to this many bytes,
#: then streamed to memory in one run (row-sized runs of non-temporal stores between the
#: loads ran at a fifth of the speed: write-combining buffers flushed part-filled).
STAGE_BYTES = 16 << 10

#: Average-pooling backward: the most W taps per column phase (``ceil(kw / sw)``) the
#: phase-sum kernel takes; longer columns keep the per-column loop (its sums' order).
LONG_COVER = 3

_forked_after_omp = False


def _after_fork() -> None:
    """In a forked child: whether the parent had started Numba's OpenMP workers (GNU
    OpenMP then terminates the child at its first parallel region)."""
    global _forked_after_omp
    _forked_after_omp = _forked_after_omp or bool(numba_parallel._is_initialized)


os.register_at_fork(after_in_child=_after_fork)


def _chunks(ntasks: int, elements: int) -> int:
    """Task ranges for a call of ``ntasks`` tasks over ``elements`` input + output elements:
    one per thread; 1 (the calling thread alone) for small calls and in a child forked
    after OpenMP started."""
    if elements < SERIAL_ELEMENTS or _forked_after_omp:
        return 1
    return max(1, min(numba.get_num_threads(), ntasks))


def _split(kernel, par, ntasks: int, elements: int, *args) -> None:
    """``kernel(*args, lo, hi)`` over contiguous task ranges covering ``[0, ntasks)``: one
    range per thread in ``par``'s ``prange`` region (``par(*args, ntasks, nchunks)``), or
    ``kernel(*args, 0, ntasks)`` on the calling thread when :func:`_chunks` says 1. Each
    task writes its own outputs with a fixed sequence of operations: the same bytes for
    any split."""
    nchunks = _chunks(ntasks, elements)
    if nchunks <= 1:
        kernel(*args, 0, ntasks)
    else:
        par(*args, ntasks, nchunks)


@intrinsic
def _stream(typingctx, dst, i, v):
    """``dst[i] = v`` (1-D ``dst``, ``0 <= i``) as a non-temporal store: the line is written
    without first being read (no read for ownership), as ``memcpy`` does for large
    copies. Call :func:`_fence` before the data is handed on."""
    if not isinstance(dst, types.Array) or dst.ndim != 1:
        return None
    sig = types.void(dst, types.intp, dst.dtype)

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer2(
            context, builder, ary.data, cgutils.unpack_tuple(builder, ary.shape),
            cgutils.unpack_tuple(builder, ary.strides), sig.args[0].layout, [args[1]],
            wraparound=False)
        store = builder.store(args[2], ptr)
        store.set_metadata("nontemporal", builder.module.add_metadata(
            [ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _stream_line(typingctx, dst, i, src, j):
    """``dst[i : i + 8] = src[j : j + 8]`` (1-D uint64 arrays) as one 64-byte
    non-temporal vector store: ``dst[i]`` must be 64-byte aligned."""
    if not all(isinstance(a, types.Array) and a.ndim == 1 and a.dtype == types.uint64
               for a in (dst, src)):
        return None
    sig = types.void(dst, types.intp, src, types.intp)

    def codegen(context, builder, sig, args):
        vty = ir.VectorType(ir.IntType(64), 8)
        ptrs = []
        for a, k in ((0, 1), (2, 3)):
            ary = context.make_array(sig.args[a])(context, builder, args[a])
            ptrs.append(builder.bitcast(builder.gep(ary.data, [args[k]]), vty.as_pointer()))
        v = builder.load(ptrs[1], align=8)
        store = builder.store(v, ptrs[0], align=64)
        store.set_metadata("nontemporal", builder.module.add_metadata(
            [ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _fence(typingctx):
    """A full memory fence (orders the non-temporal stores before what follows)."""
    def codegen(context, builder, sig, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


@njit(inline="always", **JIT_SERIAL)
def _u(i):
    """``i`` as an unsigned index: Numba then skips its negative-index wraparound (a
    select per element that keeps LLVM from contiguous vector loads)."""
    return np.uint64(i)


@njit(inline="always", **JIT_SERIAL)
def _taps(start, k, dil, n):
    """Taps ``r`` in ``[lo, hi)`` with ``0 <= start + r*dil < n`` (empty when hi <= lo)."""
    lo = 0 if start >= 0 else (dil - 1 - start) // dil
    hi = min(k, (n - 1 - start) // dil + 1)
    return lo, hi


def _row_blocks(planes, nrows):
    """Rows per task and tasks per plane: whole planes when there are many, else row
    blocks, so that a single image still splits over the threads."""
    nrb = min(nrows, max(1, (PLANE_TASKS + planes - 1) // planes))
    rb = (nrows + nrb - 1) // nrb
    return rb, (nrows + rb - 1) // rb


def _row_buffer(W, OW, k, s, p, dil):
    """Length of the padded one-row buffer: ``p`` pad columns, the ``W`` input columns,
    then pad columns up to the last tap of the last window (ceil_mode may reach past)."""
    return max(p + W, (OW - 1) * s + (k - 1) * dil + 1)


@njit(**JIT_SERIAL)
def max_pool_values(x, out, kernel, stride, pads, dilation, nbuf, RB, nrb, t_lo, t_hi):
    """out[n, c, o] = max over the window's taps inside x (NaN wins; empty window: -inf).

    Tasks ``[t_lo, t_hi)`` of (n, c, od, block of ``RB`` output rows; ``nrb`` blocks per
    plane). Each output row takes the max of its
    depth and H taps (in (h, d) order) into a row buffer padded with -inf (``nbuf``
    long), then the max of its W taps at every column, contiguous and vectorized, and
    keeps every ``stride``-th column. Generic in rank, stride and dilation: one compiled
    kernel per dtype."""
    N, C, D, H, W = x.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    kd, kh, kw = kernel[0], kernel[1], kernel[2]
    sd, sh, sw = stride[0], stride[1], stride[2]
    pd, ph, pw = pads[0], pads[1], pads[2]
    dd, dh, dw = dilation[0], dilation[1], dilation[2]
    nh_cols = (OW - 1) * sw + 1
    for t in range(t_lo, t_hi):
        rb = t % nrb
        p = t // nrb
        n, c, od = p // (OD * C), (p // OD) % C, p % OD
        d0 = od * sd - pd
        dlo, dhi = _taps(d0, kd, dd, D)
        buf = np.empty(nbuf, dtype=x.dtype)
        for j in range(nbuf):
            buf[j] = -np.inf
        row = buf[pw : pw + W]
        hm = np.empty(nh_cols, dtype=x.dtype)
        for oh in range(rb * RB, min(OH, rb * RB + RB)):
            h0 = oh * sh - ph
            hlo, hhi = _taps(h0, kh, dh, H)
            if hhi <= hlo or dhi <= dlo:
                for j in range(W):
                    row[j] = -np.inf
            elif dhi - dlo == 1 and hhi - hlo == 3:  # 3x3 windows: the H taps in one pass
                r0 = x[n, c, d0 + dlo * dd, h0 + hlo * dh]
                r1 = x[n, c, d0 + dlo * dd, h0 + (hlo + 1) * dh]
                r2 = x[n, c, d0 + dlo * dd, h0 + (hlo + 2) * dh]
                for j in range(W):
                    u, v, w = r0[j], r1[j], r2[j]
                    u = v if (v > u) | (v != v) else u
                    row[j] = w if (w > u) | (w != w) else u
                hhi = hlo  # done
            for b in range(hlo, hhi):
                for a in range(dlo, dhi):
                    src = x[n, c, d0 + a * dd, h0 + b * dh]
                    if b == hlo and a == dlo:
                        for j in range(W):
                            row[j] = src[j]
                    else:
                        for j in range(W):
                            u, v = row[j], src[j]
                            row[j] = v if (v > u) | (v != v) else u
            if sw == 2 and dw == 1 and (kw == 3 or kw == 2):  # only the used windows
                orow = out[n, c, od, oh]  # (one pass, no gathers of every 2nd column)
                if kw == 3:
                    for o in range(OW):
                        u, v, w = buf[2 * o], buf[2 * o + 1], buf[2 * o + 2]
                        u = v if (v > u) | (v != v) else u
                        orow[o] = w if (w > u) | (w != w) else u
                else:
                    for o in range(OW):
                        u, v = buf[2 * o], buf[2 * o + 1]
                        orow[o] = v if (v > u) | (v != v) else u
                continue
            if kw == 3:  # the W taps in one pass
                for j in range(nh_cols):
                    u, v, w = buf[j], buf[j + dw], buf[j + 2 * dw]
                    u = v if (v > u) | (v != v) else u
                    hm[j] = w if (w > u) | (w != w) else u
            else:
                for j in range(nh_cols):
                    hm[j] = buf[j]
                for r in range(1, kw):
                    seg = buf[r * dw : r * dw + nh_cols]
                    for j in range(nh_cols):
                        u, v = hm[j], seg[j]
                        hm[j] = v if (v > u) | (v != v) else u
            orow = out[n, c, od, oh]
            for o in range(OW):
                orow[o] = hm[o * sw]


@njit(**JIT_SERIAL)
def max_pool_indices(x, out, idx, kernel, stride, pads, dilation, mark_empty, t_lo, t_hi):
    """Max pooling with PyTorch-style flat indices into each input volume ``(D*H*W)``.

    A window with no tap inside ``x`` gives -inf and PyTorch's index (its first taps
    moved into range), or -1 when ``mark_empty`` (the backward pass skips those).
    """
    N, C, D, H, W = x.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    kd, kh, kw = kernel[0], kernel[1], kernel[2]
    sd, sh, sw = stride[0], stride[1], stride[2]
    pd, ph, pw = pads[0], pads[1], pads[2]
    dd, dh, dw = dilation[0], dilation[1], dilation[2]
    for t in range(t_lo, t_hi):  # one task per output row (n, c, od, oh)
        oh = t % OH
        od = (t // OH) % OD
        c = (t // (OH * OD)) % C
        n = t // (OH * OD * C)
        d0, h0 = od * sd - pd, oh * sh - ph
        dlo, dhi = _taps(d0, kd, dd, D)
        hlo, hhi = _taps(h0, kh, dh, H)
        vol = x[n, c]
        orow, irow = out[n, c, od, oh], idx[n, c, od, oh]
        for ow in range(OW):
            w0 = ow * sw - pw
            wlo, whi = _taps(w0, kw, dw, W)
            best = -np.inf
            at = ((d0 + dlo * dd) * H + h0 + hlo * dh) * W + w0 + wlo * dw
            if mark_empty and (dhi <= dlo or hhi <= hlo or whi <= wlo):
                at = -1
            for a in range(dlo, dhi):
                i = d0 + a * dd
                for b in range(hlo, hhi):
                    j = h0 + b * dh
                    row = vol[i, j]
                    for e in range(wlo, whi):
                        v = row[w0 + e * dw]
                        if v > best or v != v:
                            best = v
                            at = (i * H + j) * W + w0 + e * dw
            orow[ow] = best
            irow[ow] = at


@njit(error_model="numpy", **JIT_SERIAL)  # (no zero-divisor branch: vector divisions)
def avg_pool_sums(x, out, kernel, stride, pads, div_d, div_h, div_w, nbuf, RB, nrb, t_lo,
                  t_hi):
    """out[n, c, od, oh, ow] = (sum of the window inside x) / (div_d[od]*div_h[oh]*div_w[ow]).

    Tasks ``[t_lo, t_hi)`` as :func:`max_pool_values`. Each output row sums its H taps (of
    ``0 + depth taps`` for 3-D) into a row buffer padded with zeros (``nbuf`` long), then
    its W taps at every column (contiguous, vectorized) and keeps every ``stride``-th
    column. A window that reaches past the input sums its taps in float64, as the
    clipped loop always did (so float32 results keep their bits)."""
    N, C, D, H, W = x.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    kd, kh, kw = kernel[0], kernel[1], kernel[2]
    sd, sh, sw = stride[0], stride[1], stride[2]
    pd, ph, pw = pads[0], pads[1], pads[2]
    nh_cols = (OW - 1) * sw + 1
    # outputs [a, b) have every W tap inside x
    a = min(OW, (pw + sw - 1) // sw)
    b = max(a, min(OW, (W - 1 + pw - (kw - 1)) // sw + 1))
    for t in range(t_lo, t_hi):
        rb = t % nrb
        p = t // nrb
        n, c, od = p // (OD * C), (p // OD) % C, p % OD
        d0 = od * sd - pd
        dlo, dhi = _taps(d0, kd, 1, D)
        buf = np.zeros(nbuf, dtype=x.dtype)
        row = buf[pw : pw + W]
        depth = np.empty(W if dhi - dlo != 1 else 0, dtype=x.dtype)
        hm = np.empty(nh_cols, dtype=x.dtype)
        for oh in range(rb * RB, min(OH, rb * RB + RB)):
            h0 = oh * sh - ph
            hlo, hhi = _taps(h0, kh, 1, H)
            if dhi - dlo == 1 and hhi - hlo == 3:  # 3-row windows: one pass, same order
                i, hr = d0 + dlo, h0 + hlo  # (no row views: their reference counting)
                for j in range(W):
                    row[j] = x[n, c, i, hr, j] + x[n, c, i, hr + 1, j] + x[n, c, i, hr + 2, j]
                hhi = hlo  # done
            elif dhi - dlo == 1 and hhi - hlo == 2:  # 2-row windows: one pass, same order
                i = d0 + dlo
                r0, r1 = x[n, c, i, h0 + hlo], x[n, c, i, h0 + hlo + 1]
                for j in range(W):
                    row[j] = r0[j] + r1[j]
                hhi = hlo  # done
            for h in range(hlo, hhi):
                if dhi - dlo == 1:  # every 1-D/2-D call: the input row itself
                    src = x[n, c, d0 + dlo, h0 + h]
                else:  # 0 + the depth taps, as a plane of depth sums would hold
                    for j in range(W):
                        depth[j] = 0
                    for e in range(dlo, dhi):
                        seg = x[n, c, d0 + e, h0 + h]
                        for j in range(W):
                            depth[j] += seg[j]
                    src = depth
                if h == hlo:
                    for j in range(W):
                        row[j] = src[j]
                else:
                    for j in range(W):
                        row[j] += src[j]
            f = div_d[od] * div_h[oh]
            if kw == 3 and sw == 2:  # 3-wide/2: the used windows only, same order
                for o in range(b - a):
                    q = _u(2 * (a + o))
                    out[n, c, od, oh, _u(a + o)] = (
                        (buf[q] + buf[q + 1] + buf[q + 2]) / (f * div_w[_u(a + o)]))
                for o in range(OW - (b - a)):  # windows past the input: float64 sums
                    o = o if o < a else o + (b - a)
                    lo, hi = _taps(2 * o - pw, 3, 1, W)
                    acc = 0.0
                    for r in range(lo, hi):
                        acc += row[2 * o - pw + r]
                    hm[0] = acc
                    out[n, c, od, oh, o] = hm[0] / (f * div_w[o])
                continue
            orow = out[n, c, od, oh]
            if kw == 2 and sw == 2 and b - a == OW:  # 2-wide/2: each output from its pair
                for o in range(OW):
                    orow[o] = (buf[2 * o] + buf[2 * o + 1]) / (f * div_w[o])
                continue
            if kw == 3:  # one pass, same order
                for j in range(nh_cols):
                    hm[j] = buf[j] + buf[j + 1] + buf[j + 2]
            else:
                for j in range(nh_cols):
                    hm[j] = buf[j]
                for r in range(1, kw):
                    seg = buf[r : r + nh_cols]
                    for j in range(nh_cols):
                        hm[j] += seg[j]
            for o in range(OW - (b - a)):  # windows past the input: float64 sums
                q = (o if o < a else o + (b - a)) * sw
                lo, hi = _taps(q - pw, kw, 1, W)
                acc = 0.0
                for r in range(lo, hi):
                    acc += row[q - pw + r]
                hm[q] = acc
            for o in range(OW):
                orow[o] = hm[o * sw] / (f * div_w[o])


@njit(inline="always", **JIT_SERIAL)
def _later_wins(xv, xi, yv, yi):
    """Whether ``(yv, yi)`` beats ``(xv, xi)`` for PyTorch's row-major scan of a window
    (``v > m or isnan(v)``), given as a total order: a NaN beats every number and a later
    NaN (larger flat index) an earlier one; among numbers the larger value, then the
    smaller flat index (the first maximum). Branch-free (vectorizes)."""
    return ((yv != yv) & ((xv == xv) | (yi > xi))) | (
        (xv == xv) & ((yv > xv) | ((yv == xv) & (yi < xi))))


@njit(**JIT_SERIAL)
def max_pool_grad(x, g, gx, kernel, stride, pads, dilation, nbuf, at_like, t_lo, t_hi):
    """gx[n, c] = 0, then each g[n, c, o] added at its window's first maximum (NaN wins,
    PyTorch's rule; a window with no tap inside ``x`` sends nothing); ``gx`` is
    ``(N*C, D*H*W)``. One task per input volume ``(n, c)`` (race-free; the volume stays
    in cache while it is zeroed and added to). Per output row, contiguous and
    vectorized: the window's rows (in row-major order) reduce column-wise to each
    column's winner and its flat index, in a row buffer padded (``nbuf`` long) with -inf
    at index ``D*H*W`` (never a winner); the ``kw`` columns of every window then
    combine by :func:`_later_wins` (the same winner as the row-major scan), and the
    adds go in output order, as the scan-and-add loop did (the same sums, bit for bit)."""
    N, C, D, H, W = x.shape
    OD, OH, OW = g.shape[2], g.shape[3], g.shape[4]
    kd, kh, kw = kernel[0], kernel[1], kernel[2]
    sd, sh, sw = stride[0], stride[1], stride[2]
    pd, ph, pw = pads[0], pads[1], pads[2]
    dd, dh, dw = dilation[0], dilation[1], dilation[2]
    size = D * H * W  # the padding's index: past every input
    nh_cols = (OW - 1) * sw + 1
    vb = np.empty(nbuf, dtype=x.dtype)
    vi = np.empty(nbuf, dtype=at_like.dtype)
    for j in range(nbuf):
        vb[j] = -np.inf
        vi[j] = size
    rb, ri = vb[pw : pw + W], vi[pw : pw + W]
    hb = np.empty(nh_cols, dtype=x.dtype)
    hi = np.empty(nh_cols, dtype=at_like.dtype)
    cols = np.empty(W, dtype=at_like.dtype)  # the column numbers, in the index dtype
    for w in range(W):
        cols[w] = w
    base_t = np.empty(1, dtype=at_like.dtype)
    gv = np.empty(size, dtype=x.dtype)
    wide = (size * x.itemsize) % 8 == 0  # the volume as 64-bit words
    words = size * x.itemsize // 8
    gv64 = gv.view(np.uint64) if wide else np.empty(0, np.uint64)
    gx64 = gx.reshape(gx.size).view(np.uint64) if wide else np.empty(0, np.uint64)
    for t in range(t_lo, t_hi):
        n, c = t // C, t % C
        vol = x[n, c]
        gv[:] = 0  # (a cached scratch volume, streamed into gx at the end)
        for od in range(OD):
            d0 = od * sd - pd
            dlo, dhi = _taps(d0, kd, dd, D)
            for oh in range(OH):
                h0 = oh * sh - ph
                hlo, hhi = _taps(h0, kh, dh, H)
                if dhi <= dlo or hhi <= hlo:
                    continue
                if dhi - dlo == 1 and hhi - hlo == 3:  # 3-row windows: one fused pass
                    i = d0 + dlo * dd
                    j = h0 + hlo * dh
                    r0, r1, r2 = vol[i, j], vol[i, j + dh], vol[i, j + 2 * dh]
                    base_t[0] = (i * H + j) * W
                    b0 = base_t[0]
                    base_t[0] = (i * H + j + dh) * W
                    b1 = base_t[0]
                    base_t[0] = (i * H + j + 2 * dh) * W
                    b2 = base_t[0]
                    for w in range(W):
                        u, v, z = r0[w], r1[w], r2[w]
                        k = cols[w]
                        tv = (v > u) | (v != v)
                        u = v if tv else u
                        bu = b1 if tv else b0  # (the row's base, then one add)
                        tz = (z > u) | (z != z)
                        rb[w] = z if tz else u
                        ri[w] = (b2 if tz else bu) + k
                else:
                    for a in range(dlo, dhi):
                        i = d0 + a * dd
                        for b in range(hlo, hhi):
                            j = h0 + b * dh
                            src = vol[i, j]
                            base_t[0] = (i * H + j) * W
                            base = base_t[0]  # (index-dtype lanes beside the values)
                            if a == dlo and b == hlo:
                                for w in range(W):
                                    rb[w] = src[w]
                                    ri[w] = base + cols[w]
                            else:
                                for w in range(W):
                                    v, m = src[w], rb[w]
                                    take = (v > m) | (v != v)
                                    rb[w] = v if take else m
                                    ri[w] = base + cols[w] if take else ri[w]
                grow = g[n, c, od, oh]
                if kw == 3 and sw == 2 and dw == 1:  # the used windows only, in one pass
                    for ow in range(OW):
                        xv, xi = vb[2 * ow], vi[2 * ow]
                        yv, yi = vb[2 * ow + 1], vi[2 * ow + 1]
                        take = _later_wins(xv, xi, yv, yi)
                        xv = yv if take else xv
                        xi = yi if take else xi
                        yv, yi = vb[2 * ow + 2], vi[2 * ow + 2]
                        take = _later_wins(xv, xi, yv, yi)
                        hi[ow] = yi if take else xi
                    for ow in range(OW):
                        q = hi[ow]
                        if q < size:
                            gv[q] += grow[ow]
                    continue
                for q in range(nh_cols):
                    hb[q] = vb[q]
                    hi[q] = vi[q]
                for e in range(1, kw):
                    seg_b, seg_i = vb[e * dw : e * dw + nh_cols], vi[e * dw : e * dw + nh_cols]
                    for q in range(nh_cols):
                        xv, xi, yv, yi = hb[q], hi[q], seg_b[q], seg_i[q]
                        take = _later_wins(xv, xi, yv, yi)
                        hb[q] = yv if take else xv
                        hi[q] = yi if take else xi
                for ow in range(OW):
                    q = hi[ow * sw]
                    if q < size:
                        gv[q] += grow[ow]
        if wide:
            for m in range(words):
                _stream(gx64, t * words + m, gv64[m])
        else:
            for m in range(size):
                gx[t, m] = gv[m]
    _fence()


@njit(inline="always", **JIT_ORDERED)
def _col3(r0, r1, r2, t0, t1, t2, j):
    """Column ``j``'s maximum over rows r0, r1, r2 scanned in that order (``v > m or
    isnan(v)``) and the tap key (``t0``/``t1``/``t2``) of the row it came from."""
    u, v, z = r0[j], r1[j], r2[j]
    tv = (v > u) | (v != v)
    u = v if tv else u
    tu = t1 if tv else t0
    tz = (z > u) | (z != z)
    return (z if tz else u), (t2 if tz else tu)


@njit(inline="always", **JIT_ORDERED)
def _right_wins(xv, xt, yv, yt):
    """:func:`_later_wins` for ``y`` in a later column of the window than ``x``, with
    row keys ``xt``/``yt`` (monotone in the row): ``y`` is later in the row-major scan
    unless its row is earlier."""
    return ((yv != yv) & ((xv == xv) | (yt >= xt))) | (
        (xv == xv) & ((yv > xv) | ((yv == xv) & (yt < xt))))


@njit(inline="always", **JIT_ORDERED)
def _mx(a, b):
    """The larger of two numbers (no NaN)."""
    return b if b > a else a


@njit(inline="always", **JIT_ORDERED)
def _edge_window(r0, r1, r2, t0, t1, t2, j0, W, keys):
    """The winner's key ``3*b + c`` of the window on columns ``j0 .. j0 + 2`` (some
    outside ``[0, W)``: padding, never a winner), NaN-aware, as in the NaN path."""
    none = keys[9]
    xv, xt = r0[0], none  # (overwritten: the window holds at least one column)
    xc = keys[0]
    first = True
    for c in range(3):
        j = j0 + c
        if j < 0 or j >= W:
            continue
        yv, yt = _col3(r0, r1, r2, t0, t1, t2, j)
        if first or _right_wins(xv, xt, yv, yt):
            xv, xt, xc = yv, yt, keys[c]
            first = False
    return none if first else xt + xc


@njit(inline="always", **JIT_SERIAL)
def _split_row(src, dA, dB, pw, nblk, jt, lanes):
    """Columns of the input row ``src`` split by parity for 3x3 stride-2 windows: column
    ``2k`` to ``ev[k]``, ``2k + 1`` to ``od[k + pw]`` (``ev, od`` = ``dA, dB``, swapped
    when ``pw``); whether the row holds a NaN."""
    ev, od = (dB, dA) if pw else (dA, dB)
    W = src.shape[0]
    bad = False
    if nblk:
        for k in range(nblk):
            bad |= vdeinterleave(src, 2 * lanes * k, ev, lanes * k, od, lanes * k + pw)
        bad |= vdeinterleave(src, jt, ev, jt // 2, od, jt // 2 + pw)
        j0 = W - W % 2
    else:
        j0 = 0
    for j in range(j0, W):
        v = src[j]
        bad |= v != v
        if j % 2:
            od[j // 2 + pw] = v
        else:
            ev[j // 2] = v
    return bad


@njit(**JIT_ORDERED)
def max_pool_grad_3s2(x, g, gx, ph, pw, keys, consts, wide, lead, lanes, t_lo, t_hi):
    """:func:`max_pool_grad` for 3x3 windows at stride 2 (dilation 1, pads 0 or 1) on
    planes: ``x`` ``(P, H, W)``, ``g`` ``(P, OH, OW)``, ``gx`` ``(P, H*W)``. Each plane is
    read once and its gradient written once, a row at a time (no scratch volume).

    The padded columns ``q = j + pw`` split by parity (``E[m]`` is ``q = 2m``, ``O[m]``
    is ``q = 2m + 1``), so that window ``m`` holds ``E[m], O[m], E[m+1]``, all contiguous.
    Per output row, each window's winner as a key ``3*b + c`` (row ``b``, column ``c``;
    ``keys``: 0..8 in the index dtype, then 300, never matched, for none): in a plane
    without NaN, the window's maximum and its first position in row-major order, on
    rows split by parity once (:func:`vdeinterleave`) into a ring of 3; with a NaN, each
    column's winner over the rows, then over the columns by :func:`_right_wins` (first
    maximum, last NaN; windows on padding take this path too). Then each of the window's
    3 input rows (``acc`` rows 0-2, by parity: E in 0-2, O in 3-5) adds, per column, the
    ``g`` of the windows whose winner it is, in output order: the same additions in the
    same order as adding each ``g`` at its index from zero. Rows no later window covers
    are staged and streamed to ``gx`` in runs of :data:`STAGE_BYTES` (as 64-bit words
    when ``wide``: rows of whole, aligned words; else plain stores); the third row moves
    up to the first. Loops run to multiples of 16 over padded buffers (no scalar
    remainders); one accumulator array with fixed rows (no runtime alias checks)."""
    P, H, W = x.shape
    OH, OW = g.shape[1], g.shape[2]
    M = OW + 1
    Mp = (M + 15) // 16 * 16
    none = keys[9]
    zero, ninf = consts[0], consts[1]  # (0, -inf) in x's dtype
    vE = np.empty(M, x.dtype)
    vO = np.empty(M, x.dtype)
    tE = np.empty(M, keys.dtype)
    tO = np.empty(M, keys.dtype)
    mlo = pw  # windows [mlo, mhi) of the NaN path's contiguous columns; [wlo, whi)
    mhi = max(mlo, min(M, (W + pw) // 2))  # hold only input columns
    wlo, whi = pw, max(pw, min(OW, (W - 3 + pw) // 2 + 1))
    n16 = (whi - wlo + 15) // 16 * 16
    nk = max(Mp, wlo + n16) + 2
    kp = np.empty(nk, keys.dtype)  # winner keys, kp[m + 1] for window m
    gp = np.zeros(nk, x.dtype)  # g row, gp[m + 1] for window m
    for m in range(nk):
        kp[m] = none
    nd = max(wlo + n16 + 1, (W + 1) // 2 + 1 + lanes)
    dA = np.zeros((3, nd), x.dtype)  # input row i's columns q = 2m in dA[i % 3, m],
    dB = np.zeros((3, nd), x.dtype)  # q = 2m + 1 in dB[i % 3, m]
    acc = np.empty((6, Mp), x.dtype)
    a0, a1, a2, a3, a4, a5 = acc[0], acc[1], acc[2], acc[3], acc[4], acc[5]
    nst = max(1, STAGE_BYTES // (W * x.itemsize))  # rows staged, then streamed together
    stage = np.empty((nst, W), x.dtype)
    nw = W * x.itemsize // 8
    st64 = stage.reshape(stage.size).view(np.uint64) if wide else np.empty(0, np.uint64)
    gx64 = gx.reshape(gx.size).view(np.uint64) if wide else np.empty(0, np.uint64)
    k00, k01, k02, k10, k11, k12 = keys[0], keys[1], keys[2], keys[3], keys[4], keys[5]
    k20, k21, k22 = keys[6], keys[7], keys[8]
    K00, K01, K02, K10, K11, K12 = vsplat(k00), vsplat(k01), vsplat(k02), vsplat(k10), \
        vsplat(k11), vsplat(k12)
    K20, K21, K22 = vsplat(k20), vsplat(k21), vsplat(k22)
    nblk = W // (2 * lanes)
    jt = W - W % 2 - 2 * lanes  # the last whole block (even start, may overlap)
    qk = np.empty(9, keys.dtype)
    rnan = np.zeros(3, np.bool_)  # whether ring row i % 3 holds a NaN
    for t in range(t_lo, t_hi):
        for m in range(Mp):
            a0[m] = zero
            a1[m] = zero
            a2[m] = zero
            a3[m] = zero
            a4[m] = zero
            a5[m] = zero
        done = 0  # rows [0, done) written to gx (or staged: the last ``cnt``)
        cnt = 0
        ready = 0  # rows [0, ready) split by parity
        for oh in range(OH + 1):
            h0 = 2 * oh - ph
            last = oh == OH
            nxt = min(h0 + 3, H)
            for i in range(ready, nxt):
                rnan[i % 3] = _split_row(x[t, i], dA[i % 3], dB[i % 3], pw, nblk, jt, lanes)
            ready = max(ready, nxt)
            hlo, hhi = _taps(h0, 3, 1, H)
            if not last and hhi > hlo:
                # the window's rows in scan order; missing ones repeat the last
                # (same value, same key: no change, NaN included)
                b1 = min(hlo + 1, hhi - 1)
                b2 = hhi - 1
                r0, r1, r2 = x[t, h0 + hlo], x[t, h0 + b1], x[t, h0 + b2]
                t0, t1, t2 = keys[3 * hlo], keys[3 * b1], keys[3 * b2]
                s0, s1, s2 = (h0 + hlo) % 3, (h0 + b1) % 3, (h0 + b2) % 3
                if not (rnan[s0] or rnan[s1] or rnan[s2]):
                    for c in range(3):  # (kept in the index dtype)
                        qk[c], qk[3 + c], qk[6 + c] = t0 + keys[c], t1 + keys[c], t2 + keys[c]
                    q0, q1, q2, q3, q4, q5 = qk[0], qk[1], qk[2], qk[3], qk[4], qk[5]
                    q6, q7, q8 = qk[6], qk[7], qk[8]
                    da0, db0 = dA[s0, wlo:], dB[s0, wlo:]
                    da1, db1 = dA[s1, wlo:], dB[s1, wlo:]
                    da2, db2 = dA[s2, wlo:], dB[s2, wlo:]
                    kw = kp[wlo + 1:]
                    Q0, Q1, Q2, Q3, Q4 = vsplat(q0), vsplat(q1), vsplat(q2), vsplat(q3), vsplat(q4)
                    Q5, Q6, Q7, Q8 = vsplat(q5), vsplat(q6), vsplat(q7), vsplat(q8)
                    for blk in range(n16 // lanes):
                        e = blk * lanes
                        u0, u1, u2 = vload(da0, e), vload(db0, e), vload(da0, e + 1)
                        v0, v1, v2 = vload(da1, e), vload(db1, e), vload(da1, e + 1)
                        w0, w1, w2 = vload(da2, e), vload(db2, e), vload(da2, e + 1)
                        mx = vmax(vmax(vmax(u0, u1), vmax(u2, v0)),
                                  vmax(vmax(v1, v2), vmax(vmax(w0, w1), w2)))
                        k = vpick_eq(w1, mx, Q7, Q8)
                        k = vpick_eq(w0, mx, Q6, k)
                        k = vpick_eq(v2, mx, Q5, k)
                        k = vpick_eq(v1, mx, Q4, k)
                        k = vpick_eq(v0, mx, Q3, k)
                        k = vpick_eq(u2, mx, Q2, k)
                        k = vpick_eq(u1, mx, Q1, k)
                        vstore(kw, e, vpick_eq(u0, mx, Q0, k))
                    for m in range(OW, nk - 1):
                        kp[m + 1] = none
                    for e in range(OW - (whi - wlo)):  # windows on padding
                        m = e if e < wlo else e + whi - wlo
                        kp[m + 1] = _edge_window(r0, r1, r2, t0, t1, t2, 2 * m - pw, W, keys)
                else:
                    s0 = r0[2 * mlo - pw:]
                    s1 = r1[2 * mlo - pw:]
                    s2 = r2[2 * mlo - pw:]
                    ve, vo, te, to = vE[mlo:], vO[mlo:], tE[mlo:], tO[mlo:]
                    for e in range(mhi - mlo):
                        ve[e], te[e] = _col3(s0, s1, s2, t0, t1, t2, 2 * e)
                        vo[e], to[e] = _col3(s0, s1, s2, t0, t1, t2, 2 * e + 1)
                    for e in range(M - (mhi - mlo)):  # the edges: padding, odd widths
                        m = e if e < mlo else e + mhi - mlo
                        j = 2 * m - pw
                        vE[m], tE[m] = ninf, none
                        vO[m], tO[m] = ninf, none
                        if j >= 0 and j < W:
                            vE[m], tE[m] = _col3(r0, r1, r2, t0, t1, t2, j)
                        if j + 1 >= 0 and j + 1 < W:
                            vO[m], tO[m] = _col3(r0, r1, r2, t0, t1, t2, j + 1)
                    for m in range(OW):
                        xv, xt, yv, yt = vE[m], tE[m], vO[m], tO[m]
                        take = _right_wins(xv, xt, yv, yt)
                        xv = yv if take else xv
                        xt = yt if take else xt
                        xc = k01 if take else k00
                        yv, yt = vE[m + 1], tE[m + 1]
                        take = _right_wins(xv, xt, yv, yt)
                        kp[m + 1] = (yt if take else xt) + (k02 if take else xc)
                    for m in range(OW, nk - 1):
                        kp[m + 1] = none
                for m in range(OW):
                    gp[m + 1] = g[t, oh, m]
                if hhi - hlo == 3:  # the three rows in one pass
                    for blk in range(Mp // lanes):
                        m = blk * lanes
                        p, q = vload(kp, m), vload(kp, m + 1)
                        gl, gr = vload(gp, m), vload(gp, m + 1)
                        vstore(a0, m, vadd_eq(q, K00, vadd_eq(p, K02, vload(a0, m), gl), gr))
                        vstore(a3, m, vadd_eq(q, K01, vload(a3, m), gr))
                        vstore(a1, m, vadd_eq(q, K10, vadd_eq(p, K12, vload(a1, m), gl), gr))
                        vstore(a4, m, vadd_eq(q, K11, vload(a4, m), gr))
                        vstore(a2, m, vadd_eq(q, K20, vadd_eq(p, K22, vload(a2, m), gl), gr))
                        vstore(a5, m, vadd_eq(q, K21, vload(a5, m), gr))
                else:
                    for b in range(hlo, hhi):
                        c0, c1, c2 = keys[3 * b], keys[3 * b + 1], keys[3 * b + 2]
                        ae, ao = (a0, a3) if b == 0 else ((a1, a4) if b == 1 else (a2, a5))
                        for m in range(Mp):
                            a = ae[m]
                            a = a + gp[m] if kp[m] == c2 else a
                            ae[m] = a + gp[m + 1] if kp[m + 1] == c0 else a
                            a = ao[m]
                            ao[m] = a + gp[m + 1] if kp[m + 1] == c1 else a
            fin = H if last else min(h0 + 2, H)  # rows no later window covers
            for i in range(done, fin):
                row = stage[cnt]
                ae, ao = (a0, a3) if i == h0 else (a1, a4)
                ev, od, eo = (ao, ae, 1) if pw else (ae, ao, 0)  # columns 2k, 2k + 1
                if nblk:
                    for k in range(nblk):
                        vinterleave(ev, lanes * k, od, lanes * k + eo, row, 2 * lanes * k)
                    vinterleave(ev, jt // 2, od, jt // 2 + eo, row, jt)
                    j0 = W - W % 2
                else:
                    j0 = 0
                for j in range(j0, W):
                    row[j] = od[j // 2 + eo] if j % 2 else ev[j // 2]
                cnt += 1
                if cnt == nst or i == H - 1:
                    i0 = i + 1 - cnt
                    if wide:  # words to a 64-byte boundary, whole lines, the rest
                        base = (t * H + i0) * nw
                        n = cnt * nw
                        h = min(n, (lead - base) % 8)
                        for k in range(h):
                            _stream(gx64, base + k, st64[k])
                        for k in range((n - h) // 8):
                            _stream_line(gx64, base + h + 8 * k, st64, h + 8 * k)
                        for k in range(h + (n - h) // 8 * 8, n):
                            _stream(gx64, base + k, st64[k])
                    else:
                        for r in range(cnt):
                            for k in range(W):
                                gx[t, (i0 + r) * W + k] = stage[r, k]
                    cnt = 0
            done = max(done, fin)
            a0, a2, a3, a5 = a2, a0, a5, a3  # the third row becomes the next window's first
            for m in range(Mp):
                a1[m] = zero
                a2[m] = zero
                a4[m] = zero
                a5[m] = zero
    _fence()


@njit(inline="always", **JIT_ORDERED)
def _edge_value(r0, r1, r2, j0, W, ninf):
    """:func:`max_pool_values`' value of the window on columns ``j0 .. j0 + 2`` (rows r0,
    r1, r2; columns outside ``[0, W)`` are -inf): each column's rows in order, then the
    columns in order, by ``v > m or isnan(v)`` (the same bits)."""
    m = ninf
    for c in range(3):
        j = j0 + c
        v = ninf
        if j >= 0 and j < W:
            v, u, z = r0[j], r1[j], r2[j]
            v = u if (u > v) | (u != u) else v
            v = z if (z > v) | (z != z) else v
        m = v if c == 0 or (v > m) | (v != v) else m
    return m


@njit(**JIT_ORDERED)
def max_pool_codes_3s2(x, out, code, ph, pw, keys, consts, lanes, t_lo, t_hi):
    """3x3 max pooling at stride 2 (dilation 1, pads 0 or 1) of planes ``x`` ``(P, H, W)``
    into ``out`` ``(P, OH, OW)``, with each window's winner in ``code`` ``(P, OH,
    code_width(OW))`` at ``code[p, oh, ow + 1]`` (uint8 ``3*b + c`` from the window's
    corner, padding included; 255 for none, and in the row's other bytes: the backward
    loads whole vectors of them): the first maximum in
    row-major order, the last NaN (PyTorch's rule, the position ``grad.max_pool2d``
    sends the gradient to). ``out`` holds :func:`max_pool_values`' bits (each column's
    rows, then the columns, in order).

    The winners as in :func:`max_pool_grad_3s2`: input rows split by column parity once
    into a ring of 3 (:func:`vdeinterleave`, which flags NaN); in NaN-free rows the
    window's maximum by :func:`vmax` in ``max_pool_values``' order and the first tap
    equal to it (:func:`vpick_eq`, float keys); rows with a NaN and windows on padding
    per window by the scalar rules (:func:`_edge_window`, :func:`_edge_value`)."""
    P, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    none = keys[9]
    ninf = consts[1]
    wlo, whi = pw, max(pw, min(OW, (W - 3 + pw) // 2 + 1))  # windows inside the columns
    n16 = (whi - wlo + 15) // 16 * 16
    nk = max(OW, wlo + n16) + 2
    kp = np.empty(nk, keys.dtype)  # winner keys, kp[m + 1] for window m
    vp = np.empty(nk, x.dtype)  # maxima, vp[m + 1] for window m
    nd = max(wlo + n16 + 1, (W + 1) // 2 + 1 + lanes)
    dA = np.zeros((3, nd), x.dtype)  # input row i's columns q = 2m in dA[i % 3, m],
    dB = np.zeros((3, nd), x.dtype)  # q = 2m + 1 in dB[i % 3, m] (q = j + pw)
    nblk = W // (2 * lanes)
    jt = W - W % 2 - 2 * lanes  # the last whole block (even start, may overlap)
    qk = np.empty(9, keys.dtype)
    rnan = np.zeros(3, np.bool_)  # whether ring row i % 3 holds a NaN
    for t in range(t_lo, t_hi):
        ready = 0  # rows [0, ready) split by parity
        for oh in range(OH):
            h0 = 2 * oh - ph
            nxt = min(h0 + 3, H)
            for i in range(ready, nxt):
                rnan[i % 3] = _split_row(x[t, i], dA[i % 3], dB[i % 3], pw, nblk, jt, lanes)
            ready = max(ready, nxt)
            hlo, hhi = _taps(h0, 3, 1, H)
            orow, crow = out[t, oh], code[t, oh]
            if hhi <= hlo:  # (no window lies in the padding alone: kept for safety)
                for m in range(OW):
                    orow[m] = ninf
                for m in range(code.shape[2]):
                    crow[m] = 255
                continue
            # the window's rows in scan order; missing ones repeat the last (same value,
            # same key: no change, NaN included)
            b1 = min(hlo + 1, hhi - 1)
            b2 = hhi - 1
            r0, r1, r2 = x[t, h0 + hlo], x[t, h0 + b1], x[t, h0 + b2]
            t0, t1, t2 = keys[3 * hlo], keys[3 * b1], keys[3 * b2]
            s0, s1, s2 = (h0 + hlo) % 3, (h0 + b1) % 3, (h0 + b2) % 3
            if rnan[s0] or rnan[s1] or rnan[s2]:
                lo, hi = 0, 0  # every window by the scalar rules
            else:
                lo, hi = wlo, whi
                for c in range(3):  # (kept in the index dtype)
                    qk[c], qk[3 + c], qk[6 + c] = t0 + keys[c], t1 + keys[c], t2 + keys[c]
                Q0, Q1, Q2, Q3 = vsplat(qk[0]), vsplat(qk[1]), vsplat(qk[2]), vsplat(qk[3])
                Q4, Q5, Q6, Q7 = vsplat(qk[4]), vsplat(qk[5]), vsplat(qk[6]), vsplat(qk[7])
                Q8 = vsplat(qk[8])
                da0, db0 = dA[s0, wlo:], dB[s0, wlo:]
                da1, db1 = dA[s1, wlo:], dB[s1, wlo:]
                da2, db2 = dA[s2, wlo:], dB[s2, wlo:]
                kw, vw = kp[wlo + 1:], vp[wlo + 1:]
                for blk in range(n16 // lanes):
                    e = blk * lanes
                    u0, u1, u2 = vload(da0, e), vload(db0, e), vload(da0, e + 1)
                    v0, v1, v2 = vload(da1, e), vload(db1, e), vload(da1, e + 1)
                    w0, w1, w2 = vload(da2, e), vload(db2, e), vload(da2, e + 1)
                    mx = vmax(vmax(vmax(vmax(u0, v0), w0), vmax(vmax(u1, v1), w1)),
                              vmax(vmax(u2, v2), w2))
                    k = vpick_eq(w1, mx, Q7, Q8)
                    k = vpick_eq(w0, mx, Q6, k)
                    k = vpick_eq(v2, mx, Q5, k)
                    k = vpick_eq(v1, mx, Q4, k)
                    k = vpick_eq(v0, mx, Q3, k)
                    k = vpick_eq(u2, mx, Q2, k)
                    k = vpick_eq(u1, mx, Q1, k)
                    vstore(kw, e, vpick_eq(u0, mx, Q0, k))
                    vstore(vw, e, mx)
            for e in range(OW - (hi - lo)):  # windows on padding, or rows with a NaN
                m = e if e < lo else e + hi - lo
                j0 = 2 * m - pw
                kp[m + 1] = _edge_window(r0, r1, r2, t0, t1, t2, j0, W, keys)
                vp[m + 1] = _edge_value(r0, r1, r2, j0, W, ninf)
            for m in range(OW):
                orow[m] = vp[m + 1]
                k = kp[m + 1]
                crow[m + 1] = np.uint8(k) if k != none else np.uint8(255)
            crow[0] = 255
            for m in range(OW + 1, code.shape[2]):
                crow[m] = 255


@njit(**JIT_ORDERED)
def max_pool_codes_grad_3s2(g, code, gx, H, W, ph, pw, keys, consts, wide, lead, lanes,
                            t_lo, t_hi):
    """The gradient of :func:`max_pool_codes_3s2` from its ``code`` ``(P, OH, OW)``:
    ``gx`` ``(P, H*W)`` = 0, then each ``g`` added at its window's winner, in output order
    (the sums of ``grad.max_pool2d``, bit for bit), without reading ``x``. The second half
    of :func:`max_pool_grad_3s2`: per output row, each of the window's 3 input rows
    (``acc`` rows 0-2 by parity: E in 0-2, O in 3-5) adds, per column, the ``g`` of the
    windows whose winner it is (:func:`vadd_eq`); rows no later window covers are
    staged and streamed to ``gx`` (:data:`STAGE_BYTES`, 64-byte non-temporal lines when
    ``wide``); the third row moves up to the first. gx is written once, never read."""
    P, OH, OW = g.shape
    Mp = (OW + 1 + 15) // 16 * 16
    zero = consts[0]
    nk = Mp + 2
    gp = np.zeros(nk, g.dtype)  # g row, gp[m + 1] for window m
    CW = code.shape[2]
    g1, c1 = g.reshape(g.size), code.reshape(code.size)  # (flat: no per-row views)
    acc = np.zeros(6 * Mp, g.dtype)  # 6 rows at offsets o0..o5 (swapped as numbers)
    nst = max(1, STAGE_BYTES // (W * g.itemsize))  # rows staged, then streamed together
    stage = np.empty(nst * W, g.dtype)
    nw = W * g.itemsize // 8
    st64 = stage.view(np.uint64) if wide else np.empty(0, np.uint64)
    gx64 = gx.reshape(gx.size).view(np.uint64) if wide else np.empty(0, np.uint64)
    K00, K01, K02, K10, K11, K12 = vsplat(keys[0]), vsplat(keys[1]), vsplat(keys[2]), \
        vsplat(keys[3]), vsplat(keys[4]), vsplat(keys[5])
    K20, K21, K22 = vsplat(keys[6]), vsplat(keys[7]), vsplat(keys[8])
    Z = vsplat(zero)
    nblk = W // (2 * lanes)
    jt = W - W % 2 - 2 * lanes  # the last whole block (even start, may overlap)
    for t in range(t_lo, t_hi):
        for blk in range(6 * Mp // lanes):
            vstore(acc, blk * lanes, Z)
        o0, o1, o2, o3, o4, o5 = 0, Mp, 2 * Mp, 3 * Mp, 4 * Mp, 5 * Mp
        done = 0  # rows [0, done) written to gx (or staged: the last ``cnt``)
        cnt = 0
        for oh in range(OH + 1):
            h0 = 2 * oh - ph
            last = oh == OH
            hlo, hhi = _taps(h0, 3, 1, H)
            if not last and hhi > hlo:
                base = (t * OH + oh) * OW
                cb = (t * OH + oh) * CW  # (codes padded with 255: none, never a key)
                for m in range(OW):
                    gp[m + 1] = g1[_u(base + m)]
                if hhi - hlo == 3:  # the three rows in one pass
                    for blk in range(Mp // lanes):
                        m = blk * lanes
                        p, q = vload_bytes(c1, cb + m, zero), vload_bytes(c1, cb + m + 1, zero)
                        gl, gr = vload(gp, m), vload(gp, m + 1)
                        vstore(acc, o0 + m, vadd_eq(q, K00, vadd_eq(p, K02, vload(acc, o0 + m),
                                                                     gl), gr))
                        vstore(acc, o3 + m, vadd_eq(q, K01, vload(acc, o3 + m), gr))
                        vstore(acc, o1 + m, vadd_eq(q, K10, vadd_eq(p, K12, vload(acc, o1 + m),
                                                                     gl), gr))
                        vstore(acc, o4 + m, vadd_eq(q, K11, vload(acc, o4 + m), gr))
                        vstore(acc, o2 + m, vadd_eq(q, K20, vadd_eq(p, K22, vload(acc, o2 + m),
                                                                     gl), gr))
                        vstore(acc, o5 + m, vadd_eq(q, K21, vload(acc, o5 + m), gr))
                else:
                    for b in range(hlo, hhi):
                        c0, c1_, c2 = keys[3 * b], keys[3 * b + 1], keys[3 * b + 2]
                        oe, oo = (o0, o3) if b == 0 else ((o1, o4) if b == 1 else (o2, o5))
                        for m in range(Mp):
                            p, q = c1[cb + m], c1[cb + m + 1]
                            a = acc[oe + m]
                            a = a + gp[m] if p == c2 else a
                            acc[oe + m] = a + gp[m + 1] if q == c0 else a
                            a = acc[oo + m]
                            acc[oo + m] = a + gp[m + 1] if q == c1_ else a
            fin = H if last else min(h0 + 2, H)  # rows no later window covers
            for i in range(done, fin):
                oe, oo = (o0, o3) if i == h0 else (o1, o4)
                ev, od = (oo, oe + 1) if pw else (oe, oo)  # columns 2k, 2k + 1
                at = cnt * W
                if nblk:
                    for k in range(nblk):
                        vinterleave(acc, ev + lanes * k, acc, od + lanes * k, stage,
                                    at + 2 * lanes * k)
                    vinterleave(acc, ev + jt // 2, acc, od + jt // 2, stage, at + jt)
                    j0 = W - W % 2
                else:
                    j0 = 0
                for j in range(j0, W):
                    stage[at + j] = acc[od + j // 2] if j % 2 else acc[ev + j // 2]
                cnt += 1
                if cnt == nst or i == H - 1:
                    i0 = i + 1 - cnt
                    if wide:  # words to a 64-byte boundary, whole lines, the rest
                        base = (t * H + i0) * nw
                        n = cnt * nw
                        h = min(n, (lead - base) % 8)
                        for k in range(h):
                            _stream(gx64, base + k, st64[k])
                        for k in range((n - h) // 8):
                            _stream_line(gx64, base + h + 8 * k, st64, h + 8 * k)
                        for k in range(h + (n - h) // 8 * 8, n):
                            _stream(gx64, base + k, st64[k])
                    else:
                        for k in range(cnt * W):
                            gx[t, i0 * W + k] = stage[k]
                    cnt = 0
            done = max(done, fin)
            o0, o2, o3, o5 = o2, o0, o5, o3  # the third row becomes the next window's first
            for blk in range(Mp // lanes):
                m = blk * lanes
                vstore(acc, o1 + m, Z)
                vstore(acc, o2 + m, Z)
                vstore(acc, o4 + m, Z)
                vstore(acc, o5 + m, Z)
    _fence()



@njit(parallel=True, **JIT_ORDERED)
def max_pool_grad_3s2_par(x, g, gx, ph, pw, keys, consts, wide, lead, lanes, nchunks):
    """:func:`max_pool_grad_3s2` over ``nchunks`` contiguous plane ranges in one
    ``prange`` region, as :func:`max_pool_codes_grad_3s2_par` (the same bytes for any
    thread count)."""
    P = x.shape[0]
    for c in prange(nchunks):
        max_pool_grad_3s2(x, g, gx, ph, pw, keys, consts, wide, lead, lanes,
                          P * c // nchunks, P * (c + 1) // nchunks)


@njit(parallel=True, **JIT_ORDERED)
def max_pool_codes_grad_3s2_par(g, code, gx, H, W, ph, pw, keys, consts, wide, lead, lanes,
                                nchunks):
    """:func:`max_pool_codes_grad_3s2` over ``nchunks`` contiguous plane ranges in one
    ``prange`` region (OpenMP workers spin between regions: the layer's backward comes in
    bursts, where Python worker threads woke too slowly to gain from the second core).
    Each plane is computed alone: the same bytes for any thread count."""
    P = g.shape[0]
    for c in prange(nchunks):
        max_pool_codes_grad_3s2(g, code, gx, H, W, ph, pw, keys, consts, wide, lead, lanes,
                                P * c // nchunks, P * (c + 1) // nchunks)

@njit(inline="always", **JIT_SERIAL)
def _interleave(acc, dst, pw, s):
    """dst[e] = acc[q % s, q // s] for column ``q = e + pw`` (rounded to dst's dtype): the
    phases back in column order; strides 1 and 2 by contiguous loads (no gathers)."""
    n = dst.shape[0]
    if s == 1:
        src = acc[0, pw : pw + n]
        for e in range(n):
            dst[e] = src[e]
    elif s == 2:
        r0, r1 = acc[pw % 2, pw // 2 :], acc[(pw + 1) % 2, (pw + 1) // 2 :]
        for m in range(n // 2):
            dst[2 * m] = r0[m]
            dst[2 * m + 1] = r1[m]
        if n % 2:
            dst[n - 1] = r0[n // 2]
    else:
        for e in range(n):
            q = e + pw
            dst[e] = acc[q % s, q // s]


@njit(inline="always", **JIT_SERIAL)
def _covering_row(planes, lo, hi, OH, c0, ncols):
    """The row of ``planes`` holding the sum of plane rows ``lo..hi-1`` (output order) over
    columns ``c0 .. c0+ncols-1``: row OH + 1 (zeros) when none covers, row ``lo`` when one
    does, else their sum written into row OH."""
    if hi - lo == 0:
        return OH + 1
    if hi - lo == 1:
        return lo
    for ow in range(ncols):
        planes[OH, _u(c0 + ow)] = planes[lo, _u(c0 + ow)]
    for oh in range(lo + 1, hi):
        for ow in range(ncols):
            planes[OH, _u(c0 + ow)] += planes[oh, _u(c0 + ow)]
    return OH


@njit(error_model="numpy", **JIT_SERIAL)  # (no zero-divisor branch: vector divisions)
def avg_pool_grad(g, gx, cover_d, cover_h, kernel, stride, pads, div_d, div_h, div_w, nbuf,
                  t_lo, t_hi):
    """gx[n, c, i] = sum over windows o holding input i of g[n, c, o] / divisor(o);
    ``cover_*[i]`` is the range [lo, hi) of outputs whose window holds input i. One task
    per input plane ``(n, c, id)``: depth taps and divisors into an ``(OH, OW)`` plane
    (sums in output order), then per input row the covering output rows into one row
    (the same), then the columns. Column ``q = e + pw`` of the padded row (``nbuf``
    columns) sums, in float64 and in output order, the row's entries ``ow`` with ``q = ow*sw + r``
    for a tap ``r``; by phase ``ph = q % sw`` (taps ``r = ph, ph + sw, ...``) these are
    contiguous, vectorized sums of shifted copies of the zero-padded row (adding 0.0
    changes no float64 sum), interleaved back into column order. Where a column sums at
    most two entries (``kw <= 2*sw``) the sums run in the row's dtype: one rounding of
    the exact sum of two floats, what the float64 sum gives once rounded."""
    N, C, OD, OH, OW = g.shape
    D, H = gx.shape[2], gx.shape[3]
    kw, sw, pw = kernel[2], stride[2], pads[2]
    M = (nbuf + sw - 1) // sw  # columns per phase
    T = (kw + sw - 1) // sw  # the most taps of a phase
    short = T <= 2
    # plane rows padded like the row, planes[oh, T - 1 + ow]; then a row for sums of
    # several, and a zero row (the rows are picked by number: no per-row array views,
    # whose reference counting cost more than the row's arithmetic)
    planes = np.zeros((OH + 2, M + T), dtype=g.dtype)
    acc = np.zeros((sw, M), dtype=np.float64)
    acc_s = np.zeros((sw, M), dtype=g.dtype)
    for t in range(t_lo, t_hi):
        i = t % D
        c = (t // D) % C
        n = t // (D * C)
        for oh in range(OH):
            planes[oh, T - 1 : T - 1 + OW] = 0
        for od in range(cover_d[i, 0], cover_d[i, 1]):
            for oh in range(OH):
                f = div_d[od] * div_h[oh]
                dst, src = planes[oh, T - 1 : T - 1 + OW], g[n, c, od, oh]
                for ow in range(OW):
                    dst[ow] += src[ow] / (f * div_w[ow])
        for j in range(H):
            r = _covering_row(planes, cover_h[j, 0], cover_h[j, 1], OH, T - 1, OW)
            row = planes[r]
            dst = gx[n, c, i, j]
            for ph in range(min(sw, kw)):
                taps = (kw - ph + sw - 1) // sw
                if short:
                    a = acc_s[ph]
                    s1 = row[T - 1 : T - 1 + M]
                    if taps == 2:
                        s0 = row[T - 2 : T - 2 + M]
                        for m in range(M):
                            a[m] = s0[m] + s1[m]
                    else:
                        for m in range(M):
                            a[m] = s1[m]
                else:
                    a64 = acc[ph]
                    for m in range(M):
                        a64[m] = 0.0
                    for u in range(taps - 1, -1, -1):  # tap ph + u*sw: output m - u
                        seg = row[T - 1 - u : T - 1 - u + M]
                        for m in range(M):
                            a64[m] += seg[m]
            # (phases kw..sw-1, which no tap reaches, stay zero)
            if short:
                _interleave(acc_s, dst, pw, sw)
            else:
                _interleave(acc, dst, pw, sw)


@njit(error_model="numpy", **JIT_SERIAL)  # (no zero-divisor branch: vector divisions)
def avg_pool_grad_pairs(g, gx, cover_d, cover_h, kernel, pads, div_d, div_h, div_w, t_lo,
                        t_hi):
    """:func:`avg_pool_grad` for stride-2 W windows 2-4 wide (each column sums 1 or 2
    entries of the row), the same operations in the same order, with
    no array view per row (a view's reference counting cost more than a 112-column row's
    arithmetic) and no wraparound selects: the plane's scaled rows, per input row the sum
    of its covering rows, the even and odd columns into two contiguous rows, then
    interleaved into gx (float32: one 64-bit word per pair)."""
    N, C, OD, OH, OW = g.shape
    D, H, W = gx.shape[2], gx.shape[3], gx.shape[4]
    kw, pw = kernel[2], pads[2]
    T = (kw + 1) // 2  # 1 or 2: the most taps of a phase
    t0, t1 = (kw - pw % 2 + 1) // 2, (kw - (pw + 1) % 2 + 1) // 2
    i0, i1 = T - 1 + pw // 2, T - 1 + (pw + 1) // 2
    n2, odd_w = W // 2, W % 2
    M = n2 + 2
    planes = np.zeros((OH + 2, OW + M + 2), dtype=g.dtype)  # [oh, T - 1 + ow]; sum; zero
    ev = np.zeros(M, dtype=g.dtype)
    od_ = np.zeros(M, dtype=g.dtype)
    pack = gx.itemsize == 4 and W % 2 == 0
    e32, o32 = ev.view(np.uint32), od_.view(np.uint32)
    gx64 = gx.reshape(gx.size).view(np.uint64) if pack else np.empty(0, np.uint64)
    for t in range(t_lo, t_hi):
        i = t % D
        c = (t // D) % C
        n = t // (D * C)
        for oh in range(OH):
            for ow in range(OW):
                planes[oh, _u(T - 1 + ow)] = 0
        for od in range(cover_d[i, 0], cover_d[i, 1]):
            for oh in range(OH):
                f = div_d[od] * div_h[oh]
                for ow in range(OW):
                    planes[oh, _u(T - 1 + ow)] += g[n, c, od, oh, ow] / (f * div_w[ow])
        gp = gx[n, c, i]
        for j in range(H):
            r = _covering_row(planes, cover_h[j, 0], cover_h[j, 1], OH, T - 1, OW)
            if t0 == 1:
                for m in range(n2 + odd_w):
                    ev[m] = planes[r, _u(i0 + m)]
            else:
                for m in range(n2 + odd_w):
                    ev[m] = planes[r, _u(i0 - 1 + m)] + planes[r, _u(i0 + m)]
            if t1 == 1:
                for m in range(n2):
                    od_[m] = planes[r, _u(i1 + m)]
            else:
                for m in range(n2):
                    od_[m] = planes[r, _u(i1 - 1 + m)] + planes[r, _u(i1 + m)]
            if pack:  # (streamed: gx is written, never read)
                at = (t * H + j) * n2
                for m in range(n2):
                    _stream(gx64, at + m,
                            np.uint64(e32[m]) | (np.uint64(o32[m]) << np.uint64(32)))
            else:
                for m in range(n2):
                    gp[j, 2 * m] = ev[m]
                    gp[j, 2 * m + 1] = od_[m]
                if odd_w:
                    gp[j, W - 1] = ev[n2]
    _fence()


@njit(**JIT_SERIAL)
def avg_pool_grad_long(g, gx, cover_d, cover_h, cover_w, div_d, div_h, div_w, t_lo, t_hi):
    """:func:`avg_pool_grad` for windows with more than ``LONG_COVER`` W taps per column
    phase (``ceil(kw / sw)``): the same, each column a float64 loop over its covering
    outputs (a loop LLVM may vectorize, reordering the sum: kept, so such results keep
    their bits). ``cover_*[i]`` is the range [lo, hi) of outputs whose window holds
    input ``i``."""
    N, C, OD, OH, OW = g.shape
    D, H, W = gx.shape[2], gx.shape[3], gx.shape[4]
    for t in range(t_lo, t_hi):
        i = t % D
        c = (t // D) % C
        n = t // (D * C)
        planes = np.zeros((OH, OW), dtype=g.dtype)
        for od in range(cover_d[i, 0], cover_d[i, 1]):
            for oh in range(OH):
                f = div_d[od] * div_h[oh]
                dst, src = planes[oh], g[n, c, od, oh]
                for ow in range(OW):
                    dst[ow] += src[ow] / (f * div_w[ow])
        row = np.empty(OW, dtype=g.dtype)
        for j in range(H):
            row[:] = 0
            for oh in range(cover_h[j, 0], cover_h[j, 1]):
                src = planes[oh]
                for ow in range(OW):
                    row[ow] += src[ow]
            dst = gx[n, c, i, j]
            for e in range(W):
                acc = 0.0
                for ow in range(cover_w[e, 0], cover_w[e, 1]):
                    acc += row[ow]
                dst[e] = acc


# --- prange forms: contiguous task ranges, one per thread, in one parallel region ----------
# (OpenMP workers spin between regions: in the bursts of a training step or the bench the
# Python worker threads these replaced woke too slowly to gain from the second core)


@njit(parallel=True, **JIT_ORDERED)
def max_pool_values_par(x, out, kernel, stride, pads, dilation, nbuf, RB, nrb, ntasks,
                        nchunks):
    for c in prange(nchunks):
        max_pool_values(x, out, kernel, stride, pads, dilation, nbuf, RB, nrb,
                        ntasks * c // nchunks, ntasks * (c + 1) // nchunks)


@njit(parallel=True, **JIT_ORDERED)
def max_pool_indices_par(x, out, idx, kernel, stride, pads, dilation, mark_empty, ntasks,
                         nchunks):
    for c in prange(nchunks):
        max_pool_indices(x, out, idx, kernel, stride, pads, dilation, mark_empty,
                         ntasks * c // nchunks, ntasks * (c + 1) // nchunks)


@njit(parallel=True, **JIT_ORDERED)
def avg_pool_sums_par(x, out, kernel, stride, pads, div_d, div_h, div_w, nbuf, RB, nrb,
                      ntasks, nchunks):
    for c in prange(nchunks):
        avg_pool_sums(x, out, kernel, stride, pads, div_d, div_h, div_w, nbuf, RB, nrb,
                      ntasks * c // nchunks, ntasks * (c + 1) // nchunks)


@njit(parallel=True, **JIT_ORDERED)
def max_pool_codes_3s2_par(x, out, code, ph, pw, keys, consts, lanes, ntasks, nchunks):
    for c in prange(nchunks):
        max_pool_codes_3s2(x, out, code, ph, pw, keys, consts, lanes,
                           ntasks * c // nchunks, ntasks * (c + 1) // nchunks)


@njit(parallel=True, **JIT_ORDERED)
def max_pool_grad_par(x, g, gx, kernel, stride, pads, dilation, nbuf, at_like, ntasks,
                      nchunks):
    for c in prange(nchunks):
        max_pool_grad(x, g, gx, kernel, stride, pads, dilation, nbuf, at_like,
                      ntasks * c // nchunks, ntasks * (c + 1) // nchunks)


@njit(parallel=True, **JIT_ORDERED)
def avg_pool_grad_par(g, gx, cover_d, cover_h, kernel, stride, pads, div_d, div_h, div_w,
                      nbuf, ntasks, nchunks):
    for c in prange(nchunks):
        avg_pool_grad(g, gx, cover_d, cover_h, kernel, stride, pads, div_d, div_h, div_w,
                      nbuf, ntasks * c // nchunks, ntasks * (c + 1) // nchunks)


@njit(parallel=True, **JIT_ORDERED)
def avg_pool_grad_pairs_par(g, gx, cover_d, cover_h, kernel, pads, div_d, div_h, div_w,
                            ntasks, nchunks):
    for c in prange(nchunks):
        avg_pool_grad_pairs(g, gx, cover_d, cover_h, kernel, pads, div_d, div_h, div_w,
                            ntasks * c // nchunks, ntasks * (c + 1) // nchunks)


@njit(parallel=True, **JIT_ORDERED)
def avg_pool_grad_long_par(g, gx, cover_d, cover_h, cover_w, div_d, div_h, div_w, ntasks,
                           nchunks):
    for c in prange(nchunks):
        avg_pool_grad_long(g, gx, cover_d, cover_h, cover_w, div_d, div_h, div_w,
                           ntasks * c // nchunks, ntasks * (c + 1) // nchunks)


def _ints(values) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _divisors(divisors, dtype) -> tuple:
    return tuple(np.array(d, dtype=dtype) for d in divisors)


def max_pool(x, out, indices, kernel, stride, pads, dilation) -> None:
    """Fill ``out`` (and ``indices`` unless None) for 5-D contiguous ``x``."""
    k, s, p, d = _ints(kernel), _ints(stride), _ints(pads), _ints(dilation)
    size = x.size + out.size
    if indices is None:
        nbuf = _row_buffer(x.shape[4], out.shape[4], kernel[2], stride[2], pads[2],
                           dilation[2])
        planes = out.shape[0] * out.shape[1] * out.shape[2]
        rb, nrb = _row_blocks(planes, out.shape[3])
        args = (x, out, k, s, p, d, nbuf, rb, nrb)
        if size <= COLD_NUMPY_ELEMENTS and x.dtype.kind == "f":
            from fastconv.cpu import small

            nchunks = _chunks(planes * nrb, size)  # (the prange form too, when it runs)
            if not small._compiled(("max_pool", nchunks > 1), (x, out), lambda: [
                    (max_pool_values, (*args, 0, 1)),
                    *([(max_pool_values_par, (*args, planes * nrb, nchunks))]
                      if nchunks > 1 else [])]):
                t0 = time.perf_counter()
                max_pool_numpy(x, out, kernel, stride, pads, dilation)
                small._TIER["seconds"] += time.perf_counter() - t0
                return
        _split(max_pool_values, max_pool_values_par, planes * nrb, size, *args)
    else:
        _split(max_pool_indices, max_pool_indices_par, out.size // out.shape[4], size, x, out,
               indices, k, s, p, d, False)


#: Largest pooling (input + output elements) that runs :func:`max_pool_numpy` while
#: ``max_pool_values`` is neither compiled nor cached (``fastconv.cpu.small``'s rule:
#: the first calls of a cold kernel cache answer without its ~2 s compile).
COLD_NUMPY_ELEMENTS = 1 << 20


def max_pool_numpy(x, out, kernel, stride, pads, dilation) -> None:
    """:func:`max_pool_values` by NumPy, the same fold in the same order, so the same
    bits: on ``x`` padded with -inf (a tap outside ``x`` never wins), each output row
    folds its (h, d) taps, h outer, column by column, then every output folds its W
    taps in order; the fold keeps ``u`` unless ``v > u`` or ``v`` is NaN (the first of
    equal maxima, so -0.0 and 0.0 as the kernel; NaN wins)."""
    N, C = x.shape[:2]
    outs = out.shape[2:]
    sizes = [max(p + n, (o - 1) * s + (k - 1) * d + 1)
             for n, o, s, k, d, p in zip(x.shape[2:], outs, stride, kernel, dilation, pads,
                                         strict=True)]
    xp = np.full((N, C, *sizes), -np.inf, dtype=x.dtype)
    xp[:, :, pads[0]:pads[0] + x.shape[2], pads[1]:pads[1] + x.shape[3],
       pads[2]:pads[2] + x.shape[4]] = x

    def fold(u, v):
        return np.where((v > u) | (v != v), v, u)

    (kd, kh, kw), (sd, sh, sw), (dd, dh, dw) = kernel, stride, dilation
    (OD, OH, OW) = outs
    rows = None
    for b in range(kh):
        for a in range(kd):
            v = xp[:, :, a * dd:a * dd + (OD - 1) * sd + 1:sd, b * dh:b * dh + (OH - 1) * sh + 1:sh]
            rows = v if rows is None else fold(rows, v)
    res = rows[..., 0:(OW - 1) * sw + 1:sw]
    for e in range(1, kw):
        res = fold(res, rows[..., e * dw:e * dw + (OW - 1) * sw + 1:sw])
    out[...] = res


def avg_pool(x, out, kernel, stride, pads, divisors) -> None:
    """Fill ``out``; ``divisors`` holds each axis's per-output window lengths."""
    dd, dh, dw = _divisors(divisors, out.dtype)
    nbuf = _row_buffer(x.shape[4], out.shape[4], kernel[2], stride[2], pads[2], 1)
    planes = out.shape[0] * out.shape[1] * out.shape[2]
    rb, nrb = _row_blocks(planes, out.shape[3])
    _split(avg_pool_sums, avg_pool_sums_par, planes * nrb, x.size + out.size, x, out,
           _ints(kernel), _ints(stride), _ints(pads), dd, dh, dw, nbuf, rb, nrb)


def three_s2(kernel, stride, pads, dilation) -> bool:
    """Whether 5-D pooling parameters are 3x3 windows at stride 2 with pads 0 or 1 and no
    dilation (depth 1): the windows of :func:`max_pool_grad_3s2` and
    :func:`max_pool_codes_3s2`."""
    return (tuple(kernel) == (1, 3, 3) and tuple(stride) == (1, 2, 2) and pads[0] == 0
            and max(pads[1:]) <= 1 and tuple(dilation) == (1, 1, 1))


def _keys(dtype) -> tuple:
    """``(keys, consts, lanes)`` of the 3x3 stride-2 kernels: tap keys 0..8 and 300 (none)
    as floats (vector lanes of the data's width), ``(0, -inf)``, the host's lanes."""
    keys = np.array([*range(9), 300], dtype)
    consts = np.array([0, -np.inf], dtype)
    return keys, consts, LANES32 if dtype == np.float32 else LANES64


def _words(gx, W) -> tuple:
    """``(wide, lead)``: whether ``gx``'s rows of ``W`` go out as aligned 64-bit words,
    and the word index of gx's first 64-byte boundary."""
    wide = (W * gx.itemsize) % 8 == 0 and gx.ctypes.data % 8 == 0
    return wide, (-gx.ctypes.data % 64) // 8


def code_width(OW: int) -> int:
    """Bytes per row of :func:`max_pool_codes`' codes: ``OW`` windows after one byte,
    padded to whole vector loads (16 lanes) of the windows and their right neighbours."""
    return (OW + 16) // 16 * 16 + 1


def max_pool_codes(x, pads, out_hw) -> tuple:
    """``(out, code)``: 3x3 stride-2 max pooling of C-contiguous planes ``x`` ``(P, H, W)``
    (``pads`` ``(ph, pw)``, each 0 or 1; ``out_hw`` ``(OH, OW)`` from the plan: ceil_mode
    included), with each window's winner as a uint8 code ``3*b + c`` for
    :func:`max_pool_codes_backward` (what ``MaxPool2d`` keeps instead of ``x``)."""
    P = x.shape[0]
    out = np.empty((P, *out_hw), x.dtype)
    code = np.empty((P, out_hw[0], code_width(out_hw[1])), np.uint8)
    keys, consts, lanes = _keys(x.dtype)
    _split(max_pool_codes_3s2, max_pool_codes_3s2_par, P, x.size + out.size, x, out, code,
           pads[0], pads[1], keys, consts, lanes)
    return out, code


def max_pool_codes_backward(g, code, hw, pads) -> np.ndarray:
    """The gradient ``(P, H, W)`` of :func:`max_pool_codes` from its codes and ``g`` (both
    C-contiguous ``(P, OH, OW)``): ``grad.max_pool2d``'s bits, reading no input."""
    P = g.shape[0]
    H, W = hw
    gx = np.empty((P, H, W), g.dtype)
    keys, consts, lanes = _keys(g.dtype)
    wide, lead = _words(gx, W)
    args = (g, code, gx.reshape(P, H * W), H, W, pads[0], pads[1], keys, consts, wide, lead,
            lanes)
    nchunks = _chunks(P, gx.size + g.size)
    if nchunks <= 1:
        max_pool_codes_grad_3s2(*args, 0, P)
    else:
        max_pool_codes_grad_3s2_par(*args, nchunks)
    return gx


def max_pool_backward(g, x, gx, kernel, stride, pads, dilation) -> None:
    """gx = gradient of max pooling: each grad_output goes to its window's (first) max."""
    N, C = g.shape[:2]
    # window positions as int32 beside float32 values: selects on matching vector lanes
    small = x.dtype == np.float32 and x[0, 0].size < 2**31 - 1
    at_like = np.empty(0, np.int32 if small else np.int64)
    if three_s2(kernel, stride, pads, dilation):
        P = N * C * x.shape[2]
        keys, consts, lanes = _keys(x.dtype)
        wide, lead = _words(gx, x.shape[4])
        xc = np.ascontiguousarray(x).reshape(P, *x.shape[3:])  # (the vector loads need C)
        gc = np.ascontiguousarray(g).reshape(P, *g.shape[3:])
        args = (xc, gc, gx.reshape(P, -1), pads[1], pads[2], keys, consts, wide, lead, lanes)
        nchunks = _chunks(P, x.size + g.size)
        if nchunks <= 1:
            max_pool_grad_3s2(*args, 0, P)
        else:
            max_pool_grad_3s2_par(*args, nchunks)
        return
    nbuf = _row_buffer(x.shape[4], g.shape[4], kernel[2], stride[2], pads[2], dilation[2])
    _split(max_pool_grad, max_pool_grad_par, N * C, x.size + g.size, x, g,
           gx.reshape(N * C, -1), _ints(kernel), _ints(stride), _ints(pads), _ints(dilation),
           nbuf, at_like)


def _cover(n, k, stride, pad, nout) -> np.ndarray:
    """(n, 2): outputs [lo, hi) whose window ``[o*stride - pad, +k)`` holds input i."""
    i = np.arange(n)
    lo = np.maximum(0, -((k - 1 - i - pad) // stride))
    hi = np.minimum(nout, (i + pad) // stride + 1)
    return np.stack([lo, np.maximum(lo, hi)], axis=1).astype(np.int64)


def avg_pool_backward(g, gx, kernel, stride, pads, divisors) -> None:
    """gx = gradient of average pooling (each window spreads grad/divisor over its inputs)."""
    dd, dh, dw = _divisors(divisors, g.dtype)
    cover = [_cover(n, k, s, p, o) for n, k, s, p, o in
             zip(gx.shape[2:], kernel, stride, pads, g.shape[2:], strict=True)]
    N, C, D = gx.shape[:3]
    if -(-kernel[2] // stride[2]) > LONG_COVER:
        _split(avg_pool_grad_long, avg_pool_grad_long_par, N * C * D, gx.size + g.size, g, gx,
               *cover, dd, dh, dw)
        return
    if stride[2] == 2 and 2 <= kernel[2] <= 4:
        _split(avg_pool_grad_pairs, avg_pool_grad_pairs_par, N * C * D, gx.size + g.size, g,
               gx, cover[0], cover[1], _ints(kernel), _ints(pads), dd, dh, dw)
        return
    nbuf = _row_buffer(gx.shape[4], g.shape[4], kernel[2], stride[2], pads[2], 1)
    _split(avg_pool_grad, avg_pool_grad_par, N * C * D, gx.size + g.size, g, gx, cover[0],
           cover[1], _ints(kernel), _ints(stride), _ints(pads), dd, dh, dw, nbuf)
