"""Validated call plans: every public op turns its arguments into a plan (shapes as
5-D tuples, per-axis ints, resolved padding) before any array is touched by a kernel.
Backends and the Dask layer consume plans; none re-derives a size."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from fastconv import _shapes
from fastconv._validate import INT_MAX, _is_int, as_int, check_padding_mode, ntuple, result_dtype

Pairs = tuple[tuple[int, int], ...]


def to3(values: tuple, fill) -> tuple:
    """Left-pad a per-axis tuple to 3 axes (1-D/2-D ops run as 3-D with unit axes)."""
    return (fill,) * (3 - len(values)) + tuple(values)


def shape_of(a) -> tuple:
    return tuple(map(int, a.shape))


class _UserShape:
    """``user_shape``, shared by the plans (the rule is :func:`fastconv._shapes.user_shape`)."""

    __slots__ = ()

    def user_shape(self, shape5: tuple) -> tuple:
        """A 5-D shape in the caller's rank (unit axes and added batch axis removed)."""
        return _shapes.user_shape(shape5, self.nspatial, self.unbatched)


@dataclass(frozen=True)
class ConvPlan(_UserShape):
    """A validated correlation: 5-D shapes, per-axis parameters, output dtype."""

    func: str
    nspatial: int
    x_shape: tuple  # 5-D (N, C, D, H, W), batch axis added
    w_shape: tuple  # 5-D (K, C // groups, KD, KH, KW)
    out_shape: tuple  # 5-D
    stride: tuple  # 3 ints
    dilation: tuple
    pads: Pairs  # 3 (before, after) pairs
    groups: int
    padding_mode: str
    dtype: np.dtype
    unbatched: bool


class _ShapesNote:
    """`` (x.shape=..., weight.shape=...)`` for error messages; formatted only when one
    is raised (a call that passes its checks never pays for the string)."""

    __slots__ = ("x", "weight")

    def __init__(self, x, weight):
        self.x, self.weight = x, weight

    def __str__(self) -> str:
        return f" (x.shape={shape_of(self.x)}, weight.shape={shape_of(self.weight)})"


def _check_rank(func: str, name: str, a, want: tuple[int, ...], what: str) -> None:
    if len(a.shape) not in want:
        raise ValueError(
            f"{func}: {name} must be {what}, got {len(a.shape)}-D with {name}.shape={shape_of(a)}"
        )


#: Plans of recent forward calls, keyed by :func:`_plan_key` (bounded: cleared when full).
_CONV_PLANS: dict = {}
_CONV_PLANS_MAX = 256


def _plain(v) -> bool:
    """An int or str, or a tuple of ints or of int pairs -- exactly those types (a bool,
    float or NumPy scalar compares equal to an int, but must reach the checks)."""
    t = type(v)
    if t is int or t is str:
        return True
    return t is tuple and all(
        type(e) is int or (type(e) is tuple and all(type(f) is int for f in e)) for e in v
    )


def _plan_key(func, nspatial, x, weight, bias, params) -> tuple | None:
    """What a forward plan depends on: shapes, dtypes and the parameters (None when a
    parameter is not plain: such calls are checked every time)."""
    for p in params:
        if not _plain(p):
            return None
    b = None if bias is None else (bias.shape, bias.dtype)
    return (func, nspatial, x.shape, x.dtype, weight.shape, weight.dtype, b, params)


def plan_conv(
    func: str,
    nspatial: int,
    x,
    weight,
    bias,
    stride,
    padding,
    dilation,
    groups,
    padding_mode: str,
) -> ConvPlan:
    """Check a forward correlation's arguments (SPEC §4) and resolve its shapes.

    The checks depend only on the arrays' shapes and dtypes and on the parameters, and a
    plan is immutable: a call that repeats an earlier call's shapes, dtypes and plain
    parameters reuses that call's plan (the per-call cost of small convolutions).
    Arguments that fail the checks never enter the cache, so they raise every time.
    """
    key = _plan_key(func, nspatial, x, weight, bias,
                    (stride, padding, dilation, groups, padding_mode))
    plan = None if key is None else _CONV_PLANS.get(key)
    if plan is None:
        plan = _check_conv(func, nspatial, x, weight, bias, stride, padding, dilation, groups,
                           padding_mode)
        if key is not None:
            if len(_CONV_PLANS) >= _CONV_PLANS_MAX:
                _CONV_PLANS.clear()
            _CONV_PLANS[key] = plan
    return plan


#: The most elements an array may have (its byte size must fit in an int64).
MAX_ELEMENTS = INT_MAX // 16


