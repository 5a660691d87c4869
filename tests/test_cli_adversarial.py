"""The command line (and ``fastconv.ooc``) against a careless user and an attacker.

Malformed, truncated, huge-header, pickled, non-zip, corrupt, bomb and symlinked files;
every way an output can be one of the inputs (the same path, ``./x``, a hard link, a
symlink, the kernel, the target, the input of ``--chunks``); kernel literals and option
values built to overflow or hang; unwritable and over-long paths; SIGINT and SIGTERM in
the middle of a ``--chunks`` write. Each case asserts the exit code, the one ``Error:``
line (never a traceback), and that no file changed and none was left behind.
"""

from __future__ import annotations

import glob
import os
import resource
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import fastconv as fc
from fastconv import _files, kernels
from fastconv_cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
needs_dask = pytest.mark.skipif(
    __import__("importlib").util.find_spec("dask") is None,
    reason="dask not installed (the dask extra)",
)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="fastconv",
                              catch_exceptions=False)


def snapshot(folder: Path) -> dict:
    """Every file under ``folder``: its bytes and mtime (symlinks as their target text)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[p.name] = ("link", os.readlink(p))
        elif p.is_file():
            out[p.name] = (p.read_bytes(), p.stat().st_mtime_ns)
    return out


def refused(result, code: int, message: str | None = None) -> str:
    """Assert exit ``code`` and one ``Error:`` line (the last line of stderr), no traceback;
    a data error (exit 1) prints nothing else. Returns the line."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.stderr
    assert sum(line.startswith("Error:") for line in lines) == 1
    if code == 1:
        assert len(lines) == 1, result.stderr
    if message is not None:
        assert lines[-1] == message
    return lines[-1]


@pytest.fixture
def x_npy(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(16.0).reshape(4, 4))
    return tmp_path / "x.npy"


def npy_with_header(shape, descr="<f8", data=b"", fortran=False, version=(1, 0)) -> bytes:
    """A .npy file's bytes whose header declares ``shape`` whatever ``data`` follows."""
    import io

    fh = io.BytesIO()
    header = {"descr": descr, "fortran_order": fortran, "shape": tuple(shape)}
    write = (np.lib.format.write_array_header_1_0 if version == (1, 0)
             else np.lib.format.write_array_header_2_0)
    write(fh, header)
    return fh.getvalue() + data


# ------------------------------------------------------------------ malformed .npy


def _bad_npy_cases(tmp_path: Path) -> list[tuple[str, bytes, str]]:
    good = (tmp_path / "x.npy").read_bytes()
    return [
        ("huge.npy", npy_with_header((100000, 100000), data=b"\0" * 16),
         "is truncated: its header declares shape (100000, 100000) float64 (74.5 GiB) but the "
         "file holds 16 bytes of data"),
        ("short.npy", good[:-8],
         "is truncated: its header declares shape (4, 4) float64 (128 bytes) but the file "
         "holds 120 bytes of data"),
        ("cut_header.npy", good[:30],
         "truncated .npy header (EOF: reading array header, expected 118 bytes got 20)"),
        ("garbage_header.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8',}",
         None),
        ("negative.npy", npy_with_header((-1, 4)), "malformed .npy header (negative shape "
                                                    "(-1, 4))"),
        ("empty.npy", b"", "not a .npy file (too short for a NumPy header)"),
        ("text.npy", b"hello, not numpy",
         "not a .npy file (it does not start with NumPy's magic string)"),
        ("version.npy", b"\x93NUMPY\x09\x00" + good[8:],
         "unsupported .npy format version 9.0"),
        ("zip.npy", (tmp_path / "z.npz").read_bytes(),
         "is a zip archive (an .npz), not a .npy file"),
        ("object.npy", npy_with_header((2,), descr="|O", data=b"\x80\x04N."),
         "contains pickled Python objects, which are refused (read with allow_pickle=False); "
         "expected a numeric array"),
    ]


def test_malformed_npy_is_one_error_line_before_any_allocation(tmp_path, x_npy):
    np.savez(tmp_path / "z.npz", a=np.ones(3))
    for name, data, message in _bad_npy_cases(tmp_path):
        (tmp_path / name).write_bytes(data)
        before = snapshot(tmp_path)
        for args in (["convolve", tmp_path / name, "-k", "edge", "-o", tmp_path / "y.npy"],
                     ["convolve", x_npy, "-k", tmp_path / name, "-o", tmp_path / "y.npy"],
                     ["pool", tmp_path / name, "--size", "2", "-o", tmp_path / "y.npy"]):
            param = "--kernel" if args[3] == tmp_path / name else "INPUT"
            line = refused(run(*args), 1)
            assert line.startswith(f"Error: {param} '{tmp_path / name}': "), line
            if message is not None:
                assert line == f"Error: {param} '{tmp_path / name}': {message}"
            assert snapshot(tmp_path) == before
    assert "malformed .npy header" in refused(
        run("convolve", tmp_path / "garbage_header.npy", "-k", "edge"), 1)


