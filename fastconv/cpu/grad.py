"""Gradients of the direct correlation on 5-D arrays ``(N, C, D, H, W)``.

- Input gradient (and transposed convolution): ``grad_output`` spread onto a zero grid,
  correlated (stride 1) with the flipped, channel-transposed weight by the forward kernel,
  then, for reflect/replicate/circular padding, folded back onto the source pixels
  (:func:`fold_axis`, the adjoint of ``pad.source_index``).
- Weight gradient: one task per (block of output channels, input channel) weight slice;
  it reduces over the batch and every output position in a fixed order, so the result is
  bit-identical from run to run and for any thread count.

The algorithm of each call is a decision of the registry (``fastconv._algorithms``: its
entries' gradient cores call the functions here, ``input_*`` and ``weight_*``); nothing
here chooses. ``"gemm"`` means:

- input gradient: the stride-1 correlation of the spread grid runs on the shifted GEMM
  (``fastconv.cpu.gemm.shifted``): ``dXp[n] += W_t^T (C x K) @ dYspread[n, off_t:]``;
- weight gradient (stride 1): ``dW_t (Kg x Cg) = sum_n dYpitch[n] (Kg x L) @
  Xflat[n, :, off_t : off_t + L]^T`` with ``grad_output`` laid on the padded input's pitch
  (zero garbage columns); the columns are cut into L2-sized chunks and every tap's strided
  BLAS call runs on a chunk while it is cached (``beta = 1`` after the first). The
  (image, chunk) sequence is split into ``WEIGHT_PARTS`` consecutive parts (a constant,
  not the thread count) summed separately and added in order. An input holding NaN/Inf
  uses the direct kernel (the zero garbage columns would turn ``0 * inf`` into NaN where
  the direct sum never reads that pixel).
  With stride > 1 the direct kernel runs.
- weight gradient, "winograd" (what "auto" runs instead of "gemm" for 2-D 3x3 kernels at
  stride 1 and dilation 1 with >= 16 channels per group, ``fastconv._algorithms``):
  ``fastconv.cpu.winograd_weight``, F(3x3, 4x4) / F(3x3, 2x2), zero padding read in
  place; a NaN/Inf runs the direct kernel.

GEMM tasks are fixed, single-threaded sequences of BLAS calls (``fastconv.cpu.blas``), so
every path is bit-identical from run to run and for any thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv._config import JIT_PARALLEL, JIT_SERIAL
from fastconv.cpu import blas, gemm, small
from fastconv.cpu.conv import _serial_twin
from fastconv.cpu.pad import MODE_CODES, source_index


@njit(inline="always", **JIT_SERIAL)
def _dot4(seg, sw, g0, g1, g2, g3, zero):
    """(sum_o g_j[o] * seg[o*sw] for j in 0..3): four dot products sharing one input row
    (loads only, no stores, so the loop vectorizes). ``zero`` is 0 of the accumulator type
    (not ``seg[0] * 0``, which is NaN when ``seg[0]`` is infinite)."""
    s0 = s1 = s2 = s3 = zero
    if sw == 1:
        for o in range(g0.shape[0]):
            v = seg[o]
            s0 += g0[o] * v
            s1 += g1[o] * v
            s2 += g2[o] * v
            s3 += g3[o] * v
    else:
        for o in range(g0.shape[0]):
            v = seg[o * sw]
            s0 += g0[o] * v
            s1 += g1[o] * v
            s2 += g2[o] * v
            s3 += g3[o] * v
    return s0, s1, s2, s3


def weight_direct(xp, g, gw, stride, dilation, groups, serial: bool = False) -> None:
    """The direct weight gradient (:func:`correlate_weight_direct`) of a padded input;
    ``stride`` and ``dilation`` are per-axis (any sequence of 3 ints). ``serial``: run
    the kernel's serial twin (tiny problems: the same bits, no thread wake-up, and a third
    of the parallel kernel's cold compile)."""
    core = correlate_weight_direct_serial if serial else correlate_weight_direct
    core(xp, g, gw, np.asarray(stride), np.asarray(dilation), groups)


