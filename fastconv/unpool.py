"""Max-unpooling (the partial inverse of max pooling), forward and backward, as
``torch.nn.functional.max_unpool1d/2d/3d``: validate -> dispatch.

``max_unpool2d(x, indices, kernel_size, stride=None, padding=0, output_size=None)``
writes each ``x`` value at its flat index (``indices`` from ``max_pool2d(...,
return_indices=True)``) of a zero output plane; the gradient gathers ``grad_output`` at
the same indices. A Dask array input is computed eagerly (the scatter needs whole
planes) and gives a NumPy array.
"""

from __future__ import annotations

import math

import numpy as np

from fastconv import _dask, _dispatch, _shapes
from fastconv._dispatch import to_host
from fastconv._docs import GRAD_SECTIONS, fill
from fastconv._plan import shape_of
from fastconv._run import deliver, prepare
from fastconv._validate import ntuple, result_dtype
from fastconv.adaptive import _check_grad_output, _check_pool_input


def _eager(a):
    """A Dask array computed (unpooling and its gradient run eagerly)."""
    return a.compute() if _dask.is_dask(a) else a


def _plan(func, nspatial, x, indices, kernel_size, stride, padding, output_size):
    """(lead, spatial, out_spatial): checked shapes and the output size."""
    shape = shape_of(x)
    nlead = _check_pool_input(func, nspatial, shape)
    if shape_of(indices) != shape:
        raise ValueError(
            f"{func}: indices must have the shape of x, got indices.shape="
            f"{shape_of(indices)} and x.shape={shape}"
        )
    if indices.dtype.kind not in "iu":
        raise TypeError(f"{func}: indices must be an integer array (int64 from max_pool with "
                        f"return_indices=True), got dtype {indices.dtype}")
    kernel = ntuple(kernel_size, nspatial, "kernel_size", func, minimum=1)
    strides = kernel if stride is None else ntuple(stride, nspatial, "stride", func, minimum=1)
    pads = ntuple(padding, nspatial, "padding", func, minimum=0)
    spatial = shape[nlead:]
    out = _shapes.unpool_output_size(spatial, kernel, strides, pads, output_size, func)
    return shape[:nlead], spatial, out


def _bad_indices(func, indices, size: int, out_spatial) -> ValueError:
    flat = np.asarray(indices).reshape(-1)
    bad = flat[(flat < 0) | (flat >= size)]
    return ValueError(
        f"{func}: found an invalid max index {int(bad[0])} in indices (output planes are "
        f"of size {'x'.join(map(str, out_spatial))} = {size}; an index must be in [0, {size}))"
    )


def _forward(func, nspatial, x, indices, kernel_size, stride, padding, output_size, device):
    x, indices = _eager(x), _eager(indices)
    name, a = prepare(func, device, {"x": x, "indices": indices})
    lead, spatial, out_sp = _plan(func, nspatial, a["x"], a["indices"], kernel_size, stride,
                                  padding, output_size)
    be = _dispatch.backend(name)
    dtype = result_dtype(a["x"])
    planes, m = math.prod(lead), math.prod(out_sp)
    x2 = be.asarray(a["x"], dtype).reshape(planes, math.prod(spatial))
    i2 = be.asarray(a["indices"], np.int64).reshape(planes, math.prod(spatial))
    out = be.empty((planes, m), dtype)
    if be.max_unpool(x2, i2, out):
        raise _bad_indices(func, to_host(i2), m, out_sp)
    return deliver(name, out.reshape(lead + out_sp), a["x"], x)


def _backward(func, nspatial, grad_output, x, indices, kernel_size, stride, padding,
              output_size):
    grad_output, x, indices = _eager(grad_output), _eager(x), _eager(indices)
    name, a = prepare(func, None, {"grad_output": grad_output, "x": x, "indices": indices})
    lead, spatial, out_sp = _plan(func, nspatial, a["x"], a["indices"], kernel_size, stride,
                                  padding, output_size)
    _check_grad_output(func, lead + out_sp, a["grad_output"], a["x"])
    be = _dispatch.backend(name)
    dtype = result_dtype(a["x"], a["grad_output"])
    planes, m, n = math.prod(lead), math.prod(out_sp), math.prod(spatial)
    g2 = be.asarray(a["grad_output"], dtype).reshape(planes, m)
    i2 = be.asarray(a["indices"], np.int64).reshape(planes, n)
    gx = be.empty((planes, n), dtype)
    if be.max_unpool_backward(g2, i2, gx):
        raise _bad_indices(func, to_host(i2), m, out_sp)
    return deliver(name, gx.reshape(lead + spatial), a["x"], x)


