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
  owns a whole input volume), average gathers per input plane ``(n, c, id)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv._config import JIT_PARALLEL, JIT_SERIAL


@njit(inline="always", **JIT_SERIAL)
def _taps(start, k, dil, n):
    """Taps ``r`` in ``[lo, hi)`` with ``0 <= start + r*dil < n`` (empty when hi <= lo)."""
    lo = 0 if start >= 0 else (dil - 1 - start) // dil
    hi = min(k, (n - 1 - start) // dil + 1)
    return lo, hi


@njit(inline="always", **JIT_SERIAL)
def _covering(i, k, stride, pad, nout):
    """Outputs ``o`` in ``[lo, hi)`` whose window ``[o*stride - pad, +k)`` holds input ``i``."""
    lo = max(0, -((k - 1 - i - pad) // stride))
    hi = min(nout, (i + pad) // stride + 1)
    return lo, hi


@njit(**JIT_SERIAL)
def _max_rows(dst, src):
    """dst = max(dst, src) elementwise on 2-D rows, NaN winning (PyTorch's rule)."""
    for i in range(dst.shape[0]):
        d, s = dst[i], src[i]
        for j in range(d.shape[0]):
            a, v = d[j], s[j]
            d[j] = v if (v > a or v != v) else a


@njit(**JIT_SERIAL)
def _add_rows(dst, src):
    """dst += src on 2-D rows."""
    for i in range(dst.shape[0]):
        d, s = dst[i], src[i]
        for j in range(d.shape[0]):
            d[j] += s[j]


@njit(**JIT_SERIAL)
def _max_windows(dst, src, k, s, p, dil):
    """dst[o] = max over taps r of src[o*s - p + r*dil] (taps outside src skipped)."""
    n, nout = src.shape[0], dst.shape[0]
    # interior outputs [a, b): every tap inside src, no bounds checks, tap-major loops
    a = min(nout, (p + s - 1) // s)
    b = max(a, min(nout, (n - 1 + p - (k - 1) * dil) // s + 1))
    if b > a:
        d = dst[a:b]
        m = b - a
        seg = src[a * s - p :]
        for o in range(m):
            d[o] = seg[o * s]
        for r in range(1, k):
            seg = src[a * s - p + r * dil :]
            if s == 1:
                for o in range(m):
                    u, v = d[o], seg[o]
                    d[o] = v if (v > u or v != v) else u
            else:
                for o in range(m):
                    u, v = d[o], seg[o * s]
                    d[o] = v if (v > u or v != v) else u
    for o in range(nout):
        if a <= o < b:
            continue
        start = o * s - p
        lo, hi = _taps(start, k, dil, n)
        best = -np.inf
        for r in range(lo, hi):
            v = src[start + r * dil]
            if v > best or v != v:
                best = v
        dst[o] = best


@njit(**JIT_SERIAL)
def _sum_windows(dst, src, k, s, p):
    """dst[o] = sum over taps r of src[o*s - p + r] (taps outside src skipped)."""
    n, nout = src.shape[0], dst.shape[0]
    a = min(nout, (p + s - 1) // s)
    b = max(a, min(nout, (n - 1 + p - (k - 1)) // s + 1))
    if b > a:
        d = dst[a:b]
        m = b - a
        seg = src[a * s - p :]
        for o in range(m):
            d[o] = seg[o * s]
        for r in range(1, k):
            seg = src[a * s - p + r :]
            if s == 1:
                for o in range(m):
                    d[o] += seg[o]
            else:
                for o in range(m):
                    d[o] += seg[o * s]
    for o in range(nout):
        if a <= o < b:
            continue
        start = o * s - p
        lo, hi = _taps(start, k, 1, n)
        acc = 0.0
        for r in range(lo, hi):
            acc += src[start + r]
        dst[o] = acc


@njit(**JIT_SERIAL)
def _max_plane(plane, rows, dst, kh, sh, ph, dh, kw, sw, pw, dw):
    """dst (OH, OW) = max over H taps of plane (H, W) into rows (OH, W), then over W taps."""
    H = plane.shape[0]
    for oh in range(dst.shape[0]):
        h0 = oh * sh - ph
        hlo, hhi = _taps(h0, kh, dh, H)
        row = rows[oh : oh + 1]
        if hhi <= hlo:
            row[:] = -np.inf
        else:
            row[:] = plane[h0 + hlo * dh : h0 + hlo * dh + 1]
        for r in range(hlo + 1, hhi):
            _max_rows(row, plane[h0 + r * dh : h0 + r * dh + 1])
        _max_windows(dst[oh], rows[oh], kw, sw, pw, dw)


@njit(**JIT_PARALLEL)
def max_pool_values(x, out, kernel, stride, pads, dilation):
    """out[n, c, o] = max over the window's taps inside x (NaN wins; empty window: -inf)."""
    N, C, D, H, W = x.shape
    OD, OH = out.shape[2], out.shape[3]
    kd, kh, kw = kernel[0], kernel[1], kernel[2]
    sd, sh, sw = stride[0], stride[1], stride[2]
    pd, ph, pw = pads[0], pads[1], pads[2]
    dd, dh, dw = dilation[0], dilation[1], dilation[2]
    for t in prange(N * C * OD):
        od = t % OD
        c = (t // OD) % C
        n = t // (OD * C)
        d0 = od * sd - pd
        dlo, dhi = _taps(d0, kd, dd, D)
        rows = np.empty((OH, W), dtype=x.dtype)
        if dhi - dlo == 1:  # every 1-D/2-D call: pool the input plane in place
            _max_plane(x[n, c, d0 + dlo * dd], rows, out[n, c, od], kh, sh, ph, dh, kw, sw, pw,
                       dw)
        else:
            plane = np.full((H, W), -np.inf, dtype=x.dtype)
            for r in range(dlo, dhi):
                _max_rows(plane, x[n, c, d0 + r * dd])
            _max_plane(plane, rows, out[n, c, od], kh, sh, ph, dh, kw, sw, pw, dw)


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


@njit(**JIT_SERIAL)
def _avg_plane(plane, rows, dst, kh, sh, ph, kw, sw, pw, f_d, div_h, div_w):
    """dst (OH, OW) = window sums of plane (H, W) / (f_d * div_h[oh] * div_w[ow])."""
    H = plane.shape[0]
    for oh in range(dst.shape[0]):
        h0 = oh * sh - ph
        hlo, hhi = _taps(h0, kh, 1, H)
        row = rows[oh : oh + 1]
        row[:] = plane[h0 + hlo : h0 + hlo + 1]
        for r in range(hlo + 1, hhi):
            _add_rows(row, plane[h0 + r : h0 + r + 1])
        orow = dst[oh]
        _sum_windows(orow, rows[oh], kw, sw, pw)
        f = f_d * div_h[oh]
        for ow in range(orow.shape[0]):
            orow[ow] = orow[ow] / (f * div_w[ow])


@njit(**JIT_PARALLEL)
def avg_pool_sums(x, out, kernel, stride, pads, div_d, div_h, div_w):
    """out[n, c, od, oh, ow] = (sum of the window inside x) / (div_d[od]*div_h[oh]*div_w[ow])."""
    N, C, D, H, W = x.shape
    OD, OH = out.shape[2], out.shape[3]
    kd, kh, kw = kernel[0], kernel[1], kernel[2]
    sd, sh, sw = stride[0], stride[1], stride[2]
    pd, ph, pw = pads[0], pads[1], pads[2]
    for t in prange(N * C * OD):
        od = t % OD
        c = (t // OD) % C
        n = t // (OD * C)
        d0 = od * sd - pd
        dlo, dhi = _taps(d0, kd, 1, D)
        rows = np.empty((OH, W), dtype=x.dtype)
        if dhi - dlo == 1:  # every 1-D/2-D call: pool the input plane in place
            _avg_plane(x[n, c, d0 + dlo], rows, out[n, c, od], kh, sh, ph, kw, sw, pw,
                       div_d[od], div_h, div_w)
        else:
            plane = np.zeros((H, W), dtype=x.dtype)
            for r in range(dlo, dhi):
                _add_rows(plane, x[n, c, d0 + r])
            _avg_plane(plane, rows, out[n, c, od], kh, sh, ph, kw, sw, pw, div_d[od], div_h,
                       div_w)


@njit(**JIT_PARALLEL)
def scatter_add_planes(g, idx, gx):
    """gx[p] = 0, then gx[p, idx[p, j]] += g[p, j] for idx >= 0; one task per plane p."""
    for p in prange(g.shape[0]):
        gp, ip, xp = g[p], idx[p], gx[p]
        xp[:] = 0
        for j in range(gp.shape[0]):
            i = ip[j]
            if i >= 0:
                xp[i] += gp[j]


@njit(**JIT_PARALLEL)
def avg_pool_grad(g, gx, kernel, stride, pads, div_d, div_h, div_w):
    """gx[n, c, i] = sum over windows o holding input i of g[n, c, o] / divisor(o)."""
    N, C, OD, OH, OW = g.shape
    D, H, W = gx.shape[2], gx.shape[3], gx.shape[4]
    kd, kh, kw = kernel[0], kernel[1], kernel[2]
    sd, sh, sw = stride[0], stride[1], stride[2]
    pd, ph, pw = pads[0], pads[1], pads[2]
    for t in prange(N * C * D):
        i = t % D
        c = (t // D) % C
        n = t // (D * C)
        planes = np.zeros((OH, OW), dtype=g.dtype)
        olo, ohi = _covering(i, kd, sd, pd, OD)
        for od in range(olo, ohi):
            for oh in range(OH):
                f = div_d[od] * div_h[oh]
                dst, src = planes[oh], g[n, c, od, oh]
                for ow in range(OW):
                    dst[ow] += src[ow] / (f * div_w[ow])
        rows = np.zeros((H, OW), dtype=g.dtype)
        for j in range(H):
            lo, hi = _covering(j, kh, sh, ph, OH)
            for oh in range(lo, hi):
                _add_rows(rows[j : j + 1], planes[oh : oh + 1])
        for j in range(H):
            dst, src = gx[n, c, i, j], rows[j]
            for e in range(W):
                lo, hi = _covering(e, kw, sw, pw, OW)
                acc = 0.0
                for ow in range(lo, hi):
                    acc += src[ow]
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
    idx = np.empty(g.shape, dtype=np.int64)
    vals = np.empty(g.shape, dtype=x.dtype)
    max_pool_indices(x, vals, idx, _ints(kernel), _ints(stride), _ints(pads), _ints(dilation),
                     True)
    N, C = g.shape[:2]
    scatter_add_planes(g.reshape(N * C, -1), idx.reshape(N * C, -1), gx.reshape(N * C, -1))


def avg_pool_backward(g, gx, kernel, stride, pads, divisors) -> None:
    """gx = gradient of average pooling (each window spreads grad/divisor over its inputs)."""
    dd, dh, dw = _divisors(divisors, g.dtype)
    avg_pool_grad(g, gx, _ints(kernel), _ints(stride), _ints(pads), dd, dh, dw)
