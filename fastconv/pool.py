"""Max and average pooling, forward and backward: validate -> plan -> dispatch.

``max_pool1d/2d/3d`` and ``avg_pool1d/2d/3d`` follow ``torch.nn.functional`` exactly
(``stride=None`` means ``stride = kernel_size``; max pooling pads with -inf; ``ceil_mode``
drops a last window that would start in the right padding). ``max_pool*_backward`` and
``avg_pool*_backward`` are the gradients (``fc.grad.max_pool2d`` etc.).
"""

from __future__ import annotations

from fastconv import _run
from fastconv._docs import GRAD_SECTIONS, fill

_RANKS = {
    1: dict(rank="1-D", shape="(N, C, L) -> (N, C, L_out)", shape_in="(N, C, L) or (C, L)"),
    2: dict(rank="2-D", shape="(N, C, H, W) -> (N, C, H_out, W_out)",
            shape_in="(N, C, H, W) or (C, H, W)"),
    3: dict(rank="3-D", shape="(N, C, D, H, W) -> (N, C, D_out, H_out, W_out)",
            shape_in="(N, C, D, H, W) or (C, D, H, W)"),
}

_POOL_PARAMS = """kernel_size : int or tuple of int
        Window size per spatial axis (>= 1).
    stride : int, tuple of int or None, default None
        Step between windows; ``None`` (or ``()``, as PyTorch) means ``kernel_size``.
    padding : int or tuple of int, default 0
        Implicit padding on both sides of each axis, at most half the window.
        A one-element tuple applies to every axis (PyTorch's ``padding=(1,)``)."""

_MAX_DOC = """Max pooling of a batch of {rank} signals ({shape}), as torch's ``max_pool{n}d``.

    y[n, c, o] = max over taps r of x_pad[n, c, o*stride + r*dilation], x padded with -inf.
    A NaN in a window gives NaN.

    Parameters
    ----------
    x : array_like, shape {shape_in}
    {pool_params}
        PyTorch's rule, ``padding <= kernel_size // 2``; a dilated window lying
        entirely in the padding is refused (PyTorch gives -inf and an index outside
        the input there).
    dilation : int or tuple of int, default 1
        Spacing between window taps (>= 1).
    ceil_mode : bool, default False
        Use ceil instead of floor for the output size (a last window starting in the
        right padding is dropped).
    return_indices : bool, default False
        Also return the int64 flat index of each maximum within its input plane
        (``(d*H + h)*W + w``), the first maximum on ties (a NaN wins), as PyTorch.
    {device}

    Returns
    -------
    ndarray, or (ndarray, ndarray of int64) with ``return_indices``
        {pool_dtypes}

    Raises
    ------
    ValueError
        Wrong rank, kernel_size/stride/dilation < 1, negative padding, padding larger
        than half the window, a window entirely in the padding, zero channels or an
        empty spatial axis, output size < 1 (an empty batch gives empty results).
    TypeError
        Complex, object or string input, or inputs that are all bool.

    Examples
    --------
    {example}
    """

_AVG_DOC = """Average pooling of a batch of {rank} signals ({shape}), as torch's ``avg_pool{n}d``.

    y[n, c, o] = sum of the window inside x / divisor, where the divisor is
    ``divisor_override`` if given, else the window size counting padding (up to the
    padded input's end) when ``count_include_pad``, else the number of input elements.

    Parameters
    ----------
    x : array_like, shape {shape_in}
    {pool_params}
        PyTorch's rule, ``padding <= kernel_size // 2``.
    ceil_mode : bool, default False
        Use ceil instead of floor for the output size.
    count_include_pad : bool, default True
        Count the zero padding in the divisor.
    divisor_override : int, optional
        Divide every window sum by this (non-zero) number instead.
    {device}

    Returns
    -------
    ndarray
        {pool_dtypes}

    Raises
    ------
    ValueError
        Wrong rank, kernel_size/stride < 1, negative padding, padding larger than half the
        window, divisor_override == 0, output size < 1.
    TypeError
        Complex, object or string input, or inputs that are all bool.

    Examples
    --------
    {example}
    """

_DTYPES = """float32 and float64 are computed natively and preserved; other real dtypes are
        promoted with ``numpy.result_type(x, float32)``."""

_EXAMPLES = {
    ("max", 1): ">>> max_pool1d([[1., 3., 2., 0.]], 2)\n    array([[3., 2.]])",
    ("max", 2): (">>> max_pool2d(np.arange(9.).reshape(1, 3, 3), 2, stride=1)\n"
                 "    array([[[4., 5.],\n            [7., 8.]]])"),
    ("max", 3): (">>> max_pool3d(np.arange(8.).reshape(1, 2, 2, 2), 2)\n"
                 "    array([[[[7.]]]])"),
    ("avg", 1): ">>> avg_pool1d([[1., 3., 2., 0.]], 2)\n    array([[2., 1.]])",
    ("avg", 2): (">>> avg_pool2d(np.arange(9.).reshape(1, 3, 3), 2, stride=1)\n"
                 "    array([[[2., 3.],\n            [5., 6.]]])"),
    ("avg", 3): (">>> avg_pool3d(np.arange(8.).reshape(1, 2, 2, 2), 2)\n"
                 "    array([[[[3.5]]]])"),
}


def _pool_doc(kind: str, nspatial: int):
    def decorate(op):
        op.__doc__ = _MAX_DOC if kind == "max" else _AVG_DOC
        return fill(n=nspatial, pool_params=_POOL_PARAMS, pool_dtypes=_DTYPES,
                    example=_EXAMPLES[(kind, nspatial)], **_RANKS[nspatial])(op)

    return decorate


