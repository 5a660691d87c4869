"""Loading inputs and writing outputs for the command line.

- ``.npy`` is read with ``allow_pickle=False`` (a pickled object array is refused),
  ``.npz`` by ``--key`` (or its only array), images through Pillow: greyscale -> ``(H, W)``,
  colour -> ``(3, H, W)`` (alpha dropped).
- Outputs are written atomically: a temporary file in the target's folder, then
  ``os.replace``. A failed or interrupted run leaves no file and keeps an existing output
  intact; an output path that is one of the inputs is refused before anything runs.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
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


def _pickle_refusal(path: str, param: str, exc: Exception) -> DataError:
    text = str(exc)
    if "pickle" in text.lower() or "object arrays" in text.lower():
        return DataError(
            f"{param} {path!r}: contains pickled Python objects, which are refused "
            "(read with allow_pickle=False); expected a numeric array"
        )
    return DataError(f"{param} {path!r}: not a readable NumPy file ({text})")


def _load_npy(path: str, param: str, mmap: bool = False) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as exc:
        raise _pickle_refusal(path, param, exc) from None
    if not isinstance(arr, np.ndarray):
        raise DataError(f"{param} {path!r}: expected a .npy array file, found an .npz archive")
    return arr


def _load_npz(path: str, key: str | None, param: str) -> np.ndarray:
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise _pickle_refusal(path, param, exc) from None
    if not hasattr(archive, "files"):
        raise DataError(f"{param} {path!r}: expected an .npz archive, found a single array")
    with archive:
        names = list(archive.files)
        if key is None:
            if len(names) != 1:
                raise click.BadParameter(
                    f"{path!r} holds {len(names)} arrays {names}; choose one with --key",
                    param_hint="--key",
                )
            key = names[0]
        if key not in names:
            raise click.BadParameter(
                f"{key!r} is not in {path!r}; expected one of {names}", param_hint="--key"
            )
        try:
            return archive[key]
        except (ValueError, OSError) as exc:
            raise _pickle_refusal(f"{path}[{key}]", param, exc) from None


def _load_image(path: str, param: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("1", "LA") or (mode == "P" and _palette_is_grey(img)):
                img = img.convert("L")
            elif mode not in ("L", "I", "I;16", "F", "RGB"):
                img = img.convert("RGB")
            arr = np.asarray(img)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{param} {path!r}: not a readable image ({exc})") from None
    if arr.ndim == 3:
        arr = np.ascontiguousarray(arr.transpose(2, 0, 1))
    return arr


def _palette_is_grey(img) -> bool:
    rgb = img.convert("RGB")
    a = np.asarray(rgb)
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())


# -------------------------------------------------------------------------- outputs


def check_output(out: str, inputs: list[str], param: str = "-o") -> None:
    """Usage errors for an output path, raised before any work: unknown extension,
    missing folder, or a path that is one of the inputs."""
    if not _kind(out):
        raise click.BadParameter(f"{out!r}: unknown output type; {EXPECTED}", param_hint=param)
    folder = Path(out).resolve().parent
    if not folder.is_dir():
        raise click.BadParameter(f"{out!r}: folder {str(folder)!r} does not exist",
                                 param_hint=param)
    if Path(out).is_dir():
        raise click.BadParameter(f"{out!r} is a folder; expected a file path", param_hint=param)
    for src in inputs:
        if src and _same_file(out, src):
            raise click.BadParameter(
                f"{out!r} is also an input ({src!r}); choose another output path "
                "(inputs are never overwritten)",
                param_hint=param,
            )


def _same_file(a: str, b: str) -> bool:
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


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
    ``path``. On any failure, KeyboardInterrupt included, the temporary file is removed
    and an existing ``path`` is left as it was."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part",
                               dir=target.resolve().parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
