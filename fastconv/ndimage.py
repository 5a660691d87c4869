"""``scipy.ndimage`` filters on the fastconv engine: replace the import, keep the call.

``correlate``, ``convolve``, ``correlate1d``, ``convolve1d``, ``uniform_filter(1d)`` and
``gaussian_filter(1d)`` take SciPy's arguments and give SciPy's numbers, for any number
of dimensions, on every core. How a call runs:

1. the boundary ``mode`` becomes an explicit padded copy (one parallel pass,
   ``fastconv.cpu.pad.pad3``), every axis padded by ``k // 2 + origin`` before and the
   rest of the kernel after;
2. the engine's "valid" correlation (``conv1d/2d/3d`` on the padded array, one plane;
   more than 3 dimensions fold the leading kernel axes into channels) computes it;
3. separable filters (uniform, Gaussian) are one such pass per axis with a 1-D kernel:
   the array is viewed as ``(pre, n, post)`` around the axis, never transposed;
4. the result is cast to the output dtype as SciPy's C core casts (truncation toward
   zero for integers); separable filters store every pass in the output dtype, as SciPy.

Boundary modes (SciPy's names; for filters the ``grid-*`` names are aliases), for an
axis ``a b c d`` extended by 3::

    'reflect'        c b a | a b c d | d c b     (edge repeated; numpy 'symmetric')
    'grid-mirror'    same as 'reflect'
    'mirror'         d c b | a b c d | c b a     (numpy 'reflect')
    'nearest'        a a a | a b c d | d d d     (numpy 'edge')
    'wrap'           b c d | a b c d | a b c     (numpy 'wrap'); also 'grid-wrap'
    'constant'       k k k | a b c d | k k k     (k = cval); also 'grid-constant'

Computation dtype: float32 input with a float32 (or integer) output is computed in
float32; everything else in float64, as SciPy computes. Errors SciPy raises as
``RuntimeError`` are raised as :class:`NdimageError`, which is both a ``ValueError`` and
a ``RuntimeError`` (so code catching either keeps working).
"""

from __future__ import annotations

import math
import numbers
import operator
import sys
from collections.abc import Iterable

import numpy as np

from fastconv import _dask

#: This module, handed to ``fastconv._dask_ndimage`` (which works on Dask arrays with its
#: checks and kernels, and so cannot import it back).
_SELF = sys.modules[__name__]

#: scipy.ndimage filter mode -> numpy.pad mode (the one mode table; the padding kernel
#: ``fastconv.cpu.pad.pad3`` takes the numpy names).
MODES = {
    "reflect": "symmetric",
    "grid-mirror": "symmetric",
    "mirror": "reflect",
    "nearest": "edge",
    "wrap": "wrap",
    "grid-wrap": "wrap",
    "constant": "constant",
    "grid-constant": "constant",
}

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
#: Most taps of a direct 1-D or n-D pass; larger kernels go to the engine's FFT.
FFT_MIN_TAPS = 400


class NdimageError(ValueError, RuntimeError):
    """Bad argument where scipy.ndimage raises ``RuntimeError``: both a ``ValueError``
    (fastconv's rule) and a ``RuntimeError`` (SciPy's), so either ``except`` catches it."""


class NdimageTypeError(TypeError, RuntimeError):
    """Unsupported dtype where scipy.ndimage raises ``RuntimeError``."""


# --- argument checks (SciPy's rules, fastconv's messages) --------------------------------


def _input(func: str, input) -> np.ndarray:
    a = np.asarray(input)
    if a.dtype.kind == "c":
        raise TypeError(f"{func}: input has complex dtype {a.dtype}; fastconv.ndimage is "
                        "real-valued (filter the real and imaginary parts separately)")
    if a.dtype.kind not in "biuf" or a.dtype.itemsize > 8 or a.dtype == np.float16:
        raise NdimageTypeError(f"{func}: input dtype {a.dtype} not supported (bool, "
                               "integers, float32 and float64 are)")
    return a


def _weights(func: str, weights, name: str = "weights") -> np.ndarray:
    w = np.asarray(weights)
    if w.dtype.kind == "c":
        raise TypeError(f"{func}: {name} has complex dtype {w.dtype}; fastconv.ndimage is "
                        "real-valued")
    if w.dtype.kind not in "biuf":
        raise TypeError(f"{func}: {name} has dtype {w.dtype}; expected real numbers")
    return w.astype(np.float64)


