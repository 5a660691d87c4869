"""Argument normalisation and checks: everything here raises ValueError/TypeError
with a message naming the function, the parameter, what was given and the shapes."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PADDING_STRINGS = ("valid", "same", "full")
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _is_int(v) -> bool:
    if type(v) is int:  # the common case, without the slow ABC check (bool is not int here)
        return True
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def ntuple(value, n: int, name: str, func: str, *, minimum: int | None = None) -> tuple:
    """Normalise an int-or-tuple argument to an n-tuple of ints, checking each entry.

    >>> ntuple(2, 3, "stride", "conv3d", minimum=1)
    (2, 2, 2)
    """
    if type(value) is int:  # fast path for the common case (bools take the checks below)
        out = (value,) * n
    elif _is_int(value):
        out = (int(value),) * n
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n or not all(_is_int(v) for v in value):
            raise ValueError(
                f"{func}: {name} must be an int or a tuple of {n} ints, got {value!r}"
            )
        out = tuple(int(v) for v in value)
    else:
        raise TypeError(f"{func}: {name} must be an int or a tuple of {n} ints, got {value!r}")
    if minimum is not None and out and min(out) < minimum:
        raise ValueError(f"{func}: {name} must be >= {minimum}, got {value!r}")
    return out


def check_dtype(arr: np.ndarray, name: str, func: str) -> None:
    """Reject complex, bool, object, string and other non-real dtypes."""
    kind = arr.dtype.kind
    if kind not in "iuf":
        raise TypeError(
            f"{func}: {name} has dtype {arr.dtype}; expected a real numeric dtype "
            "(float32/float64 are computed natively, integers are promoted)"
        )


def as_array(x, name: str, func: str) -> np.ndarray:
    """``x`` as a NumPy array with a real numeric dtype (no copy yet)."""
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
