"""All index arithmetic: output sizes, padding resolution, the ceil-mode rule, the
receptive field. Nothing else in fastconv derives an output size.

This module imports only the standard library and ``_validate`` (no NumPy kernels, no
Numba), so ``fastconv shape`` starts instantly.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastconv._validate import INT_MAX, PADDING_STRINGS, _is_int, ntuple

Pairs = tuple[tuple[int, int], ...]


def conv_out(n: int, k: int, stride: int, before: int, after: int, dilation: int) -> int:
    """floor((n + before + after - dilation*(k-1) - 1) / stride) + 1 (may be < 1)."""
    return (n + before + after - dilation * (k - 1) - 1) // stride + 1


def pool_out(
    n: int, k: int, stride: int, pad: int, dilation: int, ceil_mode: bool
) -> int:
    """Pooling output size; with ceil_mode a last window starting in the right padding is
    dropped (PyTorch's rule)."""
    span = n + 2 * pad - dilation * (k - 1) - 1
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= n + pad:
        out -= 1
    return out


def transpose_out(
    n: int, k: int, stride: int, pad: int, output_padding: int, dilation: int
) -> int:
    """(n-1)*stride - 2*pad + dilation*(k-1) + output_padding + 1 (PyTorch)."""
    return (n - 1) * stride - 2 * pad + dilation * (k - 1) + output_padding + 1


def resolve_padding(
    padding, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int], func: str
) -> Pairs:
    """Normalise every accepted padding form to per-axis ``(before, after)`` pairs.

    int, per-axis tuple of ints, per-axis tuple of (before, after) pairs, or "valid",
    "same" (stride 1 only; an odd total puts the extra element after, as PyTorch),
    "full" (dilation*(k-1) on both sides).

    >>> resolve_padding("same", (2, 3), (1, 1), (1, 1), "conv2d")
    ((0, 1), (1, 1))
    """
    n = len(kernel)
    if type(padding) is int and 0 <= padding <= INT_MAX:  # the common case, no ABC checks
        return ((padding, padding),) * n
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(
                    f"{func}: padding='same' is not supported for strided convolutions "
                    f"(stride={tuple(stride)}); use stride=1 or explicit padding"
                )
            totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
            return tuple((t // 2, t - t // 2) for t in totals)
        if padding == "full":
            return tuple((d * (k - 1),) * 2 for k, d in zip(kernel, dilation, strict=True))
        raise ValueError(
            f"{func}: invalid padding string {padding!r}, should be one of {PADDING_STRINGS}"
        )
    if (
        isinstance(padding, Sequence)
        and len(padding) == n
        and all(isinstance(p, Sequence) and not isinstance(p, str) for p in padding)
    ):
        pairs = []
        for p in padding:
            if len(p) != 2 or not all(_is_int(v) for v in p):
                raise ValueError(
                    f"{func}: padding must be an int, a tuple of {n} ints or of {n} "
                    f"(before, after) pairs, got {padding!r}"
                )
            pairs.append((int(p[0]), int(p[1])))
        pairs = tuple(pairs)
    else:
        pairs = tuple((p, p) for p in ntuple(padding, n, "padding", func))
    if any(v < 0 for pair in pairs for v in pair):
        raise ValueError(f"{func}: padding must be >= 0, got {padding!r}")
    if any(v > INT_MAX for pair in pairs for v in pair):
        raise ValueError(f"{func}: padding must be < 2**63 (an int64), got {padding!r}")
    return pairs


def conv_output_spatial(
    spatial: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    pads: Pairs,
    dilation: Sequence[int],
    func: str,
    shapes: str = "",
) -> tuple[int, ...]:
    """Output spatial size of a correlation; an output size < 1 is an error."""
    out = tuple([
        conv_out(n, k, s, b, a, d)
        for n, k, s, (b, a), d in zip(spatial, kernel, stride, pads, dilation, strict=True)
    ])
    if min(out) < 1:
        padded = tuple(n + b + a for n, (b, a) in zip(spatial, pads, strict=True))
        eff = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True))
        raise ValueError(
            f"{func}: kernel larger than the padded input: padded input {padded} vs "
            f"dilated kernel {eff} gives output size {out} < 1{shapes}"
        )
    return out


