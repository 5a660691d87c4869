"""Layers with a forward and a backward pass: ``Conv1d/Conv2d/Conv3d``, ``MaxPool2d``,
``AvgPool2d`` (PyTorch's constructor arguments and default initialisation).

``forward(x)`` (also ``layer(x)``) keeps a copy of its input (changing ``x`` in place
afterwards does not change the gradients; ``MaxPool2d`` with non-overlapping windows keeps
each maximum's window position instead, ``AvgPool2d`` only the shape);
``backward(grad_output)`` returns the gradient with respect to that input and, for
convolutions, stores ``weight_grad`` and ``bias_grad`` (overwritten on every call, not
accumulated; ``input_grad=False`` skips the input gradient and returns None).
"""

from __future__ import annotations

import math

import numpy as np

from fastconv import _dask, _dispatch, _run, conv, grad, pool
from fastconv._algorithms import correlation_core, grad_core
from fastconv._plan import plan_conv, plan_pool
from fastconv._shapes import resolve_padding
from fastconv._validate import as_int, check_padding_mode, ntuple


def _snapshot(x):
    """A private copy of a forward input: changing ``x`` in place after ``forward`` must
    not change what ``backward`` computes (one copy per forward; Dask arrays are
    immutable and kept as they are)."""
    if _dask.is_dask(x):
        return x
    if _dispatch.is_cuda_array(x):
        from numba import cuda

        src = x if getattr(type(x), "__cuda_ndarray__", False) else cuda.as_cuda_array(x)
        out = cuda.device_array(src.shape, src.dtype)
        out.copy_to_device(src)
        return out
    return np.array(x, copy=True)


class _Layer:
    """Remembers (a copy of) the last forward input for ``backward``."""

    _x = None

    def __call__(self, x):
        return self.forward(x)

    def _saved_input(self):
        if self._x is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call forward(x) first")
        return self._x


