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
  output row at a time, so no index array is stored), average gathers per input plane
  ``(n, c, id)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv._config import JIT_PARALLEL, JIT_SERIAL

#: Tasks the forward kernels aim for (row blocks split planes when there are few).
PLANE_TASKS = 64


@njit(inline="always", **JIT_SERIAL)
def _taps(start, k, dil, n):
    """Taps ``r`` in ``[lo, hi)`` with ``0 <= start + r*dil < n`` (empty when hi <= lo)."""
    lo = 0 if start >= 0 else (dil - 1 - start) // dil
    hi = min(k, (n - 1 - start) // dil + 1)
    return lo, hi


@njit(inline="always", **JIT_SERIAL)
def _max_tap(d, seg, s):
    """d[o] = max(d[o], seg[o*s]), NaN winning."""
    for o in range(d.shape[0]):
        u, v = d[o], seg[o * s]
        d[o] = v if (v > u) | (v != v) else u


@njit(inline="always", **JIT_SERIAL)
def _add_tap(d, seg, s):
    """d[o] += seg[o*s]."""
    for o in range(d.shape[0]):
        d[o] += seg[o * s]


@njit(inline="always", **JIT_SERIAL)
def _sel(u, v):
    """max(u, v) with u winning ties (the first maximum) and a NaN v winning."""
    return v if (v > u) | (v != v) else u


@njit(inline="always", **JIT_SERIAL)
def _max2(d, a, b, s, t):
    """d[o] = max(a[o*s], b[o*s + t]) in one pass (first maximum wins a tie)."""
    for o in range(d.shape[0]):
        d[o] = _sel(a[o * s], b[o * s + t])


@njit(inline="always", **JIT_SERIAL)
def _max3(d, a, b, c, s, t):
    """d[o] = max(a[o*s], b[o*s + t], c[o*s + 2t]) in one pass, in that order."""
    for o in range(d.shape[0]):
        d[o] = _sel(_sel(a[o * s], b[o * s + t]), c[o * s + 2 * t])


@njit(inline="always", **JIT_SERIAL)
def _max_windows(dst, src, k, s, p, dil):
    """dst[o] = max over taps r of src[o*s - p + r*dil] (taps outside src skipped)."""
    n, nout = src.shape[0], dst.shape[0]
    # interior outputs [a, b): every tap inside src, no bounds checks, tap-major loops
    a = min(nout, (p + s - 1) // s)
    b = max(a, min(nout, (n - 1 + p - (k - 1) * dil) // s + 1))
    if b > a and (k == 2 or k == 3) and s <= 2:  # one pass, literal strides
        d = dst[a:b]
        seg = src[a * s - p :]
        if k == 2 and s == 1:
            _max2(d, seg, seg, 1, dil)
        elif k == 2:
            _max2(d, seg, seg, 2, dil)
        elif s == 1:
            _max3(d, seg, seg, seg, 1, dil)
        else:
            _max3(d, seg, seg, seg, 2, dil)
    elif b > a:
        d = dst[a:b]
        m = b - a
        seg = src[a * s - p :]
        for o in range(m):
            d[o] = seg[o * s]
        for r in range(1, k):
            seg = src[a * s - p + r * dil :]
            if s == 1:  # literal strides: vector loads, not gathers
                _max_tap(d, seg, 1)
            elif s == 2:
                _max_tap(d, seg, 2)
            else:
                _max_tap(d, seg, s)
    for u in range(nout - (b - a)):  # the border outputs, taps clipped
        o = u if u < a else u + (b - a)
        start = o * s - p
        lo, hi = _taps(start, k, dil, n)
        best = -np.inf
        for r in range(lo, hi):
            v = src[start + r * dil]
            if v > best or v != v:
                best = v
        dst[o] = best


@njit(inline="always", **JIT_SERIAL)
def _add2(d, a, b, s, t):
    """d[o] = a[o*s] + b[o*s + t] in one pass."""
    for o in range(d.shape[0]):
        d[o] = a[o * s] + b[o * s + t]


@njit(inline="always", **JIT_SERIAL)
def _add3(d, a, b, c, s, t):
    """d[o] = (a[o*s] + b[o*s + t]) + c[o*s + 2t] in one pass, in that order."""
    for o in range(d.shape[0]):
        d[o] = (a[o * s] + b[o * s + t]) + c[o * s + 2 * t]


@njit(inline="always", **JIT_SERIAL)
def _sum_windows(dst, src, k, s, p):
    """dst[o] = sum over taps r of src[o*s - p + r] (taps outside src skipped)."""
    n, nout = src.shape[0], dst.shape[0]
    a = min(nout, (p + s - 1) // s)
    b = max(a, min(nout, (n - 1 + p - (k - 1)) // s + 1))
    if b > a and k == 2 and s <= 2:  # one pass, literal strides
        d = dst[a:b]
        seg = src[a * s - p :]
        if s == 1:
            _add2(d, seg, seg, 1, 1)
        else:
            _add2(d, seg, seg, 2, 1)
    elif b > a:  # (3 taps in one pass along a row got reassociated by LLVM: not bit-equal)
        d = dst[a:b]
        m = b - a
        seg = src[a * s - p :]
        for o in range(m):
            d[o] = seg[o * s]
        for r in range(1, k):
            seg = src[a * s - p + r :]
            if s == 1:
                _add_tap(d, seg, 1)
            elif s == 2:
                _add_tap(d, seg, 2)
            else:
                _add_tap(d, seg, s)
    for u in range(nout - (b - a)):  # the border outputs, taps clipped
        o = u if u < a else u + (b - a)
        start = o * s - p
        lo, hi = _taps(start, k, 1, n)
        acc = 0.0
        for r in range(lo, hi):
            acc += src[start + r]
        dst[o] = acc


@njit(inline="always", **JIT_SERIAL)
def _row_blocks(planes, nrows):
    """Rows per task and tasks per plane: whole planes when there are many, else row
    blocks, so that a single image still splits over the threads."""
    nrb = min(nrows, max(1, (PLANE_TASKS + planes - 1) // planes))
    rb = (nrows + nrb - 1) // nrb
    return rb, (nrows + rb - 1) // rb


@njit(inline="always", **JIT_SERIAL)
def _row_block_task(t, nrb, RB, OD, C, OH):
    """(n, c, od, first row, end row) of task ``t`` of a row-blocked pooling loop
    (``nrb`` blocks of ``RB`` output rows per (n, c, od) plane)."""
    rb = t % nrb
    p = t // nrb
    return p // (OD * C), (p // OD) % C, p % OD, rb * RB, min(OH, rb * RB + RB)


@njit(**JIT_PARALLEL)
def max_pool_values(x, out, kernel, stride, pads, dilation):
    """out[n, c, o] = max over the window's taps inside x (NaN wins; empty window: -inf).

    One task per (n, c, od, block of output rows): each output row reduces its H (and
    depth) taps into one buffered input row, then its W taps straight into ``out``."""
    N, C, D, H, W = x.shape
    OD, OH = out.shape[2], out.shape[3]
    kd, kh, kw = kernel[0], kernel[1], kernel[2]
    sd, sh, sw = stride[0], stride[1], stride[2]
    pd, ph, pw = pads[0], pads[1], pads[2]
    dd, dh, dw = dilation[0], dilation[1], dilation[2]
    planes = N * C * OD
    RB, nrb = _row_blocks(planes, OH)
    for t in prange(planes * nrb):
        n, c, od, oh_lo, oh_hi = _row_block_task(t, nrb, RB, OD, C, OH)
        d0 = od * sd - pd
        dlo, dhi = _taps(d0, kd, dd, D)
        row = np.empty(W, dtype=x.dtype)
        for oh in range(oh_lo, oh_hi):
            h0 = oh * sh - ph
            hlo, hhi = _taps(h0, kh, dh, H)
            orow = out[n, c, od, oh]
            if hhi <= hlo or dhi <= dlo:
                orow[:] = -np.inf
                continue
            # (h, d) order: the same first maximum as depth-then-H planes
            nh = hhi - hlo
            if dhi - dlo == 1 and nh <= 3:  # one pass over the H taps, or none
                plane = x[n, c, d0 + dlo * dd]
                r0 = plane[h0 + hlo * dh]
                if nh == 1:
                    _max_windows(orow, r0, kw, sw, pw, dw)
                    continue
                if nh == 2:
                    _max2(row, r0, plane[h0 + (hlo + 1) * dh], 1, 0)
                else:
                    _max3(row, r0, plane[h0 + (hlo + 1) * dh], plane[h0 + (hlo + 2) * dh],
                          1, 0)
                _max_windows(orow, row, kw, sw, pw, dw)
                continue
            row[:] = x[n, c, d0 + dlo * dd, h0 + hlo * dh]
            for b in range(hlo, hhi):
                for a in range(dlo, dhi):
                    if b > hlo or a > dlo:
                        _max_tap(row, x[n, c, d0 + a * dd, h0 + b * dh], 1)
            _max_windows(orow, row, kw, sw, pw, dw)


@njit(**JIT_PARALLEL)
def max_pool_indices(x, out, idx, kernel, stride, pads, dilation, mark_empty):
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
    for t in prange(N * C * OD * OH):
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


@njit(**JIT_PARALLEL)
def avg_pool_sums(x, out, kernel, stride, pads, div_d, div_h, div_w):
    """out[n, c, od, oh, ow] = (sum of the window inside x) / (div_d[od]*div_h[oh]*div_w[ow]).

    One task per (n, c, od, block of output rows): each output row sums its H taps (of
    depth sums) into one buffered input row, then its W taps straight into ``out``."""
    N, C, D, H, W = x.shape
    OD, OH = out.shape[2], out.shape[3]
    kd, kh, kw = kernel[0], kernel[1], kernel[2]
    sd, sh, sw = stride[0], stride[1], stride[2]
    pd, ph, pw = pads[0], pads[1], pads[2]
    planes = N * C * OD
    RB, nrb = _row_blocks(planes, OH)
    for t in prange(planes * nrb):
        n, c, od, oh_lo, oh_hi = _row_block_task(t, nrb, RB, OD, C, OH)
        d0 = od * sd - pd
        dlo, dhi = _taps(d0, kd, 1, D)
        row = np.empty(W, dtype=x.dtype)
        depth = np.empty(W if dhi - dlo != 1 else 0, dtype=x.dtype)
        for oh in range(oh_lo, oh_hi):
            h0 = oh * sh - ph
            hlo, hhi = _taps(h0, kh, 1, H)
            nh = hhi - hlo
            if dhi - dlo == 1 and 2 <= nh <= 3:  # the H taps in one pass
                plane = x[n, c, d0 + dlo]
                if nh == 2:
                    _add2(row, plane[h0 + hlo], plane[h0 + hlo + 1], 1, 0)
                else:
                    _add3(row, plane[h0 + hlo], plane[h0 + hlo + 1], plane[h0 + hlo + 2], 1, 0)
                nh = 0  # done
            for b in range(hlo, hhi if nh else hlo):
                if dhi - dlo == 1:  # every 1-D/2-D call: the input row itself
                    src = x[n, c, d0 + dlo, h0 + b]
                else:  # 0 + the depth taps, as a plane of depth sums would hold
                    depth[:] = 0
                    for a in range(dlo, dhi):
                        _add_tap(depth, x[n, c, d0 + a, h0 + b], 1)
                    src = depth
                if b == hlo:
                    row[:] = src
                else:
                    _add_tap(row, src, 1)
            orow = out[n, c, od, oh]
            _sum_windows(orow, row, kw, sw, pw)
            f = div_d[od] * div_h[oh]
            for ow in range(orow.shape[0]):
                orow[ow] = orow[ow] / (f * div_w[ow])


@njit(inline="always", **JIT_SERIAL)
def _argmax_taps(best, at, seg, first, s):
    """One tap of a row of windows: where seg[o*s] beats best[o] (or best is unset, at < 0;
    a NaN always wins), take it and its flat index first + o*s. Branch-free selects."""
    for o in range(best.shape[0]):
        v, m, q = seg[o * s], best[o], at[o]
        take = (q < 0) | (v > m) | (v != v)
        best[o] = v if take else m
        at[o] = first + o * s if take else q


@njit(**JIT_PARALLEL)
def max_pool_grad(x, g, gx, kernel, stride, pads, dilation):
    """gx[n, c] = 0, then each g[n, c, o] added at its window's first maximum (NaN wins,
    PyTorch's rule; a window with no tap inside ``x`` sends nothing); ``gx`` is
    ``(N*C, D*H*W)``. One task per input volume ``(n, c)`` (race-free). A whole output
    row is scanned at once, tap by tap in each window's row-major order, with
    branch-free selects (vectorized over the row); the adds then go in output order."""
    N, C, D, H, W = x.shape
    OD, OH, OW = g.shape[2], g.shape[3], g.shape[4]
    kd, kh, kw = kernel[0], kernel[1], kernel[2]
    sd, sh, sw = stride[0], stride[1], stride[2]
    pd, ph, pw = pads[0], pads[1], pads[2]
    dd, dh, dw = dilation[0], dilation[1], dilation[2]
    for t in prange(N * C):
        n, c = t // C, t % C
        vol, gv = x[n, c], gx[t]
        gv[:] = 0
        best = np.empty(OW, dtype=x.dtype)
        at = np.empty(OW, dtype=np.int64)
        for od in range(OD):
            d0 = od * sd - pd
            dlo, dhi = _taps(d0, kd, dd, D)
            for oh in range(OH):
                h0 = oh * sh - ph
                hlo, hhi = _taps(h0, kh, dh, H)
                at[:] = -1
                best[:] = -np.inf
                for a in range(dlo, dhi):
                    i = d0 + a * dd
                    for b in range(hlo, hhi):
                        j = h0 + b * dh
                        row = vol[i, j]
                        base = (i * H + j) * W
                        for e in range(kw):
                            off = e * dw - pw  # column of output ow: ow*sw + off
                            lo = 0 if off >= 0 else min(OW, (sw - 1 - off) // sw)
                            hi = max(lo, min(OW, (W - 1 - off) // sw + 1))
                            seg = row[lo * sw + off :]
                            bs, ats = best[lo:hi], at[lo:hi]
                            first = base + lo * sw + off
                            if sw == 1:  # literal strides: vector loads, not gathers
                                _argmax_taps(bs, ats, seg, first, 1)
                            elif sw == 2:
                                _argmax_taps(bs, ats, seg, first, 2)
                            else:
                                _argmax_taps(bs, ats, seg, first, sw)
                grow = g[n, c, od, oh]
                for ow in range(OW):
                    q = at[ow]
                    if q >= 0:
                        gv[q] += grow[ow]


@njit(**JIT_PARALLEL)
def avg_pool_grad(g, gx, cover_d, cover_h, cover_w, div_d, div_h, div_w):
    """gx[n, c, i] = sum over windows o holding input i of g[n, c, o] / divisor(o);
    ``cover_*[i]`` is the range [lo, hi) of outputs whose window holds input i. One task
    per input plane ``(n, c, id)``: depth taps and divisors into an ``(OH, OW)`` plane,
    then per input row the covering output rows into one row, then the columns."""
    N, C, OD, OH, OW = g.shape
    D, H, W = gx.shape[2], gx.shape[3], gx.shape[4]
    for t in prange(N * C * D):
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


def _ints(values) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _divisors(divisors, dtype) -> tuple:
    return tuple(np.array(d, dtype=dtype) for d in divisors)


def max_pool(x, out, indices, kernel, stride, pads, dilation) -> None:
    """Fill ``out`` (and ``indices`` unless None) for 5-D contiguous ``x``."""
    k, s, p, d = _ints(kernel), _ints(stride), _ints(pads), _ints(dilation)
    if indices is None:
        max_pool_values(x, out, k, s, p, d)
    else:
        max_pool_indices(x, out, indices, k, s, p, d, False)


def avg_pool(x, out, kernel, stride, pads, divisors) -> None:
    """Fill ``out``; ``divisors`` holds each axis's per-output window lengths."""
    dd, dh, dw = _divisors(divisors, out.dtype)
    avg_pool_sums(x, out, _ints(kernel), _ints(stride), _ints(pads), dd, dh, dw)


def max_pool_backward(g, x, gx, kernel, stride, pads, dilation) -> None:
    """gx = gradient of max pooling: each grad_output goes to its window's (first) max."""
    N, C = g.shape[:2]
    max_pool_grad(x, g, gx.reshape(N * C, -1), _ints(kernel), _ints(stride), _ints(pads),
                  _ints(dilation))


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
    avg_pool_grad(g, gx, *cover, dd, dh, dw)
