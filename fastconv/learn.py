"""Learning a kernel from (input, output) pairs: the seeds' story as a function.

``learn_kernel(x, y, kernel_size)`` fits ``y ~ conv2d(x, kernel) (+ bias)`` ("valid"
cross-correlation) by gradient descent on the squared error, exactly the seed's loop::

    for epoch in range(10):
        y_hat = conv(x)
        loss = ((y_hat - y) ** 2).sum()
        kernel -= lr * d loss / d kernel

The arguments are validated and planned once; every epoch then runs the CPU forward and
weight-gradient kernels directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fastconv import _dispatch, _shapes
from fastconv._config import LEARN_SERIAL_BELOW as SERIAL_BELOW
from fastconv._plan import plan_conv
from fastconv._validate import (
    as_array,
    as_int,
    as_real,
    check_not_all_bool,
    native,
    ntuple,
    result_dtype,
)
from fastconv.layers import Conv2d

OPTIMIZERS = ("sgd", "adam")
LOSSES = ("sse", "mse")
FUNC = "learn_kernel"


@dataclass
class LearnResult:
    """What :func:`learn_kernel` found.

    Attributes
    ----------
    kernel : ndarray
        ``(kh, kw)`` for 2-D ``x``/``y``, else ``(K, C, kh, kw)``.
    bias : float, ndarray of shape (K,), or None
        None unless ``bias=True``; a float for 2-D ``x``/``y``.
    losses : list of float
        The loss of every epoch, computed before that epoch's update (as the seed prints).
    """

    kernel: np.ndarray
    bias: float | np.ndarray | None
    losses: list[float] = field(default_factory=list)


def _as_nchw(x, y) -> tuple[np.ndarray, np.ndarray, bool]:
    """x, y as (N, C, H, W) / (N, K, H', W'); also whether they were single 2-D images."""
    if x.ndim != y.ndim or x.ndim not in (2, 3, 4):
        raise ValueError(
            f"{FUNC}: x and y must both be 2-D (H, W), 3-D (C, H, W) or 4-D (N, C, H, W), "
            f"got x.shape={x.shape} and y.shape={y.shape}"
        )
    if x.ndim == 4 and x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{FUNC}: x and y must have the same batch size, got x.shape={x.shape} and "
            f"y.shape={y.shape}"
        )
    lead = (None,) * (4 - x.ndim)
    return x[lead], y[lead], x.ndim == 2


def _check_options(lr, epochs, optimizer, loss, callback) -> tuple[float, int]:
    """``(lr, epochs)`` as a finite float > 0 and an int >= 0 (NumPy scalars accepted)."""
    lr = as_real(lr, "lr", FUNC)
    epochs = as_int(epochs, "epochs", FUNC, minimum=0)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"{FUNC}: invalid optimizer {optimizer!r}, should be one of {OPTIMIZERS}")
    if loss not in LOSSES:
        raise ValueError(f"{FUNC}: invalid loss {loss!r}, should be one of {LOSSES}")
    if callback is not None and not callable(callback):
        raise TypeError(f"{FUNC}: callback must be callable(epoch, loss, kernel), got {callback!r}")
    return lr, epochs


def learn_kernel(x, y, kernel_size, *, lr: float = 3e-2, epochs: int = 10, bias: bool = False,
                 optimizer: str = "sgd", loss: str = "sse", seed=None,
                 callback: Callable | None = None) -> LearnResult:
    """Fit ``y ~ conv2d(x, kernel) (+ bias)`` by gradient descent on the squared error.

    Parameters
    ----------
    x : array_like, shape (H, W), (C, H, W) or (N, C, H, W)
    y : array_like, shape (H', W'), (K, H', W') or (N, K, H', W')
        The target, with ``H' = H - kh + 1`` and ``W' = W - kw + 1`` ("valid").
    kernel_size : int or (kh, kw)
    lr : float, default 3e-2
        Learning rate (the seed's).
    epochs : int, default 10
    bias : bool, default False
        Also learn one bias per output channel.
    optimizer : {"sgd", "adam"}
        Plain gradient descent ``w -= lr * grad`` or Adam (betas 0.9/0.999, eps 1e-8).
    loss : {"sse", "mse"}
        Summed squared error (the seed's ``((y_hat - y) ** 2).sum()``) or its mean.
    seed : int or None
        Seeds the initial kernel: PyTorch's default conv init, ``U(-1/sqrt(fan_in),
        1/sqrt(fan_in))`` from ``numpy.random.default_rng(seed)``.
    callback : callable, optional
        ``callback(epoch, loss, kernel)`` after each epoch's update (``epoch`` from 1,
        ``loss`` before the update, ``kernel`` shaped as in the result).

    Returns
    -------
    LearnResult
        ``kernel``, ``bias`` and the per-epoch ``losses``.

    Raises
    ------
    ValueError
        Mismatched ranks/batch sizes, ``y`` not the "valid" output size of ``x`` and the
        kernel, bad ``lr``/``epochs``/``optimizer``/``loss``.

    Examples
    --------
    The seed's edge image and its target ``corr2d(X, [[1, -1]])``:

    >>> X = np.ones((6, 8)); X[:, 2:6] = 0
    >>> Y = np.zeros((6, 7)); Y[:, 1] = 1; Y[:, 5] = -1
    >>> res = learn_kernel(X, Y, (1, 2), seed=0)
    >>> np.round(res.kernel, 1)
    array([[ 1., -1.]])
    >>> res.losses[-1] < 0.1
    True
    """
    xa = as_array(x, "x", FUNC)
    ya = as_array(y, "y", FUNC)
    check_not_all_bool(FUNC, {"x": xa, "y": ya})
    x4, y4, single = _as_nchw(xa, ya)
    kernel = ntuple(kernel_size, 2, "kernel_size", FUNC, minimum=1)
    lr, epochs = _check_options(lr, epochs, optimizer, loss, callback)
    N, C, H, W = x4.shape
    K = y4.shape[1]
    want = tuple(_shapes.conv_out(n, k, 1, 0, 0, 1)  # "valid"
                 for n, k in zip((H, W), kernel, strict=True))
    if want[0] < 1 or want[1] < 1 or y4.shape[2:] != want:
        raise ValueError(
            f"{FUNC}: y must be the 'valid' output of x and a {kernel} kernel, spatial size "
            f"{want}, got x.shape={xa.shape} and y.shape={ya.shape}"
        )
    dtype = result_dtype(xa, ya)
    layer = Conv2d(C, K, kernel, bias=bias, seed=seed, dtype=dtype)
    w = layer.weight
    b = layer.bias if bias else np.zeros(K, dtype)
    plan = plan_conv(FUNC, 2, x4, w, None, 1, 0, 1, 1, "zeros")
    be = _dispatch.backend("cpu")
    x5 = native(x4, dtype).reshape(plan.x_shape)
    y5 = native(y4, dtype).reshape(plan.out_shape)
    w5 = w.reshape(plan.w_shape)  # a view: updates of w5 update w
    ones = np.ones(3, dtype=np.int64)
    out = np.empty(plan.out_shape, dtype)
    gw = np.empty(plan.w_shape, dtype)
    scale = 1.0 if loss == "sse" else 1.0 / out.size
    state = [np.zeros_like(w5), np.zeros_like(w5), np.zeros_like(b), np.zeros_like(b)]
    losses: list[float] = []

    def shaped(a):
        return a[0, 0].copy() if single else a.copy()

    macs = out.size * w.size // K
    serial = macs < SERIAL_BELOW
    if serial:  # the forward's own tiny core (by size) and argument types: no new compile
        from fastconv._algorithms import _serial_kernel

        forward = _serial_kernel(macs)
    for epoch in range(1, epochs + 1):
        if serial:
            forward(x5, w5, b, out, (1, 1, 1), (1, 1, 1), 1)
        else:
            be.correlate(x5, w5, b, out, ones, ones, 1)
        diff = out - y5
        losses.append(float(np.vdot(diff, diff)) * scale)
        gy = diff * dtype.type(2.0 * scale)
        be.correlate_weight(x5, gy, gw, ones, ones, 1)
        gb = gy.sum(axis=(0, 2, 3, 4)) if bias else None
        if optimizer == "sgd":
            w5 -= dtype.type(lr) * gw
            if bias:
                b -= dtype.type(lr) * gb
        else:
            _adam_step(w5, gw, state[0], state[1], epoch, lr)
            if bias:
                _adam_step(b, gb, state[2], state[3], epoch, lr)
        if callback is not None:
            callback(epoch, losses[-1], shaped(w))
    return LearnResult(
        kernel=shaped(w),
        bias=(float(b[0]) if single else b.copy()) if bias else None,
        losses=losses,
    )


def _adam_step(p, g, m, v, t: int, lr: float, b1: float = 0.9, b2: float = 0.999,
               eps: float = 1e-8) -> None:
    """One Adam update of ``p`` in place (PyTorch's ``torch.optim.Adam`` defaults)."""
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * g * g
    step = lr / (1 - b1**t)
    denom = np.sqrt(v / (1 - b2**t)) + eps
    p -= (step * m / denom).astype(p.dtype)


__all__ = ["LOSSES", "OPTIMIZERS", "LearnResult", "learn_kernel"]