_DOC = """Max-unpooling of {rank} signals ({shape}), as torch's ``max_unpool{n}d``.

    ``y`` is zero except ``y[n, c].flat[indices[n, c, i]] = x[n, c, i]`` (a repeated index
    keeps the last value written, in input order, as PyTorch's CPU kernel).

    Parameters
    ----------
    x : array_like, shape {shape_in}
    indices : array_like of int, shape of ``x``
        Flat indices into each output plane, as ``max_pool{n}d(..., return_indices=True)``
        returns them.
    kernel_size : int or tuple of int
    stride : int, tuple of int or None, default None
        ``None`` means ``kernel_size``.
    padding : int or tuple of int, default 0
    output_size : tuple of int, optional
        The spatial output size (or the whole ``(N, C, *spatial)`` shape); by default
        ``(n - 1)*stride - 2*padding + kernel_size``, and a given size must lie strictly
        within ``stride`` of that (PyTorch's rule), e.g. to undo a pooling whose input
        size was odd.
    {device}

    Returns
    -------
    ndarray, shape ``(N, C, *output_size)`` or ``(C, *output_size)``

    Raises
    ------
    ValueError
        Wrong rank, ``indices`` not of ``x``'s shape, an index outside the output plane,
        an ``output_size`` of the wrong length or out of range.
    TypeError
        Non-integer ``indices``; complex, bool, object or string ``x``.

    Examples
    --------
    {example}
    """

_EXAMPLES = {
    1: (">>> max_unpool1d([[5., 7.]], [[1, 2]], 2)\n"
        "    array([[0., 5., 7., 0.]])"),
    2: (">>> max_unpool2d([[[4.]]], [[[3]]], 2)\n"
        "    array([[[0., 0.],\n            [0., 4.]]])"),
    3: (">>> max_unpool3d([[[[8.]]]], [[[[7]]]], 2)[0, 1]\n"
        "    array([[0., 0.],\n           [0., 8.]])"),
}
_SHAPES = {
    1: dict(shape_in="(N, C, L) or (C, L)", shape="(N, C, L) -> (N, C, L_out)"),
    2: dict(shape_in="(N, C, H, W) or (C, H, W)",
            shape="(N, C, H, W) -> (N, C, H_out, W_out)"),
    3: dict(shape_in="(N, C, D, H, W) or (C, D, H, W)",
            shape="(N, C, D, H, W) -> (N, C, D_out, H_out, W_out)"),
}
_RANK = {1: "1-D", 2: "2-D", 3: "3-D"}


def _make(nspatial: int):
    func = f"max_unpool{nspatial}d"

    def op(x, indices, kernel_size, stride=None, padding=0, output_size=None, *,
           device: str | None = None):
        return _forward(func, nspatial, x, indices, kernel_size, stride, padding, output_size,
                        device)

    op.__name__ = op.__qualname__ = func
    op.__doc__ = _DOC
    return fill(n=nspatial, rank=_RANK[nspatial], example=_EXAMPLES[nspatial],
                **_SHAPES[nspatial])(op)


_GRAD_DOC = """Gradient of ``max_unpool{n}d`` with respect to ``x``, given ``grad_output``:
    ``gx[n, c, i] = grad_output[n, c].flat[indices[n, c, i]]`` (the indices get no
    gradient). Same parameters as ``max_unpool{n}d``, without ``device``.
""" + GRAD_SECTIONS

_GRAD_EXAMPLES = {
    1: (">>> max_unpool1d_backward([[1., 2., 3., 4.]], [[5., 7.]], [[1, 2]], 2)\n"
        "    array([[2., 3.]])"),
    2: (">>> max_unpool2d_backward([[[1., 2.], [3., 4.]]], [[[9.]]], [[[3]]], 2)\n"
        "    array([[[4.]]])"),
    3: (">>> max_unpool3d_backward(np.arange(8.).reshape(1, 2, 2, 2), [[[[9.]]]], [[[[6]]]], 2)\n"
        "    array([[[[6.]]]])"),
}


def _make_backward(nspatial: int):
    func = f"max_unpool{nspatial}d_backward"

    def op(grad_output, x, indices, kernel_size, stride=None, padding=0, output_size=None):
        return _backward(func, nspatial, grad_output, x, indices, kernel_size, stride,
                         padding, output_size)

    op.__name__ = op.__qualname__ = func
    op.__doc__ = _GRAD_DOC.format(n=nspatial, op=f"max_unpool{nspatial}d", output="its output",
                                  example=_GRAD_EXAMPLES[nspatial])
    return op


max_unpool1d = _make(1)
max_unpool2d = _make(2)
max_unpool3d = _make(3)
max_unpool1d_backward = _make_backward(1)
max_unpool2d_backward = _make_backward(2)
max_unpool3d_backward = _make_backward(3)

__all__ = [
    "max_unpool1d",
    "max_unpool1d_backward",
    "max_unpool2d",
    "max_unpool2d_backward",
    "max_unpool3d",
    "max_unpool3d_backward",
]
