"""Time to first result: each op's first call in a fresh process, cold and warm Numba cache.

    python bench/first_call.py              # table: cold / warm seconds per op, median of 5
    python bench/first_call.py --runs 3 --only corr2d,conv2d
    python bench/first_call.py --only quick --background   # + a background compile beside it

Cold: every run gets an empty ``NUMBA_CACHE_DIR`` (nothing compiled yet). Warm: the runs share
one cache directory filled by a first, untimed run. Each figure is the wall time of the
first call (``import fastconv`` timed separately), measured inside a fresh interpreter; the
CPU time of the same span (user + system of the process) follows in brackets: on a shared
machine the wall time waits for cores, the CPU time much less so.

Python bytecode is compiled first (``compileall`` over fastconv and its CLI) and the
children write it: a fresh clone with ``PYTHONDONTWRITEBYTECODE`` set would otherwise
recompile fastconv's sources in every process, which an installed package never does.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile

#: op -> code run after ``import numpy as np, fastconv as fc`` (its first call is timed)
OPS = {
    "corr2d": "fc.corr2d(np.arange(9.).reshape(3, 3), [[0., 1.], [2., 3.]])",
    "conv2d f32": ("fc.conv2d(np.ones((2, 8, 16, 16), np.float32), "
                   "np.ones((8, 8, 3, 3), np.float32), padding=1)"),
    "max_pool2d": "fc.max_pool2d(np.arange(16.).reshape(1, 4, 4), 2)",
    "avg_pool2d": "fc.avg_pool2d(np.arange(16.).reshape(1, 4, 4), 2)",
    "conv2d_weight f64": "fc.grad.conv2d_weight(np.ones((1, 1, 3, 3)), (1, 1, 2, 2), "
                         "np.ones((1, 1, 2, 2)))",
    "conv2d_input f64": "fc.grad.conv2d_input((1, 1, 3, 3), np.ones((1, 1, 2, 2)), "
                        "np.ones((1, 1, 2, 2)))",
    "max_pool2d grad": ("fc.grad.max_pool2d(np.ones((1, 1, 2, 2)), "
                        "np.arange(16.).reshape(1, 1, 4, 4), 2)"),
    "quick start": None,  # the README's quick start, end to end
}

QUICK_START = """
fc.corr2d([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]])
X = np.ones((6, 8)); X[:, 2:6] = 0
fc.corr2d(X, [[1, -1]])[0]
fc.max_pool2d(np.arange(16.).reshape(1, 4, 4), 2)
fc.grad.conv2d_input((1, 1, 3, 3), np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)))
fit = fc.learn_kernel(X, fc.corr2d(X, [[1, -1]]), (1, 2), seed=0)
"""

#: Run before the call that fills the warm cache: the small-image forward compiles its
#: kernels (as ``fastconv warmup`` does) instead of running its cold-cache NumPy form.
WARM_FILL = "from fastconv.cpu import small; small.KERNELS = True\n"

CHILD = """
import time, json
t0, c0 = time.perf_counter(), time.process_time()
import numpy as np, fastconv as fc
t1, c1 = time.perf_counter(), time.process_time()
exec({code!r})
t2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({{"import": t1 - t0, "first": t2 - t1, "import_cpu": c1 - c0,
                  "first_cpu": c2 - c1}}))
"""


#: The idea "with a cold cache, compile the next kernels in a background process at the
#: first call", in its best case: a second process compiles the float64 pooling and
#: gradient kernels (the quick start's later calls) while the first call compiles.
BACKGROUND = ("from fastconv._warmup import _run_task; _run_task('pool', 'float64'); "
              "_run_task('grad', 'float64')")


def run_once(code: str, cache_dir: str, background: bool = False) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    helper = (subprocess.Popen([sys.executable, "-c", BACKGROUND], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
              if background else None)
    try:
        out = subprocess.run([sys.executable, "-c", CHILD.format(code=code)], env=env,
                             capture_output=True, text=True, check=True)
    finally:
        if helper is not None:
            helper.kill()
            helper.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(code: str, runs: int, background: bool = False) -> dict:
    """Medians over ``runs``: import, cold first call, warm import + first call (seconds,
    wall) and the same three as CPU time (``*_cpu``)."""
    rows = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            rows.append(run_once(code, d, background))
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    if background:  # the warm figures do not change
        return dict(med, warm=float("nan"), warm_cpu=float("nan"))
    with tempfile.TemporaryDirectory() as d:  # filled as by `fastconv warmup`: compiled
        run_once(WARM_FILL + code, d)  # (a cold cache's first calls may skip compiling)
        warm = [run_once(code, d) for _ in range(runs)]
    med["warm"] = statistics.median(r["import"] + r["first"] for r in warm)
    med["warm_cpu"] = statistics.median(r["import_cpu"] + r["first_cpu"] for r in warm)
    return med


def _row(name: str, m: dict) -> str:
    return (f"| {name} | {m['import']:.2f} s | {m['first']:.2f} s ({m['first_cpu']:.2f}) "
            f"| {m['warm']:.2f} s ({m['warm_cpu']:.2f}) |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated op names (prefixes)")
    ap.add_argument("--background", action="store_true",
                    help="also time the cold quick start with a background compile of the "
                         "float64 pooling and gradient kernels started beside it")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    for root in ("fastconv", "fastconv_cli"):  # bytecode, as an installed package has it
        spec = importlib.util.find_spec(root)
        if spec is not None and spec.submodule_search_locations:
            for where in spec.submodule_search_locations:
                compileall.compile_dir(where, quiet=1)
    print(f"| op | import | cold first call (CPU) | warm: import + first call (CPU) "
          f"|  (median of {args.runs}; load average {os.getloadavg()[0]:.1f} at start)")
    print("|---|---|---|---|")
    for name, code in OPS.items():
        if only and not any(name.startswith(o) for o in only):
            continue
        print(_row(name, measure(QUICK_START if code is None else code, args.runs)),
              flush=True)
    if args.background:
        m = measure(QUICK_START, args.runs, background=True)
        print(_row("quick start, background compile beside it", m).replace("nan s (nan)", "-"))
    print(f"(load average {os.getloadavg()[0]:.1f} at the end)")


if __name__ == "__main__":
    main()
