"""The CUDA backend on a real GPU in one command: correctness, then speed against cuDNN.

``make gpu-check`` runs this file with the system Python (no venv, nothing to install: a
GPU machine may have no network), the checkout on ``PYTHONPATH``::

    make gpu-check                       # everything, under 8 minutes on an H200
    make gpu-check GPU_ARGS=--quick      # fewer fuzz cases and timing rows, under 3 minutes
    make gpu-check GPU_ARGS=--smoke      # tiny shapes, a few cases per op (CI, simulator)

Sections, in order; each one's failure is recorded and the next one still runs:

1. machine: GPU, driver, CUDA, numba, numba-cuda, CuPy and PyTorch versions;
2. tests: ``tests/test_cuda.py`` in this process with the package's default block shape
   (``FASTCONV_TEST_KEEP_THREADS=1``), the CuPy and PyTorch zero-copy tests included;
3. fuzz: ``tests/fuzz.py``'s cases of every op on the GPU against the CPU backend
   (``run(device="cuda")``: float rounding tolerance; the GPU result also meets the NumPy
   reference);
4. host copies: every op on device inputs with the host<->device copy functions of Numba
   made to raise (and, with a CUDA PyTorch, under its profiler counting memcpy events);
5. timing: every op family against PyTorch/cuDNN on the same device memory, float32 with
   TF32 off (like for like) and on (PyTorch's default for convolutions); per row the result
   is checked first (against cuDNN without TF32, or the CPU backend when PyTorch has no
   CUDA), then each side is timed interleaved, median over the rounds, two figures: the
   synchronised wall time of the Python call and the time between CUDA events around it.

One markdown report is written (``--out DIR``, default ``bench/``, file ``gpu-results.md``)
after every section, so a run cut short still leaves one; its path is printed at the end.
Exit status: 0 when every check passed, 1 on any correctness failure or section error, 3
when nothing failed but the time budget (``--budget``) left something unchecked.
Under ``NUMBA_ENABLE_CUDASIM=1`` the same script runs in Numba's simulator (``--smoke``):
kernel times there are meaningless and are not reported.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import importlib.metadata
import math
import os
import platform
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # fuzz.py and reference.py

import fastconv as fc  # noqa: E402

with contextlib.suppress(AttributeError, ValueError):  # flush every line (one-shot GPU slots)
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)


def log(msg: str = "") -> None:
    print(msg, flush=True)


# --- modes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    name: str
    budget: float  # seconds for the whole run (sections past it are skipped, and say so)
    fuzz_per_op: int  # fuzz cases of each op
    pytest_k: str | None  # -k selection of tests/test_cuda.py (None: every test)
    max_rounds: int  # timing rounds per row at most (fewer when a row is slow)
    rows: str  # which timing rows: "full", "quick" or "smoke"


MODES = {
    "full": Mode("full", 450.0, 40, None, 15, "full"),
    "quick": Mode("quick", 170.0, 8, None, 5, "quick"),
    # The simulator runs every CUDA thread as a Python thread: a handful of cases only.
    "smoke": Mode("smoke", 300.0, 1, "seed_example or zero_copy or cupy", 1, "smoke"),
}

#: Share of the budget after which each section stops starting new work.
SECTION_END = {"tests": 0.35, "fuzz": 0.55, "copies": 0.62, "timing": 0.98}

#: Threads per block in the simulator (smaller blocks: fewer Python threads per launch).
SIM_THREADS = (4, 2)


def simulator() -> bool:
    from numba.core import config

    return bool(config.ENABLE_CUDASIM)


# --- the report ------------------------------------------------------------------------------


@dataclass
class Report:
    mode: Mode
    path: Path
    started: float = field(default_factory=time.perf_counter)
    date: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc)
                      .strftime("%Y-%m-%d %H:%M UTC"))
    machine: list = field(default_factory=list)  # (key, value)
    sections: list = field(default_factory=list)  # (name, status, seconds, note)
    failures: list = field(default_factory=list)  # (section, text)
    body: dict = field(default_factory=dict)  # section -> markdown
    partial: list = field(default_factory=list)  # what the time budget left out
    running: str | None = None  # the section under way (a report read now was cut short)

    @property
    def title(self) -> str:
        return "bench/gpu_check.py" + ("" if self.mode.name == "full" else f" --{self.mode.name}")

    def fail(self, section: str, text: str) -> None:
        self.failures.append((section, text))
        log(f"FAIL [{section}] {text}")

    def verdict(self) -> str:
        if self.running:
            return (f"CUT SHORT during section {self.running} ({len(self.failures)} "
                    "failure(s) before it): the process ended before finishing")
        if self.failures:
            return f"FAIL: {len(self.failures)} failure(s), listed under Failures"
        if self.partial:
            return f"INCOMPLETE: no failure, but the time budget left out {'; '.join(self.partial)}"
        return "PASS: every check agreed"

    def markdown(self) -> str:
        sim = " (Numba CUDA simulator: no real GPU, kernel times not reported)" \
            if simulator() else ""
        out = [f"## {self.date}: `{self.title}`{sim}", "",
               f"**{self.verdict()}** (run time {time.perf_counter() - self.started:.0f} s "
               f"of a {self.mode.budget:.0f} s budget)", "", "### Machine", ""]
        out += [f"- {k}: {v}" for k, v in self.machine]
        out += ["", "### Sections", "", "| section | status | time | note |", "|---|---|---|---|"]
        out += [f"| {n} | {st} | {sec:.1f} s | {note} |" for n, st, sec, note in self.sections]
        out += ["", "### Failures", ""]
        out += [f"- [{s}] {t}" for s, t in self.failures] or ["none"]
        for name in ("tests", "fuzz", "copies", "timing"):
            if name in self.body:
                out += ["", self.body[name]]
        return "\n".join(out) + "\n"

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".md.tmp")
        tmp.write_text(self.markdown())
        tmp.replace(self.path)


# --- 1. machine ------------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _try(func, default="unknown"):
    try:
        value = func()
    except Exception as exc:  # a missing library or driver is a fact to report
        first = str(exc).splitlines()[0][:120] if str(exc) else ""
        return f"{default} ({type(exc).__name__}: {first})"
    return default if value is None else value


def machine(report: Report, ctx: dict) -> None:
    import numba
    from numba import cuda

    m = report.machine
    m.append(("host", f"{platform.node()}, {platform.platform()}, {os.cpu_count()} CPUs"))
    m.append(("python", sys.version.split()[0] + f" ({sys.executable})"))
    m.append(("numpy / numba / numba-cuda", f"{np.__version__} / {numba.__version__} / "
              f"{_version('numba-cuda')}"))
    m.append(("scipy / threadpoolctl", f"{_version('scipy')} / {_version('threadpoolctl')}"))
    dirty = _try(lambda: ", uncommitted changes" if _git("status", "--porcelain") else "", "")
    m.append(("fastconv", f"{Path(fc.__file__).parent} (commit "
              f"{_try(lambda: _git('rev-parse', '--short', 'HEAD'))}{dirty})"))
    if simulator():
        m.append(("GPU", "Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"))
    else:
        def gpu():
            dev = cuda.get_current_device()
            name = dev.name.decode() if isinstance(dev.name, bytes) else dev.name
            free, total = cuda.current_context().get_memory_info()
            return (f"{name}, compute capability {dev.compute_capability}, "
                    f"{total / 2**30:.0f} GiB ({free / 2**30:.0f} GiB free), "
                    f"{dev.MULTIPROCESSOR_COUNT} SMs")
        m.append(("GPU", _try(gpu)))
        m.append(("driver (CUDA version)", _try(lambda: ".".join(
            map(str, cuda.cudadrv.driver.driver.get_version())))))
        m.append(("CUDA runtime (numba)", _try(lambda: ".".join(
            map(str, cuda.runtime.get_version())))))
        m.append(("nvidia-smi", _try(_nvidia_smi)))
    m.append(("THREADS per block", str(_threads())))
    cupy = _try_import("cupy")
    m.append(("CuPy", cupy.__version__ if cupy else "absent"))
    torch = _try_import("torch")
    if torch is None:
        m.append(("PyTorch", "absent"))
    else:
        cuda_ok = _try(lambda: torch.cuda.is_available(), False) is True
        m.append(("PyTorch", f"{torch.__version__}, CUDA {torch.version.cuda or 'absent'}, "
                  f"cuDNN {_try(lambda: torch.backends.cudnn.version(), 'absent')}, "
                  f"torch.cuda.is_available()={cuda_ok}"))
    for k, v in m:
        log(f"  {k}: {v}")
    if "cuda" not in fc.devices():
        report.fail("machine", "no usable CUDA GPU (fc.devices() has no 'cuda'): nothing "
                    "below can run; check the driver and numba-cuda")
        ctx["no_gpu"] = True


def _git(*args) -> str:
    res = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10,
                         check=True)
    return res.stdout.strip()


def _nvidia_smi() -> str:
    res = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,power.limit",
         "--format=csv,noheader"], capture_output=True, text=True, timeout=20, check=True)
    return res.stdout.strip().replace("\n", "; ")


def _threads():
    import fastconv.cuda

    return tuple(fastconv.cuda.THREADS)


def _try_import(name: str):
    try:
        return importlib.import_module(name)
    except Exception:  # absent, or broken on this machine: both mean "not usable"
        return None


def torch_cuda():
    """PyTorch when it has a usable GPU (never under the simulator), else None."""
    if simulator():
        return None
    torch = _try_import("torch")
    try:
        return torch if torch is not None and torch.cuda.is_available() else None
    except Exception:
        return None


# --- 2. tests/test_cuda.py -------------------------------------------------------------------


class _Collector:
    """pytest plugin: outcomes of tests/test_cuda.py, and a skip once the deadline passed."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.outcomes = {"passed": 0, "failed": 0, "skipped": 0}
        self.failed: list[str] = []
        self.details: list[str] = []  # the end of each failure's traceback, for the report
        self.skips: dict[str, int] = {}

    def pytest_runtest_setup(self, item):
        import pytest

        if time.perf_counter() > self.deadline:
            pytest.skip("gpu_check time budget")

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or (report.when != "call" and not report.passed):
            outcome = report.outcome
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            if outcome == "failed":
                text = str(report.longrepr).strip().splitlines()
                crash = getattr(getattr(report.longrepr, "reprcrash", None), "message", None)
                first = (crash or (text[-1] if text else "")).splitlines()
                self.failed.append(f"{report.nodeid} ({report.when}): "
                                   f"{first[0][:300] if first else ''}")
                self.details.append(f"{report.nodeid}\n" + "\n".join(text[-40:]))
            elif outcome == "skipped":
                reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
                self.skips[reason] = self.skips.get(reason, 0) + 1