@_pool_doc("max", 1)
def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False, *, device: str | None = None):
    return _run.max_pool("max_pool1d", 1, x, kernel_size, stride, padding, dilation,
                         ceil_mode, return_indices, device)


@_pool_doc("max", 2)
def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False, *, device: str | None = None):
    return _run.max_pool("max_pool2d", 2, x, kernel_size, stride, padding, dilation,
                         ceil_mode, return_indices, device)


@_pool_doc("max", 3)
def max_pool3d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False, *, device: str | None = None):
    return _run.max_pool("max_pool3d", 3, x, kernel_size, stride, padding, dilation,
                         ceil_mode, return_indices, device)


@_pool_doc("avg", 1)
def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None, *,
               device: str | None = None):
    return _run.avg_pool("avg_pool1d", 1, x, kernel_size, stride, padding, ceil_mode,
                         count_include_pad, divisor_override, device)


@_pool_doc("avg", 2)
def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None, *,
               device: str | None = None):
    return _run.avg_pool("avg_pool2d", 2, x, kernel_size, stride, padding, ceil_mode,
                         count_include_pad, divisor_override, device)


@_pool_doc("avg", 3)
def avg_pool3d(x, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None, *,
               device: str | None = None):
    return _run.avg_pool("avg_pool3d", 3, x, kernel_size, stride, padding, ceil_mode,
                         count_include_pad, divisor_override, device)


_GRAD_DOC = """Gradient of ``{func}`` with respect to ``x``, given ``grad_output``.

    Same parameters as ``{func}`` (without ``return_indices``/``device``; the data picks
    the device). {rule}
""" + GRAD_SECTIONS

_GRAD_EXAMPLES = {
    "max": ">>> {func}_backward(np.ones({oshape}), np.arange({n}.).reshape({xshape}), 2)\n"
           "    array({gmax})",
    "avg": ">>> {func}_backward(np.ones({oshape}), np.arange({n}.).reshape({xshape}), 2)\n"
           "    array({gavg})",
}
_GRAD_CASES = {
    1: dict(oshape="(1, 1)", n=2, xshape="1, 2", gmax="[[0., 1.]]", gavg="[[0.5, 0.5]]"),
    2: dict(oshape="(1, 1, 1)", n=4, xshape="1, 2, 2", gmax="[[[0., 0.],\n            [0., 1.]]]",
            gavg="[[[0.25, 0.25],\n            [0.25, 0.25]]]"),
    3: dict(oshape="(1, 1, 1, 1)", n=8, xshape="1, 2, 2, 2",
            gmax="[[[[0., 0.],\n             [0., 0.]],\n    <BLANKLINE>\n            [[0., 0.],\n"
                 "             [0., 1.]]]]",
            gavg="[[[[0.125, 0.125],\n             [0.125, 0.125]],\n    <BLANKLINE>\n"
                 "            [[0.125, 0.125],\n             [0.125, 0.125]]]]"),
}


def _grad_doc(kind: str, nspatial: int):
    func = f"{kind}_pool{nspatial}d"
    rule = ("Each grad_output element goes to its window's maximum (the first one on "
            "ties, as PyTorch)."
            if kind == "max" else "Each window spreads grad_output / divisor evenly over "
            "its input elements.")
    example = _GRAD_EXAMPLES[kind].format(func=func, **_GRAD_CASES[nspatial])

    def decorate(op):
        op.__doc__ = _GRAD_DOC.format(func=func, rule=rule, example=example, op=func,
                                      output="the pooling output")
        return op

    return decorate


@_grad_doc("max", 1)
def max_pool1d_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode: bool = False):
    return _run.pool_backward("max_pool1d_backward", 1, "max", grad_output, x, kernel_size,
                              stride, padding, dilation, ceil_mode)


@_grad_doc("max", 2)
def max_pool2d_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode: bool = False):
    return _run.pool_backward("max_pool2d_backward", 2, "max", grad_output, x, kernel_size,
                              stride, padding, dilation, ceil_mode)


@_grad_doc("max", 3)
def max_pool3d_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode: bool = False):
    return _run.pool_backward("max_pool3d_backward", 3, "max", grad_output, x, kernel_size,
                              stride, padding, dilation, ceil_mode)


@_grad_doc("avg", 1)
def avg_pool1d_backward(grad_output, x, kernel_size, stride=None, padding=0,
                        ceil_mode: bool = False, count_include_pad: bool = True,
                        divisor_override: int | None = None):
    return _run.pool_backward("avg_pool1d_backward", 1, "avg", grad_output, x, kernel_size,
                              stride, padding, 1, ceil_mode, count_include_pad,
                              divisor_override)


@_grad_doc("avg", 2)
def avg_pool2d_backward(grad_output, x, kernel_size, stride=None, padding=0,
                        ceil_mode: bool = False, count_include_pad: bool = True,
                        divisor_override: int | None = None):
    return _run.pool_backward("avg_pool2d_backward", 2, "avg", grad_output, x, kernel_size,
                              stride, padding, 1, ceil_mode, count_include_pad,
                              divisor_override)


@_grad_doc("avg", 3)
def avg_pool3d_backward(grad_output, x, kernel_size, stride=None, padding=0,
                        ceil_mode: bool = False, count_include_pad: bool = True,
                        divisor_override: int | None = None):
    return _run.pool_backward("avg_pool3d_backward", 3, "avg", grad_output, x, kernel_size,
                              stride, padding, 1, ceil_mode, count_include_pad,
                              divisor_override)


__all__ = [
    "avg_pool1d",
    "avg_pool1d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "avg_pool3d",
    "avg_pool3d_backward",
    "max_pool1d",
    "max_pool1d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "max_pool3d",
    "max_pool3d_backward",
]
