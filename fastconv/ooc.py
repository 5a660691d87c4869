"""Out of core: convolve or pool a ``.npy`` file into a ``.npy`` file through Dask.

For arrays larger than memory. The input is read chunk by chunk with
``numpy.load(mmap_mode="r")`` (each read maps the file, copies its chunk and unmaps it,
so pages already used do not pile up in the process's resident set); the Dask graph of
``fastconv._dask`` computes the result block by block; each block is written into a
``.npy`` created with ``numpy.lib.format.open_memmap`` under a short temporary name
(``.fastconv-XXXXXXXX.tmp``) in the output's folder, which is renamed to the output name
only when every block is written.

Before anything is computed, the checks the command line makes (``fastconv._files``, one
owner for both): the input's ``.npy`` header is read alone and must be well formed, hold
no pickled objects and match the file's size (a zip named ``.npy`` or a truncated file is
a ``ValueError``); the output must not be a folder, must be in an existing folder and must
not be the input *as a file* (same device and inode: hard links and symlinks included).
A failure, Ctrl-C, an exception raised by the progress callback, or SIGTERM (while
SIGTERM has its default action, it is borrowed for the write: the temporary file is
removed and the signal delivered again) leaves no partial output, and the input is never
overwritten.

Needs the ``dask`` extra (``pip install 'fastconv[dask]'``).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

Progress = Callable[[int, int], None]


class NpyReader:
    """Array-like over a ``.npy`` file for ``dask.array.from_array``.

    ``numpy.load(mmap_mode="r")`` gives the layout (shape, dtype, data offset); a chunk is
    then read with ``os.pread`` straight into its own buffer, one call per contiguous run.
    (Reading through the mapping itself would work too, but the kernel maps up to 64 KiB
    around every touched page, so a tall chunk of a wide image briefly adds many times
    its own size to the resident set.)
    """

    def __init__(self, path):
        from fastconv._files import read_npy_header

        self.path = os.fspath(path)
        header = read_npy_header(self.path)  # ValueError for anything but a sound .npy
        self.shape, self.dtype, self.ndim = header.shape, header.dtype, len(header.shape)
        self.offset = header.offset
        # a Fortran-order file is also C-ordered when at most one axis is longer than 1
        self.fortran = header.fortran_order and sum(n > 1 for n in self.shape) > 1

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        index = index + (slice(None),) * (self.ndim - len(index))
        if self.fortran or any(not isinstance(i, slice) for i in index):
            mm = np.load(self.path, mmap_mode="r", allow_pickle=False)
            return np.array(mm[index])
        ranges = [i.indices(n) for i, n in zip(index, self.shape, strict=True)]
        if any(step != 1 for _, _, step in ranges):
            mm = np.load(self.path, mmap_mode="r", allow_pickle=False)
            return np.array(mm[index])
        out = np.empty(tuple(max(0, b - a) for a, b, _ in ranges), self.dtype)
        if out.size == 0:
            return out
        # trailing axes taken whole are one contiguous run per index of the others
        run_axes = self.ndim
        while run_axes > 1 and ranges[run_axes - 1][:2] == (0, self.shape[run_axes - 1]):
            run_axes -= 1
        strides = np.cumprod((1,) + self.shape[::-1])[::-1][1:] * self.dtype.itemsize
        flat = out.reshape(-1, int(np.prod(out.shape[run_axes - 1:])))
        lead = [range(a, b) for a, b, _ in ranges[: run_axes - 1]]
        start_last = ranges[run_axes - 1][0]
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for row, idx in zip(flat, itertools.product(*lead), strict=True):
                pos = self.offset + sum(i * s for i, s in zip(idx, strides, strict=False))
                pos += start_last * int(strides[run_axes - 1])
                view = memoryview(row).cast("B")
                got = os.preadv(fd, [view], pos)
                if got != view.nbytes:
                    raise OSError(f"short read from {self.path!r} at byte {pos}")
        finally:
            os.close(fd)
        return out


class NpyWriter:
    """Store target for ``dask.array.store``: every block maps the ``.npy`` file for
    writing (``mmap_mode="r+"``), writes its region and unmaps it."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def __setitem__(self, index, value):
        mm = np.load(self.path, mmap_mode="r+", allow_pickle=False)
        mm[index] = value
        del mm


