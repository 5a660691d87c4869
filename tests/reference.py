"""Plain NumPy oracles: slow-but-obviously-right versions of what fastconv computes.

Nothing here imports fastconv: every size, padding and index is re-derived from the
formulas in docs/SPEC.md, so a bug in ``fastconv._shapes`` cannot hide in both places.

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


# --- gradient oracles (scatter loops: each output position adds its window back) --------


def _fold_padding(gxp: np.ndarray, shape, pairs, padding_mode: str) -> np.ndarray:
    """Adjoint of :func:`pad_nd`: each padded position's gradient goes to the source pixel
    ``numpy.pad`` copied it from (the source index of a position is ``numpy.pad`` applied
    to ``arange``); the zero border is dropped."""
    nsp = len(pairs)
    spatial = shape[2:]
    if padding_mode == "zeros":
        crop = tuple(slice(b, b + n) for (b, _), n in zip(pairs, spatial, strict=True))
        return gxp[(slice(None), slice(None)) + crop].copy()
    srcs = [np.pad(np.arange(n), tuple(p), mode=NP_PAD_MODES[padding_mode])
            for n, p in zip(spatial, pairs, strict=True)]
    gx = np.zeros(shape)
    for pos in np.ndindex(*gxp.shape[2:]):
        src = tuple(int(srcs[a][pos[a]]) for a in range(nsp))
        gx[(slice(None), slice(None)) + src] += gxp[(slice(None), slice(None)) + pos]
    return gx


def conv_input_nd(x_shape, w, g, stride=1, padding_pairs=0, dilation=1, groups=1,
                  padding_mode="zeros") -> np.ndarray:
    """Gradient of :func:`conv_nd` w.r.t. ``x`` (batched shapes), float64, by scattering."""
    w = np.asarray(w, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    nsp = w.ndim - 2
    kernel = w.shape[2:]
    st = [stride] * nsp if np.isscalar(stride) else list(stride)
    dil = [dilation] * nsp if np.isscalar(dilation) else list(dilation)
    pairs = padding_pairs if not np.isscalar(padding_pairs) else [(padding_pairs,) * 2] * nsp
    padded = [n + b + a for n, (b, a) in zip(x_shape[2:], pairs, strict=True)]
    gxp = np.zeros((x_shape[0], x_shape[1], *padded))
    K, Cg = w.shape[:2]
    Kg = K // groups
    for n in range(g.shape[0]):
        for k in range(K):
            grp = k // Kg
            for o in np.ndindex(*g.shape[2:]):
                idx = tuple(slice(oi * s, oi * s + d * (kk - 1) + 1, d)
                            for oi, s, d, kk in zip(o, st, dil, kernel, strict=True))
                gxp[(n, slice(grp * Cg, (grp + 1) * Cg)) + idx] += g[(n, k) + o] * w[k]
    return _fold_padding(gxp, tuple(x_shape), pairs, padding_mode)


def conv_weight_nd(x, w_shape, g, stride=1, padding_pairs=0, dilation=1, groups=1,
                   padding_mode="zeros") -> np.ndarray:
    """Gradient of :func:`conv_nd` w.r.t. the weight, float64, by summing windows."""
    x = np.asarray(x, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    nsp = x.ndim - 2
    kernel = w_shape[2:]
    st = [stride] * nsp if np.isscalar(stride) else list(stride)
    dil = [dilation] * nsp if np.isscalar(dilation) else list(dilation)
    pairs = padding_pairs if not np.isscalar(padding_pairs) else [(padding_pairs,) * 2] * nsp
    xp = pad_nd(x, pairs, padding_mode)
    gw = np.zeros(tuple(w_shape))
    K, Cg = w_shape[:2]
    Kg = K // groups
    for n in range(g.shape[0]):
        for k in range(K):
            grp = k // Kg
            for o in np.ndindex(*g.shape[2:]):
                idx = tuple(slice(oi * s, oi * s + d * (kk - 1) + 1, d)
                            for oi, s, d, kk in zip(o, st, dil, kernel, strict=True))
                gw[k] += g[(n, k) + o] * xp[(n, slice(grp * Cg, (grp + 1) * Cg)) + idx]
    return gw


def conv_transpose_nd(x, w, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                      dilation=1) -> np.ndarray:
    """PyTorch's transposed convolution (weight ``(C, K // groups, *k)``), float64, by
    scattering every input element's weighted kernel into a full grid, then cropping
    ``padding`` from both ends and keeping ``output_padding`` extra trailing elements."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    nsp = x.ndim - 2
    kernel = w.shape[2:]

    def per_axis(v):
        return [v] * nsp if np.isscalar(v) else list(v)

    st, pad, opad, dil = (per_axis(v) for v in (stride, padding, output_padding, dilation))
    C, Kg = w.shape[:2]
    Cg = C // groups
    full = [(n - 1) * s + d * (k - 1) + 1 + op
            for n, s, d, k, op in zip(x.shape[2:], st, dil, kernel, opad, strict=True)]
    out = np.zeros((x.shape[0], Kg * groups, *full))
    for n in range(x.shape[0]):
        for c in range(C):
            grp = c // Cg
            for o in np.ndindex(*x.shape[2:]):
                idx = tuple(slice(oi * s, oi * s + d * (kk - 1) + 1, d)
                            for oi, s, d, kk in zip(o, st, dil, kernel, strict=True))
                out[(n, slice(grp * Kg, (grp + 1) * Kg)) + idx] += x[(n, c) + o] * w[c]
    crop = tuple(slice(p, f - p) for p, f in zip(pad, full, strict=True))
    out = out[(slice(None), slice(None)) + crop]
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64).reshape((-1,) + (1,) * nsp)
    return out


