"""The staged Winograd form's products on explicit SIMD vectors: ``M = V @ U`` with ``U``
packed once into panels of ``NR = 2 * LANES`` columns.

OpenBLAS runs the staged form's short products (W5: 72-128 rows x 256 x 256, one per
tile point) at 60-75 GF/s on one Zen 4 core, repacking ``U`` on every call. Here ``U``
is packed with the cached weight transform (:func:`pack`: ``(groups, points, Cout / NR,
Cin, NR)``, every panel one contiguous run that stays in L1), and a register block of
8 rows x 2 vectors (16 accumulators, :func:`product`) multiplies it by ``V``'s rows as
they are: 93 GF/s on the same products (1 thread, EPYC Zen 4, AVX-512, 2026-12-02).

Exactness: each output is one ``llvm.fma`` chain over ``Cin`` in index order, whatever
the thread count; rows beyond the last multiple of 8 run one at a time with the same
chain.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fastconv._config import JIT_SERIAL
from fastconv.cpu.microkernel import LANES32, LANES64, vfma, vload, vsplat_at, vstore, vzero


def lanes(dtype) -> int:
    """Vector width in elements of ``dtype`` (float32 or float64)."""
    return LANES32 if np.dtype(dtype) == np.float32 else LANES64


def applies(cout: int, dtype) -> bool:
    """Whether :func:`product` covers ``cout`` output channels (whole panels)."""
    return cout % (2 * lanes(dtype)) == 0


def pack(U: np.ndarray) -> np.ndarray:
    """``U (groups, a2, Cin, Cout)`` as ``(groups, a2, Cout / NR, Cin, NR)``, flattened."""
    g, a2, cin, cout = U.shape
    nr = 2 * lanes(U.dtype)
    return np.ascontiguousarray(
        U.reshape(g, a2, cin, cout // nr, nr).transpose(0, 1, 3, 2, 4)).reshape(-1)


@njit(**JIT_SERIAL)
def product(V, vo, Up, uo, M, mo, T, Cin, Cout, ln):
    """M[mo + t * Cout + n] = sum_k V[vo + t * Cin + k] * U[k, n] for ``t < T``, ``n <
    Cout``, with ``U`` packed at ``Up[uo:]`` (:func:`pack`); ``V``, ``Up``, ``M`` flat,
    ``ln`` the lanes of their dtype."""
    nr = 2 * ln
    z = V[0]
    t8 = T - T % 8
    for t0 in range(0, t8, 8):
        for nb in range(Cout // nr):
            a00, a01, a10, a11 = vzero(z), vzero(z), vzero(z), vzero(z)
            a20, a21, a30, a31 = vzero(z), vzero(z), vzero(z), vzero(z)
            a40, a41, a50, a51 = vzero(z), vzero(z), vzero(z), vzero(z)
            a60, a61, a70, a71 = vzero(z), vzero(z), vzero(z), vzero(z)
            u = uo + nb * Cin * nr
            v = vo + t0 * Cin
            for k in range(Cin):
                u0 = vload(Up, u)
                u1 = vload(Up, u + ln)
                s = vsplat_at(V, v + k)
                a00 = vfma(s, u0, a00)
                a01 = vfma(s, u1, a01)
                s = vsplat_at(V, v + Cin + k)
                a10 = vfma(s, u0, a10)
                a11 = vfma(s, u1, a11)
                s = vsplat_at(V, v + 2 * Cin + k)
                a20 = vfma(s, u0, a20)
                a21 = vfma(s, u1, a21)
                s = vsplat_at(V, v + 3 * Cin + k)
                a30 = vfma(s, u0, a30)
                a31 = vfma(s, u1, a31)
                s = vsplat_at(V, v + 4 * Cin + k)
                a40 = vfma(s, u0, a40)
                a41 = vfma(s, u1, a41)
                s = vsplat_at(V, v + 5 * Cin + k)
                a50 = vfma(s, u0, a50)
                a51 = vfma(s, u1, a51)
                s = vsplat_at(V, v + 6 * Cin + k)
                a60 = vfma(s, u0, a60)
                a61 = vfma(s, u1, a61)
                s = vsplat_at(V, v + 7 * Cin + k)
                a70 = vfma(s, u0, a70)
                a71 = vfma(s, u1, a71)
                u += nr
            o = mo + t0 * Cout + nb * nr
            vstore(M, o, a00)
            vstore(M, o + ln, a01)
            o += Cout
            vstore(M, o, a10)
            vstore(M, o + ln, a11)
            o += Cout
            vstore(M, o, a20)
            vstore(M, o + ln, a21)
            o += Cout
            vstore(M, o, a30)
            vstore(M, o + ln, a31)
            o += Cout
            vstore(M, o, a40)
            vstore(M, o + ln, a41)
            o += Cout
            vstore(M, o, a50)
            vstore(M, o + ln, a51)
            o += Cout
            vstore(M, o, a60)
            vstore(M, o + ln, a61)
            o += Cout
            vstore(M, o, a70)
            vstore(M, o + ln, a71)
    for t in range(t8, T):  # the last rows, one at a time (the same chain)
        for nb in range(Cout // nr):
            a00, a01 = vzero(z), vzero(z)
            u = uo + nb * Cin * nr
            v = vo + t * Cin
            for k in range(Cin):
                s = vsplat_at(V, v + k)
                a00 = vfma(s, vload(Up, u), a00)
                a01 = vfma(s, vload(Up, u + ln), a01)
                u += nr
            o = mo + t * Cout + nb * nr
            vstore(M, o, a00)
            vstore(M, o + ln, a01)