def output_shape(
    input_shape,
    kernel_size,
    stride=1,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
) -> tuple[int, ...]:
    """Spatial output size of a convolution (or, with ``ceil_mode``, a pooling) layer.

    Parameters
    ----------
    input_shape : int or tuple of int
        Spatial input size, e.g. ``(8, 8)``.
    kernel_size, stride, dilation : int or tuple
    padding : int, tuple, pairs, or "valid"/"same"/"full"
    ceil_mode : bool
        Pooling's ceil rule (symmetric int padding only).

    Returns
    -------
    tuple of int

    Examples
    --------
    >>> output_shape((8, 8), 3, padding=1, stride=2)
    (4, 4)
    """
    func = "output_shape"
    spatial = (input_shape,) if _is_int(input_shape) else tuple(input_shape)
    n = len(spatial)
    spatial = ntuple(spatial, n, "input_shape", func, minimum=1)
    kernel = ntuple(kernel_size, n, "kernel_size", func, minimum=1)
    strides = ntuple(stride, n, "stride", func, minimum=1)
    dil = ntuple(dilation, n, "dilation", func, minimum=1)
    pads = resolve_padding(padding, kernel, strides, dil, func)
    if ceil_mode:
        if any(b != a for b, a in pads):
            raise ValueError(f"{func}: ceil_mode needs symmetric padding, got {padding!r}")
        out = tuple(
            pool_out(m, k, s, b, d, True)
            for m, k, s, (b, _), d in zip(spatial, kernel, strides, pads, dil, strict=True)
        )
        if any(o < 1 for o in out):
            raise ValueError(f"{func}: output size {out} < 1 for input_shape={spatial}")
        return out
    return conv_output_spatial(spatial, kernel, strides, pads, dil, func)


def receptive_field(layers) -> list[dict]:
    """Receptive field of a stack of conv/pool layers, one axis.

    Parameters
    ----------
    layers : sequence of dict or tuple
        Each layer as ``{"kernel_size": k, "stride": s, "dilation": d}`` (missing keys
        default to stride 1, dilation 1) or a tuple ``(k, s)`` / ``(k, s, d)``.

    Returns
    -------
    list of dict
        Per layer: ``size`` (receptive field in input pixels) and ``jump`` (input pixels
        between neighbouring outputs).

    Examples
    --------
    >>> [r["size"] for r in receptive_field([(3, 1), (2, 2), (3, 1)])]
    [3, 4, 8]
    """
    size, jump, out = 1, 1, []
    for i, layer in enumerate(layers):
        if isinstance(layer, dict) and "kernel_size" in layer:
            k, s, d = layer["kernel_size"], layer.get("stride", 1), layer.get("dilation", 1)
        elif isinstance(layer, Sequence) and not isinstance(layer, str) and 1 <= len(layer) <= 3:
            k, s, d = (tuple(layer) + (1, 1))[:3]
        else:
            raise ValueError(
                f"receptive_field: layer {i} must be a dict with a 'kernel_size' or a tuple "
                f"(k,), (k, s) or (k, s, d), got {layer!r}"
            )
        for name, v in (("kernel_size", k), ("stride", s), ("dilation", d)):
            if not _is_int(v) or v < 1:
                raise ValueError(
                    f"receptive_field: layer {i} {name} must be an int >= 1, got {v!r}"
                )
        size, jump = receptive_step(size, jump, k, s, d)
        out.append({"size": size, "jump": jump})
    return out


def pool_pad_limit(k: int, dilation: int, kind: str) -> int:
    """Largest pooling padding allowed on an axis: ``k // 2``, PyTorch's rule for max and
    average pooling alike (``dilation`` and ``kind`` do not change it).

    >>> pool_pad_limit(3, 2, "max"), pool_pad_limit(4, 1, "avg")
    (1, 2)
    """
    return k // 2


