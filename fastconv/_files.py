"""File safety shared by the command line (``fastconv_cli``) and :mod:`fastconv.ooc`.

One owner for every check a file-to-file run makes before it computes anything:

- **identity**: an output path is refused when it is one of the inputs *as a file*
  (``os.path.samefile``: same device and inode, so hard links, symlinks and ``./x``
  spellings are all caught), or a folder, or in a folder that does not exist;
- **headers**: what a ``.npy`` file declares (shape, dtype, order) is read with
  ``numpy.lib.format.read_magic``/``read_array_header_1_0``/``_2_0`` only, and checked
  against the file's real size (a header claiming 74 GiB in a 100-byte file is refused
  before any allocation), for pickled objects, and against :func:`memory_limit` when the
  array is to be read into memory;
- **temporary files**: a short name (``.fastconv-XXXXXXXX.tmp``, so a legal 255-byte output
  name never makes an over-long temporary one) in the output's folder, removed on any
  failure, and :func:`sigterm_raises`, which turns SIGTERM into the :class:`Terminated`
  exception so that cleanup runs for a ``kill`` as it does for Ctrl-C.

Messages are fragments (``"'y.npy' is a folder; expected a file path"``) that each caller
prefixes with its own function and parameter names.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Prefix and suffix of temporary output files: 10 + 8 random + 4 = 22 characters.
TEMP_PREFIX, TEMP_SUFFIX = ".fastconv-", ".tmp"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


# ------------------------------------------------------------------------- identity


def same_file(a, b) -> bool:
    """Whether paths ``a`` and ``b`` name the same file (device and inode when both
    exist; the resolved paths otherwise)."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_output(out, inputs: dict) -> None:
    """``ValueError`` (a message fragment) if ``out`` cannot be written without risk.

    ``inputs`` maps a name for the message (``"input_path"``, ``"--kernel file"``) to a
    path the run reads (``None`` entries are skipped). Refused: ``out`` is a folder, its
    folder does not exist, or it is the same file as an input (by identity).

    >>> check_output("/no/such/dir/y.npy", {})
    Traceback (most recent call last):
    ValueError: '/no/such/dir/y.npy': folder '/no/such/dir' does not exist
    """
    out = os.fspath(out)
    if os.path.isdir(out):
        raise ValueError(f"{out!r} is a folder; expected a file path")
    folder = Path(out).resolve().parent
    if not folder.is_dir():
        raise ValueError(f"{out!r}: folder {str(folder)!r} does not exist")
    for name, src in inputs.items():
        if src is not None and same_file(out, src):
            raise ValueError(
                f"{out!r} is the {name} {os.fspath(src)!r} (the same file); choose another "
                "output path (inputs are never overwritten)"
            )


