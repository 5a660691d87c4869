"""Cold compile time per op family and dtype: which kernels a first call compiles, and how long.

    python bench/compile_times.py                    # every row, median of 3 fresh processes
    python bench/compile_times.py --runs 1 --only conv2d,corr2d

Each run is a fresh interpreter with an empty ``NUMBA_CACHE_DIR``: ``import fastconv`` and
Numba's start-up (import, CPU target initialisation: a second process that only imports
and initialises is timed alone, the "numba start" column) are separated from the first
call, and the kernels the call compiled are read back from the cache directory (one
``.nbi`` index per kernel, one ``.nbc`` file per compiled signature). Timings belong to
``flock /tmp/bench.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

#: (op family, dtype) -> the call whose first run is timed (``np``, ``fc`` are imported).
ROWS = {
    ("corr2d", "float64"): "fc.corr2d(np.arange(9.).reshape(3, 3), [[0., 1.], [2., 3.]])",
    ("conv2d direct (tiny, serial)", "float32"):
        "fc.conv2d(np.ones((1, 1, 3, 3), DT), np.ones((1, 1, 2, 2), DT))",
    ("conv2d direct", "float32"):
        "fc.conv2d(np.ones((2, 8, 16, 16), DT), np.ones((8, 8, 3, 3), DT), padding=1)",
    ("conv2d direct", "float64"):
        "fc.conv2d(np.ones((2, 8, 16, 16), DT), np.ones((8, 8, 3, 3), DT), padding=1)",
    ("conv2d few-channel", "float32"):
        "fc.conv2d(np.ones((1, 3, 32, 32), DT), np.ones((3, 1, 3, 3), DT), groups=3, padding=1)",
    ("conv2d gemm", "float32"):
        "fc.conv2d(np.ones((2, 32, 16, 16), DT), np.ones((32, 32, 3, 3), DT), padding=1, "
        "algorithm='gemm')",
    ("conv2d winograd", "float32"):
        "fc.conv2d(np.ones((2, 8, 16, 16), DT), np.ones((8, 8, 3, 3), DT), padding=1, "
        "algorithm='winograd')",
    ("max_pool2d", "float64"): "fc.max_pool2d(np.arange(16.).reshape(1, 4, 4), 2)",
    ("max_pool2d", "float32"): "fc.max_pool2d(np.ones((2, 4, 12, 12), DT), 2)",
    ("avg_pool2d", "float32"): "fc.avg_pool2d(np.ones((2, 4, 12, 12), DT), 2)",
    ("conv2d_input (tiny)", "float64"):
        "fc.grad.conv2d_input((1, 1, 3, 3), np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)))",
    ("conv2d_weight (tiny)", "float64"):
        "fc.grad.conv2d_weight(np.ones((1, 1, 3, 3)), (1, 1, 2, 2), np.ones((1, 1, 2, 2)))",
    ("conv2d_weight", "float32"):
        "fc.grad.conv2d_weight(np.ones((2, 8, 12, 12), DT), (8, 8, 3, 3), "
        "np.ones((2, 8, 12, 12), DT), padding=1)",
    ("max_pool2d grad", "float64"):
        "fc.grad.max_pool2d(np.ones((1, 1, 2, 2)), np.arange(16.).reshape(1, 1, 4, 4), 2)",
    ("learn_kernel (seed story)", "float64"):
        "X = np.ones((6, 8)); X[:, 2:6] = 0; "
        "fc.learn_kernel(X, fc.corr2d(X, [[1, -1]]), (1, 2), seed=0)",
}

CHILD = """
import json, time
t0 = time.perf_counter()
import numpy as np, fastconv as fc
t1 = time.perf_counter()
import numba
from numba.core.registry import cpu_target
cpu_target.target_context  # Numba's CPU target (imports numba.np.*, scipy.linalg)
t2 = time.perf_counter()
DT = np.{dtype}
{code}
t3 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "numba": t2 - t1, "first": t3 - t2}}))
"""


def run_once(code: str, dtype: str, cache_dir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", CHILD.format(code=code, dtype=dtype)],
                         env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    files = list(Path(cache_dir).rglob("*.nb[ic]"))
    result["kernels"] = sorted(f.name.split("-")[0] for f in files if f.suffix == ".nbi")
    result["signatures"] = sum(f.suffix == ".nbc" for f in files)
    return result


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated row name prefixes")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    print(f"| op | dtype | numba start | cold first call | kernels compiled (signatures) |"
          f"  median of {args.runs}")
    print("|---|---|---|---|---|")
    for (name, dtype), code in ROWS.items():
        if only and not any(name.startswith(o) for o in only):
            continue
        runs = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as d:
                runs.append(run_once(code, dtype, d))
        numba_s = statistics.median(r["numba"] for r in runs)
        first = statistics.median(r["first"] for r in runs)
        kernels = ", ".join(runs[0]["kernels"])
        print(f"| {name} | {dtype} | {numba_s:.2f} s | {first:.2f} s | {kernels} "
              f"({runs[0]['signatures']}) |", flush=True)


if __name__ == "__main__":
    main()
