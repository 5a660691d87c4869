"""Numba CPU backend: ``@njit(parallel=True, cache=True)`` cores that take only arrays and
ints. Every array is 5-D ``(N, C, D, H, W)``: 1-D and 2-D calls use unit axes.

The names exported here are the backend interface that ``fastconv.cuda`` mirrors.
"""

from __future__ import annotations

import numpy as np

from fastconv.cpu.adaptive import (
    adaptive_avg_pool,
    adaptive_avg_pool_backward,
    adaptive_max_pool,
    adaptive_max_pool_backward,
    lp_finish,
    lp_grad_in,
    lp_grad_out,
    mul_sign,
    power,
    signed_abs,
)
from fastconv.cpu.conv import correlate
from fastconv.cpu.fold import fold, unfold
from fastconv.cpu.grad import correlate_input, correlate_weight, unpad
from fastconv.cpu.pad import pad
from fastconv.cpu.pool import avg_pool, avg_pool_backward, max_pool, max_pool_backward
from fastconv.cpu.unpool import max_unpool, max_unpool_backward


def asarray(a, dtype) -> np.ndarray:
    """C-contiguous, native byte order, ``dtype`` (copies only when needed)."""
    return np.ascontiguousarray(a, dtype=dtype)


def empty(shape, dtype) -> np.ndarray:
    return np.empty(shape, dtype=dtype)


def zeros(shape, dtype) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


def sum_channels(g3, out) -> None:
    """out[k] = sum_{n, s} g3[n, k, s] (the bias gradient)."""
    np.sum(g3, axis=(0, 2), out=out)


def finish(out, like):
    """Return a result in the caller's array type (NumPy here)."""
    return out


__all__ = [
    "asarray",
    "avg_pool",
    "avg_pool_backward",
    "correlate",
    "correlate_input",
    "correlate_weight",
    "empty",
    "finish",
    "max_pool",
    "max_pool_backward",
    "pad",
    "sum_channels",
    "unpad",
    "zeros",
]

__all__ += [
    "adaptive_avg_pool",
    "adaptive_avg_pool_backward",
    "adaptive_max_pool",
    "adaptive_max_pool_backward",
    "fold",
    "lp_finish",
    "lp_grad_in",
    "lp_grad_out",
    "max_unpool",
    "max_unpool_backward",
    "mul_sign",
    "power",
    "signed_abs",
    "unfold",
]
