"""Dask arrays in, lazy Dask arrays out: the blockwise form of every forward op.

The public wrappers (``fastconv.conv``, ``fastconv.pool``) send a ``dask.array.Array``
input here; nothing in this module imports Dask until such an input arrives, so
``import fastconv`` stays cheap.

How a call becomes a graph (the index arithmetic is ``_shapes.overlap_chunks``):

- the same validated plan as the in-memory call (``plan_conv`` / ``plan_pool``), from
  shapes and dtypes only, so nothing is computed while the graph is built;
- convolution: the whole array is padded first with ``dask.array.pad`` (zeros ->
  ``constant``, reflect -> ``reflect``, replicate -> ``edge``, circular -> ``wrap``), so
  padding modes act at the global borders and never at chunk seams; pooling needs no
  copy (its padding is implicit) and each block is told how much of it lies before it;
- every spatial axis is rechunked so that a block starts where its first window starts
  (a multiple of the stride in padded coordinates), then ``dask.array.map_overlap``
  gives each block a right halo of ``dilation*(k-1) + 1 - stride`` elements
  (``boundary="none"``: the halo only ever comes from a neighbour);
- batch chunks are kept; a convolution gathers all input channels into one chunk (a
  group needs all of its channels) and writes all output channels per block; pooling
  keeps the channel chunks (it works per channel);
- each block runs the in-memory kernels on a NumPy array: convolution calls ``conv3d``
  with ``padding=0`` and the algorithm chosen for the whole call, so the direct
  algorithm gives bit-identical results.
"""

from __future__ import annotations

import math

import numpy as np

from fastconv import _dispatch, _shapes
from fastconv._dispatch import flip_weight, to_host
from fastconv._plan import plan_conv, plan_pool
from fastconv._validate import (
    NUMPY_PAD_MODES,
    as_array,
    check_algorithm,
    check_dtype,
    check_not_all_bool,
)


def is_dask(a) -> bool:
    """True for a Dask collection (checked by module name: Dask is never imported here)."""
    return type(a).__module__.startswith("dask")


def _small(a, name: str, func: str):
    """A weight or bias as a NumPy array (a Dask one is computed: it is small)."""
    if a is None:
        return None
    return as_array(np.asarray(a), name, func)


def _check_input(func: str, x) -> None:
    check_dtype(x, "x", func)
    if any(math.isnan(c) for axis in x.chunks for c in axis):
        raise ValueError(
            f"{func}: x is a Dask array with unknown chunk sizes (x.chunks={x.chunks}); "
            "call x.compute_chunk_sizes() first"
        )


def _to5(x, nspatial: int, unbatched: bool):
    """(N, C, *spatial) or (C, *spatial) -> (N, C, D, H, W) with unit axes (lazy view)."""
    lead = (None, slice(None)) if unbatched else (slice(None), slice(None))
    return x[lead + (None,) * (3 - nspatial) + (slice(None),) * nspatial]


def _from5(y, nspatial: int, unbatched: bool):
    lead = (0, slice(None)) if unbatched else (slice(None), slice(None))
    return y[lead + (0,) * (3 - nspatial) + (slice(None),) * nspatial]


def _bounds(chunks: tuple, shift: int = 0) -> list[int]:
    """Interior chunk boundaries of one axis, shifted (into padded coordinates)."""
    return [int(b) + shift for b in np.cumsum(chunks)[:-1]]


def _depth(halos) -> dict:
    return {2 + i: (0, h) if h else 0 for i, h in enumerate(halos)}


def _starts(chunks: tuple) -> tuple[int, ...]:
    return (0,) + tuple(int(v) for v in np.cumsum(chunks))


# --- convolution -----------------------------------------------------------------------


def conv(func, nspatial, x, weight, bias, stride, padding, dilation, groups, padding_mode,
         device, algorithm, flip, block):
    """``conv*d`` / ``convolve*d`` of a Dask array: a lazy Dask array, same semantics.
    ``block(piece, weight, bias, stride, dilation, groups, device, algorithm)`` computes
    one block (``fastconv._run.dask_block``: the in-memory runner, padding 0)."""
    import dask.array as da

    from fastconv import _algorithms
    from fastconv._algorithms import choose

    check_algorithm(algorithm, func, _algorithms.ALGORITHMS)
    _check_input(func, x)
    w, b = _small(weight, "weight", func), _small(bias, "bias", func)
    check_not_all_bool(func, {"x": x, "weight": w, "bias": b})
    plan = plan_conv(func, nspatial, x, w, b, stride, padding, dilation, groups, padding_mode)
    name = _dispatch.choose(func, device, w, b)
    if name == "cpu" and algorithm == "auto":
        algorithm = choose(plan)  # one choice for the whole array, as in memory
    w5 = np.ascontiguousarray(w.reshape(plan.w_shape), plan.dtype)
    if flip:
        w5 = flip_weight(w5, plan.dtype, np.ascontiguousarray)
    b = None if b is None else np.ascontiguousarray(b, plan.dtype)

    x5 = _to5(x, nspatial, plan.unbatched).astype(plan.dtype)
    widths = ((0, 0), (0, 0)) + plan.pads
    if any(v for pair in plan.pads for v in pair):
        kw = {"constant_values": 0} if plan.padding_mode == "zeros" else {}
        xp = da.pad(x5, widths, mode=NUMPY_PAD_MODES[plan.padding_mode], **kw)
    else:
        xp = x5
    in_chunks, out_chunks, halos = [], [], []
    for i in range(3):
        before = plan.pads[i][0]
        reach = plan.dilation[i] * (plan.w_shape[2 + i] - 1)
        ic, oc, h = _shapes.overlap_chunks(
            xp.shape[2 + i], plan.out_shape[2 + i], plan.stride[i], 0, reach,
            _bounds(x5.chunks[2 + i], before),
        )
        in_chunks.append(ic)
        out_chunks.append(oc)
        halos.append(h)
    xp = xp.rechunk((x5.chunks[0], (plan.x_shape[1],), *in_chunks))
    y = da.map_overlap(
        block, xp, depth=_depth(halos), boundary="none", trim=False,
        allow_rechunk=False, chunks=(xp.chunks[0], (plan.out_shape[1],), *out_chunks),
        dtype=plan.dtype, meta=np.empty((0,) * 5, plan.dtype), token=func,
        weight=w5, bias=b, stride=plan.stride, dilation=plan.dilation, groups=plan.groups,
        device=device, algorithm=algorithm,
    )
    return _from5(y, nspatial, plan.unbatched)