def check_size(func: str, what: str, shape: tuple, shapes="") -> None:
    """ValueError for an array no machine can hold (a huge padding or output_padding),
    raised before anything is allocated; merely large arrays are NumPy's to refuse."""
    if math.prod(shape) > MAX_ELEMENTS:
        raise ValueError(
            f"{func}: the {what} would have shape {shape}, more than 2**59 elements; "
            f"check padding, stride and dilation{shapes}"
        )


class _Checked(NamedTuple):
    """What :func:`check_conv` resolved (per-axis tuples in the caller's rank)."""

    x_shape: tuple  # (N, C, *spatial), batch axis added
    w_shape: tuple
    unbatched: bool
    groups: int
    K: int  # output channels
    stride: tuple
    dilation: tuple
    pads: Pairs
    out_spatial: tuple
    dtype: np.dtype


def check_conv(func, nspatial, x, weight, bias, stride, padding, dilation, groups,
               padding_mode="zeros", output_padding=None) -> _Checked:
    """The one check of a convolution's arguments, forward or transposed (SPEC §4).

    Forward when ``output_padding`` is None (weight ``(K, C // groups, *kernel)``, every
    padding form and mode), else transposed (weight ``(C, K // groups, *kernel)``,
    symmetric int padding, zeros, PyTorch's ``output_padding`` rule). Ranks, ``groups``,
    channel counts, the bias shape, empty axes, padding and output sizes (the rules in
    :mod:`fastconv._shapes`) and the size limit are checked before anything is allocated.

    Empty arrays follow PyTorch: an empty batch (N = 0) is accepted, and so are zero
    input channels of a forward convolution (its output is the bias); no output
    channels, an empty spatial or kernel axis, or zero input channels of a transposed
    convolution are errors.
    """
    s = nspatial
    transposed = output_padding is not None
    _check_rank(func, "x", x, (s + 1, s + 2),
                f"{s + 2}-D (N, C, *spatial) or {s + 1}-D (C, *spatial)")
    wlayout = "(C, K // groups, *kernel)" if transposed else "(K, C // groups, *kernel)"
    _check_rank(func, "weight", weight, (s + 2,), f"{s + 2}-D {wlayout}")
    xs, ws = shape_of(x), shape_of(weight)
    unbatched = len(xs) == s + 1
    if unbatched:
        xs = (1,) + xs
    shapes = _ShapesNote(x, weight)
    groups = as_int(groups, "groups", func, minimum=1)
    C = xs[1]
    if transposed:
        K = ws[1] * groups
        if C != ws[0]:
            raise ValueError(
                f"{func}: channel mismatch: x has C={C} but weight.shape[0] = {ws[0]}{shapes}"
            )
        if C % groups:
            raise ValueError(
                f"{func}: groups={groups} must divide the input channels C={C}{shapes}"
            )
        if bias is not None and shape_of(bias) != (K,):
            raise ValueError(
                f"{func}: bias must have shape (K,) = ({K},) with K = weight.shape[1] * "
                f"groups, got bias.shape={shape_of(bias)}"
            )
    else:
        K = ws[0]
        if C % groups or K % groups:
            raise ValueError(
                f"{func}: groups={groups} must divide both the input channels C={C} and the "
                f"output channels K={K}{shapes}"
            )
        if C != ws[1] * groups:
            raise ValueError(
                f"{func}: channel mismatch: x has C={C} but weight.shape[1] * groups = "
                f"{ws[1] * groups}{shapes}"
            )
        if bias is not None and shape_of(bias) != (K,):
            raise ValueError(
                f"{func}: bias must have shape (K,) = ({K},), got bias.shape={shape_of(bias)}"
            )
    if K == 0:
        raise ValueError(f"{func}: weight has no output channels (K=0){shapes}")
    if transposed and C == 0:
        raise ValueError(
            f"{func}: x has no input channels (C=0; PyTorch refuses them too){shapes}"
        )
    if 0 in xs[2:]:
        raise ValueError(f"{func}: x has an empty spatial axis{shapes}")
    if 0 in ws[2:]:
        raise ValueError(f"{func}: weight has an empty kernel axis{shapes}")
    kernel, spatial = ws[2:], xs[2:]
    strides = ntuple(stride, s, "stride", func, minimum=1)
    dil = ntuple(dilation, s, "dilation", func, minimum=1)
    if transposed:
        pad = ntuple(padding, s, "padding", func, minimum=0)
        opad = ntuple(output_padding, s, "output_padding", func, minimum=0)
        pads = tuple((p, p) for p in pad)
        out = _shapes.transpose_output_spatial(spatial, kernel, strides, pad, opad, dil, func,
                                               shapes)
    else:
        pads = _shapes.resolve_padding(padding, kernel, strides, dil, func)
        check_padding_mode(padding_mode, func)
        _shapes.check_mode_padding(padding_mode, pads, spatial, func, shapes)
        out = _shapes.conv_output_spatial(spatial, kernel, strides, pads, dil, func, shapes)
        check_size(func, "padded input", xs[:2] + _shapes.padded_spatial(spatial, pads), shapes)
    check_size(func, "output", (xs[0], K) + out, shapes)
    dtype = result_dtype(x, weight, *(() if bias is None else (bias,)))
    return _Checked(xs, ws, unbatched, groups, K, strides, dil, pads, out, dtype)


