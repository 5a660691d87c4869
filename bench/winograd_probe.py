"""Winograd probe: W3/W5 forward and B3/B5 input gradient, fastconv algorithms vs PyTorch,
interleaved round by round in one process (median of --rounds). Not part of `make bench`.

    flock /tmp/bench.lock .venv/bin/python bench/winograd_probe.py --rounds 7
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np

import fastconv as fc


def _calls(wid, shape, algos, rng, torch) -> dict:
    xs, wsh = shape
    x = rng.standard_normal(xs, dtype=np.float32)
    w = rng.standard_normal(wsh, dtype=np.float32)
    g = rng.standard_normal((xs[0], wsh[0], xs[2], xs[3]), dtype=np.float32)
    tx, tw, tg = (torch.from_numpy(a) for a in (x, w, g))
    if wid.startswith("W"):
        fns = {a: (lambda a=a: fc.conv2d(x, w, padding=1, algorithm=a)) for a in algos}
        fns["torch"] = lambda: torch.nn.functional.conv2d(tx, tw, padding=1)
    else:
        fns = {a: (lambda a=a: fc.grad.conv2d_input(xs, w, g, padding=1, algorithm=a))
               for a in algos}
        fns["torch"] = lambda: torch.nn.grad.conv2d_input(xs, tw, tg, padding=1)
    return fns


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--only", default="W3,W5,B3,B5")
    ap.add_argument("--algos", default="winograd,gemm")
    args = ap.parse_args()
    import torch

    threads = numba.get_num_threads()
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    shapes = {"W3": ((8, 64, 56, 56), (64, 64, 3, 3)), "W5": ((8, 256, 14, 14), (256, 256, 3, 3))}
    shapes["B3"], shapes["B5"] = shapes["W3"], shapes["W5"]
    algos = args.algos.split(",")
    for wid in args.only.split(","):
        fns = _calls(wid, shapes[wid], algos, rng, torch)
        ref = np.asarray(fns["torch"]())
        for name, f in fns.items():
            got = np.asarray(f())
            err = np.abs(got - ref).max() / np.abs(ref).max()
            print(f"{wid} {name}: max err / max|y| {err:.1e}")
        samples = {name: [] for name in fns}
        for _ in range(args.rounds):
            for name, f in fns.items():
                t = time.perf_counter()
                f()
                f()
                samples[name].append((time.perf_counter() - t) / 2)
        med = {name: float(np.median(v)) for name, v in samples.items()}
        line = ", ".join(f"{n} {1e3 * t:.2f} ms ({med['torch'] / t:.2f}x)" for n, t in med.items())
        print(f"{wid} ({threads} threads): {line}", flush=True)


if __name__ == "__main__":
    main()
