"""Winograd F(4, 3) along W, fused with the folded GEMM (``fastconv.cpu.gemm.folded``):
3-D (and 2-D) correlations with 3 kernel columns, unit stride and dilation along W.

Along W, the 4 outputs ``y[4t : 4t+4]`` of one row and output channel are::

    y = A^T [ (G w[k, c, a, b, :]) * (B^T xpad[c, d*sd + a*dd, h + b*dh, 4t : 4t+6]) ]

(F(4, 3), the matrices of ``fastconv.cpu.winograd``: points 0, +-1, +-2, infinity), so each
of the 6 transform points ``p`` is one folded product over the channels and the depth taps::

    M[p] (Kg x rows*P) (+)= U[p, b] (Kg x Cg*KD) @ V[p][:, b*dh*P : b*dh*P + rows*P]

one per kernel row ``b`` (a kernel row is a shift of the chunk's ``V`` by whole rows of
``P = T + 1`` columns: ``T = ceil(OW/4)`` tiles and one scratch column, which lets one
transform run over all the rows of a (channel, depth slice) as one vector). ``V`` holds
the transformed input depth slices in depth-major order, so the ``KD`` depth taps of an
output slice are ``KD * Cg`` consecutive rows (dilation 1 in depth: one product; else
one per tap), and each input slice is transformed once for all the output slices of a
chunk that read it. That is 6/4 products per output per (channel, depth tap, kernel row)
where the GEMM does 3: 2x fewer multiplies (C3, 32 -> 32 channels 3x3x3: 2.8 -> 1.4
GMAC, plus the scratch columns). A task (image, group, chunk of depth slices and rows)
transforms its input straight from the unpadded input (every padding mode) into its
thread's scratch, runs the products, and inverse-transforms into ``out`` (plus bias).

Error: the 1-D F(4, 3) transform; measured float32 max |error| / max |y| (random normal
data, tests' layers) below 2e-6 (the tests allow 4e-6). NaN/Inf: Winograd mixes a tile's
pixels, so a non-finite weight or any non-finite output sends the call to the folded GEMM,
whose NaN/Inf pattern is the direct kernel's. Bit-identical run to run and for any thread
count (fixed chunks, one task per output element, single-threaded BLAS).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fastconv._config import GEMM_COL_CHUNK_BYTES, JIT_SERIAL
from fastconv.cpu import blas
from fastconv.cpu.gemm import _buffer, folded
from fastconv.cpu.gemm import padding_core as gemm_padding_core
from fastconv.cpu.pad import MODE_CODES, source_index
from fastconv.cpu.winograd import _G, _at4_out, _bt4

#: Fewest input channels per group (times depth taps) for which the W-Winograd path runs.
MIN_R = 16


def applies(w_shape, stride, dilation, groups) -> bool:
    """Whether :func:`correlate` computes this 5-D correlation (3-D layers only: 2-D 3x3
    layers have the 2-D Winograd)."""
    K, Cg, KD, KH, KW = (int(v) for v in w_shape)
    return (KW == 3 and KD > 1 and int(stride[1]) == 1 and int(stride[2]) == 1
            and int(dilation[2]) == 1 and Cg * KD >= MIN_R and K // groups >= 8
            and blas.available())


@njit(**JIT_SERIAL)
def transform_rows(x, n, c0, pads, sd, dd, KD, mode, d, h0, nrows, T, q, V):
    """``V[p, a*Cg + c, j*(T+1) + t] = (B^T xpad[n, c0 + c, d*sd + a*dd, h0 + j, 4t : 4t+6])_p``
    for ``j < nrows``, ``t < T`` (``xpad``: ``x`` padded by ``pads`` (before) in ``mode``;
    the column ``t = T`` of each row is scratch). The rows of one (channel, depth tap) are
    first copied, padded, into ``q`` with a row pitch of ``4*(T+1)``, so that tile ``u`` of
    the flattened rows reads ``q[4u : 4u+6]`` and one transform runs over all of them."""
    N, C, D, H, W = x.shape
    pd, ph, pw = pads[0], pads[1], pads[2]
    Cg = V.shape[1] // KD
    P = T + 1
    Q = 4 * P
    L = nrows * P - 1
    lo = min(pw, Q)
    hi = max(min(W + pw, Q), lo)
    for c in range(Cg):
        for a in range(KD):
            ds = source_index(d * sd + a * dd - pd, D, mode)
            r = a * Cg + c
            for j in range(nrows):
                hs = source_index(h0 + j - ph, H, mode)
                row = q[j * Q : (j + 1) * Q]
                if ds < 0 or hs < 0:
                    row[:] = 0
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
            e = 4 * L
            _bt4(q[0:e:4], q[1 : e + 1 : 4], q[2 : e + 2 : 4], q[3 : e + 3 : 4],
                 q[4 : e + 4 : 4], q[5 : e + 5 : 4], V[0, r, 0:L], V[1, r, 0:L],
                 V[2, r, 0:L], V[3, r, 0:L], V[4, r, 0:L], V[5, r, 0:L])
            for p in range(6):
                V[p, r, L] = 0


@njit(**JIT_SERIAL)
def store_rows(M, bias, out, n, k0, d, h0, T, y4, bvec, acc):
    """``out[n, k0 + k, d, h0 + j, 4t + i] = (A^T M[:, k, j*(T+1) + t])_i + bias[k]``;
    returns whether every stored value is finite."""
    Kg = M.shape[1]
    P = T + 1
    rows = M.shape[2] // P
    OW = out.shape[4]
    acc[:] = 0
    for k in range(Kg):
        bvec[:] = bias[k]
        for j in range(rows):
            b = j * P
            _at4_out(M[0, k, b : b + T], M[1, k, b : b + T], M[2, k, b : b + T],
                     M[3, k, b : b + T], M[4, k, b : b + T], M[5, k, b : b + T],
                     y4[0], y4[1], y4[2], y4[3], bvec, acc)
            row = out[n, k0 + k, d, h0 + j]
            for t in range(OW // 4):
                for i in range(4):
                    row[4 * t + i] = y4[i, t]
            for o in range(OW // 4 * 4, OW):
                row[o] = y4[o % 4, o // 4]
    return np.isfinite(acc.sum())


def weight_transform(w, groups: int) -> np.ndarray:
    """``U[p, b, g, k, a*Cg + c] = sum_e G[p, e] w[g*Kg + k, c, a, b, e]`` (float64 sums)."""
    K, Cg, KD, KH, _ = w.shape
    w6 = w.astype(np.float64).reshape(groups, K // groups, Cg, KD, KH, 3)
    U = np.einsum("pe,gkcabe->pbgkac", _G[4], w6)
    return np.ascontiguousarray(U.reshape(6, KH, groups, K // groups, Cg * KD), dtype=w.dtype)


def chunks(OD: int, OH: int, KD: int, sd: int, dd: int, extra: int, Cg: int, T: int,
           itemsize: int):
    """Fixed (d0, d1, h0, h1) chunks: rows of about 256 product columns (``rows*(T+1)``),
    and as many output depth slices as keep the chunk's ``V`` (its input depth slices,
    transformed once and shared by the output slices that read them) within about
    ``2 * GEMM_COL_CHUNK_BYTES``."""
    P = T + 1
    nh = -(-OH // max(1, -(-256 // P)))
    hs = [(OH * p // nh, OH * (p + 1) // nh) for p in range(nh)]
    width = (-(-OH // nh) + extra) * P
    slices = max(1, 2 * GEMM_COL_CHUNK_BYTES // (6 * Cg * width * itemsize))
    dch = max(1, (slices - (KD - 1) * dd - 1) // sd + 1)
    nd = -(-OD // dch)
    ds = [(OD * p // nd, OD * (p + 1) // nd) for p in range(nd)]
    return [(d0, d1, h0, h1) for d0, d1 in ds for h0, h1 in hs]


def correlate(x, w, bias, out, stride, dilation, groups, pads, mode):
    """``out`` = the correlation of the unpadded ``x`` (padded by ``pads`` in ``mode``)
    with ``w`` plus ``bias``, by F(4, 3) along W (module docstring); falls back to the
    folded GEMM where a weight or an output is not finite."""
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
    parts_ = chunks(OD, OH, KD, sd, dd, extra, Cg, T, s)
    nchunks = len(parts_)
    before = np.array([b for b, _ in pads], dtype=np.int64)
    code = MODE_CODES[mode]
    biasv = np.ascontiguousarray(bias, dtype=dt)
    ua = blas.address(U)
    prods: dict = {}
    finite = [True]
    P = T + 1
    merged = dd == 1  # the KD depth taps' rows are contiguous in V: one product

    def product(lc, width):
        key = (lc, width)
        if key not in prods:
            kk = KD * Cg if merged else Cg
            prods[key] = blas.Gemm(dt, Kg, lc, kk, lda=KD * Cg, ldb=width, ldc=lc)
        return prods[key]

    def task(i):
        d0, d1, h0, h1 = parts_[i % nchunks]
        g = (i // nchunks) % groups
        n = i // (nchunks * groups)
        nrows = h1 - h0 + extra
        lc, width = (h1 - h0) * P, nrows * P
        nz = (d1 - 1 - d0) * sd + (KD - 1) * dd + 1  # input depth slices (padded coords)
        sizes = (6 * nz * Cg * width, 6 * Kg * lc, 4 * width, 4 * T, 2 * T)  # V, M, q, ...
        buf = _buffer(sum(sizes) * s).view(dt)
        views, o = [], 0
        for z in sizes:
            views.append(buf[o : o + z])
            o += z
        V = views[0].reshape(6, nz * Cg, width)
        M = views[1].reshape(6, Kg, lc)
        q = views[2]
        y4 = views[3].reshape(4, T)
        bvec, acc = views[4][:T], views[4][T:]
        transform_rows(x, n, g * Cg, before, 1, 1, nz, code, d0 * sd, h0, nrows, T, q, V)
        prod, va, ma = product(lc, width), blas.address(V), blas.address(M)
        taps = [0] if merged else list(range(KD))
        for d in range(d0, d1):
            for p in range(6):
                first = True
                for b in range(KH):
                    for a in taps:
                        z = (d - d0) * sd + a * dd
                        prod(ua + (((p * KH + b) * groups + g) * Kg * KD * Cg + a * Cg) * s,
                             va + ((p * nz + z) * Cg * width + b * dh * P) * s,
                             ma + p * Kg * lc * s, not first)
                        first = False
            if not store_rows(M, biasv[g * Kg : (g + 1) * Kg], out, n, g * Kg, d, h0, T, y4,
                              bvec, acc):
                finite[0] = False

    with np.errstate(invalid="ignore", over="ignore"):
        blas.parallel(task, N * groups * nchunks)
    if not finite[0]:
        return folded(x, w, bias, out, stride, dilation, groups, pads, mode)
    return out


def padding_core(pads, mode):
    """The GEMM algorithm's core for an input padded by ``pads`` in ``mode``: this module's
    :func:`correlate` where it :func:`applies`, else ``fastconv.cpu.gemm.padding_core``'s."""
    other = gemm_padding_core(pads, mode)

    def core(x, w, bias, out, stride, dilation, groups):
        if applies(w.shape, stride, dilation, groups):
            return correlate(x, w, bias, out, stride, dilation, groups, pads, mode)
        return other(x, w, bias, out, stride, dilation, groups)

    return core