def test_learn_kernel_target_with_a_huge_header(tmp_path, x_npy):
    (tmp_path / "y.npy").write_bytes(npy_with_header((2**40,), data=b"\0" * 8))
    refused(run("learn-kernel", "--input", x_npy, "--target", tmp_path / "y.npy",
                "--kernel-size", "1x2"), 1,
            f"Error: --target '{tmp_path / 'y.npy'}': is truncated: its header declares shape "
            "(1099511627776,) float64 (8 TiB) but the file holds 8 bytes of data")


def test_array_larger_than_memory_is_refused_before_reading(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", np.ones((8, 8)))
    monkeypatch.setattr(_files, "memory_limit", lambda: 256)  # a 512-byte array is too big
    refused(run("convolve", tmp_path / "x.npy", "-k", "edge"), 1,
            f"Error: INPUT '{tmp_path / 'x.npy'}': declares shape (8, 8) float64 (512 bytes), "
            "more than this machine's memory (256 bytes); --chunks reads it in blocks")


def test_sparse_file_larger_than_memory_is_refused(tmp_path):
    # a real (sparse) file whose header and size agree: only the memory limit refuses it
    nbytes = 2 * _files.memory_limit()
    n = nbytes // 8
    path = tmp_path / "big.npy"
    path.write_bytes(npy_with_header((n,)))
    try:
        os.truncate(path, path.stat().st_size + n * 8)
    except OSError:
        pytest.skip("this filesystem cannot hold a sparse file that large")
    line = refused(run("convolve", path, "-k", "edge"), 1)
    assert "more than this machine's memory" in line and line.endswith("--chunks reads it "
                                                                        "in blocks")


# ---------------------------------------------------------------------- bad .npz


def _zip(path: Path, members: dict, compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        for name, data in members.items():
            z.writestr(name, data)


def test_malformed_npz_is_one_error_line(tmp_path):
    good = npy_with_header((2, 2), data=np.ones(4).tobytes())
    (tmp_path / "text.npz").write_bytes(b"this is not a zip archive at all")
    _zip(tmp_path / "txt.npz", {"a.txt": b"hello"})
    _zip(tmp_path / "empty.npz", {})
    _zip(tmp_path / "huge.npz", {"a.npy": npy_with_header((10**6, 10**6), data=b"\0" * 8)})
    _zip(tmp_path / "pickle.npz", {"a.npy": npy_with_header((1,), descr="|O", data=b"N.")})
    _zip(tmp_path / "crc.npz", {"a.npy": good})
    raw = bytearray((tmp_path / "crc.npz").read_bytes())
    raw[raw.index(np.ones(4).tobytes())] ^= 0xFF  # one data byte flipped: CRC mismatch
    (tmp_path / "crc.npz").write_bytes(bytes(raw))
    _zip(tmp_path / "deflate.npz", {"a.npy": good * 50}, zipfile.ZIP_DEFLATED)
    raw = bytearray((tmp_path / "deflate.npz").read_bytes())
    start = raw.index(b"a.npy") + 5
    raw[start + 5: start + 25] = b"\xff" * 20  # corrupt deflate stream
    (tmp_path / "deflate.npz").write_bytes(bytes(raw))
    (tmp_path / "trunc.npz").write_bytes((tmp_path / "txt.npz").read_bytes()[:20])
    cases = {
        "text.npz": "not an .npz archive (not a zip file)",
        "txt.npz": "member 'a.txt' is not a .npy array",
        "empty.npz": "the .npz archive holds no arrays",
        "huge.npz": "is truncated: its header declares shape (1000000, 1000000) float64 "
                    "(8000000000000 bytes) but the member holds 8 bytes of data",
        "pickle.npz": None,
        "crc.npz": None,
        "deflate.npz": None,
        "trunc.npz": None,
    }
    before = snapshot(tmp_path)
    for name, message in cases.items():
        line = refused(run("convolve", tmp_path / name, "-k", "edge", "-o", tmp_path / "y.npy"),
                       1)
        assert line.startswith(f"Error: INPUT '{tmp_path / name}'"), line
        if message is not None:
            assert line.endswith(message), line
        assert snapshot(tmp_path) == before
    assert "pickled Python objects" in refused(run("convolve", tmp_path / "pickle.npz",
                                                   "-k", "edge"), 1)


# ------------------------------------------------------------------------- images


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width x height`` greyscale and which holds no pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [20000, 10000])  # Pillow's error / its warning
def test_decompression_bomb_is_refused_from_its_header(tmp_path, side):
    (tmp_path / "bomb.png").write_bytes(_png_header_only(side, side))
    before = snapshot(tmp_path)
    line = refused(run("convolve", tmp_path / "bomb.png", "-k", "edge", "-o",
                       tmp_path / "y.png"), 1)
    assert line.startswith(f"Error: INPUT '{tmp_path / 'bomb.png'}': refused as a possible "
                           f"decompression bomb: Image size ({side * side} pixels) exceeds")
    assert line.endswith("(Pillow's limit PIL.Image.MAX_IMAGE_PIXELS = 89478485); convert "
                         "it to .npy and use --chunks")
    assert snapshot(tmp_path) == before


def test_truncated_image_is_one_error_line(tmp_path):
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    assert len(data) > 2000
    (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
    line = refused(run("convolve", tmp_path / "cut.png", "-k", "edge"), 1)
    assert line.startswith(f"Error: INPUT '{tmp_path / 'cut.png'}': not a readable image (")


# ---------------------------------------------------------------------- symlinks


def test_symlinked_input_is_read_and_dangling_link_refused(tmp_path, x_npy):
    (tmp_path / "link.npy").symlink_to(x_npy)
    result = run("convolve", tmp_path / "link.npy", "-k", "edge", "-o", tmp_path / "y.npy")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), fc.corr2d(np.load(x_npy),
                                                                         [[1, -1]]))
    (tmp_path / "dangling.npy").symlink_to(tmp_path / "gone.npy")
    refused(run("convolve", tmp_path / "dangling.npy", "-k", "edge"), 2,
            f"Error: Invalid value for 'INPUT': File '{tmp_path / 'dangling.npy'}' does not "
            "exist.")
    (tmp_path / "loop.npy").symlink_to(tmp_path / "loop.npy")
    assert refused(run("convolve", x_npy, "-k", tmp_path / "loop.npy"), 2).startswith(
        "Error: Invalid value for '-k' / '--kernel': ")


