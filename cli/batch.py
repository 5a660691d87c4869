"""Many files in one command: ``fastconv convolve a.png b.png ... -o OUTDIR/`` (and ``pool``).

One process pays Numba's import and kernel load once, then runs every file (the shell
expands globs). The rules:

- Folder mode is on when there are several INPUTs or ``-o`` ends with ``/``. ``-o`` must
  then be an existing folder or end with ``/`` (a missing folder is created, its parent
  must exist); each output is ``OUTDIR/<input stem>.<ext>``, with the input's extension
  unless ``--format`` names another.
- Refused before anything is read or written (usage errors, exit 2): an INPUT of unknown
  type or given twice, two INPUTs that map to one output name, an output that is one of
  the files the command reads (by identity: hard links and symlinks are caught), an output
  that is a folder, and an existing output without ``--overwrite``.
- Each output is written atomically (``fastconv._files.replacing``). A file that fails
  (unreadable, refused by the library, not savable in the chosen format) is reported on
  stderr by name and the others still run; the command then ends with one ``Error:`` line
  and exit code 1.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

#: ``--format`` values: the output extensions ``fastconv_cli.io`` writes.
FORMATS = ("npy", "npz", "png", "jpg", "jpeg", "tif", "tiff", "bmp")
#: at most this many names in one message; the rest are counted.
LISTED = 5


@dataclass(frozen=True)
class Job:
    """One INPUT and the output path it is written to."""

    input: str
    output: str


def folder_mode(inputs: tuple, output: str | None, fmt: str | None) -> bool:
    """Whether the command runs in folder mode; usage errors for ``--format`` without a
    folder and for several INPUTs without ``-o``."""
    folder = len(inputs) > 1 or (output is not None and _ends_with_sep(output))
    if folder and output is None:
        raise click.UsageError(
            f"{len(inputs)} INPUTs need -o OUTDIR/ (a folder: each result is written to "
            "OUTDIR/<input stem>.<ext>)"
        )
    if fmt is not None and not folder:
        raise click.BadParameter(
            "goes with -o OUTDIR/ (folder mode); a single -o FILE takes the format of its "
            "extension", param_hint="--format")
    return folder


def _ends_with_sep(path: str) -> bool:
    return path.endswith("/") or (os.altsep is not None and path.endswith(os.altsep)) \
        or path.endswith(os.sep)


def _listed(names: list) -> str:
    shown = ", ".join(repr(n) for n in names[:LISTED])
    return shown + (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")


def plan(inputs: tuple, output: str, fmt: str | None, overwrite: bool,
         others: dict | None = None) -> list[Job]:
    """The jobs of a folder-mode run, or a usage error: every check of the module
    docstring, before anything is read or written. ``others`` maps a name for messages
    (``"--kernel"``) to another file the command reads (``None`` is skipped)."""
    from fastconv_cli import io

    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise click.BadParameter(f"{output!r} is a file; expected a folder (OUTDIR/)",
                                 param_hint="-o")
    if not folder.exists() and not _ends_with_sep(output):
        raise click.BadParameter(
            f"{output!r} is not a folder; with {len(inputs)} INPUTs -o must be an existing "
            "folder or end with '/' (then it is created)", param_hint="-o")
    if not folder.exists() and not folder.resolve().parent.is_dir():
        raise click.BadParameter(
            f"{output!r}: folder {str(folder.resolve().parent)!r} does not exist (only the "
            "last folder of -o OUTDIR/ is created)", param_hint="-o")
    read = {}  # identity (device, inode) or resolved path -> (name, path) of a file read
    for path in inputs:
        io.check_input_path(path, "INPUT")
        key = _identity(path)
        if key in read:
            raise click.BadParameter(
                f"{path!r} is given twice (as {read[key][1]!r}); each INPUT once",
                param_hint="INPUT")
        read[key] = ("INPUT", path)
    for name, path in (others or {}).items():
        if path is not None:
            read.setdefault(_identity(path), (name, path))
    jobs, seen, existing = [], {}, []
    for path in inputs:
        out = str(folder / (Path(path).stem + ("." + fmt if fmt else Path(path).suffix)))
        key = os.path.normcase(os.path.abspath(out))
        if key in seen:
            raise click.BadParameter(
                f"INPUTs {seen[key]!r} and {path!r} would both be written to {out!r}; "
                "rename one, or run them into separate folders", param_hint="-o")
        seen[key] = path
        if os.path.lexists(out):
            ident = _identity(out)
            if ident in read:
                name, src = read[ident]
                raise click.BadParameter(
                    f"the output {out!r} of INPUT {path!r} is the {name} {src!r} (the same "
                    "file); choose another folder (inputs are never overwritten)",
                    param_hint="-o")
            if os.path.isdir(out):
                raise click.BadParameter(
                    f"the output {out!r} of INPUT {path!r} is a folder", param_hint="-o")
            existing.append(out)
        jobs.append(Job(path, out))
    if existing and not overwrite:
        raise click.BadParameter(
            f"{len(existing)} output(s) exist already: {_listed(existing)}; add --overwrite "
            "to replace them", param_hint="-o")
    return jobs


def _identity(path: str):
    """(device, inode) of an existing file (so links and ``./x`` spellings compare
    equal), else its resolved path."""
    try:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)
    except OSError:
        return os.path.realpath(path)


@contextlib.contextmanager
def progress_bar(total: int, verb: str):
    """``(echo, advance)``: one Rich progress bar over the files, on a terminal only;
    ``echo`` prints a line above it (or plainly when there is no bar)."""
    if not sys.stdout.isatty():
        yield (lambda line, err=False: click.echo(line, err=err)), (lambda: None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn(verb), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(verb, total=total)

        def echo(line: str, err: bool = False) -> None:
            bar.console.print(line, markup=False, highlight=False, soft_wrap=True)

        yield echo, (lambda: bar.advance(task))


def run(jobs: list[Job], compute: Callable[[str], object], verb: str, output: str) -> None:
    """Compute each job's result (``compute(input_path)``, a ClickException for a file
    that fails) and write it atomically; report failures by name, keep going, and end
    with one ``Error:`` line (exit 1) if any failed."""
    import numpy as np

    from fastconv_cli import io
    from fastconv_cli.main import write_errors

    folder = Path(output)
    if not folder.is_dir():
        try:
            folder.mkdir()
        except OSError as exc:
            raise io.DataError(
                f"-o {output!r}: could not create the folder ({exc.strerror or exc})"
            ) from None
    failed = []
    with progress_bar(len(jobs), verb) as (echo, advance):
        for job in jobs:
            try:
                y = np.asarray(compute(job.input))
                with write_errors(job.output):
                    io.save_array(job.output, y)
            except click.ClickException as exc:
                failed.append(job.input)
                echo(f"failed {job.input!r}: {exc.format_message()}", err=True)
            else:
                shape = "x".join(str(s) for s in y.shape)
                echo(f"wrote {job.output} ({y.dtype}, {shape})")
            advance()
    if failed:
        raise io.DataError(
            f"{len(failed)} of {len(jobs)} files failed: {_listed(failed)} (the others were "
            "written)")
