"""The ``fastconv`` command line: every command and option family through Click's
CliRunner, exact error lines and exit codes, atomic writes (no partial file after a
failure or Ctrl-C), an image round trip, the installed script, and the README tour."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import requires_scipy
from PIL import Image
from reference import conv_nd, corr2d_loop

import fastconv as fc
from fastconv_cli import io as cli_io
from fastconv_cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
SEED_X = np.arange(9.0).reshape(3, 3)
SEED_K = [[0, 1], [2, 3]]


def run(*args, cwd=None):
    """Invoke the CLI in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="fastconv",
                             catch_exceptions=False)


def edge_image() -> np.ndarray:
    X = np.ones((6, 8))
    X[:, 2:6] = 0
    return X


def error_line(result) -> str:
    """The last line of stderr, which must be the one ``Error:`` line."""
    lines = result.stderr.strip().splitlines()
    assert lines, f"no stderr; stdout was {result.stdout!r}"
    assert "Traceback" not in result.stderr
    return lines[-1]


def printed(result) -> np.ndarray:
    """Parse an array printed by the CLI (NumPy's str format)."""
    rows = [r for r in result.stdout.strip().splitlines() if r.strip()]
    values = [[float(v) for v in re.sub(r"[\[\]]", " ", r).split()] for r in rows]
    return np.array(values)


@pytest.fixture
def seed_npy(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, SEED_X)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# ------------------------------------------------------------------------ top level


def test_help_lists_every_command():
    result = run("--help")
    assert result.exit_code == 0
    for name in ("convolve", "pool", "shape", "learn-kernel", "kernels", "info", "demo"):
        assert re.search(rf"^\s+{name}\s", result.stdout, re.M), name


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"fastconv, version {fc.__version__}"


def test_unknown_command_is_a_usage_error():
    result = run("convolute")
    assert result.exit_code == 2
    assert error_line(result) == "Error: No such command 'convolute'. Did you mean 'convolve'?"


# --------------------------------------------------------------------------- shape


def test_shape_single_layer():
    result = run("shape", "--input", "8x8", "--kernel", "3", "--padding", "1", "--stride", "2")
    assert (result.exit_code, result.stdout) == (0, "4x4\n")
    assert run("shape", "--input", "8x8", "--kernel", "3").stdout == "6x6\n"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--input", "7x9", "--kernel", "3,5", "--padding", "same"], "7x9"),
        (["--input", "8x8", "--kernel", "2", "--padding", "0:1,0:1"], "8x8"),
        (["--input", "8x8", "--kernel", "3", "--padding", "full"], "10x10"),
        (["--input", "9x9", "--kernel", "3", "--dilation", "2"], "5x5"),
        (["--input", "5x5", "--kernel", "2", "--stride", "2"], "2x2"),
        (["--input", "5x5", "--kernel", "2", "--stride", "2", "--ceil-mode"], "3x3"),
        (["--input", "16", "--kernel", "3"], "14"),
        (["--input", "240x240", "--kernel", "5", "--repeat", "10"], "200x200"),
    ],
)
def test_shape_options(args, expected):
    result = run("shape", *args)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == expected + "\n"


def test_shape_layer_stack_table():
    # the seed's "240x240 through ten 5x5 convolutions gives 200x200", as one command
    result = run("shape", "--input", "240x240", "--layer", "10*conv:k=5")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "240x240 -> 200x200"
    assert "41x41" in result.stdout  # receptive field after ten 5x5 layers: 1 + 10*4


def test_shape_layer_stack_rows_match_shapes_module():
    result = run("shape", "--input", "32x32", "--layer", "conv:k=5,s=1,p=2",
                 "--layer", "pool:k=2", "--layer", "conv:k=3,d=2", "--layer", "pool:k=3,ceil=1")
    assert result.exit_code == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if re.match(r"^│\s+\d", line)]
    cells = [[c.strip() for c in r.strip("│").split("│")] for r in rows]
    # (output, receptive field, jump) by hand: 32 -> 32 (rf 5) -> 16 (rf 6, jump 2)
    # -> 12 (rf 6 + 2*2*2 = 14) -> ceil((12-3)/3)+1 = 4 (rf 14 + 2*2 = 18, jump 6)
    assert [c[2:] for c in cells] == [
        ["32x32", "5x5", "1x1"],
        ["16x16", "6x6", "2x2"],
        ["12x12", "14x14", "2x2"],
        ["4x4", "18x18", "6x6"],
    ]
    rf = fc.receptive_field([(5, 1), (2, 2), (3, 1, 2), (3, 3)])
    assert [r["size"] for r in rf] == [5, 6, 14, 18]


