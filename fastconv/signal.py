"""``scipy.signal`` n-D correlation and convolution on the fastconv engine.

``correlate``, ``convolve`` (``method`` "auto"/"direct"/"fft"), ``fftconvolve``,
``oaconvolve`` (with ``axes``), ``choose_conv_method``, and the 2-D drop-ins
``correlate2d``/``convolve2d`` (SciPy's 2-D call style only). Same names, argument order,
defaults and output shapes as SciPy for real inputs. How a call runs:

- ``method="direct"``: the engine's direct correlation (``conv1d/2d/3d`` on one plane
  with zero padding read in place; more than 3 dimensions fold the leading kernel axes
  into channels, ``fastconv.ndimage.correlate_valid``). ``convolve`` is the correlation
  with ``in2`` reversed on every axis; "full" pads ``k - 1`` on both sides, "same" ``k // 2``
  before (the rest after), "valid" nothing;
- ``method="fft"``, ``fftconvolve``, ``oaconvolve``: real FFTs of the zero-extended inputs
  (``scipy.fft`` on every core, ``workers=-1``; float32 stays in single precision);
  ``oaconvolve`` computes the same one-transform product as ``fftconvolve``;
- "valid" mode swaps the inputs when ``in2`` is the larger on every axis (SciPy's rule);
  ``ValueError`` when neither is at least as large as the other.

Dtypes follow fastconv's rule, ``numpy.result_type(in1, in2, float32)`` (SciPy keeps
integer dtypes and can overflow); complex inputs raise ``TypeError``.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np

from fastconv._config import SIGNAL_FFT_MIN_TAPS as FFT_MIN_TAPS
from fastconv._scipy import scipy_convolve2d as convolve2d
from fastconv._validate import result_dtype
from fastconv.conv import correlate2d

MODES = ("full", "same", "valid")
METHODS = ("auto", "direct", "fft")


def _inputs(func: str, in1, in2):
    a, b = np.asarray(in1), np.asarray(in2)
    for name, v in (("in1", a), ("in2", b)):
        if v.dtype.kind == "c":
            raise TypeError(f"{func}: {name} has complex dtype {v.dtype}; fastconv is "
                            "real-valued")
        if v.dtype.kind not in "biuf":
            raise TypeError(f"{func}: {name} has dtype {v.dtype}; expected real numbers")
    if a.ndim != b.ndim:
        raise ValueError(f"{func}: in1 and in2 should have the same dimensionality, got "
                         f"in1.shape={a.shape} and in2.shape={b.shape}")
    return a, b


def _check_mode(func: str, mode) -> None:
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"{func}: acceptable mode flags are 'valid', 'same', or 'full', "
                         f"got mode={mode!r}")


def _swap_needed(func: str, mode: str, s1, s2, axes=None) -> bool:
    """SciPy's ``_inputs_swap_needed``: in "valid" mode the larger input leads."""
    if mode != "valid" or not s1:
        return False
    axes = range(len(s1)) if axes is None else axes
    ok1 = all(s1[i] >= s2[i] for i in axes)
    ok2 = all(s2[i] >= s1[i] for i in axes)
    if not (ok1 or ok2):
        raise ValueError(f"{func}: for 'valid' mode, one must be at least as large as the "
                         f"other in every dimension, got in1.shape={tuple(s1)} and "
                         f"in2.shape={tuple(s2)}")
    return not ok1


