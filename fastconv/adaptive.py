"""Adaptive average/max pooling and power-average (Lp) pooling, forward and backward:
validate -> plan -> dispatch, as ``torch.nn.functional``.

- ``adaptive_avg_pool1d/2d/3d(x, output_size)`` and ``adaptive_max_pool1d/2d/3d(x,
  output_size, return_indices=False)``: output ``i`` of an axis of ``n`` inputs pools
  the window ``[floor(i*n/out), ceil((i+1)*n/out))``; a ``None`` entry of
  ``output_size`` keeps that axis's size.
- ``lp_pool1d/2d/3d(x, norm_type, kernel_size, stride=None, ceil_mode=False)``:
  PyTorch's formula, ``a = avg_pool(x**p)`` (no padding, divisor counted as
  ``avg_pool*d`` does), then ``(sign(a) * relu(|a|) * prod(kernel_size)) ** (1/p)``.
- ``*_backward``: the gradients (``fc.grad.adaptive_avg_pool2d(grad_output, x,
  output_size)`` etc.), matching PyTorch's autograd.

A Dask array input gives a lazy Dask array (the spatial axes are rechunked into one
chunk for adaptive pooling; Lp pooling goes through the lazy average pooling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fastconv import _dask, _dispatch, _shapes
from fastconv._dispatch import to_host
from fastconv._docs import GRAD_SECTIONS, fill
from fastconv._plan import plan_pool, shape_of, to3
from fastconv._run import avg_pool, deliver, prepare
from fastconv._validate import result_dtype

_SHAPES = {
    1: dict(shape_in="(N, C, L) or (C, L)", shape="(N, C, L) -> (N, C, L_out)"),
    2: dict(shape_in="(N, C, H, W) or (C, H, W)",
            shape="(N, C, H, W) -> (N, C, H_out, W_out)"),
    3: dict(shape_in="(N, C, D, H, W) or (C, D, H, W)",
            shape="(N, C, D, H, W) -> (N, C, D_out, H_out, W_out)"),
}


@dataclass(frozen=True)
class AdaptivePlan:
    """A validated adaptive pooling: planes ``(P, D, H, W)`` in, ``(P, OD, OH, OW)`` out."""

    func: str
    nspatial: int
    lead: tuple  # (N, C) or (C,)
    spatial: tuple  # the caller's spatial sizes
    out_spatial: tuple
    in_planes: tuple  # (P, D, H, W)
    out_planes: tuple
    windows: tuple  # 3 (starts, ends) pairs, unit axes first
    dtype: np.dtype

    @property
    def out_shape(self) -> tuple:
        return self.lead + self.out_spatial

    @property
    def x_shape(self) -> tuple:
        return self.lead + self.spatial


def _check_pool_input(func: str, nspatial: int, shape: tuple, name: str = "x") -> int:
    """Rank (N, C, *spatial) or (C, *spatial), non-empty spatial axes (PyTorch's
    checks; N = 0 and C = 0 give empty results). Returns the number of leading axes."""
    if len(shape) not in (nspatial + 1, nspatial + 2):
        raise ValueError(
            f"{func}: {name} must be {nspatial + 2}-D (N, C, *spatial) or {nspatial + 1}-D "
            f"(C, *spatial), got {len(shape)}-D with {name}.shape={shape}"
        )
    nlead = len(shape) - nspatial
    if any(s == 0 for s in shape[nlead:]):
        raise ValueError(
            f"{func}: {name} must have non-zero spatial sizes, got {name}.shape={shape}"
        )
    return nlead


def plan_adaptive(func: str, nspatial: int, x, output_size, dtype=None) -> AdaptivePlan:
    shape = shape_of(x)
    nlead = _check_pool_input(func, nspatial, shape)
    spatial = shape[nlead:]
    out = _shapes.adaptive_output_size(spatial, output_size, func)
    lead = shape[:nlead]
    planes = math.prod(lead)
    windows = tuple(_shapes.adaptive_windows(n, o) for n, o in
                    zip(to3(spatial, 1), to3(out, 1), strict=True))
    return AdaptivePlan(func, nspatial, lead, spatial, out, (planes, *to3(spatial, 1)),
                        (planes, *to3(out, 1)), windows,
                        result_dtype(x) if dtype is None else dtype)


# --- adaptive pooling ------------------------------------------------------------------


def _dask_adaptive(func, nspatial, kind, x, output_size, return_indices, device):
    """Lazy: the spatial axes rechunked into one chunk, then one block per (N, C) chunk."""
    _dask._check_input(func, x)
    plan = plan_adaptive(func, nspatial, x, output_size)
    nlead = len(plan.lead)
    xr = x.rechunk({nlead + i: -1 for i in range(nspatial)})
    chunks = xr.chunks[:nlead] + tuple((o,) for o in plan.out_spatial)
    op = ADAPTIVE[kind][nspatial]

    def run(what, dtype):
        def block(b):
            res = op(b, output_size, device=device, **(
                {"return_indices": True} if what == "indices" else {}))
            res = res[1] if what == "indices" else res
            return to_host(res)

        return xr.map_blocks(block, chunks=chunks, dtype=dtype,
                             meta=np.empty((0,) * len(chunks), dtype),
                             name=f"{func}-{what}-{_token(xr, output_size, device)}")

    values = run("values", plan.dtype)
    if kind == "max" and return_indices:
        return values, run("indices", np.dtype(np.int64))
    return values


def _token(*args) -> str:
    from dask.base import tokenize

    return tokenize(*args)


def _adaptive_forward(func, nspatial, kind, x, output_size, return_indices=False,
                      device=None):
    if _dask.is_dask(x):
        return _dask_adaptive(func, nspatial, kind, x, output_size, return_indices, device)
    name, a = prepare(func, device, {"x": x})
    plan = plan_adaptive(func, nspatial, a["x"], output_size)
    be = _dispatch.backend(name)
    x4 = be.asarray(a["x"], plan.dtype).reshape(plan.in_planes)
    out = be.empty(plan.out_planes, plan.dtype)
    if kind == "avg":
        be.adaptive_avg_pool(x4, out, plan.windows)
        return deliver(name, out.reshape(plan.out_shape), a["x"], x)
    idx = be.empty(plan.out_planes, np.int64) if return_indices else None
    be.adaptive_max_pool(x4, out, idx, plan.windows)
    out = deliver(name, out.reshape(plan.out_shape), a["x"], x)
    if not return_indices:
        return out
    return out, deliver(name, idx.reshape(plan.out_shape), a["x"], x)


def _check_grad_output(func, want: tuple, grad_output, x) -> None:
    if shape_of(grad_output) != tuple(want):
        raise ValueError(
            f"{func}: grad_output.shape={shape_of(grad_output)} does not match the "
            f"forward output shape {tuple(want)} (x.shape={shape_of(x)})"
        )


def _adaptive_backward(func, nspatial, kind, grad_output, x, output_size):
    name, a = prepare(func, None, {"grad_output": grad_output, "x": x})
    dtype = result_dtype(a["x"], a["grad_output"])
    plan = plan_adaptive(func, nspatial, a["x"], output_size, dtype)
    _check_grad_output(func, plan.out_shape, a["grad_output"], a["x"])
    be = _dispatch.backend(name)
    g4 = be.asarray(a["grad_output"], dtype).reshape(plan.out_planes)
    gx = be.empty(plan.in_planes, dtype)
    if kind == "avg":
        be.adaptive_avg_pool_backward(g4, gx, plan.windows)
    else:
        x4 = be.asarray(a["x"], dtype).reshape(plan.in_planes)
        be.adaptive_max_pool_backward(g4, x4, gx, plan.windows)
    return deliver(name, gx.reshape(plan.x_shape), a["x"], x)


_OUTPUT_SIZE = """output_size : int, None or tuple of int or None
        Output size per spatial axis (>= 0); an int applies to every axis, a ``None``
        entry keeps that axis's input size."""

