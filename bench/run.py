"""fastconv speed against PyTorch, OpenCV and SciPy on this machine (issue 7's workloads).

``make bench`` runs every workload; ``python bench/run.py --quick`` runs them with fewer
repeats (under 2 minutes). For each workload: seeded float32 inputs; fastconv and every
comparator run once outside the timed region (compile, warm caches) and their results are
checked against the first comparator; then all of them are timed interleaved, in rounds,
in this process, and the median of the rounds is reported. Ratios are
``comparator time / fastconv time`` (higher = fastconv faster). The table is printed and
appended, dated, to ``bench/RESULTS.md`` with the CPU, thread count and library versions.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np

import fastconv as fc

RESULTS = Path(__file__).with_name("RESULTS.md")
#: float32 FMA peak of this 2-core Zen 3 at its measured clock (issue 7): 2 cores x 2 FMA
#: pipes x 8 lanes x 2 flops x ~3.7 GHz.
PEAK_GFLOPS = 235.0


@dataclass
class Workload:
    wid: str
    what: str
    ours: object  # () -> array
    others: dict  # name -> () -> array (the first is the correctness reference)
    flops: float = 0.0
    target: str = ""
    tol: float = 1e-4  # |ours - ref| <= tol * (1 + max|ref|)
    times: dict = field(default_factory=dict)
    error: float = 0.0


def conv_flops(x_shape, w_shape, out_shape) -> float:
    """2 * multiply-adds of a direct correlation."""
    return 2.0 * np.prod(out_shape) * np.prod(w_shape[1:])


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    return torch


def _cv2():
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def workloads(rng) -> list[Workload]:
    torch = _torch()
    cv2 = _cv2()
    import scipy.ndimage as ndi
    import scipy.signal as ss

    F = torch.nn.functional if torch else None
    T = torch.from_numpy if torch else None
    f32 = np.float32
    ws: list[Workload] = []

    def conv(wid, what, xs, wsh, target, stride=1, padding=0, groups=1, others=None, tol=1e-4,
             conv_fn=fc.conv2d, tconv="conv2d"):
        x = rng.standard_normal(xs, dtype=f32)
        w = rng.standard_normal(wsh, dtype=f32)
        ours = lambda: conv_fn(x, w, stride=stride, padding=padding, groups=groups)  # noqa: E731
        out_shape = ours().shape
        comp = {}
        if torch:
            tx, tw, tf = T(x), T(w), getattr(F, tconv)
            comp["torch"] = lambda: tf(tx, tw, stride=stride, padding=padding, groups=groups)
        for name, make in (others or {}).items():
            comp[name] = make(x, w)
        ws.append(Workload(wid, what, ours, comp, conv_flops(xs, wsh, out_shape), target,
                           tol))

    # W1: the seed's edge detector -- per-call overhead
    conv("W1", "1x1x6x8 * 1x1x1x2", (1, 1, 6, 8), (1, 1, 1, 2), "<= 2x torch time (>= 0.5x)")
    w2_others = {}
    if cv2 is not None:
        w2_others["cv2.filter2D"] = lambda x, w: lambda: cv2.filter2D(
            x[0, 0], -1, w[0, 0], borderType=cv2.BORDER_CONSTANT)
    w2_others["ndimage"] = lambda x, w: lambda: ndi.correlate(x[0, 0], w[0, 0], mode="constant")
    conv("W2", "1x1x2048^2 * 5x5 pad 2", (1, 1, 2048, 2048), (1, 1, 5, 5),
         ">= 1x cv2, >= 20x torch", padding=2, others=w2_others)
    conv("W3", "8x64x56^2 * 64x64x3x3 pad 1", (8, 64, 56, 56), (64, 64, 3, 3), ">= 1x torch",
         padding=1)
    # W3 thread scaling: fastconv on all threads vs on one (Numba's threads; the GEMM
    # algorithm runs single-threaded BLAS calls on that many Python threads, so this sets
    # the BLAS side too); ratio = 1-thread time / all-thread time
    x3 = rng.standard_normal((8, 64, 56, 56), dtype=f32)
    w3 = rng.standard_normal((64, 64, 3, 3), dtype=f32)
    nthreads = numba.get_num_threads()

    def w3_on(threads):
        def run():
            numba.set_num_threads(threads)
            try:
                return fc.conv2d(x3, w3, padding=1)
            finally:
                numba.set_num_threads(nthreads)
        return run

    ws.append(Workload("W3 threads", f"W3 on {nthreads} threads vs 1", w3_on(nthreads),
                       {"1 thread": w3_on(1)}, conv_flops(x3.shape, w3.shape, (8, 64, 56, 56)),
                       ">= 1.7x its 1-thread speed"))
    conv("W4", "8x3x224^2 * 64x3x7x7 s2 p3", (8, 3, 224, 224), (64, 3, 7, 7), ">= 0.9x torch",
         stride=2, padding=3)
    conv("W5", "8x256x14^2 * 256x256x3x3 p1", (8, 256, 14, 14), (256, 256, 3, 3),
         ">= 1x torch", padding=1, tol=2e-4)
    w6_others = {"np.dot/image": lambda x, w: lambda: [
        np.dot(w[:, :, 0, 0], x[n].reshape(x.shape[1], -1)) for n in range(x.shape[0])]}
    conv("W6", "8x256x28^2 * 128x256x1x1", (8, 256, 28, 28), (128, 256, 1, 1), ">= 0.9x torch",
         others=w6_others)
    conv("W7", "8x128x56^2 depthwise 3x3 p1", (8, 128, 56, 56), (128, 1, 3, 3), ">= 2x torch",
         padding=1, groups=128)
    w8_others = {
        "fftconvolve": lambda x, w: lambda: ss.fftconvolve(x[0, 0], w[0, 0, ::-1, ::-1], "same"),
        "oaconvolve": lambda x, w: lambda: ss.oaconvolve(x[0, 0], w[0, 0, ::-1, ::-1], "same"),
    }
    conv("W8", "1x1x2048^2 * 31x31 same", (1, 1, 2048, 2048), (1, 1, 31, 31),
         ">= 1x best scipy", padding="same", others=w8_others, tol=1e-3)
    if torch:  # torch's direct 31x31 takes many seconds a call: not timed
        ws[-1].others.pop("torch")
    conv("C1", "1-D 8x64x4096 * 64x64x5 p2", (8, 64, 4096), (64, 64, 5), "(info)", padding=2,
         conv_fn=fc.conv1d, tconv="conv1d")
    conv("C3", "3-D 2x32x16x56^2 * 32x32x3^3 p1", (2, 32, 16, 56, 56), (32, 32, 3, 3, 3),
         "(info)", padding=1, conv_fn=fc.conv3d, tconv="conv3d")

    if hasattr(fc, "max_pool2d") and torch:
        x = rng.standard_normal((8, 64, 112, 112), dtype=f32)
        tx = T(x)
        for wid, k, s, p in (("P1", 3, 2, 1), ("P2", 2, 2, 0)):
            ws.append(Workload(
                f"{wid} max", f"max pool {k}x{k} s{s} p{p} 8x64x112^2",
                lambda k=k, s=s, p=p: fc.max_pool2d(x, k, s, p),
                {"torch": lambda k=k, s=s, p=p: F.max_pool2d(tx, k, s, p)},
                0.0, ">= 5x torch"))
            ws.append(Workload(
                f"{wid} avg", f"avg pool {k}x{k} s{s} p{p} 8x64x112^2",
                lambda k=k, s=s, p=p: fc.avg_pool2d(x, k, s, p),
                {"torch": lambda k=k, s=s, p=p: F.avg_pool2d(tx, k, s, p)},
                0.0, ">= 5x torch"))

    grad = getattr(fc, "grad", None)
    if grad is not None and hasattr(grad, "conv2d_input") and torch:
        for wid, xs, wsh in (("B3", (8, 64, 56, 56), (64, 64, 3, 3)),
                             ("B5", (8, 256, 14, 14), (256, 256, 3, 3))):
            x = rng.standard_normal(xs, dtype=f32)
            w = rng.standard_normal(wsh, dtype=f32)
            g = rng.standard_normal((xs[0], wsh[0], xs[2], xs[3]), dtype=f32)
            tx, tw, tg = T(x), T(w), T(g)
            fl = conv_flops(xs, wsh, g.shape)
            ws.append(Workload(
                f"{wid} dx", f"grad input of {'W3' if wid == 'B3' else 'W5'}",
                lambda xs=xs, w=w, g=g: grad.conv2d_input(xs, w, g, padding=1),
                {"torch": lambda xs=xs, tw=tw, tg=tg: torch.nn.grad.conv2d_input(
                    xs, tw, tg, padding=1)}, fl, ">= 0.8x torch", 2e-4))
            ws.append(Workload(
                f"{wid} dw", f"grad weight of {'W3' if wid == 'B3' else 'W5'}",
                lambda x=x, wsh=wsh, g=g: grad.conv2d_weight(x, wsh, g, padding=1),
                {"torch": lambda tx=tx, wsh=wsh, tg=tg: torch.nn.grad.conv2d_weight(
                    tx, wsh, tg, padding=1)}, fl, ">= 0.8x torch", 2e-4))
    if hasattr(fc, "adaptive_avg_pool2d") and torch:  # issue 18: the rest of the pooling family
        xa = rng.standard_normal((8, 64, 112, 112), dtype=f32)
        xg = rng.standard_normal((64, 512, 14, 14), dtype=f32)
        txa, txg = T(xa), T(xg)
        ws.append(Workload(
            "A1 adapt", "adaptive avg pool 8x64x112^2 -> 7x7",
            lambda: fc.adaptive_avg_pool2d(xa, 7),
            {"torch": lambda: F.adaptive_avg_pool2d(txa, 7)}, 0.0, ">= 1.0x torch"))
        ws.append(Workload(
            "A2 gap", "adaptive avg pool 64x512x14^2 -> 1 (global)",
            lambda: fc.adaptive_avg_pool2d(xg, 1),
            {"torch": lambda: F.adaptive_avg_pool2d(txg, 1)}, 0.0, ">= 1.0x torch"))
        pv, pi = fc.max_pool2d(xa, 3, 2, 1, return_indices=True)  # P1's output
        tpv, tpi = T(pv), torch.from_numpy(pi)
        ws.append(Workload(
            "U1 unpool", "max_unpool2d of P1's output -> 8x64x112^2",
            lambda: fc.max_unpool2d(pv, pi, 3, 2, 1, output_size=(112, 112)),
            {"torch": lambda: F.max_unpool2d(tpv, tpi, 3, 2, 1, output_size=(112, 112))},
            0.0, ">= 1.0x torch"))

    ws += scipy_nd_workloads(rng)
    return ws


def scipy_nd_workloads(rng) -> list[Workload]:
    """W11-W13: fastconv.ndimage against scipy.ndimage and dask-image (issue 17)."""
    import scipy.ndimage as ndi

    from fastconv import ndimage as fnd

    f32 = np.float32
    ws = []
    v = rng.standard_normal((128, 128, 128), dtype=f32)
    k = rng.standard_normal((5, 5, 5), dtype=f32)
    ws.append(Workload("W11", "ndimage.correlate 128^3 * 5^3 (reflect)",
                       lambda: fnd.correlate(v, k), {"ndimage": lambda: ndi.correlate(v, k)},
                       2.0 * v.size * k.size, ">= 4x ndimage"))
    im = rng.standard_normal((4096, 4096), dtype=f32)
    ws.append(Workload("W12", "gaussian_filter 4096^2 sigma 4",
                       lambda: fnd.gaussian_filter(im, 4.0),
                       {"ndimage": lambda: ndi.gaussian_filter(im, 4.0)},
                       2.0 * im.size * 33 * 2, ">= 3x ndimage"))
    try:
        import dask.array as da
        from dask_image import ndfilters
    except ImportError:  # dask-image is in the [bench] extra
        return ws
    big = da.from_array(rng.standard_normal((16384, 16384), dtype=f32), chunks=4096)
    w5 = rng.standard_normal((5, 5), dtype=f32)
    ws.append(Workload("W13", "Dask 16384^2 f32 chunks 4096, correlate 5x5, threads",
                       lambda: fnd.correlate(big, w5).compute(scheduler="threads"),
                       {"dask-image": lambda: ndfilters.correlate(big, w5).compute(
                           scheduler="threads")},
                       2.0 * 16384 * 16384 * 25, ">= 2x dask-image"))
    return ws


def as_numpy(a):
    if isinstance(a, tuple):
        a = a[0]
    if isinstance(a, list):
        a = np.stack(a)
    if hasattr(a, "detach"):
        a = a.detach().numpy()
    return np.asarray(a)


def check(wl: Workload) -> None:
    """Compare fastconv's result with the first comparator's; raise if they differ."""
    ours = as_numpy(wl.ours())
    name, ref_fn = next(iter(wl.others.items()))
    ref = as_numpy(ref_fn()).reshape(ours.shape)
    scale = 1.0 + float(np.max(np.abs(ref)))
    wl.error = float(np.max(np.abs(ours - ref))) / scale
    if not wl.error <= wl.tol:
        raise AssertionError(f"{wl.wid}: fastconv differs from {name}: {wl.error:.2e} > {wl.tol}")


def time_all(wl: Workload, rounds: int, min_sample: float) -> None:
    """Median seconds per call of fastconv and each comparator, timed interleaved."""
    fns = {"fastconv": wl.ours, **wl.others}
    number = {}
    for name, f in fns.items():  # warm-up (check() ran ours and the reference once already)
        t = time.perf_counter()
        f()
        dt = time.perf_counter() - t
        number[name] = max(1, int(min_sample / max(dt, 1e-7)))
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, f in fns.items():
            n = number[name]
            t = time.perf_counter()
            for _ in range(n):
                f()
            samples[name].append((time.perf_counter() - t) / n)
    wl.times = {name: float(np.median(v)) for name, v in samples.items()}


def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    return f"{s * 1e3:.2f} ms"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or "unknown"


def versions() -> str:
    parts = [f"python {platform.python_version()}", f"numpy {np.__version__}",
             f"numba {numba.__version__}", f"fastconv {fc.__version__}"]
    torch, cv2 = _torch(), _cv2()
    import scipy

    parts.append(f"scipy {scipy.__version__}")
    if torch:
        parts.append(f"torch {torch.__version__}")
    if cv2:
        parts.append(f"opencv {cv2.__version__}")
    return ", ".join(parts)


def rows(ws: list[Workload]) -> list[list[str]]:
    out = []
    for wl in ws:
        ours = wl.times["fastconv"]
        gflops = wl.flops / ours / 1e9 if wl.flops else 0.0
        others = "; ".join(f"{n} {fmt_time(t)}" for n, t in wl.times.items() if n != "fastconv")
        ratios = "; ".join(f"{n} {t / ours:.2f}x" for n, t in wl.times.items()
                           if n != "fastconv")
        out.append([wl.wid, wl.what, fmt_time(ours),
                    f"{gflops:.0f}" if gflops else "-",
                    f"{100 * gflops / PEAK_GFLOPS:.0f}%" if gflops else "-",
                    others, ratios, wl.target, f"{wl.error:.0e}"])
    return out


HEADER = ["id", "workload", "fastconv", "GFLOP/s", "% peak", "others", "ratio (x faster)",
          "target", "max err"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (under 2 minutes)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds per workload")
    ap.add_argument("--only", default="", help="comma-separated workload ids (prefixes)")
    ap.add_argument("--no-append", action="store_true", help="do not write bench/RESULTS.md")
    args = ap.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)
    min_sample = 0.005 if args.quick else 0.02
    threads = numba.get_num_threads()
    torch, cv2 = _torch(), _cv2()
    if torch:
        torch.set_num_threads(threads)
    if cv2:
        cv2.setNumThreads(threads)
    rng = np.random.default_rng(20240607)
    ws = workloads(rng)
    if args.only:
        keys = args.only.split(",")
        ws = [wl for wl in ws if any(wl.wid.startswith(k) for k in keys)]
    start = time.perf_counter()
    for wl in ws:
        check(wl)
        time_all(wl, rounds, min_sample)
        print(f"{wl.wid}: fastconv {fmt_time(wl.times['fastconv'])}", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - start
    table = rows(ws)

    from rich.console import Console
    from rich.table import Table

    rt = Table(title=f"fastconv vs comparators ({threads} threads, median of {rounds} rounds)")
    for h in HEADER:
        rt.add_column(h)
    for r in table:
        rt.add_row(*r)
    Console(width=180).print(rt)

    if not args.no_append:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        md = [f"\n## {stamp}{' (quick)' if args.quick else ''}\n",
              f"CPU: {cpu_model()}, {threads} threads (numba; torch and OpenCV set to the "
              f"same); {versions()}; median of {rounds} interleaved rounds; "
              f"bench time {elapsed:.0f} s. Ratio = comparator time / fastconv time.\n",
              "| " + " | ".join(HEADER) + " |",
              "|" + "---|" * len(HEADER)]
        md += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in table]
        with RESULTS.open("a") as fh:
            fh.write("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
