"""Direct cross-correlation on padded 5-D arrays ``(N, C, D, H, W)``.

One task computes a full output row for a block of up to ``CHANNEL_BLOCK`` output
channels; its accumulators are small local rows, the inner loop runs along the row (and
vectorizes when the stride is 1), and no two tasks write the same output element.
"""

from __future__ import annotations

import types

import numpy as np
from numba import njit, prange
from numba.core import types as nbtypes
from numba.extending import intrinsic

from fastconv._config import CHANNEL_BLOCK, JIT_PARALLEL, JIT_SERIAL


@njit(inline="always", **JIT_SERIAL)
def _fma_row4(a0, a1, a2, a3, seg, sw, w0, w1, w2, w3):
    """a_j[o] += w_j * seg[o*sw] for four accumulator rows (seg is a slice: no
    negative-index wraparound in the loop, so it vectorizes)."""
    if sw == 1:
        for o in range(a0.shape[0]):
            v = seg[o]
            a0[o] += w0 * v
            a1[o] += w1 * v
            a2[o] += w2 * v
            a3[o] += w3 * v
    else:
        for o in range(a0.shape[0]):
            v = seg[o * sw]
            a0[o] += w0 * v
            a1[o] += w1 * v
            a2[o] += w2 * v
            a3[o] += w3 * v


@njit(inline="always", **JIT_SERIAL)
def _fma_row1(a0, seg, sw, w0):
    """a0[o] += w0 * seg[o*sw]."""
    if sw == 1:
        for o in range(a0.shape[0]):
            a0[o] += w0 * seg[o]
    else:
        for o in range(a0.shape[0]):
            a0[o] += w0 * seg[o * sw]


@njit(inline="always", **JIT_SERIAL)
def _fma_taps3(a0, s0, s1, s2, sw, w0, w1, w2):
    """a0[o] += w0*s0[o*sw] + w1*s1[o*sw] + w2*s2[o*sw]: three taps of one kernel row per
    pass, so the accumulator is loaded and stored once per three multiply-adds."""
    if sw == 1:
        for o in range(a0.shape[0]):
            a0[o] += w0 * s0[o] + w1 * s1[o] + w2 * s2[o]
    else:
        for o in range(a0.shape[0]):
            i = o * sw
            a0[o] += w0 * s0[i] + w1 * s1[i] + w2 * s2[i]


@njit(inline="always", **JIT_SERIAL)
def _row1(a0, row, span, sw, dw, wrow):
    """a0[o] += sum_e wrow[e] * row[o*sw + e*dw] for one kernel row, three taps a pass."""
    KW = wrow.shape[0]
    e = 0
    while e + 3 <= KW:
        o0, o1, o2 = e * dw, (e + 1) * dw, (e + 2) * dw
        _fma_taps3(a0, row[o0 : o0 + span], row[o1 : o1 + span], row[o2 : o2 + span], sw,
                   wrow[e], wrow[e + 1], wrow[e + 2])
        e += 3
    while e < KW:
        _fma_row1(a0, row[e * dw : e * dw + span], sw, wrow[e])
        e += 1


@njit(inline="always", **JIT_SERIAL)
def _copy_row(dst, src):
    """dst[:] = src as a loop: Numba's array-to-array slice assignment compiles a
    shape-mismatch error path (string formatting) that took half of a cold compile."""
    for o in range(dst.shape[0]):
        dst[o] = src[o]