def run_tests(report: Report, ctx: dict) -> None:
    import pytest

    col = _Collector(ctx["deadline"])
    args = [str(ROOT / "tests" / "test_cuda.py"), "-q", "-p", "no:cacheprovider",
            "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml")]
    if report.mode.pytest_k:
        args += ["-k", report.mode.pytest_k]
    old = os.environ.get("FASTCONV_TEST_KEEP_THREADS")
    os.environ["FASTCONV_TEST_KEEP_THREADS"] = "1"
    try:
        code = pytest.main(args, plugins=[col])
    finally:
        if old is None:
            os.environ.pop("FASTCONV_TEST_KEEP_THREADS", None)
        else:
            os.environ["FASTCONV_TEST_KEEP_THREADS"] = old
    for line in col.failed:
        report.fail("tests", line)
    late = col.skips.get("Skipped: gpu_check time budget", 0)
    if late:
        report.partial.append(f"{late} tests")
    if code not in (0, 5) and not col.failed:  # 5: nothing collected (a -k selection)
        report.fail("tests", f"pytest exit code {int(code)} (collection or internal error)")
    lines = ["### tests/test_cuda.py", "",
             f"Block shape {_threads()}; " + ", ".join(f"{v} {k}" for k, v in
                                                      col.outcomes.items())
             + (f" (selection `-k {report.mode.pytest_k}`)" if report.mode.pytest_k else "")]
    lines += [f"- skipped {n}: {reason}" for reason, n in sorted(col.skips.items())]
    for text in col.details:
        lines += ["", "```", text, "```"]
    report.body["tests"] = "\n".join(lines)
    ctx["note"] = ", ".join(f"{v} {k}" for k, v in col.outcomes.items())


