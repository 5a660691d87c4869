"""Adaptive average/max pooling and power-average (Lp) pooling on the CPU.

Arrays are 4-D planes ``(P, D, H, W)`` with ``P = N*C`` (adaptive pooling works per
channel). Output ``o`` along an axis of ``n`` inputs reads the window
``[starts[o], ends[o])`` (``fastconv._shapes.adaptive_windows``, passed in as int64
arrays), so nothing is padded or copied.

- Forward: one task per output row ``(p, od, oh)``; the average sums the window's
  input rows into one buffered row (contiguous, vectorized adds), then each output
  column sums its slice of that row (global pooling, one output per plane, reduces each
  contiguous plane in one vectorized pass). The maximum reduces the window's rows
  column-wise with PyTorch's rule ``v > m or isnan(v)`` (branch-free, vectorized), then
  combines the columns so that the result is what PyTorch's row-major scan finds: the
  first maximum on ties, the last NaN when there are NaNs.
- Backward: one task per plane ``p`` (race-free without atomics, deterministic):
  each output adds its gradient (average: divided by the window size) to its window
  (average) or to its window's first maximum (max).
- Lp pooling is average pooling of ``x**p`` between two elementwise kernels, as
  ``torch.nn.functional.lp_pool*d`` computes it.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv._config import JIT_PARALLEL, JIT_SERIAL

#: Tasks per parallel chunk: scratch rows are allocated once per chunk, not per task.
CHUNK_TASKS = 64


@njit(inline="always", **JIT_SERIAL)
def _chunk(ch, nchunks, ntasks):
    """Tasks [lo, hi) of chunk ``ch`` of ``nchunks`` (balanced)."""
    return ch * ntasks // nchunks, (ch + 1) * ntasks // nchunks


@njit(**JIT_PARALLEL)
def adaptive_avg_kernel(x, out, sd, ed, sh, eh, sw, ew):
    """out[p, od, oh, ow] = mean of x[p, sd[od]:ed[od], sh[oh]:eh[oh], sw[ow]:ew[ow]]."""
    P, D, H, W = x.shape
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    ntasks = P * OD * OH
    nchunks = (ntasks + CHUNK_TASKS - 1) // CHUNK_TASKS
    for ch in prange(nchunks):
        lo, hi = _chunk(ch, nchunks, ntasks)
        row = np.empty(W, dtype=x.dtype)
        for t in range(lo, hi):
            oh = t % OH
            od = (t // OH) % OD
            p = t // (OH * OD)
            d0, d1, h0, h1 = sd[od], ed[od], sh[oh], eh[oh]
            row[:] = x[p, d0, h0]
            for d in range(d0, d1):
                for h in range(h0, h1):
                    if d > d0 or h > h0:
                        src = x[p, d, h]
                        for w in range(W):
                            row[w] += src[w]
            orow = out[p, od, oh]
            rows = (d1 - d0) * (h1 - h0)
            for ow in range(OW):
                w0, w1 = sw[ow], ew[ow]
                acc = row[w0]
                for w in range(w0 + 1, w1):
                    acc += row[w]
                orow[ow] = acc / (rows * (w1 - w0))


@njit(**JIT_PARALLEL)
def global_avg_kernel(x, out):
    """out[p] = mean of the contiguous plane x[p] (``output_size`` 1 on every axis): one
    vectorized reduction per plane."""
    P, L = x.shape
    for p in prange(P):
        row = x[p]
        acc = row[0]
        for i in range(1, L):
            acc += row[i]
        out[p] = acc / L


@njit(inline="always", **JIT_SERIAL)
def _column_argmax(plane, d0, d1, h0, h1, best, at, H, W):
    """best[w], at[w] = max of column w over rows (d, h) of the window in row-major
    order and its flat index ``(d*H + h)*W + w`` (PyTorch's ``v > m or isnan(v)``: the
    first maximum, or the last NaN). Whole rows at a time, branch-free (vectorized)."""
    for d in range(d0, d1):
        for h in range(h0, h1):
            row = plane[d, h]
            base = (d * H + h) * W
            if d == d0 and h == h0:
                for w in range(W):
                    best[w] = row[w]
                    at[w] = base + w
            else:
                for w in range(W):
                    v, m = row[w], best[w]
                    take = (v > m) | (v != v)
                    best[w] = v if take else m
                    at[w] = base + w if take else at[w]


@njit(inline="always", **JIT_SERIAL)
def _pick(best, at, w0, w1):
    """Combine columns [w0, w1) of ``_column_argmax``: the window's row-major first
    maximum is the largest value at the smallest flat index; with NaNs, the NaN at the
    largest flat index (the last one the row-major scan meets)."""
    b, a = best[w0], at[w0]
    for w in range(w0 + 1, w1):
        v, q = best[w], at[w]
        if v != v:
            if b == b or q > a:
                b, a = v, q
        elif b == b and (v > b or (v == b and q < a)):
            b, a = v, q
    return b, a


@njit(**JIT_PARALLEL)
def adaptive_max_kernel(x, out, idx, want_idx, sd, ed, sh, eh, sw, ew):
    """out[p, o] = max of the window of o (NaN wins); idx[p, o] its flat index in the
    plane (the first maximum on ties), when ``want_idx``. One task per output row: the
    window's rows reduce column-wise into one row, then each output picks its columns."""
    P, D, H, W = x.shape
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    ntasks = P * OD * OH
    nchunks = (ntasks + CHUNK_TASKS - 1) // CHUNK_TASKS
    for ch in prange(nchunks):
        lo, hi = _chunk(ch, nchunks, ntasks)
        best = np.empty(W, dtype=x.dtype)
        at = np.empty(W, dtype=np.int64)
        for t in range(lo, hi):
            oh = t % OH
            od = (t // OH) % OD
            p = t // (OH * OD)
            _column_argmax(x[p], sd[od], ed[od], sh[oh], eh[oh], best, at, H, W)
            for ow in range(OW):
                b, a = _pick(best, at, sw[ow], ew[ow])
                out[p, od, oh, ow] = b
                if want_idx:
                    idx[p, od, oh, ow] = a


@njit(**JIT_PARALLEL)
def adaptive_avg_grad(g, gx, sd, ed, sh, eh, sw, ew):
    """gx[p] = sum over outputs o of g[p, o] / |window(o)| spread over window(o)."""
    P, OD, OH, OW = g.shape
    for p in prange(P):
        gp = gx[p]
        gp[:] = 0
        for od in range(OD):
            d0, d1 = sd[od], ed[od]
            for oh in range(OH):
                h0, h1 = sh[oh], eh[oh]
                for ow in range(OW):
                    w0, w1 = sw[ow], ew[ow]
                    v = g[p, od, oh, ow] / ((d1 - d0) * (h1 - h0) * (w1 - w0))
                    for d in range(d0, d1):
                        for h in range(h0, h1):
                            row = gp[d, h]
                            for w in range(w0, w1):
                                row[w] += v


@njit(**JIT_PARALLEL)
def adaptive_max_grad(x, g, gx, sd, ed, sh, eh, sw, ew):
    """gx[p] = each g[p, o] added at its window's first maximum (found again here, as
    the forward finds it). One task per plane (race-free)."""
    P, D, H, W = x.shape
    OD, OH, OW = g.shape[1], g.shape[2], g.shape[3]
    for p in prange(P):
        plane, gp = x[p], gx[p]
        gp[:] = 0
        best = np.empty(W, dtype=x.dtype)
        at = np.empty(W, dtype=np.int64)
        for od in range(OD):
            for oh in range(OH):
                _column_argmax(plane, sd[od], ed[od], sh[oh], eh[oh], best, at, H, W)
                for ow in range(OW):
                    _, a = _pick(best, at, sw[ow], ew[ow])
                    gp[a] += g[p, od, oh, ow]


@njit(**JIT_PARALLEL)
def power_kernel(x, p, out):
    """out = x ** p (flat arrays)."""
    for i in prange(x.shape[0]):
        out[i] = x[i] ** p


@njit(**JIT_PARALLEL)
def lp_finish_kernel(a, scale, inv_p):
    """a = (sign(a) * relu(|a|) * scale) ** inv_p in place (torch's lp_pool tail)."""
    zero = a.dtype.type(0)
    for i in prange(a.shape[0]):
        v = a[i]
        s = zero if v == 0 else (a.dtype.type(1) if v > 0 else a.dtype.type(-1))
        s = v if v != v else s
        r = abs(v) if abs(v) > 0 else zero
        r = v if v != v else r
        a[i] = (s * r * scale) ** inv_p


@njit(**JIT_PARALLEL)
def lp_grad_out_kernel(g, a, scale, inv_p, out):
    """Gradient of ``(sign(a) * relu(|a|) * scale) ** inv_p`` w.r.t. ``a`` times ``g``,
    in autograd's order (zero where ``|a| <= 0``, as relu's gradient)."""
    zero = a.dtype.type(0)
    for i in prange(a.shape[0]):
        v = a[i]
        s = zero if v == 0 else (a.dtype.type(1) if v > 0 else a.dtype.type(-1))
        s = v if v != v else s
        if abs(v) <= 0:
            out[i] = zero
            continue
        r = abs(v)
        t = s * r * scale
        gt = g[i] * (inv_p * t ** (inv_p - a.dtype.type(1)))
        out[i] = gt * scale * s * s


@njit(**JIT_PARALLEL)
def lp_grad_in_kernel(gp, x, p, out):
    """out = gp * (p * x ** (p - 1)) (the gradient of ``x ** p``; 0 when p == 0, as
    autograd)."""
    one, zero = x.dtype.type(1), x.dtype.type(0)
    for i in prange(x.shape[0]):
        out[i] = zero if p == 0 else gp[i] * (p * x[i] ** (p - one))


@njit(**JIT_PARALLEL)
def signed_abs_kernel(x, s, out):
    """out = s * |x| (Lp pooling with norm_type = +-inf)."""
    for i in prange(x.shape[0]):
        out[i] = s * abs(x[i])


@njit(**JIT_PARALLEL)
def mul_sign_kernel(g, x, out):
    """out = g * sign(x) (sign(0) = 0): the gradient of ``|x|``."""
    zero = x.dtype.type(0)
    for i in prange(x.shape[0]):
        v = x[i]
        out[i] = g[i] if v > 0 else (-g[i] if v < 0 else (v if v != v else zero * g[i]))


def _windows(windows) -> tuple:
    return tuple(np.array(v, dtype=np.int64) for pair in windows for v in pair)


def adaptive_avg_pool(x, out, windows) -> None:
    """Fill ``out`` (P, OD, OH, OW) from ``x`` (P, D, H, W); ``windows``: per axis
    ``(starts, ends)``. Global pooling (one output per plane) sums each plane flat."""
    P, D, H, W = x.shape
    if out.shape[1:] == (1, 1, 1):
        global_avg_kernel(x.reshape(P, D * H * W), out.reshape(P))
    else:
        adaptive_avg_kernel(x, out, *_windows(windows))


def adaptive_max_pool(x, out, indices, windows) -> None:
    """Fill ``out`` (and ``indices`` unless None) from ``x``."""
    want = indices is not None
    idx = indices if want else np.empty((1, 1, 1, 1), np.int64)
    adaptive_max_kernel(x, out, idx, want, *_windows(windows))


def adaptive_avg_pool_backward(g, gx, windows) -> None:
    adaptive_avg_grad(g, gx, *_windows(windows))


def adaptive_max_pool_backward(g, x, gx, windows) -> None:
    P, D, H, W = x.shape
    adaptive_max_grad(x, g, gx.reshape(P, D * H * W), *_windows(windows))


def power(x, p, out) -> None:
    """out = x ** p elementwise (``p`` in the arrays' dtype)."""
    power_kernel(x.reshape(-1), out.dtype.type(p), out.reshape(-1))


def lp_finish(a, scale, p) -> None:
    """a = (sign(a) * relu(|a|) * scale) ** (1 / p), in place."""
    t = a.dtype.type
    lp_finish_kernel(a.reshape(-1), t(scale), t(1.0 / p))


def lp_grad_out(g, a, scale, p, out) -> None:
    t = a.dtype.type
    lp_grad_out_kernel(g.reshape(-1), a.reshape(-1), t(scale), t(1.0 / p), out.reshape(-1))


def lp_grad_in(gp, x, p, out) -> None:
    lp_grad_in_kernel(gp.reshape(-1), x.reshape(-1), x.dtype.type(p), out.reshape(-1))


def signed_abs(x, s, out) -> None:
    """out = s * |x| elementwise."""
    signed_abs_kernel(x.reshape(-1), out.dtype.type(s), out.reshape(-1))


def mul_sign(g, x, out) -> None:
    """out = g * sign(x) elementwise."""
    mul_sign_kernel(g.reshape(-1), x.reshape(-1), out.reshape(-1))