def weight_gemm(xp, g, gw, stride, dilation, groups) -> bool:
    """The GEMM weight gradient of a padded input (:func:`_weight_shifted`); False
    (nothing final written) when it cannot run: a stride > 1, no strided BLAS, or an
    input holding NaN/Inf (the caller then runs :func:`weight_direct`)."""
    if not gemm.shifted_ok(stride):
        return False
    with np.errstate(invalid="ignore", over="ignore"):
        return _weight_shifted(np.ascontiguousarray(xp), g, gw, dilation, groups)


def weight_winograd(x, g, gw, groups, before=(0, 0)) -> bool:
    """The Winograd weight gradient (``fastconv.cpu.winograd_weight``, 2-D 3x3, stride 1,
    dilation 1) of ``x``, padded already or unpadded with its zero padding read in place
    (``before`` = (top, left)); False when a value is not finite (the caller then runs
    :func:`weight_direct`)."""
    from fastconv.cpu import winograd_weight

    with np.errstate(invalid="ignore", over="ignore"):
        return winograd_weight.correlate_weight(
            np.ascontiguousarray(x[:, :, 0]), np.ascontiguousarray(g[:, :, 0]), gw[:, :, 0],
            groups, WEIGHT_PARTS, before)


@njit(**JIT_SERIAL)
def all_finite(a):
    """Whether every element of ``a`` (any shape) is finite (no NaN/Inf)."""
    for v in a.flat:
        if not np.isfinite(v):
            return False
    return True


@njit(**JIT_SERIAL)
def to_pitch(g, gq):
    """gq[k, d, h, w] = g[k, d, h, w] inside g's extent, 0 in the extra columns/rows
    (one image: ``g`` is ``(K, OD, OH, OW)``, ``gq`` is ``(K, OD, H, W)``)."""
    K, OD, OH, OW = g.shape
    H, W = gq.shape[2], gq.shape[3]
    for k in range(K):
        for d in range(OD):
            for h in range(H):
                dst = gq[k, d, h]
                if h < OH:
                    src = g[k, d, h]
                    for i in range(OW):
                        dst[i] = src[i]
                    for i in range(OW, W):
                        dst[i] = 0
                else:
                    dst[:] = 0


#: Parallel parts of the GEMM weight gradient aimed at (partial sums over consecutive
#: column chunks, added in order at the end): a constant, so the sums never depend on the
#: thread count.
WEIGHT_PARTS = 4


@njit(**JIT_PARALLEL)
def weight_prepare(xp, g, gq, finite):
    """Per image ``n`` (one iteration each): ``finite[n]`` = whether ``xp[n]`` is finite,
    and ``g[n]`` laid on the padded pitch into ``gq[n]`` (:func:`to_pitch`)."""
    for n in prange(xp.shape[0]):
        finite[n] = all_finite(xp[n])
        to_pitch(g[n], gq[n])