# --- 3. the fuzzer on the GPU ----------------------------------------------------------------


def run_fuzz(report: Report, ctx: dict) -> None:
    import fuzz

    counts: dict = {}
    failures = []
    per_op = report.mode.fuzz_per_op
    for op in fuzz.OPS:  # every op gets its cases, whatever the weights of a mixed run
        failures += fuzz.run(per_op, seed=13, ops=op, device="cuda", use_torch=False,
                             out=None, counts=counts, deadline=ctx["deadline"])
    for line in failures:
        report.fail("fuzz", line)
    lines = ["### Fuzz: every op on the GPU against the CPU backend", "",
             f"`tests/fuzz.py` cases (seed 13, {per_op} per op): each call runs on the CPU "
             "backend and on the GPU; results must agree within float rounding (float32: "
             f"rtol {fuzz.RTOL[np.dtype(np.float32)]:g} of the largest value) and the GPU's "
             "must meet the NumPy reference.", "",
             "| op | cases | mismatches | time |", "|---|---|---|---|"]
    for op in fuzz.OPS:
        n, bad, secs = counts.get(op, (0, 0, 0.0))
        lines.append(f"| {op} | {n} | {bad} | {secs:.1f} s |")
    missing = [op for op in fuzz.OPS if counts.get(op, (0,))[0] < per_op]
    if missing:
        report.partial.append(f"fuzz cases of {len(missing)} ops")
        lines.append(f"\nStopped at the section's time budget before all cases of: "
                     f"{', '.join(missing)}.")
    report.body["fuzz"] = "\n".join(lines)
    total = sum(c[0] for c in counts.values())
    ctx["note"] = f"{total} cases, {len(failures)} mismatches"


# --- 4. no host copies for device inputs -----------------------------------------------------


class HostCopy(AssertionError):
    """A host<->device copy during a call whose inputs are all on the device."""


@contextlib.contextmanager
def no_host_copies(allow_to_host: bool = False):
    """Make Numba's host<->device copies raise :class:`HostCopy` inside the block:
    ``cuda.to_device``, the driver's ``host_to_device``/``device_to_host`` (which every
    device-array copy and every kernel launch with a host array goes through) and the
    device array's ``copy_to_host``/``copy_to_device``; ``allow_to_host`` leaves the
    device-to-host direction alone."""
    from numba import cuda

    def forbidden(what):
        def raiser(*args, **kwargs):
            raise HostCopy(f"{what} called")
        return raiser

    patches = [(cuda, "to_device")]
    array_type = type(cuda.device_array(1))
    # the driver module the device arrays copy through (numba's or numba-cuda's)
    driver = getattr(sys.modules.get(array_type.__module__), "_driver", None)
    to_host = () if allow_to_host else ("device_to_host",)
    for name in ("host_to_device", *to_host):
        if driver is not None and hasattr(driver, name) and not simulator():
            patches.append((driver, name))
    for klass in array_type.__mro__:
        for meth in ("copy_to_device",) + (() if allow_to_host else ("copy_to_host",)):
            if meth in vars(klass):
                patches.append((klass, meth))
    saved = [(obj, name, getattr(obj, name)) for obj, name in patches]
    try:
        for obj, name, _ in saved:
            setattr(obj, name, forbidden(f"{getattr(obj, '__name__', obj)}.{name}"))
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)


