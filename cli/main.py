"""``fastconv``: convolution, pooling, shape arithmetic and kernel learning from the shell.

Commands: convolve, pool, shape, learn-kernel, kernels, info, warmup, demo. NumPy, Numba and Rich
are imported inside the commands that need them, so ``fastconv --help`` and
``fastconv shape`` never import Numba.

Errors are one ``Error:`` line: exit code 2 for usage errors (Click's usage line comes
first), 1 for data errors (the library's ValueError/TypeError, unreadable files), 130 for
an interruption by SIGINT (Ctrl-C) and 143 for SIGTERM (128 + the signal number, the
shell's convention); an interrupted run leaves no partial file.
"""

from __future__ import annotations

import contextlib
import os
import sys

import click

from fastconv_cli.batch import FORMATS
from fastconv_cli.params import (
    FLOATS,
    INTS,
    KERNEL,
    LAYER,
    MAX_INT,
    MAX_LAYERS,
    PADDING,
    SIZE,
    IntTupleType,
    KernelSpec,
)

CONTEXT = dict(help_option_names=["-h", "--help"], max_content_width=100)
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
#: results with at most this many elements are printed in full when there is no -o.
PRINT_LIMIT = 256
#: learn-kernel shows a progress bar (on a terminal) from this many epochs.
PROGRESS_EPOCHS = 100


class Interrupted(click.ClickException):
    """SIGINT or SIGTERM stopped the command: one ``Error:`` line, exit 128 + signal."""

    def __init__(self, name: str, signum: int):
        super().__init__(f"interrupted by {name}; stopped, and no partial file was left")
        self.exit_code = 128 + signum


class Group(click.Group):
    """The command group; while a command runs, SIGTERM raises
    ``fastconv._files.Terminated`` so cleanup runs as for Ctrl-C, and both end in
    one ``Error:`` line with exit code 130 (SIGINT) or 143 (SIGTERM)."""

    def invoke(self, ctx):
        import signal

        from fastconv._files import Terminated, _raise_terminated

        previous = None
        with contextlib.suppress(ValueError):  # not the main thread: leave SIGTERM alone
            previous = signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted("SIGINT (Ctrl-C)", signal.SIGINT) from None
        except Terminated:
            raise Interrupted("SIGTERM", signal.SIGTERM) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


@click.group(cls=Group, context_settings=CONTEXT)
@click.version_option(package_name="fastconv", prog_name="fastconv")
def cli() -> None:
    """Fast convolution and pooling for NumPy arrays and images (CPU via Numba, NVIDIA GPU
    via numba.cuda).

    \b
    Examples:
      fastconv convolve photo.png -k sobel-x -o edges.png
      fastconv convolve x.npy -k "[[1,-1]]"
      fastconv pool x.npy --size 2 --mode max -o y.npy
      fastconv shape --input 8x8 --kernel 3 --padding 1 --stride 2
      fastconv shape --input 240x240 --layer 10*conv:k=5
      fastconv learn-kernel --input x.npy --target y.npy --kernel-size 1x2
    """


def main(argv=None) -> None:
    """Console-script entry point.

    Run as the process's own command (``argv`` None: the ``fastconv`` script, ``python -m
    fastconv``), the process ends right after the command, its output flushed, without
    the interpreter's teardown: with Numba loaded that teardown (freeing every module's
    objects, joining idle thread pools) took a warm ``fastconv convolve`` of a 2048x2048
    ``.npy`` from 1.17 to 1.39 s (0.1 s of CPU; loaded 2-core machine). Every file is
    complete and in place before the command returns (atomic writes), so there is nothing
    left for the teardown to do. Called with ``argv``, it raises ``SystemExit`` as Click
    does.
    """
    if argv is not None:
        cli.main(args=argv, prog_name="fastconv")
        return
    try:
        cli.main(prog_name="fastconv")
        code = 0
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): printed, status 1
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code)


# ---------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def library_errors(where: str):
    """Report the library's ValueError/TypeError/RuntimeError as a data error (exit 1)."""
    from fastconv_cli.io import DataError as IODataError

    try:
        yield
    except click.ClickException:
        raise
    except (ValueError, TypeError, RuntimeError, MemoryError, OverflowError) as exc:
        raise IODataError(f"{where}: {exc}") from None


def _io():
    from fastconv_cli import io

    return io


def as_spatial_stack(x, path: str, param: str = "INPUT"):
    """(array as (C, H, W) or (N, C, H, W), was_2d). A 2-D input is one channel."""
    if x.ndim == 2:
        return x[None], True
    if x.ndim in (3, 4):
        return x, False
    raise _io().DataError(
        f"{param} {path!r}: expected a 2-D (H, W), 3-D (C, H, W) or 4-D (N, C, H, W) array, "
        f"got shape {tuple(x.shape)}"
    )


