"""Separable (rank-1) 2-D correlation: a column pass along H, then a row pass along W.

A ``kH x kW`` kernel that is the outer product ``col[:, None] * row[None, :]`` costs
``kH + kW`` multiply-adds per output instead of ``kH * kW``. One task owns a block of
output rows of one ``(n, k)`` plane; for each output row it sums the ``kH`` input rows
into a row buffer (whole contiguous rows, vector loads, eight rows a pass), then the
``kW`` taps of that buffer into the output row. Padding is read in place (source rows and
columns by the padding mode), no intermediate plane is written to memory, and every
output is one fixed sequence of operations (any thread count gives the same bits).

``rank1_factors`` decides whether a kernel is separable: its second singular value must
be below ``max(kH, kW) * eps(dtype)`` times its first (NumPy's ``matrix_rank`` rule).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv._config import JIT_PARALLEL, JIT_SERIAL
from fastconv.cpu.conv import _kernel_row
from fastconv.cpu.pad import MODE_CODES, source_index

#: No fast-math here: with reassociation and contraction LLVM rounds the vector body and
#: the scalar remainder of a loop differently, so an output's bits would depend on its
#: column (and a Dask block's result on the block's placement); plain IEEE operations
#: give every output the same sequence wherever it sits.
_PARALLEL = {**JIT_PARALLEL, "fastmath": False}
_SERIAL = {**JIT_SERIAL, "fastmath": False}

#: Tasks aimed for (row blocks split single planes over the threads).
PLANE_TASKS = 64


@njit(inline="always", **_SERIAL)
def _acc8(a, r0, r1, r2, r3, r4, r5, r6, r7, w0, w1, w2, w3, w4, w5, w6, w7):
    """a[o] += w0*r0[o] + ... + w7*r7[o]: eight rows a pass (one accumulator load and
    store per eight multiply-adds)."""
    for o in range(a.shape[0]):
        a[o] += (w0 * r0[o] + w1 * r1[o] + w2 * r2[o] + w3 * r3[o]
                 + w4 * r4[o] + w5 * r5[o] + w6 * r6[o] + w7 * r7[o])


@njit(inline="always", **_SERIAL)
def _acc1(a, r, w):
    for o in range(a.shape[0]):
        a[o] += w * r[o]


@njit(inline="always", **_SERIAL)
def _col_pass(buf, plane, srcs, col):
    """buf[j] = sum_b col[b] * plane[srcs[b], j] over the taps with a source row
    (``srcs[b] < 0``: a zero row, skipped)."""
    buf[:] = 0
    KH = col.shape[0]
    live = np.empty(KH, dtype=np.int64)
    m = 0
    for b in range(KH):
        if srcs[b] >= 0:
            live[m] = b
            m += 1
    u = 0
    while m - u >= 8:
        b0, b1, b2, b3 = live[u], live[u + 1], live[u + 2], live[u + 3]
        b4, b5, b6, b7 = live[u + 4], live[u + 5], live[u + 6], live[u + 7]
        _acc8(buf, plane[srcs[b0]], plane[srcs[b1]], plane[srcs[b2]], plane[srcs[b3]],
              plane[srcs[b4]], plane[srcs[b5]], plane[srcs[b6]], plane[srcs[b7]],
              col[b0], col[b1], col[b2], col[b3], col[b4], col[b5], col[b6], col[b7])
        u += 8
    while u < m:
        b = live[u]
        _acc1(buf, plane[srcs[b]], col[b])
        u += 1


@njit(inline="always", **_SERIAL)
def _row_pass(acc, buf, sw, dw, row):
    """acc[o] += sum_e row[e] * buf[o*sw + e*dw], eight taps a pass when sw == 1."""
    KW = row.shape[0]
    n = acc.shape[0]
    e = 0
    if sw == 1:
        while KW - e >= 8:
            o = e * dw
            _acc8(acc, buf[o:], buf[o + dw:], buf[o + 2 * dw:], buf[o + 3 * dw:],
                  buf[o + 4 * dw:], buf[o + 5 * dw:], buf[o + 6 * dw:], buf[o + 7 * dw:],
                  row[e], row[e + 1], row[e + 2], row[e + 3], row[e + 4], row[e + 5],
                  row[e + 6], row[e + 7])
            e += 8
    if e < KW:
        span = (n - 1) * sw + 1
        _kernel_row(acc, buf[e * dw : e * dw + (KW - 1 - e) * dw + span], sw, dw, row[e:])


@njit(**_PARALLEL)
def sep_correlate(x, cols, rows, bias, out, stride, dilation, groups, pads, mode):
    """out[n, k, 0, oh, ow] = bias[k] + sum_{c in group(k)} sum_e rows[k, c, e] *
    (sum_b cols[k, c, b] * x_pad[n, c, 0, oh*sh + b*dh, ow*sw + e*dw]).

    ``x`` is unpadded (5-D with a unit depth axis) and read as padded by ``pads``
    ((before, after) of H and W) in ``mode`` (``fastconv.cpu.pad`` codes): each output
    row sums its kH source rows into a padded-width buffer (zero rows skipped), fills the
    buffer's padding columns from their source columns, then runs the kW taps along it.
    ``cols`` is ``(K, Cg, kH)``, ``rows`` ``(K, Cg, kW)``."""
    N, _, _, H, W = x.shape
    K, Cg, KH = cols.shape
    OH = out.shape[3]
    sh, sw = stride[1], stride[2]
    dh, dw = dilation[1], dilation[2]
    ph, pw = pads[0], pads[2]
    PW = W + pads[2] + pads[3]
    Kg = K // groups
    planes = N * K
    nrb = min(OH, max(1, (PLANE_TASKS + planes - 1) // planes))
    RB = (OH + nrb - 1) // nrb
    nrb = (OH + RB - 1) // RB
    for t in prange(planes * nrb):
        rb = t % nrb
        p = t // nrb
        k = p % K
        n = p // K
        c0 = (k // Kg) * Cg
        buf = np.empty(PW, dtype=out.dtype)
        srcs = np.empty(KH, dtype=np.int64)
        for oh in range(rb * RB, min(OH, rb * RB + RB)):
            for b in range(KH):
                srcs[b] = source_index(oh * sh + b * dh - ph, H, mode)
            orow = out[n, k, 0, oh]
            orow[:] = bias[k]
            for c in range(Cg):
                _col_pass(buf[pw : pw + W], x[n, c0 + c, 0], srcs, cols[k, c])
                for j in range(pw):
                    s = source_index(j - pw, W, mode)
                    buf[j] = buf[pw + s] if s >= 0 else 0
                for j in range(pw + W, PW):
                    s = source_index(j - pw, W, mode)
                    buf[j] = buf[pw + s] if s >= 0 else 0
                _row_pass(orow, buf, sw, dw, rows[k, c])


def rank1_factors(w: np.ndarray, dtype) -> tuple | None:
    """``(cols, rows)`` with ``w[k, c] ~= outer(cols[k, c], rows[k, c])`` for a 4-D
    weight ``(K, Cg, kH, kW)`` whose every 2-D kernel has numerical rank 1, else None.

    A kernel is rank 1 when its second singular value is at most ``max(kH, kW) *
    eps(dtype)`` times its first (its 2-norm); an all-zero kernel is rank 1 (factors 0).
    The factors share the kernel's scale evenly (``sqrt(s0)`` each), in ``dtype``.
    """
    K, Cg, KH, KW = w.shape
    w64 = np.asarray(w, dtype=np.float64)
    if not np.all(np.isfinite(w64)):
        return None
    u, s, vt = np.linalg.svd(w64.reshape(K * Cg, KH, KW))
    tol = max(KH, KW) * np.finfo(dtype).eps
    if np.any(s[:, 1] > tol * s[:, 0]):
        return None
    root = np.sqrt(s[:, 0])[:, None]
    cols = (u[:, :, 0] * root).reshape(K, Cg, KH)
    rows = (vt[:, 0, :] * root).reshape(K, Cg, KW)
    return cols.astype(dtype), rows.astype(dtype)


def separable(x, cols, rows, bias, out, stride, dilation, groups, pads, mode: str) -> None:
    """Run :func:`sep_correlate` on unpadded 5-D ``x`` with ``pads`` three (before, after)
    pairs (the depth pair is (0, 0)) and a padding mode name."""
    hw = np.array([pads[1][0], pads[1][1], pads[2][0], pads[2][1]], dtype=np.int64)
    sep_correlate(x, cols, rows, bias, out, stride, dilation, groups, hw, MODE_CODES[mode])
