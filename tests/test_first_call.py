"""Time to first result: what a warm process loads, and the cores that keep cold compiles short.

The loader test runs fresh interpreters (a first one fills the cache, the second is timed
by what it imports); the twin tests compare bits against the parallel kernels.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from fastconv.cpu import grad as cgrad

#: Modules Numba's full target refresh imports and a cached fastconv kernel does not need.
REFRESH_ONLY = ("numba.typed.typeddict", "numba.np.random.generator_core",
                "numba.np.polynomial.polynomial_core", "numba.cpython.setobj")


def _python(code: str, env: dict | None = None) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_warm_first_call_loads_its_kernel_without_numbas_compiler():
    code = ("import sys, numpy as np, fastconv as fc\n"
            "y = fc.corr2d(np.arange(9.).reshape(3, 3), [[0., 1.], [2., 3.]])\n"
            f"print(y.tolist(), [m for m in {REFRESH_ONLY!r} if m in sys.modules])")
    _python(code)  # fills the cache if it is cold
    assert _python(code) == "[[19.0, 25.0], [37.0, 43.0]] []"


def test_other_cached_functions_keep_numbas_own_loader(tmp_path):
    (tmp_path / "userjit.py").write_text(
        "from numba import njit\n\n@njit(cache=True)\ndef plus1(x):\n    return x + 1\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    code = ("import sys, numpy as np, fastconv.cpu, userjit\n"
            "from numba.core.caching import FunctionCache\n"
            "assert getattr(FunctionCache.load_overload, '_fastconv', False)\n"
            "print(userjit.plus1(41), sum(userjit.plus1.stats.cache_hits.values()),\n"
            f"      [m for m in {REFRESH_ONLY!r} if m in sys.modules])")
    assert _python(code, env).startswith("42 0 ")  # compiled (and refreshed) here
    # loaded from the cache through Numba's own path: its full refresh ran
    assert _python(code, env) == f"42 1 {list(REFRESH_ONLY)!r}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [
    # (N, C, K, groups, input (D, H, W), kernel (KD, KH, KW), stride, dilation)
    (1, 1, 1, 1, (1, 3, 3), (1, 2, 2), (1, 1, 1), (1, 1, 1)),
    (2, 3, 5, 1, (1, 7, 9), (1, 3, 2), (1, 2, 1), (1, 1, 2)),
    (1, 4, 6, 2, (3, 5, 6), (2, 2, 3), (1, 1, 2), (1, 2, 1)),
    (2, 3, 3, 3, (1, 6, 11), (1, 1, 4), (1, 1, 1), (1, 1, 1)),
])
def test_the_serial_weight_gradient_twin_has_the_parallel_kernels_bits(case, dtype):
    N, C, K, groups, size, kernel, stride, dilation = case
    rng = np.random.default_rng(16)
    out = [(s - (k - 1) * d - 1) // st + 1 for s, k, d, st in zip(size, kernel, dilation,
                                                                   stride, strict=True)]
    xp = rng.standard_normal((N, C, *size)).astype(dtype)
    g = rng.standard_normal((N, K, *out)).astype(dtype)
    gw = [np.full((K, C // groups, *kernel), np.nan, dtype) for _ in range(2)]
    args = (np.asarray(stride), np.asarray(dilation), groups)
    cgrad.correlate_weight_direct(xp, g, gw[0], *args)
    cgrad.correlate_weight_direct_serial(xp, g, gw[1], *args)
    assert gw[0].tobytes() == gw[1].tobytes()
    assert not np.isnan(gw[0]).any()


def test_a_tiny_weight_gradient_runs_the_serial_twin():
    import fastconv as fc

    x = np.arange(9.0).reshape(1, 1, 3, 3)
    gw = fc.grad.conv2d_weight(x, (1, 1, 2, 2), np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(gw, [[[[8.0, 12.0], [20.0, 24.0]]]])
    assert cgrad.correlate_weight_direct_serial.signatures


def _command(args: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastconv", *args], capture_output=True,
                          text=True, cwd=cwd, check=False)


def test_the_command_ends_without_teardown_but_keeps_its_output_and_status(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(16.0).reshape(4, 4))
    ok = _command(["convolve", "x.npy", "-k", "[[1,-1]]", "-o", "y.npy"], tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("wrote y.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), -np.ones((4, 3)))
    bad = _command(["convolve", "missing.npy", "-k", "sobel-x", "-o", "z.npy"], tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("Error: Invalid value for 'INPUT'")
    assert not (tmp_path / "z.npy").exists()
    shape = _command(["shape", "--input", "8x8", "--kernel", "3"], tmp_path)
    assert (shape.returncode, shape.stdout.split()[:1]) == (0, ["6x6"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [
    # (N, C, kernel (KD, KH, KW), output (OD, OH, OW), before (bd, bh, bw))
    (1, 1, (1, 2, 2), (1, 3, 3), (0, 0, 0)),
    (3, 2, (1, 3, 3), (1, 5, 7), (0, 1, 1)),
    (2, 4, (2, 2, 3), (3, 4, 6), (1, 0, 2)),
    (2, 3, (1, 5, 5), (1, 4, 4), (0, 2, 2)),
])
def test_the_unit_stride_gather_has_the_strided_branchs_bits(case, dtype):
    """The small-image gather with ``stride=None`` (unit stride and dilation: the only
    branch a first unit-stride call compiles) fills ``col`` exactly as its general
    branch does for stride and dilation 1."""
    from fastconv.cpu import small

    N, C, kshape, oshape, before = case
    size = [o + k - 1 - 2 * b for o, k, b in zip(oshape, kshape, before, strict=True)]
    x = np.random.default_rng(16).standard_normal((N, C, *size)).astype(dtype)
    ones = (1, 1, 1)
    assert small._gather_stride(ones, ones) is None
    assert small._gather_stride((1, 1, 2), ones) == (1, 1, 2)
    assert small._gather_stride(ones, (1, 2, 1)) == ones
    rows, cols = C * int(np.prod(kshape)), (N - 1) * int(np.prod(oshape))
    col = [np.full((rows, cols), np.nan, dtype) for _ in range(2)]
    small._gather(x, 1, N, 0, kshape, None, ones, oshape, before, col[0])
    small._gather(x, 1, N, 0, kshape, ones, ones, oshape, before, col[1])
    assert col[0].tobytes() == col[1].tobytes()
    assert not np.isnan(col[0]).any()


def test_a_cold_caches_first_small_image_conv2d_compiles_nothing(tmp_path):
    """The README's set-up shape on a cold cache: the first float32 conv2d runs the small
    path's NumPy form (no kernel compiled); after ``SMALL_NUMPY_SECONDS`` of it the
    kernels compile, with the same bits; a later process finds them in the cache and
    runs them at once."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    code = ("import numpy as np, fastconv as fc\n"
            "from fastconv.cpu import small\n"
            "rng = np.random.default_rng(16)\n"
            "x = rng.standard_normal((2, 8, 16, 16)).astype(np.float32)\n"
            "w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)\n"
            "y = fc.conv2d(x, w, padding=1)\n"
            "kernels = (small._forward_chunk, small._gather, small._bias_rows)\n"
            "print(sum(len(k.signatures) for k in kernels), end=' ')\n"
            "small.SMALL_NUMPY_SECONDS = {budget}\n"
            "z = fc.conv2d(x, w, padding=1)\n"
            "hits = sum(small._forward_chunk.stats.cache_hits.values())\n"
            "print(len(small._forward_chunk.signatures), hits, y.tobytes() == z.tobytes())\n")
    assert _python(code.format(budget="float('inf')"), env) == "0 0 0 True"  # NumPy form
    assert _python(code.format(budget=0.0), env) == "0 1 0 True"  # compiled, same bits
    assert _python(code.format(budget="float('inf')"), env) == "1 1 1 True"  # cached
