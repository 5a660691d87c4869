"""Correlation by FFT, for large kernels: overlap-save tiles.

The input is already padded, so every output is a "valid" correlation of ``xp`` with the
dilated kernel ``wd`` (span ``S`` per axis). A circular correlation of length ``L`` is
exact at its first ``T = L - S + 1`` positions (no window wraps around), so the needed
positions ``p = o * stride`` are cut into tiles of ``T`` per axis; each tile reads its
input block of ``L`` (zero-filled past the end of ``xp``), and::

    y_tile = irfftn(rfftn(x_tile) * conj(rfftn(wd, L)))[:T]

summed over the channels of each group in the frequency domain. Tiles of at most
``TILE_ELEMENTS`` (a few hundred KiB: they stay in the core's L2 cache) beat one
transform of the whole plane by about 2x on a 2048x2048 plane; a plane that fits one
tile is transformed whole (``tile_lengths`` picks ``L`` per axis by a cost model).

Transforms run in the input's precision (``scipy.fft`` keeps float32 as complex64; NumPy's
FFT does not) with one worker per Numba thread; ``numpy.fft`` is used when SciPy is
missing. The tiles are overlapping views of one zero-extended copy of the input (which
also does the zero padding: ``zero_padding_core``); writing the results (plus bias) into
the output is a parallel Numba loop.

An input or kernel holding NaN or Inf goes to the direct kernel instead, so that they
propagate only to the outputs whose windows hold them, exactly as with the other
algorithms. The input check costs no extra pass: a tile's zero-frequency term is the sum
of its values, which is finite exactly when they all are (barring float overflow, which
also takes the exact path).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange
from numpy.lib.stride_tricks import as_strided

from fastconv._config import FFT_TILE_ELEMENTS as TILE_ELEMENTS
from fastconv._config import JIT_PARALLEL
from fastconv.cpu.conv import correlate as direct_correlate

try:  # pragma: no cover - exercised where SciPy is installed (the test extras)
    import scipy.fft as _sfft

    def _rfftn(a, s, axes):
        return _sfft.rfftn(a, s=s, axes=axes, workers=numba.get_num_threads())

    def _irfftn(a, s, axes):
        return _sfft.irfftn(a, s=s, axes=axes, workers=numba.get_num_threads())

    def _fast_len(n: int) -> int:
        return int(_sfft.next_fast_len(n, real=True))

except ImportError:  # pragma: no cover

    def _rfftn(a, s, axes):
        return np.fft.rfftn(a, s=s, axes=axes).astype(np.result_type(a, np.complex64))

    def _irfftn(a, s, axes):
        return np.fft.irfftn(a, s=s, axes=axes).astype(np.result_type(a.real, np.float32))

    def _fast_len(n: int) -> int:
        m = n
        while True:  # smallest 2^a 3^b 5^c >= n
            r = m
            for p in (2, 3, 5):
                while r % p == 0:
                    r //= p
            if r == 1:
                return m
            m += 1


def tile_lengths(needed, span) -> tuple:
    """Transform length ``L`` per axis for ``needed`` output positions and kernel
    ``span``: the cheapest by ``tiles * L * (log2 L + 4)`` (transform plus the passes over
    each element) among fast lengths up to the per-axis share of ``TILE_ELEMENTS``, or
    the whole axis in one transform when that is cheaper.

    >>> tile_lengths((1, 2048, 2048), (1, 31, 31))
    (1, 240, 240)
    """
    active = sum(1 for q, s in zip(needed, span, strict=True) if q + s > 2)
    cap = int(TILE_ELEMENTS ** (1.0 / max(active, 1)))
    out = []
    for q, s in zip(needed, span, strict=True):
        whole = _fast_len(q + s - 1)
        best, best_cost = whole, whole * (math.log2(whole) + 4)
        length = _fast_len(max(2 * s, 8))
        while length < min(cap, whole):
            cost = -(-q // (length - s + 1)) * length * (math.log2(length) + 4)
            if cost < best_cost:
                best, best_cost = length, cost
            length = _fast_len(length + 1)
        out.append(best)
    return tuple(out)


@njit(**JIT_PARALLEL)
def zero_extend(x, xq, before):
    """xq[n, c, i, j, l] = x[n, c, i - before[0], j - before[1], l - before[2]], zero where
    that is outside ``x``: ``x`` zero-padded (and extended) to ``xq``'s shape."""
    N, C, D, H, W = x.shape
    QD, QH, QW = xq.shape[2], xq.shape[3], xq.shape[4]
    bd, bh, bw = before[0], before[1], before[2]
    l0 = min(max(bw, 0), QW)
    l1 = max(min(bw + W, QW), l0)
    for r in prange(N * C * QD):
        i = r % QD
        nc = r // QD
        c = nc % C
        n = nc // C
        d = i - bd
        for j in range(QH):
            dst = xq[n, c, i, j]
            h = j - bh
            if d < 0 or d >= D or h < 0 or h >= H:
                dst[:] = 0
                continue
            src = x[n, c, d, h]
            dst[:l0] = 0
            dst[l0:l1] = src[l0 - bw : l1 - bw]
            dst[l1:] = 0