# -------------------------------------------------------------------------- headers


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` file declares: ``shape``, ``dtype``, ``fortran_order``, the byte
    ``offset`` of its data, and ``nbytes`` (shape x itemsize, as a Python int)."""

    shape: tuple
    dtype: np.dtype
    fortran_order: bool
    offset: int
    nbytes: int


def _describe_bytes(n: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def read_npy_header_from(fh) -> NpyHeader:
    """The header at the start of the open binary stream ``fh`` (positioned after it on
    return); ``ValueError`` if it is not a well-formed ``.npy`` header or declares
    pickled objects. Reads the header only, never the data."""
    fmt = np.lib.format
    start = fh.read(6)
    if len(start) < 6:
        raise ValueError("not a .npy file (too short for a NumPy header)")
    if start[:4] in _ZIP_MAGIC:
        raise ValueError("is a zip archive (an .npz), not a .npy file")
    if start != fmt.MAGIC_PREFIX:
        raise ValueError("not a .npy file (it does not start with NumPy's magic string)")
    version = fh.read(2)
    if len(version) < 2:
        raise ValueError("truncated .npy header")
    if version[0] == 1:
        read_header = fmt.read_array_header_1_0
    elif version[0] in (2, 3):
        read_header = fmt.read_array_header_2_0
    else:
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    try:
        shape, fortran, dtype = read_header(fh)
    except Exception as exc:  # untrusted text: any failure to parse it is "malformed"
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        kind = "truncated" if text.startswith("EOF: reading") else "malformed"
        raise ValueError(f"{kind} .npy header ({text})") from None
    if any(s < 0 for s in shape):
        raise ValueError(f"malformed .npy header (negative shape {shape})")
    if dtype.hasobject:
        raise ValueError(
            "contains pickled Python objects, which are refused (read with "
            "allow_pickle=False); expected a numeric array"
        )
    count = 1
    for s in shape:
        count *= int(s)
    return NpyHeader(tuple(int(s) for s in shape), dtype, bool(fortran), fh.tell(),
                     count * dtype.itemsize)


def read_npy_header(path) -> NpyHeader:
    """The header of the ``.npy`` file at ``path``, checked against the file's size:
    ``ValueError`` if the data it declares is not all there (a truncated file, or a
    header claiming far more than the file holds).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.npy"
    >>> np.save(p, np.zeros((3, 4), np.float32))
    >>> h = read_npy_header(p); h.shape, h.dtype, h.nbytes
    ((3, 4), dtype('float32'), 48)
    """
    with open(path, "rb") as fh:
        header = read_npy_header_from(fh)
        size = os.fstat(fh.fileno()).st_size
    held = size - header.offset
    if held < header.nbytes:
        raise ValueError(
            f"is truncated: its header declares shape {header.shape} {header.dtype} "
            f"({_describe_bytes(header.nbytes)}) but the file holds "
            f"{_describe_bytes(max(held, 0))} of data"
        )
    return header


def memory_limit() -> int:
    """Bytes an input may take when read into memory: this machine's physical memory
    (``os.sysconf``); larger arrays go through ``fastconv.ooc`` / ``--chunks``."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 2**40


def check_fits_in_memory(nbytes: int, shape, dtype) -> None:
    """``ValueError`` if an array of ``nbytes`` is larger than :func:`memory_limit`."""
    limit = memory_limit()
    if nbytes > limit:
        raise ValueError(
            f"declares shape {tuple(shape)} {np.dtype(dtype)} ({_describe_bytes(nbytes)}), "
            f"more than this machine's memory ({_describe_bytes(limit)})"
        )


# ------------------------------------------------------------------ temporary files


class Terminated(BaseException):
    """Raised by the handler :func:`sigterm_raises` installs when SIGTERM arrives (a
    ``BaseException``, like ``KeyboardInterrupt``, so ``except Exception`` lets it pass)."""


def _raise_terminated(signum, frame):
    raise Terminated(signum)


@contextlib.contextmanager
def sigterm_raises():
    """Within the block, SIGTERM raises :class:`Terminated` (in the main thread, when
    SIGTERM still has its default action; otherwise the caller's handler stays)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def temp_file(dst) -> tuple[int, Path]:
    """``(fd, path)`` of a new empty temporary file in ``dst``'s folder, with a short
    name whatever the length of ``dst``'s."""
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX,
                               dir=Path(dst).resolve().parent)
    return fd, Path(tmp)


@contextlib.contextmanager
def replacing(dst):
    """``with replacing(dst) as tmp:`` write ``tmp`` (an existing empty file); on success
    it is made readable as a new file would be (umask), synced and renamed over ``dst``;
    on any exception (Ctrl-C, :class:`Terminated` included) it is removed and ``dst`` is
    left as it was.

    A SIGTERM at the default action is handled for the block: the file is removed and the
    signal then delivered again, so the process still ends as a ``kill`` expects.
    """
    fd, tmp = temp_file(dst)
    os.close(fd)
    terminated = False
    try:
        with sigterm_raises():
            try:
                yield tmp
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(tmp, 0o666 & ~umask)
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, dst)
            except BaseException as exc:
                tmp.unlink(missing_ok=True)
                terminated = isinstance(exc, Terminated)
                raise
    finally:
        if terminated and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            os.kill(os.getpid(), signal.SIGTERM)  # we only borrowed the signal


__all__ = [
    "NpyHeader",
    "Terminated",
    "check_fits_in_memory",
    "check_output",
    "memory_limit",
    "read_npy_header",
    "read_npy_header_from",
    "replacing",
    "same_file",
    "sigterm_raises",
    "temp_file",
]