def _copy_cases(dev):
    """(name, call) for every op family on small device arrays ``dev``."""
    g = fc.grad
    x, w, gy, wt = dev["x"], dev["w"], dev["gy"], dev["wt"]
    gp, xt = dev["gp"], dev["xt"]
    return [
        ("conv2d", lambda: fc.conv2d(x, w, dev["b"], padding=1)),
        ("conv2d reflect", lambda: fc.conv2d(x, w, padding=1, padding_mode="reflect")),
        ("conv2d depthwise", lambda: fc.conv2d(x, dev["wd"], padding=1, groups=4)),
        ("convolve2d", lambda: fc.convolve2d(x, w, padding=1)),
        ("conv2d_input", lambda: g.conv2d_input(x.shape, w, gy, padding=1)),
        ("conv2d_weight", lambda: g.conv2d_weight(x, w.shape, gy, padding=1)),
        ("conv_bias", lambda: g.conv_bias(gy)),
        ("conv_transpose2d", lambda: fc.conv_transpose2d(xt, wt, stride=2, padding=1,
                                                         output_padding=1)),
        ("max_pool2d", lambda: fc.max_pool2d(x, 3, 2, 1, return_indices=True)),
        ("avg_pool2d", lambda: fc.avg_pool2d(x, 3, 2, 1, count_include_pad=False)),
        ("grad.max_pool2d", lambda: g.max_pool2d(gp, x, 3, 2, 1)),
        ("grad.avg_pool2d", lambda: g.avg_pool2d(gp, x, 3, 2, 1)),
        ("adaptive_avg_pool2d", lambda: fc.adaptive_avg_pool2d(x, (2, 3))),
        ("adaptive_max_pool2d", lambda: fc.adaptive_max_pool2d(x, 2, return_indices=True)),
        ("grad.adaptive_avg_pool2d", lambda: g.adaptive_avg_pool2d(dev["ga"], x, (2, 3))),
        ("lp_pool2d", lambda: fc.lp_pool2d(x, 2.0, 2)),
        ("max_unpool2d", lambda: fc.max_unpool2d(dev["pooled"], dev["idx"], 2,
                                                 output_size=(5, 5))),
        ("unfold", lambda: fc.unfold(x, 3, padding=1)),
        ("fold", lambda: fc.fold(dev["cols"], (5, 5), 3, padding=1)),
    ]


#: Ops that copy to the host by design, and why (only the device-to-host direction is
#: allowed for them; an upload still fails the check).
READS_BACK = {
    "max_unpool2d": "reads back its count of out-of-range indices (8 bytes) to raise "
                    "ValueError",
}


def run_copies(report: Report, ctx: dict) -> None:
    from numba import cuda

    rng = np.random.default_rng(5)
    host = {"x": (1, 4, 5, 5), "w": (2, 4, 3, 3), "b": (2,), "wd": (4, 1, 3, 3),
            "gy": (1, 2, 5, 5), "xt": (1, 4, 3, 3), "wt": (4, 2, 3, 3), "gp": (1, 4, 3, 3)}
    host = {k: rng.standard_normal(s).astype(np.float32) for k, s in host.items()}
    host["ga"] = rng.standard_normal((1, 4, 2, 3)).astype(np.float32)
    host["cols"] = rng.standard_normal((1, 36, 25)).astype(np.float32)
    host["pooled"], host["idx"] = fc.max_pool2d(host["x"], 2, return_indices=True)
    dev = {k: cuda.to_device(v) for k, v in host.items()}
    cases = _copy_cases(dev) + _foreign_cases(host)
    rows = []
    for name, call in cases:
        if time.perf_counter() > ctx["deadline"]:
            rows.append((name, "skipped", "time budget"))
            continue
        try:
            call()  # warm-up: compile, and any one-time set-up
            with no_host_copies(allow_to_host=name in READS_BACK):
                res = call()
            res = res if isinstance(res, tuple) else (res,)
            if any(isinstance(r, np.ndarray) for r in res):
                raise HostCopy("returned a NumPy array for device inputs")
            if name in READS_BACK:
                rows.append((name, "no uploads", f"by design: {READS_BACK[name]}"))
            else:
                rows.append((name, "no copies", ""))
        except HostCopy as exc:
            report.fail("copies", f"{name}: host copy with device inputs: {exc}")
            rows.append((name, "COPIES", str(exc)))
        except Exception as exc:
            report.fail("copies", f"{name}: raised {type(exc).__name__}: {exc}")
            rows.append((name, "ERROR", f"{type(exc).__name__}: {exc}"))
    late = sum(r[1] == "skipped" for r in rows)
    if late:
        report.partial.append(f"{late} host-copy checks")
    prof = _profile_memcpy(cases)
    lines = ["### No host copies for device inputs", "",
             "Each op on float32 device arrays, after a warm-up call, with Numba's "
             "`cuda.to_device`, the driver's `host_to_device`/`device_to_host` and the "
             "device array's `copy_to_host`/`copy_to_device` made to raise.", ""]
    if prof is not None:
        lines += [f"PyTorch profiler (CUPTI) over one more call of each: {prof}.", ""]
    lines += ["| op | result | detail |", "|---|---|---|"]
    lines += [f"| {n} | {r} | {d} |" for n, r, d in rows]
    report.body["copies"] = "\n".join(lines)
    clean = sum(r[1] in ("no copies", "no uploads") for r in rows)
    ctx["note"] = f"{clean}/{len(rows)} ops pass"


def _foreign_cases(host: dict) -> list:
    """conv2d on PyTorch CUDA tensors and on CuPy arrays (``__cuda_array_interface__``),
    for those of the two that are usable here."""
    cases = []
    torch = torch_cuda()
    if torch is not None:
        t = {k: torch.as_tensor(host[k], device="cuda") for k in ("x", "w")}
        cases.append(("conv2d on torch tensors", lambda: fc.conv2d(t["x"], t["w"], padding=1)))
    cupy = None if simulator() else _try_import("cupy")
    if cupy is not None:
        try:
            c = {k: cupy.asarray(host[k]) for k in ("x", "w")}
        except Exception as exc:  # CuPy without a usable GPU/driver: say so in the table
            log(f"  CuPy arrays not available: {type(exc).__name__}: {exc}")
        else:
            cases.append(("conv2d on CuPy arrays", lambda: fc.conv2d(c["x"], c["w"], padding=1)))
    return cases


