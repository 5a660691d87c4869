"""Max-unpooling on the GPU (same names and arguments as ``fastconv.cpu.unpool``).

Forward: the output is zeroed, then one thread per input element writes its value at its
index; a repeated index keeps one of the values (which one is not defined, as in
PyTorch's CUDA kernel). Backward: one thread per input element gathers ``g`` at its
index (deterministic). Out-of-range indices are skipped and counted on the device.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from fastconv.cuda._launch import grid1, launch
from fastconv.cuda.arrays import _fill, zeros

__all__ = ["max_unpool", "max_unpool_backward"]


@cuda.jit
def _scatter(x, idx, out, bad):
    t = cuda.grid(1)
    L = x.shape[1]
    if t < x.shape[0] * L:
        p, i = t // L, t % L
        j = idx[p, i]
        if 0 <= j < out.shape[1]:
            out[p, j] = x[p, i]
        else:
            cuda.atomic.add(bad, 0, 1)


@cuda.jit
def _gather(g, idx, gx, bad):
    t = cuda.grid(1)
    L = gx.shape[1]
    if t < gx.shape[0] * L:
        p, i = t // L, t % L
        j = idx[p, i]
        if 0 <= j < g.shape[1]:
            gx[p, i] = g[p, j]
        else:
            gx[p, i] = 0
            cuda.atomic.add(bad, 0, 1)


def _run(kernel, n, *args) -> int:
    bad = zeros((1,), np.int64)  # on the device: no host->device copy
    if n:
        blocks, tpb = grid1(n)
        launch(kernel, blocks, tpb, *args, bad)
    return int(bad.copy_to_host()[0])


def max_unpool(x, indices, out) -> int:
    """Scatter ``x`` (P, L) into ``out`` (P, M); returns the number of out-of-range indices."""
    if out.size:
        blocks, tpb = grid1(out.size)
        launch(_fill, blocks, tpb, out.reshape(out.size), out.dtype.type(0))
    return _run(_scatter, x.size, x, indices, out)


def max_unpool_backward(g, indices, gx) -> int:
    """Gather ``g`` (P, M) into ``gx`` (P, L); returns the number of out-of-range indices."""
    return _run(_gather, gx.size, g, indices, gx)
