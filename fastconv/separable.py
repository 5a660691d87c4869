"""Separable 2-D filtering with the factors given: ``sep_conv2d`` (OpenCV's ``sepFilter2D``).

``conv2d`` finds separable kernels by itself (``algorithm="auto"``, see
``fastconv._algorithms``); this entry point is for users who already hold the two 1-D
factors.
"""

from __future__ import annotations

import numpy as np

from fastconv import _dispatch
from fastconv._plan import plan_conv
from fastconv._validate import as_array, result_dtype


def sep_conv2d(x, col, row, stride=1, padding=0, dilation=1, padding_mode="zeros", *,
               device=None):
    """Separable 2-D cross-correlation: ``col`` along H, then ``row`` along W, per channel.

    The same as :func:`conv2d` of every channel with the kernel ``outer(col, row)``
    (``groups = C``), computed as two 1-D passes (``kH + kW`` instead of ``kH * kW``
    multiply-adds per output); what OpenCV's ``sepFilter2D(x, ddepth, kernelX=row,
    kernelY=col)`` computes (a correlation), with fastconv's padding forms.

    y[n, c, i, j] = sum_{a, b} col[a] * row[b] * x_pad[n, c, i*sh + a*dh, j*sw + b*dw]

    Parameters
    ----------
    x : array_like, shape (H, W), (C, H, W) or (N, C, H, W)
        Image(s); every channel is filtered by the same kernel.
    col, row : array_like, 1-D
        The vertical (along H) and horizontal (along W) factors.
    stride, padding, dilation, padding_mode
        As :func:`conv2d` (``padding`` an int, a per-axis tuple, ``(before, after)`` pairs
        or "valid"/"same"/"full"; ``padding_mode`` "zeros", "reflect", "replicate" or
        "circular").
    device : {None, "cpu", "cuda"}
        As :func:`conv2d` (on the GPU the kernel runs as a 2-D kernel).

    Returns
    -------
    ndarray, the shape of ``x`` with H and W replaced by the output size
        float32 or float64 (``numpy.result_type(x, col, row, float32)``).

    Raises
    ------
    ValueError
        ``col``/``row`` not 1-D or empty, ``x`` not 2-D/3-D/4-D, bad stride, padding or
        dilation (as :func:`conv2d`).

    Examples
    --------
    >>> sep_conv2d(np.arange(9.).reshape(3, 3), [1., 1.], [1., -1.])
    array([[-2., -2.],
           [-2., -2.]])
    """
    func = "sep_conv2d"
    name = _dispatch.choose(func, device, x)
    col = as_array(col, "col", func)
    row = as_array(row, "row", func)
    for pname, f in (("col", col), ("row", row)):
        if f.ndim != 1 or f.shape[0] == 0:
            raise ValueError(f"{func}: {pname} must be a non-empty 1-D array, got "
                             f"{pname}.shape={f.shape}")
    ndim = len(getattr(x, "shape", np.shape(x)))
    if ndim not in (2, 3, 4):
        raise ValueError(f"{func}: x must be 2-D (H, W), 3-D (C, H, W) or 4-D (N, C, H, W), "
                         f"got {ndim}-D with x.shape={tuple(np.shape(x))}")
    if name != "cpu":  # the GPU runs the 2-D kernel, one group per channel
        from fastconv.conv import conv2d

        C = 1 if ndim == 2 else x.shape[-3]
        w = np.broadcast_to(np.outer(col, row), (C, 1, col.shape[0], row.shape[0]))
        x4 = x[None, None] if ndim == 2 else x
        y = conv2d(x4, np.ascontiguousarray(w), None, stride, padding, dilation, C,
                   padding_mode, device=device)
        return y[0, 0] if ndim == 2 else y
    a = as_array(x, "x", func)
    x4 = a[None, None] if ndim == 2 else a
    C = x4.shape[-3]
    wdtype = result_dtype(col, row)
    weight = np.broadcast_to(np.zeros((), dtype=wdtype), (C, 1, col.shape[0], row.shape[0]))
    plan = plan_conv(func, 2, x4, weight, None, stride, padding, dilation, C, padding_mode)
    from fastconv.cpu.separable import separable

    dt = plan.dtype
    x5 = np.ascontiguousarray(x4, dtype=dt).reshape(plan.x_shape)
    cols = np.ascontiguousarray(np.broadcast_to(col.astype(dt), (C, 1, col.shape[0])))
    rows = np.ascontiguousarray(np.broadcast_to(row.astype(dt), (C, 1, row.shape[0])))
    out = np.empty(plan.out_shape, dtype=dt)
    separable(x5, cols, rows, np.zeros(C, dtype=dt), out, plan.stride, plan.dilation, C,
              plan.pads, plan.padding_mode)
    y = out.reshape(plan.user_shape(plan.out_shape))
    return y[0, 0] if ndim == 2 else y


__all__ = ["sep_conv2d"]
