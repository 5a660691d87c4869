"""Gradients of a scalar loss through convolution and pooling (``torch.nn.grad`` names).

``conv1d_input/conv2d_input/conv3d_input`` (gradient w.r.t. the input),
``conv1d_weight/conv2d_weight/conv3d_weight`` (w.r.t. the weight), ``conv_bias``, and
the pooling gradients ``max_pool1d/2d/3d``, ``avg_pool1d/2d/3d`` (from ``fastconv.pool``).
Every forward option is supported: stride, every padding form, dilation, groups and
``padding_mode`` (the input gradient of reflect/replicate/circular padding is folded back
onto the pixels the padded border copied). Results are bit-identical from run to run and
for any thread count.
"""

from __future__ import annotations

import math

import numpy as np

from fastconv import _dispatch
from fastconv._algorithms import check_winograd
from fastconv._docs import fill
from fastconv._plan import plan_conv_input, plan_conv_weight
from fastconv._validate import check_algorithm, result_dtype
from fastconv.conv import _RANKS, run_input_grad, wrap_inputs
from fastconv.pool import avg_pool1d_backward as avg_pool1d
from fastconv.pool import avg_pool2d_backward as avg_pool2d
from fastconv.pool import avg_pool3d_backward as avg_pool3d
from fastconv.pool import max_pool1d_backward as max_pool1d
from fastconv.pool import max_pool2d_backward as max_pool2d
from fastconv.pool import max_pool3d_backward as max_pool3d

_INPUT_DOC = """Gradient of a {rank} correlation with respect to its input ({shape}).

    ``conv{n}d(x, weight, ...)`` is linear in ``x``; this is its adjoint applied to
    ``grad_output``: ``vdot(conv{n}d(x, w), g) == vdot(x, conv{n}d_input(x.shape, w, g))``.

    Parameters
    ----------
    input_size : tuple of int
        Shape of the forward input, {shape_in} (with a stride above 1 several input
        sizes give the same output size, so it cannot be inferred).
    weight : array_like, shape (K, C // groups, {kernel})
    grad_output : array_like, shape {shape_out}
        Gradient of the loss with respect to the forward output.
    {stride}
    {padding}
    {dilation}
    {groups}
    {padding_mode}
    {device}
    {grad_algorithm}

    Returns
    -------
    ndarray, shape ``input_size``
        {dtypes}

    Raises
    ------
    ValueError
        Everything the forward op rejects, and a ``grad_output`` whose shape is not the
        forward output shape.

    Examples
    --------
    {example}
    """

_WEIGHT_DOC = """Gradient of a {rank} correlation with respect to its weight ({shape}).

    ``gw[k, c, r] = sum_{{n, o}} grad_output[n, k, o] * x_pad[n, c', o*stride + r*dilation]``
    with ``c' = group(k) * (C // groups) + c``.

    Parameters
    ----------
    input : array_like, shape {shape_in}
        The forward input.
    weight_size : tuple of int
        Shape of the weight, ``(K, C // groups, {kernel})``.
    grad_output : array_like, shape {shape_out}
    {stride}
    {padding}
    {dilation}
    {groups}
    {padding_mode}
    {device}
    {grad_algorithm}

    Returns
    -------
    ndarray, shape ``weight_size``
        float32 or float64 (``numpy.result_type(input, grad_output, float32)``).

    Raises
    ------
    ValueError
        Everything the forward op rejects, and a ``grad_output`` whose shape is not the
        forward output shape.

    Examples
    --------
    {example}
    """

_INPUT_EXAMPLES = {
    1: ">>> conv1d_input((1, 1, 3), [[[1., -1.]]], [[[1., 1.]]])\n    array([[[ 1.,  0., -1.]]])",
    2: (">>> conv2d_input((1, 1, 2, 2), np.ones((1, 1, 1, 1)), [[[[1., 2.], [3., 4.]]]],\n"
        "    ...              padding=\"same\")\n"
        "    array([[[[1., 2.],\n             [3., 4.]]]])"),
    3: (">>> conv3d_input((1, 1, 2, 2, 2), np.ones((1, 1, 2, 2, 2)), np.ones((1, 1, 1, 1, 1)))"
        "[0, 0, 0]\n    array([[1., 1.],\n           [1., 1.]])"),
}
_WEIGHT_EXAMPLES = {
    1: ">>> conv1d_weight([[[0., 1., 2.]]], (1, 1, 2), [[[1., 1.]]])\n    array([[[1., 3.]]])",
    2: (">>> conv2d_weight(np.arange(9.).reshape(1, 1, 3, 3), (1, 1, 2, 2), np.ones((1, 1, 2, 2)))"
        "\n    array([[[[ 8., 12.],\n             [20., 24.]]]])"),
    3: (">>> conv3d_weight(np.ones((1, 1, 2, 2, 2)), (1, 1, 1, 1, 1), np.ones((1, 1, 2, 2, 2)))"
        "\n    array([[[[[8.]]]]])"),
}