def _output_dtype(func: str, output, input: np.ndarray):
    """(dtype, array or None) from ``output``: None (input's dtype), a dtype, or an array
    of the input's shape (scipy.ndimage's ``_get_output``)."""
    if output is None:
        return input.dtype, None
    if isinstance(output, (type, np.dtype, str)):
        try:
            dt = np.dtype(output)
        except TypeError:
            raise NdimageTypeError(f"{func}: output={output!r} is not a dtype") from None
        arr = None
    elif isinstance(output, np.ndarray):
        if output.shape != input.shape:
            raise NdimageError(f"{func}: output shape not correct: output.shape="
                               f"{output.shape}, input.shape={input.shape}")
        dt, arr = output.dtype, output
    else:
        raise TypeError(f"{func}: output must be None, a dtype or an ndarray, got "
                        f"{type(output).__name__}")
    if dt.kind == "c":
        raise TypeError(f"{func}: output dtype {dt} is complex; fastconv.ndimage is "
                        "real-valued")
    if dt.kind not in "biuf" or dt.itemsize > 8 or dt == np.float16:
        raise NdimageTypeError(f"{func}: output dtype {dt} not supported")
    return dt, arr


def _mode(func: str, mode) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise NdimageError(f"{func}: boundary mode not supported: mode={mode!r}; expected "
                           f"one of {tuple(MODES)}")
    return MODES[mode]


def _cval(func: str, cval) -> float:
    if np.iscomplexobj(cval):
        raise ValueError(f"{func}: cval={cval!r} is complex; the input is real")
    try:
        return float(cval)
    except (TypeError, ValueError):
        raise TypeError(f"{func}: cval must be a real number, got {cval!r}") from None


def _sequence(func: str, value, n: int, name: str) -> list:
    """SciPy's ``_normalize_sequence``: a scalar repeated, or a sequence of length n."""
    if not isinstance(value, str) and np.iterable(value):
        out = list(value)
        if len(out) != n:
            raise NdimageError(f"{func}: sequence argument must have length equal to input "
                               f"rank: {name}={value!r}, expected {n} values (one per "
                               "filtered axis)")
        return out
    return [value] * n


def _axes(func: str, axes, ndim: int) -> tuple:
    if axes is None:
        return tuple(range(ndim))
    if np.isscalar(axes):
        axes = (axes,)
    elif not isinstance(axes, Iterable):
        raise ValueError(f"{func}: axes must be an integer, iterable of integers, or None")
    out = []
    for ax in axes:
        ax = operator.index(ax)
        if ax < -ndim or ax > ndim - 1:
            raise ValueError(f"{func}: specified axis: {ax} is out of range for an input "
                             f"with {ndim} dimensions")
        out.append(ax % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{func}: axes must be unique, got {tuple(axes)}")
    return tuple(out)


def _axis(func: str, axis, ndim: int) -> int:
    axis = operator.index(axis)
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim, f"{func}: axis")
    return axis % ndim


