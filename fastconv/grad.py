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

import numpy as np

from fastconv import _run
from fastconv._docs import rank_doc
from fastconv._run import GRAD_ALGORITHMS, INPUT_GRAD_ALGORITHMS  # noqa: F401
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


_GRAD_ALGORITHM_DOC = """algorithm : {"auto", "direct", "gemm"}, keyword-only, default "auto"
        The CPU algorithm of the correlation the gradient runs: "auto" is the algorithm
        registry's choice for it (``fastconv._algorithms``; ``fastconv.explain`` shows
        it); every choice gives the same answer within float rounding. The GPU runs
        "direct"."""
_INPUT_GRAD_ALGORITHM_DOC = """algorithm : {"auto", "direct", "gemm", "winograd"}, keyword-only
        Default "auto".
        The CPU algorithm of the correlation the gradient runs: "auto" is the algorithm
        registry's choice for it (``fastconv._algorithms``; ``fastconv.explain`` shows
        it); every choice
        gives the same answer within float rounding. "winograd" needs stride 1,
        dilation 1, a 2-D 3x3 kernel and at least 8 channels per group (else
        ValueError). The GPU runs "direct"."""


def _input_doc(nspatial: int):
    return rank_doc(_INPUT_DOC, nspatial, example=_INPUT_EXAMPLES[nspatial],
                    grad_algorithm=_INPUT_GRAD_ALGORITHM_DOC)


def _weight_doc(nspatial: int):
    return rank_doc(_WEIGHT_DOC, nspatial, example=_WEIGHT_EXAMPLES[nspatial],
                    grad_algorithm=_GRAD_ALGORITHM_DOC)


@_input_doc(1)
def conv1d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1,
                 padding_mode="zeros", *, device=None, algorithm="auto") -> np.ndarray:
    return _run.conv_input("conv1d_input", 1, input_size, weight, grad_output, stride,
                           padding, dilation, groups, padding_mode, device, algorithm)


@_input_doc(2)
def conv2d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1,
                 padding_mode="zeros", *, device=None, algorithm="auto") -> np.ndarray:
    return _run.conv_input("conv2d_input", 2, input_size, weight, grad_output, stride,
                           padding, dilation, groups, padding_mode, device, algorithm)


@_input_doc(3)
def conv3d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1,
                 padding_mode="zeros", *, device=None, algorithm="auto") -> np.ndarray:
    return _run.conv_input("conv3d_input", 3, input_size, weight, grad_output, stride,
                           padding, dilation, groups, padding_mode, device, algorithm)


@_weight_doc(1)
def conv1d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1,  # noqa: A002
                  groups=1, padding_mode="zeros", *, device=None,
                  algorithm="auto") -> np.ndarray:
    return _run.conv_weight("conv1d_weight", 1, input, weight_size, grad_output, stride,
                            padding, dilation, groups, padding_mode, device, algorithm)


@_weight_doc(2)
def conv2d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1,  # noqa: A002
                  groups=1, padding_mode="zeros", *, device=None,
                  algorithm="auto") -> np.ndarray:
    return _run.conv_weight("conv2d_weight", 2, input, weight_size, grad_output, stride,
                            padding, dilation, groups, padding_mode, device, algorithm)


@_weight_doc(3)
def conv3d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1,  # noqa: A002
                  groups=1, padding_mode="zeros", *, device=None,
                  algorithm="auto") -> np.ndarray:
    return _run.conv_weight("conv3d_weight", 3, input, weight_size, grad_output, stride,
                            padding, dilation, groups, padding_mode, device, algorithm)


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
    return _run.conv_bias("conv_bias", grad_output, batched, device)


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
