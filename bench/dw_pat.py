"""Weight-gradient timing in the bench's pattern (sleep 0.2 s, 1 untimed call, ``per``
timed calls), 2 and 1 Numba threads, plus PyTorch in the same pattern (adapted from the
lead's /tmp/diag/pat.py). Usage: dw_pat.py B3|B5 PER ROUNDS [torch]."""
import sys
import time

import numba
import numpy as np

import fastconv as fc

wid, per, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cases = {"B3": ((8, 64, 56, 56), (64, 64, 3, 3)), "B5": ((8, 256, 14, 14), (256, 256, 3, 3))}
xs, ws = cases[wid]
rng = np.random.default_rng(0)
x = rng.standard_normal(xs, dtype=np.float32)
g = rng.standard_normal((xs[0], ws[0]) + xs[2:], dtype=np.float32)
fns = {"fc": lambda: fc.grad.conv2d_weight(x, ws, g, padding=1)}
if len(sys.argv) > 4:
    import torch
    torch.set_num_threads(2)
    tx, tg = torch.from_numpy(x), torch.from_numpy(g)
    fns["torch"] = lambda: torch.nn.grad.conv2d_weight(tx, ws, tg, padding=1)
res = {}
for th in (2, 1):
    numba.set_num_threads(th)
    S = {k: [] for k in fns}
    for f in fns.values():
        for _ in range(3):
            f()
    for _ in range(rounds):
        for k, f in fns.items():
            time.sleep(0.2)
            f()
            s = time.perf_counter()
            for _ in range(per):
                f()
            S[k].append((time.perf_counter() - s) / per * 1e3)
    res[th] = {k: float(np.median(v)) for k, v in S.items()}
t2, t1 = res[2]["fc"], res[1]["fc"]
line = f"{wid} 2thr {t2:.2f} 1thr {t1:.2f} scaling {t1 / t2:.2f}"
if "torch" in res[2]:
    line += f" torch {res[2]['torch']:.2f} ratio {res[2]['torch'] / res[2]['fc']:.2f}"
print(line)
