"""Named 2-D kernels (the seeds' exercises) and the registry the CLI's ``--kernel`` uses.

Every kernel is a 2-D float64 array meant for **cross-correlation**, i.e. for
``fc.conv2d`` / ``fc.corr2d`` / ``fc.correlate2d``, which do not flip the kernel:
``y[i, j] = sum_{r, s} x[i + r, j + s] * k[r, s]``.

Sign convention: that of ``scipy.ndimage.sobel``/``prewitt``/``laplace`` (the tests
check it) and of OpenCV's ``cv2.Sobel`` (whose ``dx=1`` kernel is ``sobel_x``, applied
by correlation as ``cv2.filter2D`` does): ``sobel_x`` and ``prewitt_x``
respond **positively** where intensity increases to the right (increasing column
index, OpenCV's ``dx=1``, ``ndimage.sobel(axis=1)``); ``sobel_y``/``prewitt_y``
respond positively where it increases downward (increasing row index, ``dy=1``,
``axis=0``). The seeds' ``edge = [[1, -1]]`` has the opposite sign: it gives ``+1`` at
a bright-to-dark step to the right (``x[j] - x[j+1]``). With ``fc.convolve2d``
(true convolution, kernel flipped) every antisymmetric kernel changes sign.

Constant kernels are read-only module arrays (``fc.kernels.sobel_x``);
``box(size)`` and ``gaussian(size, sigma)`` are functions; the Laplacian comes in two
arrays, ``laplace`` (4-neighbour) and ``laplace8`` (8-neighbour). ``get(spec)`` parses a
CLI spec (``"sobel-x"``, ``"sobel_x"``, ``"box:3"``, ``"gaussian:5:1.0"``) and returns a
fresh writable copy; ``names()`` lists the registry and ``describe(name)`` gives its
one-line description.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def _const(rows) -> np.ndarray:
    a = np.array(rows, dtype=np.float64)
    a.flags.writeable = False
    return a


#: ``x[i, j]`` unchanged (``"same"`` padding) — the 3x3 delta.
identity = _const([[0, 0, 0], [0, 1, 0], [0, 0, 0]])
#: The seeds' horizontal edge detector: ``x[j] - x[j+1]`` (+1 at a bright-to-dark step).
edge = _const([[1, -1]])
#: Sobel d/dx (columns): positive where intensity increases to the right.
sobel_x = _const([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
#: Sobel d/dy (rows): positive where intensity increases downward.
sobel_y = _const([[-1, -2, -1], [0, 0, 0], [1, 2, 1]])
#: Prewitt d/dx: positive where intensity increases to the right.
prewitt_x = _const([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]])
#: Prewitt d/dy: positive where intensity increases downward.
prewitt_y = _const([[-1, -1, -1], [0, 0, 0], [1, 1, 1]])
#: 4-neighbour Laplacian (``scipy.ndimage.laplace``'s stencil).
laplace = _const([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
#: 8-neighbour Laplacian.
laplace8 = _const([[1, 1, 1], [1, -8, 1], [1, 1, 1]])
#: Second derivative along a row: ``x[j-1] - 2 x[j] + x[j+1]``.
second_derivative = _const([[1, -2, 1]])
#: Sharpen: identity plus the negated 4-neighbour Laplacian (sums to 1).
sharpen = _const([[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
#: Emboss (light from the top left; sums to 1).
emboss = _const([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])


#: The largest ``size`` of ``box`` and ``gaussian``: a 2047 x 2047 float64 kernel is
#: 32 MiB. Checked before anything is built, so ``box(1000001)`` (7 TiB) is a ValueError.
MAX_SIZE = 2047


def _check_size(func: str, size) -> int:
    if not isinstance(size, numbers.Integral) or isinstance(size, bool):
        raise TypeError(f"{func}: size must be an odd int >= 1, got {size!r}")
    if size < 1 or size % 2 == 0:
        raise ValueError(
            f"{func}: size must be an odd int >= 1 (the kernel needs a centre pixel), "
            f"got size={size!r}"
        )
    if size > MAX_SIZE:
        raise ValueError(
            f"{func}: size={size!r} is too large: at most MAX_SIZE={MAX_SIZE} (a "
            f"{MAX_SIZE}x{MAX_SIZE} float64 kernel is 32 MiB); build larger kernels yourself"
        )
    return int(size)


def box(size: int = 3) -> np.ndarray:
    """Normalised ``size x size`` mean filter: every entry ``1 / size**2``.

    Parameters
    ----------
    size : int, default 3
        Odd, 1 to ``MAX_SIZE`` = 2047 (a centre pixel keeps ``"same"`` output aligned
        with the input).

    Returns
    -------
    ndarray, shape (size, size), float64, sums to 1

    Raises
    ------
    ValueError
        ``size`` even, < 1 or > ``MAX_SIZE``.
    TypeError
        ``size`` not an int.

    Examples
    --------
    >>> box(3) * 9
    array([[1., 1., 1.],
           [1., 1., 1.],
           [1., 1., 1.]])
    """
    size = _check_size("box", size)
    return np.full((size, size), 1.0 / (size * size))


def gaussian(size: int = 5, sigma: float = 1.0) -> np.ndarray:
    """Normalised, separable ``size x size`` Gaussian blur.

    ``g[i] = exp(-(i - c)**2 / (2 sigma**2))`` for ``i = 0 .. size-1``, ``c = size // 2``,
    normalised to sum 1; the kernel is the outer product ``g[:, None] * g[None, :]``
    (so it sums to 1 too).

    Parameters
    ----------
    size : int, default 5
        Odd, 1 to ``MAX_SIZE`` = 2047.
    sigma : float, default 1.0
        Standard deviation in pixels, > 0 and finite, and large enough that
        ``sigma**2`` does not underflow (about 1e-154).

    Returns
    -------
    ndarray, shape (size, size), float64

    Raises
    ------
    ValueError
        ``size`` even, < 1 or > ``MAX_SIZE``; ``sigma`` <= 0, not finite, or so small
        that ``sigma**2`` underflows to 0 (the kernel would be NaN).
    TypeError
        ``size`` not an int, ``sigma`` not a real number.

    Examples
    --------
    >>> gaussian(3, 1.0).round(4)
    array([[0.0751, 0.1238, 0.0751],
           [0.1238, 0.2042, 0.1238],
           [0.0751, 0.1238, 0.0751]])
    """
    size = _check_size("gaussian", size)
    if not isinstance(sigma, numbers.Real) or isinstance(sigma, bool):
        raise TypeError(f"gaussian: sigma must be a real number > 0, got {sigma!r}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"gaussian: sigma must be > 0 and finite, got sigma={sigma!r}")
    var = float(sigma) * float(sigma)  # inf for a huge sigma (a flat kernel), no OverflowError
    if var == 0.0:
        raise ValueError(
            f"gaussian: sigma={sigma!r} is too small: sigma**2 underflows to 0 and the "
            "kernel would be NaN (use sigma >= 1e-150)"
        )
    i = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(i * i) / (2.0 * var))
    g /= g.sum()
    return np.outer(g, g)


#: name -> (the array or the function, its parameters for a CLI spec, one-line description)
_REGISTRY: dict[str, tuple] = {
    "identity": (identity, "", "3x3 delta: returns the input unchanged"),
    "edge": (edge, "", "[[1, -1]]: the seeds' edge detector, +1 at a bright-to-dark step"),
    "sobel_x": (sobel_x, "", "3x3 Sobel d/dx, positive where intensity rises to the right"),
    "sobel_y": (sobel_y, "", "3x3 Sobel d/dy, positive where intensity rises downward"),
    "prewitt_x": (prewitt_x, "", "3x3 Prewitt d/dx, positive where intensity rises to the right"),
    "prewitt_y": (prewitt_y, "", "3x3 Prewitt d/dy, positive where intensity rises downward"),
    "laplace": (laplace, "", "3x3 4-neighbour Laplacian [[0,1,0],[1,-4,1],[0,1,0]]"),
    "laplace8": (laplace8, "", "3x3 8-neighbour Laplacian [[1,1,1],[1,-8,1],[1,1,1]]"),
    "second_derivative": (second_derivative, "", "[[1, -2, 1]]: second derivative along rows"),
    "sharpen": (sharpen, "", "3x3 sharpen: identity minus the 4-neighbour Laplacian"),
    "emboss": (emboss, "", "3x3 emboss, light from the top left"),
    "box": (box, ":SIZE", "SIZE x SIZE mean filter, odd SIZE (default 3), e.g. box:3"),
    "gaussian": (
        gaussian,
        ":SIZE:SIGMA",
        "SIZE x SIZE normalised Gaussian, odd SIZE (default 5), SIGMA > 0 (default 1.0), "
        "e.g. gaussian:5:1.0",
    ),
}


def names() -> list[str]:
    """The registry's kernel names (Python spelling; ``get`` also takes ``-`` for ``_``).

    >>> names()[:3]
    ['identity', 'edge', 'sobel_x']
    """
    return list(_REGISTRY)


def _canonical(func: str, name) -> str:
    key = str(name).strip().lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ValueError(
            f"{func}: unknown kernel {name!r}; valid names are {', '.join(_REGISTRY)}"
        )
    return key


def describe(name: str) -> str:
    """One-line description of a named kernel, for ``fastconv kernels``.

    >>> describe("sobel-x")
    '3x3 Sobel d/dx, positive where intensity rises to the right'
    """
    return _REGISTRY[_canonical("describe", name)][2]


def usage(name: str) -> str:
    """The CLI spec form of a named kernel, e.g. ``"gaussian:SIZE:SIGMA"``.

    >>> usage("box")
    'box:SIZE'
    """
    key = _canonical("usage", name)
    return key + _REGISTRY[key][1]


def _parse_number(spec: str, what: str, text: str, kind):
    try:
        return kind(text)
    except ValueError:
        word = "an int" if kind is int else "a number"
        raise ValueError(
            f"get: kernel spec {spec!r}: {what} must be {word}, got {text!r}"
        ) from None


def get(spec: str) -> np.ndarray:
    """The kernel a CLI spec names, as a fresh writable 2-D float64 array.

    ``NAME`` or ``NAME:PARAM:...``; names are case-insensitive and ``-`` is read as ``_``
    (``sobel-x`` == ``sobel_x``). ``box:SIZE``, ``gaussian:SIZE:SIGMA`` (both parameters
    optional: ``gaussian``, ``gaussian:7``).

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid ones), parameters given to a fixed
        kernel, too many parameters, a parameter that does not parse, an even,
        non-positive or too large size (``MAX_SIZE``, checked before building),
        ``sigma <= 0``, or a kernel that is not finite everywhere (the spec is named).
    TypeError
        ``spec`` not a string.

    Examples
    --------
    >>> get("sobel-x")
    array([[-1.,  0.,  1.],
           [-2.,  0.,  2.],
           [-1.,  0.,  1.]])
    >>> get("box:3").sum()
    np.float64(1.0)
    """
    if not isinstance(spec, str):
        raise TypeError(
            f"get: kernel spec must be a string like 'sobel-x' or 'box:3', got {spec!r}"
        )
    name, *params = spec.split(":")
    key = _canonical("get", name)
    kernel, signature, _ = _REGISTRY[key]
    if isinstance(kernel, np.ndarray):
        if params:
            raise ValueError(f"get: kernel {key!r} takes no parameters, got spec {spec!r}")
        return kernel.copy()
    wanted = [p for p in signature.split(":") if p]
    if len(params) > len(wanted):
        raise ValueError(
            f"get: kernel spec {spec!r} has {len(params)} parameters; expected at most "
            f"{len(wanted)} ({usage(key)})"
        )
    kinds = {"SIZE": int, "SIGMA": float}
    args = [
        _parse_number(spec, w.lower(), p.strip(), kinds[w])
        for w, p in zip(wanted, params, strict=False)
    ]
    try:
        built = kernel(*args)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"get: kernel spec {spec!r}: {exc}") from None
    if not np.isfinite(built).all():
        raise ValueError(f"get: kernel spec {spec!r} gives a kernel with NaN or inf values")
    return built


__all__ = [
    "MAX_SIZE",
    "box",
    "describe",
    "edge",
    "emboss",
    "gaussian",
    "get",
    "identity",
    "laplace",
    "laplace8",
    "names",
    "prewitt_x",
    "prewitt_y",
    "second_derivative",
    "sharpen",
    "sobel_x",
    "sobel_y",
    "usage",
]