#: ``algorithm=`` choices of the gradients (the correlation each one runs, CPU only).
GRAD_ALGORITHMS = ("auto", "direct", "gemm")
#: The input gradient also takes "winograd" (stride 1, dilation 1, 2-D 3x3 kernels).
INPUT_GRAD_ALGORITHMS = GRAD_ALGORITHMS + ("winograd",)
_GRAD_ALGORITHM_DOC = """algorithm : {"auto", "direct", "gemm"}, keyword-only, default "auto"
        The CPU algorithm of the correlation the gradient runs (``fastconv.cpu.grad``):
        "auto" applies the forward rule of ``fastconv._algorithms`` to it; every choice
        gives the same answer within float rounding. The GPU runs "direct"."""
_INPUT_GRAD_ALGORITHM_DOC = """algorithm : {"auto", "direct", "gemm", "winograd"}, keyword-only
        Default "auto".
        The CPU algorithm of the correlation the gradient runs (``fastconv.cpu.grad``):
        "auto" applies the forward rule of ``fastconv._algorithms`` to it; every choice
        gives the same answer within float rounding. "winograd" needs stride 1,
        dilation 1, a 2-D 3x3 kernel and at least 8 channels per group (else
        ValueError). The GPU runs "direct"."""


def _to_host(out, name: str, *inputs):
    if name == "cuda" and not any(_dispatch.is_cuda_array(a) for a in inputs):
        return out.copy_to_host()
    return out


