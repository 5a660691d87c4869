"""The staged Winograd form's products on explicit SIMD vectors: ``M = V @ U`` with ``U``
packed once into panels of ``NR = 2 * LANES`` columns.

OpenBLAS runs the staged form's short products (W5: 72-128 rows x 256 x 256, one per
tile point) at 60-75 GF/s on one Zen 4 core, repacking ``U`` on every call. Here ``U``
is packed with the cached weight transform (:func:`pack`: ``(groups, points, Cout / NR,
Cin, NR)``, every panel one contiguous run that stays in L1), and a register block of
8 rows x 2 vectors (16 accumulators, :func:`product`) multiplies it by ``V``'s rows as
they are: 93 GF/s on the same products (1 thread, EPYC Zen 4, AVX-512, 2026-12-02).
Rows run 14 at a time first (28 accumulators, 2 loads of ``U`` per 28 FMAs instead of
per 16; 12 rows spilled registers here, 14 did not): 36 x 128x256x256 94.5 against 86.6
GF/s for 8-row blocks alone (1 thread, CPU time, median of 9); then 8 at a time
(:func:`rows14` picks the split), then one at a time.

Exactness: each output is one ``llvm.fma`` chain over ``Cin`` in index order, whatever
the thread count and whichever row block (14, 8 or 1 rows) computes it.
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


@njit(inline="always", **JIT_SERIAL)
def rows14(T):
    """How many 14-row blocks :func:`product` runs over ``T`` rows: the most that leave a
    multiple of 8 rows for the 8-row block (T = 128: 8 x 14 + 2 x 8), else ``T // 14``;
    the rows left after the 8-row blocks run one at a time."""
    n = T // 14
    for a in range(n, max(-1, n - 4), -1):
        if (T - 14 * a) % 8 == 0:
            return a
    return n


@njit(**JIT_SERIAL)
def product(V, vo, Up, uo, M, mo, T, Cin, Cout, ln):
    """M[mo + t * Cout + n] = sum_k V[vo + t * Cin + k] * U[k, n] for ``t < T``, ``n <
    Cout``, with ``U`` packed at ``Up[uo:]`` (:func:`pack`); ``V``, ``Up``, ``M`` flat,
    ``ln`` the lanes of their dtype."""
    nr = 2 * ln
    z = V[0]
    t14 = 14 * rows14(T)
    for t0 in range(0, t14, 14):
        for nb in range(Cout // nr):
            a0_0, a0_1 = vzero(z), vzero(z)
            a1_0, a1_1 = vzero(z), vzero(z)
            a2_0, a2_1 = vzero(z), vzero(z)
            a3_0, a3_1 = vzero(z), vzero(z)
            a4_0, a4_1 = vzero(z), vzero(z)
            a5_0, a5_1 = vzero(z), vzero(z)
            a6_0, a6_1 = vzero(z), vzero(z)
            a7_0, a7_1 = vzero(z), vzero(z)
            a8_0, a8_1 = vzero(z), vzero(z)
            a9_0, a9_1 = vzero(z), vzero(z)
            a10_0, a10_1 = vzero(z), vzero(z)
            a11_0, a11_1 = vzero(z), vzero(z)
            a12_0, a12_1 = vzero(z), vzero(z)
            a13_0, a13_1 = vzero(z), vzero(z)
            u = uo + nb * Cin * nr
            v = vo + t0 * Cin
            for k in range(Cin):
                u0 = vload(Up, u)
                u1 = vload(Up, u + ln)
                s = vsplat_at(V, v + k)
                a0_0 = vfma(s, u0, a0_0)
                a0_1 = vfma(s, u1, a0_1)
                s = vsplat_at(V, v + Cin + k)
                a1_0 = vfma(s, u0, a1_0)
                a1_1 = vfma(s, u1, a1_1)
                s = vsplat_at(V, v + 2 * Cin + k)
                a2_0 = vfma(s, u0, a2_0)
                a2_1 = vfma(s, u1, a2_1)
                s = vsplat_at(V, v + 3 * Cin + k)
                a3_0 = vfma(s, u0, a3_0)
                a3_1 = vfma(s, u1, a3_1)
                s = vsplat_at(V, v + 4 * Cin + k)
                a4_0 = vfma(s, u0, a4_0)
                a4_1 = vfma(s, u1, a4_1)
                s = vsplat_at(V, v + 5 * Cin + k)
                a5_0 = vfma(s, u0, a5_0)
                a5_1 = vfma(s, u1, a5_1)
                s = vsplat_at(V, v + 6 * Cin + k)
                a6_0 = vfma(s, u0, a6_0)
                a6_1 = vfma(s, u1, a6_1)
                s = vsplat_at(V, v + 7 * Cin + k)
                a7_0 = vfma(s, u0, a7_0)
                a7_1 = vfma(s, u1, a7_1)
                s = vsplat_at(V, v + 8 * Cin + k)
                a8_0 = vfma(s, u0, a8_0)
                a8_1 = vfma(s, u1, a8_1)
                s = vsplat_at(V, v + 9 * Cin + k)
                a9_0 = vfma(s, u0, a9_0)
                a9_1 = vfma(s, u1, a9_1)
                s = vsplat_at(V, v + 10 * Cin + k)
                a10_0 = vfma(s, u0, a10_0)
                a10_1 = vfma(s, u1, a10_1)
                s = vsplat_at(V, v + 11 * Cin + k)
                a11_0 = vfma(s, u0, a11_0)
                a11_1 = vfma(s, u1, a11_1)
                s = vsplat_at(V, v + 12 * Cin + k)
                a12_0 = vfma(s, u0, a12_0)
                a12_1 = vfma(s, u1, a12_1)
                s = vsplat_at(V, v + 13 * Cin + k)
                a13_0 = vfma(s, u0, a13_0)
                a13_1 = vfma(s, u1, a13_1)
                u += nr
            o = mo + t0 * Cout + nb * nr
            vstore(M, o, a0_0)
            vstore(M, o + ln, a0_1)
            o += Cout
            vstore(M, o, a1_0)
            vstore(M, o + ln, a1_1)
            o += Cout
            vstore(M, o, a2_0)
            vstore(M, o + ln, a2_1)
            o += Cout
            vstore(M, o, a3_0)
            vstore(M, o + ln, a3_1)
            o += Cout
            vstore(M, o, a4_0)
            vstore(M, o + ln, a4_1)
            o += Cout
            vstore(M, o, a5_0)
            vstore(M, o + ln, a5_1)
            o += Cout
            vstore(M, o, a6_0)
            vstore(M, o + ln, a6_1)
            o += Cout
            vstore(M, o, a7_0)
            vstore(M, o + ln, a7_1)
            o += Cout
            vstore(M, o, a8_0)
            vstore(M, o + ln, a8_1)
            o += Cout
            vstore(M, o, a9_0)
            vstore(M, o + ln, a9_1)
            o += Cout
            vstore(M, o, a10_0)
            vstore(M, o + ln, a10_1)
            o += Cout
            vstore(M, o, a11_0)
            vstore(M, o + ln, a11_1)
            o += Cout
            vstore(M, o, a12_0)
            vstore(M, o + ln, a12_1)
            o += Cout
            vstore(M, o, a13_0)
            vstore(M, o + ln, a13_1)
    t8 = t14 + (T - t14) // 8 * 8
    for t0 in range(t14, t8, 8):  # then 8 rows at a time
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
