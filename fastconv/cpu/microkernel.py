"""Explicit SIMD vectors for Numba kernels, and the output-channel-vectorised direct
correlation built on them (``algorithm="direct_vec"``).

Numba has no SIMD type: left to LLVM's auto-vectoriser, a register block of scalar
accumulators spills (15-27 % of the FMA peak, ``NUMBA-SPEED.md``). The intrinsics here
give kernels LLVM vector values (``<LANES x float>``): :func:`vload`, :func:`vstore`,
:func:`vsplat` (broadcast) and :func:`vfma` (``llvm.fma`` on vectors, one rounding per
lane). ``LANES32`` / ``LANES64`` are the host's vector width in float32 / float64
elements (AVX-512: 16 / 8, else 8 / 4), fixed when this module is imported; Numba's
cache is keyed by the CPU, so a kernel cached on one ISA is never loaded on another.
The primitives are general: any kernel can hold a register block in named vector locals.

**The direct_vec correlation** (few input channels, large kernels, any stride: the first
layers of CNNs, 3 -> 64 7x7 stride 2). For one output row of one image, a block of
``MR`` output pixels times ``KB = NV * LANES`` output channels is held in ``MR * NV``
vector accumulators; for each kernel tap ``(c, a, b, e)`` in that order, the ``NV``
weight vectors of the tap (weights packed ``[tap][channel]``) are multiplied by the
``MR`` input values, each broadcast to a vector, and added with one fused multiply-add
per lane. Each output is therefore one fixed chain of ``Cg * taps`` FMAs, whatever the
thread count or the task split; the bias is added after the chain. The row's block
results go to a small scratch ``(OW, KB)`` and are transposed into the NCHW output.
"""

from __future__ import annotations

import llvmlite.binding as llb
import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import cgutils, config, types
from numba.extending import intrinsic, models, register_model

from fastconv._config import JIT_PARALLEL, JIT_SERIAL
from fastconv.cpu.pad import MODE_CODES, source_index


def _has_avx512() -> bool:
    """Whether Numba compiles for AVX-512 (NUMBA_CPU_FEATURES / NUMBA_CPU_NAME if set,
    else the host)."""
    feats = config.CPU_FEATURES
    if feats is None:
        if config.CPU_NAME not in (None, "host"):
            return False  # a named generic CPU: assume the narrower vectors
        feats = llb.get_host_cpu_features().flatten()
    return "+avx512f" in feats.split(",")


#: Whether the kernels use 512-bit vectors (a module constant, frozen into the compiled
#: kernels: Numba's cache keys them by the CPU name and features this is read from).
AVX512 = _has_avx512()
#: float32 / float64 elements per SIMD register on this host.
LANES32 = 16 if AVX512 else 8
LANES64 = LANES32 // 2