def pool_empty_window(n: int, k: int, stride: int, pad: int, dilation: int,
                      out: int) -> int | None:
    """The first output along an axis whose dilated pooling window has no tap inside the
    input (all its taps fall in the padding), or None.

    Only windows starting in the left padding can be empty: with ``pad <= k // 2`` a
    window starting inside the input holds that input element, and ceil mode drops a
    window starting in the right padding. Dilation can step over a short input:

    >>> pool_empty_window(1, 2, 1, 1, 2, 1)   # taps -1, 1 on a 1-element axis
    0
    >>> pool_empty_window(5, 3, 2, 1, 2, 3) is None
    True
    """
    for o in range(out):
        start = o * stride - pad
        if start >= 0:
            return None
        first = -(start // dilation)  # first tap index r with start + r*dilation >= 0
        if first >= k or start + first * dilation >= n:
            return o
    return None


def pool_divisors(
    n: int, k: int, stride: int, pad: int, out: int, count_include_pad: bool
) -> tuple[int, ...]:
    """Per-output window length along one axis, for average pooling (PyTorch's rule).

    With ``count_include_pad`` a window counts padding but stops at ``n + pad`` (a
    ceil-mode window that runs past the padded input counts only up to there); without
    it only input elements count. The divisor of a window is the product over axes.

    >>> pool_divisors(5, 3, 2, 1, 3, True), pool_divisors(5, 3, 2, 1, 3, False)
    ((3, 3, 3), (2, 3, 2))
    """
    sizes = []
    for o in range(out):
        start = o * stride - pad
        end = min(start + k, n + pad)
        if not count_include_pad:
            start, end = max(start, 0), min(end, n)
        sizes.append(end - start)
    return tuple(sizes)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def overlap_chunks(
    in_size: int, out_size: int, stride: int, lead: int, reach: int, bounds
) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """Split one axis of a sliding-window op into blocks that need only a right halo.

    Window ``o`` reads input ``[o*stride - lead, o*stride - lead + reach]`` (``reach =
    dilation*(k-1)``; taps outside ``[0, in_size)`` are padding). Block ``j > 0`` starts at
    the input index where its first window starts, ``o_j*stride - lead``, so every block
    computes whole windows and strided outputs line up across blocks; a block also reads
    ``halo = max(0, reach + 1 - stride)`` elements of the next one. ``bounds`` are the
    wanted input chunk boundaries; each moves to the next window start, and one that
    would leave a chunk shorter than ``max(1, halo)`` (Dask's overlap needs whole halos
    from the neighbour) is dropped.

    Returns ``(in_chunks, out_chunks, halo)``; both chunk tuples have one entry per block.

    >>> overlap_chunks(10, 8, 1, 0, 2, [3, 6])   # 3-tap valid window, chunks of 3
    ((3, 3, 4), (3, 3, 2), 2)
    >>> overlap_chunks(11, 6, 2, 1, 2, [4, 8])   # k=3, stride 2, padding 1
    ((5, 4, 2), (3, 2, 1), 1)
    """
    halo = max(0, reach + 1 - stride)
    need = max(1, halo)
    outs, ins = [0], [0]
    for b in sorted({int(v) for v in bounds}):
        o = ceil_div(b + lead, stride)
        a = o * stride - lead
        if o <= outs[-1] or o >= out_size or a - ins[-1] < need:
            continue
        if in_size - a < need:
            break
        outs.append(o)
        ins.append(a)
    out_chunks = tuple(e - s for s, e in zip(outs, outs[1:] + [out_size], strict=True))
    in_chunks = tuple(e - s for s, e in zip(ins, ins[1:] + [in_size], strict=True))
    return in_chunks, out_chunks, halo


__all__ = [
    "conv_out",
    "pool_out",
    "pool_pad_limit",
    "pool_empty_window",
    "pool_divisors",
    "transpose_out",
    "resolve_padding",
    "conv_output_spatial",
    "output_shape",
    "overlap_chunks",
    "receptive_field",
]


# --- adaptive pooling, max-unpooling, unfold/fold (the rest of the pooling family) ----


def adaptive_output_size(spatial: Sequence[int], output_size, func: str) -> tuple[int, ...]:
    """Adaptive pooling's output size: an int for every axis or one entry per axis, a
    ``None`` entry keeping that axis's input size (PyTorch's rule). Entries are >= 0 (a
    zero gives an empty output, as PyTorch).

    >>> adaptive_output_size((10, 9), (None, 4), "adaptive_avg_pool2d")
    (10, 4)
    """
    n = len(spatial)
    if output_size is None:
        entries = (None,) * n
    elif _is_int(output_size):
        entries = (int(output_size),) * n
    elif isinstance(output_size, Sequence) and not isinstance(output_size, str):
        entries = tuple(output_size)
    else:
        raise TypeError(
            f"{func}: output_size must be an int, None or a tuple of {n} ints or None, "
            f"got {output_size!r}"
        )
    if len(entries) != n or not all(v is None or _is_int(v) for v in entries):
        raise ValueError(
            f"{func}: output_size must be an int or a tuple of {n} ints or None, "
            f"got {output_size!r}"
        )
    out = tuple(int(s) if v is None else int(v) for s, v in zip(spatial, entries, strict=True))
    if min(out) < 0:
        raise ValueError(f"{func}: output_size must be >= 0, got {output_size!r}")
    return out


def adaptive_windows(n: int, out: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Window ``[start, end)`` of each of ``out`` adaptive outputs over ``n`` inputs:
    ``start = floor(i*n/out)``, ``end = ceil((i+1)*n/out)`` (PyTorch's rule; windows of
    neighbouring outputs overlap when ``out`` does not divide ``n``).

    >>> adaptive_windows(5, 3)
    ((0, 1, 3), (2, 4, 5))
    """
    starts = tuple(i * n // out for i in range(out))
    ends = tuple(ceil_div((i + 1) * n, out) for i in range(out))
    return starts, ends


def unpool_output_size(
    spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
    padding: Sequence[int], output_size, func: str,
) -> tuple[int, ...]:
    """Max-unpooling output size: ``(n - 1)*stride - 2*padding + kernel`` per axis, or
    ``output_size`` (the spatial sizes, or the full ``(N, C, *spatial)`` shape), each
    strictly between ``default - stride`` and ``default + stride`` (PyTorch's rule).

    >>> unpool_output_size((2, 2), (2, 2), (2, 2), (0, 0), None, "max_unpool2d")
    (4, 4)
    >>> unpool_output_size((2, 2), (2, 2), (2, 2), (0, 0), (5, 5), "max_unpool2d")
    (5, 5)
    """
    n = len(kernel)
    default = tuple((m - 1) * s + k - 2 * p
                    for m, k, s, p in zip(spatial, kernel, stride, padding, strict=True))
    if output_size is None:
        out = default
    else:
        if not isinstance(output_size, Sequence) or isinstance(output_size, str) or not all(
            _is_int(v) for v in output_size
        ):
            raise ValueError(
                f"{func}: output_size must be a tuple of {n} (or {n + 2}) ints, "
                f"got {output_size!r}"
            )
        sizes = tuple(int(v) for v in output_size)
        if len(sizes) == n + 2:
            sizes = sizes[2:]
        if len(sizes) != n:
            raise ValueError(
                f"{func}: output_size should be a sequence containing {n} or {n + 2} "
                f"elements, but it has a length of {len(output_size)}"
            )
        for d, (v, m, s) in enumerate(zip(sizes, default, stride, strict=True)):
            if not m - s < v < m + s:
                raise ValueError(
                    f"{func}: invalid output_size {tuple(output_size)} (dim {d} must be "
                    f"between {m - s} and {m + s}, exclusive)"
                )
        out = sizes
    if min(out) < 1:
        raise ValueError(
            f"{func}: output size {out} < 1 (input spatial size {tuple(spatial)}, "
            f"kernel_size={tuple(kernel)}, stride={tuple(stride)}, padding={tuple(padding)})"
        )
    return out


def sliding_blocks(
    spatial: Sequence[int], kernel: Sequence[int], dilation: Sequence[int],
    padding: Sequence[int], stride: Sequence[int],
) -> tuple[int, ...]:
    """Number of sliding blocks per axis of ``unfold``/``fold`` (may be < 1):
    ``floor((n + 2*padding - dilation*(k - 1) - 1) / stride) + 1``.

    >>> sliding_blocks((4, 5), (2, 3), (1, 1), (0, 1), (1, 2))
    (3, 3)
    """
    return tuple(conv_out(n, k, s, p, p, d)
                 for n, k, d, p, s in zip(spatial, kernel, dilation, padding, stride,
                                          strict=True))


__all__ += ["adaptive_output_size", "adaptive_windows", "sliding_blocks", "unpool_output_size"]


# --- the rules behind the plans (fastconv/_plan.py), learn_kernel and ``fastconv shape`` --


def padded_spatial(spatial: Sequence[int], pads: Pairs) -> tuple[int, ...]:
    """Spatial size of an input after ``(before, after)`` padding on every axis.

    >>> padded_spatial((5, 6), ((1, 1), (0, 2)))
    (7, 8)
    """
    return tuple(n + b + a for n, (b, a) in zip(spatial, pads, strict=True))


def check_mode_padding(padding_mode: str, pads: Pairs, spatial: Sequence[int], func: str,
                       shapes="") -> None:
    """The padding a boundary mode can make from the input (PyTorch's limits): "reflect"
    needs every pad smaller than its axis, "circular" at most its axis."""
    spatial = tuple(spatial)
    if padding_mode == "reflect" and any(max(p) >= n for p, n in zip(pads, spatial, strict=True)):
        raise ValueError(
            f"{func}: reflect padding {pads} must be smaller than the input's spatial size "
            f"{spatial}{shapes}"
        )
    if padding_mode == "circular" and any(max(p) > n for p, n in zip(pads, spatial, strict=True)):
        raise ValueError(
            f"{func}: circular padding {pads} must not exceed the input's spatial size "
            f"{spatial}{shapes}"
        )


def transpose_output_spatial(
    spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
    pad: Sequence[int], output_padding: Sequence[int], dilation: Sequence[int], func: str,
    shapes="",
) -> tuple[int, ...]:
    """Output spatial size of a transposed convolution (PyTorch's rules): every
    ``output_padding`` smaller than its stride or dilation, every output size >= 1.

    >>> transpose_output_spatial((3, 3), (3, 3), (2, 2), (1, 1), (1, 0), (1, 1), "f")
    (6, 5)
    """
    if any(op >= max(st, d) for op, st, d in zip(output_padding, stride, dilation, strict=True)):
        raise ValueError(
            f"{func}: output_padding={tuple(output_padding)} must be smaller than either "
            f"stride={tuple(stride)} or dilation={tuple(dilation)} on every axis"
        )
    out = tuple(
        transpose_out(n, k, st, p, op, d)
        for n, k, st, p, op, d in zip(spatial, kernel, stride, pad, output_padding, dilation,
                                      strict=True)
    )
    if any(o < 1 for o in out):
        raise ValueError(f"{func}: output size {out} < 1 for padding={tuple(pad)}{shapes}")
    return out


def pool_output_spatial(
    spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int], pads: Sequence[int],
    dilation: Sequence[int], ceil_mode: bool, func: str, detail: str,
) -> tuple[int, ...]:
    """Output spatial size of a pooling (:func:`pool_out` per axis), every size >= 1;
    ``detail`` ends the error message (the parameters and ``x.shape``)."""
    out = tuple(
        pool_out(n, k, st, p, d, bool(ceil_mode))
        for n, k, st, p, d in zip(spatial, kernel, stride, pads, dilation, strict=True)
    )
    if any(o < 1 for o in out):
        raise ValueError(
            f"{func}: output size {out} < 1 for input spatial size {tuple(spatial)} "
            f"(ceil_mode={bool(ceil_mode)}, {detail})"
        )
    return out


def spread_slices(out_n: int, stride: int, lead: int, length: int) -> tuple[tuple, tuple]:
    """Slices placing ``g[o]`` at ``lead + o*stride`` inside ``[0, length)``, dropping what
    falls outside: ((src_start, src_stop, 1), (dst_start, dst_stop, stride)).

    >>> spread_slices(3, 2, 1, 6)
    ((0, 3, 1), (1, 6, 2))
    """
    lo = ceil_div(max(0, -lead), stride)
    hi = min(out_n, (length - 1 - lead) // stride + 1)
    if hi <= lo:
        return (0, 0, 1), (0, 0, 1)
    return (lo, hi, 1), (lead + lo * stride, lead + (hi - 1) * stride + 1, stride)


def input_grad_spread(
    g_spatial: Sequence[int], x_spatial: Sequence[int], kernel: Sequence[int],
    stride: Sequence[int], dilation: Sequence[int], pads: Pairs, fold: bool,
) -> tuple[tuple[int, ...], tuple[int, ...], tuple, tuple]:
    """Geometry of an input gradient (and a transposed convolution) computed as a stride-1
    correlation of ``grad_output`` spread onto a zero grid with the flipped weight.

    ``g[o]`` lands at ``dilation*(k-1) - before + o*stride`` of a grid of length
    ``n + dilation*(k-1)`` (``before`` is 0 when ``fold``: then the gradient is computed on
    the padded input grid and folded back onto the source pixels by the caller).

    Returns ``(grid, spread, src, dst)``: the grid the correlation writes, the spread
    grid's size, and per axis the ``(start, stop, step)`` slices of ``grad_output`` and of
    the spread grid.

    >>> input_grad_spread((3,), (5,), (3,), (2,), (1,), ((1, 1),), False)
    ((5,), (7,), ((0, 3, 1),), ((1, 6, 2),))
    """
    grid = padded_spatial(x_spatial, pads) if fold else tuple(x_spatial)
    src, dst, spread = [], [], []
    for o, n, k, s, d, (b, _) in zip(g_spatial, grid, kernel, stride, dilation, pads,
                                     strict=True):
        reach = d * (k - 1)
        sl, dl = spread_slices(o, s, reach - (0 if fold else b), n + reach)
        src.append(sl)
        dst.append(dl)
        spread.append(n + reach)
    return grid, tuple(spread), tuple(src), tuple(dst)


def user_shape(shape5: tuple, nspatial: int, unbatched: bool) -> tuple:
    """A plan's 5-D shape ``(N, C, D, H, W)`` in the caller's rank: the unit axes that
    1-D/2-D ops run with dropped, and the batch axis too when the input had none.

    >>> user_shape((1, 3, 1, 4, 5), 2, True), user_shape((2, 3, 1, 1, 5), 1, False)
    ((3, 4, 5), (2, 3, 5))
    """
    lead = shape5[1:2] if unbatched else shape5[:2]
    return lead + shape5[5 - nspatial :]


def receptive_step(size: int, jump: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """One layer's step of the receptive-field recurrence along an axis: ``(size, jump)``
    before the layer -> after it (``size += dilation*(k-1)*jump``, ``jump *= stride``).

    >>> receptive_step(3, 1, 2, 2, 1)
    (4, 2)
    """
    return size + dilation * (k - 1) * jump, jump * stride


__all__ += ["check_mode_padding", "input_grad_spread", "padded_spatial", "pool_output_spatial",
            "receptive_step", "spread_slices", "transpose_output_spatial", "user_shape"]