def _check_conv(func, nspatial, x, weight, bias, stride, padding, dilation, groups,
                padding_mode) -> ConvPlan:
    """The plan behind :func:`plan_conv` (no cache)."""
    c = check_conv(func, nspatial, x, weight, bias, stride, padding, dilation, groups,
                   padding_mode)
    xs, ws = c.x_shape, c.w_shape
    return ConvPlan(
        func=func,
        nspatial=nspatial,
        x_shape=xs[:2] + to3(xs[2:], 1),
        w_shape=ws[:2] + to3(ws[2:], 1),
        out_shape=(xs[0], c.K) + to3(c.out_spatial, 1),
        stride=to3(c.stride, 1),
        dilation=to3(c.dilation, 1),
        pads=to3(c.pads, (0, 0)),
        groups=c.groups,
        padding_mode=padding_mode,
        dtype=c.dtype,
        unbatched=c.unbatched,
    )


@dataclass(frozen=True)
class PoolPlan(_UserShape):
    """A validated pooling call: 5-D shapes, per-axis parameters (D, H, W), output dtype.

    ``divisors`` (average pooling only) holds each axis's per-output window lengths; the
    divisor of an output is their product (``divisor_override`` sits on the W axis).
    """

    func: str
    nspatial: int
    kind: str  # "max" or "avg"
    x_shape: tuple  # 5-D (N, C, D, H, W), batch axis added
    out_shape: tuple  # 5-D
    kernel: tuple  # 3 ints
    stride: tuple
    pads: tuple  # 3 ints (symmetric, as PyTorch)
    dilation: tuple
    divisors: tuple  # 3 tuples of ints (avg) or () (max)
    dtype: np.dtype
    unbatched: bool


def plan_pool(
    func: str,
    nspatial: int,
    x,
    kernel_size,
    stride,
    padding,
    dilation,
    ceil_mode: bool,
    kind: str,
    count_include_pad: bool = True,
    divisor_override=None,
) -> PoolPlan:
    """Check a pooling call's arguments (SPEC §4, PyTorch's rules) and resolve its shapes.

    ``kind`` is "max" or "avg"; ``stride=None`` means ``stride = kernel_size``. As
    :func:`plan_conv`, a call that repeats an earlier call's shape, dtype and plain
    parameters reuses its plan (13 -> ~2 us of a pooling call's fixed cost).
    """
    params = (kernel_size, stride, padding, dilation, ceil_mode, kind, count_include_pad,
              divisor_override)
    key = None
    if all(v is None or type(v) is bool or _plain(v) for v in params):
        key = (func, nspatial, x.shape, x.dtype, params)
    plan = None if key is None else _POOL_PLANS.get(key)
    if plan is None:
        plan = _check_pool(func, nspatial, x, kernel_size, stride, padding, dilation,
                           ceil_mode, kind, count_include_pad, divisor_override)
        if key is not None:
            if len(_POOL_PLANS) >= _CONV_PLANS_MAX:
                _POOL_PLANS.clear()
            _POOL_PLANS[key] = plan
    return plan


#: Plans of recent pooling calls (bounded: cleared when full).
_POOL_PLANS: dict = {}


