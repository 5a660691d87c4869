"""Numba CUDA backend: ``@cuda.jit`` kernels (compiled lazily, on first use) behind the
same names as ``fastconv.cpu``. Every array is a 5-D device array ``(N, C, D, H, W)``:
1-D and 2-D calls use unit axes.

Importing this package imports ``numba.cuda`` (never done by ``import fastconv``); it
does not touch the GPU until a kernel runs. Under ``NUMBA_ENABLE_CUDASIM=1`` the same
kernels run in Numba's CUDA simulator.

The backend contract follows (``fastconv._dispatch.CONTRACT_DOC``, appended below).
"""

from __future__ import annotations

from fastconv._dispatch import CONTRACT_DOC
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

__doc__ += CONTRACT_DOC