def _profile_memcpy(cases) -> str | None:
    """Memcpy HtoD/DtoH counts seen by the PyTorch profiler (CUPTI) over the calls, or None
    without a CUDA PyTorch."""
    torch = torch_cuda()
    if torch is None:
        return None
    try:
        from torch.profiler import ProfilerActivity, profile

        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _, call in cases:
                call()
            torch.cuda.synchronize()
        names = [e.name for e in prof.events()]
        htod = sum("HtoD" in n for n in names)
        dtoh = sum("DtoH" in n for n in names)
        kernels = len(names) - htod - dtoh
        return f"{htod} Memcpy HtoD, {dtoh} Memcpy DtoH, {kernels} other GPU activities"
    except Exception as exc:
        return f"not available ({type(exc).__name__}: {exc})"


# --- 5. timing against PyTorch/cuDNN ---------------------------------------------------------


@dataclass
class Row:
    rid: str
    what: str
    shapes: dict  # input name -> shape
    ours: object  # (arrays) -> result
    theirs: object  # (torch tensors) -> tensor, or None
    tf32: bool = True  # TF32 changes cuDNN's result/speed (convolutions)
    target: float | None = None  # least kernel-time ratio cuDNN/fastconv (TF32 off)
    tol: float = 5e-4  # max |ours - ref| / max(1, max |ref|)
    prepare: object = None  # (torch tensors) -> extra tensors (e.g. max-pool indices)