def _paths(func: str, input_path, output_path) -> tuple[Path, Path, NpyReader]:
    """The checked paths and a reader of the input, before anything is computed."""
    from fastconv import _files

    src, dst = Path(input_path), Path(output_path)
    if not src.is_file():
        raise FileNotFoundError(f"{func}: input_path {str(src)!r} is not a file")
    try:
        _files.check_output(dst, {"input_path": src})
    except ValueError as exc:
        raise ValueError(f"{func}: output_path {exc}") from None
    try:
        reader = NpyReader(src)
    except ValueError as exc:
        raise ValueError(f"{func}: input_path {str(src)!r}: {exc}") from None
    return src, dst, reader


def _spatial_chunks(func: str, chunks, nspatial: int) -> tuple[int, ...]:
    from fastconv._validate import ntuple

    return ntuple(chunks, nspatial, "chunks", func, minimum=1)


def _read(src: Path, reader: NpyReader, chunks5: tuple):
    """The input file as a lazy Dask array (no data read yet)."""
    import dask.array as da

    stat = src.stat()
    name = f"npy-{uuid.uuid5(uuid.NAMESPACE_URL, f'{src.resolve()}:{stat.st_mtime_ns}')}"
    chunks = chunks5[-reader.ndim:] if reader.ndim < len(chunks5) else chunks5
    return da.from_array(reader, chunks=chunks, name=name,
                         meta=np.empty((0,) * reader.ndim, reader.dtype))


def _write(y, dst: Path, progress: Progress | None, scheduler) -> Path:
    """Compute ``y`` into ``dst`` (temporary name, then rename), a few output blocks at a
    time: each group is one Dask computation of just the tasks it needs, so memory holds
    about ``os.cpu_count()`` blocks whatever the array's size (one ``da.store`` of the
    whole graph lets the local schedulers read far ahead of the writes)."""
    import dask

    from fastconv._files import replacing

    blocks = list(np.ndindex(*y.numblocks))
    starts = [np.cumsum((0,) + tuple(c)) for c in y.chunks]
    group = os.cpu_count() or 1
    with replacing(dst) as tmp:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=y.dtype, shape=y.shape)
        del mm
        writer = NpyWriter(tmp)
        for g in range(0, len(blocks), group):
            ids = blocks[g : g + group]
            parts = dask.compute(*[y.blocks[i] for i in ids], scheduler=scheduler)
            for i, part in zip(ids, parts, strict=True):
                writer[tuple(slice(s[k], s[k + 1]) for s, k in zip(starts, i, strict=True))] = part
            if progress is not None:
                progress(g + len(ids), len(blocks))
    return dst