#: The Raises and Examples sections of every adaptive pooling docstring.
_ADAPTIVE_SECTIONS = """
    Raises
    ------
    ValueError
        Wrong rank, an empty spatial axis, a bad ``output_size``.
    TypeError
        Complex, bool, object or string input.

    Examples
    --------
    {example}
    """

_AVG_DOC = """Adaptive average pooling of {rank} signals ({shape}), as torch's
    ``adaptive_avg_pool{n}d``.

    Output ``i`` along an axis of ``n`` inputs is the mean of the window
    ``[floor(i*n/out), ceil((i+1)*n/out))``; ``output_size=1`` is global average pooling.

    Parameters
    ----------
    x : array_like, shape {shape_in}
    {output_size}
    {device}

    Returns
    -------
    ndarray
        float32/float64 preserved; other real dtypes promoted to float32 or float64.
""" + _ADAPTIVE_SECTIONS

_MAX_DOC = """Adaptive max pooling of {rank} signals ({shape}), as torch's
    ``adaptive_max_pool{n}d``.

    Output ``i`` along an axis of ``n`` inputs is the maximum of the window
    ``[floor(i*n/out), ceil((i+1)*n/out))`` (a NaN wins).

    Parameters
    ----------
    x : array_like, shape {shape_in}
    {output_size}
    return_indices : bool, default False
        Also return the int64 flat index of each maximum in its input plane
        (``(d*H + h)*W + w``; the first maximum on ties), as PyTorch.
    {device}

    Returns
    -------
    ndarray, or (ndarray, ndarray of int64) with ``return_indices``
""" + _ADAPTIVE_SECTIONS

