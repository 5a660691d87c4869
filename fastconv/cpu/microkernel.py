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

**The one-vector form** (at most one vector of output channels per group, small planes:
LeNet's 6 -> 16 5x5 layer): blocks of 12 output pixels taken across the rows of the
plane x one vector of channels (:func:`_correlate_plane`; an unpadded input is read in
place), and the weight gradient with the same blocking (:func:`weight_gradient`: 9 taps
x one vector of output channels, one FMA chain per weight over the images and pixels).
**The wide-row form** (:func:`correlate_wide`, "direct_wide": an input gradient's
correlation with at most 6 output channels) puts output pixels in the lanes instead.
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
def vload_bytes(typingctx, arr, i, like):
    """``arr[i : i + lanes]`` (1-D contiguous uint8) as a vector of the float type of
    the scalar ``like`` (each byte converted exactly: 0..255)."""
    if not (isinstance(arr, types.Array) and arr.layout == "C" and arr.ndim == 1
            and arr.dtype == types.uint8):
        return None
    n = _lanes(like)
    if n is None:
        return None
    vt = Vec(like, n)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        raw = builder.load(builder.bitcast(ptr, ir.VectorType(ir.IntType(8), n).as_pointer()),
                           align=1)
        return builder.uitofp(raw, context.get_value_type(vt))

    return vt(arr, i, like), codegen


def _vector_store(align=None, nontemporal=False):
    """A store intrinsic ``(arr, i, v)``: ``arr[i : i + v.lanes] = v`` (``arr`` 1-D
    contiguous) at ``align`` bytes (None: the element's alignment), with LLVM's
    non-temporal hint when ``nontemporal`` (the line goes to memory, not the caches)."""
    @intrinsic
    def store(typingctx, arr, i, v):
        if not (isinstance(v, Vec) and isinstance(arr, types.Array) and arr.layout == "C"
                and arr.ndim == 1 and arr.dtype == v.dtype):
            return None

        def codegen(context, builder, sig, args):
            ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
            vptr = builder.bitcast(ptr, context.get_value_type(v).as_pointer())
            st = builder.store(args[2], vptr, align=align or arr.dtype.bitwidth // 8)
            if nontemporal:
                st.set_metadata("nontemporal", builder.module.add_metadata(
                    [ir.Constant(ir.IntType(32), 1)]))
            return context.get_dummy_value()

        return types.none(arr, i, v), codegen
    return store


#: ``arr[i : i + v.lanes] = v`` (unaligned store).
vstore = _vector_store()
#: Non-temporal stores: ``arr[i]`` 16-byte aligned (LLVM writes the vector as 16-byte
#: ``vmovntps``), or 64-byte aligned (one whole-line ``vmovntps``).
vstore_nt = _vector_store(16, nontemporal=True)
vstore_nt64 = _vector_store(64, nontemporal=True)


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




def _vector_binary(a, b, op):
    """Signature and codegen of the lane-by-lane ``op`` (an llvmlite builder method
    name: ``fadd``, ``fsub``, ``fmul``; IEEE, rounded per operation) of two vectors."""
    if not (isinstance(a, Vec) and a == b):
        return None

    def codegen(context, builder, sig, args):
        return getattr(builder, op)(args[0], args[1])

    return a(a, b), codegen


@intrinsic
def vadd(typingctx, a, b):
    """``a + b`` lane by lane."""
    return _vector_binary(a, b, "fadd")


@intrinsic
def vsub(typingctx, a, b):
    """``a - b`` lane by lane."""
    return _vector_binary(a, b, "fsub")


@intrinsic
def vmul(typingctx, a, b):
    """``a * b`` lane by lane."""
    return _vector_binary(a, b, "fmul")


@intrinsic
def vload4(typingctx, arr, i):
    """The 4 phases of ``arr[i : i + 4 * lanes]``: vectors ``(arr[i + 4l + r])_l`` for
    ``r = 0..3`` (``arr`` 1-D contiguous; 4 unaligned loads and shuffles)."""
    if not isinstance(arr, types.Array) or arr.layout != "C" or arr.ndim != 1:
        return None
    n = _lanes(arr.dtype)
    if n is None:
        return None
    vt = Vec(arr.dtype, n)
    rt = types.UniTuple(vt, 4)

    def codegen(context, builder, sig, args):
        vty = context.get_value_type(vt)
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        vs = []
        for m in range(4):
            p = builder.gep(ptr, [ir.Constant(ir.IntType(64), m * n)])
            vs.append(builder.load(builder.bitcast(p, vty.as_pointer()),
                                   align=arr.dtype.bitwidth // 8))
        i32 = ir.IntType(32)
        out = []
        for r in range(4):
            half = []
            for lo, hi in ((vs[0], vs[1]), (vs[2], vs[3])):  # phase r of 2n elements
                mask = ir.Constant(ir.VectorType(i32, n // 2),
                                   [r + 4 * m for m in range(n // 2)])
                half.append(builder.shuffle_vector(lo, hi, mask))
            mask = ir.Constant(ir.VectorType(i32, n), list(range(n)))
            out.append(builder.shuffle_vector(half[0], half[1], mask))
        return context.make_tuple(builder, rt, out)

    return rt(arr, i), codegen



@intrinsic
def vstore4(typingctx, arr, i, a, b, c, d):
    """``arr[i + 4l + r] = (a, b, c, d)[r][l]`` for every lane ``l``: the 4 vectors
    interleaved into ``arr[i : i + 4 * lanes]`` (``arr`` 1-D contiguous; the inverse of
    :func:`vload4`)."""
    if not (isinstance(a, Vec) and a == b == c == d and isinstance(arr, types.Array)
            and arr.layout == "C" and arr.ndim == 1 and arr.dtype == a.dtype):
        return None
    n = a.lanes

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)

        def zip2(u, v, m):  # u0 v0 u1 v1 ... of two m-vectors
            mask = [k // 2 + (m if k % 2 else 0) for k in range(2 * m)]
            return builder.shuffle_vector(u, v, ir.Constant(ir.VectorType(i32, 2 * m), mask))

        va, vb, vc, vd = args[2:]
        full = zip2(zip2(va, vc, n), zip2(vb, vd, n), 2 * n)
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        vptr = builder.bitcast(ptr, full.type.as_pointer())
        builder.store(full, vptr, align=arr.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(arr, i, a, b, c, d), codegen


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


#: Output pixels per register block of the one-vector (plane) form: 12 accumulators of
#: ``LANES`` output channels, pixels taken across the rows of the output plane.
MP = 12


@njit(inline="always", **JIT_SERIAL)
def _plane_12x1(xf, poff, p0, P, roff, KW, dw, wf, wb, KB, tmp):
    """Output pixels ``p0 .. p0 + 11`` of a plane (clamped to ``P - 1``) x one vector of
    ``KB`` output channels into ``tmp[p * KB + k]``: ``poff[p]`` is pixel ``p``'s offset
    in the flat slab ``xf``, ``roff[j]`` the taps' ``j``-th row offset, ``KW`` taps
    ``dw`` apart; ``wf`` the packed weight, the block's taps from ``wb``."""
    z = wf[0]
    x0, x1, x2 = poff[min(p0, P - 1)], poff[min(p0 + 1, P - 1)], poff[min(p0 + 2, P - 1)]
    x3, x4, x5 = poff[min(p0 + 3, P - 1)], poff[min(p0 + 4, P - 1)], poff[min(p0 + 5, P - 1)]
    x6, x7, x8 = poff[min(p0 + 6, P - 1)], poff[min(p0 + 7, P - 1)], poff[min(p0 + 8, P - 1)]
    x9, x10, x11 = (poff[min(p0 + 9, P - 1)], poff[min(p0 + 10, P - 1)],
                    poff[min(p0 + 11, P - 1)])
    a0, a1, a2, a3 = vzero(z), vzero(z), vzero(z), vzero(z)
    a4, a5, a6, a7 = vzero(z), vzero(z), vzero(z), vzero(z)
    a8, a9, a10, a11 = vzero(z), vzero(z), vzero(z), vzero(z)
    t = wb
    for j in range(roff.shape[0]):
        r = roff[j]
        for e in range(KW):
            w = vload(wf, t)
            o = r + e * dw
            a0 = vfma(vsplat_at(xf, o + x0), w, a0)
            a1 = vfma(vsplat_at(xf, o + x1), w, a1)
            a2 = vfma(vsplat_at(xf, o + x2), w, a2)
            a3 = vfma(vsplat_at(xf, o + x3), w, a3)
            a4 = vfma(vsplat_at(xf, o + x4), w, a4)
            a5 = vfma(vsplat_at(xf, o + x5), w, a5)
            a6 = vfma(vsplat_at(xf, o + x6), w, a6)
            a7 = vfma(vsplat_at(xf, o + x7), w, a7)
            a8 = vfma(vsplat_at(xf, o + x8), w, a8)
            a9 = vfma(vsplat_at(xf, o + x9), w, a9)
            a10 = vfma(vsplat_at(xf, o + x10), w, a10)
            a11 = vfma(vsplat_at(xf, o + x11), w, a11)
            t += KB
    q = p0 * KB
    vstore(tmp, q, a0)
    vstore(tmp, q + KB, a1)
    vstore(tmp, q + 2 * KB, a2)
    vstore(tmp, q + 3 * KB, a3)
    vstore(tmp, q + 4 * KB, a4)
    vstore(tmp, q + 5 * KB, a5)
    vstore(tmp, q + 6 * KB, a6)
    vstore(tmp, q + 7 * KB, a7)
    vstore(tmp, q + 8 * KB, a8)
    vstore(tmp, q + 9 * KB, a9)
    vstore(tmp, q + 10 * KB, a10)
    vstore(tmp, q + 11 * KB, a11)


@njit(**JIT_SERIAL)
def _correlate_plane(x, before, mode, wp, bias, out, stride, dilation, kshape, groups, t_lo,
                     t_hi):
    """The direct_vec correlation's one-vector form: blocks of ``KB`` = one vector of
    output channels (``wp`` is ``(groups, nkb, Cg*taps, KB)``) x ``MP`` pixels taken
    across the output plane's rows (few output channels: LeNet's 6 -> 16 layer). One task
    per (image, group, channel block, output depth) copies the padded input planes it
    reads into a slab; each output is the same FMA chain as in :func:`_correlate_rows`."""
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    nkb, R, KB = wp.shape[1], wp.shape[2], wp.shape[3]
    K = out.shape[1]
    Kg = K // groups
    KD, KH, KW = kshape[0], kshape[1], kshape[2]
    Cg = R // (KD * KH * KW)
    sd, sh, sw = stride[0], stride[1], stride[2]
    dd, dh, dw = dilation[0], dilation[1], dilation[2]
    width = (OW - 1) * sw + (KW - 1) * dw + 1
    rows = (OH - 1) * sh + (KH - 1) * dh + 1
    P = OH * OW
    Pr = -(-P // MP) * MP
    wf = wp.reshape(-1)
    # no padding read (before or after): the input in place (its own strides), no slab
    D = x.shape[2]
    inplace = (before[0] == 0 and before[1] == 0 and before[2] == 0
               and (OD - 1) * sd + (KD - 1) * dd < D and rows <= x.shape[3]
               and width <= x.shape[4])
    if inplace:
        rows, width = x.shape[3], x.shape[4]
    poff = np.empty(P, dtype=np.int64)
    for oh in range(OH):
        for ow in range(OW):
            poff[oh * OW + ow] = oh * sh * width + ow * sw
    for task in range(t_lo, t_hi):  # of N * groups * nkb * OD
        od = task % OD
        q = task // OD
        kb = q % nkb
        q //= nkb
        g = q % groups
        n = q // groups
        roff = np.empty(Cg * KD * KH, dtype=np.int64)  # the taps' rows in xf
        if inplace:
            xf = x[n, g * Cg : (g + 1) * Cg].reshape(-1)
            for c in range(Cg):
                for a in range(KD):
                    for b in range(KH):
                        roff[(c * KD + a) * KH + b] = ((c * D + od * sd + a * dd) * rows
                                                       + b * dh) * width
        else:
            slab = np.empty((Cg, KD, rows, width), dtype=out.dtype)
            d0 = np.empty(KD, dtype=np.int64)
            for a in range(KD):
                d0[a] = od * sd + a * dd
            _fill_slab(x, n, g * Cg, before, mode, d0, 0, 0, slab)
            xf = slab.reshape(-1)
            for c in range(Cg):
                for a in range(KD):
                    for b in range(KH):
                        roff[(c * KD + a) * KH + b] = ((c * KD + a) * rows + b * dh) * width
        wb = (g * nkb + kb) * R * KB
        tmp = np.empty(Pr * KB, dtype=out.dtype)
        for p0 in range(0, P, MP):
            _plane_12x1(xf, poff, p0, P, roff, KW, dw, wf, wb, KB, tmp)
        k0 = g * Kg + kb * KB
        for k in range(min(KB, Kg - kb * KB)):
            bk = bias[k0 + k]
            dst = out[n, k0 + k, od].reshape(-1)
            for p in range(P):
                dst[p] = tmp[p * KB + k] + bk


#: Kernel taps per register block of the one-vector weight gradient (9 accumulators of
#: ``LANES`` output channels: a 3x3 kernel in one pass, a 5x5 in three passes of 27).
TB = 9


@njit(inline="always", **JIT_SERIAL)
def _weight_taps_9(xf, gt, P, poff, toff, t0, ntaps, acc_out, KB):
    """``acc_out[i * KB + k] += sum_p gt[p * KB + k] * xf[poff[p] + toff[t0 + i]]`` for
    the block's 9 taps ``i`` (clamped to ``ntaps - 1``): one image's sum, one FMA per
    pixel in pixel order from zero, then added to the running sum (a chain per image
    and a sum over the images, not one chain of ``N * P`` terms: 2.7e-6 -> float32
    rounding of the BLAS product for LeNet's conv2, relative to the largest weight
    gradient)."""
    o0, o1, o2 = toff[min(t0, ntaps - 1)], toff[min(t0 + 1, ntaps - 1)], toff[
        min(t0 + 2, ntaps - 1)]
    o3, o4, o5 = toff[min(t0 + 3, ntaps - 1)], toff[min(t0 + 4, ntaps - 1)], toff[
        min(t0 + 5, ntaps - 1)]
    o6, o7, o8 = toff[min(t0 + 6, ntaps - 1)], toff[min(t0 + 7, ntaps - 1)], toff[
        min(t0 + 8, ntaps - 1)]
    z = gt[0]
    a0, a1, a2 = vzero(z), vzero(z), vzero(z)
    a3, a4, a5 = vzero(z), vzero(z), vzero(z)
    a6, a7, a8 = vzero(z), vzero(z), vzero(z)
    for p in range(P):
        v = vload(gt, p * KB)
        b = poff[p]
        a0 = vfma(vsplat_at(xf, b + o0), v, a0)
        a1 = vfma(vsplat_at(xf, b + o1), v, a1)
        a2 = vfma(vsplat_at(xf, b + o2), v, a2)
        a3 = vfma(vsplat_at(xf, b + o3), v, a3)
        a4 = vfma(vsplat_at(xf, b + o4), v, a4)
        a5 = vfma(vsplat_at(xf, b + o5), v, a5)
        a6 = vfma(vsplat_at(xf, b + o6), v, a6)
        a7 = vfma(vsplat_at(xf, b + o7), v, a7)
        a8 = vfma(vsplat_at(xf, b + o8), v, a8)
    one = vsplat(gt.dtype.type(1))  # fma(a, 1, b) is the rounded a + b
    vstore(acc_out, 0, vfma(a0, one, vload(acc_out, 0)))
    vstore(acc_out, KB, vfma(a1, one, vload(acc_out, KB)))
    vstore(acc_out, 2 * KB, vfma(a2, one, vload(acc_out, 2 * KB)))
    vstore(acc_out, 3 * KB, vfma(a3, one, vload(acc_out, 3 * KB)))
    vstore(acc_out, 4 * KB, vfma(a4, one, vload(acc_out, 4 * KB)))
    vstore(acc_out, 5 * KB, vfma(a5, one, vload(acc_out, 5 * KB)))
    vstore(acc_out, 6 * KB, vfma(a6, one, vload(acc_out, 6 * KB)))
    vstore(acc_out, 7 * KB, vfma(a7, one, vload(acc_out, 7 * KB)))
    vstore(acc_out, 8 * KB, vfma(a8, one, vload(acc_out, 8 * KB)))


@njit(**JIT_SERIAL)
def _weight_plane(x, before, mode, gt, gw, oshape, stride, dilation, groups, t_lo, t_hi):
    """The one-vector weight gradient: gw[g*Kg + k, c, tap] = sum over images n, then
    output pixels p in order, of g[n, g*Kg + k, p] * xpad[n, g*Cg + c, p*stride +
    tap*dilation], ``xpad`` the input padded by ``before`` in ``mode``. ``gt`` is
    ``(groups, N, P, KB)``: grad_output with its ``Kg`` channels in the lanes (zeros
    past ``Kg``); ``gw`` ``(K, Cg, KD, KH, KW)``. One task per (group, input channel,
    block of ``TB`` taps) owns its outputs: per image one FMA chain over the pixels,
    added to the sum of the images before it in order; the same for any thread count."""
    N, P, KB = gt.shape[1], gt.shape[2], gt.shape[3]
    K, Cg, KD, KH, KW = gw.shape
    Kg = K // groups
    OD, OH, OW = oshape[0], oshape[1], oshape[2]
    sd, sh, sw = stride[0], stride[1], stride[2]
    dd, dh, dw = dilation[0], dilation[1], dilation[2]
    width = (OW - 1) * sw + (KW - 1) * dw + 1
    rows = (OH - 1) * sh + (KH - 1) * dh + 1
    depth = (OD - 1) * sd + (KD - 1) * dd + 1
    ntaps = KD * KH * KW
    ntb = -(-ntaps // TB)
    # no padding read (before or after): the input planes in place (their own strides)
    inplace = (before[0] == 0 and before[1] == 0 and before[2] == 0 and depth <= x.shape[2]
               and rows <= x.shape[3] and width <= x.shape[4])
    if inplace:
        depth, rows, width = x.shape[2], x.shape[3], x.shape[4]
    poff = np.empty(P, dtype=np.int64)
    for od in range(OD):
        for oh in range(OH):
            for ow in range(OW):
                poff[(od * OH + oh) * OW + ow] = (od * sd * rows + oh * sh) * width + ow * sw
    toff = np.empty(ntaps, dtype=np.int64)
    for a in range(KD):
        for b in range(KH):
            for e in range(KW):
                toff[(a * KH + b) * KW + e] = (a * dd * rows + b * dh) * width + e * dw
    d0 = np.arange(depth)
    for task in range(t_lo, t_hi):  # of groups * Cg * ntb
        tb = task % ntb
        q = task // ntb
        c = q % Cg
        g = q // Cg
        slab = np.zeros((1, 0 if inplace else depth, rows, width), dtype=gw.dtype)
        acc = np.zeros(TB * KB, dtype=gw.dtype)
        for n in range(N):
            if inplace:
                xf = x[n, g * Cg + c].reshape(-1)
            else:
                if mode == 0:  # zeros: the padding stays zero, copy the rows inside
                    _fill_slab_zeros(x, n, g * Cg + c, before, d0, slab)
                else:
                    _fill_slab(x, n, g * Cg + c, before, mode, d0, 0, 0, slab)
                xf = slab.reshape(-1)
            _weight_taps_9(xf, gt[g, n].reshape(-1), P, poff, toff, tb * TB, ntaps, acc, KB)
        for i in range(min(TB, ntaps - tb * TB)):
            t = tb * TB + i
            a, b, e = t // (KH * KW), (t // KW) % KH, t % KW
            for k in range(Kg):
                gw[g * Kg + k, c, a, b, e] = acc[i * KB + k]


@njit(**JIT_SERIAL)
def _channels_in_lanes(g3, gt):
    """gt[grp, n, p, k] = g3[n, grp*Kg + k, p] for ``k < Kg``, 0 past it (``g3`` is
    ``(N, K, P)``, ``gt`` ``(groups, N, P, KB)``; a compiled loop: NumPy's transposed
    copy took 0.2-0.3 ms for LeNet's conv2)."""
    groups, N, P, KB = gt.shape
    Kg = g3.shape[1] // groups
    z = gt.dtype.type(0)
    for grp in range(groups):
        for n in range(N):
            dst = gt[grp, n]
            for p in range(P):
                for k in range(Kg, KB):
                    dst[p, k] = z
            for k in range(Kg):
                src = g3[n, grp * Kg + k]
                for p in range(P):
                    dst[p, k] = src[p]


def weight_gradient(x, g, gw, stride, dilation, groups, pads=((0, 0),) * 3, mode="zeros"):
    """gw[k, c, r] = sum_{n, o} g[n, k, o] * xpad[n, group(k)*Cg + c, o*stride +
    r*dilation] by the one-vector form (:func:`_weight_plane`; ``Kg`` at most one vector,
    :func:`plane_form`), ``xpad`` the 5-D ``x`` padded by ``pads`` in ``mode``, read in
    place."""
    N, K = g.shape[:2]
    KB = LANES32 if gw.dtype.itemsize == 4 else LANES64
    P = int(np.prod(g.shape[2:]))
    gt = np.empty((groups, N, P, KB), gw.dtype)
    _channels_in_lanes(np.ascontiguousarray(g, gw.dtype).reshape(N, K, P), gt)
    before = np.array([int(b) for b, _ in pads], dtype=np.int64)
    args = (np.ascontiguousarray(x), before, MODE_CODES[mode], gt, gw,
            np.array(g.shape[2:], dtype=np.int64),
            np.array([int(v) for v in stride], dtype=np.int64),
            np.array([int(v) for v in dilation], dtype=np.int64), groups)
    ntaps = int(np.prod(gw.shape[2:]))
    _tasks(_weight_plane, groups * gw.shape[1] * -(-ntaps // TB), args)
    return gw


def _tasks(kernel, ntasks: int, args: tuple) -> None:
    """``kernel(*args, t, t + 1)`` for every task ``t`` of ``[0, ntasks)`` as the
    iterations of one Numba parallel region (the kernel's ``*_par`` wrapper). Each task
    owns its outputs and is computed alone, so the bits do not depend on the threads.
    Not :func:`fastconv.cpu.blas.parallel`'s Python threads: LeNet's step at 2 threads
    gained little from them (its calls come in bursts, the Python workers woke late);
    with every parallel part of the step a region (the small-image GEMM's chunks too),
    Numba's spinning OpenMP workers no longer take the cores from Python threads."""
    _PAR[kernel](*args, ntasks)


@njit(**JIT_PARALLEL)
def _correlate_plane_par(x, before, mode, wp, bias, out, stride, dilation, kshape, groups,
                         ntasks):
    """:func:`_correlate_plane`'s tasks, one per iteration of one parallel region."""
    for t in prange(ntasks):
        _correlate_plane(x, before, mode, wp, bias, out, stride, dilation, kshape, groups, t,
                         t + 1)


@njit(**JIT_PARALLEL)
def _weight_plane_par(x, before, mode, gt, gw, oshape, stride, dilation, groups, ntasks):
    """:func:`_weight_plane`'s tasks, one per iteration of one parallel region."""
    for t in prange(ntasks):
        _weight_plane(x, before, mode, gt, gw, oshape, stride, dilation, groups, t, t + 1)


@njit(**JIT_PARALLEL)
def _correlate_wide_par(x, before, mode, wp, bias, out, dilation, kshape, groups, L, ntasks):
    """:func:`_correlate_wide`'s tasks, one per iteration of one parallel region."""
    for t in prange(ntasks):
        _correlate_wide(x, before, mode, wp, bias, out, dilation, kshape, groups, L, t, t + 1)


def pack_weight(w: np.ndarray, groups: int, KB: int | None = None) -> np.ndarray:
    """``(K, Cg, KD, KH, KW)`` -> ``(groups, nkb, Cg*taps, KB)``: each channel block's
    weights tap by tap, the block's channels contiguous (zeros past ``Kg``); ``KB``
    defaults to :func:`channel_block`."""
    K, Cg = w.shape[:2]
    Kg = K // groups
    KB = KB or channel_block(w.dtype.itemsize)
    nkb = -(-Kg // KB)
    R = Cg * int(np.prod(w.shape[2:]))
    wp = np.zeros((groups, nkb * KB, R), dtype=w.dtype)
    wp[:, :Kg] = w.reshape(groups, Kg, R)
    return np.ascontiguousarray(wp.reshape(groups, nkb, KB, R).transpose(0, 1, 3, 2))


def correlate(x, w, bias, out, stride, dilation, groups, pads=((0, 0),) * 3, mode="zeros"):
    """out[n, k, o] = bias[k] + sum_{c in group(k), r} xpad[n, c, o*stride + r*dilation] *
    w[k, c, r],
    with ``xpad`` the 5-D ``x`` padded by ``pads`` (three (before, after) pairs) in
    ``mode``, read in place (float32 or float64; ``bias`` with K entries). At most one
    vector of output channels per group (:func:`plane_form`): the one-vector form."""
    plane = plane_form(w.shape[0] // groups, w.dtype.itemsize, out.shape[3] * out.shape[4])
    wp = pack_weight(w, groups, (LANES32 if w.dtype.itemsize == 4 else LANES64) if plane
                     else None)
    kshape = np.array(w.shape[2:], dtype=np.int64)
    st = np.array([int(s) for s in stride], dtype=np.int64)
    dl = np.array([int(d) for d in dilation], dtype=np.int64)
    before = np.array([int(b) for b, _ in pads], dtype=np.int64)
    b = np.ascontiguousarray(bias, dtype=out.dtype)
    x = np.ascontiguousarray(x)
    if plane:
        _tasks(_correlate_plane, x.shape[0] * groups * wp.shape[1] * out.shape[2],
               (x, before, MODE_CODES[mode], wp, b, out, st, dl, kshape, groups))
    else:
        _correlate_rows(x, before, MODE_CODES[mode], wp, b, out, st, dl, kshape, groups,
                        BAND_ROWS)
    return out


#: Most output pixels per plane of the one-vector form (its slab and its ``(P, KB)``
#: scratch stay in the L2 cache).
PLANE_MAX_PIXELS = 4096


def plane_form(Kg: int, itemsize: int, pixels: int) -> bool:
    """Whether direct_vec runs its one-vector form (:func:`_correlate_plane`): at most one
    vector of output channels per group (the wide blocks would be mostly empty) and at
    most ``PLANE_MAX_PIXELS`` output pixels per plane."""
    return Kg <= (LANES32 if itemsize == 4 else LANES64) and pixels <= PLANE_MAX_PIXELS


def padding_core(pads, mode):
    """:func:`correlate` for inputs padded by ``pads`` in ``mode`` (the registry's core)."""

    def core(x, w, bias, out, stride, dilation, groups):
        return correlate(x, w, bias, out, stride, dilation, groups, pads, mode)

    return core


def channel_block(itemsize: int) -> int:
    """Output channels per block (``KB``) for elements of ``itemsize`` bytes."""
    return NV * (LANES32 if itemsize == 4 else LANES64)


# --- the wide-row form: output pixels in the vector lanes ----------------------------------
#
# For few output channels (an input gradient's correlation: LeNet's conv2, 16 -> 6 5x5) a
# vector of output channels is mostly empty. The wide-row form puts 16 (AVX-512) output
# pixels in the lanes instead: at unit stride, output ``(oh, ow)`` of a slab row ``width``
# wide reads input ``q + toff`` with ``q = oh * width + ow`` and ``toff`` the tap's offset,
# so consecutive ``q`` are consecutive inputs and one unaligned load feeds a whole vector
# (the ``width - OW`` columns past each row are computed and dropped). A register block is
# ``WC`` (6) output channels x ``WQ`` vectors of ``q``; per tap, ``WQ`` loads, ``WC``
# weight broadcasts and ``WC * WQ`` fused multiply-adds. Each output is one FMA chain over
# the taps (c, a, b, e) in that order, the bias added after: the same bits for any thread
# count or task split.

#: Output channels per wide-row register block.
WC = 6
#: Vectors of output pixels per wide-row register block (AVX-512: 6 x 4 = 24 of 32
#: registers; AVX2: 6 x 2 = 12 of 16).
WQ = 4 if AVX512 else 2


@njit(inline="always", **JIT_SERIAL)
def _wide_6x4(xf, q0, roff, KW, dw, wf, t0, tmp, Qn, L):
    """``tmp[k * Qn + q0 + i]`` for the block's 6 channels ``k`` and ``4 * L`` wide
    positions from ``q0`` (module comment above): ``xf`` the flat slab, ``roff[j]`` the
    slab offset of the taps' ``j``-th (channel, depth, row), ``KW`` taps ``dw`` apart;
    ``wf`` the packed weight, the block's taps from ``t0``, 6 channels per tap."""
    z = wf[0]
    a00, a01, a02, a03 = vzero(z), vzero(z), vzero(z), vzero(z)
    a10, a11, a12, a13 = vzero(z), vzero(z), vzero(z), vzero(z)
    a20, a21, a22, a23 = vzero(z), vzero(z), vzero(z), vzero(z)
    a30, a31, a32, a33 = vzero(z), vzero(z), vzero(z), vzero(z)
    a40, a41, a42, a43 = vzero(z), vzero(z), vzero(z), vzero(z)
    a50, a51, a52, a53 = vzero(z), vzero(z), vzero(z), vzero(z)
    t = t0
    for j in range(roff.shape[0]):
        r = q0 + roff[j]
        for e in range(KW):
            o = r + e * dw
            x0, x1 = vload(xf, o), vload(xf, o + L)
            x2, x3 = vload(xf, o + 2 * L), vload(xf, o + 3 * L)
            v = vsplat_at(wf, t)
            a00, a01, a02, a03 = vfma(x0, v, a00), vfma(x1, v, a01), vfma(x2, v, a02), vfma(
                x3, v, a03)
            v = vsplat_at(wf, t + 1)
            a10, a11, a12, a13 = vfma(x0, v, a10), vfma(x1, v, a11), vfma(x2, v, a12), vfma(
                x3, v, a13)
            v = vsplat_at(wf, t + 2)
            a20, a21, a22, a23 = vfma(x0, v, a20), vfma(x1, v, a21), vfma(x2, v, a22), vfma(
                x3, v, a23)
            v = vsplat_at(wf, t + 3)
            a30, a31, a32, a33 = vfma(x0, v, a30), vfma(x1, v, a31), vfma(x2, v, a32), vfma(
                x3, v, a33)
            v = vsplat_at(wf, t + 4)
            a40, a41, a42, a43 = vfma(x0, v, a40), vfma(x1, v, a41), vfma(x2, v, a42), vfma(
                x3, v, a43)
            v = vsplat_at(wf, t + 5)
            a50, a51, a52, a53 = vfma(x0, v, a50), vfma(x1, v, a51), vfma(x2, v, a52), vfma(
                x3, v, a53)
            t += 6
    for k, (b0, b1, b2, b3) in enumerate(((a00, a01, a02, a03), (a10, a11, a12, a13),
                                          (a20, a21, a22, a23), (a30, a31, a32, a33),
                                          (a40, a41, a42, a43), (a50, a51, a52, a53))):
        q = k * Qn + q0
        vstore(tmp, q, b0)
        vstore(tmp, q + L, b1)
        vstore(tmp, q + 2 * L, b2)
        vstore(tmp, q + 3 * L, b3)


@njit(inline="always", **JIT_SERIAL)
def _wide_6x2(xf, q0, roff, KW, dw, wf, t0, tmp, Qn, L):
    """:func:`_wide_6x4` with 2 vectors of positions (AVX2's 16 registers)."""
    z = wf[0]
    a00, a01 = vzero(z), vzero(z)
    a10, a11 = vzero(z), vzero(z)
    a20, a21 = vzero(z), vzero(z)
    a30, a31 = vzero(z), vzero(z)
    a40, a41 = vzero(z), vzero(z)
    a50, a51 = vzero(z), vzero(z)
    t = t0
    for j in range(roff.shape[0]):
        r = q0 + roff[j]
        for e in range(KW):
            o = r + e * dw
            x0, x1 = vload(xf, o), vload(xf, o + L)
            v = vsplat_at(wf, t)
            a00, a01 = vfma(x0, v, a00), vfma(x1, v, a01)
            v = vsplat_at(wf, t + 1)
            a10, a11 = vfma(x0, v, a10), vfma(x1, v, a11)
            v = vsplat_at(wf, t + 2)
            a20, a21 = vfma(x0, v, a20), vfma(x1, v, a21)
            v = vsplat_at(wf, t + 3)
            a30, a31 = vfma(x0, v, a30), vfma(x1, v, a31)
            v = vsplat_at(wf, t + 4)
            a40, a41 = vfma(x0, v, a40), vfma(x1, v, a41)
            v = vsplat_at(wf, t + 5)
            a50, a51 = vfma(x0, v, a50), vfma(x1, v, a51)
            t += 6
    for k, (b0, b1) in enumerate(((a00, a01), (a10, a11), (a20, a21), (a30, a31),
                                  (a40, a41), (a50, a51))):
        q = k * Qn + q0
        vstore(tmp, q, b0)
        vstore(tmp, q + L, b1)


@njit(inline="always", **JIT_SERIAL)
def _fill_slab_zeros(x, n, c0, before, d0, slab):
    """:func:`_fill_slab` for zero padding into a zeroed slab (rows from input row 0,
    columns from input column 0): only the inside rows are copied, whole-row copies
    (0.48 -> 0.1 ms of LeNet conv2's input gradient, one thread)."""
    D, H, W = x.shape[2], x.shape[3], x.shape[4]
    Cg, KD, rows, width = slab.shape
    bw = before[2]
    lo = min(bw, width)
    hi = max(min(W + bw, width), lo)
    for c in range(Cg):
        for a in range(KD):
            ds = d0[a] - before[0]
            if ds < 0 or ds >= D:
                continue
            for r in range(max(0, before[1]), min(rows, H + before[1])):
                src = x[n, c0 + c, ds, r - before[1]]
                dst = slab[c, a, r]
                for i in range(lo, hi):
                    dst[i] = src[i - bw]


@njit(**JIT_SERIAL)
def _correlate_wide(x, before, mode, wp, bias, out, dilation, kshape, groups, L, t_lo, t_hi):
    """The wide-row correlation (comment above) at unit stride of ``x`` padded by
    ``before`` in ``mode`` with the packed weight ``wp`` ``(groups, nkb, Cg*taps, WC)``;
    ``L`` lanes per vector. One task per (image, group, channel block, output depth): it
    copies the padded input planes it reads into a slab (no padded copy of the input)."""
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    nkb, R = wp.shape[1], wp.shape[2]
    K = out.shape[1]
    Kg = K // groups
    KD, KH, KW = kshape[0], kshape[1], kshape[2]
    Cg = R // (KD * KH * KW)
    dd, dh, dw = dilation[0], dilation[1], dilation[2]
    width = OW + (KW - 1) * dw
    rows = OH + (KH - 1) * dh
    span = WQ * L
    Qn = -(-((OH - 1) * width + OW) // span) * span  # wide positions computed, whole blocks
    plane = Cg * KD * rows * width
    # the slab, with room for the last block's loads past the last row
    tail = Qn + (KH - 1) * dh * width + (KW - 1) * dw + L
    wf = wp.reshape(-1)
    for task in range(t_lo, t_hi):  # of N * groups * nkb * OD
        od = task % OD
        q = task // OD
        kb = q % nkb
        q //= nkb
        g = q % groups
        n = q // groups
        buf = np.zeros(plane + tail, dtype=out.dtype)
        slab = buf[:plane].reshape((Cg, KD, rows, width))
        d0 = np.empty(KD, dtype=np.int64)
        for a in range(KD):
            d0[a] = od + a * dd
        if mode == 0:  # zeros: the slab is zero already, copy the rows inside
            _fill_slab_zeros(x, n, g * Cg, before, d0, slab)
        else:
            _fill_slab(x, n, g * Cg, before, mode, d0, 0, 0, slab)
        roff = np.empty(Cg * KD * KH, dtype=np.int64)
        for c in range(Cg):
            for a in range(KD):
                for b in range(KH):
                    roff[(c * KD + a) * KH + b] = ((c * KD + a) * rows + b * dh) * width
        tmp = np.empty(WC * Qn, dtype=out.dtype)
        t0 = (g * nkb + kb) * R * WC
        for q0 in range(0, Qn, span):
            if WQ == 4:
                _wide_6x4(buf, q0, roff, KW, dw, wf, t0, tmp, Qn, L)
            else:
                _wide_6x2(buf, q0, roff, KW, dw, wf, t0, tmp, Qn, L)
        k0 = g * Kg + kb * WC
        for k in range(min(WC, Kg - kb * WC)):
            bk = bias[k0 + k]
            for oh in range(OH):
                src = tmp[k * Qn + oh * width : k * Qn + oh * width + OW]
                dst = out[n, k0 + k, od, oh]
                for ow in range(OW):
                    dst[ow] = src[ow] + bk


def pack_weight_wide(w: np.ndarray, groups: int) -> np.ndarray:
    """``(K, Cg, KD, KH, KW)`` -> ``(groups, nkb, Cg*taps, WC)``: blocks of ``WC`` output
    channels, each block's weights tap by tap (zeros past ``Kg``)."""
    K, Cg = w.shape[:2]
    Kg = K // groups
    nkb = -(-Kg // WC)
    R = Cg * int(np.prod(w.shape[2:]))
    wp = np.zeros((groups, nkb * WC, R), dtype=w.dtype)
    wp[:, :Kg] = w.reshape(groups, Kg, R)
    return np.ascontiguousarray(wp.reshape(groups, nkb, WC, R).transpose(0, 1, 3, 2))


def correlate_wide(x, w, bias, out, dilation, groups, pads=((0, 0),) * 3, mode="zeros"):
    """The unit-stride correlation of :func:`correlate` by the wide-row form (float32 or
    float64; ``x`` padded by ``pads`` in ``mode``, read in place)."""
    wp = pack_weight_wide(w, groups)
    kshape = np.array(w.shape[2:], dtype=np.int64)
    dl = np.array([int(d) for d in dilation], dtype=np.int64)
    before = np.array([int(b) for b, _ in pads], dtype=np.int64)
    b = np.ascontiguousarray(bias, dtype=out.dtype)
    lanes = LANES32 if out.dtype.itemsize == 4 else LANES64
    _tasks(_correlate_wide, x.shape[0] * groups * wp.shape[1] * out.shape[2],
           (np.ascontiguousarray(x), before, MODE_CODES[mode], wp, b, out, dl, kshape, groups,
            lanes))
    return out


#: Each task kernel's parallel-region wrapper (:func:`_tasks`).
_PAR = {_correlate_plane: _correlate_plane_par, _weight_plane: _weight_plane_par,
        _correlate_wide: _correlate_wide_par}
