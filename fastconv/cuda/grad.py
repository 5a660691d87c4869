"""Gradients of the direct correlation on 5-D device arrays ``(N, C, D, H, W)``.

Same names, arguments and method as ``fastconv.cpu.grad``:

- Input gradient (and transposed convolution): ``grad_output`` spread onto a zero grid,
  correlated (stride 1) by the forward kernel with the flipped, channel-transposed
  weight, then, for reflect/replicate/circular padding, folded back onto the source
  pixels (:func:`unpad`, the adjoint of ``pad.source_index``; a gather in the CPU's
  order, so bit-identical to it).
- Weight gradient: a two-pass reduction without atomics. Pass 1: one thread per (weight
  element, chunk of the ``N * OD * OH * OW`` output positions) writes a partial sum;
  pass 2: one thread per weight element adds its partials in chunk order. Deterministic
  from run to run (the summation order differs from the CPU's, so results agree to
  rounding).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from fastconv._config import CUDA_MAX_PARTIALS as MAX_PARTIALS
from fastconv._config import CUDA_WEIGHT_CHUNK as WEIGHT_CHUNK
from fastconv.cpu.pad import MODE_CODES
from fastconv.cuda._launch import PerDtype, ceil_div, grid1, grid3, launch
from fastconv.cuda.arrays import copy_into, empty, zeros
from fastconv.cuda.conv import correlate
from fastconv.cuda.pad import pad, source_index

__all__ = ["correlate_input", "correlate_weight", "sum_channels", "unpad"]



@cuda.jit
def fold_axis(src, out, before, mode):
    """out[a, s, i] = sum of src[a, p, i] over the padded positions p that read source s.

    ``src`` is ``(A, L_padded, B)``, ``out`` is ``(A, L, B)``: the adjoint of padding the
    middle axis with ``source_index`` (interior first, then the border in order of p).
    """
    i, s = cuda.grid(2)
    Lp, Bn = src.shape[1], src.shape[2]
    L = out.shape[1]
    if i >= Bn or s >= L:
        return
    z = cuda.blockIdx.z
    while z < src.shape[0]:
        acc = src[z, before + s, i]
        for p in range(Lp):
            if before <= p < before + L:
                continue
            if source_index(p - before, L, mode) == s:
                acc += src[z, p, i]
        out[z, s, i] = acc
        z += cuda.gridDim.z


def unpad(gp, pads, mode: str):
    """Adjoint of ``pad(x, pads, mode)`` for a 5-D gradient on the padded grid."""
    code = MODE_CODES[mode]
    for axis in (4, 3, 2):
        b, a = pads[axis - 2]
        if b == 0 and a == 0:
            continue
        shape = tuple(gp.shape)
        lp = shape[axis]
        outer = int(np.prod(shape[:axis]))
        inner = int(np.prod(shape[axis + 1 :]))
        out = empty(shape[:axis] + (lp - b - a,) + shape[axis + 1 :], gp.dtype)
        src3, out3 = gp.reshape(outer, lp, inner), out.reshape(outer, lp - b - a, inner)
        blocks, tpb = grid3(inner, lp - b - a, outer)
        launch(fold_axis, blocks, tpb, src3, out3, b, code)
        gp = out
    return gp


@cuda.jit
def transpose_weight(w, wt, groups):
    """wt[g*Cg + c, k, a, b, e] = w[g*Kg + k, c, KD-1-a, KH-1-b, KW-1-e]."""
    e, b = cuda.grid(2)
    K, Cg, KD, KH, KW = w.shape[0], w.shape[1], w.shape[2], w.shape[3], w.shape[4]
    if e >= KW or b >= KH:
        return
    Kg = K // groups
    z = cuda.blockIdx.z
    while z < groups * Cg * Kg * KD:
        a = z % KD
        k = (z // KD) % Kg
        ci = z // (KD * Kg)
        g = ci // Cg
        wt[ci, k, a, b, e] = w[g * Kg + k, ci - g * Cg, KD - 1 - a, KH - 1 - b, KW - 1 - e]
        z += cuda.gridDim.z


def correlate_input(g, w, bias, out, spread_shape, spread_src, spread_dst, dilation, groups,
                    pads, mode, algorithm="auto"):
    """Input gradient (or transposed convolution) of a correlation, written into ``out``.

    ``out`` is the gradient on the grid the correlation writes (the padded grid when
    ``mode`` is not "zeros", then folded with :func:`unpad`); the result is returned.
    ``algorithm``: every value runs the one direct kernel on the GPU.
    """
    gz = zeros(tuple(spread_shape), out.dtype)
    src = (slice(None), slice(None)) + tuple(slice(*s) for s in spread_src)
    dst = (slice(None), slice(None)) + tuple(slice(*s) for s in spread_dst)
    copy_into(gz[dst], g[src])
    K, Cg = w.shape[0], w.shape[1]
    wt = empty((groups * Cg, K // groups) + tuple(w.shape[2:]), out.dtype)
    blocks, tpb = grid3(w.shape[4], w.shape[3], groups * Cg * (K // groups) * w.shape[2])
    launch(transpose_weight, blocks, tpb, w, wt, int(groups))
    correlate(gz, wt, bias, out, (1, 1, 1), dilation, groups)
    if mode == "zeros":
        return out
    return unpad(out, pads, mode)


def _build(nbtype):
    """The two weight-gradient passes for one element type."""
    zero = nbtype(0)

    @cuda.jit
    def weight_partials(xp, g, part, kd, kh, kw, sd, sh, sw, dd, dh, dw, groups):
        """part[q, p] = sum over output positions t = p, p + P, p + 2P, ... of
        g[n, k, o] * xp[n, ci, o*stride + r*dilation] for weight element q = (k, c, r)."""
        p = cuda.grid(1)
        P = part.shape[1]
        if p >= P:
            return
        K = g.shape[1]
        Kg = K // groups
        Cg = xp.shape[1] // groups
        OD, OH, OW = g.shape[2], g.shape[3], g.shape[4]
        R = g.shape[0] * OD * OH * OW
        q = cuda.blockIdx.z
        while q < part.shape[0]:
            e = q % kw
            b = (q // kw) % kh
            a = (q // (kw * kh)) % kd
            r = q // (kw * kh * kd)
            c = r % Cg
            k = r // Cg
            ci = (k // Kg) * Cg + c
            acc = zero
            t = p
            while t < R:
                ow = t % OW
                u = t // OW
                oh = u % OH
                u //= OH
                od = u % OD
                n = u // OD
                acc += g[n, k, od, oh, ow] * xp[n, ci, od * sd + a * dd, oh * sh + b * dh,
                                                ow * sw + e * dw]
                t += P
            part[q, p] = acc
            q += cuda.gridDim.z

    @cuda.jit
    def sum_partials(part, flat):
        """flat[q] = part[q, 0] + part[q, 1] + ... (in that order)."""
        q = cuda.grid(1)
        if q < part.shape[0]:
            total = part[q, 0]
            for p in range(1, part.shape[1]):
                total += part[q, p]
            flat[q] = total

    return weight_partials, sum_partials


_KERNELS = PerDtype(_build)


def correlate_weight(xp, g, gw, stride, dilation, groups, algorithm="auto", pads=None):
    """gw[k, c, r] = sum_{n, o} g[n, k, o] * xp[n, group(k)*C_g + c, o*stride + r*dilation].

    ``xp`` is the padded input, or with ``pads`` (3 (before, after) pairs) the unpadded
    input with that zero padding; ``g`` the output gradient, ``gw`` a contiguous 5-D array
    (returned). ``algorithm``: every value runs the one direct kernel on the GPU.
    """
    if pads is not None:
        xp = pad(xp, pads, "zeros")
    sd, sh, sw = (int(v) for v in stride)
    dd, dh, dw = (int(v) for v in dilation)
    kd, kh, kw = (int(v) for v in gw.shape[2:])
    R = g.shape[0] * g.shape[2] * g.shape[3] * g.shape[4]
    nparts = max(1, min(MAX_PARTIALS, ceil_div(R, WEIGHT_CHUNK)))
    nw = int(gw.size)
    part = empty((nw, nparts), gw.dtype)
    partials, total = _KERNELS[gw.dtype]
    blocks, tpb = grid3(nparts, 1, nw)
    launch(partials, blocks, tpb, xp, g, part, kd, kh, kw, sd, sh, sw, dd, dh, dw, int(groups))
    blocks, tpb = grid1(nw)
    launch(total, blocks, tpb, part, gw.reshape(nw))
    return gw


def _build_channel_sums(nbtype):
    """Pass 1 of the bias gradient for one element type (pass 2 is ``sum_partials``)."""
    zero = nbtype(0)

    @cuda.jit
    def channel_partials(g, part):
        """part[k, p] = sum of g[n, k, s] over t = n*S + s in p, p + P, p + 2P, ..."""
        p = cuda.grid(1)
        P = part.shape[1]
        if p >= P:
            return
        N, S = g.shape[0], g.shape[2]
        k = cuda.blockIdx.z
        while k < g.shape[1]:
            acc = zero
            t = p
            while t < N * S:
                acc += g[t // S, k, t % S]
                t += P
            part[k, p] = acc
            k += cuda.gridDim.z

    return channel_partials


_CHANNEL_SUMS = PerDtype(_build_channel_sums)


def sum_channels(g3, out) -> None:
    """out[k] = sum_{n, s} g3[n, k, s] (the bias gradient; same two-pass, atomic-free
    reduction as :func:`correlate_weight`)."""
    R = g3.shape[0] * g3.shape[2]
    nparts = max(1, min(MAX_PARTIALS, ceil_div(R, WEIGHT_CHUNK)))
    K = int(g3.shape[1])
    part = empty((K, nparts), out.dtype)
    partials, total = _CHANNEL_SUMS[out.dtype], _KERNELS[out.dtype][1]
    blocks, tpb = grid3(nparts, 1, K)
    launch(partials, blocks, tpb, g3, part)
    blocks, tpb = grid1(K)
    launch(total, blocks, tpb, part, out)