@njit(**JIT_PARALLEL)
def correlate(xp, w, bias, out, stride, dilation, groups):
    """out[n, k, o] = bias[k] + sum_{c in group(k), r} xp[n, c, o*stride + r*dilation] * w[k, c, r].

    ``xp`` is already padded; ``bias`` has K entries (zeros when there is none).
    """
    N = xp.shape[0]
    K, Cg, KD, KH, KW = w.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    sd, sh, sw = stride[0], stride[1], stride[2]
    dd, dh, dw = dilation[0], dilation[1], dilation[2]
    Kg = K // groups
    B = CHANNEL_BLOCK
    nkb = (Kg + B - 1) // B
    span = (OW - 1) * sw + 1
    for t in prange(N * groups * nkb * OD * OH):
        oh = t % OH
        r = t // OH
        od = r % OD
        r //= OD
        kb = r % nkb
        r //= nkb
        g = r % groups
        n = r // groups
        k0 = g * Kg + kb * B
        nk = min(B, g * Kg + Kg - k0)
        acc = np.empty((B, OW), dtype=out.dtype)
        for j in range(nk):
            bj = bias[k0 + j]
            for o in range(OW):
                acc[j, o] = bj
        a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
        for c in range(Cg):
            ci = g * Cg + c
            for a in range(KD):
                for b in range(KH):
                    row = xp[n, ci, od * sd + a * dd, oh * sh + b * dh]
                    if nk < B:  # few channels per group (depthwise, single plane)
                        for j in range(nk):
                            _row1(acc[j], row, span, sw, dw, w[k0 + j, c, a, b])
                        continue
                    for e in range(KW):
                        seg = row[e * dw : e * dw + span]
                        _fma_row4(
                            a0, a1, a2, a3, seg, sw,
                            w[k0, c, a, b, e], w[k0 + 1, c, a, b, e],
                            w[k0 + 2, c, a, b, e], w[k0 + 3, c, a, b, e],
                        )
        for j in range(nk):  # a loop, not ``out[...] = acc[j]`` (see _copy_row)
            _copy_row(out[n, k0 + j, od, oh], acc[j])


#: Output columns of one chunk of the few-channel kernel: the accumulator chunk and the
#: input rows it reads stay in L1 across all the taps.
COLUMN_CHUNK = 512
#: Tasks the few-channel kernel aims for (its row blocks split single planes).
PLANE_TASKS = 64
#: Chunks of tasks the few-channel kernel's parallel loop runs (each allocates its
#: scratch once; W7 has 1024 one-plane tasks).
TASK_CHUNKS = 64


@njit(inline="always", **JIT_SERIAL)
def _taps5(a, s0, s1, s2, s3, s4, sw, w0, w1, w2, w3, w4):
    """a[o] += sum_j w_j * s_j[o*sw]: five taps per load/store of the accumulator."""
    if sw == 1:
        for o in range(a.shape[0]):
            a[o] += w0 * s0[o] + w1 * s1[o] + w2 * s2[o] + w3 * s3[o] + w4 * s4[o]
    else:
        for o in range(a.shape[0]):
            i = o * sw
            a[o] += w0 * s0[i] + w1 * s1[i] + w2 * s2[i] + w3 * s3[i] + w4 * s4[i]


@njit(inline="always", **JIT_SERIAL)
def _taps2(a, s0, s1, sw, w0, w1):
    """a[o] += w0 * s0[o*sw] + w1 * s1[o*sw]."""
    if sw == 1:
        for o in range(a.shape[0]):
            a[o] += w0 * s0[o] + w1 * s1[o]
    else:
        for o in range(a.shape[0]):
            i = o * sw
            a[o] += w0 * s0[i] + w1 * s1[i]


