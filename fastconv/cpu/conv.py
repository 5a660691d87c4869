"""Direct cross-correlation on padded 5-D arrays ``(N, C, D, H, W)``.

One task computes a full output row for a block of up to ``CHANNEL_BLOCK`` output
channels; its accumulators are small local rows, the inner loop runs along the row (and
vectorizes when the stride is 1), and no two tasks write the same output element.
"""

from __future__ import annotations

import types

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


@njit(inline="always", **JIT_SERIAL)
def _fma_taps3(a0, s0, s1, s2, sw, w0, w1, w2):
    """a0[o] += w0*s0[o*sw] + w1*s1[o*sw] + w2*s2[o*sw]: three taps of one kernel row per
    pass, so the accumulator is loaded and stored once per three multiply-adds."""
    if sw == 1:
        for o in range(a0.shape[0]):
            a0[o] += w0 * s0[o] + w1 * s1[o] + w2 * s2[o]
    else:
        for o in range(a0.shape[0]):
            i = o * sw
            a0[o] += w0 * s0[i] + w1 * s1[i] + w2 * s2[i]


@njit(inline="always", **JIT_SERIAL)
def _row1(a0, row, span, sw, dw, wrow):
    """a0[o] += sum_e wrow[e] * row[o*sw + e*dw] for one kernel row, three taps a pass."""
    KW = wrow.shape[0]
    e = 0
    while e + 3 <= KW:
        o0, o1, o2 = e * dw, (e + 1) * dw, (e + 2) * dw
        _fma_taps3(a0, row[o0 : o0 + span], row[o1 : o1 + span], row[o2 : o2 + span], sw,
                   wrow[e], wrow[e + 1], wrow[e + 2])
        e += 3
    while e < KW:
        _fma_row1(a0, row[e * dw : e * dw + span], sw, wrow[e])
        e += 1


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
                    if nk < B:  # few channels per group (depthwise, single plane)
                        for j in range(nk):
                            _row1(acc[j], row, span, sw, dw, w[k0 + j, c, a, b])
                        continue
                    for e in range(KW):
                        seg = row[e * dw : e * dw + span]
                        _fma_row4(
                            a0, a1, a2, a3, seg, sw,
                            w[k0, c, a, b, e], w[k0 + 1, c, a, b, e],
                            w[k0 + 2, c, a, b, e], w[k0 + 3, c, a, b, e],
                        )
        for j in range(nk):
            out[n, k0 + j, od, oh, :] = acc[j]


def _serial_twin(func, name: str):
    """``func``'s kernel compiled without threads (``prange`` runs as ``range``), under its
    own name so that its cache entry never mixes with the parallel one's."""
    py = types.FunctionType(func.py_func.__code__, func.py_func.__globals__, name)
    py.__qualname__ = name
    py.__doc__ = func.py_func.__doc__
    return njit(**JIT_SERIAL)(py)


#: :func:`correlate` on the calling thread: for tiny problems, where waking the worker
#: threads costs more than the work (``fastconv._algorithms.SERIAL_MAX_MACS``).
correlate_serial = _serial_twin(correlate, "correlate_serial")