@pytest.mark.parametrize(
    "args, line",
    [
        (["--input", "8y8", "--kernel", "3"],
         "Error: Invalid value for '--input': '8y8': expected a size like 8x8 (ints >= 1, "
         "separated by 'x')"),
        (["--input", "8x8", "--kernel", "0"],
         "Error: Invalid value for '--kernel': '0': expected an int >= 1 or one per axis like 2,1"),
        (["--input", "8x8", "--kernel", "3", "--padding", "half"],
         "Error: Invalid value for '--padding': 'half': expected an int >= 0, one per axis like "
         "1,2, (before:after) pairs like 0:1,1:1, or one of same/valid/full"),
        (["--input", "8x8", "--layer", "dense:k=3"],
         "Error: Invalid value for '--layer': 'dense:k=3': expected a layer like "
         "conv:k=5,s=1,p=2 or pool:k=2 (optionally N*conv:... to repeat it)"),
        (["--input", "8x8", "--layer", "conv:s=2"],
         "Error: Invalid value for '--layer': 'conv:s=2': expected a layer like "
         "conv:k=5,s=1,p=2 or pool:k=2 (optionally N*conv:... to repeat it); k= (the kernel "
         "size) is required"),
        (["--input", "8x8"], "Error: missing --kernel (one layer) or --layer (a stack)"),
        (["--input", "8x8", "--kernel", "3", "--layer", "conv:k=3"],
         "Error: give either --kernel (one layer) or --layer (a stack), not both"),
    ],
)
def test_shape_usage_errors(args, line):
    result = run("shape", *args)
    assert result.exit_code == 2
    assert error_line(result) == line
    assert result.stderr.startswith("Usage: fastconv shape")


def test_shape_too_small_is_a_data_error():
    result = run("shape", "--input", "4x4", "--kernel", "5")
    assert result.exit_code == 1
    assert error_line(result) == (
        "Error: shape: output_shape: kernel larger than the padded input: padded input (4, 4) "
        "vs dilated kernel (5, 5) gives output size (0, 0) < 1"
    )
    result = run("shape", "--input", "8x8", "--layer", "pool:k=2,p=2")
    assert result.exit_code == 1
    assert error_line(result) == (
        "Error: --layer 'pool:k=2,p=2' (layer 1): pool padding p=2 must be at most half the "
        "window, k // 2 = 1 (k=2, d=1)"
    )
    # the library's rule (PyTorch's k // 2), dilation or not: the table never shows a
    # layer that max_pool2d refuses
    result = run("shape", "--input", "8x8", "--layer", "pool:k=3,d=2,p=2")
    assert result.exit_code == 1
    assert "p=2 must be at most half the window, k // 2 = 1 (k=3, d=2)" in error_line(result)
    with pytest.raises(ValueError, match="at most half the window"):
        fc.max_pool2d(np.zeros((1, 8, 8)), 3, padding=2, dilation=2)


def _modules_after(args: list[str]) -> set[str]:
    code = (
        "import sys\n"
        "from fastconv_cli.main import cli\n"
        f"try:\n    cli.main(args={args!r}, prog_name='fastconv')\n"
        "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return set(out.stdout.split("\n")[-2].split())


@pytest.mark.parametrize(
    "args",
    [["--help"], ["shape", "--input", "8x8", "--kernel", "3"],
     ["shape", "--input", "32x32", "--layer", "conv:k=5", "--layer", "pool:k=2"]],
)
def test_help_and_shape_do_not_import_numba(args):
    modules = _modules_after(args)
    assert "fastconv_cli" in modules
    assert "numba" not in modules
    assert "llvmlite" not in modules


# ------------------------------------------------------------------------ convolve


def test_convolve_prints_seed_example(seed_npy):
    result = run("convolve", seed_npy, "-k", "[[0, 1], [2, 3]]")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "[[19. 25.]\n [37. 43.]]\n"


def test_convolve_edge_named_and_literal_agree(tmp_path):
    np.save(tmp_path / "e.npy", edge_image())
    a = run("convolve", tmp_path / "e.npy", "-k", "edge", "-o", tmp_path / "a.npy")
    b = run("convolve", tmp_path / "e.npy", "-k", "[[1,-1]]", "-o", tmp_path / "b.npy")
    assert (a.exit_code, b.exit_code) == (0, 0)
    assert a.stdout == f"wrote {tmp_path / 'a.npy'} (float64, 6x7)\n"
    ya, yb = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    np.testing.assert_array_equal(ya, corr2d_loop(edge_image(), [[1, -1]]))
    np.testing.assert_array_equal(ya, yb)


def test_convolve_kernel_from_npy_file_and_named_with_arguments(tmp_path, rng):
    x = rng.standard_normal((9, 11)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    k = rng.standard_normal((3, 2))
    np.save(tmp_path / "k.npy", k)
    for spec, kernel in (("k.npy", k), ("gaussian:5:1.5", fc.kernels.gaussian(5, 1.5)),
                         ("sobel-x", fc.kernels.sobel_x), ("box:3", fc.kernels.box(3))):
        arg = tmp_path / spec if spec.endswith(".npy") else spec
        result = run("convolve", tmp_path / "x.npy", "-k", arg, "-o", tmp_path / "y.npy")
        assert result.exit_code == 0, result.stderr
        y = np.load(tmp_path / "y.npy")
        assert y.dtype == np.float32  # the kernel follows the input's precision
        ref = conv_nd(x[None, None], np.asarray(kernel)[None, None])[0, 0]
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "opts, kw",
    [
        (["--stride", "2"], dict(stride=2)),
        (["--stride", "2,1", "--dilation", "1,2"], dict(stride=(2, 1), dilation=(1, 2))),
        (["--padding", "1"], dict(padding_pairs=[(1, 1), (1, 1)])),
        (["--padding", "1,2"], dict(padding_pairs=[(1, 1), (2, 2)])),
        (["--padding", "0:1,2:0"], dict(padding_pairs=[(0, 1), (2, 0)])),
        (["--padding", "same"], dict(padding_pairs=[(1, 1), (0, 1)])),
        (["--padding", "full"], dict(padding_pairs=[(2, 2), (1, 1)])),
        (["--padding", "2", "--padding-mode", "reflect"],
         dict(padding_pairs=[(2, 2), (2, 2)], padding_mode="reflect")),
        (["--padding", "1", "--padding-mode", "replicate"],
         dict(padding_pairs=[(1, 1), (1, 1)], padding_mode="replicate")),
        (["--padding", "1", "--padding-mode", "circular"],
         dict(padding_pairs=[(1, 1), (1, 1)], padding_mode="circular")),
        (["--bias", "0.5"], dict(bias=[0.5])),
        (["--device", "cpu"], {}),
    ],
)
def test_convolve_options_match_reference(tmp_path, rng, opts, kw):
    x = rng.standard_normal((7, 8))
    k = rng.standard_normal((3, 2))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "k.npy", k)
    result = run("convolve", tmp_path / "x.npy", "-k", tmp_path / "k.npy", *opts,
                 "-o", tmp_path / "y.npy")
    assert result.exit_code == 0, result.stderr
    ref = conv_nd(x[None, None], k[None, None], **kw)[0, 0]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ref, rtol=1e-12, atol=1e-12)