# ---------------------------------------------------------------------- aliasing


def _alias(tmp_path: Path, target: Path, how: str):
    """A path naming the file ``target`` (in the current folder): itself, ``./x`` spelled,
    a hard link, a symlink."""
    if how == "same":
        return target
    if how == "dot":
        return f"./{target.name}"  # a str: Path would drop the "./"
    alias = tmp_path / f"{how}-{target.name}"
    if how == "hardlink":
        os.link(target, alias)
    else:
        alias.symlink_to(target)
    return alias


ALIASES = ["same", "dot", "hardlink", "symlink"]


@pytest.mark.parametrize("how", ALIASES)
@pytest.mark.parametrize("which", ["INPUT", "--kernel", "chunks-INPUT", "pool-INPUT"])
def test_output_that_is_an_input_is_refused(tmp_path, x_npy, monkeypatch, how, which):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "k.npy", np.array([[1.0, -1.0]]))
    src = tmp_path / ("k.npy" if which == "--kernel" else "x.npy")
    out = _alias(tmp_path, src, how)
    before = snapshot(tmp_path)
    if which == "pool-INPUT":
        args = ["pool", x_npy, "--size", "2", "-o", out]
    else:
        args = ["convolve", x_npy, "-k", tmp_path / "k.npy", "-o", out]
        if which == "chunks-INPUT":
            args += ["--chunks", "2"]
    name = "--kernel" if which == "--kernel" else "INPUT"
    refused(run(*args), 2,
            f"Error: Invalid value for -o: '{out}' is the {name} '{src}' (the same file); "
            "choose another output path (inputs are never overwritten)")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("how", ALIASES)
@pytest.mark.parametrize("which", ["--input", "--target"])
@pytest.mark.parametrize("option", ["-o", "--plot"])
def test_learn_kernel_outputs_that_are_inputs_are_refused(tmp_path, monkeypatch, how, which,
                                                          option):
    monkeypatch.chdir(tmp_path)
    X = np.ones((6, 8))
    X[:, 2:6] = 0
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", fc.corr2d(X, [[1, -1]]))
    src = tmp_path / ("X.npy" if which == "--input" else "Y.npy")
    out = _alias(tmp_path, src, how)
    before = snapshot(tmp_path)
    refused(run("learn-kernel", "--input", tmp_path / "X.npy", "--target", tmp_path / "Y.npy",
                "--kernel-size", "1x2", option, out), 2,
            f"Error: Invalid value for {option}: '{out}' is the {which} '{src}' (the same "
            "file); choose another output path (inputs are never overwritten)")
    assert snapshot(tmp_path) == before