class Vec(types.Type):
    """An LLVM vector of ``lanes`` elements of ``dtype`` (a Numba float type)."""

    def __init__(self, dtype, lanes):
        self.dtype, self.lanes = dtype, lanes
        super().__init__(name=f"Vec({dtype} x {lanes})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        be = ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.lanes)
        super().__init__(dmm, fe_type, be)


def _lanes(dtype):
    """The host's vector width in elements of the Numba float type ``dtype``."""
    if isinstance(dtype, types.Float):
        return LANES32 if dtype.bitwidth == 32 else LANES64
    return None


def _element_pointer(context, builder, aty, arr, i):
    ary = context.make_array(aty)(context, builder, arr)
    return builder.gep(ary.data, [i])


@intrinsic
def vload(typingctx, arr, i):
    """``arr[i : i + lanes]`` as a vector (``arr`` 1-D contiguous, unaligned load)."""
    if not isinstance(arr, types.Array) or arr.layout != "C" or arr.ndim != 1:
        return None
    n = _lanes(arr.dtype)
    if n is None:
        return None
    vt = Vec(arr.dtype, n)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        vptr = builder.bitcast(ptr, context.get_value_type(vt).as_pointer())
        return builder.load(vptr, align=arr.dtype.bitwidth // 8)

    return vt(arr, i), codegen


@intrinsic
def vstore(typingctx, arr, i, v):
    """``arr[i : i + v.lanes] = v`` (``arr`` 1-D contiguous, unaligned store)."""
    if not (isinstance(v, Vec) and isinstance(arr, types.Array) and arr.layout == "C"
            and arr.ndim == 1 and arr.dtype == v.dtype):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        vptr = builder.bitcast(ptr, context.get_value_type(v).as_pointer())
        builder.store(args[2], vptr, align=arr.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(arr, i, v), codegen


@intrinsic
def vsplat(typingctx, x):
    """A vector of ``lanes`` copies of the scalar ``x``."""
    n = _lanes(x)
    if n is None:
        return None
    vt = Vec(x, n)

    def codegen(context, builder, sig, args):
        ty = context.get_value_type(vt)
        one = builder.insert_element(ir.Constant(ty, ir.Undefined), args[0],
                                     ir.Constant(ir.IntType(32), 0))
        mask = ir.Constant(ir.VectorType(ir.IntType(32), n), [0] * n)
        return builder.shuffle_vector(one, ir.Constant(ty, ir.Undefined), mask)

    return vt(x), codegen


@intrinsic
def vsplat_at(typingctx, arr, i):
    """A vector of copies of ``arr[i]`` (``arr`` 1-D contiguous; no negative-index
    wraparound: ``i`` must be in range)."""
    if not isinstance(arr, types.Array) or arr.layout != "C" or arr.ndim != 1:
        return None
    n = _lanes(arr.dtype)
    if n is None:
        return None
    vt = Vec(arr.dtype, n)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        x = builder.load(ptr, align=arr.dtype.bitwidth // 8)
        ty = context.get_value_type(vt)
        one = builder.insert_element(ir.Constant(ty, ir.Undefined), x,
                                     ir.Constant(ir.IntType(32), 0))
        mask = ir.Constant(ir.VectorType(ir.IntType(32), n), [0] * n)
        return builder.shuffle_vector(one, ir.Constant(ty, ir.Undefined), mask)

    return vt(arr, i), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """``a * b + c`` lane by lane, rounded once (``llvm.fma``)."""
    if not (isinstance(a, Vec) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        vty = context.get_value_type(a)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [vty] * 3),
            f"llvm.fma.v{a.lanes}f{a.dtype.bitwidth}")
        return builder.call(fn, args)

    return a(a, b, c), codegen


@intrinsic
def vinterleave(typingctx, ev, je, od, jo, dst, i):
    """``dst[i : i + 2L : 2] = ev[je : je + L]`` and ``dst[i + 1 : i + 2L : 2] = od[jo : jo +
    L]``: the inverse of :func:`vdeinterleave` (same conditions)."""
    arrays = (ev, od, dst)
    if not all(isinstance(a, types.Array) and a.layout == "C" and a.ndim == 1
               and a.dtype == ev.dtype for a in arrays):
        return None
    n = _lanes(ev.dtype)
    if n is None:
        return None

    def codegen(context, builder, sig, args):
        elt = context.get_value_type(ev.dtype)
        align = ev.dtype.bitwidth // 8
        halves = []
        for a, j in ((0, 1), (2, 3)):
            ptr = _element_pointer(context, builder, sig.args[a], args[a], args[j])
            halves.append(builder.load(
                builder.bitcast(ptr, ir.VectorType(elt, n).as_pointer()), align=align))
        mask = ir.Constant(ir.VectorType(ir.IntType(32), 2 * n),
                           [k // 2 + (n if k % 2 else 0) for k in range(2 * n)])
        pair = builder.shuffle_vector(halves[0], halves[1], mask)
        out = _element_pointer(context, builder, sig.args[4], args[4], args[5])
        builder.store(pair, builder.bitcast(out, ir.VectorType(elt, 2 * n).as_pointer()),
                      align=align)
        return context.get_dummy_value()

    return types.none(ev, je, od, jo, dst, i), codegen


@intrinsic
def vmax(typingctx, a, b):
    """``b if b > a else a`` lane by lane (a NaN in ``b`` never wins)."""
    if not (isinstance(a, Vec) and a == b):
        return None

    def codegen(context, builder, sig, args):
        return builder.select(builder.fcmp_ordered(">", args[1], args[0]), args[1], args[0])

    return a(a, b), codegen


@intrinsic
def vpick_eq(typingctx, x, y, a, b):
    """``a if x == y else b`` lane by lane."""
    if not (isinstance(x, Vec) and x == y == a == b):
        return None

    def codegen(context, builder, sig, args):
        return builder.select(builder.fcmp_ordered("==", args[0], args[1]), args[2], args[3])

    return a(x, y, a, b), codegen


@intrinsic
def vadd_eq(typingctx, x, y, a, b):
    """``a + b if x == y else a`` lane by lane (the add only where selected)."""
    if not (isinstance(x, Vec) and x == y == a == b):
        return None

    def codegen(context, builder, sig, args):
        return builder.select(builder.fcmp_ordered("==", args[0], args[1]),
                              builder.fadd(args[2], args[3]), args[2])

    return a(x, y, a, b), codegen


@intrinsic
def vdeinterleave(typingctx, src, i, ev, je, od, jo):
    """``ev[je : je + L] = src[i : i + 2L : 2]`` and ``od[jo : jo + L] = src[i + 1 : i + 2L :
    2]`` (``L`` the host's lanes; 1-D contiguous arrays of one float dtype; no bounds
    checks): two vector loads and two shuffles, where LLVM's vectoriser emits gathers
    for stride-2 loads. Returns whether the ``2L`` elements hold a NaN."""
    arrays = (src, ev, od)
    if not all(isinstance(a, types.Array) and a.layout == "C" and a.ndim == 1
               and a.dtype == src.dtype for a in arrays):
        return None
    n = _lanes(src.dtype)
    if n is None:
        return None

    def codegen(context, builder, sig, args):
        elt = context.get_value_type(src.dtype)
        align = src.dtype.bitwidth // 8
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        pair = builder.load(builder.bitcast(ptr, ir.VectorType(elt, 2 * n).as_pointer()),
                            align=align)
        undef = ir.Constant(ir.VectorType(elt, 2 * n), ir.Undefined)
        for a, j, first in ((2, 3, 0), (4, 5, 1)):
            mask = ir.Constant(ir.VectorType(ir.IntType(32), n), list(range(first, 2 * n, 2)))
            half = builder.shuffle_vector(pair, undef, mask)
            dst = _element_pointer(context, builder, sig.args[a], args[a], args[j])
            builder.store(half, builder.bitcast(dst, ir.VectorType(elt, n).as_pointer()),
                          align=align)
        nan = builder.bitcast(builder.fcmp_unordered("uno", pair, pair), ir.IntType(2 * n))
        return builder.icmp_unsigned("!=", nan, ir.Constant(ir.IntType(2 * n), 0))

    return types.boolean(src, i, ev, je, od, jo), codegen


@intrinsic
def vzero(typingctx, dtype_of):
    """A zero vector of ``dtype_of``'s type (a scalar)."""
    n = _lanes(dtype_of)
    if n is None:
        return None
    vt = Vec(dtype_of, n)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vt), None)

    return vt(dtype_of), codegen



@njit(inline="always", **JIT_SERIAL)
def _row_6x4(xf, base, roff, wf, wb, KB, tmp, sw, KW, dw, OW):
    """One output row in blocks of 6 pixels x 4 vectors of ``KB // 4`` output
    channels into ``tmp[ox * KB + k]`` (module doc). ``xf`` is the flat padded input;
    ``base + roff[j]`` is the offset of the input row of the taps' ``j``-th (channel,
    depth, row), ``KW`` taps ``dw`` apart in it; ``wf`` is the flat packed weight, the
    block's taps from ``wb``."""
    ln = KB // 4
    z = wf[0]
    for ob in range(-(-OW // 6)):
        ox0 = ob * 6
        x0 = min(ox0 + 0, OW - 1) * sw
        x1 = min(ox0 + 1, OW - 1) * sw
        x2 = min(ox0 + 2, OW - 1) * sw
        x3 = min(ox0 + 3, OW - 1) * sw
        x4 = min(ox0 + 4, OW - 1) * sw
        x5 = min(ox0 + 5, OW - 1) * sw
        a00, a01, a02, a03 = vzero(z), vzero(z), vzero(z), vzero(z)
        a10, a11, a12, a13 = vzero(z), vzero(z), vzero(z), vzero(z)
        a20, a21, a22, a23 = vzero(z), vzero(z), vzero(z), vzero(z)
        a30, a31, a32, a33 = vzero(z), vzero(z), vzero(z), vzero(z)
        a40, a41, a42, a43 = vzero(z), vzero(z), vzero(z), vzero(z)
        a50, a51, a52, a53 = vzero(z), vzero(z), vzero(z), vzero(z)
        t = wb
        for j in range(roff.shape[0]):
            r = base + roff[j]
            for e in range(KW):
                w0, w1 = vload(wf, t), vload(wf, t + ln)
                w2, w3 = vload(wf, t + 2 * ln), vload(wf, t + 3 * ln)
                o = r + e * dw
                v = vsplat_at(xf, o + x0)
                a00 = vfma(v, w0, a00)
                a01 = vfma(v, w1, a01)
                a02 = vfma(v, w2, a02)
                a03 = vfma(v, w3, a03)
                v = vsplat_at(xf, o + x1)
                a10 = vfma(v, w0, a10)
                a11 = vfma(v, w1, a11)
                a12 = vfma(v, w2, a12)
                a13 = vfma(v, w3, a13)
                v = vsplat_at(xf, o + x2)
                a20 = vfma(v, w0, a20)
                a21 = vfma(v, w1, a21)
                a22 = vfma(v, w2, a22)
                a23 = vfma(v, w3, a23)
                v = vsplat_at(xf, o + x3)
                a30 = vfma(v, w0, a30)
                a31 = vfma(v, w1, a31)
                a32 = vfma(v, w2, a32)
                a33 = vfma(v, w3, a33)
                v = vsplat_at(xf, o + x4)
                a40 = vfma(v, w0, a40)
                a41 = vfma(v, w1, a41)
                a42 = vfma(v, w2, a42)
                a43 = vfma(v, w3, a43)
                v = vsplat_at(xf, o + x5)
                a50 = vfma(v, w0, a50)
                a51 = vfma(v, w1, a51)
                a52 = vfma(v, w2, a52)
                a53 = vfma(v, w3, a53)
                t += KB
        q = ox0 * KB
        vstore(tmp, q, a00)
        vstore(tmp, q + ln, a01)
        vstore(tmp, q + 2 * ln, a02)
        vstore(tmp, q + 3 * ln, a03)
        vstore(tmp, q + KB, a10)
        vstore(tmp, q + KB + ln, a11)
        vstore(tmp, q + KB + 2 * ln, a12)
        vstore(tmp, q + KB + 3 * ln, a13)
        vstore(tmp, q + 2 * KB, a20)
        vstore(tmp, q + 2 * KB + ln, a21)
        vstore(tmp, q + 2 * KB + 2 * ln, a22)
        vstore(tmp, q + 2 * KB + 3 * ln, a23)
        vstore(tmp, q + 3 * KB, a30)
        vstore(tmp, q + 3 * KB + ln, a31)
        vstore(tmp, q + 3 * KB + 2 * ln, a32)
        vstore(tmp, q + 3 * KB + 3 * ln, a33)
        vstore(tmp, q + 4 * KB, a40)
        vstore(tmp, q + 4 * KB + ln, a41)
        vstore(tmp, q + 4 * KB + 2 * ln, a42)
        vstore(tmp, q + 4 * KB + 3 * ln, a43)
        vstore(tmp, q + 5 * KB, a50)
        vstore(tmp, q + 5 * KB + ln, a51)
        vstore(tmp, q + 5 * KB + 2 * ln, a52)
        vstore(tmp, q + 5 * KB + 3 * ln, a53)


@njit(inline="always", **JIT_SERIAL)
def _row_6x2(xf, base, roff, wf, wb, KB, tmp, sw, KW, dw, OW):
    """One output row in blocks of 6 pixels x 2 vectors of ``KB // 2`` output
    channels into ``tmp[ox * KB + k]`` (module doc). ``xf`` is the flat padded input;
    ``base + roff[j]`` is the offset of the input row of the taps' ``j``-th (channel,
    depth, row), ``KW`` taps ``dw`` apart in it; ``wf`` is the flat packed weight, the
    block's taps from ``wb``."""
    ln = KB // 2
    z = wf[0]
    for ob in range(-(-OW // 6)):
        ox0 = ob * 6
        x0 = min(ox0 + 0, OW - 1) * sw
        x1 = min(ox0 + 1, OW - 1) * sw
        x2 = min(ox0 + 2, OW - 1) * sw
        x3 = min(ox0 + 3, OW - 1) * sw
        x4 = min(ox0 + 4, OW - 1) * sw
        x5 = min(ox0 + 5, OW - 1) * sw
        a00, a01 = vzero(z), vzero(z)
        a10, a11 = vzero(z), vzero(z)
        a20, a21 = vzero(z), vzero(z)
        a30, a31 = vzero(z), vzero(z)
        a40, a41 = vzero(z), vzero(z)
        a50, a51 = vzero(z), vzero(z)
        t = wb
        for j in range(roff.shape[0]):
            r = base + roff[j]
            for e in range(KW):
                w0, w1 = vload(wf, t), vload(wf, t + ln)
                o = r + e * dw
                v = vsplat_at(xf, o + x0)
                a00 = vfma(v, w0, a00)
                a01 = vfma(v, w1, a01)
                v = vsplat_at(xf, o + x1)
                a10 = vfma(v, w0, a10)
                a11 = vfma(v, w1, a11)
                v = vsplat_at(xf, o + x2)
                a20 = vfma(v, w0, a20)
                a21 = vfma(v, w1, a21)
                v = vsplat_at(xf, o + x3)
                a30 = vfma(v, w0, a30)
                a31 = vfma(v, w1, a31)
                v = vsplat_at(xf, o + x4)
                a40 = vfma(v, w0, a40)
                a41 = vfma(v, w1, a41)
                v = vsplat_at(xf, o + x5)
                a50 = vfma(v, w0, a50)
                a51 = vfma(v, w1, a51)
                t += KB
        q = ox0 * KB
        vstore(tmp, q, a00)
        vstore(tmp, q + ln, a01)
        vstore(tmp, q + KB, a10)
        vstore(tmp, q + KB + ln, a11)
        vstore(tmp, q + 2 * KB, a20)
        vstore(tmp, q + 2 * KB + ln, a21)
        vstore(tmp, q + 3 * KB, a30)
        vstore(tmp, q + 3 * KB + ln, a31)
        vstore(tmp, q + 4 * KB, a40)
        vstore(tmp, q + 4 * KB + ln, a41)
        vstore(tmp, q + 5 * KB, a50)
        vstore(tmp, q + 5 * KB + ln, a51)


#: Pixels per register block and vectors of output channels per block, by ISA:
#: AVX-512 (32 registers) 6 x 4 (24 accumulators), AVX2 (16 registers) 6 x 2.
MR = 6
#: Output rows per task (each task copies the padded input rows they read).
BAND_ROWS = 8
NV = 4 if AVX512 else 2


@njit(inline="always", **JIT_SERIAL)
def _fill_slab(x, n, c0, before, mode, d0, h0, w0, slab):
    """``slab[c, a, r, i] = xpad[n, c0 + c, d0 + a*dd, h0 + r, w0 + i]`` with ``xpad`` the
    input padded by ``before`` in ``mode`` (``fastconv.cpu.pad.source_index``); ``a``
    counts the kernel's depth taps (``d0`` and the depth step are the caller's)."""
    D, H, W = x.shape[2], x.shape[3], x.shape[4]
    Cg, KD, rows, width = slab.shape
    lo = min(max(before[2] - w0, 0), width)  # slab columns [lo, hi) are inside the row
    hi = max(min(W + before[2] - w0, width), lo)
    s0 = w0 - before[2]
    z = slab.dtype.type(0)
    for c in range(Cg):
        for a in range(KD):
            ds = source_index(d0[a] - before[0], D, mode)
            for r in range(rows):
                hs = source_index(h0 + r - before[1], H, mode)
                dst = slab[c, a, r]
                if ds < 0 or hs < 0:
                    dst[:] = z
                    continue
                src = x[n, c0 + c, ds, hs]
                for i in range(lo):
                    m = source_index(s0 + i, W, mode)
                    dst[i] = z if m < 0 else src[m]
                for i in range(lo, hi):
                    dst[i] = src[s0 + i]
                for i in range(hi, width):
                    m = source_index(s0 + i, W, mode)
                    dst[i] = z if m < 0 else src[m]


@njit(**JIT_PARALLEL)
def _correlate_rows(x, before, mode, wp, bias, out, stride, dilation, kshape, groups, nrows):
    """The direct_vec correlation (module doc) of ``x`` padded by ``before`` in ``mode``
    with the packed weight ``wp`` ``(groups, nkb, Cg*taps, KB)``. Tasks of ``nrows``
    output rows of one (image, group, channel block, depth slice); each copies the padded
    input rows it reads into a small slab (no padded copy of the whole input)."""
    N = x.shape[0]
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    nkb, R, KB = wp.shape[1], wp.shape[2], wp.shape[3]
    K = out.shape[1]
    Kg = K // groups
    KD, KH, KW = kshape[0], kshape[1], kshape[2]
    Cg = R // (KD * KH * KW)
    sd, sh, sw = stride[0], stride[1], stride[2]
    dd, dh, dw = dilation[0], dilation[1], dilation[2]
    width = (OW - 1) * sw + (KW - 1) * dw + 1
    wf = wp.reshape(-1)
    nbands = -(-OH // nrows)
    OWr = -(-OW // MR) * MR
    for task in prange(N * groups * nkb * OD * nbands):
        band = task % nbands
        q = task // nbands
        od = q % OD
        q //= OD
        kb = q % nkb
        q //= nkb
        g = q % groups
        n = q // groups
        r0 = band * nrows
        r1 = min(OH, r0 + nrows)
        rows = (r1 - r0 - 1) * sh + (KH - 1) * dh + 1
        slab = np.empty((Cg, KD, rows, width), dtype=out.dtype)
        d0 = np.empty(KD, dtype=np.int64)
        for a in range(KD):
            d0[a] = od * sd + a * dd
        _fill_slab(x, n, g * Cg, before, mode, d0, r0 * sh, 0, slab)
        xf = slab.reshape(-1)
        roff = np.empty(Cg * KD * KH, dtype=np.int64)  # the taps' rows in the slab
        for c in range(Cg):
            for a in range(KD):
                for b in range(KH):
                    roff[(c * KD + a) * KH + b] = ((c * KD + a) * rows + b * dh) * width
        wb = (g * nkb + kb) * R * KB
        tmp = np.empty(OWr * KB, dtype=out.dtype)
        k0 = g * Kg + kb * KB
        nk = min(KB, Kg - kb * KB)
        for oh in range(r0, r1):
            base = (oh - r0) * sh * width
            if NV == 4:
                _row_6x4(xf, base, roff, wf, wb, KB, tmp, sw, KW, dw, OW)
            else:
                _row_6x2(xf, base, roff, wf, wb, KB, tmp, sw, KW, dw, OW)
            for k in range(nk):
                bk = bias[k0 + k]
                dst = out[n, k0 + k, od, oh]
                for ox in range(OW):
                    dst[ox] = tmp[ox * KB + k] + bk


def pack_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """``(K, Cg, KD, KH, KW)`` -> ``(groups, nkb, Cg*taps, KB)``: each channel block's
    weights tap by tap, the block's channels contiguous (zeros past ``Kg``)."""
    K, Cg = w.shape[:2]
    Kg = K // groups
    KB = channel_block(w.dtype.itemsize)
    nkb = -(-Kg // KB)
    R = Cg * int(np.prod(w.shape[2:]))
    wp = np.zeros((groups, nkb * KB, R), dtype=w.dtype)
    wp[:, :Kg] = w.reshape(groups, Kg, R)
    return np.ascontiguousarray(wp.reshape(groups, nkb, KB, R).transpose(0, 1, 3, 2))


def correlate(x, w, bias, out, stride, dilation, groups, pads=((0, 0),) * 3, mode="zeros"):
    """out[n, k, o] = bias[k] + sum_{c in group(k), r} xpad[n, c, o*stride + r*dilation] *
    w[k, c, r],
    with ``xpad`` the 5-D ``x`` padded by ``pads`` (three (before, after) pairs) in
    ``mode``, read in place (float32 or float64; ``bias`` with K entries)."""
    wp = pack_weight(w, groups)
    kshape = np.array(w.shape[2:], dtype=np.int64)
    st = np.array([int(s) for s in stride], dtype=np.int64)
    dl = np.array([int(d) for d in dilation], dtype=np.int64)
    before = np.array([int(b) for b, _ in pads], dtype=np.int64)
    b = np.ascontiguousarray(bias, dtype=out.dtype)
    x = np.ascontiguousarray(x)
    _correlate_rows(x, before, MODE_CODES[mode], wp, b, out, st, dl, kshape, groups, BAND_ROWS)
    return out


def padding_core(pads, mode):
    """:func:`correlate` for inputs padded by ``pads`` in ``mode`` (the registry's core)."""

    def core(x, w, bias, out, stride, dilation, groups):
        return correlate(x, w, bias, out, stride, dilation, groups, pads, mode)

    return core


def channel_block(itemsize: int) -> int:
    """Output channels per block (``KB``) for elements of ``itemsize`` bytes."""
    return NV * (LANES32 if itemsize == 4 else LANES64)
