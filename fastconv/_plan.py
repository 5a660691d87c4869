"""Validated call plans: every public op turns its arguments into a plan (shapes as
5-D tuples, per-axis ints, resolved padding) before any array is touched by a kernel.
Backends and the Dask layer consume plans; none re-derives a size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastconv import _shapes
from fastconv._validate import check_padding_mode, ntuple, result_dtype

Pairs = tuple[tuple[int, int], ...]


def to3(values: tuple, fill) -> tuple:
    """Left-pad a per-axis tuple to 3 axes (1-D/2-D ops run as 3-D with unit axes)."""
    return (fill,) * (3 - len(values)) + tuple(values)


def shape_of(a) -> tuple:
    return tuple(int(s) for s in a.shape)


@dataclass(frozen=True)
class ConvPlan:
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

    def user_shape(self, shape5: tuple) -> tuple:
        """A 5-D shape in the caller's rank (unit axes and added batch axis removed)."""
        lead = shape5[1:2] if self.unbatched else shape5[:2]
        return lead + shape5[5 - self.nspatial :]


def _check_rank(func: str, name: str, a, want: tuple[int, ...], what: str) -> None:
    if len(a.shape) not in want:
        raise ValueError(
            f"{func}: {name} must be {what}, got {len(a.shape)}-D with {name}.shape={shape_of(a)}"
        )


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
    """Check a forward correlation's arguments (SPEC §4) and resolve its shapes."""
    s = nspatial
    _check_rank(func, "x", x, (s + 1, s + 2), f"{s + 2}-D (N, C, *spatial) or {s + 1}-D (C, *spatial)")
    _check_rank(func, "weight", weight, (s + 2,), f"{s + 2}-D (K, C // groups, *kernel)")
    xs, ws = shape_of(x), shape_of(weight)
    unbatched = len(xs) == s + 1
    if unbatched:
        xs = (1,) + xs
    shapes = f" (x.shape={shape_of(x)}, weight.shape={ws})"
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{func}: groups must be an int >= 1, got {groups!r}")
    C, K = xs[1], ws[0]
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
    if any(v == 0 for v in xs + ws):
        raise ValueError(f"{func}: empty input or weight{shapes}")
    kernel = ws[2:]
    strides = ntuple(stride, s, "stride", func, minimum=1)
    dil = ntuple(dilation, s, "dilation", func, minimum=1)
    pads = _shapes.resolve_padding(padding, kernel, strides, dil, func)
    check_padding_mode(padding_mode, func)
    spatial = xs[2:]
    if padding_mode == "reflect" and any(max(p) >= n for p, n in zip(pads, spatial, strict=True)):
        raise ValueError(
            f"{func}: reflect padding {pads} must be smaller than the input's spatial size "
            f"{spatial}{shapes}"
        )
    if padding_mode == "circular" and any(max(p) > n for p, n in zip(pads, spatial, strict=True)):
        raise ValueError(
            f"{func}: circular padding {pads} must not exceed the input's spatial size "
            f"{spatial}{shapes}"
        )
    out_spatial = _shapes.conv_output_spatial(spatial, kernel, strides, pads, dil, func, shapes)
    dtype = result_dtype(x, weight, *(() if bias is None else (bias,)))
    return ConvPlan(
        func=func,
        nspatial=s,
        x_shape=xs[:2] + to3(spatial, 1),
        w_shape=ws[:2] + to3(kernel, 1),
        out_shape=(xs[0], K) + to3(out_spatial, 1),
        stride=to3(strides, 1),
        dilation=to3(dil, 1),
        pads=to3(pads, (0, 0)),
        groups=groups,
        padding_mode=padding_mode,
        dtype=dtype,
        unbatched=unbatched,
    )