def test_output_that_is_a_folder_or_in_a_missing_folder(tmp_path, x_npy):
    (tmp_path / "d.npy").mkdir()
    refused(run("convolve", x_npy, "-k", "edge", "-o", tmp_path / "d.npy"), 2,
            f"Error: Invalid value for -o: '{tmp_path / 'd.npy'}' is a folder; expected a "
            "file path (end it with '/' to write <INPUT stem>.<ext> into it)")
    refused(run("convolve", x_npy, "-k", "edge", "-o", x_npy / "y.npy"), 2,
            f"Error: Invalid value for -o: '{x_npy / 'y.npy'}': folder '{x_npy}' does not "
            "exist")


# ---------------------------------------------------------------- kernel literals


@pytest.mark.parametrize(
    "literal, message",
    [
        ("[[[[[1]]]]]", "'[[[[[1]]]]]': nested 5 deep; a kernel literal has at most 4 levels "
                        "(2-D to 4-D)"),
        ("[" * 100000 + "]" * 100000, None),  # a RecursionError for json without the check
        ("[[1e999, 1]]", "'[[1e999, 1]]': every kernel value must be a finite number (one "
                         "overflows a float64)"),
        ("[[" + "9" * 5000 + "]]", None),  # int() refuses > 4300 digits; float() gives inf
        ("[[" + "9" * 400 + "]]", None),  # an OverflowError for np.array(float64)
        ("[[NaN, 1]]", "'[[NaN, 1]]': not a valid array literal (NaN is not a finite number)"),
        ("[[-Infinity]]", "'[[-Infinity]]': not a valid array literal (-Infinity is not a "
                          "finite number)"),
        ("[[" + ",".join(["1"] * 60000) + "]]", None),  # longer than the limit
    ],
)
def test_hostile_kernel_literals_are_usage_errors(x_npy, literal, message):
    line = refused(run("convolve", x_npy, "-k", literal), 2)
    assert line.startswith("Error: Invalid value for '-k' / '--kernel': ")
    assert len(line) < 400  # a huge literal is shortened in the message
    if message is not None:
        assert line == f"Error: Invalid value for '-k' / '--kernel': {message}"


def test_literal_length_limit_is_documented_in_the_message(x_npy):
    from fastconv_cli.params import MAX_LITERAL_CHARS

    literal = "[[" + ",".join(["1"] * 60000) + "]]"
    assert refused(run("convolve", x_npy, "-k", literal), 2).endswith(
        f"a literal of {len(literal)} characters is too long (at most {MAX_LITERAL_CHARS}); "
        "save a large kernel as .npy")


# ---------------------------------------------------------------- named kernels


@pytest.mark.parametrize(
    "spec, message",
    [
        ("box:1000001", "kernel spec 'box:1000001': box: size=1000001 is too large: at most "
                        "MAX_SIZE=2047 (a 2047x2047 float64 kernel is 32 MiB); build larger "
                        "kernels yourself"),
        ("gaussian:99999999999999999999999:1", None),
        ("gaussian:3:1e-200", "kernel spec 'gaussian:3:1e-200': gaussian: sigma=1e-200 is too "
                              "small: sigma**2 underflows to 0 and the kernel would be NaN "
                              "(use sigma >= 1e-150)"),
    ],
)
def test_named_kernels_are_checked_before_building(x_npy, monkeypatch, spec, message):
    def no_allocation(*args, **kwargs):
        raise AssertionError("a kernel was allocated before the size check")

    monkeypatch.setattr(np, "full", no_allocation)
    line = refused(run("convolve", x_npy, "-k", spec), 2)
    if message is not None:
        assert line == (f"Error: Invalid value for '-k' / '--kernel': {message} (a kernel is a "
                        ".npy file, a literal like [[1,-1]], or a name from 'fastconv "
                        "kernels')")


def test_library_named_kernel_limits():
    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"box: size=1000001 is too large: at most "
                                         r"MAX_SIZE=2047"):
        kernels.box(1000001)
    with pytest.raises(ValueError, match=r"gaussian: sigma=1e-200 is too small"):
        kernels.gaussian(3, 1e-200)
    with pytest.raises(ValueError, match=r"get: kernel spec 'gaussian:3:1e-200': gaussian: "):
        kernels.get("gaussian:3:1e-200")
    assert time.perf_counter() - t < 1.0
    assert kernels.box(kernels.MAX_SIZE).shape == (2047, 2047)
    assert np.isfinite(kernels.gaussian(3, 1e-150)).all()  # the smallest documented sigma


