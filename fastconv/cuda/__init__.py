"""Numba CUDA backend: ``@cuda.jit`` kernels (compiled lazily, on first use) behind the
same names as ``fastconv.cpu``. Every array is a 5-D device array ``(N, C, D, H, W)``:
1-D and 2-D calls use unit axes.

Importing this package imports ``numba.cuda`` (never done by ``import fastconv``); it
does not touch the GPU until a kernel runs. Under ``NUMBA_ENABLE_CUDASIM=1`` the same
kernels run in Numba's CUDA simulator.

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

from fastconv.cuda.adaptive import (
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
from fastconv.cuda.arrays import asarray, empty, finish, wrap, zeros
from fastconv.cuda.conv import correlate
from fastconv.cuda.fold import fold, unfold
from fastconv.cuda.grad import correlate_input, correlate_weight, sum_channels, unpad
from fastconv.cuda.pad import pad
from fastconv.cuda.pool import avg_pool, avg_pool_backward, max_pool, max_pool_backward
from fastconv.cuda.unpool import max_unpool, max_unpool_backward

#: Threads per block ``(x, y)`` of every kernel (x runs along output rows). Tests patch it
#: small so multi-block grids and out-of-range threads are exercised in the simulator.
THREADS: tuple[int, int] = (32, 8)

__all__ = [
    "THREADS",
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