_EXAMPLES = {
    ("avg", 1): ">>> adaptive_avg_pool1d([[1., 2., 3., 4., 5.]], 2)\n    array([[2., 4.]])",
    ("avg", 2): (">>> adaptive_avg_pool2d(np.arange(16.).reshape(1, 4, 4), 1)\n"
                 "    array([[[7.5]]])"),
    ("avg", 3): (">>> adaptive_avg_pool3d(np.arange(8.).reshape(1, 2, 2, 2), (1, None, 1))\n"
                 "    array([[[[2.5],\n             [4.5]]]])"),
    ("max", 1): (">>> adaptive_max_pool1d([[1., 5., 2., 0., 3.]], 2, return_indices=True)\n"
                 "    (array([[5., 3.]]), array([[1, 4]]))"),
    ("max", 2): (">>> adaptive_max_pool2d(np.arange(9.).reshape(1, 3, 3), 2)\n"
                 "    array([[[4., 5.],\n            [7., 8.]]])"),
    ("max", 3): (">>> adaptive_max_pool3d(np.arange(8.).reshape(1, 2, 2, 2), 1)\n"
                 "    array([[[[7.]]]])"),
}

_RANK = {1: "1-D", 2: "2-D", 3: "3-D"}


def _make_adaptive(kind: str, nspatial: int):
    func = f"adaptive_{kind}_pool{nspatial}d"
    if kind == "avg":
        def op(x, output_size, *, device: str | None = None):
            return _adaptive_forward(func, nspatial, "avg", x, output_size, device=device)
    else:
        def op(x, output_size, return_indices: bool = False, *, device: str | None = None):
            return _adaptive_forward(func, nspatial, "max", x, output_size, return_indices,
                                     device)
    op.__name__ = op.__qualname__ = func
    op.__doc__ = _AVG_DOC if kind == "avg" else _MAX_DOC
    return fill(n=nspatial, rank=_RANK[nspatial], output_size=_OUTPUT_SIZE,
                example=_EXAMPLES[(kind, nspatial)], **_SHAPES[nspatial])(op)


_GRAD_DOC = """Gradient of ``{fwd}(x, output_size)`` with respect to ``x``, given
    ``grad_output`` (the data picks the device). {rule}
""" + GRAD_SECTIONS

_GRAD_CASES = {
    1: dict(gshape="(1, 1)", xshape="1, 4"),
    2: dict(gshape="(1, 1, 1)", xshape="1, 2, 2"),
    3: dict(gshape="(1, 1, 1, 1)", xshape="1, 1, 2, 2"),
}
_GRAD_RESULTS = {
    ("avg", 1): "[[0.25, 0.25, 0.25, 0.25]]",
    ("max", 1): "[[0., 0., 0., 1.]]",
    ("avg", 2): "[[[0.25, 0.25],\n            [0.25, 0.25]]]",
    ("max", 2): "[[[0., 0.],\n            [0., 1.]]]",
    ("avg", 3): "[[[[0.25, 0.25],\n             [0.25, 0.25]]]]",
    ("max", 3): "[[[[0., 0.],\n             [0., 1.]]]]",
}


