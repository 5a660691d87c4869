"""Max-unpooling on the CPU: ``(P, L)`` planes (``P = N*C``, ``L`` the flat input plane)
scattered into ``(P, M)`` output planes by flat indices (``(d*H + h)*W + w``).

One task per plane (race-free; within a plane the writes go in input order, so a
repeated index keeps the last value, as PyTorch's CPU kernel). Indices outside
``[0, M)`` are skipped and counted: the caller raises on a non-zero count.
"""

from __future__ import annotations

from numba import njit, prange

from fastconv._config import JIT_PARALLEL


@njit(**JIT_PARALLEL)
def unpool_kernel(x, idx, out):
    """out[p] = 0, then out[p, idx[p, i]] = x[p, i]; returns the number of bad indices."""
    P, L = x.shape
    M = out.shape[1]
    bad = 0
    for p in prange(P):
        op, xp, ip = out[p], x[p], idx[p]
        op[:] = 0
        for i in range(L):
            j = ip[i]
            if 0 <= j < M:
                op[j] = xp[i]
            else:
                bad += 1
    return bad


@njit(**JIT_PARALLEL)
def unpool_grad_kernel(g, idx, gx):
    """gx[p, i] = g[p, idx[p, i]] (the adjoint of the scatter); returns the bad count."""
    P, L = gx.shape
    M = g.shape[1]
    bad = 0
    for p in prange(P):
        gp, xp, ip = g[p], gx[p], idx[p]
        for i in range(L):
            j = ip[i]
            if 0 <= j < M:
                xp[i] = gp[j]
            else:
                xp[i] = 0
                bad += 1
    return bad


def max_unpool(x, indices, out) -> int:
    """Scatter ``x`` (P, L) into ``out`` (P, M); returns the number of out-of-range indices."""
    return int(unpool_kernel(x, indices, out))


def max_unpool_backward(g, indices, gx) -> int:
    """Gather ``g`` (P, M) into ``gx`` (P, L); returns the number of out-of-range indices."""
    return int(unpool_grad_kernel(g, indices, gx))


__all__ = ["max_unpool", "max_unpool_backward"]