def test_get_refuses_any_non_finite_kernel(monkeypatch):
    registry = dict(kernels._REGISTRY)
    registry["box"] = (lambda size=3: np.full((size, size), np.nan), ":SIZE", "broken")
    monkeypatch.setattr(kernels, "_REGISTRY", registry)
    with pytest.raises(ValueError, match=r"get: kernel spec 'box:3' gives a kernel with NaN "
                                         r"or inf values"):
        kernels.get("box:3")


# ------------------------------------------------------------------- huge ints


BIG = str(2**63)


@pytest.mark.parametrize(
    "args, option",
    [
        (["--stride", BIG], "--stride"),
        (["--dilation", BIG], "--dilation"),
        (["--padding", BIG], "--padding"),
        (["--padding", f"0:{BIG},1:1"], "--padding"),
        (["--stride", "9" * 5000], "--stride"),
        (["--padding", "1," + "9" * 5000], "--padding"),
    ],
)
def test_ints_beyond_int64_are_usage_errors(x_npy, args, option):
    line = refused(run("convolve", x_npy, "-k", "edge", *args), 2)
    assert line.startswith(f"Error: Invalid value for '{option}': ")
    assert line.endswith("too large; the largest value is 2**63-1 = 9223372036854775807")


@pytest.mark.parametrize(
    "args, start",
    [
        (["convolve", "X", "-k", "edge", "--groups", BIG], "Error: Invalid value for '--groups'"),
        (["convolve", "X", "-k", "edge", "-o", "Y", "--chunks", BIG],
         "Error: Invalid value for '--chunks'"),
        (["pool", "X", "--size", BIG], "Error: Invalid value for '--size'"),
        (["shape", "--input", f"{BIG}x8", "--kernel", "3"], "Error: Invalid value for '--input'"),
        (["shape", "--input", "8x8", "--layer", f"conv:k={BIG}"],
         "Error: Invalid value for '--layer'"),
        (["learn-kernel", "--input", "X", "--target", "X", "--kernel-size", f"1x{BIG}"],
         "Error: Invalid value for '--kernel-size'"),
        (["learn-kernel", "--input", "X", "--target", "X", "--kernel-size", "1x2", "--epochs",
          BIG], "Error: Invalid value for '--epochs'"),
    ],
)
def test_huge_ints_on_every_command(tmp_path, x_npy, args, start):
    args = [x_npy if a == "X" else tmp_path / "y.npy" if a == "Y" else a for a in args]
    assert refused(run(*args), 2).startswith(start)


def test_largest_int_reaches_the_library_as_a_data_error(x_npy):
    line = refused(run("convolve", x_npy, "-k", "edge", "--padding", str(2**63 - 1)), 1)
    assert line.startswith(f"Error: convolve '{x_npy}' with --kernel 'edge': ")


@pytest.mark.parametrize("lr", ["inf", "nan", "-inf"])
def test_non_finite_learning_rate_is_a_usage_error(x_npy, lr):
    line = refused(run("learn-kernel", "--input", x_npy, "--target", x_npy,
                       "--kernel-size", "1x1", "--lr", lr), 2)
    assert line.startswith("Error: Invalid value for '--lr': ")


# ------------------------------------------------------------------------- hangs


@pytest.mark.parametrize(
    "args, message",
    [
        (["--kernel", "1", "--repeat", "100000000"],
         "Error: Invalid value for '--repeat': 100000000 is not in the range 1<=x<=10000."),
        (["--layer", "100000000*conv:k=1"],
         "Error: Invalid value for '--layer': '100000000*conv:k=1': 100000000 repeats; at most "
         "10000 layers are computed"),
        (["--layer", "6000*conv:k=1", "--layer", "6000*pool:k=1"],
         "Error: Invalid value for --layer: the stack has 12000 layers; at most 10000 are "
         "computed"),
    ],
)
def test_shape_repeats_are_bounded(args, message):
    t = time.perf_counter()
    refused(run("shape", "--input", "8x8", *args), 2, message)
    assert time.perf_counter() - t < 2.0


def test_shape_at_the_repeat_limit_is_quick_and_right():
    t = time.perf_counter()
    result = run("shape", "--input", "20001x8", "--kernel", "3,1", "--repeat", "10000")
    assert result.exit_code == 0, result.output
    assert result.stdout == "1x8\n"
    assert time.perf_counter() - t < 5.0


# ------------------------------------------------------------- learn-kernel --plot


@pytest.fixture
def seed_pair(tmp_path):
    X = np.ones((6, 8))
    X[:, 2:6] = 0
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", fc.corr2d(X, [[1, -1]]))
    return tmp_path / "X.npy", tmp_path / "Y.npy"