def _make_adaptive_backward(kind: str, nspatial: int):
    fwd = f"adaptive_{kind}_pool{nspatial}d"
    func = f"{fwd}_backward"

    def op(grad_output, x, output_size):
        return _adaptive_backward(func, nspatial, kind, grad_output, x, output_size)

    op.__name__ = op.__qualname__ = func
    rule = ("Each output's gradient is spread evenly over its window (overlapping windows "
            "add up)." if kind == "avg" else "Each output's gradient goes to its window's "
            "first maximum (a NaN wins), as PyTorch.")
    example = (">>> {func}(np.ones({gshape}), np.arange(4.).reshape({xshape}), 1)\n"
               "    array({result})").format(func=func, result=_GRAD_RESULTS[(kind, nspatial)],
                                             **_GRAD_CASES[nspatial])
    op.__doc__ = _GRAD_DOC.format(fwd=fwd, rule=rule, op=fwd, output="the forward output",
                                  example=example)
    return op


adaptive_avg_pool1d = _make_adaptive("avg", 1)
adaptive_avg_pool2d = _make_adaptive("avg", 2)
adaptive_avg_pool3d = _make_adaptive("avg", 3)
adaptive_max_pool1d = _make_adaptive("max", 1)
adaptive_max_pool2d = _make_adaptive("max", 2)
adaptive_max_pool3d = _make_adaptive("max", 3)
adaptive_avg_pool1d_backward = _make_adaptive_backward("avg", 1)
adaptive_avg_pool2d_backward = _make_adaptive_backward("avg", 2)
adaptive_avg_pool3d_backward = _make_adaptive_backward("avg", 3)
adaptive_max_pool1d_backward = _make_adaptive_backward("max", 1)
adaptive_max_pool2d_backward = _make_adaptive_backward("max", 2)
adaptive_max_pool3d_backward = _make_adaptive_backward("max", 3)

ADAPTIVE = {
    "avg": {1: adaptive_avg_pool1d, 2: adaptive_avg_pool2d, 3: adaptive_avg_pool3d},
    "max": {1: adaptive_max_pool1d, 2: adaptive_max_pool2d, 3: adaptive_max_pool3d},
}


# --- power-average (Lp) pooling --------------------------------------------------------


def _norm_type(func: str, norm_type) -> float:
    if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float, np.number)):
        raise TypeError(f"{func}: norm_type must be a real number, got {norm_type!r}")
    return float(norm_type)


def _lp_plan(func, nspatial, x, kernel_size, stride, ceil_mode, dtype=None):
    plan = plan_pool(func, nspatial, x, kernel_size, stride, 0, 1, ceil_mode, "avg", True,
                     None)
    return plan if dtype is None else _with_dtype(plan, dtype)


def _with_dtype(plan, dtype):
    from dataclasses import replace

    return replace(plan, dtype=dtype)


def _lp_scale(plan) -> int:
    return math.prod(plan.kernel)


def _lp_pool_np_finish(a, scale, p):
    """The NumPy form of ``lp_finish`` (Dask blocks)."""
    t = a.dtype.type
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return (np.sign(a) * np.maximum(np.abs(a), t(0)) * t(scale)) ** t(1.0 / p)


