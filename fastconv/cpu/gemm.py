"""Correlation as matrix products: ``im2col`` (Numba) + one BLAS GEMM per image and group.

For each image ``n`` and group ``g``::

    out[n, g*Kg:(g+1)*Kg].reshape(Kg, L) = W_g (Kg x R) @ col (R x L)

with ``R = Cg * KD * KH * KW`` (the receptive field of one output) and ``L = OD * OH * OW``.
``col[(c, a, b, e), (od, oh, ow)] = xp[n, g*Cg + c, od*sd + a*dd, oh*sh + b*dh, ow*sw + e*dw]``
is gathered by a parallel Numba kernel; the product runs in NumPy's BLAS (its own threads).
The two never nest: Numba's parallel region ends before BLAS starts, so the cores are
never oversubscribed. The bias rides in the product as an extra row of ones in ``col``.

A 1x1, stride-1 correlation of an unpadded input needs no ``col`` at all: the input planes
are already the ``(Cg, L)`` matrix.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv._config import GEMM_COL_BYTES, JIT_PARALLEL


@njit(**JIT_PARALLEL)
def im2col(xp, n0, c0, kshape, stride, dilation, oshape, col):
    """col[i, (c, a, b, e), (od, oh, ow)] =
    xp[n0 + i, c0 + c, od*sd + a*dd, oh*sh + b*dh, ow*sw + e*dw]."""
    nb, R, L = col.shape
    KD, KH, KW = kshape[0], kshape[1], kshape[2]
    OD, OH, OW = oshape[0], oshape[1], oshape[2]
    sd, sh, sw = stride[0], stride[1], stride[2]
    dd, dh, dw = dilation[0], dilation[1], dilation[2]
    taps = KD * KH * KW
    for t in prange(nb * R * OD):
        od = t % OD
        q = t // OD
        r = q % R
        i = q // R
        c = r // taps
        tap = r % taps
        a = tap // (KH * KW)
        b = (tap // KW) % KH
        e = tap % KW
        dst = col[i, r]
        for oh in range(OH):
            src = xp[n0 + i, c0 + c, od * sd + a * dd, oh * sh + b * dh]
            base = (od * OH + oh) * OW
            if sw == 1:
                dst[base : base + OW] = src[e * dw : e * dw + OW]
            else:
                for ow in range(OW):
                    dst[base + ow] = src[e * dw + ow * sw]


def correlate(xp, w, bias, out, stride, dilation, groups):
    """out[n, k, o] = bias[k] + sum_{c in group(k), r} xp[n, c, o*stride + r*dilation] * w[k, c, r].

    Same arguments and result as :func:`fastconv.cpu.conv.correlate` (``xp`` padded,
    5-D arrays, ``bias`` with K entries).
    """
    # NaN/Inf propagate silently (inf * 0 -> NaN), as in the direct core: no RuntimeWarning
    with np.errstate(invalid="ignore", over="ignore"):
        return _correlate(xp, w, bias, out, stride, dilation, groups)


def _correlate(xp, w, bias, out, stride, dilation, groups):
    N = xp.shape[0]
    K, Cg, KD, KH, KW = w.shape
    oshape = np.array(out.shape[2:], dtype=np.int64)
    L = int(np.prod(oshape))
    R = Cg * KD * KH * KW
    Kg = K // groups
    out4 = out.reshape(N, groups, Kg, L)
    wm = w.reshape(groups, Kg, R)
    one_by_one = (
        R == Cg
        and all(int(s) == 1 for s in stride)
        and tuple(xp.shape[2:]) == tuple(out.shape[2:])
    )
    has_bias = bool(np.any(bias))
    if one_by_one:
        xv = xp.reshape(N, groups, Cg, L)
        for g in range(groups):
            for n in range(N):
                np.matmul(wm[g], xv[n, g], out=out4[n, g])
        if has_bias:
            out += bias.reshape(1, K, 1, 1, 1)
        return out
    rows = R + 1 if has_bias else R
    if has_bias:
        wm = np.concatenate([wm, bias.reshape(groups, Kg, 1)], axis=2)
    nb = int(max(1, min(N, GEMM_COL_BYTES // (rows * L * xp.itemsize))))
    col = np.empty((nb, rows, L), dtype=xp.dtype)
    if has_bias:
        col[:, R, :] = 1
    kshape = np.array((KD, KH, KW), dtype=np.int64)
    for g in range(groups):
        for n0 in range(0, N, nb):
            m = min(nb, N - n0)
            im2col(xp, n0, g * Cg, kshape, stride, dilation, oshape, col[:m, :R])
            for i in range(m):  # one 2-D product per image: a plain BLAS sgemm/dgemm call
                np.matmul(wm[g], col[i], out=out4[n0 + i, g])
    return out
