"""Small images (a few hundred to a thousand outputs per plane, few channels): every op of
a correlation as one BLAS product per image on a whole-image ``im2col`` block.

LeNet's layers (28x28 and 14x14 planes, 1-16 channels, 5x5 kernels) are too small for
the row-chunked GEMM and too few-channelled for the direct kernel's 4-channel blocks; a
training step spent most of its time in per-call and per-row overheads. Here an image's
whole receptive-field matrix ``col`` (``R x M`` with ``R = Cg * taps`` and ``M`` the
output pixels, at most ``SMALL_MAX_COL_BYTES``) is gathered by a serial Numba kernel and
multiplied by Numba's ``np.dot`` (the BLAS SciPy links), all in one ``nogil`` call per
block of ``SMALL_BLOCK`` images; blocks run as tasks on the fastconv threads
(``fastconv.cpu.blas.parallel``, single-threaded BLAS meanwhile):

- forward: ``out[n, g] (Kg x M) = W_g (Kg x R) @ col_n,g (R x M) + bias``;
- input gradient (``col2im``): ``dcol (R x M) = W_g^T (R x Kg) @ grad_output[n, g]
  (Kg x M)``, then scatter-added onto the padded grid and cropped (no spread grid, no
  flipped-kernel correlation of mostly zeros);
- weight gradient: ``dW_g (Kg x R) = sum_n grad_output[n, g] (Kg x M) @ col_n,g^T``,
  the images summed in ``SMALL_PARTS`` consecutive parts (a constant), the parts added
  in order.

Every image's products are the same BLAS calls whatever the thread count and however the
blocks fall to threads, so results are bit-identical run to run and for any thread
count. The error is that of a BLAS product (as ``"gemm"``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from fastconv._config import JIT_SERIAL
from fastconv.cpu import blas

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
#: Images per task (a constant: the tasks, and so the sums, never depend on threads).
SMALL_BLOCK = 4
#: Consecutive parts of the batch summed separately by the weight gradient.
SMALL_PARTS = 4


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


@njit(**JIT_SERIAL)
def _gather(x, n, c0, kshape, stride, dilation, oshape, before, col):
    """col[(c, a, b, e), (od, oh, ow)] = x[n, c0 + c, od*sd + a*dd - bd, oh*sh + b*dh - bh,
    ow*sw + e*dw - bw], 0 outside ``x`` (zero padding read in place; ``before`` is
    ``(bd, bh, bw)``, zeros for an input padded already). One image and group; ``col`` is
    ``(Cg * taps, OD * OH * OW)``."""
    KD, KH, KW = kshape
    sd, sh, sw = stride
    dd, dh, dw = dilation
    OD, OH, OW = oshape
    bd, bh, bw = before
    D, H, W = x.shape[2], x.shape[3], x.shape[4]
    zero = col.dtype.type(0)
    Cg = col.shape[0] // (KD * KH * KW)
    for c in range(Cg):
        for a in range(KD):
            for b in range(KH):
                for e in range(KW):
                    dst = col[((c * KD + a) * KH + b) * KW + e]
                    w0 = e * dw - bw  # input column of ow = 0
                    lo = min(OW, max(0, (-w0 + sw - 1) // sw))
                    hi = max(lo, min(OW, (W - 1 - w0) // sw + 1)) if W - 1 - w0 >= 0 else lo
                    for od in range(OD):
                        d = od * sd + a * dd - bd
                        for oh in range(OH):
                            h = oh * sh + b * dh - bh
                            o = (od * OH + oh) * OW
                            if d < 0 or d >= D or h < 0 or h >= H:
                                for i in range(OW):
                                    dst[o + i] = zero
                                continue
                            src = x[n, c0 + c, d, h]
                            for i in range(lo):
                                dst[o + i] = zero
                            if sw == 1:
                                seg = src[w0 + lo : w0 + hi]
                                out = dst[o + lo : o + hi]
                                for i in range(hi - lo):
                                    out[i] = seg[i]
                            else:
                                for i in range(lo, hi):
                                    dst[o + i] = src[w0 + i * sw]
                            for i in range(hi, OW):
                                dst[o + i] = zero


@njit(**JIT_SERIAL)
def _scatter(dcol, gp, kshape, stride, dilation, oshape):
    """The adjoint of :func:`_gather` for one image and group: gp[c, od*sd + a*dd,
    oh*sh + b*dh, ow*sw + e*dw] += dcol[(c, a, b, e), (od, oh, ow)] (``gp`` is the
    group's ``(Cg, Dp, Hp, Wp)`` padded grid; positions past it are dropped)."""
    KD, KH, KW = kshape
    sd, sh, sw = stride
    dd, dh, dw = dilation
    OD, OH, OW = oshape
    Cg, Dp, Hp, Wp = gp.shape
    for c in range(Cg):
        for a in range(KD):
            for b in range(KH):
                for e in range(KW):
                    src = dcol[((c * KD + a) * KH + b) * KW + e]
                    for od in range(OD):
                        d = od * sd + a * dd
                        if d >= Dp:
                            break
                        for oh in range(OH):
                            h = oh * sh + b * dh
                            if h >= Hp:
                                break
                            row = gp[c, d, h]
                            o = (od * OH + oh) * OW
                            w0 = e * dw
                            m = min(OW, (Wp - 1 - w0) // sw + 1) if w0 < Wp else 0
                            if sw == 1:
                                dst = row[w0 : w0 + m]
                                for i in range(m):
                                    dst[i] += src[o + i]
                            else:
                                for i in range(m):
                                    row[w0 + i * sw] += src[o + i]


@njit(**JIT_SERIAL)
def _forward_block(xp, wm, bias, out, n0, n1, kshape, stride, dilation, oshape, before, col):
    """out[n, g*Kg:(g+1)*Kg] = wm[g] @ col_n,g + bias for the images ``[n0, n1)``
    (``out`` is ``(N, K, M)``, ``wm`` is ``(groups, Kg, R)``)."""
    groups, Kg = wm.shape[0], wm.shape[1]
    Cg = col.shape[0] // (kshape[0] * kshape[1] * kshape[2])
    for n in range(n0, n1):
        for g in range(groups):
            _gather(xp, n, g * Cg, kshape, stride, dilation, oshape, before, col)
            y = np.dot(wm[g], col)
            for k in range(Kg):
                bk = bias[g * Kg + k]
                dst = out[n, g * Kg + k]
                src = y[k]
                for i in range(dst.shape[0]):
                    dst[i] = src[i] + bk


@njit(**JIT_SERIAL)
def _input_block(g, wt, bias, out, n0, n1, kshape, stride, dilation, oshape, before, gp):
    """out[n] = crop(scatter(wt[grp] @ g[n, grp])) + bias for the images ``[n0, n1)``:
    ``g`` is ``(N, K, M)``, ``wt`` is ``(groups, R, Kg)``, ``out`` is ``(N, C, D, H, W)``,
    ``gp`` one image's ``(C, Dp, Hp, Wp)`` padded scratch grid, ``before`` the leading
    padding per axis."""
    groups, R, Kg = wt.shape
    C, D, H, W = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    Cg = C // groups
    bd, bh, bw = before
    for n in range(n0, n1):
        gp[...] = 0
        for grp in range(groups):
            dcol = np.dot(wt[grp], g[n, grp * Kg : (grp + 1) * Kg])
            _scatter(dcol, gp[grp * Cg : (grp + 1) * Cg], kshape, stride, dilation, oshape)
        for c in range(C):
            bc = bias[c]
            for d in range(D):
                for h in range(H):
                    src = gp[c, bd + d, bh + h, bw : bw + W]
                    dst = out[n, c, d, h]
                    for i in range(W):
                        dst[i] = src[i] + bc


@njit(**JIT_SERIAL)
def _weight_part(xp, g, acc, n0, n1, kshape, stride, dilation, oshape, before, col):
    """acc[grp] = sum_{n in [n0, n1)} g[n, grp] @ col_n,grp^T, images in order (``g`` is
    ``(N, K, M)``, ``acc`` is ``(groups, Kg, R)``)."""
    groups, Kg = acc.shape[0], acc.shape[1]
    Cg = col.shape[0] // (kshape[0] * kshape[1] * kshape[2])
    acc[...] = 0
    for n in range(n0, n1):
        for grp in range(groups):
            _gather(xp, n, grp * Cg, kshape, stride, dilation, oshape, before, col)
            acc[grp] += np.dot(g[n, grp * Kg : (grp + 1) * Kg], col.T)


def _geometry(w_shape, stride, dilation, oshape):
    ints = lambda v: tuple(int(i) for i in v)  # noqa: E731 - Numba types them as UniTuples
    return ints(w_shape[2:]), ints(stride), ints(dilation), ints(oshape)


def _blocks(N: int):
    return [(n, min(N, n + SMALL_BLOCK)) for n in range(0, N, SMALL_BLOCK)]


def correlate(xp, w, bias, out, stride, dilation, groups, before=(0, 0, 0)):
    """Forward correlation, same arguments and result as
    :func:`fastconv.cpu.conv.correlate` (5-D arrays; ``xp`` padded, or unpadded with its
    zero padding read in place when ``before`` gives the leading padding per axis)."""
    N = xp.shape[0]
    K, Cg = w.shape[:2]
    kshape, st, dil, oshape = _geometry(w.shape, stride, dilation, out.shape[2:])
    R = Cg * math.prod(kshape)
    M = math.prod(oshape)
    wm = np.ascontiguousarray(w.reshape(groups, K // groups, R))
    b = np.ascontiguousarray(bias, dtype=out.dtype)
    out3 = out.reshape(N, K, M)
    bf = tuple(int(v) for v in before)
    blocks = _blocks(N)

    def task(i):
        col = np.empty((R, M), dtype=out.dtype)
        _forward_block(xp, wm, b, out3, *blocks[i], kshape, st, dil, oshape, bf, col)

    with np.errstate(invalid="ignore", over="ignore"):
        blas.parallel(task, len(blocks))
    return out


def zero_padding_core(pads):
    """:func:`correlate` reading the zero padding ``pads`` (3 ``(before, after)`` pairs) in
    place: the core is given the unpadded input."""
    before = tuple(int(b) for b, _ in pads)

    def core(x, w, bias, out, stride, dilation, groups):
        return correlate(x, w, bias, out, stride, dilation, groups, before)

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
    blocks = _blocks(N)

    def task(i):
        gp = np.empty((C,) + grid, dtype=out.dtype)
        _input_block(g3, wt, b, out, *blocks[i], kshape, st, dil, oshape, bf, gp)

    with np.errstate(invalid="ignore", over="ignore"):
        blas.parallel(task, len(blocks))
    return out


def weight_gradient(xp, g, gw, stride, dilation, groups, before=(0, 0, 0)):
    """gw[k, c, r] = sum_{n, o} g[n, k, o] * xp[n, group(k)*Cg + c, o*stride + r*dilation]
    (same arguments as ``fastconv.cpu.grad.correlate_weight_direct``; ``xp`` padded, or
    unpadded with its zero padding read in place when ``before`` gives the leading padding
    per axis)."""
    N = xp.shape[0]
    K, Cg = gw.shape[:2]
    kshape, st, dil, oshape = _geometry(gw.shape, stride, dilation, g.shape[2:])
    R = Cg * math.prod(kshape)
    M = math.prod(oshape)
    Kg = K // groups
    g3 = np.ascontiguousarray(g, dtype=gw.dtype).reshape(N, K, M)
    bf = tuple(int(v) for v in before)
    parts = min(SMALL_PARTS, N)
    bounds = [j * N // parts for j in range(parts + 1)]
    acc = np.empty((parts, groups, Kg, R), dtype=gw.dtype)

    def task(j):
        col = np.empty((R, M), dtype=gw.dtype)
        _weight_part(xp, g3, acc[j], bounds[j], bounds[j + 1], kshape, st, dil, oshape, bf,
                     col)

    with np.errstate(invalid="ignore", over="ignore"):
        blas.parallel(task, parts)
    total = acc[0]
    for j in range(1, parts):  # in order: the same sum for any thread count
        total += acc[j]
    gw[...] = total.reshape(gw.shape)
    return gw


# --- max pooling with non-overlapping windows, for MaxPool2d layers --------------------

#: Planes per task of the pooling kernels (a constant: the same tasks for any threads).
POOL_BLOCK = 64


@njit(**JIT_SERIAL)
def _pool_block(x, out, code, p0, p1, kh, kw):
    """out[p, oh, ow] = max of the window ``x[p, oh*kh : oh*kh + kh, ow*kw : ow*kw + kw]``
    and code[p, oh, ow] = its position ``a*kw + e`` in the window: the first maximum in
    row-major order, a NaN always winning (the last one; PyTorch's rule)."""
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
def _unpool_block(g, code, gx, p0, p1, kh, kw):
    """gx[p] = 0, then g[p, oh, ow] at the window position code[p, oh, ow]."""
    OH, OW = g.shape[1], g.shape[2]
    for p in range(p0, p1):
        gx[p] = 0
        for oh in range(OH):
            for ow in range(OW):
                j = code[p, oh, ow]
                gx[p, oh * kh + j // kw, ow * kw + j % kw] = g[p, oh, ow]


def max_pool_windows(x, kh: int, kw: int):
    """``(out, code)``: 2-D max pooling of ``x`` ``(P, H, W)`` over non-overlapping
    ``kh x kw`` windows (stride = window, no padding, floor), with each maximum's position
    in its window for :func:`max_pool_windows_backward` (uint8)."""
    P, H, W = x.shape
    out = np.empty((P, H // kh, W // kw), dtype=x.dtype)
    code = np.empty(out.shape, dtype=np.uint8)
    blocks = [(p, min(P, p + POOL_BLOCK)) for p in range(0, P, POOL_BLOCK)]
    blas.parallel(lambda i: _pool_block(x, out, code, *blocks[i], kh, kw), len(blocks))
    return out, code


def max_pool_windows_backward(g, code, shape, kh: int, kw: int):
    """The gradient of :func:`max_pool_windows` w.r.t. its input of ``shape`` ``(P, H, W)``:
    each ``g`` value at its window's maximum, zeros elsewhere."""
    gx = np.empty(shape, dtype=g.dtype)
    P = shape[0]
    blocks = [(p, min(P, p + POOL_BLOCK)) for p in range(0, P, POOL_BLOCK)]
    blas.parallel(lambda i: _unpool_block(g, code, gx, *blocks[i], kh, kw), len(blocks))
    return gx