class _ConvNd(_Layer):
    nspatial = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 seed=None, dtype=np.float32):
        name, s = type(self).__name__, self.nspatial
        in_channels = as_int(in_channels, "in_channels", name, minimum=1)
        out_channels = as_int(out_channels, "out_channels", name, minimum=1)
        groups = as_int(groups, "groups", name, minimum=1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{name}: groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        if not isinstance(bias, bool | np.bool_):
            raise TypeError(f"{name}: bias must be True or False, got {bias!r}")
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            dtype = None
        if dtype not in (np.float32, np.float64):
            raise TypeError(
                f"{name}: dtype must be float32 or float64 (the weights are learned), "
                f"got {dtype!r}"
            )
        self.kernel_size = ntuple(kernel_size, s, "kernel_size", name, minimum=1)
        self.stride = ntuple(stride, s, "stride", name, minimum=1)
        self.dilation = ntuple(dilation, s, "dilation", name, minimum=1)
        resolve_padding(padding, self.kernel_size, self.stride, self.dilation, name)
        self.padding = padding
        self.padding_mode = check_padding_mode(padding_mode, name)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        # PyTorch's default: kaiming_uniform_(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        rng = np.random.default_rng(seed)
        fan_in = in_channels // groups * math.prod(self.kernel_size)
        bound = 1.0 / math.sqrt(fan_in)
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = rng.uniform(-bound, bound, shape).astype(dtype)
        self.bias = rng.uniform(-bound, bound, out_channels).astype(dtype) if bias else None
        self.weight_grad: np.ndarray | None = None
        self.bias_grad: np.ndarray | None = None

    def _kw(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups, padding_mode=self.padding_mode)

    _small = None  # the plan of a forward that ran the small-image GEMM
    _cols = None  # that forward's im2col blocks (reused by the next forward)

    def forward(self, x) -> np.ndarray:
        """``conv{n}d(x, weight, bias, ...)``; remembers ``x`` for :meth:`backward`.

        Where "auto" runs the small-image GEMM (``fastconv.cpu.small``), the layer also
        keeps the forward's ``im2col`` blocks, as PyTorch keeps its saved tensors: the
        weight gradient multiplies them again instead of gathering them a second time
        (same numbers as ``conv{n}d_weight``)."""
        self._small = None
        out = self._small_forward(x)
        if out is None:
            fn = getattr(conv, f"conv{self.nspatial}d")
            out = fn(x, self.weight, self.bias, **self._kw())
        self._x = _snapshot(x)
        return out

    def _small_forward(self, x):
        """The forward by ``fastconv.cpu.small`` with its blocks kept, exactly as
        ``conv{n}d`` runs it; None (nothing done) where ``conv{n}d`` would run another
        path (the checks and the choice are the library's own)."""
        s = self.nspatial
        if type(x) is not np.ndarray or x.ndim != s + 2 or self.padding_mode != "zeros":
            return None
        func = f"conv{s}d"
        name, a = _run.prepare(func, None, {"x": x, "weight": self.weight, "bias": self.bias})
        if name != "cpu":
            return None
        plan = plan_conv(func, s, a["x"], a["weight"], a["bias"], self.stride, self.padding,
                         self.dilation, self.groups, "zeros")
        if 0 in plan.x_shape[:2] or 0 in plan.out_shape:
            return None
        be = _dispatch.backend(name)
        before = getattr(correlation_core(name, be, "auto", plan), "small_before", None)
        if before is None:
            return None
        from fastconv.cpu import small

        x5 = be.asarray(a["x"], plan.dtype).reshape(plan.x_shape)
        w5 = be.asarray(a["weight"], plan.dtype).reshape(plan.w_shape)
        bias = (np.zeros(plan.w_shape[0], plan.dtype) if a["bias"] is None
                else be.asarray(a["bias"], plan.dtype))
        out = np.empty(plan.out_shape, plan.dtype)
        if self._cols is None:
            self._cols = []
        small.correlate(x5, w5, bias, out, plan.stride, plan.dilation, plan.groups, before,
                        saved=self._cols)
        self._small = plan
        return out.reshape(plan.user_shape(plan.out_shape))

    def _small_weight_grad(self, x, grad_output):
        """``conv{n}d_weight`` from the kept blocks (None where it does not apply)."""
        plan = self._small
        if (plan is None or type(grad_output) is not np.ndarray
                or grad_output.shape != plan.user_shape(plan.out_shape)
                or grad_output.dtype.kind != "f"):
            return None
        be = _dispatch.backend("cpu")
        core = grad_core("cpu", be, "auto", plan, "weight_grad")
        if not getattr(core, "small_cols", False):
            return None
        x5 = np.asarray(x, plan.dtype).reshape(plan.x_shape)
        g5 = np.asarray(grad_output, plan.dtype).reshape(plan.out_shape)
        gw = np.empty(plan.w_shape, plan.dtype)
        core(x5, g5, gw, cols=self._cols)
        return gw.reshape(self.weight.shape)

    def backward(self, grad_output, *, input_grad: bool = True) -> np.ndarray | None:
        """Gradient w.r.t. the last forward input; stores ``weight_grad`` and ``bias_grad``.

        ``input_grad=False`` skips the input gradient and returns None (a network's first
        layer, whose input is data: PyTorch's autograd skips it there too)."""
        x = self._saved_input()
        s = self.nspatial
        kw = self._kw()
        gx = (getattr(grad, f"conv{s}d_input")(np.shape(x), self.weight, grad_output, **kw)
              if input_grad else None)
        gw = self._small_weight_grad(x, grad_output)
        if gw is None:
            gw = getattr(grad, f"conv{s}d_weight")(x, self.weight.shape, grad_output, **kw)
        self.weight_grad = gw
        if self.bias is not None:
            self.bias_grad = grad.conv_bias(grad_output, batched=np.ndim(x) == s + 2)
        return gx

    def zero_grad(self) -> None:
        self.weight_grad = self.bias_grad = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding!r}, "
                f"dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}, "
                f"padding_mode={self.padding_mode!r})")


