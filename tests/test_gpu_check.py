"""``bench/gpu_check.py`` (the real-GPU check) under Numba's CUDA simulator: the smoke mode
runs every section and writes a passing report; a wrong result or a host copy in an op, or
a failing test, makes it fail with exit status 1, and the report says which.

Each test runs the script in a subprocess with ``NUMBA_ENABLE_CUDASIM=1`` (the variable
must be set before Numba is imported), so they run in either pytest pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.cudasim


def run_check(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    env.pop("FASTCONV_DEVICE", None)
    head = ["-c", code] if code else [str(ROOT / "bench" / "gpu_check.py")]
    return subprocess.run([sys.executable, *head, *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_smoke_runs_every_section_and_writes_a_passing_report(tmp_path):
    res = run_check("--smoke", "--out", str(tmp_path))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    path = tmp_path / "gpu-results.md"
    assert res.stdout.rstrip().endswith(f"report: {path}")
    report = path.read_text()
    assert "**PASS: every check agreed**" in report
    for section in ("machine", "tests", "fuzz", "copies", "timing"):
        assert f"| {section} | ok |" in report
    assert "GPU: Numba CUDA simulator" in report
    for op in ("conv", "conv_input", "conv_weight", "conv_bias", "conv_transpose",
               "max_pool", "avg_pool", "max_pool_grad", "avg_pool_grad"):
        assert f"| {op} | 1 | 0 |" in report  # the fuzzer ran every op on the device
    assert "| avg_pool2d | no copies |" in report
    for rid in ("W3 b1", "W7 b1", "W3 dx b1", "W3 dw b1", "T3 b1", "P1 max b1",
                "P1 avg b1", "P1 max bwd b1", "P1 avg bwd b1"):
        assert f"| {rid} |" in report
    assert "WRONG" not in report and "ERROR" not in report


#: gpu_check with fc.max_pool2d returning +1 on the device via a host round trip.
WRONG_MAX_POOL = """
import sys
import numpy as np
from numba import cuda
import fastconv as fc
sys.path.insert(0, "bench")
import gpu_check

real = fc.max_pool2d

def wrong(*args, **kwargs):
    out = real(*args, **kwargs)
    vals = out[0] if isinstance(out, tuple) else out
    if isinstance(vals, np.ndarray):  # the CPU backend stays right
        return out
    bad = cuda.to_device(vals.copy_to_host() + 1)
    return (bad, *out[1:]) if isinstance(out, tuple) else bad

fc.max_pool2d = wrong
fc.corr2d = lambda X, K: np.zeros((2, 2))  # fails test_cuda.py's seed example
sys.exit(gpu_check.main(sys.argv[1:]))
"""


def test_a_wrong_result_a_host_copy_and_a_failing_test_fail_the_check(tmp_path):
    res = run_check("--smoke", "--sections", "tests,copies,timing", "--out", str(tmp_path),
                    code=WRONG_MAX_POOL)
    assert res.returncode == 1, res.stdout[-4000:] + res.stderr[-4000:]
    report = (tmp_path / "gpu-results.md").read_text()
    assert "**FAIL: 3 failure(s)" in report
    assert "- [tests] tests/test_cuda.py::test_seed_example_on_device (call):" in report
    assert "| tests | FAIL |" in report
    assert "- [timing] P1 max b1: fastconv differs from CPU backend: max error" in report
    assert "- [copies] max_pool2d: host copy with device inputs:" in report
    assert "| max_pool2d | COPIES |" in report
    assert "| P1 avg b1 |" in report  # the other rows still ran
    assert "| fuzz |" not in report  # --sections


#: The GEMM paths with threadpoolctl unimportable (the GPU machines have no such package).
WITHOUT_THREADPOOLCTL = """
import sys
sys.modules["threadpoolctl"] = None
import numpy as np
import fastconv as fc
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 8, 12, 12))
w = rng.standard_normal((8, 8, 3, 3))
y = fc.conv2d(x, w, padding=1, algorithm="gemm")
gw = fc.grad.conv2d_weight(x, w.shape, y, padding=1, algorithm="gemm")
np.testing.assert_allclose(y, fc.conv2d(x, w, padding=1, algorithm="direct"), rtol=1e-12)
np.testing.assert_allclose(gw, fc.grad.conv2d_weight(x, w.shape, y, padding=1,
                                                     algorithm="direct"), rtol=1e-12)
print("ok")
"""


def test_cpu_backend_runs_without_threadpoolctl():
    res = subprocess.run([sys.executable, "-c", WITHOUT_THREADPOOLCTL], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == "ok"