@njit(inline="always", **JIT_SERIAL)
def _kernel_row(a, row, sw, dw, wrow):
    """a[o] += sum_e wrow[e] * row[o*sw + e*dw]: one kernel row, up to five taps a pass
    (``row`` starts at the chunk's first tap)."""
    KW = wrow.shape[0]
    span = (a.shape[0] - 1) * sw + 1
    e = 0
    while KW - e >= 5 and KW - e != 6:
        o = e * dw
        _taps5(a, row[o : o + span], row[o + dw : o + dw + span],
               row[o + 2 * dw : o + 2 * dw + span], row[o + 3 * dw : o + 3 * dw + span],
               row[o + 4 * dw : o + 4 * dw + span], sw,
               wrow[e], wrow[e + 1], wrow[e + 2], wrow[e + 3], wrow[e + 4])
        e += 5
    while KW - e >= 3:
        o = e * dw
        _fma_taps3(a, row[o : o + span], row[o + dw : o + dw + span],
                   row[o + 2 * dw : o + 2 * dw + span], sw, wrow[e], wrow[e + 1], wrow[e + 2])
        e += 3
    if KW - e == 2:
        o = e * dw
        _taps2(a, row[o : o + span], row[o + dw : o + dw + span], sw, wrow[e], wrow[e + 1])
    elif KW - e == 1:
        _fma_row1(a, row[e * dw : e * dw + span], sw, wrow[e])


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c rounded once (LLVM's ``llvm.fma``): the operation the tap passes above
    compile to (their ``acc + w * x`` contracts to it), spelled out so that a pass of
    many taps keeps each output's chain of operations whatever LLVM reassociates."""
    if isinstance(a, nbtypes.Float) and a == b == c:
        def codegen(context, builder, signature, args):
            return builder.fma(*args)
        return a(a, b, c), codegen
    return None


@njit(inline="always", **JIT_SERIAL)
def _rows3_taps3(a, r0, r1, r2, w0, w1, w2):
    """a[o] = fma chain over the 9 taps r_b[o + e] * w_b[e] (b, then e): three kernel
    rows of three taps per load/store of the accumulator (stride and dilation 1; the
    constant offsets keep LLVM's overlap checks to one per input row)."""
    u00, u01, u02 = w0[0], w0[1], w0[2]
    u10, u11, u12 = w1[0], w1[1], w1[2]
    u20, u21, u22 = w2[0], w2[1], w2[2]
    for o in range(a.shape[0]):
        v = _fma(u00, r0[o], a[o])
        v = _fma(u01, r0[o + 1], v)
        v = _fma(u02, r0[o + 2], v)
        v = _fma(u10, r1[o], v)
        v = _fma(u11, r1[o + 1], v)
        v = _fma(u12, r1[o + 2], v)
        v = _fma(u20, r2[o], v)
        v = _fma(u21, r2[o + 1], v)
        a[o] = _fma(u22, r2[o + 2], v)


@njit(inline="always", **JIT_SERIAL)
def _pair_rows3_taps3(a0, a1, r0, r1, r2, r3, base, w0, w1, w2):
    """Two output rows of a 3x3 kernel in one pass from ``base``: a0[o] (input rows
    r0..r2) and a1[o] (rows r1..r3), each the chain of :func:`_rows3_taps3` (the same
    operations in the same order), with each load of r1 and r2 serving both rows."""
    u00, u01, u02 = w0[0], w0[1], w0[2]
    u10, u11, u12 = w1[0], w1[1], w1[2]
    u20, u21, u22 = w2[0], w2[1], w2[2]
    for o in range(a0.shape[0]):
        x00, x01, x02 = r0[o], r0[o + 1], r0[o + 2]
        x10, x11, x12 = r1[o], r1[o + 1], r1[o + 2]
        x20, x21, x22 = r2[o], r2[o + 1], r2[o + 2]
        x30, x31, x32 = r3[o], r3[o + 1], r3[o + 2]
        v = _fma(u00, x00, base)
        g = _fma(u00, x10, base)
        v = _fma(u01, x01, v)
        g = _fma(u01, x11, g)
        v = _fma(u02, x02, v)
        g = _fma(u02, x12, g)
        v = _fma(u10, x10, v)
        g = _fma(u10, x20, g)
        v = _fma(u11, x11, v)
        g = _fma(u11, x21, g)
        v = _fma(u12, x12, v)
        g = _fma(u12, x22, g)
        v = _fma(u20, x20, v)
        g = _fma(u20, x30, g)
        v = _fma(u21, x21, v)
        g = _fma(u21, x31, g)
        v = _fma(u22, x22, v)
        g = _fma(u22, x32, g)
        a0[o] = v
        a1[o] = g


@njit(inline="always", **JIT_SERIAL)
def _chain5(v, r, o, u0, u1, u2, u3, u4):
    """v continued by the fma chain over r[o + e] * u_e, e = 0..4."""
    v = _fma(u0, r[o], v)
    v = _fma(u1, r[o + 1], v)
    v = _fma(u2, r[o + 2], v)
    v = _fma(u3, r[o + 3], v)
    return _fma(u4, r[o + 4], v)


@njit(inline="always", **JIT_SERIAL)
def _pair_rows5_taps5(a0, a1, r0, r1, r2, r3, r4, r5, base, w0, w1, w2, w3, w4):
    """:func:`_pair_rows3_taps3` for a 5x5 kernel: a0[o] from input rows r0..r4, a1[o]
    from r1..r5, each the chain of the 25 taps (row, then column) from ``base`` -- the
    chain :func:`_kernel_rows` computes in two passes -- with each load of r1..r4
    serving both rows and no accumulator round trip."""
    u00, u01, u02, u03, u04 = w0[0], w0[1], w0[2], w0[3], w0[4]
    u10, u11, u12, u13, u14 = w1[0], w1[1], w1[2], w1[3], w1[4]
    u20, u21, u22, u23, u24 = w2[0], w2[1], w2[2], w2[3], w2[4]
    u30, u31, u32, u33, u34 = w3[0], w3[1], w3[2], w3[3], w3[4]
    u40, u41, u42, u43, u44 = w4[0], w4[1], w4[2], w4[3], w4[4]
    for o in range(a0.shape[0]):
        v = _chain5(base, r0, o, u00, u01, u02, u03, u04)
        g = _chain5(base, r1, o, u00, u01, u02, u03, u04)
        v = _chain5(v, r1, o, u10, u11, u12, u13, u14)
        g = _chain5(g, r2, o, u10, u11, u12, u13, u14)
        v = _chain5(v, r2, o, u20, u21, u22, u23, u24)
        g = _chain5(g, r3, o, u20, u21, u22, u23, u24)
        v = _chain5(v, r3, o, u30, u31, u32, u33, u34)
        g = _chain5(g, r4, o, u30, u31, u32, u33, u34)
        a0[o] = _chain5(v, r4, o, u40, u41, u42, u43, u44)
        a1[o] = _chain5(g, r5, o, u40, u41, u42, u43, u44)


@njit(inline="always", **JIT_SERIAL)
def _rows2_taps5(a, r0, r1, w0, w1):
    """:func:`_rows3_taps3` for two kernel rows of five taps."""
    u00, u01, u02, u03, u04 = w0[0], w0[1], w0[2], w0[3], w0[4]
    u10, u11, u12, u13, u14 = w1[0], w1[1], w1[2], w1[3], w1[4]
    for o in range(a.shape[0]):
        v = _fma(u00, r0[o], a[o])
        v = _fma(u01, r0[o + 1], v)
        v = _fma(u02, r0[o + 2], v)
        v = _fma(u03, r0[o + 3], v)
        v = _fma(u04, r0[o + 4], v)
        v = _fma(u10, r1[o], v)
        v = _fma(u11, r1[o + 1], v)
        v = _fma(u12, r1[o + 2], v)
        v = _fma(u13, r1[o + 3], v)
        a[o] = _fma(u14, r1[o + 4], v)


@njit(inline="always", **JIT_SERIAL)
def _rows3_taps5(a, r0, r1, r2, w0, w1, w2):
    """:func:`_rows3_taps3` for three kernel rows of five taps."""
    u00, u01, u02, u03, u04 = w0[0], w0[1], w0[2], w0[3], w0[4]
    u10, u11, u12, u13, u14 = w1[0], w1[1], w1[2], w1[3], w1[4]
    u20, u21, u22, u23, u24 = w2[0], w2[1], w2[2], w2[3], w2[4]
    for o in range(a.shape[0]):
        v = _fma(u00, r0[o], a[o])
        v = _fma(u01, r0[o + 1], v)
        v = _fma(u02, r0[o + 2], v)
        v = _fma(u03, r0[o + 3], v)
        v = _fma(u04, r0[o + 4], v)
        v = _fma(u10, r1[o], v)
        v = _fma(u11, r1[o + 1], v)
        v = _fma(u12, r1[o + 2], v)
        v = _fma(u13, r1[o + 3], v)
        v = _fma(u14, r1[o + 4], v)
        v = _fma(u20, r2[o], v)
        v = _fma(u21, r2[o + 1], v)
        v = _fma(u22, r2[o + 2], v)
        v = _fma(u23, r2[o + 3], v)
        a[o] = _fma(u24, r2[o + 4], v)


@njit(inline="always", **JIT_SERIAL)
def _kernel_rows(a, plane, j0, col, W, dh, dw, wk):
    """a[o] = fma chain over every tap of the kernel rows ``wk`` (KH, KW), reading row
    ``j0 + b*dh`` of ``plane`` (flattened, pitch ``W``) from column ``col + e*dw``
    (stride 1): several kernel rows per pass where a fused pass exists (3 or 5 taps,
    no dilation along W), else one (:func:`_kernel_row`); the same chain of
    operations either way."""
    KH, KW = wk.shape[0], wk.shape[1]
    n = a.shape[0]
    q = dh * W
    b = 0
    while b < KH:
        p = (j0 + b * dh) * W + col
        if dw == 1 and KW == 3 and KH - b >= 3:
            _rows3_taps3(a, plane[p : p + n + 2], plane[p + q : p + q + n + 2],
                         plane[p + 2 * q : p + 2 * q + n + 2], wk[b], wk[b + 1], wk[b + 2])
            b += 3
        elif dw == 1 and KW == 5 and KH - b >= 2:
            if KH - b == 2 or KH - b == 4:
                _rows2_taps5(a, plane[p : p + n + 4], plane[p + q : p + q + n + 4], wk[b],
                             wk[b + 1])
                b += 2
            else:
                _rows3_taps5(a, plane[p : p + n + 4], plane[p + q : p + q + n + 4],
                             plane[p + 2 * q : p + 2 * q + n + 4], wk[b], wk[b + 1],
                             wk[b + 2])
                b += 3
        else:
            _kernel_row(a, plane[p:], 1, dw, wk[b])
            b += 1


@njit(inline="always", **JIT_SERIAL)
def _row_base(w, k, b0, d0, h0, D, H, dd, dh):
    """b0 plus ``w * 0`` for every tap of the kernel rows of output row (d0, h0) that lie
    in the padding: zero, unless a weight is NaN/Inf (as with a padded copy)."""
    Cg, KD, KH, KW = w.shape[1], w.shape[2], w.shape[3], w.shape[4]
    zero = w.dtype.type(0)
    base = b0
    for c in range(Cg):
        for a in range(KD):
            for b in range(KH):
                i, j = d0 + a * dd, h0 + b * dh
                if i < 0 or i >= D or j < 0 or j >= H:
                    for e in range(KW):
                        base += w[k, c, a, b, e] * zero
    return base


@njit(inline="always", **JIT_SERIAL)
def _border_columns(orow, vol, w, k, base, d0, h0, clo, chi, sw, pw, dd, dh, dw, vals, acc):
    """orow[ow] = base + sum of the taps of ``vol`` (Cg, D, H, W) for the columns outside
    the interior [clo, chi), reading zeros outside the input. Each kernel row's taps go
    through :func:`_kernel_row` as in the interior, so a border output is the same
    sequence of operations as on a zero-padded copy (the Dask blocks' input). ``vals``
    (KW entries) and ``acc`` (one) are the caller's scratch buffers."""
    Cg, D, H, W = vol.shape
    KD, KH, KW = w.shape[2], w.shape[3], w.shape[4]
    OW = orow.shape[0]
    zero = w.dtype.type(0)
    for u in range(OW - (chi - clo)):
        ow = u if u < clo else u + (chi - clo)
        acc[0] = base
        start = ow * sw - pw
        for c in range(Cg):
            for a in range(KD):
                i = d0 + a * dd
                if i < 0 or i >= D:
                    continue
                for b in range(KH):
                    j = h0 + b * dh
                    if j < 0 or j >= H:
                        continue
                    row = vol[c, i, j]
                    for e in range(KW):
                        m = start + e * dw
                        vals[e] = row[m] if 0 <= m < W else zero
                    _kernel_row(acc, vals, 1, 1, w[k, c, a, b])
        orow[ow] = acc[0]


@njit(inline="always", **JIT_SERIAL)
def _kernel_row_cols(a, cols, t0, sw, wrow):
    """:func:`_kernel_row` with tap ``e`` read from ``cols[e, t0 + o*sw]`` instead of
    ``row[o*sw + e*dw]``: the same grouping of taps (the same inline passes), so each
    output is the same sequence of operations as in the interior."""
    KW = wrow.shape[0]
    span = (a.shape[0] - 1) * sw + 1
    t1 = t0 + span
    e = 0
    while KW - e >= 5 and KW - e != 6:
        _taps5(a, cols[e, t0:t1], cols[e + 1, t0:t1], cols[e + 2, t0:t1],
               cols[e + 3, t0:t1], cols[e + 4, t0:t1], sw,
               wrow[e], wrow[e + 1], wrow[e + 2], wrow[e + 3], wrow[e + 4])
        e += 5
    while KW - e >= 3:
        _fma_taps3(a, cols[e, t0:t1], cols[e + 1, t0:t1], cols[e + 2, t0:t1], sw,
                   wrow[e], wrow[e + 1], wrow[e + 2])
        e += 3
    if KW - e == 2:
        _taps2(a, cols[e, t0:t1], cols[e + 1, t0:t1], sw, wrow[e], wrow[e + 1])
    elif KW - e == 1:
        _fma_row1(a, cols[e, t0:t1], sw, wrow[e])


@njit(inline="always", **JIT_SERIAL)
def _border_rows(oplane, vol, w, k, base, d0, f0, f1, clo, chi, sh, sw, ph, pw, dd, dh,
                 dw, cols, accbuf):
    """:func:`_border_columns` for the interior rows [f0, f1) (every H tap inside
    ``vol``) with the rows as the vector axis: per border column, each kernel row's
    inputs (zeros outside ``vol``) are gathered once into ``cols`` (KW, taps along H)
    and summed by :func:`_kernel_row_cols`, so every output gets the same operations
    in the same order as :func:`_border_columns` (and as the interior on a zero-padded
    copy). ``cols`` and ``accbuf`` are the caller's scratch buffers."""
    Cg, D, H, W = vol.shape
    KD, KH, KW = w.shape[2], w.shape[3], w.shape[4]
    OW = oplane.shape[1]
    zero = w.dtype.type(0)
    n = f1 - f0
    T = (n - 1) * sh + (KH - 1) * dh + 1
    acc = accbuf[:n]
    j0 = f0 * sh - ph
    for u in range(OW - (chi - clo)):
        ow = u if u < clo else u + (chi - clo)
        acc[:] = base
        start = ow * sw - pw
        for c in range(Cg):
            for a in range(KD):
                i = d0 + a * dd
                if i < 0 or i >= D:
                    continue
                plane = vol[c, i]
                for e in range(KW):
                    m = start + e * dw
                    ce = cols[e]
                    if 0 <= m < W:
                        for t in range(T):
                            ce[t] = plane[j0 + t, m]
                    else:
                        ce[:T] = zero
                for b in range(KH):
                    _kernel_row_cols(acc, cols, b * dh, sh, w[k, c, a, b])
        oplane[f0:f1, ow] = acc


@njit(**JIT_PARALLEL)
def correlate_planes(x, w, bias, out, stride, dilation, groups, pads):
    """:func:`correlate` for few output channels per group (depthwise, single planes),
    reading ``x`` zero-padded by ``pads`` (before each axis) without a padded copy.

    One task per (n, k, od, block of output rows). The interior outputs (every tap inside
    ``x``) are summed over column chunks that stay in L1, with no branches, several
    kernel rows per pass at stride 1 (:func:`_kernel_rows`); when the output rows have
    the input's pitch (stride 1, ``OW == W``) a whole block of rows is one flat run
    (long vector loops even for narrow planes; the wrapped border columns it also
    writes are redone). Border columns read zeros outside ``x``, the interior rows'
    ones with the rows side by side (:func:`_border_rows`); taps in the padding still
    add ``w * 0``, so NaN/Inf weights propagate as with a padded copy. Every output is
    the chain ``acc = fma(w, x, acc)`` over its taps in (c, d, h, w) order from the
    bias, whichever pass computes it: bit-identical to this kernel on a zero-padded
    copy (tests/test_membound.py).
    """
    N, C, D, H, W = x.shape
    K, Cg, KD, KH, KW = w.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    sd, sh, sw = stride[0], stride[1], stride[2]
    dd, dh, dw = dilation[0], dilation[1], dilation[2]
    pd, ph, pw = pads[0], pads[1], pads[2]
    Kg = K // groups
    planes = N * K * OD
    nrb = min(OH, max(1, (PLANE_TASKS + planes - 1) // planes))
    RB = (OH + nrb - 1) // nrb
    nrb = (OH + RB - 1) // RB
    # interior columns [clo, chi) and rows [rlo, rhi): every tap inside x
    clo = min(OW, (pw + sw - 1) // sw)
    chi = max(clo, min(OW, (W - 1 + pw - (KW - 1) * dw) // sw + 1))
    rlo = min(OH, (ph + sh - 1) // sh)
    rhi = max(rlo, min(OH, (H - 1 + ph - (KH - 1) * dh) // sh + 1))
    flat = sw == 1 and sh == 1 and OW == W and chi > clo
    pair = (flat and Cg == 1 and KD == 1 and KH == KW and (KW == 3 or KW == 5) and dh == 1
            and dw == 1)
    ntask = planes * nrb
    nchunk = min(ntask, TASK_CHUNKS)
    for ch in prange(nchunk):  # scratch allocated once per chunk of tasks
        bvals = np.empty(KW, dtype=out.dtype)  # border columns' scratch (_border_columns)
        bacc = np.empty(1, dtype=out.dtype)
        bcols = np.empty((KW, (RB - 1) * sh + (KH - 1) * dh + 1), dtype=out.dtype)
        brows = np.empty(RB, dtype=out.dtype)  # (_border_rows)
        for t in range(ch * ntask // nchunk, (ch + 1) * ntask // nchunk):
            rb = t % nrb
            r = t // nrb
            od = r % OD
            r //= OD
            k = r % K
            n = r // K
            c0 = (k // Kg) * Cg
            vol = x[n, c0 : c0 + Cg]
            d0 = od * sd - pd
            r0, r1 = rb * RB, min(OH, rb * RB + RB)
            f0, f1 = max(r0, rlo), min(r1, rhi)
            if flat and f1 > f0:
                # rows [f0, f1) as one run: out flat index p reads input p + offset(tap)
                oplane = out[n, k, od].reshape(OH * OW)
                base = _row_base(w, k, bias[k], d0, f0 - ph, D, H, dd, dh)
                p0, p1 = f0 * OW + clo, (f1 - 1) * OW + chi
                if pair and 0 <= d0 < D:
                    # one 3x3 or 5x5 plane: two output rows (runs of W, one W apart) a pass
                    pin = vol[0, d0].reshape(H * W)
                    wk = w[k, 0, 0]
                    while p0 + 2 * W <= p1:
                        for s in range(0, W, COLUMN_CHUNK):
                            m = min(W, s + COLUMN_CHUNK) - s
                            a = p0 + s
                            i = a - ph * W - pw
                            if KW == 3:
                                _pair_rows3_taps3(
                                    oplane[a : a + m], oplane[a + W : a + W + m],
                                    pin[i : i + m + 2], pin[i + W : i + W + m + 2],
                                    pin[i + 2 * W : i + 2 * W + m + 2],
                                    pin[i + 3 * W : i + 3 * W + m + 2], base, wk[0], wk[1], wk[2])
                            else:
                                _pair_rows5_taps5(
                                    oplane[a : a + m], oplane[a + W : a + W + m],
                                    pin[i : i + m + 4], pin[i + W : i + W + m + 4],
                                    pin[i + 2 * W : i + 2 * W + m + 4],
                                    pin[i + 3 * W : i + 3 * W + m + 4],
                                    pin[i + 4 * W : i + 4 * W + m + 4],
                                    pin[i + 5 * W : i + 5 * W + m + 4], base, wk[0], wk[1], wk[2],
                                    wk[3], wk[4])
                        p0 += 2 * W
                oplane[p0:p1] = base
                for q in range(p0, p1, COLUMN_CHUNK):
                    acc = oplane[q : min(p1, q + COLUMN_CHUNK)]
                    for c in range(Cg):
                        for a in range(KD):
                            i = d0 + a * dd
                            if i < 0 or i >= D:
                                continue
                            _kernel_rows(acc, vol[c, i].reshape(H * W), -ph, q - pw, W, dh, dw,
                                         w[k, c, a])
            for oh in range(r0, r1):
                if flat and f0 <= oh < f1:
                    continue
                h0 = oh * sh - ph
                orow = out[n, k, od, oh]
                base = _row_base(w, k, bias[k], d0, h0, D, H, dd, dh)
                orow[clo:chi] = base
                for q in range(clo, chi, COLUMN_CHUNK):
                    acc = orow[q : min(chi, q + COLUMN_CHUNK)]
                    start = q * sw - pw
                    for c in range(Cg):
                        for a in range(KD):
                            i = d0 + a * dd
                            if i < 0 or i >= D:
                                continue
                            if sw == 1 and rlo <= oh < rhi:  # every kernel row inside x
                                _kernel_rows(acc, vol[c, i].reshape(H * W), h0, start, W, dh, dw,
                                             w[k, c, a])
                                continue
                            for b in range(KH):
                                j = h0 + b * dh
                                if j < 0 or j >= H:
                                    continue
                                _kernel_row(acc, vol[c, i, j, start:], sw, dw, w[k, c, a, b])
                if not f0 <= oh < f1:
                    _border_columns(orow, vol, w, k, base, d0, h0, clo, chi, sw, pw, dd, dh, dw,
                                    bvals, bacc)
            if f1 > f0:  # the interior rows' border columns, rows side by side
                base = _row_base(w, k, bias[k], d0, f0 * sh - ph, D, H, dd, dh)
                _border_rows(out[n, k, od], vol, w, k, base, d0, f0, f1, clo, chi, sh, sw, ph,
                             pw, dd, dh, dw, bcols, brows)


_NO_PADS = np.zeros(3, dtype=np.int64)


def few_channel_core(pads=None):
    """The few-channel kernel with :func:`correlate`'s signature, reading its input as
    zero-padded by ``pads`` (three (before, after) pairs; None: the input is already
    padded)."""
    before = _NO_PADS if pads is None else np.array([p[0] for p in pads], dtype=np.int64)
    kernel = correlate_planes

    def core(x, w, bias, out, stride, dilation, groups):
        kernel(x, w, bias, out, stride, dilation, groups, before)

    return core


def _serial_twin(func, name: str):
    """``func``'s kernel compiled without threads (``prange`` runs as ``range``), under its
    own name so that its cache entry never mixes with the parallel one's."""
    py = types.FunctionType(func.py_func.__code__, func.py_func.__globals__, name)
    py.__qualname__ = name
    py.__doc__ = func.py_func.__doc__
    return njit(**JIT_SERIAL)(py)


#: :func:`correlate` on the calling thread: for tiny problems, where waking the worker
#: threads costs more than the work (``fastconv._algorithms.SERIAL_MAX_MACS``).
correlate_serial = _serial_twin(correlate, "correlate_serial")