_CONV_LAYER_DOC = """{n}-D convolution layer (cross-correlation), PyTorch's ``nn.Conv{n}d``.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, dilation : int or tuple of {n} ints
    padding : int, tuple, (before, after) pairs, "valid", "same" or "full"
    groups : int
    bias : bool
    padding_mode : {{"zeros", "reflect", "replicate", "circular"}}
    seed : int or None
        Seeds ``numpy.random.default_rng`` for the initial weight and bias, both drawn
        from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with ``fan_in = in_channels / groups *
        prod(kernel_size)`` (PyTorch's default).
    dtype : float32 (default) or float64

    Attributes
    ----------
    weight : ndarray, shape (out_channels, in_channels // groups, *kernel_size)
    bias : ndarray, shape (out_channels,), or None
    weight_grad, bias_grad : ndarray or None
        Set by :meth:`backward`.

    Examples
    --------
    {example}
    """

_LAYER_EXAMPLES = {
    1: (">>> layer = Conv1d(1, 1, 2, bias=False, seed=0)\n"
        "    >>> layer.weight = np.array([[[1., -1.]]])\n"
        "    >>> layer(np.array([[[0., 1., 3.]]]))\n"
        "    array([[[-1., -2.]]])\n"
        "    >>> layer.backward(np.ones((1, 1, 2)))\n"
        "    array([[[ 1.,  0., -1.]]])\n"
        "    >>> layer.weight_grad\n"
        "    array([[[1., 4.]]])"),
    2: (">>> layer = Conv2d(3, 8, 3, padding=1, seed=0)\n"
        "    >>> y = layer(np.ones((2, 3, 5, 5), np.float32))\n"
        "    >>> y.shape, layer.backward(np.ones_like(y)).shape, layer.weight_grad.shape\n"
        "    ((2, 8, 5, 5), (2, 3, 5, 5), (8, 3, 3, 3))"),
    3: (">>> Conv3d(2, 4, (1, 3, 3), seed=0)(np.ones((2, 3, 5, 5))).shape\n"
        "    (4, 3, 3, 3)"),
}


def _conv_layer(n: int):
    cls = type(f"Conv{n}d", (_ConvNd,), {"nspatial": n})
    cls.__doc__ = _CONV_LAYER_DOC.format(n=n, example=_LAYER_EXAMPLES[n])
    cls.__module__ = __name__
    return cls


Conv1d = _conv_layer(1)
Conv2d = _conv_layer(2)
Conv3d = _conv_layer(3)


