"""Fuzzing the ``fastconv`` command line: random commands, options and files, valid and
invalid, each checked for the CLI's contract.

Every case runs one command (``convolve``, ``pool``, ``shape``, ``learn-kernel``) in
process through Click's ``CliRunner`` on a pool of files made once per run: sound arrays
of every rank and a few dtypes, images, ``.npz`` archives, and hostile files (huge or
truncated headers, a zip named ``.npy``, a text member in an ``.npz``, pickled objects, a
decompression-bomb PNG, symlinks, hard links, a folder). Options are drawn from sound
values, edge values (0, negatives, ``2**63``, 5000 digits, NaN/inf, garbage) and outputs
that alias an input. A case fails when:

- an exception escapes (a traceback) or any warning is raised;
- the exit code is not 0 (success), 1 (data error) or 2 (usage error);
- a failure does not end in exactly one ``Error:`` line;
- any file of the pool changed, or a temporary/partial file is left behind.

Case ``i`` draws everything from ``numpy.random.default_rng([seed, i])``, so::

    python tests/fuzz_cli.py --n 2000 --seed 0        # make fuzz (after tests/fuzz.py)
    python tests/fuzz_cli.py --seed 0 --case 17 -v    # replay one case, print its command

prints one line per failure with its reproducer and exits 1 if any. ``run()`` is also
called by ``tests/test_cli_adversarial.py``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import struct
import sys
import tempfile
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

COMMANDS = ("convolve", "pool", "shape", "learn-kernel")
BIG = str(2**63)
HUGE = "9" * 5000


def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _header(shape, descr="<f8") -> bytes:
    import io

    fh = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        fh, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    return fh.getvalue()


def make_pool(folder: Path) -> list[str]:
    """The files every case may read (names relative to ``folder``)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = {
        "a2.npy": rng.standard_normal((7, 9)),
        "a3.npy": rng.standard_normal((2, 6, 5)).astype(np.float32),
        "a4.npy": rng.standard_normal((1, 2, 5, 6)),
        "a1.npy": np.arange(5.0),
        "i2.npy": rng.integers(-5, 5, (6, 6)).astype(np.int16),
        "b2.npy": np.ones((4, 4), dtype=bool),
        "n2.npy": np.array([[np.nan, 1.0], [np.inf, -1.0]]),
        "e2.npy": np.zeros((0, 4)),
        "k2.npy": np.array([[1.0, -1.0]]),
        "k4.npy": rng.standard_normal((2, 2, 2, 2)),
        "f2.npy": np.asfortranarray(rng.standard_normal((6, 7))),
        "c2.npy": np.ones((3, 3), dtype=np.complex64),
    }
    for name, arr in arrays.items():
        np.save(folder / name, arr)
    X = np.ones((6, 8))
    X[:, 2:6] = 0
    np.save(folder / "X.npy", X)
    np.save(folder / "Y.npy", X[:, :-1] - X[:, 1:])
    np.savez(folder / "one.npz", a=arrays["a2.npy"])
    np.savez(folder / "two.npz", a=arrays["a2.npy"], b=arrays["a3.npy"])
    with zipfile.ZipFile(folder / "txt.npz", "w") as z:
        z.writestr("a.txt", "hello")
    raw = (folder / "a2.npy").read_bytes()
    hostile = {
        "huge.npy": _header((10**6, 10**6)) + b"\0" * 8,
        "trunc.npy": raw[:-5],
        "cuthead.npy": raw[:20],
        "text.npy": b"not numpy",
        "obj.npy": _header((1,), "|O") + b"N.",
        "zip.npy": (folder / "one.npz").read_bytes(),
        "text.npz": b"not a zip",
        "bomb.png": _png(20000, 20000),
        "bad.png": b"\x89PNG broken",
        "x.csv": b"1,2\n",
    }
    for name, data in hostile.items():
        (folder / name).write_bytes(data)
    Image.fromarray((rng.random((8, 10)) * 255).astype(np.uint8)).save(folder / "g.png")
    Image.fromarray((rng.random((6, 7, 3)) * 255).astype(np.uint8)).save(folder / "rgb.png")
    (folder / "link.npy").symlink_to(folder / "a2.npy")
    os.link(folder / "a3.npy", folder / "hard.npy")
    (folder / "dir.npy").mkdir()
    return sorted(p.name for p in folder.iterdir())