def _lp_forward(func, nspatial, x, norm_type, kernel_size, stride, ceil_mode, device):
    p = _norm_type(func, norm_type)
    if _dask.is_dask(x):
        _dask._check_input(func, x)
        plan = _lp_plan(func, nspatial, x, kernel_size, stride, ceil_mode)
        xp = x.astype(plan.dtype) ** plan.dtype.type(p)
        avg = avg_pool(f"avg_pool{nspatial}d", nspatial, xp, kernel_size, stride, 0, ceil_mode,
                       True, None, device)
        return avg.map_blocks(_lp_pool_np_finish, _lp_scale(plan), p, dtype=plan.dtype)
    name, a = prepare(func, device, {"x": x})
    plan = _lp_plan(func, nspatial, a["x"], kernel_size, stride, ceil_mode)
    be = _dispatch.backend(name)
    out = be.empty(plan.out_shape, plan.dtype)
    if math.prod(plan.x_shape):  # an empty batch (or C = 0) runs no kernel
        x5 = be.asarray(a["x"], plan.dtype).reshape(plan.x_shape)
        xp = be.empty(plan.x_shape, plan.dtype)
        if math.isinf(p):  # PyTorch: max_pool(|x|), or -max_pool(-|x|) for -inf
            be.signed_abs(x5, math.copysign(1.0, p), xp)
            be.max_pool(xp, out, None, plan.kernel, plan.stride, plan.pads, (1, 1, 1))
            be.signed_abs(out, 1.0, out)  # -max(-|x|) == |max(-|x|)|
        else:
            be.power(x5, p, xp)
            be.avg_pool(xp, out, plan.kernel, plan.stride, plan.pads, plan.divisors)
            be.lp_finish(out, _lp_scale(plan), p)
    return deliver(name, out.reshape(plan.user_shape(plan.out_shape)), a["x"], x)


def _lp_backward(func, nspatial, grad_output, x, norm_type, kernel_size, stride, ceil_mode):
    p = _norm_type(func, norm_type)
    name, a = prepare(func, None, {"grad_output": grad_output, "x": x})
    dtype = result_dtype(a["x"], a["grad_output"])
    plan = _lp_plan(func, nspatial, a["x"], kernel_size, stride, ceil_mode, dtype)
    _check_grad_output(func, plan.user_shape(plan.out_shape), a["grad_output"], a["x"])
    be = _dispatch.backend(name)
    if not math.prod(plan.x_shape):  # an empty batch (or C = 0) runs no kernel
        return deliver(name, be.empty(shape_of(a["x"]), dtype), a["x"], x)
    x5 = be.asarray(a["x"], dtype).reshape(plan.x_shape)
    g5 = be.asarray(a["grad_output"], dtype).reshape(plan.out_shape)
    xp = be.empty(plan.x_shape, dtype)
    gx = be.empty(plan.x_shape, dtype)
    if math.isinf(p):  # the max gradient of +-|x|, times sign(x) (the gradient of |x|)
        be.signed_abs(x5, math.copysign(1.0, p), xp)
        be.max_pool_backward(g5, xp, gx, plan.kernel, plan.stride, plan.pads, (1, 1, 1))
        be.mul_sign(gx, x5, gx)
        return deliver(name, gx.reshape(shape_of(a["x"])), a["x"], x)
    be.power(x5, p, xp)
    avg = be.empty(plan.out_shape, dtype)
    be.avg_pool(xp, avg, plan.kernel, plan.stride, plan.pads, plan.divisors)
    ga = be.empty(plan.out_shape, dtype)
    be.lp_grad_out(g5, avg, _lp_scale(plan), p, ga)
    be.avg_pool_backward(ga, xp, plan.kernel, plan.stride, plan.pads, plan.divisors)
    be.lp_grad_in(xp, x5, p, gx)
    return deliver(name, gx.reshape(shape_of(a["x"])), a["x"], x)


_LP_DOC = """Power-average pooling of {rank} signals ({shape}), as torch's ``lp_pool{n}d``.

    ``y = (sign(a) * relu(|a|) * prod(kernel_size)) ** (1 / norm_type)`` with
    ``a = avg_pool{n}d(x ** norm_type, kernel_size, stride, 0, ceil_mode)`` -- PyTorch's
    formula exactly: a window sum of ``x**p`` raised to ``1/p`` (``p = 1`` is sum pooling;
    ``p = inf`` is ``max_pool{n}d(|x|)`` and ``p = -inf`` is ``-max_pool{n}d(-|x|)``, the
    smallest ``|x|``, as PyTorch 2.13 special-cases them). A negative window sum (odd ``p`` with
    negative inputs) gives ``sum ** (1/p)``: NaN unless ``1/p`` is an integer; a zero sum
    gives 0. With ``ceil_mode`` a window cut by the input's end is averaged over its
    inputs, then multiplied by the full window size (PyTorch's quirk, kept).

    Parameters
    ----------
    x : array_like, shape {shape_in}
    norm_type : float
        The power ``p``.
    kernel_size : int or tuple of int
    stride : int, tuple of int or None, default None
        ``None`` means ``kernel_size``.
    ceil_mode : bool, default False
    {device}

    Returns
    -------
    ndarray

    Raises
    ------
    ValueError
        As ``avg_pool{n}d`` (wrong rank, kernel_size/stride < 1, output size < 1).
    TypeError
        A non-numeric ``norm_type``; complex, bool, object or string input.

    Examples
    --------
    {example}
    """

