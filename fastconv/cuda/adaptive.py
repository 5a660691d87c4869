"""Adaptive average/max pooling and Lp pooling's elementwise passes on the GPU: the same
names, arguments and rules as ``fastconv.cpu.adaptive`` (planes ``(P, D, H, W)``,
per-axis ``(starts, ends)`` windows).

Forward: one thread per output element. Backward gathers (no atomics, deterministic):
one thread per input element sums the outputs whose window holds it -- outputs
``[floor(i*out/n), ceil((i+1)*out/n))`` along each axis, the same rule PyTorch's CUDA
kernel uses -- for max pooling only those whose recorded argmax is this element.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from fastconv.cuda._launch import PerDtype, grid1, grid3, launch
from fastconv.cuda.arrays import constant

__all__ = [
    "adaptive_avg_pool",
    "adaptive_avg_pool_backward",
    "adaptive_max_pool",
    "adaptive_max_pool_backward",
    "lp_finish",
    "lp_grad_in",
    "lp_grad_out",
    "mul_sign",
    "power",
    "signed_abs",
]


@cuda.jit(device=True)
def _covering(i, n, out):
    """Outputs [lo, hi) whose adaptive window over ``n`` inputs holds input ``i``."""
    return (i * out) // n, ((i + 1) * out + n - 1) // n


def _build(nbtype):
    zero = nbtype(0)
    one = nbtype(1)

    @cuda.jit
    def avg_kernel(x, out, sd, ed, sh, eh, sw, ew):
        ow, oh = cuda.grid(2)
        OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
        if ow >= OW or oh >= OH:
            return
        z = cuda.blockIdx.z
        while z < out.shape[0] * OD:
            od = z % OD
            p = z // OD
            acc = zero
            for d in range(sd[od], ed[od]):
                for h in range(sh[oh], eh[oh]):
                    for w in range(sw[ow], ew[ow]):
                        acc += x[p, d, h, w]
            count = (ed[od] - sd[od]) * (eh[oh] - sh[oh]) * (ew[ow] - sw[ow])
            out[p, od, oh, ow] = acc / nbtype(count)
            z += cuda.gridDim.z

    @cuda.jit
    def max_kernel(x, out, idx, want_idx, sd, ed, sh, eh, sw, ew):
        ow, oh = cuda.grid(2)
        H, W = x.shape[2], x.shape[3]
        OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
        if ow >= OW or oh >= OH:
            return
        z = cuda.blockIdx.z
        while z < out.shape[0] * OD:
            od = z % OD
            p = z // OD
            best = x[p, sd[od], sh[oh], sw[ow]]
            at = (sd[od] * H + sh[oh]) * W + sw[ow]
            for d in range(sd[od], ed[od]):
                for h in range(sh[oh], eh[oh]):
                    for w in range(sw[ow], ew[ow]):
                        v = x[p, d, h, w]
                        if v > best or v != v:
                            best = v
                            at = (d * H + h) * W + w
            out[p, od, oh, ow] = best
            if want_idx:
                idx[p, od, oh, ow] = at
            z += cuda.gridDim.z

    @cuda.jit
    def avg_gather(g, gx, sd, ed, sh, eh, sw, ew):
        w, h = cuda.grid(2)
        D, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
        OD, OH, OW = g.shape[1], g.shape[2], g.shape[3]
        if w >= W or h >= H:
            return
        hlo, hhi = _covering(h, H, OH)
        wlo, whi = _covering(w, W, OW)
        z = cuda.blockIdx.z
        while z < gx.shape[0] * D:
            d = z % D
            p = z // D
            dlo, dhi = _covering(d, D, OD)
            acc = zero
            for od in range(dlo, dhi):
                for oh in range(hlo, hhi):
                    for ow in range(wlo, whi):
                        count = (ed[od] - sd[od]) * (eh[oh] - sh[oh]) * (ew[ow] - sw[ow])
                        acc += g[p, od, oh, ow] / nbtype(count)
            gx[p, d, h, w] = acc
            z += cuda.gridDim.z

    @cuda.jit
    def max_gather(g, idx, gx):
        w, h = cuda.grid(2)
        D, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
        OD, OH, OW = g.shape[1], g.shape[2], g.shape[3]
        if w >= W or h >= H:
            return
        hlo, hhi = _covering(h, H, OH)
        wlo, whi = _covering(w, W, OW)
        z = cuda.blockIdx.z
        while z < gx.shape[0] * D:
            d = z % D
            p = z // D
            flat = (d * H + h) * W + w
            dlo, dhi = _covering(d, D, OD)
            acc = zero
            for od in range(dlo, dhi):
                for oh in range(hlo, hhi):
                    for ow in range(wlo, whi):
                        if idx[p, od, oh, ow] == flat:
                            acc += g[p, od, oh, ow]
            gx[p, d, h, w] = acc
            z += cuda.gridDim.z

    @cuda.jit
    def power_kernel(x, p, out):
        i = cuda.grid(1)
        if i < x.shape[0]:
            out[i] = x[i] ** p

    @cuda.jit
    def finish_kernel(a, scale, inv_p):
        i = cuda.grid(1)
        if i < a.shape[0]:
            v = a[i]
            s = zero if v == 0 else (one if v > 0 else -one)
            r = abs(v)
            if v != v:
                s = v
                r = v
            a[i] = (s * r * scale) ** inv_p

    @cuda.jit
    def grad_out_kernel(g, a, scale, inv_p, out):
        i = cuda.grid(1)
        if i < a.shape[0]:
            v = a[i]
            if abs(v) <= 0:
                out[i] = zero
            else:
                s = v if v != v else (one if v > 0 else -one)
                t = s * abs(v) * scale
                gt = g[i] * (inv_p * t ** (inv_p - one))
                out[i] = gt * scale * s * s

    @cuda.jit
    def grad_in_kernel(gp, x, p, out):
        i = cuda.grid(1)
        if i < x.shape[0]:
            out[i] = zero if p == 0 else gp[i] * (p * x[i] ** (p - one))

    @cuda.jit
    def signed_abs_kernel(x, s, out):
        i = cuda.grid(1)
        if i < x.shape[0]:
            out[i] = s * abs(x[i])

    @cuda.jit
    def mul_sign_kernel(g, x, out):
        i = cuda.grid(1)
        if i < x.shape[0]:
            v = x[i]
            out[i] = g[i] if v > 0 else (-g[i] if v < 0 else (v if v != v else zero * g[i]))

    return dict(signed_abs=signed_abs_kernel, mul_sign=mul_sign_kernel, avg=avg_kernel,
                max=max_kernel, avg_gather=avg_gather, max_gather=max_gather,
                power=power_kernel, finish=finish_kernel, grad_out=grad_out_kernel,
                grad_in=grad_in_kernel)


_KERNELS = PerDtype(_build)


def _windows(windows) -> tuple:
    return tuple(constant(v, np.int64) for pair in windows for v in pair)


def _over(a):
    """(blocks, threads): one thread per (w, h), z over (p, d)."""
    return grid3(a.shape[3], a.shape[2], a.shape[0] * a.shape[1])


def _flat(a):
    return a.reshape(a.size)


def adaptive_avg_pool(x, out, windows) -> None:
    if out.size:
        blocks, tpb = _over(out)
        launch(_KERNELS[out.dtype]["avg"], blocks, tpb, x, out, *_windows(windows))


def adaptive_max_pool(x, out, indices, windows) -> None:
    if out.size:
        want = indices is not None
        idx = indices if want else cuda.device_array((1, 1, 1, 1), dtype=np.int64)
        blocks, tpb = _over(out)
        launch(_KERNELS[out.dtype]["max"], blocks, tpb, x, out, idx, want, *_windows(windows))


def adaptive_avg_pool_backward(g, gx, windows) -> None:
    if gx.size:
        blocks, tpb = _over(gx)
        launch(_KERNELS[g.dtype]["avg_gather"], blocks, tpb, g, gx, *_windows(windows))


def adaptive_max_pool_backward(g, x, gx, windows) -> None:
    if not gx.size:
        return
    idx = cuda.device_array(g.shape, dtype=np.int64)
    vals = cuda.device_array(g.shape, dtype=x.dtype)
    adaptive_max_pool(x, vals, idx, windows)
    blocks, tpb = _over(gx)
    launch(_KERNELS[g.dtype]["max_gather"], blocks, tpb, g, idx, gx)


def _elementwise(name, dtype, n, *args) -> None:
    if n:
        blocks, tpb = grid1(n)
        launch(_KERNELS[dtype][name], blocks, tpb, *args)


def power(x, p, out) -> None:
    _elementwise("power", out.dtype, out.size, _flat(x), out.dtype.type(p), _flat(out))


def lp_finish(a, scale, p) -> None:
    t = a.dtype.type
    _elementwise("finish", a.dtype, a.size, _flat(a), t(scale), t(1.0 / p))


def lp_grad_out(g, a, scale, p, out) -> None:
    t = a.dtype.type
    _elementwise("grad_out", a.dtype, a.size, _flat(g), _flat(a), t(scale), t(1.0 / p),
                 _flat(out))


def lp_grad_in(gp, x, p, out) -> None:
    _elementwise("grad_in", x.dtype, x.size, _flat(gp), _flat(x), x.dtype.type(p), _flat(out))


def signed_abs(x, s, out) -> None:
    _elementwise("signed_abs", out.dtype, out.size, _flat(x), out.dtype.type(s), _flat(out))


def mul_sign(g, x, out) -> None:
    _elementwise("mul_sign", out.dtype, out.size, _flat(g), _flat(x), _flat(out))
