"""Boundary handling on the device: the padded copy of an input, for every padding mode,
with the same index map as ``fastconv.cpu.pad.source_index``."""

from __future__ import annotations

import numpy as np
from numba import cuda

from fastconv import _shapes
from fastconv.cpu.pad import MODE_CODES
from fastconv.cpu.pad import source_index as cpu_source_index
from fastconv.cuda._launch import grid3, launch
from fastconv.cuda.arrays import plane

__all__ = ["pad", "source_index"]


#: The CPU's index map (``fastconv.cpu.pad.source_index``) compiled as a device function:
#: one definition of the boundary rule for both backends.
source_index = cuda.jit(device=True)(cpu_source_index.py_func)


@cuda.jit
def pad_planes(x, out, bd, bh, bw, mode, fill):
    """out[n, c, i, j, k] = x[n, c, src(i - bd), src(j - bh), src(k - bw)] (or fill)."""
    k, j = cuda.grid(2)
    C, D, H, W = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    PD, PH, PW = out.shape[2], out.shape[3], out.shape[4]
    if k >= PW or j >= PH:
        return
    sj = source_index(j - bh, H, mode)
    sk = source_index(k - bw, W, mode)
    z = cuda.blockIdx.z
    while z < out.shape[0] * C * PD:
        n, c, i = plane(z, C, PD)
        si = source_index(i - bd, D, mode)
        if si < 0 or sj < 0 or sk < 0:
            out[n, c, i, j, k] = fill
        else:
            out[n, c, i, j, k] = x[n, c, si, sj, sk]
        z += cuda.gridDim.z


def pad(x, pads, mode: str, fill: float = 0.0):
    """Padded copy of a 5-D device array; ``pads`` is three (before, after) pairs."""
    from fastconv.cuda.arrays import empty

    if all(b == 0 and a == 0 for b, a in pads):
        return x
    shape = tuple(x.shape[:2]) + _shapes.padded_spatial(x.shape[2:], pads)
    out = empty(shape, x.dtype)
    blocks, tpb = grid3(shape[4], shape[3], shape[0] * shape[1] * shape[2])
    (bd, _), (bh, _), (bw, _) = pads
    launch(pad_planes, blocks, tpb, x, out, bd, bh, bw, MODE_CODES[mode],
           np.dtype(x.dtype).type(fill))
    return out