def snapshot(folder: Path, names) -> dict:
    out = {}
    for name in names:
        p = folder / name
        if p.is_symlink():
            out[name] = ("link", os.readlink(p))
        elif p.is_file():
            out[name] = (p.read_bytes(), p.stat().st_mtime_ns)
        else:
            out[name] = ("dir", sorted(os.listdir(p)) if p.is_dir() else None)
    return out


# ----------------------------------------------------------------------- drawing


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


INPUTS = ["a2.npy", "a3.npy", "a4.npy", "a1.npy", "i2.npy", "b2.npy", "n2.npy", "e2.npy",
          "f2.npy", "c2.npy", "X.npy", "one.npz", "two.npz", "txt.npz", "huge.npy",
          "trunc.npy", "cuthead.npy", "text.npy", "obj.npy", "zip.npy", "text.npz",
          "bomb.png", "bad.png", "g.png", "rgb.png", "x.csv", "link.npy", "hard.npy",
          "dir.npy", "missing.npy", "./a2.npy"]
SOUND = ["a2.npy", "a3.npy", "a4.npy", "g.png", "rgb.png", "one.npz", "X.npy"]


def _int_value(rng, low=1):
    return _pick(rng, [str(low), str(low + 1), "2", "3", "0", "-1", BIG, str(2**63 - 1), HUGE,
                       "2,1", "1,2,3,4", "x", "", "1.5", "nan", "2x1"])


def _padding(rng):
    return _pick(rng, ["0", "1", "same", "valid", "full", "0:1,1:0", "1,2", BIG, "-1", "half",
                       f"0:{BIG},0:0", "2"])


def _kernel(rng):
    return _pick(rng, [
        "edge", "sobel-x", "box:3", f"box:{_pick(rng, ['1', '5', '4', '1000001', BIG])}",
        f"gaussian:{_pick(rng, ['3', '5', '4'])}:"
        f"{_pick(rng, ['1.0', '0', '1e-200', '1e300', 'nan', 'inf'])}",
        "[[1,-1]]", "[[0,1],[2,3]]", "[[1,2],[3]]", "[[[[[1]]]]]", "[" * 2000 + "]" * 2000,
        "[[1e999]]", f"[[{HUGE}]]", "[[NaN]]", "[]", "[[true]]", "k2.npy", "k4.npy",
        "huge.npy", "zip.npy", "missing.npy", "sobel-z", "__import__('os')", "edge:3",
        "[[" + ",".join(["1"] * 40000) + "]]",
    ])


def _output(rng, ext=None):
    ext = ext or _pick(rng, [".npy", ".npy", ".npz", ".png", ".txt"])
    return _pick(rng, [f"out{ext}", f"out{ext}", f"out{ext}", "a2.npy", "./a2.npy",
                       "link.npy", "hard.npy", "a3.npy", "k2.npy", "X.npy", "Y.npy",
                       "dir.npy", "no/out.npy", "y" * 246 + ".npy", "z" * 252 + ".npy",
                       "a2.npy/out.npy"])


