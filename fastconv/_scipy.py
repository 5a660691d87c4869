"""``scipy.signal.correlate2d`` / ``convolve2d`` drop-ins computed on the fastconv engine.

The boundary is turned into an explicit padding, then the engine's "valid"
cross-correlation (``conv2d``) runs on the padded image. For an axis ``a b c`` padded
by 3 (SciPy's names, with the numpy.pad mode that builds them)::

    'fill'  (or 'pad')          v v v | a b c | v v v    (numpy 'constant', v = fillvalue)
    'wrap'  (or 'circular')     a b c | a b c | a b c    (numpy 'wrap')
    'symm'  (or 'symmetric')    c b a | a b c | c b a    (numpy 'symmetric': edge repeated)

SciPy's ``'symm'`` repeats the edge sample, so it is *not* fastconv's ``padding_mode=
"reflect"`` (``d c b | a b c d``). A kernel larger than the image extends the image by
as many periods as needed, as SciPy >= 1.9 does (scipy/scipy#16134).

Padding per mode, for a kernel of extent ``k`` on an axis (``_shapes.resolve_padding``):
``"valid"`` none, ``"full"`` ``k - 1`` on both sides, ``"same"`` ``(k - 1) // 2`` before
for correlation and ``k // 2`` before for convolution (the rest after). The two "same"
centrings differ for even ``k``, exactly as in SciPy's C core.

The sum is always the engine's direct one (``algorithm="direct"``), whatever the
kernel size, as SciPy's own ``correlate2d`` sums directly: exact zeros stay exact.
SciPy itself is not imported here (it is fastconv's BLAS provider, a runtime
dependency, and the test oracle).
"""

from __future__ import annotations

import numpy as np

from fastconv import _run as run_layer
from fastconv._algorithms import direct_sums
from fastconv._shapes import resolve_padding
from fastconv._validate import as_array, check_not_all_bool, result_dtype

#: SciPy's output-size flags.
MODES = ("valid", "same", "full")
#: SciPy's boundary names (aliases included) -> canonical name.
BOUNDARIES = {
    "fill": "fill",
    "pad": "fill",
    "wrap": "wrap",
    "circular": "wrap",
    "symm": "symm",
    "symmetric": "symm",
}
#: canonical boundary -> numpy.pad mode.
NP_PAD = {"fill": "constant", "wrap": "wrap", "symm": "symmetric"}


def _fillvalue(func: str, fillvalue) -> float:
    """``fillvalue`` as a Python float: a real scalar or a one-element array (as SciPy)."""
    try:
        v = np.asarray(fillvalue)
    except (TypeError, ValueError):
        v = np.asarray(None)
    if v.dtype.kind not in "biufc":
        raise TypeError(f"{func}: fillvalue must be a real number, got {fillvalue!r}")
    if v.size != 1:
        raise ValueError(
            f"{func}: `fillvalue` must be scalar or an array with one element (as in "
            f"SciPy), got fillvalue.shape={v.shape}"
        )
    v = v.reshape(())
    if v.dtype.kind == "c":
        if v.imag != 0:
            raise ValueError(
                f"{func}: could not cast `fillvalue` directly to the output (as in SciPy): "
                f"fillvalue={fillvalue!r}, and fastconv computes in float32/float64 "
                "(complex data is not supported)"
            )
        v = v.real
    return float(v)


def _check(func: str, in1, in2, mode, boundary, fillvalue):
    """Validated ``(in1, in2, boundary, fillvalue)``: real 2-D arrays, known flags."""
    a = as_array(in1, "in1", func)
    b = as_array(in2, "in2", func)
    check_not_all_bool(func, {"in1": a, "in2": b})
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(
            f"{func}: inputs must both be 2-D arrays, got in1.shape={a.shape} and "
            f"in2.shape={b.shape}"
        )
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(
            f"{func}: invalid mode {mode!r}; acceptable mode flags are 'valid', 'same', "
            "or 'full'"
        )
    if not isinstance(boundary, str) or boundary not in BOUNDARIES:
        raise ValueError(
            f"{func}: invalid boundary {boundary!r}; acceptable boundary flags are 'fill', "
            "'circular' (or 'wrap'), and 'symmetric' (or 'symm')"
        )
    if a.size == 0 or b.size == 0:
        raise ValueError(
            f"{func}: inputs must not be empty, got in1.shape={a.shape} and in2.shape={b.shape}"
        )
    return a, b, BOUNDARIES[boundary], _fillvalue(func, fillvalue)


def _swap_needed(func: str, mode: str, shape1: tuple, shape2: tuple) -> bool:
    """SciPy's rule: in "valid" mode the larger input is the image; if neither input is
    at least as large as the other on every axis, that is an error."""
    if mode != "valid":
        return False
    ok1 = all(s1 >= s2 for s1, s2 in zip(shape1, shape2, strict=True))
    ok2 = all(s2 >= s1 for s1, s2 in zip(shape1, shape2, strict=True))
    if not (ok1 or ok2):
        raise ValueError(
            f"{func}: for 'valid' mode, one input must be at least as large as the other "
            f"in every dimension, got in1.shape={shape1} and in2.shape={shape2}"
        )
    return not ok1


def _correlate_padded(func: str, image, kernel, pads, boundary: str, fill: float, dtype):
    """Cross-correlate ``image`` with ``kernel`` after padding it by ``pads`` with the
    boundary rule; the engine's padding modes are used where they coincide with SciPy's."""
    with direct_sums():  # never the separable path: SciPy's sums of the 2-D kernel
        return _conv_padded(conv2d, image, kernel, pads, boundary, fill, dtype)