# --- pooling oracles (a literal loop over every output position and window tap) -------


def pool_output_size(n: int, k: int, stride: int, pad: int, dilation: int,
                     ceil_mode: bool) -> int:
    """PyTorch's pooling size: floor or ceil of (n + 2p - d(k-1) - 1)/s + 1, and with ceil
    a last window that would start in the right padding (at >= n + p) is dropped."""
    span = n + 2 * pad - dilation * (k - 1) - 1
    out = int(np.ceil(span / stride)) + 1 if ceil_mode else span // stride + 1
    if ceil_mode and (out - 1) * stride >= n + pad:
        out -= 1
    return out


def _per_axis(v, nsp):
    return [v] * nsp if np.isscalar(v) else list(v)


def _pool_params(x, kernel_size, stride, padding, dilation, ceil_mode):
    nsp = x.ndim - 2
    k = _per_axis(kernel_size, nsp)
    s = k if stride is None else _per_axis(stride, nsp)
    p, d = _per_axis(padding, nsp), _per_axis(dilation, nsp)
    osz = [pool_output_size(n, *a, ceil_mode) for n, *a in
           zip(x.shape[2:], k, s, p, d, strict=True)]
    return k, s, p, d, osz


def _window(o, k, s, p, d, shape):
    """Per axis: every tap's input coordinate, and whether it lies inside the input."""
    taps = [[oi * si - pi + r * di for r in range(ki)]
            for oi, ki, si, pi, di in zip(o, k, s, p, d, strict=True)]
    return taps, [[0 <= t < n for t in ax] for ax, n in zip(taps, shape, strict=True)]