_LP_EXAMPLES = {
    1: ">>> lp_pool1d([[3., 4., 1., 0.]], 2, 2)\n    array([[5., 1.]])",
    2: (">>> lp_pool2d(np.array([[[3., 4.], [0., 0.]]]), 2, 2)\n"
        "    array([[[5.]]])"),
    3: (">>> lp_pool3d(np.ones((1, 2, 2, 2)), 1, 2)\n"
        "    array([[[[8.]]]])"),
}


def _make_lp(nspatial: int):
    func = f"lp_pool{nspatial}d"

    def op(x, norm_type: float, kernel_size, stride=None, ceil_mode: bool = False, *,
           device: str | None = None):
        return _lp_forward(func, nspatial, x, norm_type, kernel_size, stride, ceil_mode,
                           device)

    op.__name__ = op.__qualname__ = func
    op.__doc__ = _LP_DOC
    return fill(n=nspatial, rank=_RANK[nspatial], example=_LP_EXAMPLES[nspatial],
                **_SHAPES[nspatial])(op)


def _make_lp_backward(nspatial: int):
    func = f"lp_pool{nspatial}d_backward"

    def op(grad_output, x, norm_type: float, kernel_size, stride=None,
           ceil_mode: bool = False):
        return _lp_backward(func, nspatial, grad_output, x, norm_type, kernel_size, stride,
                            ceil_mode)

    op.__name__ = op.__qualname__ = func
    op.__doc__ = _LP_GRAD_DOC.format(n=nspatial, op=f"lp_pool{nspatial}d", output="its output",
                                     example=_LP_GRAD_EXAMPLES[nspatial])
    return op


_LP_GRAD_DOC = """Gradient of ``lp_pool{n}d`` with respect to ``x``, given ``grad_output``:
    PyTorch's autograd of its formula, step by step (same parameters as ``lp_pool{n}d``,
    without ``device``). Where a window's sum is 0 the gradient is 0 (relu's gradient at
    0) for ``norm_type >= 1``; for ``norm_type < 1`` a zero input gets ``0 * inf = NaN``,
    as in PyTorch.
""" + GRAD_SECTIONS

_LP_GRAD_EXAMPLES = {
    1: (">>> lp_pool1d_backward(np.ones((1, 2)), np.ones((1, 4)), 1, 2)\n"
        "    array([[1., 1., 1., 1.]])"),
    2: (">>> lp_pool2d_backward(np.ones((1, 1, 1)), np.ones((1, 2, 2)), 1, 2)\n"
        "    array([[[1., 1.],\n            [1., 1.]]])"),
    3: (">>> lp_pool3d_backward(np.ones((1, 1, 1, 1)), np.ones((1, 1, 2, 2)), 1, (1, 2, 2))\n"
        "    array([[[[1., 1.],\n             [1., 1.]]]])"),
}

lp_pool1d = _make_lp(1)
lp_pool2d = _make_lp(2)
lp_pool3d = _make_lp(3)
lp_pool1d_backward = _make_lp_backward(1)
lp_pool2d_backward = _make_lp_backward(2)
lp_pool3d_backward = _make_lp_backward(3)

__all__ = [
    "adaptive_avg_pool1d",
    "adaptive_avg_pool1d_backward",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_avg_pool3d",
    "adaptive_avg_pool3d_backward",
    "adaptive_max_pool1d",
    "adaptive_max_pool1d_backward",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward",
    "adaptive_max_pool3d",
    "adaptive_max_pool3d_backward",
    "lp_pool1d",
    "lp_pool1d_backward",
    "lp_pool2d",
    "lp_pool2d_backward",
    "lp_pool3d",
    "lp_pool3d_backward",
]