def _check_pool(func, nspatial, x, kernel_size, stride, padding, dilation, ceil_mode, kind,
                count_include_pad, divisor_override) -> PoolPlan:
    """The plan behind :func:`plan_pool` (no cache)."""
    s = nspatial
    want = f"{s + 2}-D (N, C, *spatial) or {s + 1}-D (C, *spatial)"
    _check_rank(func, "x", x, (s + 1, s + 2), want)
    xs = shape_of(x)
    unbatched = len(xs) == s + 1
    if unbatched:
        xs = (1,) + xs
    kernel = ntuple(kernel_size, s, "kernel_size", func, minimum=1)
    if stride is None or (isinstance(stride, tuple | list) and len(stride) == 0):
        strides = kernel  # PyTorch: None or an empty tuple means stride = kernel_size
    else:
        strides = ntuple(stride, s, "stride", func, minimum=1)
    pads = ntuple(padding, s, "padding", func, minimum=0)
    dil = ntuple(dilation, s, "dilation", func, minimum=1)
    if divisor_override is not None:
        if not _is_int(divisor_override) or divisor_override == 0:
            raise ValueError(
                f"{func}: divisor_override must be None or a non-zero int, "
                f"got {divisor_override!r}"
            )
        divisor_override = as_int(divisor_override, "divisor_override", func, minimum=-INT_MAX)
    spatial = xs[2:]
    shapes = (f"kernel_size={kernel}, stride={strides}, padding={pads}, dilation={dil}, "
              f"x.shape={shape_of(x)}")
    if xs[1] == 0 or 0 in spatial:
        raise ValueError(
            f"{func}: x must have at least one channel and a non-empty spatial extent (only "
            f"the batch axis may be empty, as in PyTorch), got x.shape={shape_of(x)}"
        )
    limits = tuple(_shapes.pool_pad_limit(k, d, kind) for k, d in zip(kernel, dil, strict=True))
    if any(p > lim for p, lim in zip(pads, limits, strict=True)):
        raise ValueError(
            f"{func}: padding={pads} must be at most half the window, kernel_size // 2 = "
            f"{limits} ({shapes})"
        )
    out = _shapes.pool_output_spatial(spatial, kernel, strides, pads, dil, ceil_mode, func,
                                      shapes)
    if kind == "max":
        for axis, (n, k, st, p, d, o) in enumerate(
            zip(spatial, kernel, strides, pads, dil, out, strict=True)
        ):
            empty = _shapes.pool_empty_window(n, k, st, p, d, o)
            if empty is not None:
                raise ValueError(
                    f"{func}: window {empty} of spatial axis {axis} lies entirely in the "
                    f"padding (PyTorch returns -inf and an index outside the input there); "
                    f"use less padding or dilation ({shapes})"
                )
    check_size(func, "output", xs[:2] + out, f" ({shapes})")
    divisors: tuple = ()
    if kind == "avg":
        k3, s3, p3 = to3(kernel, 1), to3(strides, 1), to3(pads, 0)
        n3, o3 = to3(spatial, 1), to3(out, 1)
        if divisor_override is None:
            divisors = tuple(
                _shapes.pool_divisors(n, k, st, p, o, bool(count_include_pad))
                for n, k, st, p, o in zip(n3, k3, s3, p3, o3, strict=True)
            )
        else:
            divisors = ((1,) * o3[0], (1,) * o3[1], (int(divisor_override),) * o3[2])
    return PoolPlan(
        func=func,
        nspatial=s,
        kind=kind,
        x_shape=xs[:2] + to3(spatial, 1),
        out_shape=xs[:2] + to3(out, 1),
        kernel=to3(kernel, 1),
        stride=to3(strides, 1),
        pads=to3(pads, 0),
        dilation=to3(dil, 1),
        divisors=divisors,
        dtype=result_dtype(x),
        unbatched=unbatched,
    )


@dataclass(frozen=True)
class InputGradPlan(_UserShape):
    """A validated input gradient of a correlation (also a transposed convolution).

    The gradient is computed as a stride-1 correlation of ``grad_output`` spread onto a
    zero grid (``g[o]`` lands at ``lead + o*stride``) with the flipped, channel-transposed
    weight; ``spread_*`` are the per-axis ``(start, stop, step)`` slices of that copy.
    With a non-zero ``padding_mode`` the gradient is first computed on the padded grid
    (``padded_shape``) and then folded back onto the source pixels.
    """

    func: str
    nspatial: int
    g_shape: tuple  # 5-D grad_output (N, K, OD, OH, OW)
    w_shape: tuple  # 5-D forward weight (K, C // groups, KD, KH, KW)
    out_shape: tuple  # 5-D input gradient (N, C, D, H, W)
    spread_shape: tuple  # 5-D zero grid that grad_output is spread onto
    spread_src: tuple  # 3 (start, stop, step) slices of grad_output
    spread_dst: tuple  # 3 (start, stop, step) slices of the spread grid
    padded_shape: tuple  # 5-D grid the correlation writes (== out_shape when not folding)
    dilation: tuple
    pads: Pairs
    groups: int
    padding_mode: str  # "zeros": no fold
    dtype: np.dtype
    unbatched: bool


#: Kept importable from here (its rule lives in ``_shapes``).
spread_slices = _shapes.spread_slices


