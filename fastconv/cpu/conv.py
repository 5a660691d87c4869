"""Direct cross-correlation on padded 5-D arrays ``(N, C, D, H, W)``.

One task computes a full output row for a block of up to ``CHANNEL_BLOCK`` output
channels; its accumulators are small local rows, the inner loop runs along the row (and
vectorizes when the stride is 1), and no two tasks write the same output element.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv._config import CHANNEL_BLOCK, JIT_PARALLEL, JIT_SERIAL


@njit(inline="always", **JIT_SERIAL)
def _fma_row4(a0, a1, a2, a3, seg, sw, w0, w1, w2, w3):
    """a_j[o] += w_j * seg[o*sw] for four accumulator rows (seg is a slice: no
    negative-index wraparound in the loop, so it vectorizes)."""
    if sw == 1:
        for o in range(a0.shape[0]):
            v = seg[o]
            a0[o] += w0 * v
            a1[o] += w1 * v
            a2[o] += w2 * v
            a3[o] += w3 * v
    else:
        for o in range(a0.shape[0]):
            v = seg[o * sw]
            a0[o] += w0 * v
            a1[o] += w1 * v
            a2[o] += w2 * v
            a3[o] += w3 * v


@njit(inline="always", **JIT_SERIAL)
def _fma_row1(a0, seg, sw, w0):
    """a0[o] += w0 * seg[o*sw]."""
    if sw == 1:
        for o in range(a0.shape[0]):
            a0[o] += w0 * seg[o]
    else:
        for o in range(a0.shape[0]):
            a0[o] += w0 * seg[o * sw]


@njit(**JIT_PARALLEL)
def correlate(xp, w, bias, out, stride, dilation, groups):
    """out[n, k, o] = bias[k] + sum_{c in group(k), r} xp[n, c, o*stride + r*dilation] * w[k, c, r].

    ``xp`` is already padded; ``bias`` has K entries (zeros when there is none).
    """
    N = xp.shape[0]
    K, Cg, KD, KH, KW = w.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    sd, sh, sw = stride[0], stride[1], stride[2]
    dd, dh, dw = dilation[0], dilation[1], dilation[2]
    Kg = K // groups
    B = CHANNEL_BLOCK
    nkb = (Kg + B - 1) // B
    span = (OW - 1) * sw + 1
    for t in prange(N * groups * nkb * OD * OH):
        oh = t % OH
        r = t // OH
        od = r % OD
        r //= OD
        kb = r % nkb
        r //= nkb
        g = r % groups
        n = r // groups
        k0 = g * Kg + kb * B
        nk = min(B, g * Kg + Kg - k0)
        acc = np.empty((B, OW), dtype=out.dtype)
        for j in range(nk):
            acc[j, :] = bias[k0 + j]
        a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
        for c in range(Cg):
            ci = g * Cg + c
            for a in range(KD):
                for b in range(KH):
                    row = xp[n, ci, od * sd + a * dd, oh * sh + b * dh]
                    for e in range(KW):
                        seg = row[e * dw : e * dw + span]
                        if nk == B:
                            _fma_row4(
                                a0, a1, a2, a3, seg, sw,
                                w[k0, c, a, b, e], w[k0 + 1, c, a, b, e],
                                w[k0 + 2, c, a, b, e], w[k0 + 3, c, a, b, e],
                            )
                        else:
                            for j in range(nk):
                                _fma_row1(acc[j], seg, sw, w[k0 + j, c, a, b, e])
        for j in range(nk):
            out[n, k0 + j, od, oh, :] = acc[j]