def timing_rows(kind: str) -> list[Row]:
    """The timing workloads: ``bench/run.py``'s W3 (dense 3x3), W5 (deep 3x3) and W7
    (depthwise 3x3) forward at batch 8 and 64, their input/weight gradients, a transposed
    3x3 stride-2 convolution, and P1 (3x3/2 pad 1) / P2 (2x2/2) max and average pooling
    forward at batch 64 and 256 and backward. ``kind="smoke"`` shrinks every shape."""
    g = fc.grad
    rows: list[Row] = []
    smoke = kind == "smoke"

    def conv(rid, n, c, hw, k, groups, target=None, what=""):
        xs, ws = (n, c, hw, hw), (k, c // groups, 3, 3)
        rows.append(Row(f"{rid} b{n}", what or f"{n}x{c}x{hw}^2 * {k}x{c // groups}x3x3 p1"
                        + (f" groups {groups}" if groups > 1 else ""),
                        {"x": xs, "w": ws},
                        lambda a: fc.conv2d(a["x"], a["w"], padding=1, groups=groups),
                        lambda t, F: F.conv2d(t["x"], t["w"], padding=1, groups=groups),
                        target=target))

    def grads(rid, n, c, hw, k, groups, target=None):
        xs, ws, gs = (n, c, hw, hw), (k, c // groups, 3, 3), (n, k, hw, hw)
        rows.append(Row(f"{rid} dx b{n}", f"grad input of {rid} b{n}", {"w": ws, "gy": gs},
                        lambda a: g.conv2d_input(xs, a["w"], a["gy"], padding=1, groups=groups),
                        lambda t, F: _tnn().grad.conv2d_input(xs, t["w"], t["gy"], padding=1,
                                                              groups=groups), target=target))
        rows.append(Row(f"{rid} dw b{n}", f"grad weight of {rid} b{n}", {"x": xs, "gy": gs},
                        lambda a: g.conv2d_weight(a["x"], ws, a["gy"], padding=1, groups=groups),
                        lambda t, F: _tnn().grad.conv2d_weight(t["x"], ws, t["gy"], padding=1,
                                                               groups=groups), target=target))

    def transpose(n, c, hw, k):
        rows.append(Row(f"T3 b{n}", f"transposed {n}x{c}x{hw}^2 * {c}x{k}x3x3 s2 p1 op1",
                        {"x": (n, c, hw, hw), "w": (c, k, 3, 3)},
                        lambda a: fc.conv_transpose2d(a["x"], a["w"], stride=2, padding=1,
                                                      output_padding=1),
                        lambda t, F: F.conv_transpose2d(t["x"], t["w"], stride=2, padding=1,
                                                        output_padding=1)))

    def pool(pid, n, c, hw, ksz, s, p, target=None, backward=False, kinds=("max", "avg")):
        oh = (hw + 2 * p - ksz) // s + 1
        xs, gs = (n, c, hw, hw), (n, c, oh, oh)
        geo = f"{ksz}x{ksz}/{s} p{p} {n}x{c}x{hw}^2"
        for kd in kinds:
            if not backward:
                ours = (lambda a: fc.max_pool2d(a["x"], ksz, s, p)) if kd == "max" else \
                    (lambda a: fc.avg_pool2d(a["x"], ksz, s, p))
                theirs = (lambda t, F: F.max_pool2d(t["x"], ksz, s, p)) if kd == "max" else \
                    (lambda t, F: F.avg_pool2d(t["x"], ksz, s, p))
                rows.append(Row(f"{pid} {kd} b{n}", f"{kd} pool {geo}", {"x": xs}, ours,
                                theirs, tf32=False, target=target, tol=1e-6))
            elif kd == "max":
                rows.append(Row(
                    f"{pid} max bwd b{n}", f"max pool backward {geo} (cuDNN: saved indices)",
                    {"x": xs, "gy": gs}, lambda a: g.max_pool2d(a["gy"], a["x"], ksz, s, p),
                    lambda t, F: _aten().max_pool2d_with_indices_backward(
                        t["gy"], t["x"], [ksz] * 2, [s] * 2, [p] * 2, [1, 1], False, t["idx"]),
                    tf32=False, target=target, tol=1e-6,
                    prepare=lambda t, F: {"idx": F.max_pool2d(t["x"], ksz, s, p,
                                                              return_indices=True)[1]}))
            else:
                rows.append(Row(
                    f"{pid} avg bwd b{n}", f"avg pool backward {geo}", {"x": xs, "gy": gs},
                    lambda a: g.avg_pool2d(a["gy"], a["x"], ksz, s, p),
                    lambda t, F: _aten().avg_pool2d_backward(
                        t["gy"], t["x"], [ksz] * 2, [s] * 2, [p] * 2, False, True, None),
                    tf32=False, target=target, tol=1e-6))

    if smoke:  # the same code paths on shapes the simulator runs in a fraction of a second
        conv("W3", 1, 2, 4, 2, 1)
        conv("W7", 1, 2, 4, 2, 2)
        grads("W3", 1, 2, 4, 2, 1)
        transpose(1, 2, 2, 2)
        pool("P1", 1, 2, 5, 3, 2, 1)
        pool("P1", 1, 2, 5, 3, 2, 1, backward=True)
        return rows
    quick = kind == "quick"
    for n in ((64,) if quick else (8, 64)):
        conv("W3", n, 64, 56, 64, 1, target=0.5 if n == 64 else None)
        conv("W5", n, 256, 14, 256, 1)
        conv("W7", n, 128, 56, 128, 128, target=0.8 if n == 64 else None)
    for n in ((64,) if quick else (8, 64)):
        grads("W3", n, 64, 56, 64, 1)
    grads("W5", 64, 256, 14, 256, 1)
    if not quick:
        grads("W7", 64, 128, 56, 128, 128)
    for n in ((64,) if quick else (8, 64)):
        transpose(n, 64, 28, 64)
    for n in (64, 256):
        pool("P1", n, 64, 112, 3, 2, 1, target=0.8 if n == 64 else None)
        if not quick:
            pool("P2", n, 64, 112, 2, 2, 0, target=0.8 if n == 64 else None)
    pool("P1", 64, 64, 112, 3, 2, 1, target=0.8, backward=True)
    if not quick:
        pool("P2", 64, 64, 112, 2, 2, 0, target=0.8, backward=True)
    return rows


def _tnn():
    import torch.nn

    return torch.nn


def _aten():
    import torch

    return torch.ops.aten


class _Timer:
    """Times one callable: synchronised wall time of the call and the time between CUDA
    events recorded on the default stream just before and after it (ms)."""

    def __init__(self, kind: str):
        self.kind = kind  # "numba", "torch" or "none" (simulator: no event times)

    def events(self):
        if self.kind == "torch":
            import torch

            return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        if self.kind == "numba":
            from numba import cuda

            return cuda.event(timing=True), cuda.event(timing=True)
        return None, None

    def sync(self):
        if self.kind == "torch":
            import torch

            torch.cuda.synchronize()
        else:
            from numba import cuda

            cuda.synchronize()

    def once(self, fn) -> tuple[float, float | None]:
        e0, e1 = self.events()
        self.sync()
        t0 = time.perf_counter()
        if e0 is not None:
            e0.record()
        fn()
        if e1 is not None:
            e1.record()
            e1.synchronize()
        else:
            self.sync()
        wall = (time.perf_counter() - t0) * 1e3
        if e0 is None:
            return wall, None
        return wall, float(e0.elapsed_time(e1))


def _err(got: np.ndarray, want: np.ndarray) -> float:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return math.inf
    return float(np.max(np.abs(got - want), initial=0.0) /
                 max(1.0, float(np.max(np.abs(want), initial=0.0))))


def _err_torch(torch, got, want) -> float:
    """:func:`_err` of two CUDA tensors, computed on the GPU (outputs of 800 MB at batch 256)."""
    if tuple(got.shape) != tuple(want.shape):
        return math.inf
    diff = float((got.double() - want.double()).abs().max())
    return diff / max(1.0, float(want.abs().max()))


def _inputs(row: Row, torch, rng):
    """(arrays for fastconv, torch tensors or None, host copies or None) of one row; with a
    CUDA PyTorch the data is made on the GPU and fastconv gets Numba views of the same
    memory (``cuda.as_cuda_array``, no copy)."""
    from numba import cuda

    if torch is not None:
        gen = torch.Generator(device="cuda").manual_seed(int(rng.integers(2**31)))
        tens = {k: torch.randn(s, device="cuda", generator=gen) for k, s in row.shapes.items()}
        return {k: cuda.as_cuda_array(v) for k, v in tens.items()}, tens, None
    host = {k: rng.standard_normal(s).astype(np.float32) for k, s in row.shapes.items()}
    return {k: cuda.to_device(v) for k, v in host.items()}, None, host


@contextlib.contextmanager
def _tf32(torch, on: bool):
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def run_timing(report: Report, ctx: dict) -> None:
    import fuzz

    torch = torch_cuda()
    F = torch.nn.functional if torch is not None else None
    rows = timing_rows(report.mode.rows)
    ours_timer = _Timer("none" if simulator() else "numba")
    torch_timer = _Timer("torch")
    rng = np.random.default_rng(2024)
    results = []
    start = time.perf_counter()
    for i, row in enumerate(rows):
        left = ctx["deadline"] - time.perf_counter()
        if left <= 0:
            results.append((row, None, "skipped (time budget)"))
            continue
        row_budget = left / (len(rows) - i)
        try:
            results.append((row, _time_row(row, torch, F, ours_timer, torch_timer, rng,
                                           report, row_budget, fuzz), ""))
        except Exception as exc:
            report.fail("timing", f"{row.rid}: raised {type(exc).__name__}: {exc}")
            results.append((row, None, f"ERROR {type(exc).__name__}: {exc}"))
            log(traceback.format_exc())
        _release(torch)
    report.body["timing"] = _timing_markdown(results, torch, report.mode)
    timed = sum(r[1] is not None for r in results)
    late = sum(note.startswith("skipped") for _, _, note in results)
    if late:
        report.partial.append(f"{late} timing rows")
    ctx["note"] = (f"{timed}/{len(rows)} rows in {time.perf_counter() - start:.0f} s"
                   + ("" if torch is not None else "; no CUDA PyTorch: fastconv vs the CPU "
                      "backend only"))


def _release(torch) -> None:
    from numba import cuda

    with contextlib.suppress(Exception):
        cuda.current_context().deallocations.clear()
    if torch is not None:
        with contextlib.suppress(Exception):
            torch.cuda.empty_cache()


def _host(a) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "copy_to_host"):
        return a.copy_to_host()
    return np.asarray(a.cpu()) if hasattr(a, "cpu") else np.asarray(a)


def _time_row(row, torch, F, ours_timer, torch_timer, rng, report, budget, fuzz) -> dict:
    arrays, tens, host = _inputs(row, torch, rng)
    if tens is not None and row.prepare is not None:
        tens.update(row.prepare(tens, F))
    ours = lambda: row.ours(arrays)  # noqa: E731
    # the first call compiles (warm-up); its result is checked before anything is timed
    t = time.perf_counter()
    got = ours()
    ours_timer.sync()
    first = time.perf_counter() - t
    variants = {}
    if tens is not None:
        with _tf32(torch, False):
            want = row.theirs(tens, F)
            torch.cuda.synchronize()
        err = _err_torch(torch, torch.as_tensor(got, device="cuda"), want)
        against = "cuDNN fp32"
        variants["fp32"] = lambda: row.theirs(tens, F)
        if row.tf32:
            variants["tf32"] = lambda: row.theirs(tens, F)
    else:
        with fuzz._device_env("cpu"):
            want = row.ours(host)
        err = _err(_host(got), want)
        against = "CPU backend"
    ok = err <= row.tol
    if not ok:
        report.fail("timing", f"{row.rid}: fastconv differs from {against}: max error "
                    f"{err:.3g} > {row.tol:g} (relative to the largest value)")
    # warm-up of the PyTorch variants, then one warm round gives the number of rounds
    for name, fn in variants.items():
        with _tf32(torch, name == "tf32"):
            fn()
    one = first
    if report.mode.max_rounds > 1:
        t = time.perf_counter()
        ours_timer.once(ours)
        for name, fn in variants.items():
            with _tf32(torch, name == "tf32"):
                torch_timer.once(fn)
        one = time.perf_counter() - t
    rounds = int(max(1, min(report.mode.max_rounds, budget / max(one, 1e-6))))
    times = {"ours": [], **{k: [] for k in variants}}
    for _ in range(rounds):
        times["ours"].append(ours_timer.once(ours))
        for name, fn in variants.items():
            with _tf32(torch, name == "tf32"):
                times[name].append(torch_timer.once(fn))
    med = {k: (float(np.median([w for w, _ in v])),
               None if v[0][1] is None else float(np.median([k_ for _, k_ in v])))
           for k, v in times.items()}
    log(f"  {row.rid:16s} {row.what:44s} err {err:.1e} {'ok' if ok else 'WRONG'}  "
        + "  ".join(f"{k} {_ms(w)}/{_ms(kt)}" for k, (w, kt) in med.items()))
    return {"err": err, "ok": ok, "against": against, "rounds": rounds, "med": med}


def _ms(v) -> str:
    if v is None:
        return "n/a"
    return f"{v * 1e3:.0f} µs" if v < 1 else f"{v:.2f} ms"


def _ratio(theirs, ours) -> str:
    if theirs is None or ours is None or ours <= 0:
        return "n/a"
    return f"{theirs / ours:.2f}x"


def _timing_markdown(results, torch, mode: Mode) -> str:
    lines = ["### Timing: fastconv against PyTorch/cuDNN on the same device memory", ""]
    if torch is None:
        lines += ["No CUDA PyTorch here (or the simulator): each row's result is checked "
                  "against the CPU backend and only fastconv's wall time is shown.", ""]
    else:
        lines += [f"PyTorch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
                  f"`cudnn.benchmark={torch.backends.cudnn.benchmark}`. fp32: "
                  "`torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 "
                  "= False` (like for like: numba-cuda has no tensor cores); TF32: both True "
                  "(PyTorch's default for convolutions). Each result is checked against "
                  "cuDNN fp32 first.", ""]
    lines += ["Times are medians over the rounds (after warm-up), each `wall / kernel`: "
              "wall = the Python call until the GPU is done (`synchronize`), kernel = "
              "between CUDA events recorded on the default stream around the call "
              "(launch gaps included). Ratio = cuDNN kernel time / fastconv kernel time "
              "(higher = fastconv faster); targets (issue 13, batch 64, TF32 off): dense 3x3 "
              ">= 0.5x, depthwise and pooling >= 0.8x. fastconv gets Numba views "
              "(`cuda.as_cuda_array`) of PyTorch's tensors.", "",
              "| id | workload | fastconv | cuDNN fp32 | ratio fp32 | cuDNN TF32 | ratio TF32 "
              "| target | rounds | max err |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row, res, note in results:
        if res is None:
            lines.append(f"| {row.rid} | {row.what} | {note} | | | | | | | |")
            continue
        med = res["med"]
        ow, ok_ = med["ours"]
        fw, fk = med.get("fp32", (None, None))
        tw, tk = med.get("tf32", (None, None))
        ratio = _ratio(fk, ok_)
        target = ""
        if row.target is not None:
            met = fk is not None and ok_ and fk / ok_ >= row.target
            target = f">= {row.target}x " + ("met" if met else "missed" if fk else "(n/a)")
        err = f"{res['err']:.0e}" + ("" if res["ok"] else " WRONG")
        lines.append(
            f"| {row.rid} | {row.what} | {_ms(ow)} / {_ms(ok_)} | "
            f"{_ms(fw) + ' / ' + _ms(fk) if fw is not None else 'n/a'} | {ratio} | "
            f"{_ms(tw) + ' / ' + _ms(tk) if tw is not None else ('same' if fw else 'n/a')} | "
            f"{_ratio(tk, ok_) if tw is not None else ''} | {target} | {res['rounds']} | {err} |")
    return "\n".join(lines)


# --- driver ----------------------------------------------------------------------------------

#: A run still going at this multiple of its budget is stuck (a hung kernel, a deadlock):
#: the watchdog writes the report with what it has, and ends the process.
WATCHDOG = 1.25


def _watchdog(report: Report, ctx: dict, seconds: float) -> None:
    import threading

    def fire():
        report.running = None
        report.fail(ctx.get("section", "?"), f"watchdog: still running after {seconds:.0f} s "
                    "(a hung kernel or call?); the process was ended")
        with contextlib.suppress(Exception):
            report.write()
        log(f"\n{report.verdict()}\nreport: {report.path}")
        os._exit(1)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


SECTIONS = {
    "machine": machine,
    "tests": run_tests,
    "fuzz": run_fuzz,
    "copies": run_copies,
    "timing": run_timing,
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = p.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="under 3 minutes on a real GPU")
    group.add_argument("--smoke", action="store_true",
                       help="tiny shapes, a few cases per op (CI, NUMBA_ENABLE_CUDASIM=1)")
    p.add_argument("--out", default=str(ROOT / "bench"), help="report folder (default bench/)")
    p.add_argument("--budget", type=float, help="seconds for the whole run (default: the "
                   "mode's: full 450, quick 170, smoke 300)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)} (machine always runs)")
    args = p.parse_args(argv)
    mode = MODES["quick" if args.quick else "smoke" if args.smoke else "full"]
    if args.budget is not None:
        mode = Mode(mode.name, args.budget, mode.fuzz_per_op, mode.pytest_k, mode.max_rounds,
                    mode.rows)
    wanted = {s.strip() for s in args.sections.split(",") if s.strip()} | {"machine"}
    unknown = wanted - set(SECTIONS)
    if unknown:
        p.error(f"--sections: unknown {sorted(unknown)}; choose from {list(SECTIONS)}")
    os.environ.pop("FASTCONV_DEVICE", None)  # the CPU-side checks run on the CPU
    warnings.simplefilter("ignore", category=DeprecationWarning)
    report = Report(mode, Path(args.out) / "gpu-results.md")
    if simulator():
        import fastconv.cuda

        fastconv.cuda.THREADS = SIM_THREADS
    log(f"{report.title}: budget {mode.budget:.0f} s, report {report.path}")
    ctx: dict = {"section": "machine"}
    _watchdog(report, ctx, mode.budget * WATCHDOG)
    for name, func in SECTIONS.items():
        if name not in wanted:
            continue
        t0 = time.perf_counter()
        elapsed = t0 - report.started
        ctx.update(deadline=report.started + SECTION_END.get(name, 1.0) * mode.budget,
                   note="")
        if name != "machine" and ctx.get("no_gpu"):
            report.sections.append((name, "not run", 0.0, "no usable CUDA GPU"))
            continue
        if name != "machine" and elapsed > mode.budget * SECTION_END.get(name, 1.0):
            report.sections.append((name, "skipped", 0.0, "time budget spent"))
            report.partial.append(f"section {name}")
            log(f"== {name}: skipped (time budget)")
            continue
        log(f"== {name} ({elapsed:.0f} s in)")
        ctx["section"] = report.running = name
        report.write()
        nfail = len(report.failures)
        status = "ok"
        try:
            func(report, ctx)
        except Exception as exc:
            report.fail(name, f"section raised {type(exc).__name__}: {exc}")
            log(traceback.format_exc())
            status = "error"
        if status == "ok" and len(report.failures) > nfail:
            status = "FAIL"
        report.sections.append((name, status, time.perf_counter() - t0, ctx.get("note", "")))
        report.running = None
        report.write()
    report.write()
    log(f"\n{report.verdict()}")
    log(f"report: {report.path}")
    return 1 if report.failures else 3 if report.partial else 0


if __name__ == "__main__":
    sys.exit(main())