@njit(**JIT_PARALLEL)
def scatter_tiles(y, bias, out, step, counts, stride):
    """out[n, k, o] = y[n, k, tile of p, p - tile start] + bias[k] with ``p = o * stride``
    on every axis; ``y``'s tile axis runs over (D, H, W) tiles, W fastest."""
    N, K, OD, OH, OW = out.shape
    sd, sh, sw = stride[0], stride[1], stride[2]
    TW = step[2]
    for r in prange(N * K * OD * OH):
        oh = r % OH
        q = r // OH
        od = q % OD
        nk = q // OD
        k = nk % K
        n = nk // K
        pd, ph = od * sd, oh * sh
        td, th = pd // step[0], ph // step[1]
        i, j = pd - td * step[0], ph - th * step[1]
        row = out[n, k, od, oh]
        b = bias[k]
        ow = 0
        while ow < OW:  # one run of outputs per tile along W
            tw = (ow * sw) // TW
            stop = min(OW, (tw * TW + TW + sw - 1) // sw)
            src = y[n, k, (td * counts[1] + th) * counts[2] + tw, i, j]
            base = tw * TW
            for o in range(ow, stop):
                row[o] = src[o * sw - base] + b
            ow = stop


def correlate(xp, w, bias, out, stride, dilation, groups):
    """out[n, k, o] = bias[k] + sum_{c in group(k), r} xp[n, c, o*stride + r*dilation] * w[k, c, r].

    Same arguments and result (within float rounding) as
    :func:`fastconv.cpu.conv.correlate`.
    """
    return _correlate(xp, w, bias, out, stride, dilation, groups, _NO_PADS)


def zero_padding_core(pads):
    """:func:`correlate` for an unpadded input with zero padding ``pads`` (three (before,
    after) pairs): the tiles read the padding in place, so the caller makes no padded copy."""

    def core(x, w, bias, out, stride, dilation, groups):
        return _correlate(x, w, bias, out, stride, dilation, groups, pads)

    return core


_NO_PADS = ((0, 0),) * 3


def _correlate(x, w, bias, out, stride, dilation, groups, pads):
    if not np.isfinite(w).all():
        return _direct(x, w, bias, out, stride, dilation, groups, pads)
    N, C = x.shape[:2]
    K, Cg = w.shape[:2]
    Kg = K // groups
    s = tuple(int(v) for v in stride)
    d = tuple(int(v) for v in dilation)
    span = tuple((k - 1) * di + 1 for k, di in zip(w.shape[2:], d, strict=True))
    needed = tuple((o - 1) * st + 1 for o, st in zip(out.shape[2:], s, strict=True))
    L = tile_lengths(needed, span)
    step = tuple(n - sp + 1 for n, sp in zip(L, span, strict=True))
    counts = tuple(-(-q // t) for q, t in zip(needed, step, strict=True))
    axes = tuple(a - 3 for a in range(3) if L[a] > 1) or (-1,)
    fshape = tuple(L[a + 3] for a in axes)

    # the padded input, extended with zeros to whole tiles; the tiles are overlapping
    # views of it (the transform copies each line it reads anyway)
    ext = tuple(c * t + sp - 1 for c, t, sp in zip(counts, step, span, strict=True))
    xq = np.empty((N, C, *ext), dtype=x.dtype)
    zero_extend(x, xq, tuple(b for b, _ in pads))
    sN, sC, sD, sH, sW = xq.strides
    tiles = as_strided(xq, (N, C, *counts, *L),
                       (sN, sC, sD * step[0], sH * step[1], sW * step[2], sD, sH, sW),
                       writeable=False)
    xf = _rfftn(tiles, fshape, axes)
    del tiles, xq
    if not np.isfinite(xf[..., 0, 0, 0]).all():  # a tile's sum: NaN/Inf in the input
        return _direct(x, w, bias, out, stride, dilation, groups, pads)

    wd = np.zeros((K, Cg, *L), dtype=w.dtype)
    wd[:, :, : span[0] : d[0], : span[1] : d[1], : span[2] : d[2]] = w
    wf = _rfftn(wd, fshape, axes)
    np.conjugate(wf, out=wf)
    wf = wf[:, :, None, None, None]  # broadcast over the tiles
    if groups == 1 and Cg == 1 and K == 1:
        xf *= wf[:, 0]
        yf = xf
    else:
        yf = np.empty((N, K, *xf.shape[2:]), dtype=xf.dtype)
        for g in range(groups):
            xg = xf[:, g * Cg : (g + 1) * Cg]
            wg = wf[g * Kg : (g + 1) * Kg]
            yg = yf[:, g * Kg : (g + 1) * Kg]
            np.multiply(xg[:, None, 0], wg[None, :, 0], out=yg)
            for c in range(1, Cg):
                yg += xg[:, None, c] * wg[None, :, c]
    del xf
    y = _irfftn(yf, fshape, axes)
    scatter_tiles(y.reshape(N, K, math.prod(counts), *L), bias, out, step, counts, s)
    return out


def _direct(x, w, bias, out, stride, dilation, groups, pads):
    """The direct kernel (NaN/Inf present): on the zero-padded input."""
    from fastconv.cpu.pad import pad

    return direct_correlate(pad(x, pads, "zeros"), w, bias, out, stride, dilation, groups)