def make_case(seed: int, i: int) -> list[str]:
    """The argument list of case ``i`` (file names relative to the pool's folder)."""
    rng = np.random.default_rng([seed, i])
    command = _pick(rng, COMMANDS)
    args = [command]
    maybe = lambda p: rng.random() < p  # noqa: E731
    if command == "convolve":
        args += [_pick(rng, SOUND if maybe(0.5) else INPUTS), "-k", _kernel(rng)]
        if maybe(0.6):
            args += ["-o", _output(rng)]
        for opt, value in (("--stride", _int_value), ("--dilation", _int_value),
                           ("--padding", lambda r: _padding(r)),
                           ("--groups", lambda r: _pick(r, ["1", "2", "0", BIG])),
                           ("--bias", lambda r: _pick(r, ["0.5", "1,2", "nan", "x", HUGE])),
                           ("--padding-mode", lambda r: _pick(
                               r, ["zeros", "reflect", "replicate", "circular", "mirror"])),
                           ("--key", lambda r: _pick(r, ["a", "b", "zz"]))):
            if maybe(0.3):
                args += [opt, value(rng)]
        if maybe(0.2):
            args.append("--flip")
    elif command == "pool":
        args += [_pick(rng, SOUND if maybe(0.5) else INPUTS)]
        if maybe(0.8):
            args += ["--size", _int_value(rng)]
        if maybe(0.2):
            args += ["--adaptive", _pick(rng, ["1", "2x3", "0", BIG, "4x4x4", "x"])]
        if maybe(0.6):
            args += ["-o", _output(rng)]
        for opt, value in (("--stride", _int_value), ("--padding", lambda r: _int_value(r, 0)),
                           ("--mode", lambda r: _pick(r, ["max", "avg", "min"]))):
            if maybe(0.4):
                args += [opt, value(rng)]
        if maybe(0.2):
            args.append("--ceil-mode")
    elif command == "shape":
        args += ["--input", _pick(rng, ["8x8", "32x32", "5", "4x8x8", f"{BIG}x8", "0x3", "8y8",
                                        f"{HUGE}x2"])]
        if maybe(0.5):
            args += ["--kernel", _int_value(rng)]
            if maybe(0.4):
                args += ["--repeat", _pick(rng, ["1", "3", "10000", "10001", "100000000"])]
        else:
            for _ in range(int(rng.integers(1, 4))):
                reps = _pick(rng, ["", "2*", "100000000*", "6000*", "0*"])
                body = _pick(rng, ["conv:k=3", "conv:k=5,s=2,p=2", "pool:k=2", "pool:k=2,p=2",
                                   "adaptive:2x2", "adaptive:0", f"adaptive:{BIG}",
                                   f"conv:k={BIG}", "pool:k=3,ceil=1", "dense:k=1",
                                   "conv:s=2", "conv:k=3,p=same"])
                args += ["--layer", reps + body]
        for opt, value in (("--padding", _padding), ("--stride", _int_value)):
            if maybe(0.3):
                args += [opt, value(rng)]
    else:  # learn-kernel
        pair = ["X.npy", "Y.npy"] if maybe(0.6) else [_pick(rng, INPUTS), _pick(rng, INPUTS)]
        args += ["--input", pair[0], "--target", pair[1], "--kernel-size",
                 _pick(rng, ["1x2", "2x2", "1", "0x1", f"1x{BIG}"])]
        args += ["--epochs", _pick(rng, ["1", "3", "0"]), "--seed", "0"]
        if maybe(0.4):
            args += ["--lr", _pick(rng, ["0.03", "1e200", "inf", "nan", "0", "-1"])]
        if maybe(0.3):
            args += ["--optimizer", _pick(rng, ["sgd", "adam", "rmsprop"])]
        if maybe(0.3):
            args.append("--bias")
        if maybe(0.4):
            args += ["-o", _output(rng, ".npy")]
        if maybe(0.3):
            args += ["--plot", _pick(rng, ["loss.png", "X.npy", "dir.npy", "loss.txt"])]
    if command in ("convolve", "pool") and maybe(0.2):
        args += ["--chunks", _pick(rng, ["3", "16", "0", BIG])]
        if "-o" not in args:
            args += ["-o", _output(rng, ".npy")]
    return args


# ----------------------------------------------------------------------- running