@requires_scipy
def test_convolve_flip_is_true_convolution(tmp_path, rng):
    from scipy.signal import convolve2d

    x = rng.standard_normal((6, 9))
    k = rng.standard_normal((2, 3))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "k.npy", k)
    result = run("convolve", tmp_path / "x.npy", "-k", tmp_path / "k.npy", "--flip",
                 "-o", tmp_path / "y.npy")
    assert result.exit_code == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), convolve2d(x, k, mode="valid"),
                               rtol=1e-12, atol=1e-12)


def test_convolve_channel_rules(tmp_path, rng):
    x3 = rng.standard_normal((3, 6, 7))
    np.save(tmp_path / "x3.npy", x3)
    k2 = rng.standard_normal((2, 2))
    # 2-D kernel on a (C, H, W) input: depthwise, the output keeps C channels
    result = run("convolve", tmp_path / "x3.npy", "-k", k2.tolist().__repr__(),
                 "-o", tmp_path / "y.npy")
    assert result.exit_code == 0, result.stderr
    y = np.load(tmp_path / "y.npy")
    ref = conv_nd(x3[None], np.broadcast_to(k2, (3, 1, 2, 2)), groups=3)[0]
    np.testing.assert_allclose(y, ref, rtol=1e-12)
    # 3-D kernel (C, kH, kW): one output channel summed over channels (the seed's 56/72)
    X = np.stack([SEED_X, SEED_X + 1])
    np.save(tmp_path / "xc.npy", X)
    result = run("convolve", tmp_path / "xc.npy", "-k", "[[[0,1],[2,3]],[[1,2],[3,4]]]")
    assert result.exit_code == 0, result.stderr
    np.testing.assert_array_equal(printed(result), [[56, 72], [104, 120]])
    # 4-D kernel with groups, on a 4-D (N, C, H, W) input, with a bias per channel
    x4 = rng.standard_normal((2, 4, 5, 6))
    w4 = rng.standard_normal((6, 2, 3, 3))
    np.save(tmp_path / "x4.npy", x4)
    np.save(tmp_path / "w4.npy", w4)
    result = run("convolve", tmp_path / "x4.npy", "-k", tmp_path / "w4.npy", "--groups", "2",
                 "--bias", "1,2,3,4,5,6", "-o", tmp_path / "y4.npz")
    assert result.exit_code == 0, result.stderr
    with np.load(tmp_path / "y4.npz") as z:
        assert z.files == ["result"]
        y4 = z["result"]
    np.testing.assert_allclose(y4, conv_nd(x4, w4, bias=np.arange(1.0, 7.0), groups=2),
                               rtol=1e-12, atol=1e-12)


def test_convolve_npz_input_with_key(tmp_path):
    np.savez(tmp_path / "two.npz", a=edge_image(), b=edge_image().T)
    result = run("convolve", tmp_path / "two.npz", "--key", "b", "-k", "[[1],[-1]]")
    assert result.exit_code == 0, result.stderr
    np.testing.assert_array_equal(printed(result), corr2d_loop(edge_image().T, [[1], [-1]]))
    np.savez(tmp_path / "one.npz", only=SEED_X)
    result = run("convolve", tmp_path / "one.npz", "-k", "[[0,1],[2,3]]")
    assert result.stdout == "[[19. 25.]\n [37. 43.]]\n"