def test_plot_of_a_diverging_fit_draws_the_finite_losses(tmp_path, seed_pair):
    x, y = seed_pair
    result = run("learn-kernel", "--input", x, "--target", y, "--kernel-size", "1x2",
                 "--lr", "1e200", "--seed", "0", "--plot", tmp_path / "loss.png")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and result.stderr == ""
    assert result.stdout.splitlines()[-1].startswith(
        f"wrote {tmp_path / 'loss.png'} (loss curve, 10 epochs, ")
    assert result.stdout.rstrip().endswith("non-finite not drawn)")
    from PIL import Image

    with Image.open(tmp_path / "loss.png") as img:
        assert img.size == (640, 400)


def test_plot_with_no_finite_loss_is_refused_and_writes_nothing(tmp_path, seed_pair):
    x, y = seed_pair
    X = np.load(x)
    X[0, 0] = np.nan
    np.save(x, X)
    before = snapshot(tmp_path)
    result = run("learn-kernel", "--input", x, "--target", y, "--kernel-size", "1x2",
                 "-o", tmp_path / "k.npy", "--plot", tmp_path / "loss.png")
    refused(result, 1,
            f"Error: --plot '{tmp_path / 'loss.png'}': no finite loss to draw (every loss is "
            "NaN or infinite: NaN in the data, or a diverging fit: try a smaller --lr)")
    assert snapshot(tmp_path) == before


# --------------------------------------------------------- unwritable, long names


def test_over_long_output_names(tmp_path, x_npy):
    name = "y" * 246 + ".npy"  # 250 characters: legal, and the temporary name stays short
    for extra in ([], ["--chunks", "3"]) if _has_dask() else ([],):
        out = tmp_path / name
        result = run("convolve", x_npy, "-k", "edge", "-o", out, *extra)
        assert result.exit_code == 0, result.output
        np.testing.assert_array_equal(np.load(out), fc.corr2d(np.load(x_npy), [[1, -1]]))
        out.unlink()
    too_long = tmp_path / ("y" * 252 + ".npy")  # 256 > NAME_MAX
    before = snapshot(tmp_path)
    refused(run("convolve", x_npy, "-k", "edge", "-o", too_long), 1,
            f"Error: -o '{too_long}': could not write (File name too long)")
    assert snapshot(tmp_path) == before


def _has_dask() -> bool:
    import importlib.util

    return importlib.util.find_spec("dask") is not None


def test_unwritable_folder(tmp_path, x_npy):
    target = Path("/proc/fastconv-test.npy")  # /proc refuses new files, even to root
    if not Path("/proc").is_dir():
        pytest.skip("no /proc")
    line = refused(run("convolve", x_npy, "-k", "edge", "-o", target), 1)
    assert line.startswith(f"Error: -o '{target}': could not write (")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            return  # root ignores permissions: /proc above was the check
        refused(run("convolve", x_npy, "-k", "edge", "-o", ro / "y.npy"), 1,
                f"Error: -o '{ro / 'y.npy'}': could not write (Permission denied)")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


