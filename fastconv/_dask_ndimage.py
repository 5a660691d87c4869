"""``fastconv.ndimage`` on Dask arrays: lazy Dask arrays out, bit-identical to the
in-memory call (each block runs the same engine pass on the same padded values).

The whole array is padded first with ``dask.array.pad`` and the numpy mode of
``fastconv.ndimage.MODES`` (global borders only, never at chunk seams), rechunked so
that every block needs only a right halo of ``k - 1`` (``_shapes.overlap_chunks``, as
``fastconv.conv``'s Dask path), and every block runs the in-memory "valid" correlation
(``map_overlap(boundary="none")``). Separable filters are one such lazy pass per axis,
each stored in the output dtype (as in memory). ``output`` may be a dtype (an array is
refused: a lazy result has no buffer to fill).

Every function takes the in-memory module (``fastconv.ndimage``, which calls here for
Dask input) as its first argument ``nd``: its checks and kernels, without an import
cycle.
"""

from __future__ import annotations

import numpy as np

from fastconv._dask import _bounds
from fastconv._shapes import overlap_chunks


def _check(nd, func: str, x, output):
    if output is not None and not isinstance(output, (type, np.dtype, str)):
        raise TypeError(f"{func}: output must be None or a dtype for a Dask input (a lazy "
                        "result has no buffer to fill)")
    meta = np.empty((1,) * x.ndim, x.dtype)
    nd._input(func, meta)
    dtype, _ = nd._output_dtype(func, output, meta.reshape((1,) * x.ndim))
    return dtype


def _valid_block(nd, block, w, work):
    return nd.correlate_valid(np.ascontiguousarray(block, dtype=work), w)


def _line_block(nd, block, w1, axis, work, scale, out_dtype):
    """One block of a 1-D pass: the in-memory pass's kernel in its "valid" form."""
    k = w1.shape[0]
    y = nd._line_pass(np.ascontiguousarray(block, dtype=work), w1, axis, 0, "constant", 0.0,
                      n_out=block.shape[axis] - k + 1)
    if scale is not None:
        y /= scale
    return nd._cast(y, out_dtype)


def _lazy_correlate(nd, x, w: np.ndarray, pads, np_mode: str, cval: float, work, out_dtype,
                    block_fn=None):
    """Padded globally, then every block's 'valid' correlation with its neighbours
    (``block_fn(block)`` if given, else the n-D engine correlation with ``w``)."""
    import dask.array as da

    xw = x.astype(work)
    kw = {"constant_values": cval} if np_mode == "constant" else {}
    xp = da.pad(xw, tuple(pads), mode=np_mode, **kw) if any(b or a for b, a in pads) else xw
    # blocks that need only a right halo of k - 1 (the index rule of fastconv.conv's Dask
    # path, ``_shapes.overlap_chunks``); each block computes whole outputs
    in_chunks, out_chunks, depth = [], [], {}
    for ax, (b, a) in enumerate(pads):
        ic, oc, h = overlap_chunks(xp.shape[ax], x.shape[ax], 1, 0, b + a,
                                   _bounds(x.chunks[ax], b))
        in_chunks.append(ic)
        out_chunks.append(oc)
        depth[ax] = (0, h) if h else 0
    xp = xp.rechunk(tuple(in_chunks))
    w = np.ascontiguousarray(w, dtype=work)
    if block_fn is None:
        def block_fn(blk):
            return nd._cast(_valid_block(nd, blk, w, work), out_dtype)
    y = da.map_overlap(
        block_fn, xp, depth=depth,
        boundary="none", trim=False, dtype=out_dtype, chunks=tuple(out_chunks),
        meta=np.empty((0,) * x.ndim, out_dtype), allow_rechunk=False,
    )
    return y


