"""1-D correlation along one axis of an array viewed as ``(P, N, Q)``, boundary read in
place (no padded copy): the passes of ``fastconv.ndimage``'s separable filters.

``out[p, i, q] = sum_j w[j] * x[p, src(i + j - before), q]`` with ``src`` the boundary
index map of ``fastconv.cpu.pad.source_index`` (-1: the fill value). ``Q > 1``: one task
per output row, the ``K`` source rows summed into the row in L1-sized column chunks, four
taps a pass (whole contiguous rows: vector loads). ``Q == 1`` (the last axis): one task
per line, the line extended into a per-task buffer, then the same four-taps-a-pass sums
along it. Every output is one fixed sequence of operations (any thread count, any block
of a Dask array gives the same bits).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv._config import JIT_PARALLEL, JIT_SERIAL
from fastconv.cpu.pad import NUMPY_MODE_CODES, source_index

#: Columns of one chunk of an output row (the accumulator stays in L1).
COLUMN_CHUNK = 2048


@njit(inline="always", **JIT_SERIAL)
def _taps4(a, r0, r1, r2, r3, w0, w1, w2, w3):
    for o in range(a.shape[0]):
        a[o] += w0 * r0[o] + w1 * r1[o] + w2 * r2[o] + w3 * r3[o]


@njit(inline="always", **JIT_SERIAL)
def _tap1(a, r0, w0):
    for o in range(a.shape[0]):
        a[o] += w0 * r0[o]


@njit(inline="always", **JIT_SERIAL)
def _row_or_fill(x, p, s, c0, c1, fillrow):
    if s < 0:
        return fillrow[: c1 - c0]
    return x[p, s, c0:c1]


@njit(**JIT_PARALLEL)
def correlate_rows(x, w, out, before, mode, fill):
    """Q > 1: out[p, i, :] = sum_j w[j] * x[p, src(i + j - before), :]."""
    P, N, Q = x.shape
    NO = out.shape[1]
    K = w.shape[0]
    for t in prange(P * NO):
        p = t // NO
        i = t % NO
        fillrow = np.full(min(COLUMN_CHUNK, Q), fill, dtype=x.dtype)
        for c0 in range(0, Q, COLUMN_CHUNK):
            c1 = min(c0 + COLUMN_CHUNK, Q)
            acc = out[p, i, c0:c1]
            acc[:] = 0
            j = 0
            while j + 4 <= K:
                r0 = _row_or_fill(x, p, source_index(i + j - before, N, mode), c0, c1, fillrow)
                r1 = _row_or_fill(x, p, source_index(i + j + 1 - before, N, mode), c0, c1,
                                  fillrow)
                r2 = _row_or_fill(x, p, source_index(i + j + 2 - before, N, mode), c0, c1,
                                  fillrow)
                r3 = _row_or_fill(x, p, source_index(i + j + 3 - before, N, mode), c0, c1,
                                  fillrow)
                _taps4(acc, r0, r1, r2, r3, w[j], w[j + 1], w[j + 2], w[j + 3])
                j += 4
            while j < K:
                _tap1(acc, _row_or_fill(x, p, source_index(i + j - before, N, mode), c0, c1,
                                        fillrow), w[j])
                j += 1


@njit(**JIT_PARALLEL)
def correlate_lines(x, w, out, before, mode, fill):
    """Q == 1 (x and out are (P, N) and (P, NO)): out[p, i] = sum_j w[j] * x_ext[p, i + j]."""
    P, N = x.shape
    NO = out.shape[1]
    K = w.shape[0]
    L = NO + K - 1
    for p in prange(P):
        buf = np.empty(L, dtype=x.dtype)
        src = x[p]
        for e in range(L):
            s = source_index(e - before, N, mode)
            buf[e] = fill if s < 0 else src[s]
        acc = out[p]
        acc[:] = 0
        j = 0
        while j + 4 <= K:
            _taps4(acc, buf[j : j + NO], buf[j + 1 : j + 1 + NO], buf[j + 2 : j + 2 + NO],
                   buf[j + 3 : j + 3 + NO], w[j], w[j + 1], w[j + 2], w[j + 3])
            j += 4
        while j < K:
            _tap1(acc, buf[j : j + NO], w[j])
            j += 1


def correlate_axis(x3: np.ndarray, w: np.ndarray, n_out: int, before: int, numpy_mode: str,
                   fill: float) -> np.ndarray:
    """The pass on a C-contiguous ``(P, N, Q)`` array; output ``(P, n_out, Q)``. With
    ``before = 0`` and ``n_out = N - K + 1`` it is the "valid" correlation of an already
    padded array (the Dask blocks), with the same arithmetic."""
    P, N, Q = x3.shape
    code = NUMPY_MODE_CODES[numpy_mode]
    fv = x3.dtype.type(fill)
    w = np.ascontiguousarray(w, dtype=x3.dtype)
    if Q == 1:
        out = np.empty((P, n_out), dtype=x3.dtype)
        correlate_lines(x3.reshape(P, N), w, out, before, code, fv)
        return out.reshape(P, n_out, 1)
    out = np.empty((P, n_out, Q), dtype=x3.dtype)
    correlate_rows(x3, w, out, before, code, fv)
    return out