def test_convolve_large_result_is_summarised(tmp_path, rng):
    x = rng.random((40, 40), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    result = run("convolve", tmp_path / "x.npy", "-k", "[[1]]")
    assert result.exit_code == 0
    assert result.stdout == (
        f"float32 array, shape (40, 40): min {x.min():.6g}, max {x.max():.6g}, "
        f"mean {x.mean(dtype=np.float64):.6g} (use -o FILE to save it)\n"
    )


@pytest.mark.skipif("cuda" in fc.devices(), reason="a GPU is usable here")
def test_convolve_cuda_without_gpu_is_a_data_error(seed_npy):
    result = run("convolve", seed_npy, "-k", "[[1]]", "--device", "cuda")
    assert result.exit_code == 1
    assert error_line(result).startswith(
        f"Error: convolve '{seed_npy}' with --kernel '[[1]]': conv2d: device='cuda' requested "
        "but no usable CUDA GPU was found"
    )


# ------------------------------------------------------------------- error lines


def test_pickled_object_array_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    result = run("convolve", tmp_path / "obj.npy", "-k", "[[1]]", "-o", tmp_path / "y.npy")
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: INPUT '{tmp_path / 'obj.npy'}': contains pickled Python objects, which are "
        "refused (read with allow_pickle=False); expected a numeric array"
    )
    assert not (tmp_path / "y.npy").exists()


@pytest.mark.parametrize(
    "kernel, message",
    [
        ("[[1,2],[3]]", "'[[1,2],[3]]': rows have different lengths; expected a rectangular "
                        "array"),
        ("[[1,-1]", "'[[1,-1]': not a valid array literal (Expecting ',' delimiter); expected "
                    "nested lists of numbers like [[1,-1]]"),
        ("[[true, 1]]", "'[[true, 1]]': expected nested lists of numbers like [[1,-1]]"),
        ("__import__('os')", "\"__import__('os')\": expected a .npy file, a named kernel "
                             "like sobel-x or gaussian:5:1.0, or a literal like [[1,-1]]"),
        ("sobel-z", "unknown kernel 'sobel-z'; valid names are identity, edge, sobel_x, "
                    "sobel_y, prewitt_x, prewitt_y, laplace, laplace8, second_derivative, "
                    "sharpen, emboss, box, gaussian (a kernel is a .npy file, a literal like "
                    "[[1,-1]], or a name from 'fastconv kernels')"),
        ("gaussian:4", "kernel spec 'gaussian:4': gaussian: size must be an odd int >= 1 (the "
                       "kernel needs a centre pixel), got size=4 (a kernel is a .npy file, a "
                       "literal like [[1,-1]], or a name from 'fastconv kernels')"),
        ("missing.npy", "'missing.npy': file does not exist"),
    ],
)
def test_bad_kernel_is_a_usage_error(seed_npy, kernel, message):
    result = run("convolve", seed_npy, "-k", kernel)
    assert result.exit_code == 2
    assert error_line(result) == f"Error: Invalid value for '-k' / '--kernel': {message}"


def test_usage_errors_name_file_and_parameter(tmp_path, seed_npy):
    result = run("convolve", tmp_path / "nope.npy", "-k", "edge")
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: Invalid value for 'INPUT': File '{tmp_path / 'nope.npy'}' does not exist."
    )
    (tmp_path / "x.csv").write_text("1,2\n")
    result = run("convolve", tmp_path / "x.csv", "-k", "edge")
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: Invalid value for INPUT: '{tmp_path / 'x.csv'}': unknown file type; expected "
        ".npy, .npz or an image (.png/.jpg/.tif/.bmp)"
    )
    result = run("convolve", seed_npy, "-k", "edge", "-o", seed_npy)
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: Invalid value for -o: '{seed_npy}' is the INPUT '{seed_npy}' (the same file); "
        "choose another output path (inputs are never overwritten)"
    )
    out = tmp_path / "no" / "y.npy"
    result = run("convolve", seed_npy, "-k", "edge", "-o", out)
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: Invalid value for -o: '{out}': folder '{tmp_path / 'no'}' does not exist"
    )
    result = run("convolve", seed_npy, "-k", "edge", "-o", tmp_path / "y.txt")
    assert result.exit_code == 2
    assert "unknown output type" in error_line(result)
    result = run("convolve", seed_npy, "-k", "edge", "--padding-mode", "mirror")
    assert result.exit_code == 2
    assert error_line(result) == (
        "Error: Invalid value for '--padding-mode': 'mirror' is not one of 'zeros', 'reflect', "
        "'replicate', 'circular'."
    )
    result = run("convolve", seed_npy, "-k", "edge", "--stride", "0")
    assert result.exit_code == 2
    assert error_line(result) == (
        "Error: Invalid value for '--stride': '0': expected an int >= 1 or one per axis like 2,1"
    )


def test_npz_key_errors(tmp_path):
    np.savez(tmp_path / "two.npz", a=SEED_X, b=SEED_X)
    result = run("convolve", tmp_path / "two.npz", "-k", "edge")
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: Invalid value for --key: '{tmp_path / 'two.npz'}' holds 2 arrays ['a', 'b']; "
        "choose one with --key"
    )
    result = run("convolve", tmp_path / "two.npz", "-k", "edge", "--key", "c")
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: Invalid value for --key: 'c' is not in '{tmp_path / 'two.npz'}'; expected one "
        "of ['a', 'b']"
    )