def load_kernel(spec: KernelSpec):
    """The kernel a ``--kernel`` spec names, as a NumPy array."""
    import numpy as np

    if spec.kind == "file":
        io = _io()
        if not _exists(spec.text):
            raise click.BadParameter(f"{spec.text!r}: file does not exist",
                                     param_hint="'-k' / '--kernel'")
        return io.load_array(spec.text, param="--kernel")
    if spec.kind == "literal":
        try:
            return np.array(spec.values, dtype=np.float64)
        except ValueError:
            raise click.BadParameter(
                f"{spec.text!r}: rows have different lengths; expected a rectangular array",
                param_hint="'-k' / '--kernel'",
            ) from None
    return named_kernel(spec.name, spec.args, spec.text)


def named_kernel(name: str, args: tuple, text: str):
    """A named kernel through ``fastconv.kernels.get`` (``sobel-x``, ``gaussian:5:1.0``)."""
    from fastconv import kernels

    try:
        return kernels.get(text)
    except (TypeError, ValueError) as exc:
        message = str(exc).removeprefix("get: ")
        raise click.BadParameter(
            f"{message} (a kernel is a .npy file, a literal like [[1,-1]], or a name from "
            "'fastconv kernels')",
            param_hint="'-k' / '--kernel'",
        ) from None


def _exists(path: str) -> bool:
    import os

    return os.path.isfile(path)


def _finite(value, param):
    """A float option's value, or a usage error for NaN/inf (FloatRange lets NaN pass)."""
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value!r}: expected a finite number", param=param)
    return value


def kernel_dtype(x):
    """Kernels are cast to the input's precision: float64 input -> float64, else float32."""
    import numpy as np

    return np.float64 if x.dtype == np.float64 else np.float32


def fmt_array(a) -> str:
    import numpy as np

    return np.array2string(np.asarray(a), precision=4, suppress_small=True,
                           max_line_width=100)


def report(result, output: str | None, key: str = "result") -> None:
    """Save to ``output`` (atomically) or print: small arrays in full, large ones summarised."""
    import numpy as np

    if output:
        with write_errors(output):
            _io().save_array(output, result, key=key)
        shape = "x".join(str(s) for s in result.shape)
        click.echo(f"wrote {output} ({result.dtype}, {shape})")
        return
    if result.size <= PRINT_LIMIT:
        click.echo(fmt_array(result))
        return
    r = np.asarray(result)
    with np.errstate(all="ignore"):
        click.echo(
            f"{r.dtype} array, shape {tuple(r.shape)}: min {np.nanmin(r):.6g}, "
            f"max {np.nanmax(r):.6g}, mean {np.nanmean(r, dtype=np.float64):.6g} "
            "(use -o FILE to save it)"
        )


def check_paths(output: str | None, inputs: dict, param: str = "-o") -> None:
    """Usage errors before any work: an input of unknown type, or an ``output`` that is
    a folder, in a missing folder, or the same file as one of ``inputs``
    (``{name: path}``, by identity)."""
    for name, path in inputs.items():
        if path is not None and name != "--kernel":
            _io().check_input_path(path, name)
    if output:
        _io().check_output(output, inputs, param=param)


def kernel_file(spec: KernelSpec) -> str | None:
    return spec.text if spec.kind == "file" else None


def conv_weight(w, C: int, groups, flip: bool, bias, text: str):
    """(weight, groups, bias) for ``fastconv.conv2d`` from a CLI kernel (the kernel rule
    in ``convolve``'s help)."""
    import numpy as np

    if w.ndim == 2:
        if groups not in (None, C):
            raise click.BadParameter(
                f"a 2-D kernel is applied to each of the {C} channels (groups={C}); "
                f"got --groups {groups}. Give a 4-D (K, C/groups, kH, kW) kernel instead",
                param_hint="--groups",
            )
        weight, g = np.broadcast_to(w, (C, 1) + w.shape), C
    elif w.ndim in (3, 4):
        weight, g = (w[None] if w.ndim == 3 else w), groups or 1
    else:
        raise _io().DataError(
            f"--kernel {text!r}: expected a 2-D, 3-D or 4-D kernel, got shape {tuple(w.shape)}"
        )
    if flip:
        weight = weight[..., ::-1, ::-1]
    if bias is None:
        return weight, g, None
    K = weight.shape[0]
    if len(bias) not in (1, K):
        raise _io().DataError(
            f"--bias: expected 1 or K={K} values (one per output channel), got {len(bias)}"
        )
    return weight, g, np.asarray(bias * (K if len(bias) == 1 else 1), dtype=weight.dtype)


def check_out_of_core(input: str, output: str | None, device) -> None:
    """Usage errors for ``--chunks``: .npy in, .npy out, on the CPU."""
    if not input.endswith(".npy"):
        raise click.BadParameter(f"{input!r}: out of core needs a .npy INPUT",
                                 param_hint="--chunks")
    if not output or not output.endswith(".npy"):
        raise click.BadParameter("out of core needs a .npy output (-o OUT.npy)",
                                 param_hint="--chunks")
    if device == "cuda":
        raise click.BadParameter("out of core runs on the CPU; drop --device cuda",
                                 param_hint="--chunks")
    import importlib.util

    if importlib.util.find_spec("dask") is None:
        raise click.BadParameter("out of core needs Dask: pip install 'fastconv[dask]'",
                                 param_hint="--chunks")


