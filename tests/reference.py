"""Plain NumPy oracles: slow-but-obviously-right versions of what fastconv computes.

Nothing here imports fastconv: every size, padding and index is re-derived from the
formulas in SPEC.md, so a bug in ``fastconv._shapes`` cannot hide in both places.

Forward convolution (this part) comes first; pooling and gradient oracles follow below.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: fastconv padding_mode -> numpy.pad mode
NP_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def corr2d_loop(X, K) -> np.ndarray:
    """The seed's loop, verbatim: ``Y[i, j] = (X[i:i+h, j:j+w] * K).sum()`` ("valid")."""
    X, K = np.asarray(X, dtype=np.float64), np.asarray(K, dtype=np.float64)
    h, w = K.shape
    Y = np.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i : i + h, j : j + w] * K).sum()
    return Y


def output_size(n: int, k: int, stride: int = 1, before: int = 0, after: int = 0,
                dilation: int = 1) -> int:
    """floor((n + before + after - dilation*(k-1) - 1) / stride) + 1 (SPEC §1)."""
    return (n + before + after - dilation * (k - 1) - 1) // stride + 1


def padding_pairs(padding, kernel, dilation) -> list[tuple[int, int]]:
    """Per-axis (before, after) pairs for every padding form the SPEC accepts.

    ``"same"``: total ``dilation*(k-1)``, the extra element after (PyTorch);
    ``"full"``: ``dilation*(k-1)`` on both sides.
    """
    n = len(kernel)
    dil = [dilation] * n if np.isscalar(dilation) else list(dilation)
    if isinstance(padding, str):
        totals = [d * (k - 1) for k, d in zip(kernel, dil, strict=True)]
        if padding == "valid":
            return [(0, 0)] * n
        if padding == "same":
            return [(t // 2, t - t // 2) for t in totals]
        if padding == "full":
            return [(t, t) for t in totals]
        raise ValueError(padding)
    if np.isscalar(padding):
        return [(int(padding), int(padding))] * n
    return [(p, p) if np.isscalar(p) else (int(p[0]), int(p[1])) for p in padding]


def pad_nd(x: np.ndarray, pairs, padding_mode: str = "zeros") -> np.ndarray:
    """``numpy.pad`` of the spatial axes (the last ``len(pairs)``) of a batched array."""
    widths = [(0, 0)] * (x.ndim - len(pairs)) + [tuple(p) for p in pairs]
    return np.pad(x, widths, mode=NP_PAD_MODES[padding_mode])


def conv_nd(x, w, bias=None, stride=1, padding_pairs=0, dilation=1, groups=1,
            padding_mode="zeros") -> np.ndarray:
    """Cross-correlation of a batched ``(N, C, *spatial)`` input, any rank, in float64.

    ``y[n, k, o] = bias[k] + sum_{c in group(k), r} x_pad[n, c, o*stride + r*dil] * w[k, c, r]``

    ``padding_pairs`` is an int or per-axis ``(before, after)`` pairs (see
    :func:`padding_pairs` for the string forms). Vectorised over windows: each output
    position's window is a strided view, and the sum over (channel, window) is a tensordot.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    nsp = w.ndim - 2
    kernel = w.shape[2:]
    st = [stride] * nsp if np.isscalar(stride) else list(stride)
    dil = [dilation] * nsp if np.isscalar(dilation) else list(dilation)
    pairs = padding_pairs if not np.isscalar(padding_pairs) else [(padding_pairs,) * 2] * nsp
    xp = pad_nd(x, pairs, padding_mode)
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dil, strict=True)]
    win = sliding_window_view(xp, span, axis=tuple(range(2, 2 + nsp)))
    # win: (N, C, *positions, *span); keep every stride-th position, every dilation-th tap
    win = win[(slice(None), slice(None))
              + tuple(slice(None, None, s) for s in st)
              + tuple(slice(None, None, d) for d in dil)]
    N, C = x.shape[:2]
    K, Cg = w.shape[:2]
    Kg = K // groups
    out = np.empty((N, K) + win.shape[2 : 2 + nsp])
    sum_axes = [1] + list(range(2 + nsp, 2 + 2 * nsp))
    for g in range(groups):
        part = np.tensordot(win[:, g * Cg : (g + 1) * Cg], w[g * Kg : (g + 1) * Kg],
                            axes=(sum_axes, [1] + list(range(2, 2 + nsp))))
        out[:, g * Kg : (g + 1) * Kg] = np.moveaxis(part, -1, 1)  # (N, *O, Kg) -> (N, Kg, *O)
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64).reshape((K,) + (1,) * nsp)
    return out


def conv_nd_loop(x, w, bias=None, stride=1, padding_pairs=0, dilation=1, groups=1,
                 padding_mode="zeros") -> np.ndarray:
    """:func:`conv_nd` as the literal loop over (n, k, output position): the oracle's oracle."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    nsp = w.ndim - 2
    kernel = w.shape[2:]
    st = [stride] * nsp if np.isscalar(stride) else list(stride)
    dil = [dilation] * nsp if np.isscalar(dilation) else list(dilation)
    pairs = padding_pairs if not np.isscalar(padding_pairs) else [(padding_pairs,) * 2] * nsp
    xp = pad_nd(x, pairs, padding_mode)
    osz = [output_size(n, k, s, b, a, d) for n, k, s, (b, a), d in
           zip(x.shape[2:], kernel, st, pairs, dil, strict=True)]
    N, K, Cg = x.shape[0], w.shape[0], w.shape[1]
    Kg = K // groups
    out = np.zeros((N, K, *osz))
    for n in range(N):
        for k in range(K):
            g = k // Kg
            for o in np.ndindex(*osz):
                idx = tuple(slice(oi * s, oi * s + d * (kk - 1) + 1, d)
                            for oi, s, d, kk in zip(o, st, dil, kernel, strict=True))
                window = xp[(n, slice(g * Cg, (g + 1) * Cg)) + idx]
                out[(n, k) + o] = (window * w[k]).sum() + (0.0 if bias is None else bias[k])
    return out