def _origin_ok(func: str, origin, k: int, name: str = "origin") -> int:
    if not isinstance(origin, numbers.Integral) or isinstance(origin, bool):
        try:
            origin = operator.index(origin)
        except TypeError:
            raise TypeError(f"{func}: {name} must be an int, got {origin!r}") from None
    origin = int(origin)
    if origin < -(k // 2) or origin > (k - 1) // 2:
        raise ValueError(f"{func}: Invalid origin; origin must satisfy -(weights.shape[k] "
                         f"// 2) <= origin[k] <= (weights.shape[k]-1) // 2, got {name}="
                         f"{origin} for a kernel of size {k}")
    return origin


# --- dtypes ------------------------------------------------------------------------------


def _work_dtype(in_dtype: np.dtype, out_dtype: np.dtype) -> np.dtype:
    """float32 input kept in float32 unless the output is float64; else float64."""
    if in_dtype == _F32 and out_dtype != _F64:
        return _F32
    return _F64


def _cast(y: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``y`` in ``dtype`` as scipy.ndimage's C core writes it: a C cast (integers truncate
    toward zero and wrap; bool is the truncated value's low byte, non-zero -> True)."""
    if y.dtype == dtype:
        return y
    if dtype.kind == "f":
        return y.astype(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        if dtype.kind == "b":
            return y.astype(np.int64).astype(np.uint8) != 0
        if dtype == np.uint64:
            return y.astype(np.uint64)
        return y.astype(np.int64).astype(dtype)


def _finish(func: str, y: np.ndarray, dtype: np.dtype, out_arr):
    y = _cast(y, dtype)
    if out_arr is None:
        return y
    out_arr[...] = y
    return out_arr


# --- the two engine passes ---------------------------------------------------------------


def _pad(x: np.ndarray, pads, np_mode: str, cval: float) -> np.ndarray:
    """Padded copy of an n-D array (parallel): up to 3-D in one pass, more axis by axis
    through a ``(pre, n, post)`` view."""
    from fastconv.cpu.pad import pad3

    if x.ndim <= 3:
        lead = 3 - x.ndim
        x3 = x.reshape((1,) * lead + x.shape)
        out = pad3(np.ascontiguousarray(x3), ((0, 0),) * lead + tuple(pads), np_mode, cval)
        return out.reshape(out.shape[lead:])
    for ax, (b, a) in enumerate(pads):
        if b or a:
            x = _pad_axis(x, ax, b, a, np_mode, cval)
    return x


def _pad_axis(x: np.ndarray, axis: int, before: int, after: int, np_mode: str, cval: float):
    from fastconv.cpu.pad import pad3

    pre, n = math.prod(x.shape[:axis]), x.shape[axis]
    post = math.prod(x.shape[axis + 1:])
    if post == 1:  # rows along the axis: one task per line
        x3, pads = x.reshape(1, pre, n), ((0, 0), (0, 0), (before, after))
    else:
        x3, pads = x.reshape(pre, n, post), ((0, 0), (before, after), (0, 0))
    out = pad3(np.ascontiguousarray(x3), pads, np_mode, cval)
    return out.reshape(x.shape[:axis] + (n + before + after,) + x.shape[axis + 1:])


def _algorithm(taps: int) -> str:
    return "fft" if taps >= FFT_MIN_TAPS else "direct"


def correlate_valid(xp: np.ndarray, w: np.ndarray) -> np.ndarray:
    """'valid' cross-correlation of an n-D padded array with an n-D kernel of the same
    dtype, on the engine (``conv1d/2d/3d`` on one plane; leading axes beyond 3 become
    channels: each output slab sums the kernel's leading taps as input channels)."""
    from fastconv.conv import conv1d, conv2d, conv3d

    nd = xp.ndim
    algorithm = _algorithm(w.size)
    if nd == 0:
        return xp * w
    if nd <= 3:
        conv = (conv1d, conv2d, conv3d)[nd - 1]
        return conv(xp[None, None], w[None, None], algorithm=algorithm)[0, 0]
    lead = nd - 3
    out_lead = tuple(p - k + 1 for p, k in zip(xp.shape[:lead], w.shape[:lead], strict=True))
    view = np.lib.stride_tricks.as_strided(
        xp, out_lead + w.shape[:lead] + xp.shape[lead:],
        xp.strides[:lead] * 2 + xp.strides[lead:], writeable=False)
    chans = math.prod(w.shape[:lead])
    x5 = np.ascontiguousarray(view).reshape((math.prod(out_lead), chans) + xp.shape[lead:])
    y = conv3d(x5, w.reshape((1, chans) + w.shape[lead:]), algorithm=algorithm)
    return y.reshape(out_lead + y.shape[2:])


def _line_pass(x: np.ndarray, w1: np.ndarray, axis: int, before: int, np_mode: str,
               cval: float, n_out: int | None = None) -> np.ndarray:
    """One 1-D correlation along ``axis`` (padded ``before`` / the rest after) on a
    ``(pre, n, post)`` view, never transposed. Kernels below ``FFT_MIN_TAPS`` run in
    ``fastconv.cpu.lines`` (boundary read in place, no padded copy); longer ones are padded
    and go to the engine's FFT (``conv1d``, or ``conv2d`` with a ``(k, 1)`` kernel).
    ``n_out`` (default: the axis length) with ``before = 0`` gives the "valid" pass of an
    already padded block, with the same arithmetic (Dask)."""
    k = w1.shape[0]
    pre, n = math.prod(x.shape[:axis]), x.shape[axis]
    post = math.prod(x.shape[axis + 1:])
    n_out = n if n_out is None else n_out
    shape = x.shape[:axis] + (n_out,) + x.shape[axis + 1:]
    if x.size == 0 or n_out == 0:
        return np.zeros(shape, x.dtype)
    if k < FFT_MIN_TAPS:
        from fastconv.cpu.lines import correlate_axis

        y = correlate_axis(np.ascontiguousarray(x).reshape(pre, n, post), w1, n_out, before,
                           np_mode, cval)
        return y.reshape(shape)
    from fastconv.conv import conv1d, conv2d

    after = n_out + k - 1 - n - before
    xp = _pad_axis(x, axis, before, after, np_mode, cval)
    if post == 1:
        y = conv1d(xp.reshape(pre, 1, n_out + k - 1), w1.reshape(1, 1, k), algorithm="fft")
    else:
        y = conv2d(xp.reshape(pre, 1, n_out + k - 1, post), w1.reshape(1, 1, k, 1),
                   algorithm="fft")
    return y.reshape(shape)


# --- public functions --------------------------------------------------------------------


def correlate1d(input, weights, axis=-1, output=None, mode="reflect", cval=0.0, origin=0):
    """1-D cross-correlation along ``axis`` (``scipy.ndimage.correlate1d``).

    ``out[..., i, ...] = sum_j weights[j] * in_ext[..., i + j - len(weights) // 2 - origin, ...]``
    with ``in_ext`` the input extended by ``mode`` (see the module docstring).

    Parameters
    ----------
    input : array_like
    weights : array_like, 1-D
    axis : int, default -1
    output : dtype or ndarray, optional
        Output dtype (default: the input's) or an array of the input's shape to fill.
    mode : str, default "reflect"
    cval : float, default 0.0
        Value outside the input with ``mode="constant"``.
    origin : int, default 0
        Shift of the kernel's centre, ``-(k // 2) <= origin <= (k - 1) // 2``.

    Returns
    -------
    ndarray, the input's shape

    Examples
    --------
    >>> correlate1d([2, 8, 0, 4, 1, 9, 9, 0], weights=[1, 3])
    array([ 8, 26,  8, 12,  7, 28, 36,  9])
    """
    func = "correlate1d"
    if _dask.is_dask(input):
        from fastconv import _dask_ndimage

        return _dask_ndimage.correlate1d(_SELF, input, weights, axis, output, mode, cval, origin)
    return _correlate1d(func, input, weights, axis, output, mode, cval, origin)


def _correlate1d(func, input, weights, axis, output, mode, cval, origin, scale=None):
    a = _input(func, input)
    w = _weights(func, weights)
    if w.ndim != 1 or w.shape[0] < 1:
        raise NdimageError(f"{func}: no filter weights given: weights must be 1-D and "
                           f"non-empty, got weights.shape={w.shape}")
    dtype, out_arr = _output_dtype(func, output, a)
    if a.ndim == 0:
        raise NdimageError(f"{func}: input must have at least one dimension")
    axis = _axis(func, axis, a.ndim)
    k = w.shape[0]
    origin = _origin_ok(func, origin, k)
    np_mode, c = _mode(func, mode), _cval(func, cval)
    work = _work_dtype(a.dtype, dtype)
    y = _line_pass(np.ascontiguousarray(a, dtype=work), w.astype(work), axis,
                   k // 2 + origin, np_mode, c)
    if scale is not None:
        y /= scale
    return _finish(func, y, dtype, out_arr)


def convolve1d(input, weights, axis=-1, output=None, mode="reflect", cval=0.0, origin=0):
    """1-D convolution along ``axis`` (``scipy.ndimage.convolve1d``): :func:`correlate1d`
    with the kernel reversed and the origin mirrored (``-origin``, minus one more for an
    even kernel), as SciPy.

    Examples
    --------
    >>> convolve1d([2, 8, 0, 4, 1, 9, 9, 0], weights=[1, 3])
    array([14, 24,  4, 13, 12, 36, 27,  0])
    """
    w = np.asarray(weights)
    if w.ndim != 1:
        raise NdimageError(f"convolve1d: weights must be 1-D, got weights.shape={w.shape}")
    origin = -operator.index(origin) - (0 if w.shape[0] & 1 else 1)
    if _dask.is_dask(input):
        from fastconv import _dask_ndimage

        return _dask_ndimage.correlate1d(_SELF, input, w[::-1], axis, output, mode, cval, origin,
                                         func="convolve1d")
    return _correlate1d("convolve1d", input, w[::-1], axis, output, mode, cval, origin)


def _correlate_nd(func, input, weights, output, mode, cval, origin, axes, flip):
    a = _input(func, input)
    w = _weights(func, weights)
    axes = _axes(func, axes, a.ndim)
    if len(axes) < a.ndim:
        if w.ndim != len(axes):
            raise NdimageError(f"{func}: weights.ndim ({w.ndim}) must match len(axes) "
                               f"({len(axes)})")
        w = np.expand_dims(w, tuple(ax for ax in range(a.ndim) if ax not in axes))
    origins = _sequence(func, origin, len(axes), "origin")
    if len(axes) < a.ndim:
        full = [0] * a.ndim
        for o, ax in zip(origins, axes, strict=True):
            full[ax] = o
        origins = full
    if len([s for s in w.shape if s > 0]) != a.ndim or w.ndim != a.ndim:
        raise NdimageError(f"{func}: weights.ndim ({w.ndim}) must match len(axes) "
                           f"({len(axes)}) (input.shape={a.shape}, weights.shape={w.shape})")
    if flip:
        w = w[(slice(None, None, -1),) * w.ndim]
        origins = [-operator.index(o) - (0 if k & 1 else 1)
                   for o, k in zip(origins, w.shape, strict=True)]
    origins = [_origin_ok(func, o, k) for o, k in zip(origins, w.shape, strict=True)]
    dtype, out_arr = _output_dtype(func, output, a)
    if not isinstance(mode, str) and isinstance(mode, Iterable):
        raise NdimageError(f"{func}: A sequence of modes is not supported")
    np_mode, c = _mode(func, mode), _cval(func, cval)
    work = _work_dtype(a.dtype, dtype)
    if a.size == 0:
        return _finish(func, np.zeros(a.shape, work), dtype, out_arr)
    pads = [(k // 2 + o, k - 1 - k // 2 - o) for k, o in zip(w.shape, origins, strict=True)]
    xp = _pad(np.ascontiguousarray(a, dtype=work), pads, np_mode, c)
    y = correlate_valid(xp, np.ascontiguousarray(w, dtype=work))
    return _finish(func, y, dtype, out_arr)


def correlate(input, weights, output=None, mode="reflect", cval=0.0, origin=0, *, axes=None):
    """n-D cross-correlation (``scipy.ndimage.correlate``).

    ``out[i] = sum_j weights[j] * in_ext[i + j - shape(weights) // 2 - origin]`` per axis.

    Parameters
    ----------
    input : array_like, any number of dimensions
    weights : array_like, ``input.ndim`` dimensions (or ``len(axes)``)
    output : dtype or ndarray, optional
    mode : str, default "reflect"
        One mode for every axis (a sequence raises, as in SciPy).
    cval : float, default 0.0
    origin : int or sequence of int, default 0
    axes : int or tuple of int, optional
        The axes ``weights`` spans (others are not filtered).

    Returns
    -------
    ndarray, the input's shape; dtype: ``output``'s, else the input's

    Examples
    --------
    >>> correlate(np.arange(9.).reshape(3, 3), [[0, 1], [2, 3]], mode="constant")
    array([[ 0.,  3.,  8.],
           [ 9., 19., 25.],
           [21., 37., 43.]])
    """
    if _dask.is_dask(input):
        from fastconv import _dask_ndimage

        return _dask_ndimage.correlate(_SELF, input, weights, output, mode, cval, origin, axes,
                                       flip=False)
    return _correlate_nd("correlate", input, weights, output, mode, cval, origin, axes,
                         flip=False)


def convolve(input, weights, output=None, mode="reflect", cval=0.0, origin=0, *, axes=None):
    """n-D convolution (``scipy.ndimage.convolve``): :func:`correlate` with the kernel
    reversed on every axis and each origin mirrored (an even axis moves one more).

    Examples
    --------
    >>> convolve(np.arange(9.).reshape(3, 3), [[3, 2], [1, 0]], mode="constant")
    array([[19., 25., 10.],
           [37., 43., 16.],
           [ 7.,  8.,  0.]])
    """
    if _dask.is_dask(input):
        from fastconv import _dask_ndimage

        return _dask_ndimage.correlate(_SELF, input, weights, output, mode, cval, origin, axes,
                                       flip=True)
    return _correlate_nd("convolve", input, weights, output, mode, cval, origin, axes,
                         flip=True)


def _separable(func, input, output, passes, cval):
    """Run 1-D passes ``(axis, weights, origin, mode, scale)`` in order, each one stored in
    the output dtype and read by the next (SciPy's ``input = output`` loop)."""
    a = _input(func, input)
    dtype, out_arr = _output_dtype(func, output, a)
    c = _cval(func, cval)
    if not passes:
        return _finish(func, np.array(a, copy=True), dtype, out_arr)
    cur = a
    for axis, w, origin, mode, scale in passes:
        np_mode = _mode(func, mode)
        work = _work_dtype(cur.dtype, dtype)
        k = w.shape[0]
        y = _line_pass(np.ascontiguousarray(cur, dtype=work), w.astype(work), axis,
                       k // 2 + origin, np_mode, c)
        if scale is not None:
            y /= scale
        cur = _cast(y, dtype)
    return _finish(func, cur, dtype, out_arr)


def uniform_filter1d(input, size, axis=-1, output=None, mode="reflect", cval=0.0, origin=0):
    """Mean over ``size`` neighbours along ``axis`` (``scipy.ndimage.uniform_filter1d``).

    The window sum is computed exactly (a correlation with ones) and divided by
    ``size``; SciPy keeps a running mean, so float results agree to rounding.

    Examples
    --------
    >>> uniform_filter1d([2, 8, 0, 4, 1, 9, 9, 0], size=3)
    array([4, 3, 4, 1, 4, 6, 6, 3])
    """
    func = "uniform_filter1d"
    size = operator.index(size)
    if size < 1:
        raise NdimageError(f"{func}: incorrect filter size: size={size} (must be >= 1)")
    if size // 2 + origin < 0 or size // 2 + origin >= size:
        raise ValueError(f"{func}: invalid origin {origin} for size {size}")
    if _dask.is_dask(input):
        from fastconv import _dask_ndimage

        return _dask_ndimage.uniform_filter1d(_SELF, input, size, axis, output, mode, cval, origin)
    return _correlate1d(func, input, np.ones(size), axis, output, mode, cval, origin,
                        scale=float(size))


def uniform_filter(input, size=3, output=None, mode="reflect", cval=0.0, origin=0, *,
                   axes=None):
    """n-D mean filter (``scipy.ndimage.uniform_filter``) as 1-D passes, one per axis
    with ``size > 1``; ``size``, ``origin`` and ``mode`` may be given per axis.

    Examples
    --------
    >>> uniform_filter(np.arange(9.).reshape(3, 3), size=3, mode="nearest")
    array([[1.33333333, 2.        , 2.66666667],
           [3.33333333, 4.        , 4.66666667],
           [5.33333333, 6.        , 6.66666667]])
    """
    func = "uniform_filter"
    if _dask.is_dask(input):
        from fastconv import _dask_ndimage

        return _dask_ndimage.separable(_SELF, uniform_filter, input, output, size=size, mode=mode,
                                       cval=cval, origin=origin, axes=axes)
    a = _input(func, input)
    axes = _axes(func, axes, a.ndim)
    n = len(axes)
    sizes = _sequence(func, size, n, "size")
    origins = _sequence(func, origin, n, "origin")
    modes = _sequence(func, mode, n, "mode")
    passes = []
    for ax, s, o, m in zip(axes, sizes, origins, modes, strict=True):
        if s > 1:
            s = int(s)
            if s // 2 + o < 0 or s // 2 + o >= s:
                raise ValueError(f"{func}: invalid origin {o} for size {s}")
            passes.append((ax, np.ones(s), int(o), m, float(s)))
    return _separable(func, a, output, passes, cval)


def _gaussian_kernel1d(sigma: float, order: int, radius: int) -> np.ndarray:
    """SciPy's 1-D Gaussian (derivative) kernel, the same weights to the last bit
    (the formula of ``scipy.ndimage._filters._gaussian_kernel1d``, BSD-3, SciPy devs)."""
    if order < 0:
        raise ValueError("gaussian_filter: order must be non-negative, got {order}")
    exponent_range = np.arange(order + 1)
    sigma2 = sigma * sigma
    x = np.arange(-radius, radius + 1)
    phi_x = np.exp(-0.5 / sigma2 * x ** 2)
    phi_x = phi_x / phi_x.sum()
    if order == 0:
        return phi_x
    q = np.zeros(order + 1)
    q[0] = 1
    D = np.diag(exponent_range[1:], 1)  # D @ q(x) = q'(x)
    P = np.diag(np.ones(order) / -sigma2, -1)  # P @ q(x) = q(x) * p'(x)
    Q_deriv = D + P
    for _ in range(order):
        q = Q_deriv.dot(q)
    q = (x[:, None] ** exponent_range).dot(q)
    return q * phi_x


def _gaussian_weights(func: str, sigma, order, truncate, radius) -> np.ndarray:
    sd = float(sigma)
    lw = int(truncate * sd + 0.5)
    if radius is not None:
        lw = radius
    if not isinstance(lw, numbers.Integral) or lw < 0:
        raise ValueError(f"{func}: Radius must be a nonnegative integer, got radius={lw!r}")
    order = operator.index(order)
    if order < 0:
        raise ValueError(f"{func}: order must be non-negative, got order={order}")
    return _gaussian_kernel1d(sd, order, int(lw))[::-1]


def gaussian_filter1d(input, sigma, axis=-1, order=0, output=None, mode="reflect", cval=0.0,
                      truncate=4.0, *, radius=None):
    """1-D Gaussian filter (``scipy.ndimage.gaussian_filter1d``): a correlation with
    SciPy's kernel of radius ``int(truncate * sigma + 0.5)`` (or ``radius``); ``order``
    > 0 convolves with that derivative of the Gaussian.

    Examples
    --------
    >>> gaussian_filter1d([1.0, 2.0, 3.0, 4.0, 5.0], 1)
    array([1.42704095, 2.06782203, 3.        , 3.93217797, 4.57295905])
    """
    func = "gaussian_filter1d"
    w = _gaussian_weights(func, sigma, order, truncate, radius)
    if _dask.is_dask(input):
        from fastconv import _dask_ndimage

        return _dask_ndimage.correlate1d(_SELF, input, w, axis, output, mode, cval, 0, func=func)
    return _correlate1d(func, input, w, axis, output, mode, cval, 0)


def gaussian_filter(input, sigma, order=0, output=None, mode="reflect", cval=0.0,
                    truncate=4.0, *, radius=None, axes=None):
    """n-D Gaussian filter (``scipy.ndimage.gaussian_filter``) as 1-D passes, one per axis
    with ``sigma > 1e-15``; ``sigma``, ``order``, ``mode`` and ``radius`` may be per axis.

    Examples
    --------
    >>> gaussian_filter(np.arange(50, step=2).reshape((5, 5)), sigma=1)
    array([[ 4,  6,  8,  9, 11],
           [10, 12, 14, 15, 17],
           [20, 22, 24, 25, 27],
           [29, 31, 33, 34, 36],
           [35, 37, 39, 40, 42]])
    """
    func = "gaussian_filter"
    if _dask.is_dask(input):
        from fastconv import _dask_ndimage

        return _dask_ndimage.separable(_SELF, gaussian_filter, input, output, sigma=sigma,
                                       order=order, mode=mode, cval=cval, truncate=truncate,
                                       radius=radius, axes=axes)
    a = _input(func, input)
    axes = _axes(func, axes, a.ndim)
    n = len(axes)
    orders = _sequence(func, order, n, "order")
    sigmas = _sequence(func, sigma, n, "sigma")
    modes = _sequence(func, mode, n, "mode")
    radii = _sequence(func, radius, n, "radius")
    passes = [(ax, _gaussian_weights(func, s, o, truncate, r), 0, m, None)
              for ax, s, o, m, r in zip(axes, sigmas, orders, modes, radii, strict=True)
              if s > 1e-15]
    return _separable(func, a, output, passes, cval)


__all__ = [
    "NdimageError",
    "convolve",
    "convolve1d",
    "correlate",
    "correlate1d",
    "gaussian_filter",
    "gaussian_filter1d",
    "uniform_filter",
    "uniform_filter1d",
]
