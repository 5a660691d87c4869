"""``unfold`` (im2col: sliding blocks as columns) and ``fold`` (col2im: columns summed
back into place), as ``torch.nn.functional.unfold/fold``: each is the other's adjoint,
so each one's gradient is the other.

Layout (PyTorch's): ``x`` is ``(N, C, H, W)`` or ``(C, H, W)``; the columns are
``(N, C*KH*KW, L)`` or ``(C*KH*KW, L)`` with row ``(c*KH + i)*KW + j`` for tap ``(i, j)``
of channel ``c`` and ``L = OH*OW`` blocks in row-major order. A convolution is then one
matrix product: ``conv2d(x, w) == (w.reshape(K, -1) @ unfold(x, w.shape[2:])).reshape(N,
K, OH, OW)``. A Dask array gives a lazy Dask array from ``unfold`` (H and W in one
chunk); ``fold`` and both gradients compute a Dask input eagerly and give NumPy.
"""

from __future__ import annotations

import math

import numpy as np

from fastconv import _dispatch, _shapes
from fastconv._dask import is_dask
from fastconv._dispatch import to_host
from fastconv._plan import shape_of
from fastconv._run import deliver, prepare
from fastconv._validate import ntuple, result_dtype
from fastconv.unpool import _eager


def _params(func, kernel_size, dilation, padding, stride):
    return (ntuple(kernel_size, 2, "kernel_size", func, minimum=1),
            ntuple(dilation, 2, "dilation", func, minimum=1),
            ntuple(padding, 2, "padding", func, minimum=0),
            ntuple(stride, 2, "stride", func, minimum=1))


def _blocks(func, spatial, k, d, p, s, what: str):
    blocks = _shapes.sliding_blocks(spatial, k, d, p, s)
    if min(blocks) < 1:
        raise ValueError(
            f"{func}: given {what} with spatial size {tuple(spatial)}, kernel_size={k}, "
            f"dilation={d}, padding={p}, stride={s}, the array of sliding blocks would be "
            f"{blocks}, but each size must be at least 1"
        )
    return blocks


def _unfold_plan(func, x, kernel_size, dilation, padding, stride):
    shape = shape_of(x)
    if len(shape) not in (3, 4):
        raise ValueError(
            f"{func}: x must be 4-D (N, C, H, W) or 3-D (C, H, W), got {len(shape)}-D with "
            f"x.shape={shape}"
        )
    k, d, p, s = _params(func, kernel_size, dilation, padding, stride)
    lead = shape[:-2]
    if any(v == 0 for v in shape[-3:]):
        raise ValueError(f"{func}: x must have non-zero size for non-batch dimensions, got "
                         f"x.shape={shape}")
    blocks = _blocks(func, shape[-2:], k, d, p, s, "input")
    return lead, shape[-2:], k, d, p, s, blocks


