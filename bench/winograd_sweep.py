"""Where Winograd beats the GEMM path (the data behind ``"auto"``'s Winograd rule):
1-thread CPU time (``time.thread_time``, min of 3, robust to a loaded machine) of
``conv2d(..., padding=1)`` with a 3x3 kernel, float32, for C = K channels and H = W
pixels; prints a Markdown table of gemm / winograd time.

    .venv/bin/python bench/winograd_sweep.py
"""

from __future__ import annotations

import time

import numba
import numpy as np

import fastconv as fc


def cpu_time(f, reps: int = 3) -> float:
    f()
    best = float("inf")
    for _ in range(reps):
        t = time.thread_time()
        f()
        best = min(best, time.thread_time() - t)
    return best


def main() -> None:
    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    sizes = [7, 14, 28, 56]
    chans = [8, 16, 32, 64, 128, 256]
    print("| C = K \\\\ H = W | " + " | ".join(str(s) for s in sizes) + " |")
    print("|---" * (len(sizes) + 1) + "|")
    for c in chans:
        row = []
        for hw in sizes:
            n = max(1, min(8, int(2**22 // (c * c * hw * hw) ) or 1))
            x = rng.standard_normal((n, c, hw, hw), dtype=np.float32)
            w = rng.standard_normal((c, c, 3, 3), dtype=np.float32)
            tg = cpu_time(lambda x=x, w=w: fc.conv2d(x, w, padding=1, algorithm="gemm"))
            tw = cpu_time(lambda x=x, w=w: fc.conv2d(x, w, padding=1, algorithm="winograd"))
            row.append(f"{tg / tw:.2f} (N={n})")
        print(f"| {c} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
