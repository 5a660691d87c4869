"""The command line's start-up: one file per process against many files in one process.

    python bench/cli_start.py               # median of 5 runs of each row, warm kernel cache
    python bench/cli_start.py --files 100 --runs 7

Rows (each a fresh ``fastconv`` process, after one untimed run fills the kernel cache):
``convolve`` of one small PNG; ``convolve`` of ``--files`` small PNGs in one command
(``-o OUTDIR/``) and its ratio to one call (the issue's target: <= 3x for 100 files); the
same PNGs as a shell loop would run them (estimated: files x one call); ``convolve`` of a
2048x2048 float32 ``.npy`` (target <= 0.8 s). Timings belong to ``flock /tmp/bench.lock``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SCRIPT = str(Path(sys.executable).with_name("fastconv"))


def timed(argv: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([SCRIPT, *argv], cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--size", type=int, default=64, help="edge of the small PNGs")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "in").mkdir()
        names = []
        for i in range(args.files):
            name = f"in/img{i:03d}.png"
            Image.fromarray(rng.integers(0, 256, (args.size, args.size), dtype=np.uint8)).save(
                root / name)
            names.append(name)
        np.save(root / "big.npy", rng.standard_normal((2048, 2048)).astype(np.float32))
        one = ["convolve", names[0], "-k", "sobel-x", "--padding", "same", "-o", "one.png"]
        many = ["convolve", *names, "-k", "sobel-x", "--padding", "same", "-o", "out/",
                "--overwrite"]
        big = ["convolve", "big.npy", "-k", "sobel-x", "--padding", "same", "-o", "big_out.npy"]
        for argv_ in (one, many, big):  # fill the kernel cache; untimed
            timed(argv_, root)
        t_one, t_many, t_big = [], [], []
        for _ in range(args.runs):  # interleaved, so drifting load hits every row alike
            t_one.append(timed(one, root))
            t_many.append(timed(many, root))
            t_big.append(timed(big, root))
            shutil.rmtree(root / "out", ignore_errors=True)
        one_s, many_s, big_s = (statistics.median(t) for t in (t_one, t_many, t_big))
    print(f"| row | seconds |  (median of {args.runs}, warm cache)")
    print("|---|---|")
    print(f"| convolve 1 PNG ({args.size}x{args.size}) | {one_s:.2f} s |")
    print(f"| convolve {args.files} PNGs, one command | {many_s:.2f} s "
          f"({many_s / one_s:.1f}x one call) |")
    print(f"| {args.files} PNGs as a shell loop (files x one call) | {args.files * one_s:.1f} s |")
    print(f"| convolve 2048x2048 float32 .npy | {big_s:.2f} s |")


if __name__ == "__main__":
    main()
