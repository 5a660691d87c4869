"""Numba CPU backend: ``@njit(parallel=True, cache=True)`` cores that take only arrays and
ints. Every array is 5-D ``(N, C, D, H, W)``: 1-D and 2-D calls use unit axes.

The names exported here are the backend interface that ``fastconv.cuda`` mirrors.

The backend contract (``fastconv._dispatch.CONTRACT``; ``fastconv.cpu`` and
``fastconv.cuda`` implement every name with the same arguments, and
``tests/test_structure.py`` compares their signatures). Arrays are the backend's own
(NumPy here, Numba device arrays on the GPU); every array argument of a core is 5-D
``(N, C, D, H, W)`` (1-D and 2-D calls use unit axes) unless said otherwise:

- data: ``wrap(a, name, func)`` (user data -> backend array, dtype checked),
  ``asarray(a, dtype)`` (C-contiguous, ``dtype``), ``empty(shape, dtype)``,
  ``zeros(shape, dtype)``, ``finish(out, like)`` (a result in the caller's array type);
- padding: ``pad(x, pads, mode, fill=0.0)`` (three (before, after) pairs; the modes of
  ``fastconv._validate.NUMPY_PAD_MODES``), ``unpad(gp, pads, mode)`` (its adjoint);
- correlation: ``correlate(xp, w, bias, out, stride, dilation, groups)`` (the direct
  kernel on a padded input; the other algorithms' cores come from
  ``fastconv._algorithms``), ``correlate_input(g, w, bias, out, spread_shape,
  spread_src, spread_dst, dilation, groups, pads, mode, algorithm="auto")``,
  ``correlate_weight(xp, g, gw, stride, dilation, groups, algorithm="auto", pads=None)``
  (with ``pads``, ``xp`` is the unpadded input and the padding is zeros),
  ``sum_channels(g3, out)``;
- pooling: ``max_pool(x, out, indices, kernel, stride, pads, dilation)``,
  ``avg_pool(x, out, kernel, stride, pads, divisors)``, ``max_pool_backward(g, x, gx,
  kernel, stride, pads, dilation)``, ``avg_pool_backward(g, gx, kernel, stride, pads,
  divisors)``, ``adaptive_avg_pool(x, out, windows)``, ``adaptive_max_pool(x, out,
  indices, windows)``, ``adaptive_avg_pool_backward(g, gx, windows)``,
  ``adaptive_max_pool_backward(g, x, gx, windows)``, ``max_unpool(x, indices, out)``,
  ``max_unpool_backward(g, indices, gx)``;
- Lp pooling: ``power(x, p, out)``, ``lp_finish(a, scale, p)``, ``lp_grad_out(g, a,
  scale, p, out)``, ``lp_grad_in(gp, x, p, out)``, ``signed_abs(x, s, out)``,
  ``mul_sign(g, x, out)``;
- columns: ``unfold(x, cols, stride, padding, dilation)``, ``fold(cols, out, stride,
  padding, dilation)`` (4-D ``(N, C, H, W)`` and 6-D columns).

Cores write into ``out`` (and return it where noted); ``algorithm=`` takes the values of
``fastconv._algorithms`` for the op (on the GPU every value runs the direct kernel).
"""

from __future__ import annotations

import importlib

import numpy as np

from fastconv._validate import as_array
from fastconv._warmup import light_blas_import, light_cache_load

# ``fold``/``unfold`` and ``pad`` share their names with submodules: bound here, eagerly, so
# that a later ``import fastconv.cpu.pad`` elsewhere cannot leave the module in their place.
from fastconv.cpu.fold import fold, unfold
from fastconv.cpu.pad import pad

light_blas_import()  # before any kernel starts Numba's CPU target (see its docstring)
light_cache_load()  # cached kernels load without building Numba's compiler (docstring)

#: Backend names -> the submodule defining them, imported on first use (PEP 562): a
#: process whose calls are all convolutions never imports (nor registers the Numba
#: dispatchers and cache locators of) the pooling, gradient and adaptive kernels.
_LAZY = {
    **dict.fromkeys(("adaptive_avg_pool", "adaptive_avg_pool_backward", "adaptive_max_pool",
                     "adaptive_max_pool_backward", "lp_finish", "lp_grad_in", "lp_grad_out",
                     "mul_sign", "power", "signed_abs"), "adaptive"),
    "correlate": "conv",
    **dict.fromkeys(("correlate_input", "correlate_weight", "unpad"), "grad"),
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