@contextlib.contextmanager
def write_errors(output: str, param: str = "-o"):
    """An OSError while writing ``output`` (disk full, file too large, permissions) as a
    data error (exit 1); the writer has already removed its temporary file."""
    try:
        yield
    except OSError as exc:
        raise _io().DataError(
            f"{param} {output!r}: could not write ({exc.strerror or exc})"
        ) from None


@contextlib.contextmanager
def out_of_core_progress(output: str):
    """A Rich progress bar over output blocks (shown on a terminal only)."""
    import sys

    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(f"writing {output}", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield progress


class Inputs(click.Argument):
    """``INPUT...`` in the usage line; ``'INPUT'`` in its error messages, as for one file."""

    def get_error_hint(self, ctx) -> str:
        return "'INPUT'"


FORMAT_OPTION = click.option(
    "--format", "fmt", type=click.Choice(FORMATS),
    default=None, help="With -o OUTDIR/: write every output in this format [default: each "
                       "INPUT's own].")
OVERWRITE_OPTION = click.option(
    "--overwrite", is_flag=True,
    help="With -o OUTDIR/: replace outputs that exist already (refused without it).")


def check_many(chunks) -> None:
    """Usage error for an option that takes one INPUT only."""
    if chunks is not None:
        raise click.BadParameter("out of core runs one INPUT at a time (-o OUT.npy); give "
                                 "one INPUT", param_hint="--chunks")


# ---------------------------------------------------------------------------- convolve


@cli.command(short_help="Convolve arrays or images with a kernel.")
@click.argument("inputs", cls=Inputs, nargs=-1, required=True, metavar="INPUT...",
                type=click.Path(exists=True, dir_okay=False))
@click.option("-k", "--kernel", type=KERNEL, required=True,
              help="Kernel: a .npy file, a named kernel (sobel-x, gaussian:5:1.0; see "
                   "'fastconv kernels') or a literal like \"[[1,-1]]\".")
@click.option("-o", "--output", type=click.Path(),
              help="Output file: .npy, .npz, or an image (.png/.jpg/.tif, rescaled to "
                   "0-255); with several INPUTs a folder, OUTDIR/. Without it small results "
                   "are printed, large ones summarised.")
@click.option("--bias", type=FLOATS, help="Added to every output channel, or one per channel.")
@click.option("--stride", type=INTS, default="1", show_default=True, help="N or N,N.")
@click.option("--padding", type=PADDING, default="0", show_default=True,
              help="N, N,N, before:after pairs (0:1,1:1), same, valid or full.")
@click.option("--dilation", type=INTS, default="1", show_default=True, help="N or N,N.")
@click.option("--groups", type=click.IntRange(min=1, max=MAX_INT), default=None,
              help="Channel groups (default 1; a 2-D kernel always runs depthwise).")
@click.option("--padding-mode", type=click.Choice(PADDING_MODES), default="zeros",
              show_default=True)
@click.option("--flip", is_flag=True, help="True convolution (kernel flipped), not correlation.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="Where to run (default: cpu, or $FASTCONV_DEVICE).")
@click.option("--key", default=None, help="Array name inside an .npz INPUT.")
@click.option("--chunks", type=click.IntRange(min=1, max=MAX_INT), default=None,
              help="Out of core: a .npy INPUT larger than memory is read and computed in "
                   "blocks of this edge (e.g. 4096) and written to a .npy -o (needs the "
                   "dask extra).")
@FORMAT_OPTION
@OVERWRITE_OPTION
def convolve(inputs, kernel, output, bias, stride, padding, dilation, groups, padding_mode,
             flip, device, key, chunks, fmt, overwrite):
    """Cross-correlate INPUT with a kernel (with --flip: true convolution).

    INPUT is .npy, .npz (--key) or an image (.png/.jpg/.tif; greyscale -> (H, W), colour
    -> (3, H, W)). A 2-D array is one image, 3-D is (C, H, W), 4-D is (N, C, H, W).

    \b
    Kernel rule:
      2-D kernel (kH, kW)        applied to every channel on its own (depthwise,
                                 groups=C): the output has the input's channels
      3-D kernel (C, kH, kW)     one output channel summed over the input channels
      4-D kernel (K, C/g, kH, kW) used as the weight of fastconv.conv2d

    A 2-D input gives a 2-D output when there is one output channel.

    \b
    Many files in one run (one process, one progress bar):
      fastconv convolve a.png b.png -k sobel-x -o edges/   # edges/a.png, edges/b.png
    """
    import numpy as np

    from fastconv_cli import batch

    def compute(path, x=None):
        if x is None:
            x = _io().load_array(path, key=key)
        with library_errors(f"convolve {path!r} with --kernel {kernel.text!r}"):
            x3, was_2d = as_spatial_stack(x, path)
            weight, g, b = conv_weight(np.asarray(w, dtype=kernel_dtype(x)), x3.shape[-3],
                                       groups, flip, bias, kernel.text)
            import fastconv as fc

            y = fc.conv2d(x3, weight, b, stride=stride, padding=padding, dilation=dilation,
                          groups=g, padding_mode=padding_mode, device=device)
            return y[0] if was_2d and y.shape[0] == 1 else y

    if batch.folder_mode(inputs, output, fmt):
        check_many(chunks)
        jobs = batch.plan(inputs, output, fmt, overwrite, {"--kernel": kernel_file(kernel)})
        w = load_kernel(kernel)
        batch.run(jobs, compute, "convolving", output)
        return
    input, = inputs
    check_paths(output, {"INPUT": input, "--kernel": kernel_file(kernel)})
    if chunks is not None:
        check_out_of_core(input, output, device)
    x = _io().load_array(input, key=key, mmap=chunks is not None)
    w = load_kernel(kernel)
    if chunks is None:
        report(np.asarray(compute(input, x)), output)
        return
    with library_errors(f"convolve {input!r} with --kernel {kernel.text!r}"):
        x3, _ = as_spatial_stack(x, input)
        weight, g, b = conv_weight(np.asarray(w, dtype=kernel_dtype(x)), x3.shape[-3], groups,
                                   flip, bias, kernel.text)
        from fastconv import ooc

        with out_of_core_progress(output) as progress, write_errors(output):
            ooc.convolve_file(input, output, weight, b, stride=stride, padding=padding,
                              dilation=dilation, groups=g, padding_mode=padding_mode,
                              chunks=chunks, progress=progress)
        click.echo(f"wrote {output} (out of core, blocks of {chunks})")


# -------------------------------------------------------------------------------- pool


@cli.command(short_help="Max or average pooling of arrays or images.")
@click.argument("inputs", cls=Inputs, nargs=-1, required=True, metavar="INPUT...",
                type=click.Path(exists=True, dir_okay=False))
@click.option("--size", type=INTS, default=None, help="Window: N or N,N.")
@click.option("--stride", type=INTS, default=None, help="N or N,N (default: the window size).")
@click.option("--padding", type=IntTupleType(minimum=0), default="0", show_default=True,
              help="N or N,N (at most half the window).")
@click.option("--mode", type=click.Choice(["max", "avg"]), default="max", show_default=True)
@click.option("--ceil-mode", is_flag=True, help="Round the output size up (PyTorch rule).")
@click.option("-o", "--output", type=click.Path(),
              help="Output file (.npy, .npz or an image); with several INPUTs a folder, "
                   "OUTDIR/.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
@click.option("--key", default=None, help="Array name inside an .npz INPUT.")
@click.option("--chunks", type=click.IntRange(min=1, max=MAX_INT), default=None,
              help="Out of core: compute a .npy INPUT in blocks of this edge into a .npy -o "
                   "(needs the dask extra).")
@click.option("--adaptive", type=SIZE, default=None,
              help="Adaptive pooling to this output size (HxW, or N for both axes) instead "
                   "of a --size window.")
@FORMAT_OPTION
@OVERWRITE_OPTION
def pool(inputs, size, stride, padding, mode, ceil_mode, output, device, key, chunks, adaptive,
         fmt, overwrite):
    """Max or average pooling of INPUT, each channel on its own.

    A 2-D array is one image, 3-D is (C, H, W), 4-D is (N, C, H, W). With --adaptive HxW
    the windows adapt to give that output size (PyTorch's adaptive_max/avg_pool2d;
    --adaptive 1 is global pooling).

    \b
    Many files in one run (one process, one progress bar):
      fastconv pool a.npy b.npy --size 2 -o pooled/   # pooled/a.npy, pooled/b.npy
    """
    import numpy as np

    from fastconv_cli import batch

    check_adaptive(size, adaptive, stride, padding, ceil_mode, chunks)

    def compute(path, x=None):
        if x is None:
            x = _io().load_array(path, key=key)
        with library_errors(f"pool {path!r}"):
            x3, was_2d = as_spatial_stack(x, path)
            import fastconv as fc

            if adaptive is not None:
                func = fc.adaptive_max_pool2d if mode == "max" else fc.adaptive_avg_pool2d
                y = func(x3, adaptive if len(adaptive) > 1 else adaptive[0], device=device)
            else:
                func = fc.max_pool2d if mode == "max" else fc.avg_pool2d
                y = func(x3, size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                         device=device)
            return y[0] if was_2d else y

    if batch.folder_mode(inputs, output, fmt):
        check_many(chunks)
        jobs = batch.plan(inputs, output, fmt, overwrite)
        batch.run(jobs, compute, "pooling", output)
        return
    input, = inputs
    check_paths(output, {"INPUT": input})
    if chunks is not None:
        check_out_of_core(input, output, device)
    x = _io().load_array(input, key=key, mmap=chunks is not None)
    if chunks is None:
        report(np.asarray(compute(input, x)), output)
        return
    with library_errors(f"pool {input!r}"):
        as_spatial_stack(x, input)
        from fastconv import ooc

        with out_of_core_progress(output) as progress, write_errors(output):
            ooc.pool_file(input, output, size, stride, padding, mode=mode,
                          ceil_mode=ceil_mode, chunks=chunks, progress=progress)
        click.echo(f"wrote {output} (out of core, blocks of {chunks})")


def check_adaptive(size, adaptive, stride, padding, ceil_mode, chunks) -> None:
    """``pool`` takes exactly one of --size and --adaptive; the window options go with
    --size only."""
    if (size is None) == (adaptive is None):
        raise click.UsageError("give either --size (a window) or --adaptive (an output "
                               "size), not both" if size is not None else
                               "Missing option '--size' (a window) or '--adaptive' (an "
                               "output size).")
    if adaptive is None:
        return
    if len(adaptive) > 2:
        raise click.BadParameter(f"{'x'.join(map(str, adaptive))!r}: expected HxW or N",
                                 param_hint="--adaptive")
    given = [name for name, on in (("--stride", stride is not None),
                                   ("--padding", padding not in (0, "0")),
                                   ("--ceil-mode", ceil_mode), ("--chunks", chunks is not None))
             if on]
    if given:
        raise click.UsageError(f"{', '.join(given)} cannot be used with --adaptive")


# ------------------------------------------------------------------------------- shape


def _fmt_size(size) -> str:
    return "x".join(str(s) for s in size)


@cli.command(short_help="Output size of a layer or a stack of layers (no Numba).")
@click.option("--input", "input_size", type=SIZE, required=True, help="Input size, e.g. 8x8.")
@click.option("--kernel", type=INTS, default=None, help="Kernel size N or N,N (one layer).")
@click.option("--padding", type=PADDING, default="0", show_default=True,
              help="N, N,N, pairs 0:1,1:1, same, valid or full.")
@click.option("--stride", type=INTS, default="1", show_default=True)
@click.option("--dilation", type=INTS, default="1", show_default=True)
@click.option("--ceil-mode", is_flag=True, help="Pooling's ceil rule.")
@click.option("--repeat", type=click.IntRange(min=1, max=MAX_LAYERS), default=1,
              show_default=True, help=f"Apply the one layer this many times (at most "
                                      f"{MAX_LAYERS}).")
@click.option("--layer", "layers", type=LAYER, multiple=True,
              help="A layer of a stack, repeatable: conv:k=5,s=1,p=2,d=1, "
                   "pool:k=2[,s=2,p=0,ceil=1] or adaptive:7x7 (adaptive pooling to 7x7); "
                   "N*conv:k=5 repeats it N times.")
def shape(input_size, kernel, padding, stride, dilation, ceil_mode, repeat, layers):
    """Output size of a layer (prints e.g. 4x4), or a table for a --layer stack.

    \b
    fastconv shape --input 8x8 --kernel 3 --padding 1 --stride 2      -> 4x4
    fastconv shape --input 240x240 --kernel 5 --repeat 10             -> 200x200
    fastconv shape --input 32x32 --layer conv:k=5,p=2 --layer pool:k=2
    """
    from fastconv import _shapes

    if layers and kernel is not None:
        raise click.UsageError("give either --kernel (one layer) or --layer (a stack), not both")
    if not layers and kernel is None:
        raise click.UsageError("missing --kernel (one layer) or --layer (a stack)")
    if layers and repeat != 1:
        raise click.UsageError("--repeat applies to --kernel; in a stack write N*conv:k=5")
    total = sum(spec.repeat for spec in layers)
    if total > MAX_LAYERS:
        raise click.BadParameter(f"the stack has {total} layers; at most {MAX_LAYERS} are "
                                 "computed", param_hint="--layer")
    if kernel is not None:
        size = input_size
        with library_errors("shape"):
            for _ in range(repeat):
                size = _shapes.output_shape(size, kernel, stride, padding, dilation, ceil_mode)
        click.echo(_fmt_size(size))
        return
    rows = stack_rows(input_size, layers)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"input {_fmt_size(input_size)}")
    for col in ("#", "layer", "output", "receptive field", "jump"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for row in rows:
        table.add_row(*row)
    Console(highlight=False).print(table)
    click.echo(f"{_fmt_size(input_size)} -> {rows[-1][2]}")


def stack_rows(input_size: tuple, layers) -> list[tuple[str, ...]]:
    """One table row per layer (repeats expanded): #, layer, output, receptive field, jump."""
    from fastconv import _shapes
    from fastconv._validate import ntuple

    n = len(input_size)
    size = input_size
    rf = [(1, 1)] * n  # (size, jump) per axis
    rows = []
    index = 0
    for spec in layers:
        for _ in range(spec.repeat):
            index += 1
            where = f"--layer {spec.text!r} (layer {index})"
            if spec.kind == "adaptive":
                size, rf = adaptive_row(size, rf, spec, where)
                rows.append((str(index), spec.text.split("*", 1)[-1], _fmt_size(size),
                             _fmt_size(r for r, _ in rf), _fmt_size(j for _, j in rf)))
                continue
            with library_errors(where):
                k = ntuple(spec.kernel, n, "k", where)
                s = ntuple(spec.stride, n, "s", where)
                d = ntuple(spec.dilation, n, "d", where)
                if spec.kind == "pool" and not isinstance(spec.padding, str):
                    pads = ntuple(spec.padding, n, "p", where)
                    for p, kk, dd in zip(pads, k, d, strict=True):
                        limit = _shapes.pool_pad_limit(kk, dd, "max")
                        if p > limit:  # the library's (and PyTorch's) rule, one owner
                            raise ValueError(
                                f"pool padding p={p} must be at most half the window, "
                                f"k // 2 = {limit} (k={kk}, d={dd})"
                            )
                size = _shapes.output_shape(size, k, s, spec.padding, d, spec.ceil_mode)
                rf = [_shapes.receptive_step(r, j, kk, ss, dd)
                      for (r, j), kk, ss, dd in zip(rf, k, s, d, strict=True)]
            label = spec.text.split("*", 1)[-1]
            rows.append((
                str(index), label, _fmt_size(size), _fmt_size(r for r, _ in rf),
                _fmt_size(j for _, j in rf),
            ))
    return rows


def adaptive_row(size: tuple, rf: list, spec, where: str):
    """(output size, receptive field) after an adaptive pooling layer. Its windows and
    steps vary when the output size does not divide the input: the receptive field
    uses the largest window and step (an upper bound; exact when it divides)."""
    from fastconv import _shapes

    with library_errors(where):
        out = _shapes.adaptive_output_size(size, spec.output_size if len(spec.output_size) > 1
                                           else spec.output_size[0], "adaptive")
    new_rf = []
    for (r, j), n, o in zip(rf, size, out, strict=True):
        starts, ends = _shapes.adaptive_windows(n, o)
        k = max(e - s for s, e in zip(starts, ends, strict=True))
        s = max((b - a for a, b in zip(starts, starts[1:], strict=False)), default=k)
        new_rf.append(_shapes.receptive_step(r, j, k, s, 1))
    return out, new_rf


# ------------------------------------------------------------------------ learn-kernel


@cli.command("learn-kernel", short_help="Learn a kernel from an input and a target.")
@click.option("--input", "input_path", type=click.Path(exists=True, dir_okay=False),
              required=True, help="Input X (.npy/.npz/image).")
@click.option("--target", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Target Y = conv(X, kernel) to fit.")
@click.option("--kernel-size", type=SIZE, required=True, help="Kernel size, e.g. 1x2.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=3e-2,
              callback=lambda ctx, param, v: _finite(v, param),
              show_default=True, help="Learning rate.")
@click.option("--epochs", type=click.IntRange(min=1, max=MAX_INT), default=10,
              show_default=True)
@click.option("--bias/--no-bias", default=False, show_default=True, help="Also fit a bias.")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default="sgd",
              show_default=True)
@click.option("--seed", type=int, default=None, help="Seed of the initial kernel.")
@click.option("--every", type=click.IntRange(min=1, max=MAX_INT), default=2, show_default=True,
              help="Print the loss every this many epochs.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Save the learned kernel (.npy or .npz).")
@click.option("--plot", type=click.Path(dir_okay=False),
              help="Draw the loss curve to an image (.png).")
def learn_kernel(input_path, target, kernel_size, lr, epochs, bias, optimizer, seed, every,
                 output, plot):
    """Fit a kernel so that conv(INPUT, kernel) matches TARGET (the seeds' loop: squared
    error, gradient descent, loss printed every 2 epochs).

    \b
    fastconv learn-kernel --input x.npy --target y.npy --kernel-size 1x2
    """
    import math

    import numpy as np

    from fastconv._files import same_file

    io = _io()
    inputs = {"--input": input_path, "--target": target}
    check_paths(output, inputs)
    check_paths(plot, inputs, param="--plot")
    if output and plot and same_file(output, plot):
        raise click.BadParameter("-o and --plot name the same file", param_hint="--plot")
    x = io.load_array(input_path)
    y = io.load_array(target, param="--target")
    from fastconv.learn import learn_kernel as learn

    losses_seen: list[float] = []
    progress = None
    task = None

    def echo(line: str) -> None:
        if progress is not None:
            progress.console.print(line, highlight=False)
        else:
            click.echo(line)

    def callback(epoch, loss, *rest):
        losses_seen.append(float(loss))
        if epoch % every == 0:
            echo(f"epoch {epoch}, loss {float(loss):.3f}")
        if progress is not None:
            progress.update(task, advance=1)

    with contextlib.ExitStack() as stack:
        if epochs >= PROGRESS_EPOCHS and sys.stdout.isatty():
            # a live bar only on a terminal; the loss lines print above it
            from rich.progress import Progress

            progress = stack.enter_context(Progress(transient=True))
            task = progress.add_task("learning", total=epochs)
        with library_errors(f"learn-kernel --input {input_path!r} --target {target!r}"), \
                np.errstate(all="ignore"):  # a diverging fit prints "loss nan", not warnings
            result = learn(x, y, kernel_size, lr=lr, epochs=epochs, bias=bias,
                           optimizer=optimizer, seed=seed, callback=callback)
    kernel = np.asarray(result.kernel)
    click.echo("kernel:")
    click.echo(fmt_array(kernel))
    if bias:
        click.echo(f"bias: {fmt_array(result.bias)}")
    losses = list(result.losses) if result.losses is not None else losses_seen
    finite = sum(math.isfinite(float(v)) for v in losses)
    if plot and not finite:  # refused before any file is written
        raise io.DataError(
            f"--plot {plot!r}: no finite loss to draw (every loss is NaN or infinite: NaN "
            "in the data, or a diverging fit: try a smaller --lr)"
        )
    if output:
        report(kernel, output, key="kernel")
    if plot:
        with write_errors(plot, "--plot"):
            io.atomic_write(plot, lambda fh: draw_loss_curve(losses, fh))
        skipped = f", {len(losses) - finite} non-finite not drawn" if finite < len(losses) else ""
        click.echo(f"wrote {plot} (loss curve, {len(losses)} epochs{skipped})")


def draw_loss_curve(losses, fh, size=(640, 400)) -> None:
    """The loss per epoch as a PNG, drawn with Pillow (log scale when it spans decades).
    NaN/inf losses (a diverging fit) are left out: the curve has a gap there."""
    import math

    from PIL import Image, ImageDraw

    w, h = size
    left, right, top, bottom = 70, 20, 30, 50
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    vals = [float(v) for v in losses]
    seen = [v for v in vals if math.isfinite(v)]
    positive = all(v > 0 for v in seen) and seen
    log = bool(positive) and max(seen) / min(seen) > 100
    ys = [(math.log10(v) if log else v) if math.isfinite(v) else None for v in vals]
    finite_ys = [v for v in ys if v is not None]
    lo, hi = (min(finite_ys), max(finite_ys)) if finite_ys else (0.0, 1.0)
    if hi == lo:
        hi = lo + 1.0
    n = max(len(ys), 2)

    def px(i, v):
        x = left + (w - left - right) * (i / (n - 1))
        y = top + (h - top - bottom) * (1 - (v - lo) / (hi - lo))
        return x, y

    draw.rectangle([left, top, w - right, h - bottom], outline="black")
    for frac in (0.0, 0.5, 1.0):
        v = lo + (hi - lo) * frac
        _, y = px(0, v)
        label = f"{10 ** v:.3g}" if log else f"{v:.3g}"
        draw.line([left - 5, y, left, y], fill="black")
        draw.text((5, y - 6), label, fill="black")
    for i in (0, len(ys) - 1):
        x, _ = px(i, lo)
        draw.text((x - 5, h - bottom + 8), str(i + 1), fill="black")
    draw.text((w // 2 - 20, h - 20), "epoch", fill="black")
    draw.text((left, 8), "loss" + (" (log scale)" if log else ""), fill="black")
    runs, run = [], []
    for i, v in enumerate(ys):  # runs of consecutive finite losses
        if v is None:
            runs, run = runs + [run] if run else runs, []
        else:
            run.append(px(i, v))
    for points in runs + [run] if run else runs:
        if len(points) == 1:
            x, y = points[0]
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill="navy")
        else:
            draw.line(points, fill="navy", width=2)
    img.save(fh, format="PNG")


# ----------------------------------------------------------------------------- kernels


@cli.command(short_help="List the named kernels.")
def kernels():
    """List the named kernels usable with --kernel (name:arg:arg passes arguments)."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from fastconv import kernels as named

    table = Table()
    for col in ("--kernel", "shape", "description"):
        table.add_column(col)
    for name in named.names():
        shape = "x".join(map(str, np.shape(named.get(name))))
        if named.usage(name) != name:
            shape += " (default)"
        table.add_row(named.usage(name).replace("_", "-"), shape, named.describe(name))
    Console(highlight=False).print(table)


# -------------------------------------------------------------------------------- info


@cli.command(short_help="Versions, devices, threads, kernel cache.")
def info():
    """Versions, devices, CPU thread count and where compiled kernels are cached."""
    import os
    import platform

    import numba
    import numpy as np

    import fastconv as fc
    from fastconv._warmup import cache_status

    status = cache_status()
    warm = "warm" if status.warm else "cold: run `fastconv warmup`"
    rows = [
        ("fastconv", fc.__version__),
        ("numpy", np.__version__),
        ("numba", numba.__version__),
        ("python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("devices", ", ".join(fc.devices())),
        ("threads", f"{numba.get_num_threads()} (NUMBA_NUM_THREADS="
                    f"{os.environ.get('NUMBA_NUM_THREADS', 'unset')})"),
        ("kernel cache", f"{warm}; {status}"),
    ]
    for name, value in rows:
        click.echo(f"{name:<13}{value}")


# ------------------------------------------------------------------------------ warmup


@cli.command(short_help="Compile the common kernels into the cache, once.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Worker processes [default: the CPU count].")
def warmup(jobs):
    """Compile the common kernels (float32/float64 convolution, gradients, pooling) into
    Numba's on-disk cache, in parallel worker processes, so that later calls and commands
    start without compiling. Prints where the cache lives and its size."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from fastconv._warmup import TASKS
    from fastconv._warmup import warmup as run

    columns = (TextColumn("compiling"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("warmup", total=len(TASKS))

        def done(label, seconds):
            bar.advance(task)
            bar.console.print(f"{label}: {seconds:.1f} s")

        status = run(jobs, progress=done)
    click.echo(f"kernel cache: {status}")
    if not status.warm:
        raise click.ClickException("some kernels are still not cached (see above)")


# -------------------------------------------------------------------------------- demo


@cli.command(short_help="The seeds' worked examples, computed by fastconv.")
def demo():
    """The seeds' worked examples: 19/25/37/43, channels, edge detection, pooling,
    learning [1, -1]."""
    import numpy as np

    import fastconv as fc

    def title(text):
        click.echo()
        click.secho(f"== {text}", bold=True)

    def show(label, arr):
        click.echo(label)
        click.echo(fmt_array(arr))

    title("2-D cross-correlation: corr2d(X, K)")
    X = np.arange(9.0).reshape(3, 3)
    K = np.array([[0.0, 1.0], [2.0, 3.0]])
    show("X =", X)
    show("K =", K)
    show("corr2d(X, K) =", fc.corr2d(X, K))

    title("Multiple input channels: (2, 3, 3) input, (2, 2, 2) kernel")
    X2 = np.stack([X, X + 1])
    K2 = np.stack([K, K + 1])
    show("conv2d(X, K[None]) =", fc.conv2d(X2, K2[None])[0])

    title("Multiple output channels: stack(K, K + 1, K + 2), shape (3, 2, 2, 2)")
    K3 = np.stack([K2, K2 + 1, K2 + 2])
    show("conv2d(X, K) =", fc.conv2d(X2, K3))

    title("Edge detection on a 6x8 image with K = [[1, -1]]")
    E = np.ones((6, 8))
    E[:, 2:6] = 0
    edge = np.array([[1.0, -1.0]])
    show("X =", E)
    Y = fc.corr2d(E, edge)
    show("corr2d(X, K): 1 = white->black edge, -1 = black->white =", Y)
    show("corr2d(X.T, K): the kernel only sees vertical edges =", fc.corr2d(E.T, edge))

    title("Pooling")
    P = X[None]
    show("max_pool2d(X, 2, stride=1) =", fc.max_pool2d(P, 2, stride=1)[0])
    show("avg_pool2d(X, 2, stride=1) =", fc.avg_pool2d(P, 2, stride=1)[0])
    X16 = np.arange(16.0).reshape(1, 4, 4)
    show("X16 =", X16[0])
    show("max_pool2d(X16, 3) =", fc.max_pool2d(X16, 3)[0])
    show("max_pool2d(X16, 3, padding=1, stride=2) =",
         fc.max_pool2d(X16, 3, padding=1, stride=2)[0])
    show("max_pool2d(X16, (2, 3), padding=(0, 1), stride=(2, 3)) =",
         fc.max_pool2d(X16, (2, 3), padding=(0, 1), stride=(2, 3))[0])
    click.echo("(the MXNet seed's padding=(1, 2) for a (2, 3) window is refused, as in "
               "PyTorch: padding may be at most half the window)")
    two = np.concatenate([X16, X16 + 1])
    show("two channels, max_pool2d(cat(X16, X16 + 1), 3, padding=1, stride=2) =",
         fc.max_pool2d(two, 3, padding=1, stride=2))

    title("Learning the kernel [1, -1] from X and Y = corr2d(X, [[1, -1]])")
    from fastconv.learn import learn_kernel

    def callback(epoch, loss, *rest):
        if epoch % 2 == 0:
            click.echo(f"epoch {epoch}, loss {float(loss):.3f}")

    result = learn_kernel(E, Y, (1, 2), lr=3e-2, epochs=10, seed=0, callback=callback)
    show("learned kernel =", np.asarray(result.kernel))


if __name__ == "__main__":  # pragma: no cover
    main()