def correlate(nd, x, weights, output, mode, cval, origin, axes, flip):
    func = "convolve" if flip else "correlate"
    dtype = _check(nd, func, x, output)
    a = np.empty((1,) * x.ndim, x.dtype)
    w = nd._weights(func, weights)
    axes = nd._axes(func, axes, x.ndim)
    if len(axes) < x.ndim:
        if w.ndim != len(axes):
            raise nd.NdimageError(f"{func}: weights.ndim ({w.ndim}) must match len(axes) "
                                  f"({len(axes)})")
        w = np.expand_dims(w, tuple(ax for ax in range(x.ndim) if ax not in axes))
    origins = nd._sequence(func, origin, len(axes), "origin")
    if len(axes) < x.ndim:
        full = [0] * x.ndim
        for o, ax in zip(origins, axes, strict=True):
            full[ax] = o
        origins = full
    if w.ndim != x.ndim:
        raise nd.NdimageError(f"{func}: weights.ndim ({w.ndim}) must match the input's "
                              f"{x.ndim} dimensions")
    if flip:
        w = w[(slice(None, None, -1),) * w.ndim]
        origins = [-int(o) - (0 if k & 1 else 1) for o, k in zip(origins, w.shape, strict=True)]
    origins = [nd._origin_ok(func, o, k) for o, k in zip(origins, w.shape, strict=True)]
    if not isinstance(mode, str):
        raise nd.NdimageError(f"{func}: A sequence of modes is not supported")
    np_mode, c = nd._mode(func, mode), nd._cval(func, cval)
    work = nd._work_dtype(a.dtype, dtype)
    pads = [(k // 2 + o, k - 1 - k // 2 - o) for k, o in zip(w.shape, origins, strict=True)]
    return _lazy_correlate(nd, x, w, pads, np_mode, c, work, dtype)


def correlate1d(nd, x, weights, axis, output, mode, cval, origin, func="correlate1d",
                scale=None):
    dtype = _check(nd, func, x, output)
    w = nd._weights(func, weights)
    if w.ndim != 1 or w.shape[0] < 1:
        raise nd.NdimageError(f"{func}: no filter weights given (weights.shape={w.shape})")
    axis = nd._axis(func, axis, x.ndim)
    k = w.shape[0]
    origin = nd._origin_ok(func, origin, k)
    return _pass(nd, x, w, axis, origin, nd._mode(func, mode), nd._cval(func, cval), dtype,
                 scale)


def _pass(nd, x, w, axis, origin, np_mode, cval, dtype, scale):
    k = w.shape[0]
    work = nd._work_dtype(x.dtype, dtype)
    shape = [1] * x.ndim
    shape[axis] = k
    pads = [(0, 0)] * x.ndim
    pads[axis] = (k // 2 + origin, k - 1 - k // 2 - origin)
    w1 = np.ascontiguousarray(w, dtype=work)
    return _lazy_correlate(
        nd,         x, w.reshape(shape), pads, np_mode, cval, work, dtype,
        block_fn=lambda blk: _line_block(nd, blk, w1, axis, work, scale, dtype))


def uniform_filter1d(nd, x, size, axis, output, mode, cval, origin):
    return correlate1d(nd, x, np.ones(size), axis, output, mode, cval, origin,
                       func="uniform_filter1d", scale=float(size))


def separable(nd, public, x, output, **kwargs):
    """A separable filter of a Dask array: the in-memory wrapper's passes, each lazy."""
    func = public.__name__
    dtype = _check(nd, func, x, output)
    if public is nd.uniform_filter:
        passes = _uniform_passes(nd, func, x.ndim, **kwargs)
    else:
        passes = _gaussian_passes(nd, func, x.ndim, **kwargs)
    cval = nd._cval(func, kwargs["cval"])
    cur = x
    if not passes:
        return x.map_blocks(nd._cast, np.dtype(dtype), dtype=dtype)
    for axis, w, origin, mode, scale in passes:
        cur = _pass(nd, cur, w, axis, origin, nd._mode(func, mode), cval, dtype, scale)
    return cur


def _uniform_passes(nd, func, ndim, size, mode, cval, origin, axes):
    axes = nd._axes(func, axes, ndim)
    n = len(axes)
    out = []
    for ax, s, o, m in zip(axes, nd._sequence(func, size, n, "size"),
                           nd._sequence(func, origin, n, "origin"),
                           nd._sequence(func, mode, n, "mode"), strict=True):
        if s > 1:
            out.append((ax, np.ones(int(s)), int(o), m, float(s)))
    return out


def _gaussian_passes(nd, func, ndim, sigma, order, mode, cval, truncate, radius, axes):
    axes = nd._axes(func, axes, ndim)
    n = len(axes)
    return [(ax, nd._gaussian_weights(func, s, o, truncate, r), 0, m, None)
            for ax, s, o, m, r in zip(axes, nd._sequence(func, sigma, n, "sigma"),
                                      nd._sequence(func, order, n, "order"),
                                      nd._sequence(func, mode, n, "mode"),
                                      nd._sequence(func, radius, n, "radius"), strict=True)
            if s > 1e-15]