# --- pooling ---------------------------------------------------------------------------


def _pool_block(block, plan, backend_name, in_starts, out_starts, what, block_id=None):
    """One block of a pooling: the backend kernel with the block's share of the padding
    (all of it before the first block, none before the others) and its slice of the
    global average-pooling divisors. ``what``: "values" or "indices" (global, flat)."""
    be = _dispatch.backend(backend_name)
    js = block_id[2:]
    pads = tuple(p if j == 0 else 0 for p, j in zip(plan.pads, js, strict=True))
    lo = tuple(out_starts[i][j] for i, j in enumerate(js))
    hi = tuple(out_starts[i][j + 1] for i, j in enumerate(js))
    shape = block.shape[:2] + tuple(h - lo_ for lo_, h in zip(lo, hi, strict=True))
    x5 = be.asarray(block, plan.dtype)
    out = be.empty(shape, plan.dtype)
    if plan.kind == "avg":
        divisors = tuple(d[a:b] for d, a, b in zip(plan.divisors, lo, hi, strict=True))
        be.avg_pool(x5, out, plan.kernel, plan.stride, pads, divisors)
        return to_host(out)
    if what == "values":
        be.max_pool(x5, out, None, plan.kernel, plan.stride, pads, plan.dilation)
        return to_host(out)
    idx = be.empty(shape, np.int64)
    be.max_pool(x5, out, idx, plan.kernel, plan.stride, pads, plan.dilation)
    idx = to_host(idx)
    # block-local flat index (d*Hl + h)*Wl + w -> global (d*H + h)*W + w
    _, hl, wl = block.shape[2:]
    _, H, W = plan.x_shape[2:]
    off = tuple(in_starts[i][j] for i, j in enumerate(js))
    d, r = np.divmod(idx, hl * wl)
    h, w = np.divmod(r, wl)
    return ((d + off[0]) * H + h + off[1]) * W + w + off[2]


def pool(kind, func, nspatial, x, kernel_size, stride, padding, dilation, ceil_mode,
         return_indices=False, count_include_pad=True, divisor_override=None, device=None):
    """``max_pool*d`` / ``avg_pool*d`` of a Dask array: lazy Dask array(s), same semantics."""
    import dask.array as da

    _check_input(func, x)
    check_not_all_bool(func, {"x": x})
    plan = plan_pool(func, nspatial, x, kernel_size, stride, padding, dilation, ceil_mode,
                     kind, count_include_pad, divisor_override)
    name = _dispatch.choose(func, device)
    x5 = _to5(x, nspatial, plan.unbatched).astype(plan.dtype)
    in_chunks, out_chunks, halos = [], [], []
    for i in range(3):
        ic, oc, h = _shapes.overlap_chunks(
            plan.x_shape[2 + i], plan.out_shape[2 + i], plan.stride[i], plan.pads[i],
            plan.dilation[i] * (plan.kernel[i] - 1), _bounds(x5.chunks[2 + i]),
        )
        in_chunks.append(ic)
        out_chunks.append(oc)
        halos.append(h)
    xr = x5.rechunk(x5.chunks[:2] + tuple(in_chunks))
    starts = dict(in_starts=tuple(_starts(c) for c in in_chunks),
                  out_starts=tuple(_starts(c) for c in out_chunks))

    def run(what: str, dtype):
        y = da.map_overlap(
            _pool_block, xr, depth=_depth(halos), boundary="none", trim=False,
            allow_rechunk=False, chunks=xr.chunks[:2] + tuple(out_chunks), dtype=dtype,
            meta=np.empty((0,) * 5, dtype), token=f"{func}-{what}", plan=plan,
            backend_name=name, what=what, **starts,
        )
        return _from5(y, nspatial, plan.unbatched)

    values = run("values", plan.dtype)
    if not return_indices:
        return values
    return values, run("indices", np.dtype(np.int64))