def convolve_file(input_path, output_path, weight, bias=None, stride=1, padding=0,
                  dilation=1, groups=1, padding_mode: str = "zeros", *, flip: bool = False,
                  chunks=4096, progress: Progress | None = None, scheduler=None,
                  algorithm: str = "auto") -> Path:
    """Cross-correlate (``flip=True``: convolve) a ``.npy`` file into a ``.npy`` file,
    out of core.

    The input is ``(N, C, *spatial)``, ``(C, *spatial)`` or a plain ``spatial`` image
    (one channel; the output then has no channel axis when K == 1), with
    ``len(spatial) == weight.ndim - 2``. Every other parameter is that of
    :func:`fastconv.conv2d` (``conv1d``/``conv3d`` for other ranks).

    Parameters
    ----------
    input_path, output_path : str or Path
        ``.npy`` files; the output is written under a temporary name in its folder and
        renamed at the end.
    weight, bias, stride, padding, dilation, groups, padding_mode, algorithm
        As :func:`fastconv.conv2d`.
    flip : bool, default False
        True convolution (the kernel flipped on every spatial axis).
    chunks : int or tuple of int, default 4096
        Spatial chunk edge (per axis); each block holds one image and all its channels.
    progress : callable(done, total), optional
        Called after each group of output blocks is written (counts of blocks).
    scheduler : optional
        Dask scheduler name ("threads", "synchronous", "processes") or a distributed
        Client; default: Dask's threads.

    Returns
    -------
    Path
        ``output_path``.

    Raises
    ------
    FileNotFoundError
        ``input_path`` is not a file.
    ValueError
        Before anything is computed: ``input_path`` is not a sound ``.npy`` (a zip, a
        truncated file or header, pickled objects); ``output_path`` is a folder, in a
        missing folder, or the same file as ``input_path``; or a parameter is invalid.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> np.save(d / "x.npy", np.arange(9.).reshape(3, 3))
    >>> convolve_file(d / "x.npy", d / "y.npy", [[[[0., 1.], [2., 3.]]]], chunks=2).name
    'y.npy'
    >>> np.load(d / "y.npy")
    array([[19., 25.],
           [37., 43.]])
    """
    from fastconv import conv as fc_conv
    from fastconv._validate import as_array

    func = "convolve_file"
    src, dst, reader = _paths(func, input_path, output_path)
    w = as_array(weight, "weight", func)
    nspatial = w.ndim - 2
    if nspatial not in (1, 2, 3):
        raise ValueError(
            f"{func}: weight must be 3-D, 4-D or 5-D (K, C // groups, *kernel), got "
            f"weight.shape={w.shape}"
        )
    sp = _spatial_chunks(func, chunks, nspatial)
    x = _read(src, reader, (1, -1) + sp)
    image = x.ndim == nspatial
    if image:
        x = x[None]
    op = getattr(fc_conv, f"{'convolve' if flip else 'conv'}{nspatial}d"
                 + ("_nchw" if flip and nspatial == 2 else ""))
    y = op(x, w, bias, stride, padding, dilation, groups, padding_mode, algorithm=algorithm)
    if image and y.shape[0] == 1:
        y = y[0]
    return _write(y, dst, progress, scheduler)


def pool_file(input_path, output_path, kernel_size, stride=None, padding=0, *,
              mode: str = "max", dilation=1, ceil_mode: bool = False,
              count_include_pad: bool = True, divisor_override: int | None = None,
              nspatial: int = 2, chunks=4096, progress: Progress | None = None,
              scheduler=None) -> Path:
    """Max or average pooling of a ``.npy`` file into a ``.npy`` file, out of core.

    The input is ``(N, C, *spatial)``, ``(C, *spatial)`` or a plain ``spatial`` image
    (the output then has no channel axis) with ``nspatial`` spatial axes (default 2).
    ``mode`` is "max" or "avg"; the other parameters are those of
    :func:`fastconv.max_pool2d` / :func:`fastconv.avg_pool2d` (``dilation`` is for max
    pooling only). ``chunks``, ``progress`` and ``scheduler`` as :func:`convolve_file`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> np.save(d / "x.npy", np.arange(16.).reshape(4, 4))
    >>> np.load(pool_file(d / "x.npy", d / "y.npy", 2, chunks=3))
    array([[ 5.,  7.],
           [13., 15.]])
    """
    import fastconv as fc

    func = "pool_file"
    if mode not in ("max", "avg"):
        raise ValueError(f"{func}: invalid mode {mode!r}, should be one of ('max', 'avg')")
    if nspatial not in (1, 2, 3):
        raise ValueError(f"{func}: nspatial must be 1, 2 or 3, got {nspatial!r}")
    src, dst, reader = _paths(func, input_path, output_path)
    x = _read(src, reader, (1, 1) + _spatial_chunks(func, chunks, nspatial))
    image = x.ndim == nspatial
    if image:
        x = x[None]
    op = getattr(fc, f"{mode}_pool{nspatial}d")
    if mode == "max":
        y = op(x, kernel_size, stride, padding, dilation, ceil_mode)
    else:
        if dilation != 1:
            raise ValueError(f"{func}: dilation={dilation!r} is for mode='max' only")
        y = op(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    if image:
        y = y[0]
    return _write(y, dst, progress, scheduler)


__all__ = ["NpyReader", "NpyWriter", "convolve_file", "pool_file"]