def max_pool_nd(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max pooling of a batched ``(N, C, *spatial)`` array in float64, with PyTorch's flat
    indices: taps scanned in row-major order, ``v > best or isnan(v)`` updates (first max
    on ties, last NaN wins); a window with no tap inside the input gives -inf and the
    index of its first taps moved up into range (PyTorch's arithmetic)."""
    x = np.asarray(x, dtype=np.float64)
    k, s, p, d, osz = _pool_params(x, kernel_size, stride, padding, dilation, ceil_mode)
    shape = x.shape[2:]
    out = np.empty(x.shape[:2] + tuple(osz))
    idx = np.empty(out.shape, dtype=np.int64)
    for nc in np.ndindex(*x.shape[:2]):
        for o in np.ndindex(*osz):
            taps, inside = _window(o, k, s, p, d, shape)
            first = []
            for ax, di in zip(taps, d, strict=True):
                t = ax[0]
                while t < 0:
                    t += di
                first.append(t)
            best, at = -np.inf, 0
            for f, n in zip(first, shape, strict=True):
                at = at * n + f
            for pos in np.ndindex(*k):
                if not all(inside[a][r] for a, r in enumerate(pos)):
                    continue
                coord = tuple(taps[a][r] for a, r in enumerate(pos))
                v = x[nc + coord]
                if v > best or np.isnan(v):
                    best, at = v, int(np.ravel_multi_index(coord, shape))
            out[nc + o], idx[nc + o] = best, at
    return out, idx


def avg_pool_nd(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                count_include_pad=True, divisor_override=None):
    """Average pooling of a batched array in float64 (PyTorch's divisor rule: with
    ``count_include_pad`` each axis counts up to ``n + pad``, else only input elements)."""
    x = np.asarray(x, dtype=np.float64)
    k, s, p, d, osz = _pool_params(x, kernel_size, stride, padding, 1, ceil_mode)
    out = np.empty(x.shape[:2] + tuple(osz))
    for nc in np.ndindex(*x.shape[:2]):
        for o in np.ndindex(*osz):
            out[nc + o] = _avg_window_sum(x[nc], o, k, s, p, count_include_pad,
                                          divisor_override)
    return out


def _avg_divisor(o, k, s, p, shape, count_include_pad, divisor_override):
    if divisor_override is not None:
        return divisor_override
    size = 1
    for oi, ki, si, pi, n in zip(o, k, s, p, shape, strict=True):
        start = oi * si - pi
        end = min(start + ki, n + pi)
        if not count_include_pad:
            start, end = max(start, 0), min(end, n)
        size *= end - start
    return size


def _avg_window_sum(plane, o, k, s, p, count_include_pad, divisor_override):
    taps, inside = _window(o, k, s, p, [1] * len(k), plane.shape)
    total = 0.0
    for pos in np.ndindex(*k):
        if all(inside[a][r] for a, r in enumerate(pos)):
            total += plane[tuple(taps[a][r] for a, r in enumerate(pos))]
    return total / _avg_divisor(o, k, s, p, plane.shape, count_include_pad, divisor_override)


def max_pool_backward_nd(g, x, kernel_size, stride=None, padding=0, dilation=1,
                         ceil_mode=False):
    """Gradient of :func:`max_pool_nd`: each g goes to its window's argmax (windows with
    no tap inside the input pass nothing)."""
    x = np.asarray(x, dtype=np.float64)
    _, idx = max_pool_nd(x, kernel_size, stride, padding, dilation, ceil_mode)
    k, s, p, d, osz = _pool_params(x, kernel_size, stride, padding, dilation, ceil_mode)
    gx = np.zeros(x.shape)
    for nc in np.ndindex(*x.shape[:2]):
        flat = gx[nc].reshape(-1)
        for o in np.ndindex(*osz):
            _, inside = _window(o, k, s, p, d, x.shape[2:])
            if all(any(ax) for ax in inside):
                flat[idx[nc + o]] += g[nc + o]
    return gx


def avg_pool_backward_nd(g, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                         count_include_pad=True, divisor_override=None):
    """Gradient of :func:`avg_pool_nd`: each window adds g / divisor to its input taps."""
    x = np.asarray(x, dtype=np.float64)
    k, s, p, d, osz = _pool_params(x, kernel_size, stride, padding, 1, ceil_mode)
    gx = np.zeros(x.shape)
    for nc in np.ndindex(*x.shape[:2]):
        for o in np.ndindex(*osz):
            taps, inside = _window(o, k, s, p, d, x.shape[2:])
            div = _avg_divisor(o, k, s, p, x.shape[2:], count_include_pad, divisor_override)
            for pos in np.ndindex(*k):
                if all(inside[a][r] for a, r in enumerate(pos)):
                    gx[nc + tuple(taps[a][r] for a, r in enumerate(pos))] += g[nc + o] / div
    return gx


# --- adaptive pooling, unfold (the pooling family) -------------------------------------


def adaptive_windows(n: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive window [floor(i*n/out), ceil((i+1)*n/out)) of each output."""
    return [(i * n // out, -(-(i + 1) * n // out)) for i in range(out)]


def adaptive_pool_nd(x: np.ndarray, out_size, kind: str):
    """Adaptive avg or max pooling over the trailing len(out_size) axes, plain loops.
    Returns (values, flat indices (max only, else None))."""
    nsp = len(out_size)
    lead, spatial = x.shape[:-nsp], x.shape[-nsp:]
    wins = [adaptive_windows(n, o) for n, o in zip(spatial, out_size, strict=True)]
    y = np.zeros(lead + tuple(out_size), dtype=np.float64)
    idx = np.zeros(lead + tuple(out_size), dtype=np.int64)
    for li in np.ndindex(*lead):
        plane = x[li].astype(np.float64)
        for o in np.ndindex(*out_size):
            sl = tuple(slice(*wins[a][o[a]]) for a in range(nsp))
            win = plane[sl]
            if kind == "avg":
                y[li + o] = win.mean()
            else:
                k = int(np.argmax(win))  # first maximum, row-major (no NaNs in the tests)
                pos = np.unravel_index(k, win.shape)
                full = tuple(wins[a][o[a]][0] + pos[a] for a in range(nsp))
                y[li + o] = win.flat[k]
                idx[li + o] = np.ravel_multi_index(full, spatial)
    return y, (idx if kind == "max" else None)


def unfold_loop(x: np.ndarray, k, d, p, s) -> np.ndarray:
    """im2col of (N, C, H, W) with plain loops: (N, C*KH*KW, OH*OW)."""
    N, C, H, W = x.shape
    oh = (H + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (W + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    cols = np.zeros((N, C * k[0] * k[1], oh * ow), dtype=np.float64)
    for n, c, i, j, a, b in np.ndindex(N, C, k[0], k[1], oh, ow):
        h, w = a * s[0] - p[0] + i * d[0], b * s[1] - p[1] + j * d[1]
        if 0 <= h < H and 0 <= w < W:
            cols[n, (c * k[0] + i) * k[1] + j, a * ow + b] = x[n, c, h, w]
    return cols