class MaxPool2d(_Layer):
    """2-D max pooling layer (PyTorch's ``nn.MaxPool2d``); ``backward`` sends each
    gradient to its window's first maximum.

    Examples
    --------
    >>> pool = MaxPool2d(2)
    >>> pool(np.array([[[[1., 2.], [4., 3.]]]]))
    array([[[[4.]]]])
    >>> pool.backward(np.array([[[[10.]]]]))
    array([[[[ 0.,  0.],
             [10.,  0.]]]])
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 ceil_mode: bool = False, return_indices: bool = False):
        self.kw = dict(kernel_size=kernel_size, stride=stride, padding=padding,
                       dilation=dilation, ceil_mode=ceil_mode)
        self.return_indices = return_indices
        self._codes = None

    def forward(self, x):
        """``max_pool2d(x, ...)``, or ``(values, indices)`` with ``return_indices=True``
        (the indices feed :class:`MaxUnpool2d`).

        For a float NumPy input, non-overlapping windows (stride = kernel_size, no padding
        or dilation) and 3x3 windows at stride 2 (padding 0 or 1, no dilation, either
        ceil_mode) keep each maximum's position in its window (one uint8 per output)
        instead of a copy of ``x`` (PyTorch keeps its int64 indices); ``backward`` then
        reads only those and ``grad_output``. The results are those of ``max_pool2d`` and
        ``grad.max_pool2d``, bit for bit."""
        self._codes = None
        plan = self._code_plan(x)
        if plan is not None:
            from fastconv.cpu import pool as cpool
            from fastconv.cpu import small

            x3 = np.ascontiguousarray(x).reshape((-1,) + x.shape[-2:])
            if plan.stride == plan.kernel:  # non-overlapping windows
                out, code = small.max_pool_windows(x3, *plan.kernel[1:])
            else:  # 3x3 windows at stride 2
                out, code = cpool.max_pool_codes(x3, plan.pads[1:], plan.out_shape[3:])
            self._codes = (code, plan)
            self._x = np.broadcast_to(np.zeros((), x.dtype), x.shape)  # shape and dtype
            return out.reshape(x.shape[:-2] + out.shape[1:])
        out = pool.max_pool2d(x, **self.kw, return_indices=self.return_indices)
        self._x = _snapshot(x)
        return out

    def _code_plan(self, x):
        """The pooling plan when a code-keeping path applies to ``x``, else None
        (arguments checked as ``max_pool2d`` checks them)."""
        if (self.return_indices or type(x) is not np.ndarray or x.ndim not in (3, 4)
                or x.dtype not in (np.float32, np.float64)):
            return None
        plan = plan_pool("max_pool2d", 2, x, self.kw["kernel_size"], self.kw["stride"],
                         self.kw["padding"], self.kw["dilation"], self.kw["ceil_mode"], "max")
        kh, kw = plan.kernel[1:]
        if (plan.stride[1:] == (kh, kw) and not any(plan.pads)
                and plan.dilation == (1, 1, 1) and kh * kw <= 256
                and plan.out_shape[3:] == (x.shape[-2] // kh, x.shape[-1] // kw)):
            return plan
        from fastconv.cpu import pool as cpool

        return plan if cpool.three_s2(plan.kernel, plan.stride, plan.pads,
                                      plan.dilation) else None

    def backward(self, grad_output) -> np.ndarray:
        x = self._saved_input()
        if self._codes is not None and (
                np.shape(grad_output) == x.shape[:-2] + self._codes[1].out_shape[3:]):
            from fastconv.cpu import pool as cpool
            from fastconv.cpu import small

            code, plan = self._codes
            g = np.ascontiguousarray(grad_output, dtype=x.dtype).reshape(
                (code.shape[0],) + plan.out_shape[3:])
            if plan.stride == plan.kernel:
                shape = (code.shape[0],) + x.shape[-2:]
                gx = small.max_pool_windows_backward(g, code, shape, *plan.kernel[1:])
            else:
                gx = cpool.max_pool_codes_backward(g, code, x.shape[-2:], plan.pads[1:])
            return gx.reshape(x.shape)
        return grad.max_pool2d(grad_output, x, **self.kw)


class AvgPool2d(_Layer):
    """2-D average pooling layer (PyTorch's ``nn.AvgPool2d``).

    Examples
    --------
    >>> pool = AvgPool2d(2)
    >>> pool(np.array([[[[1., 2.], [4., 3.]]]]))
    array([[[[2.5]]]])
    >>> pool.backward(np.array([[[[4.]]]]))
    array([[[[1., 1.],
             [1., 1.]]]])
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None):
        self.kw = dict(kernel_size=kernel_size, stride=stride, padding=padding,
                       ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                       divisor_override=divisor_override)

    def forward(self, x) -> np.ndarray:
        out = pool.avg_pool2d(x, **self.kw)
        # the gradient needs only the input's shape and dtype: a zero-stride stand-in
        self._x = x if _dispatch.is_cuda_array(x) or _dask.is_dask(x) else np.broadcast_to(
            np.zeros((), np.asarray(x).dtype), np.shape(x))
        return out

    def backward(self, grad_output) -> np.ndarray:
        return grad.avg_pool2d(grad_output, self._saved_input(), **self.kw)