def _fold_plan(func, cols, output_size, kernel_size, dilation, padding, stride):
    shape = shape_of(cols)
    if len(shape) not in (2, 3):
        raise ValueError(
            f"{func}: cols must be 3-D (N, C*KH*KW, L) or 2-D (C*KH*KW, L), got "
            f"{len(shape)}-D with cols.shape={shape}"
        )
    out = ntuple(output_size, 2, "output_size", func, minimum=1)
    k, d, p, s = _params(func, kernel_size, dilation, padding, stride)
    rows, length = shape[-2:]
    if rows == 0 or rows % (k[0] * k[1]):
        raise ValueError(
            f"{func}: cols.shape[-2]={rows} must be a positive multiple of the product of "
            f"kernel_size={k} ({k[0] * k[1]}) (cols.shape={shape})"
        )
    blocks = _blocks(func, out, k, d, p, s, f"output_size={out}")
    if length != blocks[0] * blocks[1]:
        raise ValueError(
            f"{func}: given output_size={out}, kernel_size={k}, dilation={d}, padding={p}, "
            f"stride={s}, cols.shape[-1] must be the number of sliding blocks "
            f"{blocks[0]} * {blocks[1]} = {blocks[0] * blocks[1]}, got {length} "
            f"(cols.shape={shape})"
        )
    lead = shape[:-2] + (rows // (k[0] * k[1]),)
    return lead, out, k, d, p, s, blocks


def _dask_unfold(x, kernel_size, dilation, padding, stride, device):
    """Lazy unfold: H and W rechunked into one chunk, one block per (N, C) chunk (the
    rows of a channel chunk are contiguous in the column layout)."""
    from fastconv import _dask

    _dask._check_input("unfold", x)
    lead, spatial, k, d, p, s, blocks = _unfold_plan("unfold", x, kernel_size, dilation,
                                                     padding, stride)
    xr = x.rechunk({x.ndim - 2: -1, x.ndim - 1: -1})
    taps = k[0] * k[1]
    chunks = xr.chunks[:-3] + (tuple(c * taps for c in xr.chunks[-3]),
                               (blocks[0] * blocks[1],))

    def block(b):
        out = _unfold("unfold", b, k, d, p, s, device)
        return to_host(out)

    return xr.map_blocks(block, chunks=chunks, drop_axis=x.ndim - 1, dtype=result_dtype(x),
                         meta=np.empty((0,) * (x.ndim - 1), result_dtype(x)))


def _unfold(func, x, kernel_size, dilation, padding, stride, device, dtype=None, like=None):
    x = _eager(x)
    name, a = prepare(func, device, {"x": x})
    lead, spatial, k, d, p, s, blocks = _unfold_plan(func, a["x"], kernel_size, dilation,
                                                     padding, stride)
    be = _dispatch.backend(name)
    dtype = result_dtype(a["x"]) if dtype is None else dtype
    n = math.prod(lead[:-1])
    x4 = be.asarray(a["x"], dtype).reshape(n, lead[-1], *spatial)
    cols = be.empty((n, lead[-1], *k, *blocks), dtype)
    be.unfold(x4, cols, s, p, d)
    shape = lead[:-1] + (lead[-1] * k[0] * k[1], blocks[0] * blocks[1])
    return deliver(name, cols.reshape(shape), a["x"], x if like is None else like)


def _fold(func, cols, output_size, kernel_size, dilation, padding, stride, device,
          dtype=None, like=None):
    cols = _eager(cols)
    name, a = prepare(func, device, {"cols": cols})
    lead, out, k, d, p, s, blocks = _fold_plan(func, a["cols"], output_size, kernel_size,
                                               dilation, padding, stride)
    be = _dispatch.backend(name)
    dtype = result_dtype(a["cols"]) if dtype is None else dtype
    n = math.prod(lead[:-1])
    c6 = be.asarray(a["cols"], dtype).reshape(n, lead[-1], *k, *blocks)
    y = be.empty((n, lead[-1], *out), dtype)
    be.fold(c6, y, s, p, d)
    return deliver(name, y.reshape(lead + out), a["cols"],
                   cols if like is None else like)


def unfold(x, kernel_size, dilation=1, padding=0, stride=1, *, device: str | None = None):
    """Sliding blocks of ``x`` as columns (im2col), as ``torch.nn.functional.unfold``.

    ``cols[n, (c*KH + i)*KW + j, oh*OW + ow] = x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw]``
    with zero padding ``padding`` on both sides of each axis.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W) or (C, H, W)
    kernel_size, dilation, stride : int or tuple of 2 ints (>= 1)
    padding : int or tuple of 2 ints (>= 0)
    device : {None, "cpu", "cuda"}, keyword-only

    Returns
    -------
    ndarray, shape (N, C*KH*KW, L) or (C*KH*KW, L), ``L = OH*OW``

    Raises
    ------
    ValueError
        x not 3-D/4-D, an empty non-batch axis, bad parameters, fewer than one block.

    Examples
    --------
    >>> unfold(np.arange(9.).reshape(1, 3, 3), 2)
    array([[0., 1., 3., 4.],
           [1., 2., 4., 5.],
           [3., 4., 6., 7.],
           [4., 5., 7., 8.]])
    """
    if is_dask(x):
        return _dask_unfold(x, kernel_size, dilation, padding, stride, device)
    return _unfold("unfold", x, kernel_size, dilation, padding, stride, device)


def fold(cols, output_size, kernel_size, dilation=1, padding=0, stride=1, *,
         device: str | None = None):
    """Columns summed back into an image (col2im), as ``torch.nn.functional.fold``: the
    adjoint of ``unfold`` (overlapping blocks add up; taps in the padding are dropped).

    Parameters
    ----------
    cols : array_like, shape (N, C*KH*KW, L) or (C*KH*KW, L)
    output_size : int or tuple of 2 ints
        The image's spatial size ``(H, W)``.
    kernel_size, dilation, stride : int or tuple of 2 ints (>= 1)
    padding : int or tuple of 2 ints (>= 0)
    device : {None, "cpu", "cuda"}, keyword-only

    Returns
    -------
    ndarray, shape (N, C, H, W) or (C, H, W)

    Raises
    ------
    ValueError
        cols not 2-D/3-D, ``cols.shape[-2]`` not a multiple of ``KH*KW``,
        ``cols.shape[-1]`` not the number of blocks, fewer than one block.

    Examples
    --------
    >>> fold(np.ones((4, 4)), 3, 2)
    array([[[1., 2., 1.],
            [2., 4., 2.],
            [1., 2., 1.]]])
    """
    return _fold("fold", cols, output_size, kernel_size, dilation, padding, stride, device)


def unfold_backward(grad_output, x, kernel_size, dilation=1, padding=0, stride=1):
    """Gradient of ``unfold(x, ...)`` with respect to ``x``: ``fold`` of ``grad_output``
    into ``x``'s shape (``fc.grad.unfold``).

    Examples
    --------
    >>> unfold_backward(np.ones((4, 4)), np.zeros((1, 3, 3)), 2)
    array([[[1., 2., 1.],
            [2., 4., 2.],
            [1., 2., 1.]]])
    """
    func = "unfold_backward"
    x = _eager(x)
    name, a = prepare(func, None, {"grad_output": _eager(grad_output), "x": x})
    lead, spatial, k, d, p, s, blocks = _unfold_plan(func, a["x"], kernel_size, dilation,
                                                     padding, stride)
    want = lead[:-1] + (lead[-1] * k[0] * k[1], blocks[0] * blocks[1])
    if shape_of(a["grad_output"]) != want:
        raise ValueError(f"{func}: grad_output.shape={shape_of(a['grad_output'])} does not "
                         f"match the unfold output shape {want} (x.shape={shape_of(a['x'])})")
    return _fold(func, a["grad_output"], spatial, k, d, p, s, None,
                 result_dtype(a["x"], a["grad_output"]), like=x)


def fold_backward(grad_output, cols, output_size, kernel_size, dilation=1, padding=0,
                  stride=1):
    """Gradient of ``fold(cols, ...)`` with respect to ``cols``: ``unfold`` of
    ``grad_output`` (``fc.grad.fold``).

    Examples
    --------
    >>> fold_backward(np.arange(9.).reshape(1, 3, 3), np.zeros((4, 4)), 3, 2)[0]
    array([0., 1., 3., 4.])
    """
    func = "fold_backward"
    cols = _eager(cols)
    name, a = prepare(func, None, {"grad_output": _eager(grad_output), "cols": cols})
    lead, out, k, d, p, s, blocks = _fold_plan(func, a["cols"], output_size, kernel_size,
                                               dilation, padding, stride)
    if shape_of(a["grad_output"]) != lead + out:
        raise ValueError(f"{func}: grad_output.shape={shape_of(a['grad_output'])} does not "
                         f"match the fold output shape {lead + out} "
                         f"(cols.shape={shape_of(a['cols'])})")
    return _unfold(func, a["grad_output"], k, d, p, s, None,
                   result_dtype(a["cols"], a["grad_output"]), like=cols)


__all__ = ["fold", "fold_backward", "unfold", "unfold_backward"]
