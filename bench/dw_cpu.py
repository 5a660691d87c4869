"""1-thread CPU time (time.process_time) of the weight gradient, median of ROUNDS, for
A/B against another checkout: run with NUMBA_NUM_THREADS=1 OMP/OPENBLAS threads 1.
Usage: dw_cpu.py B3|B5 ROUNDS."""
import sys
import time

import numpy as np

import fastconv as fc

wid, rounds = sys.argv[1], int(sys.argv[2])
cases = {"B3": ((8, 64, 56, 56), (64, 64, 3, 3)), "B5": ((8, 256, 14, 14), (256, 256, 3, 3))}
xs, ws = cases[wid]
rng = np.random.default_rng(0)
x = rng.standard_normal(xs, dtype=np.float32)
g = rng.standard_normal((xs[0], ws[0]) + xs[2:], dtype=np.float32)
for _ in range(3):
    fc.grad.conv2d_weight(x, ws, g, padding=1)
S = []
for _ in range(rounds):
    s = time.process_time()
    for _ in range(5):
        fc.grad.conv2d_weight(x, ws, g, padding=1)
    S.append((time.process_time() - s) / 5 * 1e3)
print(f"{wid} cpu1 {np.median(S):.2f} ms")