def test_data_errors_exit_1(tmp_path, seed_npy):
    result = run("convolve", seed_npy, "-k", "[[1,1,1,1]]")
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: convolve '{seed_npy}' with --kernel '[[1,1,1,1]]': conv2d: kernel larger than "
        "the padded input: padded input (3, 3) vs dilated kernel (1, 4) gives output size "
        "(3, 0) < 1 (x.shape=(1, 3, 3), weight.shape=(1, 1, 1, 4))"
    )
    np.save(tmp_path / "c.npy", np.ones((2, 2), dtype=np.complex128))
    result = run("convolve", tmp_path / "c.npy", "-k", "[[1]]")
    assert result.exit_code == 1
    assert error_line(result).startswith(
        f"Error: convolve '{tmp_path / 'c.npy'}' with --kernel '[[1]]': conv2d: x has dtype "
        "complex128; expected a real numeric dtype"
    )
    np.save(tmp_path / "v.npy", np.ones(5))
    result = run("convolve", tmp_path / "v.npy", "-k", "[[1]]")
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: INPUT '{tmp_path / 'v.npy'}': expected a 2-D (H, W), 3-D (C, H, W) or 4-D "
        "(N, C, H, W) array, got shape (5,)"
    )
    (tmp_path / "bad.npy").write_bytes(b"not numpy at all")
    result = run("convolve", tmp_path / "bad.npy", "-k", "[[1]]")
    assert result.exit_code == 1
    assert error_line(result).startswith(f"Error: INPUT '{tmp_path / 'bad.npy'}': ")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    result = run("convolve", tmp_path / "bad.png", "-k", "[[1]]")
    assert result.exit_code == 1
    assert error_line(result).startswith(
        f"Error: INPUT '{tmp_path / 'bad.png'}': not a readable image ("
    )
    result = run("convolve", seed_npy, "-k", "[[1,1],[1,1]]", "--bias", "1,2")
    assert result.exit_code == 1
    assert error_line(result) == (
        "Error: --bias: expected 1 or K=1 values (one per output channel), got 2"
    )
    np.save(tmp_path / "x3.npy", np.ones((3, 4, 4)))
    result = run("convolve", tmp_path / "x3.npy", "-k", "[[1]]", "--groups", "2")
    assert result.exit_code == 2
    assert error_line(result) == (
        "Error: Invalid value for --groups: a 2-D kernel is applied to each of the 3 channels "
        "(groups=3); got --groups 2. Give a 4-D (K, C/groups, kH, kW) kernel instead"
    )


# -------------------------------------------------------- atomic writes, interruptions


@pytest.mark.parametrize(
    "exc, code, last_line",
    [
        (ValueError("boom mid-run"), 1,
         "Error: convolve '{x}' with --kernel 'edge': boom mid-run"),
        (KeyboardInterrupt(), 130,  # Ctrl-C during the computation: 128 + SIGINT
         "Error: interrupted by SIGINT (Ctrl-C); stopped, and no partial file was left"),
    ],
)
def test_failed_run_leaves_no_file(tmp_path, seed_npy, monkeypatch, exc, code, last_line):
    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(fc, "conv2d", fail)
    out = tmp_path / "y.npy"
    result = run("convolve", seed_npy, "-k", "edge", "-o", out)
    assert result.exit_code == code
    assert error_line(result) == last_line.format(x=seed_npy)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_interrupted_write_keeps_existing_output(tmp_path, seed_npy, monkeypatch, exc):
    out = tmp_path / "y.npy"
    out.write_bytes(b"previous result")
    real_save = np.save

    def half_write(fh, arr, allow_pickle=False):
        real_save(fh, arr[:1], allow_pickle=allow_pickle)  # some bytes reach the temp file
        raise exc

    monkeypatch.setattr(np, "save", half_write)
    result = run("convolve", seed_npy, "-k", "edge", "-o", out)
    assert result.exit_code == (130 if isinstance(exc, KeyboardInterrupt) else 1)
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "y.npy"]


def test_image_write_failure_leaves_no_file(tmp_path, seed_npy):
    np.save(tmp_path / "x4.npy", np.ones((4, 5, 5)))
    out = tmp_path / "y.png"
    result = run("convolve", tmp_path / "x4.npy", "-k", "[[1]]", "-o", out)
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: -o '{out}': a result of shape (4, 5, 5) cannot be saved as an image (expected "
        "(H, W), (1, H, W) or (3, H, W)); use .npy or .npz"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "x4.npy"]