def _input_grad_plan(func, nspatial, g_shape, w_shape, out_shape, stride, dilation, pads,
                     groups, padding_mode, dtype, unbatched) -> InputGradPlan:
    """An input gradient's plan (all shapes 5-D, per-axis tuples of 3); the spread
    geometry is :func:`fastconv._shapes.input_grad_spread`."""
    fold = padding_mode != "zeros" and any(b or a for b, a in pads)
    grid, spread, src, dst = _shapes.input_grad_spread(
        g_shape[2:], out_shape[2:], w_shape[2:], stride, dilation, pads, fold)
    return InputGradPlan(
        func=func, nspatial=nspatial, g_shape=g_shape, w_shape=w_shape, out_shape=out_shape,
        spread_shape=g_shape[:2] + spread, spread_src=src, spread_dst=dst,
        padded_shape=out_shape[:2] + grid, dilation=dilation, pads=pads, groups=groups,
        padding_mode=padding_mode if fold else "zeros", dtype=dtype, unbatched=unbatched,
    )


class _ShapeOnly:
    """Stands in for an array that only has a shape (``input_size``/``weight_size``)."""

    def __init__(self, shape: tuple, dtype=np.float32):
        self.shape = shape
        self.dtype = np.dtype(dtype)


def _check_size(func: str, name: str, size, ranks: tuple[int, ...], what: str) -> tuple:
    ok = (
        isinstance(size, tuple | list)
        and len(size) in ranks
        and all(_is_int(v) and 0 <= v <= INT_MAX for v in size)
    )
    if not ok:
        raise ValueError(
            f"{func}: {name} must be a tuple of ints {what} (each in [0, 2**63)), "
            f"got {size!r}"
        )
    return tuple(int(v) for v in size)


def _check_grad_output(func: str, plan: ConvPlan, grad_output, detail: str) -> None:
    want = plan.user_shape(plan.out_shape)
    if shape_of(grad_output) != want:
        raise ValueError(
            f"{func}: grad_output.shape={shape_of(grad_output)} does not match the forward "
            f"output shape {want} ({detail})"
        )


def plan_conv_input(func, nspatial, input_size, weight, grad_output, stride, padding,
                    dilation, groups, padding_mode) -> InputGradPlan:
    """Check an input-gradient call (torch.nn.grad.conv*_input semantics)."""
    s = nspatial
    size = _check_size(func, "input_size", input_size, (s + 1, s + 2),
                       f"(N, C, *spatial) or (C, *spatial) with {s} spatial axes")
    fwd = plan_conv(func, s, _ShapeOnly(size, weight.dtype), weight, None, stride, padding,
                    dilation, groups, padding_mode)
    _check_grad_output(func, fwd, grad_output,
                       f"input_size={size}, weight.shape={shape_of(weight)}")
    return _input_grad_plan(func, s, fwd.out_shape, fwd.w_shape, fwd.x_shape, fwd.stride,
                            fwd.dilation, fwd.pads, groups, fwd.padding_mode,
                            result_dtype(weight, grad_output), fwd.unbatched)


def plan_conv_weight(func, nspatial, x, weight_size, grad_output, stride, padding, dilation,
                     groups, padding_mode) -> ConvPlan:
    """Check a weight-gradient call (torch.nn.grad.conv*_weight semantics)."""
    s = nspatial
    size = _check_size(func, "weight_size", weight_size, (s + 2,),
                       f"(K, C // groups, *kernel) with {s} kernel axes")
    fwd = plan_conv(func, s, x, _ShapeOnly(size, x.dtype), None, stride, padding, dilation,
                    groups, padding_mode)
    _check_grad_output(func, fwd, grad_output, f"x.shape={shape_of(x)}, weight_size={size}")
    return replace(fwd, dtype=result_dtype(x, grad_output))


def plan_conv_transpose(func, nspatial, x, weight, bias, stride, padding, output_padding,
                        groups, dilation) -> InputGradPlan:
    """Check a transposed convolution (PyTorch semantics; weight is (C, K // groups, *k))."""
    c = check_conv(func, nspatial, x, weight, bias, stride, padding, dilation, groups,
                   output_padding=output_padding)
    xs, ws = c.x_shape, c.w_shape
    return _input_grad_plan(
        func, nspatial, xs[:2] + to3(xs[2:], 1), (xs[1], ws[1]) + to3(ws[2:], 1),
        (xs[0], c.K) + to3(c.out_spatial, 1), to3(c.stride, 1), to3(c.dilation, 1),
        to3(c.pads, (0, 0)), c.groups, "zeros", c.dtype, c.unbatched,
    )
