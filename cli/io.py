"""Loading inputs and writing outputs for the command line.

- ``.npy`` is read with ``allow_pickle=False`` (a pickled object array is refused), after
  its header alone has been read and checked (``fastconv._files``): a truncated or
  malformed header, data shorter than the header declares, or an array larger than this
  machine's memory is refused before anything is allocated.
- ``.npz`` is opened as the zip archive it must be: ``--key`` (or its only array) names a
  member, which must be a ``.npy`` (checked like one); a corrupt or non-zip file is refused.
- Images go through Pillow (greyscale -> ``(H, W)``, colour -> ``(3, H, W)``, alpha
  dropped); an image whose header declares more pixels than Pillow's decompression-bomb
  limit (``PIL.Image.MAX_IMAGE_PIXELS``) is refused before it is decoded.
- Outputs are written atomically (``fastconv._files.replacing``): a short-named temporary
  file in the target's folder, then ``os.replace``. A failed, interrupted (SIGINT) or
  terminated (SIGTERM) run leaves no file and keeps an existing output intact; an output
  that is one of the inputs (the same file, by identity) is refused before anything runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
import numpy as np

IMAGE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}
ARRAY_EXTS = (".npy", ".npz")
EXPECTED = "expected .npy, .npz or an image (.png/.jpg/.tif/.bmp)"


class DataError(click.ClickException):
    """A problem with the data (not the command line): ``Error: ...``, exit code 1."""

    exit_code = 1


def _kind(path: str | os.PathLike) -> str:
    ext = Path(path).suffix.lower()
    if ext in ARRAY_EXTS:
        return ext
    if ext in IMAGE_FORMATS:
        return "image"
    return ""


def check_input_path(path: str, param: str) -> None:
    """Usage error (exit 2) for an input whose extension we cannot read."""
    if not _kind(path):
        raise click.BadParameter(f"{path!r}: unknown file type; {EXPECTED}", param_hint=param)


def load_array(path: str, *, key: str | None = None, param: str = "INPUT",
               mmap: bool = False) -> np.ndarray:
    """The array stored in ``path`` (.npy, .npz with ``key``, or an image); with ``mmap``
    a .npy is memory-mapped read-only (shape and dtype known, nothing read yet)."""
    check_input_path(path, param)
    kind = _kind(path)
    if kind == ".npy":
        return _load_npy(path, param, mmap)
    if kind == ".npz":
        return _load_npz(path, key, param)
    return _load_image(path, param)


def _refuse(path: str, param: str, exc: Exception) -> DataError:
    return DataError(f"{param} {path!r}: {exc}")


def _load_npy(path: str, param: str, mmap: bool = False) -> np.ndarray:
    from fastconv import _files

    try:
        header = _files.read_npy_header(path)
        if not mmap:
            _files.check_fits_in_memory(header.nbytes, header.shape, header.dtype)
    except ValueError as exc:
        hint = "; --chunks reads it in blocks" if "memory" in str(exc) else ""
        raise DataError(f"{param} {path!r}: {exc}{hint}") from None
    except OSError as exc:
        raise DataError(f"{param} {path!r}: cannot read it ({exc.strerror or exc})") from None
    try:
        if mmap and header.nbytes == 0:
            mmap = False  # an empty array cannot be mapped; there is nothing to read
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{param} {path!r}: not a readable .npy file ({exc})") from None


#: What reading a damaged zip member can raise besides OSError/ValueError.
def _zip_errors() -> tuple:
    import zipfile
    import zlib

    return (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError,
            NotImplementedError)


def _load_npz(path: str, key: str | None, param: str) -> np.ndarray:
    import zipfile

    from fastconv import _files

    errors = _zip_errors()
    try:
        with open(path, "rb") as fh:
            if fh.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):
                raise DataError(f"{param} {path!r}: not an .npz archive (not a zip file)")
        with zipfile.ZipFile(path) as archive:
            members = {info.filename.removesuffix(".npy"): info
                       for info in archive.infolist() if not info.is_dir()}
            names = list(members)
            if not names:
                raise DataError(f"{param} {path!r}: the .npz archive holds no arrays")
            if key is None:
                if len(names) != 1:
                    raise click.BadParameter(
                        f"{path!r} holds {len(names)} arrays {names}; choose one with --key",
                        param_hint="--key",
                    )
                key = names[0]
            if key not in members:
                raise click.BadParameter(
                    f"{key!r} is not in {path!r}; expected one of {names}", param_hint="--key"
                )
            info = members[key]
            where = f"{param} {path!r}, array {key!r}"
            if not info.filename.endswith(".npy"):
                raise DataError(f"{where}: member {info.filename!r} is not a .npy array")
            with archive.open(info) as fh:
                header = _files.read_npy_header_from(fh)
            if info.file_size - header.offset < header.nbytes:
                raise DataError(
                    f"{where}: is truncated: its header declares shape {header.shape} "
                    f"{header.dtype} ({header.nbytes} bytes) but the member holds "
                    f"{max(info.file_size - header.offset, 0)} bytes of data"
                )
            _files.check_fits_in_memory(header.nbytes, header.shape, header.dtype)
            with archive.open(info) as fh:
                arr = np.lib.format.read_array(fh, allow_pickle=False)
    except (click.ClickException, DataError):
        raise
    except errors as exc:
        raise DataError(f"{param} {path!r}: not a readable .npz archive ("
                        f"{str(exc) or type(exc).__name__})") from None
    return arr


def _load_image(path: str, param: str) -> np.ndarray:
    import struct
    import warnings
    import zlib

    from PIL import Image, UnidentifiedImageError

    bomb = (Image.DecompressionBombError, Image.DecompressionBombWarning)
    try:
        with warnings.catch_warnings():
            # the size check on the header happens in Image.open, before any decoding
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                mode = img.mode
                if mode in ("1", "LA") or (mode == "P" and _palette_is_grey(img)):
                    img = img.convert("L")
                elif mode not in ("L", "I", "I;16", "F", "RGB"):
                    img = img.convert("RGB")
                arr = np.asarray(img)
    except bomb as exc:
        raise DataError(
            f"{param} {path!r}: refused as a possible decompression bomb: {exc} (Pillow's "
            f"limit PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}); convert it to .npy "
            "and use --chunks"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error,
            zlib.error, MemoryError) as exc:
        raise DataError(f"{param} {path!r}: not a readable image ({exc})") from None
    if arr.ndim == 3:
        arr = np.ascontiguousarray(arr.transpose(2, 0, 1))
    return arr


def _palette_is_grey(img) -> bool:
    rgb = img.convert("RGB")
    a = np.asarray(rgb)
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())


# -------------------------------------------------------------------------- outputs


def check_output(out: str, inputs: dict, param: str = "-o") -> None:
    """Usage errors for an output path, raised before any work: unknown extension,
    missing folder, a folder, or the same file as one of ``inputs`` (``{name: path}``,
    by identity: hard links, symlinks and ``./x`` are caught)."""
    from fastconv import _files

    if os.path.isdir(out):
        raise click.BadParameter(
            f"{out!r} is a folder; expected a file path (end it with '/' to write "
            "<INPUT stem>.<ext> into it)", param_hint=param)
    if not _kind(out):
        raise click.BadParameter(f"{out!r}: unknown output type; {EXPECTED}", param_hint=param)
    try:
        _files.check_output(out, inputs)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=param) from None


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Rescale linearly so the minimum maps to 0 and the maximum to 255 (NaN -> 0; a
    constant array -> 0)."""
    a = np.asarray(arr, dtype=np.float64)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, np.uint8)
    lo, hi = float(a[finite].min()), float(a[finite].max())
    scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    scaled = np.where(finite, scaled, 0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def image_planes(arr: np.ndarray, path: str) -> np.ndarray:
    """``arr`` as ``(H, W)`` or ``(H, W, 3)`` for an image file, or a DataError."""
    a = np.asarray(arr)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        return a
    if a.ndim == 3 and a.shape[0] == 3:
        return a.transpose(1, 2, 0)
    raise DataError(
        f"-o {path!r}: a result of shape {tuple(arr.shape)} cannot be saved as an image "
        "(expected (H, W), (1, H, W) or (3, H, W)); use .npy or .npz"
    )


def save_array(path: str, arr: np.ndarray, *, key: str = "result") -> None:
    """Write ``arr`` to ``path`` atomically, in the format its extension names."""
    kind = _kind(path)
    if kind == "image":
        from PIL import Image

        planes = to_uint8(image_planes(arr, path))
        img = Image.fromarray(planes, mode="L" if planes.ndim == 2 else "RGB")

        def write(fh):
            img.save(fh, format=IMAGE_FORMATS[Path(path).suffix.lower()])
    elif kind == ".npz":

        def write(fh):
            np.savez(fh, **{key: arr})
    else:

        def write(fh):
            np.save(fh, arr, allow_pickle=False)

    atomic_write(path, write)


def atomic_write(path: str, write) -> None:
    """Call ``write(fh)`` on a temporary file in ``path``'s folder, then rename it over
    ``path``. On any failure (Ctrl-C and SIGTERM included) the temporary file is removed
    and an existing ``path`` is left as it was."""
    from fastconv import _files

    with _files.replacing(path) as tmp, open(tmp, "wb") as fh:
        write(fh)
