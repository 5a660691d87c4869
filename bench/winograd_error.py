"""Float32 error of each algorithm against a float64 reference (the direct kernel in
float64), on W3/W5-shaped layers and small random layers: relative RMS error and
max |error| / max |y|. Winograd is run with F(4x4) and F(2x2) forced.

    .venv/bin/python bench/winograd_error.py
"""

from __future__ import annotations

import numpy as np

import fastconv as fc
from fastconv.cpu import winograd


def errors(x, w, pad, algorithm, m=None):
    ref = fc.conv2d(x.astype(np.float64), w.astype(np.float64), padding=pad, algorithm="direct")
    saved = winograd.tile_size
    if m is not None:
        winograd.tile_size = lambda oh, ow: m
    try:
        got = fc.conv2d(x, w, padding=pad, algorithm=algorithm).astype(np.float64)
    finally:
        winograd.tile_size = saved
    d = got - ref
    return np.sqrt(np.mean(d * d) / np.mean(ref * ref)), np.abs(d).max() / np.abs(ref).max()


def main() -> None:
    rng = np.random.default_rng(0)
    cases = {"W3": ((8, 64, 56, 56), (64, 64, 3, 3)), "W5": ((8, 256, 14, 14), (256, 256, 3, 3)),
             "small": ((2, 16, 17, 19), (16, 16, 3, 3))}
    variants = [("direct", None), ("gemm", None), ("winograd", 2), ("winograd", 4)]
    print("| layer | algorithm | relative RMS | max err / max abs y |")
    print("|---|---|---|---|")
    for name, (xs, wsh) in cases.items():
        x = rng.standard_normal(xs, dtype=np.float32)
        w = rng.standard_normal(wsh, dtype=np.float32)
        for algo, m in variants:
            rms, mx = errors(x, w, 1, algo, m)
            label = algo if m is None else f"winograd F({m}x{m})"
            print(f"| {name} | {label} | {rms:.1e} | {mx:.1e} |")
    # the test domain: batch 1-2, 8-16 channels, 3-20 pixels; worst case over 200 layers
    worst = {2: 0.0, 4: 0.0}
    for _ in range(200):
        C, K = (int(v) for v in rng.integers(8, 17, 2))
        xs = (int(rng.integers(1, 3)), C, int(rng.integers(3, 21)), int(rng.integers(3, 21)))
        x = rng.standard_normal(xs, dtype=np.float32)
        w = rng.standard_normal((K, C, 3, 3), dtype=np.float32)
        for m in worst:
            worst[m] = max(worst[m], errors(x, w, int(rng.integers(0, 3)), "winograd", m)[1])
    print("worst max err / max abs y over 200 small layers:",
          ", ".join(f"F({m}x{m}) {v:.1e}" for m, v in worst.items()))


if __name__ == "__main__":
    main()