def test_atomic_write_replaces_existing(tmp_path):
    out = tmp_path / "y.npy"
    out.write_bytes(b"old")
    cli_io.save_array(str(out), np.arange(3.0))
    np.testing.assert_array_equal(np.load(out), np.arange(3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.npy"]


# ---------------------------------------------------------------------------- images


def photo_like(h=48, w=64, seed=0) -> np.ndarray:
    """A small synthetic scene: a vertical gradient sky, a bright disc, a dark block."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 60 + 120 * yy / h
    img[(yy - 14) ** 2 + (xx - 44) ** 2 < 64] = 240
    img[30:44, 8:30] = 20
    img += rng.normal(0, 2, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_image_round_trip_edge_detection(tmp_path):
    grey = photo_like()
    Image.fromarray(grey, mode="L").save(tmp_path / "scene.png")
    result = run("convolve", tmp_path / "scene.png", "-k", "sobel-x", "--padding", "same",
                 "-o", tmp_path / "edges.png")
    assert result.exit_code == 0, result.stderr
    with Image.open(tmp_path / "edges.png") as img:
        assert img.mode == "L"
        edges = np.asarray(img)
    ref = conv_nd(grey[None, None].astype(np.float64), fc.kernels.sobel_x[None, None],
                  padding_pairs=[(1, 1), (1, 1)])[0, 0]
    lo, hi = ref.min(), ref.max()
    expected = np.rint((ref - lo) * 255 / (hi - lo))
    assert edges.shape == grey.shape
    assert np.abs(edges.astype(int) - expected).max() <= 1  # float32 vs float64 rounding
    assert edges.min() == 0 and edges.max() == 255


def test_rgb_image_is_three_channels(tmp_path):
    rgb = np.stack([photo_like(seed=s) for s in range(3)], axis=-1)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "rgb.png")
    result = run("convolve", tmp_path / "rgb.png", "-k", "box:3", "-o", tmp_path / "y.npy")
    assert result.exit_code == 0, result.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (3, 46, 62) and y.dtype == np.float32
    ref = conv_nd(rgb.transpose(2, 0, 1)[None], np.broadcast_to(fc.kernels.box(3), (3, 1, 3, 3)),
                  groups=3)[0]
    np.testing.assert_allclose(y, ref, rtol=1e-5)
    result = run("convolve", tmp_path / "rgb.png", "-k", "box:3", "-o", tmp_path / "y.jpg")
    assert result.exit_code == 0, result.stderr
    with Image.open(tmp_path / "y.jpg") as img:
        assert (img.mode, img.size) == ("RGB", (62, 46))


def test_to_uint8_rescales_and_handles_constant_and_nan():
    np.testing.assert_array_equal(cli_io.to_uint8(np.array([-1.0, 0.0, 1.0])), [0, 128, 255])
    np.testing.assert_array_equal(cli_io.to_uint8(np.full(3, 7.0)), [0, 0, 0])
    np.testing.assert_array_equal(cli_io.to_uint8(np.array([np.nan, 0.0, 2.0])), [0, 0, 255])


# ------------------------------------------------------------------------------ pool


def test_pool_seed_examples(seed_npy, tmp_path):
    result = run("pool", seed_npy, "--size", "2", "--stride", "1")
    assert (result.exit_code, result.stdout) == (0, "[[4. 5.]\n [7. 8.]]\n")
    result = run("pool", seed_npy, "--size", "2", "--stride", "1", "--mode", "avg")
    assert (result.exit_code, result.stdout) == (0, "[[2. 3.]\n [5. 6.]]\n")
    np.save(tmp_path / "x16.npy", np.arange(16.0).reshape(1, 4, 4))
    result = run("pool", tmp_path / "x16.npy", "--size", "3")
    assert result.stdout == "[[[10.]]]\n"
    result = run("pool", tmp_path / "x16.npy", "--size", "3", "--padding", "1", "--stride", "2")
    np.testing.assert_array_equal(printed(result), [[5, 7], [13, 15]])
    result = run("pool", tmp_path / "x16.npy", "--size", "2,3", "--padding", "1,1",
                 "--stride", "2,3")
    np.testing.assert_array_equal(printed(result), [[1, 3], [9, 11], [13, 15]])


def test_pool_ceil_mode_and_output(tmp_path, rng):
    x = rng.standard_normal((2, 5, 5))
    np.save(tmp_path / "x.npy", x)
    result = run("pool", tmp_path / "x.npy", "--size", "2", "--ceil-mode", "-o",
                 tmp_path / "y.npy")
    assert result.exit_code == 0, result.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (2, 3, 3)
    xp = np.pad(x, ((0, 0), (0, 1), (0, 1)), constant_values=-np.inf)
    ref = xp.reshape(2, 3, 2, 3, 2).max(axis=(2, 4))
    np.testing.assert_array_equal(y, ref)


def test_pool_errors(seed_npy):
    result = run("pool", seed_npy, "--size", "3", "--padding", "2")
    assert result.exit_code == 1
    assert error_line(result).startswith(
        f"Error: pool '{seed_npy}': max_pool2d: padding=(2, 2) must be at most half the window"
    )
    result = run("pool", seed_npy, "--size", "2", "--mode", "median")
    assert result.exit_code == 2
    assert error_line(result) == (
        "Error: Invalid value for '--mode': 'median' is not one of 'max', 'avg'."
    )
    result = run("pool", seed_npy)
    assert result.exit_code == 2
    assert error_line(result) == ("Error: Missing option '--size' (a window) or '--adaptive' "
                                  "(an output size).")


# --------------------------------------------------------------- kernels, info, demo


def test_kernels_lists_the_registry():
    result = run("kernels")
    assert result.exit_code == 0
    for name in fc.kernels.names():
        assert fc.kernels.usage(name).replace("_", "-") in result.stdout


def test_info():
    import numba

    result = run("info")
    assert result.exit_code == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["fastconv"] == fc.__version__
    assert lines["numpy"] == np.__version__
    assert lines["numba"] == numba.__version__
    assert lines["devices"].split(", ") == fc.devices()
    assert lines["threads"].startswith(str(numba.get_num_threads()))
    assert "kernel" in lines and "cache" in lines["kernel"]


def test_demo_runs_the_seed_story():
    result = run("demo")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "skipped" not in out
    assert "[[19. 25.]\n [37. 43.]]" in out
    assert "[[ 56.  72.]\n [104. 120.]]" in out
    assert "[[ 96. 128.]\n  [192. 224.]]]" in out
    assert "[[4. 5.]\n [7. 8.]]" in out and "[[2. 3.]\n [5. 6.]]" in out
    assert out.count("[[ 5.  7.]\n [13. 15.]]") == 2  # padding 1 stride 2; (2, 3) window
    assert ("max_pool2d(X16, (2, 3), padding=(0, 1), stride=(2, 3)) =\n"
            "[[ 5.  7.]\n [13. 15.]]") in out
    assert [int(e) for e in re.findall(r"^epoch (\d+), loss", out, re.M)] == [2, 4, 6, 8, 10]


# --------------------------------------------------------- installed script, README


def installed_script() -> str:
    found = Path(sys.executable).with_name("fastconv")
    return str(found) if found.exists() else shutil.which("fastconv")


def test_installed_script_and_python_m(tmp_path, seed_npy):
    script = installed_script()
    assert script, "the fastconv console script is not installed (pip install -e .)"
    out = subprocess.run([script, "convolve", str(seed_npy), "-k", "[[0,1],[2,3]]"],
                         capture_output=True, text=True, timeout=300)
    assert (out.returncode, out.stdout) == (0, "[[19. 25.]\n [37. 43.]]\n")
    out = subprocess.run([script, "shape", "--input", "x8", "--kernel", "3"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == (
        "Error: Invalid value for '--input': 'x8': expected a size like 8x8 (ints >= 1, "
        "separated by 'x')"
    )
    assert "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "fastconv", "shape", "--input", "8x8",
                          "--kernel", "3", "--padding", "1", "--stride", "2"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert (out.returncode, out.stdout) == (0, "4x4\n")


def readme_cli_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("<!-- section:cli -->")
    return text[start : text.index("<!-- /section:cli -->", start)]


def readme_examples() -> list[tuple[str, list[str]]]:
    """(command line, expected output lines) for every ``$ `` line of a console block."""
    examples = []
    for block in re.findall(r"```console\n(.*?)```", readme_cli_section(), re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                examples.append((line[2:], []))
            else:
                examples[-1][1].append(line.rstrip())
    return examples


def test_every_command_is_in_the_readme():
    section = readme_cli_section()
    for name in cli.commands:
        assert f"`fastconv {name}" in section or f"$ fastconv {name}" in section, name
    assert "](docs/edges.png)" in section


def test_readme_examples_run(tmp_path, monkeypatch):
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "scene.png", tmp_path / "docs" / "scene.png")
    monkeypatch.chdir(tmp_path)
    examples = readme_examples()
    assert len(examples) >= 10
    for line, expected in examples:
        argv = shlex.split(line, comments=True)
        if argv[0] == "python":
            subprocess.run([sys.executable, *argv[1:]], check=True, timeout=60)
            output = ""
        else:
            assert argv[0] == "fastconv", line
            result = CliRunner().invoke(cli, argv[1:], prog_name="fastconv")
            assert not isinstance(result.exception, (AssertionError, AttributeError)), line
            output = result.output
        if "output varies" in line:
            continue
        got = [r.rstrip() for r in output.splitlines()]
        assert got == expected, line
    # the README's picture is what the command makes from the shipped scene
    for name in ("edges.png", "loss.png"):
        with Image.open(ROOT / "docs" / name) as a, Image.open(tmp_path / "docs" / name) as b:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_readme_scene_is_regenerated_by_the_script():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from make_scene import scene
    finally:
        sys.path.remove(str(ROOT / "docs"))
    with Image.open(ROOT / "docs" / "scene.png") as img:
        np.testing.assert_array_equal(np.asarray(img), scene())


# ---------------------------------------------------------------------- learn-kernel


@pytest.fixture
def seed_pair(tmp_path):
    X = edge_image()
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", corr2d_loop(X, [[1, -1]]))
    return tmp_path / "X.npy", tmp_path / "Y.npy"


def test_learn_kernel_seed_story(tmp_path, seed_pair):
    x, y = seed_pair
    result = run("learn-kernel", "--input", x, "--target", y, "--kernel-size", "1x2",
                 "--seed", "3", "-o", tmp_path / "K.npy", "--plot", tmp_path / "loss.png")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    epochs = [re.fullmatch(r"epoch (\d+), loss (\d+\.\d{3})", ln) for ln in lines[:5]]
    assert [int(m.group(1)) for m in epochs] == [2, 4, 6, 8, 10]
    losses = [float(m.group(2)) for m in epochs]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 1.0
    kernel = np.load(tmp_path / "K.npy")
    assert kernel.shape == (1, 2)
    np.testing.assert_allclose(kernel, [[1, -1]], atol=0.25)
    assert lines[5:7] == ["kernel:", np.array2string(kernel, precision=4, suppress_small=True)]
    assert lines[7:] == [f"wrote {tmp_path / 'K.npy'} (float64, 1x2)",
                         f"wrote {tmp_path / 'loss.png'} (loss curve, 10 epochs)"]
    with Image.open(tmp_path / "loss.png") as img:
        assert (img.format, img.size) == ("PNG", (640, 400))
        pixels = np.asarray(img.convert("L"))
    assert (pixels < 128).sum() > 500  # axes, labels and the curve were drawn


def test_learn_kernel_options(tmp_path, seed_pair):
    x, y = seed_pair
    result = run("learn-kernel", "--input", x, "--target", y, "--kernel-size", "1x2",
                 "--seed", "0", "--optimizer", "adam", "--lr", "0.1", "--epochs", "60",
                 "--bias", "--every", "20", "-o", tmp_path / "K.npz")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [ln.split(",")[0] for ln in lines[:3]] == ["epoch 20", "epoch 40", "epoch 60"]
    assert lines[5].startswith("bias: ")
    with np.load(tmp_path / "K.npz") as z:
        np.testing.assert_allclose(z["kernel"], [[1, -1]], atol=0.25)


def test_learn_kernel_errors(tmp_path, seed_pair):
    x, y = seed_pair
    result = run("learn-kernel", "--input", x, "--target", y, "--kernel-size", "2x2")
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: learn-kernel --input '{x}' --target '{y}': learn_kernel: y must be the 'valid' "
        "output of x and a (2, 2) kernel, spatial size (5, 7), got x.shape=(6, 8) and "
        "y.shape=(6, 7)"
    )
    result = run("learn-kernel", "--input", x, "--target", y, "--kernel-size", "1x2", "-o", y)
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: Invalid value for -o: '{y}' is the --target '{y}' (the same file); choose "
        "another output path (inputs are never overwritten)"
    )
    result = run("learn-kernel", "--input", x, "--target", y, "--kernel-size", "1x2",
                 "--optimizer", "rmsprop")
    assert result.exit_code == 2
    assert error_line(result) == (
        "Error: Invalid value for '--optimizer': 'rmsprop' is not one of 'sgd', 'adam'."
    )
    result = run("learn-kernel", "--input", x, "--target", y, "--kernel-size", "1x2",
                 "--lr", "0")
    assert result.exit_code == 2
    assert error_line(result) == (
        "Error: Invalid value for '--lr': 0.0 is not in the range x>0."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X.npy", "Y.npy"]


# --- out of core (--chunks): .npy in, .npy out, through Dask --------------------------


@pytest.mark.parametrize("chunks", [7, 64])
def test_convolve_out_of_core_equals_in_memory(tmp_path, chunks):
    pytest.importorskip("dask", reason="dask not installed (the dask extra)")
    rng = np.random.default_rng(21)
    np.save(tmp_path / "x.npy", rng.standard_normal((2, 40, 33)).astype(np.float32))
    common = ["-k", "gaussian:5:1.0", "--padding", "same", "--padding-mode", "reflect",
              "--bias", "0.5"]
    big = run("convolve", tmp_path / "x.npy", *common, "-o", tmp_path / "ooc.npy",
              "--chunks", chunks)
    assert big.exit_code == 0, big.output
    assert big.stdout == f"wrote {tmp_path / 'ooc.npy'} (out of core, blocks of {chunks})\n"
    small = run("convolve", tmp_path / "x.npy", *common, "-o", tmp_path / "mem.npy")
    assert small.exit_code == 0, small.output
    np.testing.assert_array_equal(np.load(tmp_path / "ooc.npy"), np.load(tmp_path / "mem.npy"))


def test_pool_out_of_core_equals_in_memory(tmp_path):
    pytest.importorskip("dask", reason="dask not installed (the dask extra)")
    rng = np.random.default_rng(22)
    np.save(tmp_path / "x.npy", rng.standard_normal((45, 38)))
    args = ["--size", "3", "--stride", "2", "--padding", "1", "--mode", "avg"]
    assert run("pool", tmp_path / "x.npy", *args, "-o", tmp_path / "a.npy",
               "--chunks", 10).exit_code == 0
    assert run("pool", tmp_path / "x.npy", *args, "-o", tmp_path / "b.npy").exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_out_of_core_needs_npy_in_and_out(tmp_path, seed_npy):
    result = run("convolve", seed_npy, "-k", "edge", "-o", tmp_path / "y.png", "--chunks", 8)
    assert result.exit_code == 2
    assert error_line(result) == (
        "Error: Invalid value for --chunks: out of core needs a .npy output (-o OUT.npy)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_out_of_core_failure_leaves_no_file(tmp_path, seed_npy):
    pytest.importorskip("dask", reason="dask not installed (the dask extra)")
    result = run("convolve", seed_npy, "-k", "[[1,1,1,1,1]]", "-o", tmp_path / "y.npy",
                 "--chunks", 2)
    assert result.exit_code == 1
    assert error_line(result).startswith(f"Error: convolve '{seed_npy}' with --kernel")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
