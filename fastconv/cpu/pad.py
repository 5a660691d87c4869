"""Boundary handling: the padded copy of an input, for every padding mode."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv import _shapes
from fastconv._config import JIT_PARALLEL, JIT_SERIAL
from fastconv._validate import NUMPY_PAD_MODES

ZEROS, REFLECT, REPLICATE, CIRCULAR, SYMMETRIC = 0, 1, 2, 3, 4
#: numpy.pad mode names -> codes (scipy.ndimage's modes map onto these, ``fastconv.ndimage``).
NUMPY_MODE_CODES = {"constant": ZEROS, "reflect": REFLECT, "edge": REPLICATE, "wrap": CIRCULAR,
                    "symmetric": SYMMETRIC}
#: padding_mode -> code, through the one table of modes (``fastconv._validate``).
MODE_CODES = {mode: NUMPY_MODE_CODES[np_mode] for mode, np_mode in NUMPY_PAD_MODES.items()}


@njit(**JIT_SERIAL)
def source_index(i, n, mode):
    """Index into an axis of length ``n`` that padded position ``i`` reads (-1: fill).

    'reflect' (d c b | a b c d | c b a), 'replicate' (a a a | a b c d | d d d),
    'circular' (b c d | a b c d | a b c), 'zeros' (0 0 0 | a b c d | 0 0 0),
    'symmetric' (c b a | a b c d | d c b: numpy's, the edge repeated). Pads wider than
    the axis repeat the extension periodically, as numpy.pad and scipy.ndimage do.
    """
    if 0 <= i < n:
        return i
    if mode == ZEROS:
        return -1
    if mode == REPLICATE:
        return 0 if i < 0 else n - 1
    if mode == CIRCULAR:
        return i % n
    if mode == SYMMETRIC:
        m = i % (2 * n)
        return m if m < n else 2 * n - 1 - m
    if n == 1:
        return 0
    period = 2 * (n - 1)
    m = i % period
    return m if m < n else period - m


@njit(**JIT_PARALLEL)
def pad_planes(x, out, before, mode, fill):
    """out[n, c, i, j, k] = x[n, c, src(i - before[0]), src(j - ...), src(k - ...)]."""
    N, C, D, H, W = x.shape
    PD, PH, PW = out.shape[2], out.shape[3], out.shape[4]
    bd, bh, bw = before[0], before[1], before[2]
    for t in prange(N * C * PD):
        i = t % PD
        nc = t // PD
        c = nc % C
        n = nc // C
        si = source_index(i - bd, D, mode)
        for j in range(PH):
            sj = source_index(j - bh, H, mode)
            row = out[n, c, i, j]
            if si < 0 or sj < 0:
                row[:] = fill
                continue
            src = x[n, c, si, sj]
            for k in range(bw):
                sk = source_index(k - bw, W, mode)
                row[k] = fill if sk < 0 else src[sk]
            for k in range(W):  # a loop: Numba's array-to-array slice assignment compiles
                row[bw + k] = src[k]  # a string-formatting error path (seconds, cold)
            for k in range(bw + W, PW):
                sk = source_index(k - bw, W, mode)
                row[k] = fill if sk < 0 else src[sk]


def pad(x: np.ndarray, pads, mode: str, fill: float = 0.0) -> np.ndarray:
    """Padded copy of a 5-D array; ``pads`` is three (before, after) pairs."""
    if all(b == 0 and a == 0 for b, a in pads):
        return x
    shape = x.shape[:2] + _shapes.padded_spatial(x.shape[2:], pads)
    out = np.empty(shape, dtype=x.dtype)
    before = np.array([b for b, _ in pads], dtype=np.int64)
    pad_planes(x, out, before, MODE_CODES[mode], x.dtype.type(fill))
    return out


@njit(**JIT_PARALLEL)
def pad_rows(x, out, before, mode, fill):
    """3-D padded copy, one task per output row: ``out[i, j, k] = x[src(i - before[0]),
    src(j - before[1]), src(k - before[2])]`` (fill where ``src`` is -1). Any array is
    viewed as ``(A, B, C)`` by its caller; rows are ``(A + pads) * (B + pads)``."""
    A, B, C = x.shape
    PA, PB, PC = out.shape
    ba, bb, bc = before[0], before[1], before[2]
    for t in prange(PA * PB):
        i = t // PB
        j = t % PB
        si = source_index(i - ba, A, mode)
        sj = source_index(j - bb, B, mode)
        row = out[i, j]
        if si < 0 or sj < 0:
            row[:] = fill
            continue
        src = x[si, sj]
        for k in range(bc):
            sk = source_index(k - bc, C, mode)
            row[k] = fill if sk < 0 else src[sk]
        for k in range(C):  # a loop, as in pad_planes
            row[bc + k] = src[k]
        for k in range(bc + C, PC):
            sk = source_index(k - bc, C, mode)
            row[k] = fill if sk < 0 else src[sk]


def pad3(x: np.ndarray, pads, numpy_mode: str, fill: float = 0.0) -> np.ndarray:
    """Padded copy of a 3-D array with a numpy.pad mode name (``NUMPY_MODE_CODES``);
    ``pads`` is three (before, after) pairs, any widths (extensions repeat)."""
    shape = _shapes.padded_spatial(x.shape, pads)
    out = np.empty(shape, dtype=x.dtype)
    before = np.array([b for b, _ in pads], dtype=np.int64)
    pad_rows(x, out, before, NUMPY_MODE_CODES[numpy_mode], x.dtype.type(fill))
    return out
