"""Argument normalisation and checks: everything here raises ValueError/TypeError
with a message naming the function, the parameter, what was given and the shapes."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

#: The padding modes, and the numpy.pad (and dask.array.pad) mode each one is: the one
#: table (``fastconv.cpu.pad.MODE_CODES`` maps these to its kernel codes).
NUMPY_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
                   "circular": "wrap"}
PADDING_MODES = tuple(NUMPY_PAD_MODES)
PADDING_STRINGS = ("valid", "same", "full")
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


#: The largest integer parameter accepted: sizes, strides, paddings, dilations and groups
#: reach the compiled kernels as int64.
INT_MAX = 2**63 - 1


def _is_int(v) -> bool:
    """An int or a NumPy integer; never a bool (``True``, ``numpy.True_``)."""
    if type(v) is int:  # the common case, without the slow ABC check (bool is not int here)
        return True
    return isinstance(v, numbers.Integral) and not isinstance(v, bool | np.bool_)


def _check_range(value, out: tuple, name: str, func: str) -> None:
    if out and max(out) > INT_MAX:
        raise ValueError(f"{func}: {name} must be < 2**63 (an int64), got {value!r}")


def as_int(value, name: str, func: str, *, minimum: int | None = None) -> int:
    """``value`` as a Python int: an int or a NumPy integer (never a bool), at least
    ``minimum`` and below 2**63. The one normaliser of scalar integer parameters
    (``groups``, ``divisor_override``, ``epochs``, channel counts, ...).

    >>> as_int(np.int64(2), "groups", "conv2d", minimum=1)
    2
    """
    if not _is_int(value) or (minimum is not None and value < minimum):
        at_least = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{func}: {name} must be an int{at_least}, got {value!r}")
    out = int(value)
    _check_range(value, (out,), name, func)
    return out


def as_real(value, name: str, func: str, *, positive: bool = True) -> float:
    """``value`` as a finite Python float: an int, a float or a NumPy integer/float
    (never a bool), ``> 0`` when ``positive``.

    >>> as_real(np.float32(0.5), "lr", "learn_kernel")
    0.5
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)
    v = float(value) if ok else float("nan")
    if not (math.isfinite(v) and (v > 0 or not positive)):
        what = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"{func}: {name} must be {what}, got {value!r}")
    return v


def ntuple(value, n: int, name: str, func: str, *, minimum: int | None = None) -> tuple:
    """Normalise an int-or-tuple argument to an n-tuple of ints, checking each entry.

    A one-element tuple is broadcast to every axis, as PyTorch does (``padding=(1,)``
    on a 2-D op); entries are ints or NumPy integers (not bools) below 2**63.

    >>> ntuple(2, 3, "stride", "conv3d", minimum=1)
    (2, 2, 2)
    >>> ntuple((1,), 2, "padding", "conv2d")
    (1, 1)
    """
    if type(value) is int:  # fast path for the common case (bools take the checks below)
        out = (value,) * n
    elif _is_int(value):
        out = (int(value),) * n
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) == 1 and n != 1:
            value = tuple(value) * n
        if len(value) != n or not all(_is_int(v) for v in value):
            raise ValueError(
                f"{func}: {name} must be an int or a tuple of {n} ints, got {value!r}"
            )
        out = tuple(int(v) for v in value)
    else:
        raise TypeError(f"{func}: {name} must be an int or a tuple of {n} ints, got {value!r}")
    if minimum is not None and out and min(out) < minimum:
        raise ValueError(f"{func}: {name} must be >= {minimum}, got {value!r}")
    _check_range(value, out, name, func)
    return out


def check_dtype(arr: np.ndarray, name: str, func: str) -> None:
    """Reject complex, object, string and other non-real dtypes (bool is checked per call
    by :func:`check_not_all_bool`: mixed with a number it is promoted, as NumPy does)."""
    kind = arr.dtype.kind
    if kind not in "biuf":
        raise TypeError(
            f"{func}: {name} has dtype {arr.dtype}; expected a real numeric dtype "
            "(float32/float64 are computed natively, integers are promoted)"
        )


def check_not_all_bool(func: str, arrays: dict) -> None:
    """TypeError when every given array (None entries skipped) is bool: there is no
    number type to promote to. A bool array next to a numeric one is promoted by
    ``numpy.result_type``, as NumPy's own arithmetic does."""
    given = {k: a for k, a in arrays.items() if a is not None}
    if given and all(a.dtype.kind == "b" for a in given.values()):
        names = " and ".join(given)
        raise TypeError(
            f"{func}: {names} {'has' if len(given) == 1 else 'have'} dtype bool; expected "
            "a real numeric dtype (cast to a number type; bool mixed with a number is "
            "promoted as NumPy does)"
        )


def as_array(x, name: str, func: str) -> np.ndarray:
    """``x`` as a NumPy array with a real numeric dtype (no copy yet)."""
    if x is None:
        raise TypeError(f"{func}: {name} must be an array, got None")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise ValueError(f"{func}: {name} is not a rectangular array: {exc}") from None
    check_dtype(arr, name, func)
    return arr


def result_dtype(*arrays) -> np.dtype:
    """float32 or float64: ``numpy.result_type(*arrays, float32)`` (uint8 + f32 -> f32)."""
    dtypes = {a.dtype for a in arrays if a is not None}
    if len(dtypes) == 1:  # all the same native float: that dtype (result_type is slow)
        (dt,) = dtypes
        if dt == _F32 or dt == _F64:
            return dt
    dt = np.result_type(*[a.dtype for a in arrays if a is not None], np.float32)
    if dt not in (np.float32, np.float64):  # float16/longdouble -> nearest native
        dt = np.dtype(np.float64) if dt.itemsize > 4 else np.dtype(np.float32)
    return np.dtype(dt)


def native(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """C-contiguous, native byte order, given dtype (copies only when needed)."""
    return np.ascontiguousarray(arr, dtype=dtype)


def batched(x: np.ndarray, nspatial: int, func: str, name: str = "x") -> tuple[np.ndarray, bool]:
    """Add a batch axis to an unbatched ``(C, *spatial)`` input. Returns (x, was_unbatched)."""
    if x.ndim == nspatial + 1:
        return x[None], True
    if x.ndim == nspatial + 2:
        return x, False
    raise ValueError(
        f"{func}: {name} must be {nspatial + 2}-D (N, C, *spatial) or {nspatial + 1}-D "
        f"(C, *spatial), got {x.ndim}-D with {name}.shape={x.shape}"
    )


def check_padding_mode(mode, func: str) -> str:
    if mode not in PADDING_MODES:
        raise ValueError(
            f"{func}: invalid padding_mode {mode!r}, should be one of {PADDING_MODES}"
        )
    return mode


def check_algorithm(algorithm, func: str, choices: tuple) -> str:
    if algorithm not in choices:
        raise ValueError(f"{func}: invalid algorithm {algorithm!r}, should be one of {choices}")
    return algorithm
