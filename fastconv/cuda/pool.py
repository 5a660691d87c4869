"""Max and average pooling on 5-D device arrays ``(N, C, D, H, W)``, forward and backward.

Same names, arguments and rules as ``fastconv.cpu.pool``: windows are clipped to the
input (max pooling pads with -inf, average pooling counts padding only through its
divisor); a max window is scanned in row-major order with PyTorch's rule
``v > m or isnan(v)`` (first maximum wins a tie, NaN wins over everything).

Forward: one thread per output element. Backward gathers instead of scattering — one
thread per input element sums the gradients of the windows that cover it (max: those
whose recorded argmax is this element) in increasing output order — so there are no
atomics and the result is deterministic (and, for max pooling, bit-identical to the CPU).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from fastconv.cuda._launch import PerDtype, grid3, launch
from fastconv.cuda.arrays import constant, plane

__all__ = ["avg_pool", "avg_pool_backward", "max_pool", "max_pool_backward"]


@cuda.jit(device=True)
def _taps(start, k, dil, n):
    """Taps ``r`` in ``[lo, hi)`` with ``0 <= start + r*dil < n`` (empty when hi <= lo)."""
    lo = 0 if start >= 0 else (dil - 1 - start) // dil
    hi = min(k, (n - 1 - start) // dil + 1)
    return lo, hi


@cuda.jit(device=True)
def _covering(i, k, stride, pad, dil, nout):
    """Outputs ``o`` in ``[lo, hi)`` whose dilated window ``[o*stride - pad, +dil*(k-1)]``
    spans input ``i`` (the caller checks the dilation phase)."""
    span = dil * (k - 1) + 1
    lo = max(0, -((span - 1 - i - pad) // stride))
    hi = min(nout, (i + pad) // stride + 1)
    return lo, hi


def _build(nbtype):
    """The four pooling kernels for one element type (accumulators in that type)."""
    zero = nbtype(0)
    neg_inf = nbtype(-np.inf)

    @cuda.jit
    def max_pool_kernel(x, out, idx, want_idx, mark_empty, kd, kh, kw, sd, sh, sw, pd, ph, pw,
                        dd, dh, dw):
        """out[n, c, o] = window max (NaN wins; empty: -inf); idx = flat (D*H*W) argmax."""
        ow, oh = cuda.grid(2)
        C, D, H, W = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
        OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
        if ow >= OW or oh >= OH:
            return
        h0, w0 = oh * sh - ph, ow * sw - pw
        hlo, hhi = _taps(h0, kh, dh, H)
        wlo, whi = _taps(w0, kw, dw, W)
        z = cuda.blockIdx.z
        while z < x.shape[0] * C * OD:
            n, c, od = plane(z, C, OD)
            d0 = od * sd - pd
            dlo, dhi = _taps(d0, kd, dd, D)
            best = neg_inf
            at = ((d0 + dlo * dd) * H + h0 + hlo * dh) * W + w0 + wlo * dw
            if mark_empty and (dhi <= dlo or hhi <= hlo or whi <= wlo):
                at = -1
            for a in range(dlo, dhi):
                i = d0 + a * dd
                for b in range(hlo, hhi):
                    j = h0 + b * dh
                    for e in range(wlo, whi):
                        v = x[n, c, i, j, w0 + e * dw]
                        if v > best or v != v:
                            best = v
                            at = (i * H + j) * W + w0 + e * dw
            out[n, c, od, oh, ow] = best
            if want_idx:
                idx[n, c, od, oh, ow] = at
            z += cuda.gridDim.z


    @cuda.jit
    def max_pool_gather(g, idx, gx, kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw):
        """gx[n, c, i] = sum of g[n, c, o] over the windows o whose argmax is input i."""
        e, j = cuda.grid(2)
        C, D, H, W = gx.shape[1], gx.shape[2], gx.shape[3], gx.shape[4]
        OD, OH, OW = g.shape[2], g.shape[3], g.shape[4]
        if e >= W or j >= H:
            return
        hlo, hhi = _covering(j, kh, sh, ph, dh, OH)
        wlo, whi = _covering(e, kw, sw, pw, dw, OW)
        z = cuda.blockIdx.z
        while z < gx.shape[0] * C * D:
            n, c, i = plane(z, C, D)
            flat = (i * H + j) * W + e
            dlo, dhi = _covering(i, kd, sd, pd, dd, OD)
            acc = zero
            for od in range(dlo, dhi):
                for oh in range(hlo, hhi):
                    for ow in range(wlo, whi):
                        if idx[n, c, od, oh, ow] == flat:
                            acc += g[n, c, od, oh, ow]
            gx[n, c, i, j, e] = acc
            z += cuda.gridDim.z


    @cuda.jit
    def avg_pool_kernel(x, out, kd, kh, kw, sd, sh, sw, pd, ph, pw, div_d, div_h, div_w):
        """out[n, c, o] = (sum of the window inside x) / (div_d[od] * div_h[oh] * div_w[ow])."""
        ow, oh = cuda.grid(2)
        C, D, H, W = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
        OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
        if ow >= OW or oh >= OH:
            return
        h0, w0 = oh * sh - ph, ow * sw - pw
        hlo, hhi = _taps(h0, kh, 1, H)
        wlo, whi = _taps(w0, kw, 1, W)
        z = cuda.blockIdx.z
        while z < x.shape[0] * C * OD:
            n, c, od = plane(z, C, OD)
            d0 = od * sd - pd
            dlo, dhi = _taps(d0, kd, 1, D)
            acc = zero
            for a in range(dlo, dhi):
                for b in range(hlo, hhi):
                    for e in range(wlo, whi):
                        acc += x[n, c, d0 + a, h0 + b, w0 + e]
            out[n, c, od, oh, ow] = acc / (div_d[od] * div_h[oh] * div_w[ow])
            z += cuda.gridDim.z


    @cuda.jit
    def avg_pool_gather(g, gx, kd, kh, kw, sd, sh, sw, pd, ph, pw, div_d, div_h, div_w):
        """gx[n, c, i] = sum over windows o holding input i of g[n, c, o] / divisor(o)."""
        e, j = cuda.grid(2)
        C, D, H, W = gx.shape[1], gx.shape[2], gx.shape[3], gx.shape[4]
        OD, OH, OW = g.shape[2], g.shape[3], g.shape[4]
        if e >= W or j >= H:
            return
        hlo, hhi = _covering(j, kh, sh, ph, 1, OH)
        wlo, whi = _covering(e, kw, sw, pw, 1, OW)
        z = cuda.blockIdx.z
        while z < gx.shape[0] * C * D:
            n, c, i = plane(z, C, D)
            dlo, dhi = _covering(i, kd, sd, pd, 1, OD)
            acc = zero
            for od in range(dlo, dhi):
                for oh in range(hlo, hhi):
                    for ow in range(wlo, whi):
                        acc += g[n, c, od, oh, ow] / (div_d[od] * div_h[oh] * div_w[ow])
            gx[n, c, i, j, e] = acc
            z += cuda.gridDim.z

    return max_pool_kernel, max_pool_gather, avg_pool_kernel, avg_pool_gather


_KERNELS = PerDtype(_build)


def _ints(values) -> tuple:
    return tuple(int(v) for v in values)


def _divisors(divisors, dtype) -> tuple:
    return tuple(constant(d, dtype) for d in divisors)


def _over(a):
    """(blocks, threads) with one thread per (w, h) position and z over (n, c, d)."""
    return grid3(a.shape[4], a.shape[3], a.shape[0] * a.shape[1] * a.shape[2])


def max_pool(x, out, indices, kernel, stride, pads, dilation) -> None:
    """Fill ``out`` (and ``indices`` unless None) for a 5-D device array ``x``."""
    want = indices is not None
    idx = indices if want else cuda.device_array((1, 1, 1, 1, 1), dtype=np.int64)
    blocks, tpb = _over(out)
    launch(_KERNELS[out.dtype][0], blocks, tpb, x, out, idx, want, False, *_ints(kernel),
           *_ints(stride), *_ints(pads), *_ints(dilation))


def avg_pool(x, out, kernel, stride, pads, divisors) -> None:
    """Fill ``out``; ``divisors`` holds each axis's per-output window lengths."""
    blocks, tpb = _over(out)
    launch(_KERNELS[out.dtype][2], blocks, tpb, x, out, *_ints(kernel), *_ints(stride),
           *_ints(pads), *_divisors(divisors, out.dtype))


def max_pool_backward(g, x, gx, kernel, stride, pads, dilation) -> None:
    """gx = gradient of max pooling: each grad_output goes to its window's (first) max."""
    idx = cuda.device_array(g.shape, dtype=np.int64)
    vals = cuda.device_array(g.shape, dtype=x.dtype)
    k, s, p, d = _ints(kernel), _ints(stride), _ints(pads), _ints(dilation)
    blocks, tpb = _over(vals)
    fwd, gather = _KERNELS[x.dtype][:2]
    launch(fwd, blocks, tpb, x, vals, idx, True, True, *k, *s, *p, *d)
    blocks, tpb = _over(gx)
    launch(gather, blocks, tpb, g, idx, gx, *k, *s, *p, *d)


def avg_pool_backward(g, gx, kernel, stride, pads, divisors) -> None:
    """gx = gradient of average pooling (each window spreads grad/divisor over its inputs)."""
    blocks, tpb = _over(gx)
    launch(_KERNELS[g.dtype][3], blocks, tpb, g, gx, *_ints(kernel), *_ints(stride),
           *_ints(pads), *_divisors(divisors, g.dtype))