__all__ = ["AvgPool2d", "Conv1d", "Conv2d", "Conv3d", "MaxPool2d"]


# --- the rest of the pooling family (appended) -----------------------------------------


class AdaptiveAvgPool2d(_Layer):
    """2-D adaptive average pooling layer (PyTorch's ``nn.AdaptiveAvgPool2d``).

    Examples
    --------
    >>> gap = AdaptiveAvgPool2d(1)
    >>> gap(np.array([[[[1., 2.], [4., 3.]]]]))
    array([[[[2.5]]]])
    >>> gap.backward(np.array([[[[4.]]]]))
    array([[[[1., 1.],
             [1., 1.]]]])
    """

    def __init__(self, output_size):
        self.output_size = output_size

    def forward(self, x) -> np.ndarray:
        from fastconv.adaptive import adaptive_avg_pool2d

        out = adaptive_avg_pool2d(x, self.output_size)
        self._x = _snapshot(x)
        return out

    def backward(self, grad_output) -> np.ndarray:
        return grad.adaptive_avg_pool2d(grad_output, self._saved_input(), self.output_size)


class AdaptiveMaxPool2d(_Layer):
    """2-D adaptive max pooling layer (PyTorch's ``nn.AdaptiveMaxPool2d``); with
    ``return_indices=True`` ``forward`` returns ``(values, indices)``.

    Examples
    --------
    >>> pool = AdaptiveMaxPool2d((1, 2))
    >>> pool(np.array([[[[1., 2.], [4., 3.]]]]))
    array([[[[4., 3.]]]])
    >>> pool.backward(np.array([[[[10., 20.]]]]))
    array([[[[ 0.,  0.],
             [10., 20.]]]])
    """

    def __init__(self, output_size, return_indices: bool = False):
        self.output_size = output_size
        self.return_indices = return_indices

    def forward(self, x):
        from fastconv.adaptive import adaptive_max_pool2d

        out = adaptive_max_pool2d(x, self.output_size, self.return_indices)
        self._x = _snapshot(x)
        return out

    def backward(self, grad_output) -> np.ndarray:
        return grad.adaptive_max_pool2d(grad_output, self._saved_input(), self.output_size)


class MaxUnpool2d(_Layer):
    """2-D max-unpooling layer (PyTorch's ``nn.MaxUnpool2d``): ``forward(x, indices,
    output_size=None)`` with the indices of ``MaxPool2d(..., return_indices=True)``;
    ``backward(grad_output)`` is the gradient with respect to ``x``.

    Examples
    --------
    >>> pool, unpool = MaxPool2d(2, return_indices=True), MaxUnpool2d(2)
    >>> y, idx = pool(np.array([[[[1., 2.], [4., 3.]]]]))
    >>> unpool(y, idx)
    array([[[[0., 0.],
             [4., 0.]]]])
    >>> unpool.backward(np.array([[[[1., 2.], [3., 4.]]]]))
    array([[[[3.]]]])
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        self.kw = dict(kernel_size=kernel_size, stride=stride, padding=padding)
        self._indices = self._output_size = None

    def __call__(self, x, indices, output_size=None):
        return self.forward(x, indices, output_size)

    def forward(self, x, indices, output_size=None) -> np.ndarray:
        from fastconv.unpool import max_unpool2d

        out = max_unpool2d(x, indices, **self.kw, output_size=output_size)
        self._x, self._indices = _snapshot(x), _snapshot(indices)
        self._output_size = output_size
        return out

    def backward(self, grad_output) -> np.ndarray:
        x = self._saved_input()
        return grad.max_unpool2d(grad_output, x, self._indices, **self.kw,
                                 output_size=self._output_size)


__all__ += ["AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "MaxUnpool2d"]