def _fastconv(*args, limit_bytes: int | None = None, **popen):
    def child():
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # even when the test runner ignores it
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.Popen([sys.executable, "-m", "fastconv", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=child, **popen)


def test_a_cache_write_that_fails_does_not_fail_the_call(tmp_path):
    # an empty kernel cache and a file-size limit: the kernel compiles, its cache write
    # fails with EFBIG, the convolution still runs; only the output's write is reported
    np.save(tmp_path / "x.npy", np.ones((64, 64), np.float32))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    proc = _fastconv("convolve", tmp_path / "x.npy", "-k", "edge", "-o", tmp_path / "y.npy",
                     limit_bytes=4096, env=env)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert err.startswith(f"Error: -o '{tmp_path / 'y.npy'}': could not write ("), err


@pytest.mark.parametrize("chunks", [None, 16])
def test_write_error_is_one_line_and_leaves_nothing(tmp_path, chunks):
    # a full disk, as the kernel reports it: writes past RLIMIT_FSIZE fail with EFBIG
    if chunks and not _has_dask():
        pytest.skip("dask not installed (the dask extra)")
    np.save(tmp_path / "x.npy", np.ones((64, 64)))
    before = snapshot(tmp_path)
    extra = ["--chunks", chunks] if chunks else []
    proc = _fastconv("convolve", tmp_path / "x.npy", "-k", "edge", "-o", tmp_path / "y.npy",
                     *extra, limit_bytes=4096)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert err.strip().splitlines() == [err.strip()]
    assert err.startswith(f"Error: -o '{tmp_path / 'y.npy'}': could not write (")
    assert snapshot(tmp_path) == before


# -------------------------------------------------------------- interruptions


def test_sigterm_inside_a_write_in_process(tmp_path, x_npy, monkeypatch):
    """A real SIGTERM delivered while the output is being written: exit 143, one line,
    nothing left, and the caller's SIGTERM handler is back afterwards."""
    real_save = np.save

    def save_then_sigterm(fh, arr, allow_pickle=False):
        real_save(fh, arr, allow_pickle=allow_pickle)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler raises before this ends

    handler = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(np, "save", save_then_sigterm)
    (tmp_path / "y.npy").write_bytes(b"previous")
    before = snapshot(tmp_path)
    refused(run("convolve", x_npy, "-k", "edge", "-o", tmp_path / "y.npy"), 143,
            "Error: interrupted by SIGTERM; stopped, and no partial file was left")
    assert snapshot(tmp_path) == before
    assert signal.getsignal(signal.SIGTERM) is handler


def _big_job(tmp_path: Path) -> list:
    rng = np.random.default_rng(5)
    np.save(tmp_path / "big.npy", rng.standard_normal((1024, 1024)).astype(np.float32))
    return ["convolve", tmp_path / "big.npy", "-k", "box:5", "--padding", "same",
            "-o", tmp_path / "out.npy", "--chunks", 32]


def _signal_once_writing(proc, folder: Path, signum: int) -> str:
    """Send ``signum`` once the temporary output exists (the write has started)."""
    deadline = time.monotonic() + 60
    while not glob.glob(str(folder / ".fastconv-*")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the job never started writing"
        time.sleep(0.01)
    time.sleep(0.1)
    assert proc.poll() is None, "the job ended before the signal: make it bigger"
    proc.send_signal(signum)
    return proc.communicate(timeout=60)[1]


@needs_dask
@pytest.mark.parametrize("signum, code, name", [(signal.SIGTERM, 143, "SIGTERM"),
                                                (signal.SIGINT, 130, "SIGINT (Ctrl-C)")])
def test_signal_during_chunks_leaves_no_file(tmp_path, signum, code, name):
    args = _big_job(tmp_path)
    before = snapshot(tmp_path)
    proc = _fastconv(*args)
    err = _signal_once_writing(proc, tmp_path, signum)
    assert proc.returncode == code, err
    assert err == f"Error: interrupted by {name}; stopped, and no partial file was left\n"
    assert snapshot(tmp_path) == before


# ------------------------------------------------------- library out of core


@needs_dask
def test_ooc_sigterm_removes_the_temporary_file_and_still_terminates(tmp_path):
    _big_job(tmp_path)
    before = snapshot(tmp_path)
    code = ("import numpy as np, sys; from fastconv.ooc import convolve_file; "
            "convolve_file(sys.argv[1], sys.argv[2], np.ones((1, 1, 5, 5)), padding='same', "
            "chunks=32)")
    proc = subprocess.Popen([sys.executable, "-c", code, tmp_path / "big.npy",
                             tmp_path / "out.npy"], stderr=subprocess.PIPE, text=True)
    err = _signal_once_writing(proc, tmp_path, signal.SIGTERM)
    assert proc.returncode == -signal.SIGTERM, err  # killed by the signal, as without us
    assert snapshot(tmp_path) == before


@needs_dask
@pytest.mark.parametrize("func", ["convolve_file", "pool_file"])
def test_ooc_checks_everything_before_computing(tmp_path, monkeypatch, func):
    from fastconv import ooc

    def never(*args, **kwargs):
        raise AssertionError("computed before the checks")

    monkeypatch.setattr(ooc, "_write", never)
    np.save(tmp_path / "x.npy", np.ones((6, 6)))
    np.savez(tmp_path / "z.npz", a=np.ones((6, 6)))
    os.replace(tmp_path / "z.npz", tmp_path / "zip.npy")
    (tmp_path / "short.npy").write_bytes((tmp_path / "x.npy").read_bytes()[:-1])
    (tmp_path / "dir.npy").mkdir()
    os.link(tmp_path / "x.npy", tmp_path / "hard.npy")
    (tmp_path / "soft.npy").symlink_to(tmp_path / "x.npy")
    def call(src, dst):
        if func == "convolve_file":
            return ooc.convolve_file(src, dst, np.ones((1, 1, 2, 2)))
        return ooc.pool_file(src, dst, 2)

    x, before = tmp_path / "x.npy", snapshot(tmp_path)
    cases = [
        (x, tmp_path / "dir.npy", rf"{func}: output_path '.*dir.npy' is a folder; expected "
                                  "a file path"),
        (x, tmp_path / "hard.npy", rf"{func}: output_path '.*hard.npy' is the input_path "
                                   r"'.*x.npy' \(the same file\)"),
        (x, tmp_path / "soft.npy", rf"{func}: output_path '.*soft.npy' is the input_path"),
        (x, tmp_path / "no" / "y.npy", rf"{func}: output_path '.*y.npy': folder '.*no' does "
                                       "not exist"),
        (tmp_path / "zip.npy", tmp_path / "y.npy",
         rf"{func}: input_path '.*zip.npy': is a zip archive \(an .npz\), not a .npy file"),
        (tmp_path / "short.npy", tmp_path / "y.npy", rf"{func}: input_path '.*short.npy': is "
                                                     "truncated"),
    ]
    for src, dst, match in cases:
        with pytest.raises(ValueError, match=match):
            call(src, dst)
    assert snapshot(tmp_path) == before


@needs_dask
def test_ooc_long_output_name_and_fortran_input(tmp_path):
    from fastconv import ooc

    x = np.asfortranarray(np.arange(48.0).reshape(6, 8))
    np.save(tmp_path / "f.npy", x)
    out = tmp_path / ("y" * 246 + ".npy")
    ooc.pool_file(tmp_path / "f.npy", out, 2, chunks=3)
    np.testing.assert_array_equal(np.load(out), fc.max_pool2d(x[None], 2)[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["f.npy", out.name])


def test_files_header_reader_matches_numpy(tmp_path):
    for arr in (np.zeros((3, 4), np.float32), np.asfortranarray(np.ones((2, 5))),
                np.zeros((0, 3), np.int16), np.arange(5, dtype=">i8")):
        np.save(tmp_path / "a.npy", arr)
        header = _files.read_npy_header(tmp_path / "a.npy")
        mm = np.load(tmp_path / "a.npy", mmap_mode="r") if arr.size else arr
        assert (header.shape, header.dtype, header.nbytes) == (arr.shape, arr.dtype, arr.nbytes)
        if arr.size:
            assert header.offset == mm.offset
    (tmp_path / "v2.npy").write_bytes(npy_with_header((2,), data=b"\0" * 16, version=(2, 0)))
    assert _files.read_npy_header(tmp_path / "v2.npy").shape == (2,)


def test_huge_sigma_is_a_flat_kernel_not_an_overflow(x_npy):
    # sigma**2 raised OverflowError; sigma * sigma is inf and the kernel the flat limit
    np.testing.assert_array_equal(kernels.gaussian(3, 1e300), np.full((3, 3), 1 / 9))
    result = run("convolve", x_npy, "-k", "gaussian:3:1e300")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("bias", ["9" * 400, "9" * 5000, "-" + "9" * 30 + "e300"])
def test_bias_beyond_float64_is_a_usage_error(x_npy, bias):
    # a 30-digit int was silently read as 2**63; 400+ digits overflow a float64
    line = refused(run("convolve", x_npy, "-k", "edge", "--bias", bias), 2)
    assert line.startswith("Error: Invalid value for '--bias': ")
    assert line.endswith("expected a number or comma-separated numbers like 0.5,-1")


def test_bias_with_many_digits_keeps_its_value(x_npy):
    result = run("convolve", x_npy, "-k", "[[0]]", "--bias", "1" + "0" * 30)
    assert result.exit_code == 0, result.output
    assert "1.e+30" in result.stdout


# ------------------------------------------------------------------ CLI fuzzing


def test_fuzz_cli_seeded_cases():
    import fuzz_cli

    assert fuzz_cli.run(60, seed=20261201, out=None) == []


def test_fuzz_cli_detects_a_traceback_and_a_damaged_input(monkeypatch):
    import fuzz_cli

    import fastconv_cli.io as cli_io
    import fastconv_cli.main as main

    def crash(*args, **kwargs):
        raise AttributeError("'bytes' object has no attribute 'ndim'")

    monkeypatch.setattr(main, "as_spatial_stack", crash)
    monkeypatch.setattr(fuzz_cli, "make_case", lambda seed, i: ["convolve", "a2.npy", "-k",
                                                                "edge"])
    failures = fuzz_cli.run(2, seed=3, out=None)
    assert len(failures) == 2
    assert failures[1].startswith("FAIL case 1: exception AttributeError: AttributeError: "
                                  "'bytes' object has no attribute 'ndim'")
    assert "repro: python tests/fuzz_cli.py --seed 3 --case 1 -v" in failures[1]

    monkeypatch.undo()
    monkeypatch.setattr(cli_io, "check_output", lambda *args, **kwargs: None)  # no guard
    monkeypatch.setattr(fuzz_cli, "make_case", lambda seed, i: ["pool", "a2.npy", "--size",
                                                                "2", "-o", "./a2.npy"])
    failures = fuzz_cli.run(1, seed=3, out=None)
    assert len(failures) == 1 and "input files changed: ['a2.npy']" in failures[0]