@njit(**JIT_PARALLEL)
def weight_tasks(xp, gq, acc, rows, chunks, bounds, argrow, offs, gemm, args, groups):
    """Every (part, group, block of output channels) task of :func:`_weight_shifted` as
    one iteration of one parallel region: its part's (image, column chunk) pairs in order,
    each tap's strided product accumulated into ``acc[part, tap]`` (``beta = 1`` after
    the part's first chunk), through the BLAS pointer ``gemm`` (``args[argrow[block, j]]``
    for chunk ``j``). ``xp`` is ``(N, C, P)``, ``gq`` ``(N, K, Q)``, ``acc``
    ``(parts, taps, K, Cg)``; ``chunks`` rows are (image, first column, stop)."""
    N, C, P = xp.shape
    K, Q = gq.shape[1], gq.shape[2]
    taps, Cg = acc.shape[1], acc.shape[3]
    Kg = K // groups
    nkb = rows.shape[0]
    s = xp.itemsize
    xa, ga, aa = xp.ctypes.data, gq.ctypes.data, acc.ctypes.data
    for i in prange((bounds.shape[0] - 1) * groups * nkb):
        r = i % nkb
        grp = (i // nkb) % groups
        part = i // (nkb * groups)
        k0 = grp * Kg + rows[r, 0]
        cbase = aa + np.uint64((part * taps * K + k0) * Cg * s)
        for j in range(bounds[part], bounds[part + 1]):
            n, l0 = chunks[j, 0], chunks[j, 1]
            a = args[argrow[r, j]]
            a0 = ga + np.uint64(((n * K + k0) * Q + l0) * s)
            b0 = xa + np.uint64(((n * C + grp * Cg) * P + l0) * s)
            for t in range(taps):
                gemm(a[0], a[1], a[2], a[3], a[4], a[5], b0 + np.uint64(offs[t] * s), a[6],
                     a0, a[7], a[8] if j == bounds[part] else a[10],
                     cbase + np.uint64(t * K * Cg * s), a[9])


def _weight_shifted(xp, g, gw, dilation, groups) -> bool:
    """Stride-1 weight gradient as strided GEMMs (module docstring); False (nothing
    written) when ``xp`` holds NaN/Inf.

    The columns of every image are cut into L2-sized chunks (``2 * GEMM_CHUNK_BYTES`` of
    the two operands); all taps run on a chunk while it is in the cache. The (image, chunk)
    sequence is split into consecutive parts, each summed in its own accumulator by one
    task (per group and block of output channels), and the parts are added in order.
    The tasks are the iterations of one Numba parallel region (:func:`weight_tasks`), as
    in ``fastconv.cpu.gemm.shifted``.
    """
    N, C, Dp, Hp, Wp = xp.shape
    K, Cg, KD, KH, KW = gw.shape
    OD, OH, OW = g.shape[2:]
    Kg = K // groups
    dd, dh, dw = (int(v) for v in dilation)
    P = Dp * Hp * Wp
    Q = OD * Hp * Wp
    L = (OD - 1) * Hp * Wp + (OH - 1) * Wp + OW
    gq = np.empty((N, K, OD, Hp, Wp), dtype=gw.dtype)
    g = np.ascontiguousarray(g, dtype=gw.dtype)
    finite = np.ones(N, dtype=np.bool_)
    weight_prepare(xp, g, gq, finite)
    if not finite.all():
        return False
    taps = KD * KH * KW
    offs = np.array([a * dd * Hp * Wp + b * dh * Wp + e * dw
                     for a in range(KD) for b in range(KH) for e in range(KW)], dtype=np.int64)
    s = gw.itemsize
    lc = max(gemm.MIN_CHUNK_COLUMNS, 2 * gemm.GEMM_CHUNK_BYTES // ((Kg + Cg) * s))
    chunks = [(n, l0, min(L, l0 + lc)) for n in range(N) for l0 in range(0, L, lc)]
    nkb = max(1, Kg // 128)  # row blocks of >= 64 output channels
    rows = [(j * Kg // nkb, (j + 1) * Kg // nkb) for j in range(nkb)]
    parts = max(1, min(len(chunks), -(-WEIGHT_PARTS // (groups * nkb))))
    bounds = [j * len(chunks) // parts for j in range(parts + 1)]
    acc = np.empty((parts, taps, K, Cg), dtype=gw.dtype)
    prods: dict = {}  # (rows, columns) -> (row, Gemm, pointer, arguments)
    argrow = np.empty((nkb, len(chunks)), dtype=np.int64)
    for r, (r0, r1) in enumerate(rows):
        for j, (_, c0, c1) in enumerate(chunks):
            key = (r1 - r0, c1 - c0)
            if key not in prods:
                prod = blas.Gemm(gw.dtype, r1 - r0, Cg, c1 - c0, lda=Q, ldb=P, ldc=Cg, tb=True)
                prods[key] = (len(prods), prod, *blas.numba_call(prod, beta_one=True))
            argrow[r, j] = prods[key][0]
    args = np.stack([p[3] for p in sorted(prods.values(), key=lambda p: p[0])])
    with blas.single_threaded_blas():
        weight_tasks(xp.reshape(N, C, P), gq.reshape(N, K, Q), acc,
                     np.array(rows, dtype=np.int64), np.array(chunks, dtype=np.int64),
                     np.array(bounds, dtype=np.int64), argrow, offs,
                     next(iter(prods.values()))[2], args, groups)
    total = acc[0]
    for j in range(1, parts):  # the parts in order: the same sum for any thread count
        total += acc[j]
    gw[...] = total.transpose(1, 2, 0).reshape(gw.shape)
    return True


@njit(**JIT_PARALLEL)
def correlate_weight_direct(xp, g, gw, stride, dilation, groups):
    """gw[k, c, r] = sum_{n, o} g[n, k, o] * xp[n, group(k)*C_g + c, o*stride + r*dilation].

    ``xp`` is the padded input, ``g`` the output gradient. One task owns the weight slices
    of up to 4 output channels for one input channel and reduces over
    the batch and every output row in a fixed order.
    """
    N = xp.shape[0]
    K, Cg, KD, KH, KW = gw.shape
    OD, OH, OW = g.shape[2], g.shape[3], g.shape[4]
    sd, sh, sw = stride[0], stride[1], stride[2]
    dd, dh, dw = dilation[0], dilation[1], dilation[2]
    Kg = K // groups
    B = 4  # the width of _dot4
    nkb = (Kg + B - 1) // B
    span = (OW - 1) * sw + 1
    for t in prange(groups * nkb * Cg):
        c = t % Cg
        r = t // Cg
        kb = r % nkb
        grp = r // nkb
        k0 = grp * Kg + kb * B
        nk = min(B, grp * Kg + Kg - k0)
        ci = grp * Cg + c
        acc = np.zeros((KD * KH * KW, 4), dtype=gw.dtype)
        zero = acc[0, 0]
        for n in range(N):
            for od in range(OD):
                for oh in range(OH):
                    # a partial block repeats its last channel (computed, never stored)
                    g0 = g[n, k0, od, oh]
                    g1 = g[n, k0 + min(1, nk - 1), od, oh]
                    g2 = g[n, k0 + min(2, nk - 1), od, oh]
                    g3 = g[n, k0 + min(3, nk - 1), od, oh]
                    for a in range(KD):
                        for b in range(KH):
                            row = xp[n, ci, od * sd + a * dd, oh * sh + b * dh]
                            for e in range(KW):
                                seg = row[e * dw : e * dw + span]
                                s0, s1, s2, s3 = _dot4(seg, sw, g0, g1, g2, g3, zero)
                                tap = (a * KH + b) * KW + e
                                acc[tap, 0] += s0
                                acc[tap, 1] += s1
                                acc[tap, 2] += s2
                                acc[tap, 3] += s3
        for j in range(nk):
            for a in range(KD):
                for b in range(KH):
                    for e in range(KW):
                        gw[k0 + j, c, a, b, e] = acc[(a * KH + b) * KW + e, j]


#: :func:`correlate_weight_direct` on the calling thread, for tiny problems (fewer than
#: ``SERIAL_MAX_MACS`` multiply-adds): no thread wake-up, and its cold compile is about a
#: third of the parallel kernel's (no parfor lowering).
correlate_weight_direct_serial = _serial_twin(correlate_weight_direct,
                                              "correlate_weight_direct_serial")


@njit(**JIT_PARALLEL)
def fold_axis(src, out, before, mode):
    """out[a, s, :] = sum of src[a, p, :] over the padded positions p that read source s.

    ``src`` is ``(A, L_padded, B)``, ``out`` is ``(A, L, B)``: the adjoint of padding the
    middle axis with ``source_index`` (interior first, then the border in order of p).
    """
    A, Lp, Bn = src.shape
    L = out.shape[1]
    for a in prange(A):
        for s in range(L):
            for i in range(Bn):
                out[a, s, i] = src[a, before + s, i]
        for p in range(Lp):
            if before <= p < before + L:
                continue
            s = source_index(p - before, L, mode)
            if s >= 0:
                for i in range(Bn):
                    out[a, s, i] += src[a, p, i]


def unpad(gp: np.ndarray, pads, mode: str) -> np.ndarray:
    """Adjoint of ``pad(x, pads, mode)`` for a 5-D gradient on the padded grid."""
    N, C = gp.shape[:2]
    code = MODE_CODES[mode]
    for axis in (4, 3, 2):
        b, a = pads[axis - 2]
        if b == 0 and a == 0:
            continue
        shape = gp.shape
        lp = shape[axis]
        outer = int(np.prod(shape[:axis]))
        inner = int(np.prod(shape[axis + 1 :]))
        new = shape[:axis] + (lp - b - a,) + shape[axis + 1 :]
        out = np.empty(new, dtype=gp.dtype)
        fold_axis(gp.reshape(outer, lp, inner), out.reshape(outer, lp - b - a, inner), b, code)
        gp = out
    assert gp.shape[:2] == (N, C)
    return gp


def _transposed_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """(K, C_g, *k) -> (C, K_g, *k) per group, every spatial axis flipped."""
    K, Cg = w.shape[:2]
    wg = w.reshape((groups, K // groups, Cg) + w.shape[2:]).transpose(0, 2, 1, 3, 4, 5)
    wt = wg[:, :, :, ::-1, ::-1, ::-1]
    return np.ascontiguousarray(wt.reshape((groups * Cg, K // groups) + w.shape[2:]))


def input_winograd(g, w, bias, out, spread_shape, spread_dst, groups) -> bool:
    """The input gradient by Winograd (``fastconv.cpu.winograd.correlate_input``): stride
    1, ``grad_output`` read in place with its zero padding (no spread grid), the kernel
    flip folded into the weight transform. False (nothing final written) when a value is
    not finite (the caller then runs another core)."""
    from fastconv.cpu import winograd

    pads = tuple((d[0], n - d[1]) for d, n in zip(spread_dst[1:], spread_shape[3:], strict=True))
    with np.errstate(invalid="ignore", over="ignore"):
        return winograd.correlate_input(g[:, :, 0], w[:, :, 0], bias, out[:, :, 0], pads, groups)


def input_small(g, w, bias, out, spread_dst, dilation, groups) -> None:
    """The input gradient by ``col2im`` (``fastconv.cpu.small.input_gradient``), for a
    plan whose every ``grad_output`` value lands on the grid."""
    stride = tuple(d[2] for d in spread_dst)
    before = tuple(int(dl) * (int(k) - 1) - d[0]  # the spread grid starts at reach - before
                   for dl, k, d in zip(dilation, w.shape[2:], spread_dst, strict=True))
    small.input_gradient(g, w, bias, out, stride, dilation, before, groups)


def input_spread(g, w, bias, out, spread_shape, spread_src, spread_dst, dilation, groups,
                 kernel) -> None:
    """The input gradient as the stride-1 correlation (``kernel``: ``correlate``,
    ``correlate_serial`` or ``fastconv.cpu.gemm.correlate``) of ``grad_output`` spread onto
    a zero grid with the flipped, channel-transposed weight, written into ``out``."""
    gz = np.empty(spread_shape, dtype=out.dtype)
    src = (slice(None),) + tuple(slice(*s) for s in spread_src)
    dst = (slice(None),) + tuple(slice(*s) for s in spread_dst)

    def spread(n):  # NumPy copies release the GIL: images in parallel, no Numba barrier
        gz[n] = 0
        gz[n][dst] = g[n][src]

    blas.parallel(spread, gz.shape[0])
    ones = (1, 1, 1)  # tuples, as the forward passes them (one Numba specialisation)
    wt = _transposed_weight(w, groups)
    kernel(gz, wt, bias, out, ones, tuple(int(d) for d in dilation), groups)