def _direct_convolve(a: np.ndarray, b: np.ndarray, mode: str, dtype) -> np.ndarray:
    """Direct true convolution (``a`` already the leading input), cropped by ``mode``."""
    from fastconv.conv import conv1d, conv2d, conv3d
    from fastconv.ndimage import _pad, correlate_valid

    if mode == "full" and b.size > a.size:  # commutative: the smaller is the kernel
        a, b = b, a
    x = np.ascontiguousarray(a, dtype=dtype)
    w = np.ascontiguousarray(b[(slice(None, None, -1),) * b.ndim], dtype=dtype)
    if mode == "full":
        pads = tuple((k - 1, k - 1) for k in w.shape)
    elif mode == "same":
        pads = tuple((k // 2, (k - 1) // 2) for k in w.shape)
    else:
        pads = ((0, 0),) * w.ndim
    if x.ndim <= 3:
        conv = (conv1d, conv2d, conv3d)[x.ndim - 1]
        return conv(x[None, None], w[None, None], padding=pads, algorithm="direct")[0, 0]
    return correlate_valid(_pad(x, pads, "constant", 0.0), w)


def _empty(dtype) -> np.ndarray:
    return np.array([], dtype=dtype)


def convolve(in1, in2, mode: str = "full", method: str = "auto") -> np.ndarray:
    """n-D true convolution (``scipy.signal.convolve``).

    ``out[i] = sum_j in1[j] * in2[i - j]`` over the zero-extended inputs, cropped by
    ``mode``: "full" ``s1 + s2 - 1``, "same" ``s1`` (centred as SciPy), "valid"
    ``s1 - s2 + 1`` (inputs swapped when ``in2`` is the larger).

    Parameters
    ----------
    in1, in2 : array_like, same number of dimensions
    mode : {"full", "valid", "same"}, default "full"
    method : {"auto", "direct", "fft"}, default "auto"
        "auto" follows :func:`choose_conv_method`.

    Returns
    -------
    ndarray, float32 or float64 (``numpy.result_type(in1, in2, float32)``)

    Examples
    --------
    >>> convolve([1, 2, 3], [0, 1, 0.5])
    array([0. , 1. , 2.5, 4. , 1.5])
    >>> convolve([1, 2, 3], [0, 1, 0.5], mode="same")
    array([1. , 2.5, 4. ])
    """
    func = "convolve"
    a, b = _inputs(func, in1, in2)
    _check_mode(func, mode)
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"{func}: acceptable method flags are 'auto', 'direct', or 'fft', "
                         f"got method={method!r}")
    dtype = result_dtype(a, b)
    if a.ndim == 0:
        return (a * b).astype(dtype)
    if a.size == 0 or b.size == 0:
        return _empty(dtype)
    if _swap_needed(func, mode, a.shape, b.shape):
        a, b = b, a
    if method == "auto":
        method = choose_conv_method(a, b, mode)
    if method == "fft":
        out = _fft_convolve(func, a, b, mode, None)
        if np.result_type(a, b).kind in "biu":  # integer sums are integers (as SciPy)
            np.around(out, out=out)
        if out.size and not np.isfinite(out.flat[0]):
            warnings.warn("Use of fft convolution on input with NAN or inf results in NAN "
                          "or inf output. Consider using method='direct' instead.",
                          RuntimeWarning, stacklevel=3 if func == "correlate" else 2)
        return out
    return _direct_convolve(a, b, mode, dtype)


def correlate(in1, in2, mode: str = "full", method: str = "auto") -> np.ndarray:
    """n-D cross-correlation (``scipy.signal.correlate``): :func:`convolve` with ``in2``
    reversed on every axis.

    ``out[k] = sum_l in1[l] * in2[l - k + s2 - 1]`` for "full" (zero outside the inputs).

    Examples
    --------
    >>> correlate([1, 2, 3], [0, 1, 0.5])
    array([0.5, 2. , 3.5, 3. , 0. ])
    """
    func = "correlate"
    a, b = _inputs(func, in1, in2)
    _check_mode(func, mode)
    if a.ndim == 0:
        return convolve(a, b, mode, method)
    return convolve(a, b[(slice(None, None, -1),) * b.ndim], mode, method)


# --- FFT ---------------------------------------------------------------------------------


def _freq_axes(func: str, a, b, mode, axes):
    """SciPy's ``_init_freq_conv_axes``: normalised axes (length-1 axes dropped: they
    broadcast), shape checks, the "valid" swap."""
    s1, s2 = a.shape, b.shape
    if axes is None:
        axes = list(range(a.ndim))
    else:
        raw = [axes] if np.isscalar(axes) else list(axes)
        if not raw:
            raise ValueError(f"{func}: when provided, axes cannot be empty")
        axes = []
        for ax in raw:
            ax = int(ax)
            if not -a.ndim <= ax < a.ndim:
                raise ValueError(f"{func}: axes exceeds dimensionality of input: axes="
                                 f"{raw}, in1.ndim={a.ndim}")
            axes.append(ax % a.ndim)
        if len(set(axes)) != len(axes):
            raise ValueError(f"{func}: all axes must be unique, got axes={raw}")
    axes = [ax for ax in axes if s1[ax] != 1 and s2[ax] != 1]
    if not all(s1[ax] == s2[ax] or s1[ax] == 1 or s2[ax] == 1
               for ax in range(a.ndim) if ax not in axes):
        raise ValueError(f"{func}: incompatible shapes for in1 and in2: {s1} and {s2}")
    if _swap_needed(func, mode, s1, s2, axes):
        a, b = b, a
    return a, b, axes


def _centered(arr: np.ndarray, newshape) -> np.ndarray:
    start = [(c - n) // 2 for c, n in zip(arr.shape, newshape, strict=True)]
    return arr[tuple(slice(s, s + n) for s, n in zip(start, newshape, strict=True))]


def _fft_convolve(func: str, a, b, mode: str, axes) -> np.ndarray:
    import scipy.fft as sfft

    dtype = result_dtype(a, b)
    a, b, axes = _freq_axes(func, a, b, mode, axes)
    s1, s2 = a.shape, b.shape
    a = np.asarray(a, dtype=dtype)
    b = np.asarray(b, dtype=dtype)
    if not axes:
        ret = a * b
    else:
        shape = [max(s1[i], s2[i]) if i not in axes else s1[i] + s2[i] - 1
                 for i in range(a.ndim)]
        fshape = [sfft.next_fast_len(shape[ax], True) for ax in axes]
        sp1 = sfft.rfftn(a, fshape, axes=axes, workers=-1)
        sp2 = sfft.rfftn(b, fshape, axes=axes, workers=-1)
        ret = sfft.irfftn(sp1 * sp2, fshape, axes=axes, workers=-1)
        ret = ret[tuple(slice(n) for n in shape)]
    if mode == "full":
        out = ret
    elif mode == "same":
        out = _centered(ret, s1)
    else:
        out = _centered(ret, [ret.shape[i] if i not in axes else s1[i] - s2[i] + 1
                              for i in range(ret.ndim)])
    return np.ascontiguousarray(out, dtype=dtype)


def _fft_entry(func: str, in1, in2, mode, axes) -> np.ndarray:
    a, b = _inputs(func, in1, in2)
    _check_mode(func, mode)
    dtype = result_dtype(a, b)
    if a.ndim == 0:
        return (a * b).astype(dtype)
    if a.size == 0 or b.size == 0:
        return _empty(dtype)
    return _fft_convolve(func, a, b, mode, axes)


def fftconvolve(in1, in2, mode: str = "full", axes=None) -> np.ndarray:
    """True convolution by FFT (``scipy.signal.fftconvolve``), over ``axes`` (default
    all; other axes broadcast: equal sizes or 1).

    Examples
    --------
    >>> fftconvolve([1., 2., 3.], [0., 1., 0.5]).round(12) + 0.0   # + 0.0: no -0.
    array([0. , 1. , 2.5, 4. , 1.5])
    """
    return _fft_entry("fftconvolve", in1, in2, mode, axes)


def oaconvolve(in1, in2, mode: str = "full", axes=None) -> np.ndarray:
    """``scipy.signal.oaconvolve``'s arguments and results; computed as
    :func:`fftconvolve` (one transform per input on every core), the same values to
    float rounding.

    Examples
    --------
    >>> oaconvolve([1., 2., 3.], [0., 1., 0.5], mode="valid").round(12)
    array([2.5])
    """
    return _fft_entry("oaconvolve", in1, in2, mode, axes)


def choose_conv_method(in1, in2, mode: str = "full", measure: bool = False):
    """The method :func:`convolve` / :func:`correlate` use for ``method="auto"``.

    Rule: "fft" when the smaller input has at least ``FFT_MIN_TAPS`` (400) elements, the
    engine's measured direct/FFT crossover; else "direct". Integer inputs whose largest
    possible sum is not exact in the result's float (2**24 for float32, 2**53 for
    float64; SciPy's rule with fastconv's result dtype) and boolean inputs always go
    "direct". With ``measure=True`` both are timed and ``(fastest, {"direct": seconds,
    "fft": seconds})`` is returned, as SciPy.

    Examples
    --------
    >>> choose_conv_method(np.ones(1000), np.ones(5))
    'direct'
    >>> choose_conv_method(np.ones((64, 64)), np.ones((21, 21)))
    'fft'
    """
    func = "choose_conv_method"
    a, b = _inputs(func, in1, in2)
    _check_mode(func, mode)
    if measure:
        times = {}
        for method in ("fft", "direct"):
            runs = []
            for _ in range(3):
                t0 = time.perf_counter()
                convolve(a, b, mode, method)
                runs.append(time.perf_counter() - t0)
            times[method] = min(runs)
        return min(times, key=times.get), times
    if a.ndim == 0 or min(a.size, b.size) < FFT_MIN_TAPS or "b" in (a.dtype.kind,
                                                                     b.dtype.kind):
        return "direct"
    if a.dtype.kind in "iu" or b.dtype.kind in "iu":
        def peak(v):  # |v|.max() without integer overflow (abs(int8(-128)))
            return max(abs(int(v.min())), abs(int(v.max())))

        largest = peak(a) * peak(b) * min(a.size, b.size)
        if largest > 2 ** np.finfo(result_dtype(a, b)).nmant - 1:
            return "direct"
    return "fft" if math.prod(a.shape) and math.prod(b.shape) else "direct"


__all__ = [
    "choose_conv_method",
    "convolve",
    "convolve2d",
    "correlate",
    "correlate2d",
    "fftconvolve",
    "oaconvolve",
]