def check_case(args: list[str], folder: Path, pool: list[str], before: dict) -> list[str]:
    """Run one case in ``folder``; the list of its contract violations."""
    from click.testing import CliRunner

    from fastconv_cli.main import cli

    problems = []
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = CliRunner().invoke(cli, args, prog_name="fastconv")
    finally:
        os.chdir(cwd)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        tb = "".join(traceback.format_exception(result.exception)).strip().splitlines()
        problems.append(f"exception {type(result.exception).__name__}: {tb[-1][:200]}")
    code = result.exit_code
    if code not in (0, 1, 2):
        problems.append(f"exit code {code}")
    if "Traceback" in result.output:
        problems.append("a traceback was printed")
    if code in (1, 2) and not problems:
        lines = result.stderr.strip().splitlines()
        if not lines or not lines[-1].startswith("Error: ") or sum(
                line.startswith("Error:") for line in lines) != 1:
            problems.append(f"not one Error: line: {result.stderr[-300:]!r}")
        if code == 1 and len(lines) != 1:
            problems.append(f"data error with extra output: {result.stderr[-300:]!r}")
    after = snapshot(folder, pool)
    # an existing file named by -o/--plot may be replaced (unless it is an input: then the
    # command must have refused, and the check below sees the change)
    written = {os.path.normpath(args[k + 1]) for k, a in enumerate(args[:-1])
               if a in ("-o", "--output", "--plot")}
    read = [os.path.normpath(args[k + 1]) for k, a in enumerate(args[:-1])
            if a in ("-k", "--kernel", "--input", "--target")] + [
        os.path.normpath(a) for a in args[1:2]]
    written -= {w for w in written if any(_same(folder, w, r) for r in read)}
    changed = [name for name in pool if after[name] != before[name] and name not in written]
    if changed:
        problems.append(f"input files changed: {changed}")
    extra = sorted(set(os.listdir(folder)) - set(pool))
    leftovers = [n for n in extra if n.startswith(".") or (code != 0 and n not in pool)]
    if leftovers:
        problems.append(f"files left behind: {[n[:40] for n in leftovers]}")
    for name in extra:  # outputs of this case: the next case starts from the pool
        (folder / name).unlink()
    return problems


def _clear(folder: Path) -> None:
    import shutil

    for p in folder.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _same(folder: Path, a: str, b: str) -> bool:
    try:
        return os.path.samefile(folder / a, folder / b)
    except OSError:
        return False


def _repro(seed: int, i: int) -> str:
    return f"python tests/fuzz_cli.py --seed {seed} --case {i} -v"


def _show(args: list[str]) -> str:
    text = shlex.join(["fastconv", *args])
    return text if len(text) < 300 else text[:200] + " ... " + text[-60:]


def run(n: int, seed: int = 0, *, cases=None, out=sys.stdout, verbose: bool = False,
        folder: Path | None = None) -> list[str]:
    """Run ``n`` cases (or the case numbers in ``cases``); the failure lines."""
    failures = []
    with tempfile.TemporaryDirectory(prefix="fuzz-cli-") as tmp:
        folder = Path(folder or tmp)
        pool = make_pool(folder)
        before = snapshot(folder, pool)
        t = time.perf_counter()
        for i in cases if cases is not None else range(n):
            args = make_case(seed, i)
            problems = check_case(args, folder, pool, before)
            if verbose and out is not None:
                print(f"case {i}: {_show(args)}", file=out)
            if problems:
                line = f"FAIL case {i}: {'; '.join(problems)}\n  {_show(args)}\n  repro: " \
                       f"{_repro(seed, i)}"
                failures.append(line)
                if out is not None:
                    print(line, file=out)
            if snapshot(folder, pool) != before:  # an output replaced a pool file:
                _clear(folder)                       # every case starts from the same pool
                make_pool(folder)
                before = snapshot(folder, pool)
        count = len(cases) if cases is not None else n
        if out is not None:
            print(f"fuzz_cli: {count} cases, {len(failures)} failures "
                  f"({time.perf_counter() - t:.1f} s)", file=out)
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case", type=int, action="append", help="replay these cases only")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every command")
    opts = parser.parse_args(argv)
    failures = run(opts.n, opts.seed, cases=opts.case, verbose=opts.verbose)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
