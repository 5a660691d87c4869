"""W3/W5 forward and B3/B5 input gradient, fastconv ``"winograd"`` vs PyTorch, each on
ONE thread, by CPU time (``time.thread_time``: robust on a loaded machine, where
wall-clock 2-thread figures are not), min and median of ``--rounds`` interleaved calls.
Not part of `make bench`.

    flock /tmp/bench.lock .venv/bin/python bench/winograd_cpu.py --rounds 9
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np

import fastconv as fc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--only", default="W3,W5,B3,B5")
    args = ap.parse_args()
    import torch

    numba.set_num_threads(1)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    shapes = {"W3": ((8, 64, 56, 56), (64, 64, 3, 3)), "W5": ((8, 256, 14, 14), (256, 256, 3, 3))}
    for wid in args.only.split(","):
        xs, wsh = shapes["W" + wid[1:]]
        x = rng.standard_normal(xs, dtype=np.float32)
        w = rng.standard_normal(wsh, dtype=np.float32)
        g = rng.standard_normal((xs[0], wsh[0], xs[2], xs[3]), dtype=np.float32)
        tx, tw, tg = (torch.from_numpy(a) for a in (x, w, g))
        if wid.startswith("W"):
            fns = {"fastconv": lambda x=x, w=w: fc.conv2d(x, w, padding=1, algorithm="winograd"),
                   "torch": lambda tx=tx, tw=tw: torch.nn.functional.conv2d(tx, tw, padding=1)}
        else:
            fns = {"fastconv": lambda xs=xs, w=w, g=g: fc.grad.conv2d_input(
                       xs, w, g, padding=1, algorithm="winograd"),
                   "torch": lambda xs=xs, tw=tw, tg=tg: torch.nn.grad.conv2d_input(
                       xs, tw, tg, padding=1)}
        for f in fns.values():
            f()
        samples = {k: [] for k in fns}
        for _ in range(args.rounds):
            for k, f in fns.items():
                t = time.thread_time()
                f()
                samples[k].append(time.thread_time() - t)
        lo = {k: min(v) for k, v in samples.items()}
        med = {k: float(np.median(v)) for k, v in samples.items()}
        print(f"{wid} 1 thread CPU: fastconv min {1e3 * lo['fastconv']:.2f} / median "
              f"{1e3 * med['fastconv']:.2f} ms, torch {1e3 * lo['torch']:.2f} / "
              f"{1e3 * med['torch']:.2f} ms; torch / fastconv {lo['torch'] / lo['fastconv']:.2f}x "
              f"(min), {med['torch'] / med['fastconv']:.2f}x (median)", flush=True)


if __name__ == "__main__":
    main()