def _check_winograd_input(func: str, plan) -> None:
    """ValueError when ``algorithm="winograd"`` cannot run this input gradient (the
    stride-1 correlation of ``grad_output`` with the flipped, transposed weight)."""
    K, Cg = plan.w_shape[:2]
    wt_shape = (plan.groups * Cg, K // plan.groups) + tuple(plan.w_shape[2:])
    stride = tuple(d[2] for d in plan.spread_dst)
    if any(s != 1 for s in stride):
        raise ValueError(f"{func}: algorithm='winograd' needs stride 1, got stride "
                         f"{stride[3 - plan.nspatial:]}")
    check_winograd(func, wt_shape, plan.padded_shape[2:], stride, plan.dilation, plan.groups,
                   plan.nspatial)


def _make_input(nspatial: int):
    func = f"conv{nspatial}d_input"

    def op(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, device=None, algorithm="auto") -> np.ndarray:
        check_algorithm(algorithm, func, INPUT_GRAD_ALGORITHMS)
        name = _dispatch.choose(func, device, weight, grad_output)
        a = wrap_inputs(func, name, weight=weight, grad_output=grad_output)
        plan = plan_conv_input(func, nspatial, input_size, a["weight"], a["grad_output"],
                               stride, padding, dilation, groups, padding_mode)
        if algorithm == "winograd":
            _check_winograd_input(func, plan)
        out = run_input_grad(plan, name, a["grad_output"], a["weight"], None, algorithm)
        return _to_host(out, name, weight, grad_output)

    op.__name__ = op.__qualname__ = func
    op.__doc__ = _INPUT_DOC
    fill(n=nspatial, example=_INPUT_EXAMPLES[nspatial], grad_algorithm=_INPUT_GRAD_ALGORITHM_DOC,
         **_RANKS[nspatial])(op)
    return op


def _make_weight(nspatial: int):
    func = f"conv{nspatial}d_weight"

    def op(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1,  # noqa: A002
           padding_mode="zeros", *, device=None, algorithm="auto") -> np.ndarray:
        check_algorithm(algorithm, func, GRAD_ALGORITHMS)
        name = _dispatch.choose(func, device, input, grad_output)
        a = wrap_inputs(func, name, input=input, grad_output=grad_output)
        plan = plan_conv_weight(func, nspatial, a["input"], weight_size, a["grad_output"],
                                stride, padding, dilation, groups, padding_mode)
        be = _dispatch.backend(name)
        if not hasattr(be, "correlate_weight"):
            raise NotImplementedError(f"{func}: not implemented on device {name!r}")
        if 0 in plan.x_shape[:2]:  # an empty batch (zeros) or no input channels (empty)
            gw = be.zeros(plan.w_shape, plan.dtype)
        else:
            x5 = be.asarray(a["input"], plan.dtype).reshape(plan.x_shape)
            g5 = be.asarray(a["grad_output"], plan.dtype).reshape(plan.out_shape)
            in_place = name == "cpu" and plan.padding_mode == "zeros"  # CPU pads as it needs
            xp = x5 if in_place else be.pad(x5, plan.pads, plan.padding_mode)
            gw = be.empty(plan.w_shape, plan.dtype)
            be.correlate_weight(xp, g5, gw, np.array(plan.stride), np.array(plan.dilation),
                                plan.groups, **({"algorithm": algorithm, "pads": plan.pads}
                                                if in_place else
                                                {"algorithm": algorithm} if name == "cpu" else {}))
        out = be.finish(gw.reshape(tuple(int(v) for v in weight_size)), input)
        return _to_host(out, name, input, grad_output)

    op.__name__ = op.__qualname__ = func
    op.__doc__ = _WEIGHT_DOC
    fill(n=nspatial, example=_WEIGHT_EXAMPLES[nspatial], grad_algorithm=_GRAD_ALGORITHM_DOC,
         **_RANKS[nspatial])(op)
    return op


conv1d_input = _make_input(1)
conv2d_input = _make_input(2)
conv3d_input = _make_input(3)
conv1d_weight = _make_weight(1)
conv2d_weight = _make_weight(2)
conv3d_weight = _make_weight(3)


def conv_bias(grad_output, *, batched: bool = True, device=None) -> np.ndarray:
    """Gradient of a convolution with respect to its bias: ``grad_output`` summed over
    every axis but the channel axis.

    Parameters
    ----------
    grad_output : array_like, shape (N, K, *spatial), or (K, *spatial) with ``batched=False``
    batched : bool, keyword-only, default True
        Whether axis 0 is the batch axis (channels on axis 1) or the channel axis.
    device : {None, "cpu", "cuda"}, keyword-only
        As the other ops: ``None`` follows the data (a CUDA array sums on the GPU).

    Returns
    -------
    ndarray, shape (K,)
        float32 or float64.

    Examples
    --------
    >>> conv_bias(np.ones((2, 3, 4, 4)))
    array([32., 32., 32.])
    """
    func = "conv_bias"
    name = _dispatch.choose(func, device, grad_output)
    g = wrap_inputs(func, name, grad_output=grad_output)["grad_output"]
    shape = tuple(int(s) for s in g.shape)
    need = 2 if batched else 1
    if len(shape) < need:
        raise ValueError(
            f"{func}: grad_output must be at least {need}-D "
            f"({'(N, K, *spatial)' if batched else '(K, *spatial)'}), got {len(shape)}-D with "
            f"grad_output.shape={shape}"
        )
    lead = shape[:2] if batched else (1,) + shape[:1]
    g3_shape = lead + (math.prod(shape[len(lead) - (0 if batched else 1):]),)
    dtype = result_dtype(g)
    be = _dispatch.backend(name)
    g3 = be.asarray(g, dtype).reshape(g3_shape)
    out = be.empty((g3_shape[1],), dtype)
    be.sum_channels(g3, out)
    return _to_host(be.finish(out, grad_output), name, grad_output)


__all__ = [
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "conv1d_input",
    "conv2d_input",
    "conv3d_input",
    "conv1d_weight",
    "conv2d_weight",
    "conv3d_weight",
    "conv_bias",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
]


# the rest of the pooling family (appended): fc.grad.OP(grad_output, *the forward's arguments)
from fastconv.adaptive import adaptive_avg_pool1d_backward as adaptive_avg_pool1d  # noqa: E402
from fastconv.adaptive import adaptive_avg_pool2d_backward as adaptive_avg_pool2d  # noqa: E402
from fastconv.adaptive import adaptive_avg_pool3d_backward as adaptive_avg_pool3d  # noqa: E402
from fastconv.adaptive import adaptive_max_pool1d_backward as adaptive_max_pool1d  # noqa: E402
from fastconv.adaptive import adaptive_max_pool2d_backward as adaptive_max_pool2d  # noqa: E402
from fastconv.adaptive import adaptive_max_pool3d_backward as adaptive_max_pool3d  # noqa: E402
from fastconv.adaptive import lp_pool1d_backward as lp_pool1d  # noqa: E402
from fastconv.adaptive import lp_pool2d_backward as lp_pool2d  # noqa: E402
from fastconv.adaptive import lp_pool3d_backward as lp_pool3d  # noqa: E402
from fastconv.fold import fold_backward as fold  # noqa: E402
from fastconv.fold import unfold_backward as unfold  # noqa: E402
from fastconv.unpool import max_unpool1d_backward as max_unpool1d  # noqa: E402
from fastconv.unpool import max_unpool2d_backward as max_unpool2d  # noqa: E402
from fastconv.unpool import max_unpool3d_backward as max_unpool3d  # noqa: E402

__all__ += [
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    "fold",
    "lp_pool1d",
    "lp_pool2d",
    "lp_pool3d",
    "max_unpool1d",
    "max_unpool2d",
    "max_unpool3d",
    "unfold",
]