def conv2d(x, w, padding=0, padding_mode="zeros", algorithm="auto"):
    """``fastconv.conv2d`` (the execution layer's forward runner, no bias)."""
    return run_layer.forward("conv2d", 2, x, w, None, 1, padding, 1, 1, padding_mode, None,
                        algorithm, False)


def _conv_padded(conv2d, image, kernel, pads, boundary: str, fill: float, dtype):
    x, w = image[None, None], kernel[None, None]
    # Always the direct sum, whatever the kernel size: SciPy's correlate2d has no method
    # argument and sums directly, so its exact zeros stay exact (an FFT would leave ~1e-17).
    direct = {"algorithm": "direct"}
    if boundary == "fill" and fill == 0:
        return conv2d(x, w, padding=pads, padding_mode="zeros", **direct)[0, 0]
    if boundary == "wrap" and all(max(p) <= n for p, n in zip(pads, image.shape, strict=True)):
        return conv2d(x, w, padding=pads, padding_mode="circular", **direct)[0, 0]
    # non-zero fill, 'symm' (numpy 'symmetric', no engine mode), wrap by more than a period
    extra = {"constant_values": fill} if boundary == "fill" else {}
    padded = np.pad(image.astype(dtype, copy=False), pads, mode=NP_PAD[boundary], **extra)
    return conv2d(padded[None, None], w, **direct)[0, 0]


def _run(func: str, in1, in2, mode, boundary, fillvalue, flip: bool) -> np.ndarray:
    a, b, bnd, fill = _check(func, in1, in2, mode, boundary, fillvalue)
    swapped = _swap_needed(func, mode, a.shape, b.shape)
    if swapped:
        a, b = b, a
    dtype = result_dtype(a, b)
    pads = resolve_padding(mode, b.shape, (1, 1), (1, 1), func)
    if flip:  # the flipped kernel is centred from the other side ("same", even extents)
        pads = tuple((after, before) for before, after in pads)
        b = b[::-1, ::-1]
    out = _correlate_padded(func, a, b, pads, bnd, fill, dtype)
    if swapped and not flip:  # scipy.signal.correlate2d reverses a swapped result
        out = out[::-1, ::-1]
    return np.ascontiguousarray(out)


_DOC = """{what}: a drop-in for ``scipy.signal.{name}`` computed on the fastconv engine.

    {formula}

    Parameters
    ----------
    in1 : array_like, 2-D
        The image.
    in2 : array_like, 2-D
        The kernel. In ``"valid"`` mode the inputs are swapped when ``in1`` is smaller
        on some axis and ``in2`` is at least as large on both, as SciPy does{swap_note}.
    mode : {{"full", "valid", "same"}}, default "full"
        Output size: ``"full"`` (H + h - 1, W + w - 1), ``"valid"`` (H - h + 1, W - w + 1),
        ``"same"`` (H, W), centred as SciPy centres it ({centring}).
    boundary : {{"fill", "wrap", "symm"}}, default "fill"
        How the image is extended (aliases ``"pad"``, ``"circular"``, ``"symmetric"``)::

            'fill'  v v v | a b c | v v v    (v = fillvalue)
            'wrap'  a b c | a b c | a b c
            'symm'  c b a | a b c | c b a    (edge repeated: numpy 'symmetric')

        A kernel larger than the image extends it by as many periods as needed.
    fillvalue : scalar, default 0
        Value used outside the image with ``boundary="fill"``.

    Returns
    -------
    ndarray, 2-D, float32 or float64
        Unlike SciPy, which keeps integer dtypes (and overflows), the result follows
        fastconv's rule ``numpy.result_type(in1, in2, float32)``: uint8/int8/int16
        inputs give float32, int32/int64 (plain Python ints) and float64 give float64.

    Raises
    ------
    ValueError
        Non-2-D or empty inputs, unknown ``mode`` or ``boundary``, neither input at least
        as large as the other in ``"valid"`` mode, a ``fillvalue`` with several elements.
    TypeError
        Complex, object or string inputs, or two bool inputs (SciPy accepts complex;
        fastconv does not).

    Examples
    --------
    {example}
    """


def scipy_correlate2d(in1, in2, mode: str = "full", boundary: str = "fill",
                      fillvalue=0) -> np.ndarray:
    return _run("correlate2d", in1, in2, mode, boundary, fillvalue, flip=False)


def scipy_convolve2d(in1, in2, mode: str = "full", boundary: str = "fill",
                     fillvalue=0) -> np.ndarray:
    return _run("convolve2d", in1, in2, mode, boundary, fillvalue, flip=True)


scipy_correlate2d.__doc__ = _DOC.format(
    what="2-D cross-correlation",
    name="correlate2d",
    formula="out[i, j] = sum_{r, s} in1_ext[i + r - p0, j + s - p1] * in2[r, s], where in1_ext "
    "is in1 extended by the boundary rule and (p0, p1) the padding before (h - 1 for "
    "'full', (h - 1) // 2 for 'same', 0 for 'valid').",
    swap_note=", and the swapped result is reversed on both axes",
    centring="``(h - 1) // 2`` rows of padding before, the rest after",
    example=">>> scipy_correlate2d([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]], "
    "mode=\"valid\")\n    array([[19., 25.],\n           [37., 43.]])",
)
scipy_convolve2d.__doc__ = _DOC.format(
    what="True 2-D convolution",
    name="convolve2d",
    formula="Cross-correlation with in2 flipped on both axes: out = correlate(in1, "
    "in2[::-1, ::-1]), with the 'same' padding taken from the other side.",
    swap_note="",
    centring="``h // 2`` rows of padding before the flipped kernel, the rest after",
    example=">>> scipy_convolve2d([[1, 2], [3, 4]], [[1, 1]], mode=\"valid\")\n"
    "    array([[3.],\n           [7.]])",
)

__all__ = ["scipy_convolve2d", "scipy_correlate2d"]
