"""Numba CPU backend: ``@njit(parallel=True, cache=True)`` cores that take only arrays and
ints. Every array is 5-D ``(N, C, D, H, W)``: 1-D and 2-D calls use unit axes.

The names exported here are the backend interface that ``fastconv.cuda`` mirrors.

The backend contract follows (``fastconv._dispatch.CONTRACT_DOC``, appended below).
"""

from __future__ import annotations

import importlib
import math
import sys

import numpy as np

from fastconv._dispatch import CONTRACT_DOC
from fastconv._validate import as_array
from fastconv._warmup import light_blas_import, light_cache_load, light_typeof

# ``fold``/``unfold`` and ``pad`` share their names with submodules: bound here, eagerly, so
# that a later ``import fastconv.cpu.pad`` elsewhere cannot leave the module in their place.
from fastconv.cpu.fold import fold, unfold
from fastconv.cpu.pad import pad

light_blas_import()  # before any kernel starts Numba's CPU target (see its docstring)
light_cache_load()  # cached kernels load without building Numba's compiler (docstring)
light_typeof()  # array arguments typed without importing numpy.ma (docstring)

#: Backend names -> the submodule defining them, imported on first use (PEP 562): a
#: process whose calls are all convolutions never imports (nor registers the Numba
#: dispatchers and cache locators of) the pooling, gradient and adaptive kernels.
_LAZY = {
    **dict.fromkeys(("adaptive_avg_pool", "adaptive_avg_pool_backward", "adaptive_max_pool",
                     "adaptive_max_pool_backward", "lp_finish", "lp_grad_in", "lp_grad_out",
                     "mul_sign", "power", "signed_abs"), "adaptive"),
    "correlate": "conv",
    "unpad": "grad",
    **dict.fromkeys(("avg_pool", "avg_pool_backward", "max_pool", "max_pool_backward"), "pool"),
    **dict.fromkeys(("max_unpool", "max_unpool_backward"), "unpool"),
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def wrap(a, name: str, func: str) -> np.ndarray:
    """``a`` as a NumPy array with a real numeric dtype (``as_array``: TypeError naming
    ``func`` and ``name`` otherwise)."""
    return as_array(a, name, func)


def asarray(a, dtype) -> np.ndarray:
    """C-contiguous, native byte order, ``dtype`` (copies only when needed)."""
    return np.ascontiguousarray(a, dtype=dtype)


#: Results of at least this many bytes start on a 64-byte cache line (NumPy's large
#: buffers start 16 bytes into one), so the kernels' vector stores cover whole lines: W6,
#: 2 threads, 2.05 against 2.09 ms with 64-byte non-temporal stores (2026-12-03).
ALIGN_BYTES = 1 << 16


def empty(shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous result; 64-byte aligned from ``ALIGN_BYTES`` up."""
    dtype = np.dtype(dtype)
    n = math.prod(shape)
    if n * dtype.itemsize < ALIGN_BYTES:
        return np.empty(shape, dtype=dtype)
    buf = np.empty(n * dtype.itemsize + 64, dtype=np.uint8)
    off = -buf.ctypes.data % 64
    return buf[off : off + n * dtype.itemsize].view(dtype).reshape(shape)


def zeros(shape, dtype) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


def sum_channels(g3, out) -> None:
    """out[k] = sum_{n, s} g3[n, k, s] (the bias gradient)."""
    np.sum(g3, axis=(0, 2), out=out)


def correlate_input(g, w, bias, out, spread_shape, spread_src, spread_dst, dilation, groups,
                    pads, mode, algorithm="auto"):
    """The input gradient into ``out`` (returned, folded for a non-zero ``mode``) by the
    core of ``algorithm`` that the registry builds (``fastconv._algorithms``; "auto": its
    choice); the kernels are in ``fastconv.cpu.grad``."""
    from fastconv import _algorithms

    return _algorithms.backend_input_grad(
        sys.modules[__name__], "cpu", g, w, bias, out, spread_shape, spread_src, spread_dst,
        dilation, groups, pads, mode, algorithm)


def correlate_weight(xp, g, gw, stride, dilation, groups, algorithm="auto", pads=None):
    """The weight gradient into ``gw`` (returned) by the core of ``algorithm`` that the
    registry builds (``fastconv._algorithms``; "auto": its choice); with ``pads``, ``xp``
    is the unpadded input and its padding zeros."""
    from fastconv import _algorithms

    return _algorithms.backend_weight_grad(sys.modules[__name__], "cpu", xp, g, gw, stride,
                                           dilation, groups, algorithm, pads)


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
    "wrap",
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

__doc__ += CONTRACT_DOC
