"""fc.warmup / `fastconv warmup` / `fastconv info`: the kernel cache, filled ahead of use."""

from __future__ import annotations

import os
import subprocess
import sys

from click.testing import CliRunner

import fastconv as fc
from fastconv._warmup import TASKS, _kernels, cache_status
from fastconv_cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, list(args), prog_name="fastconv", catch_exceptions=False)


def test_warmup_fills_the_cache_and_reports_it():
    seen = []
    status = fc.warmup(workers=2, progress=lambda label, seconds: seen.append(label))
    assert sorted(seen) == sorted(label for label, _, _ in TASKS)
    assert status.warm and status.cached == status.total == len(_kernels())
    assert status.nbytes > 0 and all(os.path.isdir(d) for d in status.directories)
    assert "kernels compiled" in str(status)


def test_cli_warmup_and_info_say_warm():
    result = run("warmup", "-j", "1")
    assert result.exit_code == 0, result.output
    assert f"of {cache_status().total} kernels compiled" in result.output.splitlines()[-1]
    info = run("info")
    line = next(ln for ln in info.output.splitlines() if ln.startswith("kernel cache"))
    assert "warm;" in line and "cold:" not in line


def test_empty_cache_is_reported_cold(tmp_path):
    """A fresh cache directory (NUMBA_CACHE_DIR) holds nothing: `info` says cold."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    code = ("from fastconv._warmup import cache_status; s = cache_status(); "
            "print(s.cached, s.total, s.warm, s.directories[0])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[0] == "0" and int(out[1]) > 0 and out[2] == "False"
    assert out[3].startswith(str(tmp_path))


def test_a_convolution_imports_only_its_kernels():
    """Warm start: a process whose calls are convolutions never imports the pooling,
    gradient, adaptive or unpooling kernel modules (their dispatchers are not built)."""
    code = ("import sys, numpy as np, fastconv as fc; "
            "fc.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))); "
            "fc.corr2d([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]]); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('fastconv.cpu'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert "fastconv.cpu.conv" in out
    for name in ("pool", "grad", "adaptive", "unpool"):
        assert f"fastconv.cpu.{name}" not in out, out


def test_lazy_backend_names_resolve():
    """Every backend name of fastconv.cpu resolves (lazily) to its submodule's object."""
    import importlib

    import fastconv.cpu as cpu

    for name, module in cpu._LAZY.items():
        want = getattr(importlib.import_module(f"fastconv.cpu.{module}"), name)
        assert getattr(cpu, name) is want, name
    assert callable(cpu.pad) and callable(cpu.fold) and callable(cpu.unfold)
    for name in cpu.__all__:
        assert hasattr(cpu, name), name


def test_numba_start_does_not_import_all_of_scipy_linalg():
    """Numba's CPU target needs scipy.linalg.cython_blas only: a direct convolution loads
    it alone; a later GEMM convolution (and ``import scipy.linalg``) find the same module."""
    code = ("import sys, numpy as np, fastconv as fc; "
            "x = np.random.default_rng(0).standard_normal((1, 32, 8, 8)); "
            "w = np.random.default_rng(1).standard_normal((32, 32, 3, 3)); "
            "d = fc.conv2d(x, w, algorithm='direct'); "
            "print('scipy.linalg' in sys.modules, 'scipy.linalg.cython_blas' in sys.modules); "
            "g = fc.conv2d(x, w, algorithm='gemm'); "
            "import scipy.linalg; "
            "print(scipy.linalg.cython_blas is sys.modules['scipy.linalg.cython_blas'], "
            "bool(np.allclose(d, g)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True", "True", "True"]


def test_quick_start_runs_one_correlation_core():
    """Cold start: the quick start's corr2d, tiny input gradient and learn_kernel forward
    all run the one tiny core the first corr2d compiles (fastconv.cpu.tiny: neither the
    serial twin nor parallel specialisations)."""
    code = ("import numpy as np, fastconv as fc; from fastconv.cpu import conv, tiny; "
            "X = np.ones((6, 8)); X[:, 2:6] = 0; "
            "fc.corr2d([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]]); "
            "fc.grad.conv2d_input((1, 1, 3, 3), np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2))); "
            "fc.learn_kernel(X, fc.corr2d(X, [[1, -1]]), (1, 2), seed=0); "
            "print(len(tiny.correlate_tiny.signatures), len(conv.correlate_serial.signatures), "
            "len(conv.correlate.signatures))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["1", "0", "0"]


def test_warm_small_conv_loads_without_numbas_implementation_modules():
    """A cached kernel's environments of Numba's own implementations (np.zeros, np.dot)
    are rebuilt without importing their modules (``numba.np.arrayobj`` ...): a warm
    process's first small conv2d gives the NumPy form's result and imports none of them."""
    code = ("import sys, numpy as np, fastconv as fc; from fastconv.cpu import small; "
            "rng = np.random.default_rng(0); x = rng.standard_normal((2, 8, 16, 16), "
            "np.float32); w = rng.standard_normal((8, 8, 3, 3), np.float32); "
            "small.KERNELS = True; y = fc.conv2d(x, w, padding=1); "
            "ok = all(m not in sys.modules for m in ('numba.np.arrayobj', 'numba.np.linalg')); "
            "small.KERNELS = False; print(ok, bool(np.array_equal(y, fc.conv2d(x, w, "
            "padding=1))))")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)  # compiled
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "True"]


def test_runtime_module_is_cached_as_object_code(tmp_path):
    """``initialize_runtime`` compiles Numba's runtime module once, writes it beside the
    kernels, and later processes load it instead of compiling (a process that would
    compile it fails here); a corrupt file is replaced by a good one."""
    code = ("import sys, numpy as np, numba; from numba.core.registry import cpu_target; "
            "from numba.core.runtime import nrtdynmod, rtsys; "
            "from fastconv._warmup import initialize_runtime\n"
            "if sys.argv[2] == 'load':\n"
            "    def fail(*a): raise AssertionError('compiled the runtime')\n"
            "    nrtdynmod.create_nrt_module = fail\n"
            "initialize_runtime(cpu_target.target_context, sys.argv[1]); "
            "f = numba.njit(lambda n: np.arange(n).sum()); print(rtsys._init, f(10))")

    def run_child(mode):
        return subprocess.run([sys.executable, "-c", code, str(tmp_path), mode],
                              capture_output=True, text=True, check=True).stdout.split()

    assert run_child("compile") == ["True", "45"]
    files = list(tmp_path.glob("fastconv-nrt-*.nbo"))
    assert len(files) == 1 and files[0].stat().st_size > 0
    assert run_child("load") == ["True", "45"]
    files[0].write_bytes(b"not a pickle")
    assert run_child("compile") == ["True", "45"]
    assert run_child("load") == ["True", "45"]
    assert list(tmp_path.iterdir()) == files  # no temporary file left
