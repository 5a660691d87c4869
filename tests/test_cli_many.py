"""Many files in one command: ``fastconv convolve a b ... -o OUTDIR/`` and ``pool``.

Results equal one-file runs (and the library); every refusal (collisions, an output that
is an input or the kernel, existing outputs, a file where a folder is needed) happens
before any file is written; a failing file is named and the others still run (exit 1).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from reference import conv_nd

import fastconv as fc
from fastconv_cli import batch
from fastconv_cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="fastconv",
                              catch_exceptions=False)


def snapshot(folder: Path) -> dict:
    """Every path under ``folder`` with its bytes and mtime (folders as None)."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            if p.is_file() else None for p in sorted(folder.rglob("*"))}


def refused(result, code: int, message: str) -> None:
    """Exit ``code``, no traceback, and the last stderr line is ``message``."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == message, result.stderr
    assert sum(line.startswith("Error:") for line in lines) == 1


def no_temp_files(folder: Path) -> bool:
    return not list(folder.rglob(".fastconv-*"))


@pytest.fixture
def arrays(tmp_path):
    """Three .npy inputs of different shapes and dtypes in ``tmp_path/src``."""
    rng = np.random.default_rng(7)
    src = tmp_path / "src"
    src.mkdir()
    data = {"a": rng.standard_normal((5, 6)), "b": rng.standard_normal((2, 4, 5)),
            "c": rng.standard_normal((7, 7)).astype(np.float32)}
    for name, x in data.items():
        np.save(src / f"{name}.npy", x)
    return src, data


def test_convolve_many_equals_one_by_one(tmp_path, arrays):
    src, data = arrays
    paths = [src / f"{n}.npy" for n in data]
    result = run("convolve", *paths, "-k", "[[0, 1], [2, 3]]", "-o", f"{tmp_path / 'out'}/")
    assert result.exit_code == 0, result.output
    k = np.array([[0.0, 1.0], [2.0, 3.0]])
    for name, x in data.items():
        got = np.load(tmp_path / "out" / f"{name}.npy")
        x3 = x[None] if x.ndim == 2 else x
        w = np.broadcast_to(k, (x3.shape[0], 1, 2, 2)).astype(x.dtype)
        want = conv_nd(x3[None].astype(np.float64), w.astype(np.float64), groups=x3.shape[0])[0]
        want = want[0] if x.ndim == 2 else want
        assert got.dtype == x.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        one = run("convolve", src / f"{name}.npy", "-k", "[[0, 1], [2, 3]]", "-o",
                  tmp_path / f"one-{name}.npy")
        assert one.exit_code == 0
        np.testing.assert_array_equal(got, np.load(tmp_path / f"one-{name}.npy"))
    out = tmp_path / "out"
    assert result.stdout.splitlines() == [
        f"wrote {out / 'a.npy'} (float64, 4x5)", f"wrote {out / 'b.npy'} (float64, 2x3x4)",
        f"wrote {out / 'c.npy'} (float32, 6x6)"]


def test_pool_many_into_existing_folder_with_format(tmp_path, arrays):
    src, data = arrays
    (tmp_path / "out").mkdir()
    result = run("pool", src / "a.npy", src / "b.npy", "--size", "2", "--mode", "avg",
                 "-o", tmp_path / "out", "--format", "npz")
    assert result.exit_code == 0, result.output
    for name in ("a", "b"):
        x = data[name]
        want = fc.avg_pool2d(x[None] if x.ndim == 2 else x, 2)
        with np.load(tmp_path / "out" / f"{name}.npz") as z:
            np.testing.assert_array_equal(z["result"], want[0] if x.ndim == 2 else want)
    assert sorted(os.listdir(tmp_path / "out")) == ["a.npz", "b.npz"]


def test_images_keep_their_format(tmp_path):
    rng = np.random.default_rng(3)
    for i, ext in enumerate(("png", "bmp")):
        Image.fromarray(rng.integers(0, 256, (9, 11), dtype=np.uint8)).save(
            tmp_path / f"im{i}.{ext}")
    result = run("convolve", tmp_path / "im0.png", tmp_path / "im1.bmp", "-k", "sobel-x",
                 "--padding", "same", "-o", f"{tmp_path / 'edges'}/")
    assert result.exit_code == 0, result.output
    for i, ext in enumerate(("png", "bmp")):
        with Image.open(tmp_path / "edges" / f"im{i}.{ext}") as img:
            assert img.format == {"png": "PNG", "bmp": "BMP"}[ext] and img.size == (11, 9)


def test_one_input_with_trailing_slash_is_folder_mode(tmp_path, arrays):
    src, _ = arrays
    result = run("pool", src / "a.npy", "--size", "2", "-o", f"{tmp_path / 'p'}/")
    assert result.exit_code == 0, result.output
    assert os.listdir(tmp_path / "p") == ["a.npy"]


def test_one_input_and_a_folder_without_slash_is_refused(tmp_path, arrays):
    src, _ = arrays
    (tmp_path / "p").mkdir()
    refused(run("pool", src / "a.npy", "--size", "2", "-o", tmp_path / "p"), 2,
            f"Error: Invalid value for -o: '{tmp_path / 'p'}' is a folder; expected a file "
            "path (end it with '/' to write <INPUT stem>.<ext> into it)")


# ------------------------------------------------------------------ refused up front


def test_collision_refused_before_anything(tmp_path, arrays):
    src, data = arrays
    other = tmp_path / "other"
    other.mkdir()
    np.save(other / "a.npy", data["a"])
    before = snapshot(tmp_path)
    refused(run("convolve", src / "a.npy", src / "b.npy", other / "a.npy", "-k", "edge",
                "-o", f"{tmp_path / 'out'}/"), 2,
            f"Error: Invalid value for -o: INPUTs '{src / 'a.npy'}' and '{other / 'a.npy'}' "
            f"would both be written to '{tmp_path / 'out' / 'a.npy'}'; rename one, or run "
            "them into separate folders")
    assert snapshot(tmp_path) == before  # the folder was not even created


def test_collision_through_format(tmp_path, arrays):
    src, data = arrays
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(src / "a.png")
    refused(run("pool", src / "a.npy", src / "a.png", "--size", "2", "--format", "png",
                "-o", f"{tmp_path}/"), 2,
            f"Error: Invalid value for -o: INPUTs '{src / 'a.npy'}' and '{src / 'a.png'}' "
            f"would both be written to '{tmp_path / 'a.png'}'; rename one, or run them into "
            "separate folders")


def test_input_given_twice(tmp_path, arrays):
    src, _ = arrays
    os.link(src / "a.npy", src / "hard.npy")
    refused(run("pool", src / "a.npy", src / "hard.npy", "--size", "2", "-o", f"{tmp_path}/o/"),
            2, f"Error: Invalid value for INPUT: '{src / 'hard.npy'}' is given twice (as "
               f"'{src / 'a.npy'}'); each INPUT once")


@pytest.mark.parametrize("overwrite", [(), ("--overwrite",)])
def test_output_that_is_an_input(tmp_path, arrays, overwrite):
    src, _ = arrays
    before = snapshot(tmp_path)
    refused(run("convolve", src / "a.npy", src / "b.npy", "-k", "edge", "-o", src,
                *overwrite), 2,
            f"Error: Invalid value for -o: the output '{src / 'a.npy'}' of INPUT "
            f"'{src / 'a.npy'}' is the INPUT '{src / 'a.npy'}' (the same file); choose "
            "another folder (inputs are never overwritten)")
    os.symlink(src, tmp_path / "link")  # the same folder under another name
    refused(run("convolve", src / "a.npy", src / "b.npy", "-k", "edge", "-o",
                f"{tmp_path / 'link'}/", *overwrite), 2,
            f"Error: Invalid value for -o: the output '{tmp_path / 'link' / 'a.npy'}' of "
            f"INPUT '{src / 'a.npy'}' is the INPUT '{src / 'a.npy'}' (the same file); "
            "choose another folder (inputs are never overwritten)")
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("link")} == before


def test_output_that_is_the_kernel_file(tmp_path, arrays):
    src, _ = arrays
    out = tmp_path / "out"
    out.mkdir()
    np.save(out / "b.npy", np.ones((2, 2)))  # the kernel, where b's output would go
    before = snapshot(tmp_path)
    refused(run("convolve", src / "a.npy", src / "b.npy", "-k", out / "b.npy", "-o", out,
                "--overwrite"), 2,
            f"Error: Invalid value for -o: the output '{out / 'b.npy'}' of INPUT "
            f"'{src / 'b.npy'}' is the --kernel '{out / 'b.npy'}' (the same file); choose "
            "another folder (inputs are never overwritten)")
    assert snapshot(tmp_path) == before


def test_existing_outputs_need_overwrite(tmp_path, arrays):
    src, data = arrays
    out = tmp_path / "out"
    out.mkdir()
    np.save(out / "b.npy", np.zeros(3))
    before = snapshot(tmp_path)
    refused(run("pool", *(src / f"{n}.npy" for n in data), "--size", "2", "-o", out), 2,
            f"Error: Invalid value for -o: 1 output(s) exist already: '{out / 'b.npy'}'; add "
            "--overwrite to replace them")
    assert snapshot(tmp_path) == before
    result = run("pool", *(src / f"{n}.npy" for n in data), "--size", "2", "-o", out,
                 "--overwrite")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.load(out / "b.npy"), fc.max_pool2d(data["b"], 2))


def test_output_name_that_is_a_folder(tmp_path, arrays):
    src, _ = arrays
    (tmp_path / "out" / "a.npy").mkdir(parents=True)
    refused(run("pool", src / "a.npy", src / "b.npy", "--size", "2", "-o", tmp_path / "out",
                "--overwrite"), 2,
            f"Error: Invalid value for -o: the output '{tmp_path / 'out' / 'a.npy'}' of INPUT "
            f"'{src / 'a.npy'}' is a folder")


@pytest.mark.parametrize("case", ["no -o", "file", "missing", "missing parent", "format",
                                  "chunks", "unknown type"])
def test_usage_errors(tmp_path, arrays, case):
    src, _ = arrays
    a, b = src / "a.npy", src / "b.npy"
    (tmp_path / "f.npy").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    args, message = {
        "no -o": ((a, b), "Error: 2 INPUTs need -o OUTDIR/ (a folder: each result is written "
                          "to OUTDIR/<input stem>.<ext>)"),
        "file": ((a, b, "-o", tmp_path / "f.npy"),
                 f"Error: Invalid value for -o: '{tmp_path / 'f.npy'}' is a file; expected a "
                 "folder (OUTDIR/)"),
        "missing": ((a, b, "-o", tmp_path / "nope"),
                    f"Error: Invalid value for -o: '{tmp_path / 'nope'}' is not a folder; with "
                    "2 INPUTs -o must be an existing folder or end with '/' (then it is "
                    "created)"),
        "missing parent": ((a, b, "-o", f"{tmp_path}/x/y/"),
                           f"Error: Invalid value for -o: '{tmp_path}/x/y/': folder "
                           f"'{tmp_path / 'x'}' does not exist (only the last folder of -o "
                           "OUTDIR/ is created)"),
        "format": ((a, "-o", tmp_path / "y.npy", "--format", "png"),
                   "Error: Invalid value for --format: goes with -o OUTDIR/ (folder mode); a "
                   "single -o FILE takes the format of its extension"),
        "chunks": ((a, b, "-o", f"{tmp_path}/", "--chunks", "4"),
                   "Error: Invalid value for --chunks: out of core runs one INPUT at a time "
                   "(-o OUT.npy); give one INPUT"),
        "unknown type": ((a, tmp_path / "notes.txt", "-o", f"{tmp_path}/o/"),
                         f"Error: Invalid value for INPUT: '{tmp_path / 'notes.txt'}': unknown "
                         "file type; expected .npy, .npz or an image (.png/.jpg/.tif/.bmp)"),
    }[case]
    before = snapshot(tmp_path)
    refused(run("pool", *args, "--size", "2"), 2, message)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------ a failing file, the rest


def test_failing_files_are_named_and_the_others_written(tmp_path, arrays):
    src, data = arrays
    (src / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    np.save(src / "tiny.npy", np.ones((1, 1)))  # smaller than the kernel: the library refuses
    out = tmp_path / "out"
    names = ["a", "bad", "b", "tiny", "c"]
    result = run("convolve", *(src / f"{n}.npy" for n in names), "-k", "[[1, 2], [3, 4]]",
                 "-o", f"{out}/")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert sorted(os.listdir(out)) == ["a.npy", "b.npy", "c.npy"]
    assert no_temp_files(tmp_path)
    err = result.stderr.strip().splitlines()
    assert err[0].startswith(f"failed '{src / 'bad.npy'}': INPUT '{src / 'bad.npy'}': ")
    assert err[1].startswith(f"failed '{src / 'tiny.npy'}': convolve '{src / 'tiny.npy'}' "
                             "with --kernel '[[1, 2], [3, 4]]': conv2d: kernel larger than")
    assert err[-1] == (f"Error: 2 of 5 files failed: '{src / 'bad.npy'}', '{src / 'tiny.npy'}'"
                       " (the others were written)")
    assert len(err) == 3
    assert [line.split()[1] for line in result.stdout.splitlines()] == [
        str(out / f"{n}.npy") for n in ("a", "b", "c")]


def test_failing_save_is_per_file(tmp_path, arrays):
    """A result that is not an image fails its own file under --format png."""
    src, data = arrays
    np.save(src / "four.npy", np.ones((4, 5, 5)))  # 4 channels cannot be a PNG
    result = run("pool", src / "a.npy", src / "four.npy", "--size", "2", "--format", "png",
                 "-o", f"{tmp_path / 'out'}/")
    assert result.exit_code == 1
    assert os.listdir(tmp_path / "out") == ["a.png"]
    assert "cannot be saved as an image" in result.stderr
    assert no_temp_files(tmp_path)


def test_many_failures_are_counted(tmp_path):
    for i in range(8):
        (tmp_path / f"bad{i}.npy").write_bytes(b"")
    result = run("pool", *(tmp_path / f"bad{i}.npy" for i in range(8)), "--size", "2",
                 "-o", f"{tmp_path / 'out'}/")
    assert result.exit_code == 1
    listed = ", ".join(repr(str(tmp_path / f"bad{i}.npy")) for i in range(5))
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: 8 of 8 files failed: {listed} and 3 more (the others were written)")


def test_progress_bar_prints_lines_above_it(monkeypatch, capsys):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    with batch.progress_bar(2, "pooling") as (echo, advance):
        echo("wrote [x].npy")  # no Rich markup in file names
        advance()
        advance()
    assert "wrote [x].npy" in capsys.readouterr().out
