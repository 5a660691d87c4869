"""fastconv speed against PyTorch, OpenCV and SciPy on this machine (issue 7's workloads).

``make bench`` runs every workload; ``python bench/run.py --quick`` runs them with fewer
repeats (under 2 minutes). For each workload: seeded float32 inputs; fastconv and every
comparator run once outside the timed region (compile, warm caches) and their results are
checked against the first comparator; then all of them are timed interleaved, in rounds,
in this process, and the median of the rounds is reported. Before each library's timed
block the process sleeps ``SETTLE`` seconds, so that the thread pools of the library
timed just before (PyTorch's and Numba's OpenMP workers, OpenBLAS's threads) have stopped
spin-waiting: on 2 cores a spinning pool took half the machine from the next library (W4:
fastconv 28 ms right after PyTorch, 21 ms after a pause; PyTorch 21 vs 18 ms). The pause
puts the timed library's own pool to sleep too, and waking it is not free: on the AMD EPYC
VM of 2026-12-02 a Numba (OpenMP layer) parallel call after 50 ms or more of idleness paid
2-6 ms of worker wake-up (a 2-thread W3 took 13.7 ms after a 0.2 s sleep, 8.7 ms back to
back; the 2-thread W3 timed no faster than 1 thread), and PyTorch's OpenMP pool likewise.
So after the pause each library makes one untimed call, then its timed calls run back to
back, as in a training loop (WAKE). Ratios are
``comparator time / fastconv time`` (higher = fastconv faster). The table is printed and
appended, dated, to ``bench/RESULTS.md`` with the CPU, thread count and library versions.

The same run measures the machine: its vector ISA (from ``/proc/cpuinfo``), its sgemm
rate (``np.matmul`` of two 2048x2048 float32 matrices, BLAS at its default threads) and
its copy bandwidth (``np.copyto`` split over all threads, buffers larger than L2). Each
row reports GFLOP/s as a % of that sgemm rate, and a "copy" column: the time to copy the
op's input plus output bytes the same way, timed in the same rounds; a memory-bound op
that reads its input and writes its output once can run at or below 1x copy time.

``--per-process`` also times every (workload, library) pair in a fresh process of its
own (processes alternate between the libraries), so that no other library's thread pool
spins beside it and the allocator starts cold; that figure is printed beside the
in-process one. Targets use the in-process interleaved ratio.

``--baseline REV`` also times fastconv as it was at git revision ``REV`` (a branch, tag or
commit of this repository): ``git archive REV`` is unpacked into a temporary directory,
and every workload is timed in fresh processes of this script, one with ``PYTHONPATH`` at
that copy and one at this checkout, alternated round by round (the order flips every
round). Both run this script's workloads, so a row the baseline's API cannot run shows
"-". The table gains "baseline" (its median) and "vs baseline" (baseline time / this
time, higher = faster now); a row more than 10 % slower than the baseline is flagged
"SLOWER", and the run exits 1 when any row is.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np

import fastconv as fc

RESULTS = Path(__file__).with_name("RESULTS.md")


@dataclass
class Workload:
    wid: str
    what: str
    ours: object  # () -> array
    others: dict  # name -> () -> array (the first is the correctness reference)
    flops: float = 0.0
    target: str = ""
    tol: float = 1e-4  # |ours - ref| <= tol * (1 + max|ref|)
    copy_bytes: int = 0  # input + output bytes: the "copy" column
    times: dict = field(default_factory=dict)
    error: float = 0.0
    proc_times: dict = field(default_factory=dict)  # --per-process: name -> seconds
    base_times: dict = field(default_factory=dict)  # --baseline: "now"/"base" -> seconds


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


def nbytes(*arrays) -> int:
    return int(sum(np.asarray(a).nbytes for a in arrays))


def workloads(rng, keep=lambda wid: True) -> list[Workload]:
    """The declared grid; ``keep(wid)`` selects workloads (the others are not built)."""
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
        if not keep(wid):
            return
        ours = lambda: conv_fn(x, w, stride=stride, padding=padding, groups=groups)  # noqa: E731
        out = ours()
        comp = {}
        if torch:
            tx, tw, tf = T(x), T(w), getattr(F, tconv)
            comp["torch"] = lambda: tf(tx, tw, stride=stride, padding=padding, groups=groups)
        for name, make in (others or {}).items():
            comp[name] = make(x, w)
        ws.append(Workload(wid, what, ours, comp, conv_flops(xs, wsh, out.shape), target,
                           tol, nbytes(x, out)))

    # W1: the seed's edge detector -- per-call overhead
    conv("W1", "1x1x6x8 * 1x1x1x2", (1, 1, 6, 8), (1, 1, 1, 2), "<= 2x torch time (>= 0.5x)")
    w2_others = {}
    if cv2 is not None:
        w2_others["cv2.filter2D"] = lambda x, w: lambda: cv2.filter2D(
            x[0, 0], -1, w[0, 0], borderType=cv2.BORDER_CONSTANT)
    w2_others["ndimage"] = lambda x, w: lambda: ndi.correlate(x[0, 0], w[0, 0], mode="constant")
    conv("W2", "1x1x2048^2 * 5x5 pad 2", (1, 1, 2048, 2048), (1, 1, 5, 5),
         ">= 1.2x cv2.filter2D", padding=2, others=w2_others)
    conv("W3", "8x64x56^2 * 64x64x3x3 pad 1", (8, 64, 56, 56), (64, 64, 3, 3), ">= 1.3x torch",
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

    if keep("W3 threads"):
        ws.append(Workload("W3 threads", f"W3 on {nthreads} threads vs 1", w3_on(nthreads),
                           {"1 thread": w3_on(1)},
                           conv_flops(x3.shape, w3.shape, (8, 64, 56, 56)),
                           ">= 1.7x its 1-thread speed", copy_bytes=2 * x3.nbytes))
    conv("W4", "8x3x224^2 * 64x3x7x7 s2 p3", (8, 3, 224, 224), (64, 3, 7, 7), ">= 1x torch",
         stride=2, padding=3)
    conv("W5", "8x256x14^2 * 256x256x3x3 p1", (8, 256, 14, 14), (256, 256, 3, 3),
         ">= 1.3x torch", padding=1, tol=2e-4)
    w6_others = {"np.dot/image": lambda x, w: lambda: [
        np.dot(w[:, :, 0, 0], x[n].reshape(x.shape[1], -1)) for n in range(x.shape[0])],
        # the same products batched (issue 14's target: the faster of the two)
        "np.matmul batched": lambda x, w: lambda: np.matmul(
            w[:, :, 0, 0], x.reshape(x.shape[0], x.shape[1], -1))}
    conv("W6", "8x256x28^2 * 128x256x1x1", (8, 256, 28, 28), (128, 256, 1, 1), ">= 1x torch",
         others=w6_others)
    conv("W7", "8x128x56^2 depthwise 3x3 p1", (8, 128, 56, 56), (128, 1, 3, 3),
         ">= 1.2x torch, <= 1.5x copy", padding=1, groups=128)
    w8_others = {
        "fftconvolve": lambda x, w: lambda: ss.fftconvolve(x[0, 0], w[0, 0, ::-1, ::-1], "same"),
        "oaconvolve": lambda x, w: lambda: ss.oaconvolve(x[0, 0], w[0, 0, ::-1, ::-1], "same"),
    }
    conv("W8", "1x1x2048^2 * 31x31 same", (1, 1, 2048, 2048), (1, 1, 31, 31),
         ">= 1x best scipy", padding="same", others=w8_others, tol=1e-3)
    if torch and ws and ws[-1].wid == "W8":  # torch's direct 31x31 takes seconds: not timed
        ws[-1].others.pop("torch")

    # W9: a 31x31 Gaussian (sigma 5) on one image, mirror borders (OpenCV's default
    # BORDER_REFLECT_101 = numpy/torch "reflect" = SciPy "mirror"; SciPy's radius
    # int(truncate * sigma + 0.5) = 15 with truncate 3)
    x9 = rng.standard_normal((2048, 2048), dtype=f32)
    if keep("W9"):
        g9 = fc.kernels.gaussian(31, 5.0).astype(f32)
        g1 = np.ascontiguousarray(g9.sum(axis=1))  # the 1-D factor (rows sum to it)
        ours = lambda: fc.conv2d(x9[None, None], g9[None, None], padding=15,  # noqa: E731
                                 padding_mode="reflect")[0, 0]
        others = {}
        if cv2 is not None:
            others["cv2.GaussianBlur"] = lambda: cv2.GaussianBlur(
                x9, (31, 31), 5.0, borderType=cv2.BORDER_REFLECT_101)
            others["cv2.filter2D"] = lambda: cv2.filter2D(
                x9, -1, g9, borderType=cv2.BORDER_REFLECT_101)
        others["ndimage.gaussian_filter"] = lambda: ndi.gaussian_filter(
            x9, 5.0, mode="mirror", truncate=3.0)
        others["ndimage.correlate1d x2"] = lambda: ndi.correlate1d(
            ndi.correlate1d(x9, g1, axis=0, mode="mirror"), g1, axis=1, mode="mirror")
        ws.append(Workload("W9", "2048^2 * gaussian 31x31 s5 reflect", ours, others,
                           2.0 * x9.size * g9.size,
                           ">= 1x cv2.GaussianBlur, >= 5x ndimage.gaussian_filter", 1e-5,
                           2 * x9.nbytes))

    # W10: a 5x5 filter on an 8-bit photo-sized image, uint8 in, float32 out for both
    x10 = rng.integers(0, 256, (4096, 4096), dtype=np.uint8)
    w10 = rng.standard_normal((5, 5), dtype=f32)
    if keep("W10"):
        ours = lambda: fc.conv2d(x10[None, None], w10[None, None], padding=2)[0, 0]  # noqa: E731
        others = {}
        if cv2 is not None:
            others["cv2.filter2D"] = lambda: cv2.filter2D(
                x10, cv2.CV_32F, w10, borderType=cv2.BORDER_CONSTANT)
        ws.append(Workload("W10", "4096^2 uint8 * 5x5 pad 2 -> float32", ours, others,
                           2.0 * x10.size * w10.size, ">= 1x cv2.filter2D", 1e-5,
                           x10.nbytes + 4 * x10.size))

    conv("C1", "1-D 8x64x4096 * 64x64x5 p2", (8, 64, 4096), (64, 64, 5), ">= 1x torch",
         padding=2, conv_fn=fc.conv1d, tconv="conv1d")
    conv("C3", "3-D 2x32x16x56^2 * 32x32x3^3 p1", (2, 32, 16, 56, 56), (32, 32, 3, 3, 3),
         ">= 1x torch", padding=1, conv_fn=fc.conv3d, tconv="conv3d")

    xp = rng.standard_normal((8, 64, 112, 112), dtype=f32)
    tx = T(xp) if torch else None
    target = ">= 1.2x torch, <= 1.5x copy"
    for wid, k, s, p in (("P1", 3, 2, 1), ("P2", 2, 2, 0)):
        for kind in ("max", "avg"):
            if not keep(f"{wid} {kind}"):
                continue
            ours_fn, tfn = getattr(fc, f"{kind}_pool2d"), getattr(F, f"{kind}_pool2d", None)
            out = ours_fn(xp, k, s, p)
            others = {}
            if torch:
                others["torch"] = lambda k=k, s=s, p=p, tfn=tfn, tx=tx: tfn(tx, k, s, p)
            ws.append(Workload(
                f"{wid} {kind}", f"{kind} pool {k}x{k} s{s} p{p} 8x64x112^2",
                lambda k=k, s=s, p=p, f=ours_fn: f(xp, k, s, p), others, 0.0, target,
                copy_bytes=nbytes(xp, out)))
    # pooling backward (P1's layer): torch's autograd, the backward pass alone
    gp = rng.standard_normal((8, 64, 56, 56), dtype=f32)
    for kind in ("max", "avg"):
        if not keep(f"PB {kind}"):
            continue
        ours_fn = getattr(fc.grad, f"{kind}_pool2d")
        others = {}
        if torch:
            txg = T(xp.copy()).requires_grad_(True)
            ty = getattr(F, f"{kind}_pool2d")(txg, 3, 2, 1)
            tg = T(gp)
            others["torch autograd"] = lambda ty=ty, txg=txg, tg=tg: torch.autograd.grad(
                ty, txg, tg, retain_graph=True)[0]
        # max reads x and grad_output, writes grad_input; avg reads grad_output only
        moved = nbytes(gp, xp) + (xp.nbytes if kind == "max" else 0)
        ws.append(Workload(
            f"PB {kind}", f"{kind} pool 3x3 s2 p1 backward 8x64x112^2",
            lambda f=ours_fn: f(gp, xp, 3, 2, 1), others, 0.0, target, copy_bytes=moved))
    if keep("PB max layer"):
        # the like-for-like form: state kept by the forward (ours: a uint8 code per window;
        # torch: its int64 indices), the forward outside the timed region, the backward timed
        pool_layer = fc.MaxPool2d(3, 2, 1)
        pool_layer(xp)
        codes = pool_layer._codes[0]  # (the bytes its backward reads besides grad_output)
        others = {}
        if torch:
            txl = T(xp.copy()).requires_grad_(True)
            tyl, tgl = F.max_pool2d(txl, 3, 2, 1), T(gp)
            others["torch autograd"] = lambda ty=tyl, tx=txl, tg=tgl: torch.autograd.grad(
                ty, tx, tg, retain_graph=True)[0]
        ws.append(Workload(
            "PB max layer", "MaxPool2d(3, 2, 1).backward 8x64x112^2 (codes kept)",
            lambda f=pool_layer.backward: f(gp), others, 0.0, target,
            copy_bytes=nbytes(codes, gp, xp)))

    grad = fc.grad
    for wid, xs, wsh in (("B3", (8, 64, 56, 56), (64, 64, 3, 3)),
                         ("B5", (8, 256, 14, 14), (256, 256, 3, 3))):
        x = rng.standard_normal(xs, dtype=f32)
        w = rng.standard_normal(wsh, dtype=f32)
        g = rng.standard_normal((xs[0], wsh[0], xs[2], xs[3]), dtype=f32)
        fl = conv_flops(xs, wsh, g.shape)
        layer = "W3" if wid == "B3" else "W5"
        if keep(f"{wid} dx"):
            tw, tg = (T(w), T(g)) if torch else (None, None)
            ws.append(Workload(
                f"{wid} dx", f"grad input of {layer}",
                lambda xs=xs, w=w, g=g: grad.conv2d_input(xs, w, g, padding=1),
                {"torch": lambda xs=xs, tw=tw, tg=tg: torch.nn.grad.conv2d_input(
                    xs, tw, tg, padding=1)} if torch else {}, fl, ">= 1x torch", 2e-4,
                nbytes(g, x)))
        if keep(f"{wid} dw"):
            tx, tg = (T(x), T(g)) if torch else (None, None)
            ws.append(Workload(
                f"{wid} dw", f"grad weight of {layer}",
                lambda x=x, wsh=wsh, g=g: grad.conv2d_weight(x, wsh, g, padding=1),
                {"torch": lambda tx=tx, wsh=wsh, tg=tg: torch.nn.grad.conv2d_weight(
                    tx, wsh, tg, padding=1)} if torch else {}, fl, ">= 1x torch", 2e-4,
                nbytes(g, x)))
    if torch:  # issue 18: the rest of the pooling family
        xa = rng.standard_normal((8, 64, 112, 112), dtype=f32)
        xg = rng.standard_normal((64, 512, 14, 14), dtype=f32)
        txa, txg = T(xa), T(xg)
        if keep("A1 adapt"):
            ws.append(Workload(
                "A1 adapt", "adaptive avg pool 8x64x112^2 -> 7x7",
                lambda: fc.adaptive_avg_pool2d(xa, 7),
                {"torch": lambda: F.adaptive_avg_pool2d(txa, 7)}, 0.0, ">= 1.0x torch",
                copy_bytes=xa.nbytes))
        if keep("A2 gap"):
            ws.append(Workload(
                "A2 gap", "adaptive avg pool 64x512x14^2 -> 1 (global)",
                lambda: fc.adaptive_avg_pool2d(xg, 1),
                {"torch": lambda: F.adaptive_avg_pool2d(txg, 1)}, 0.0, ">= 1.0x torch",
                copy_bytes=xg.nbytes))
        if keep("U1 unpool"):
            pv, pi = fc.max_pool2d(xa, 3, 2, 1, return_indices=True)  # P1's output
            tpv, tpi = T(pv), torch.from_numpy(pi)
            ws.append(Workload(
                "U1 unpool", "max_unpool2d of P1's output -> 8x64x112^2",
                lambda: fc.max_unpool2d(pv, pi, 3, 2, 1, output_size=(112, 112)),
                {"torch": lambda: F.max_unpool2d(tpv, tpi, 3, 2, 1, output_size=(112, 112))},
                0.0, ">= 1.0x torch", copy_bytes=nbytes(pv, pi, xa)))

    ws += scipy_nd_workloads(rng, keep)
    return ws


def scipy_nd_workloads(rng, keep=lambda wid: True) -> list[Workload]:
    """W11-W13: fastconv.ndimage against scipy.ndimage and dask-image (issue 17)."""
    import scipy.ndimage as ndi

    from fastconv import ndimage as fnd

    f32 = np.float32
    ws = []
    v = rng.standard_normal((128, 128, 128), dtype=f32)
    k = rng.standard_normal((5, 5, 5), dtype=f32)
    if keep("W11"):
        ws.append(Workload("W11", "ndimage.correlate 128^3 * 5^3 (reflect)",
                           lambda: fnd.correlate(v, k), {"ndimage": lambda: ndi.correlate(v, k)},
                           2.0 * v.size * k.size, ">= 4x ndimage", copy_bytes=2 * v.nbytes))
    im = rng.standard_normal((4096, 4096), dtype=f32)
    if keep("W12"):
        ws.append(Workload("W12", "gaussian_filter 4096^2 sigma 4",
                           lambda: fnd.gaussian_filter(im, 4.0),
                           {"ndimage": lambda: ndi.gaussian_filter(im, 4.0)},
                           2.0 * im.size * 33 * 2, ">= 3x ndimage", copy_bytes=2 * im.nbytes))
    try:
        import dask.array as da
        from dask_image import ndfilters
    except ImportError:  # dask-image is in the [bench] extra
        return ws
    if not keep("W13"):
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


class Copier:
    """``np.copyto`` of ``nbytes`` split over ``threads`` Python threads (NumPy releases
    the GIL while it copies): the bandwidth reference a memory-bound op is held to. The
    buffers are allocated and touched once, so page faults are not timed."""

    def __init__(self, threads: int):
        self.threads = threads
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None
        self.buffers: dict = {}

    def copy_fn(self, nbytes: int):
        # buffers larger than L2 (and at least 64 KiB a thread)
        n = max(int(nbytes), 8 << 20) // 4
        if n not in self.buffers:
            src = np.ones(n, dtype=np.float32)
            dst = np.zeros(n, dtype=np.float32)
            bounds = np.linspace(0, n, self.threads + 1).astype(int)
            parts = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
            self.buffers[n] = parts
        parts = self.buffers[n]
        self.scale = nbytes / (4 * n)  # a smaller op is held to the same bandwidth
        if self.pool is None:
            return lambda: np.copyto(parts[0][0], parts[0][1])

        def run():
            fs = [self.pool.submit(np.copyto, d, s) for d, s in parts[1:]]
            np.copyto(parts[0][0], parts[0][1])
            for f in fs:
                f.result()
        return run


def machine(threads: int, copier: Copier) -> dict:
    """ISA, sgemm rate (GFLOP/s, np.matmul 2048^3 float32, BLAS default threads) and copy
    bandwidth (GB/s, bytes read + written, 64 MiB over all threads), measured now."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line
                break
    except OSError:  # pragma: no cover
        pass
    words = set(flags.split())
    isa = "AVX-512" if "avx512f" in words else "AVX2" if "avx2" in words else "SSE/other"
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    b = a.T.copy()
    c = np.empty_like(a)
    np.matmul(a, b, out=c)
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        np.matmul(a, b, out=c)
        ts.append(time.perf_counter() - t)
    sgemm = 2.0 * 2048**3 / min(ts) / 1e9
    nb = 64 << 20
    cp = copier.copy_fn(nb)
    cp()
    ts = []
    for _ in range(7):
        t = time.perf_counter()
        cp()
        ts.append(time.perf_counter() - t)
    return {"isa": isa, "sgemm": sgemm, "copy_gbs": 2.0 * nb / float(np.median(ts)) / 1e9}


SETTLE = 0.2  # seconds of sleep before each library's timed block (see the docstring)


def time_all(wl: Workload, rounds: int, min_sample: float, copier: Copier | None = None) -> None:
    """Median seconds per call of fastconv, each comparator and (with ``copier``) the
    copy of the workload's bytes, timed interleaved round by round."""
    fns = {"fastconv": wl.ours, **wl.others}
    scale = 1.0
    if copier is not None and wl.copy_bytes:
        fns["copy"] = copier.copy_fn(wl.copy_bytes)
        scale = copier.scale
    number = {}
    for name, f in fns.items():  # warm-up (check() ran ours and the reference once already)
        f()
        t = time.perf_counter()
        f()
        dt = time.perf_counter() - t
        number[name] = max(1, int(min_sample / max(dt, 1e-7)))
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, f in fns.items():
            n = number[name]
            time.sleep(SETTLE)
            f()  # untimed: wakes this library's own pool (see WAKE in the docstring)
            t = time.perf_counter()
            for _ in range(n):
                f()
            samples[name].append((time.perf_counter() - t) / n)
    wl.times = {name: float(np.median(v)) for name, v in samples.items()}
    if "copy" in wl.times:
        wl.times["copy"] *= scale


def child(wid: str, lib: str, rounds: int, min_sample: float) -> int:
    """--child: time one library on one workload in this fresh process; print JSON."""
    rng = np.random.default_rng(20240607)
    ws = workloads(rng, keep=lambda w: w == wid)
    wl = ws[0]
    f = wl.ours if lib == "fastconv" else wl.others[lib]
    one = Workload(wl.wid, wl.what, f, {})
    time_all(one, rounds, min_sample)
    print(json.dumps({"seconds": one.times["fastconv"]}))
    return 0


def per_process(ws: list[Workload], rounds: int, min_sample: float, threads: int) -> None:
    """Time each (workload, library) in a process of its own; the order of the libraries
    alternates from workload to workload."""
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    for i, wl in enumerate(ws):
        libs = ["fastconv", *wl.others]
        if i % 2:
            libs.reverse()
        for lib in libs:
            cmd = [sys.executable, __file__, "--child", wl.wid, "--lib", lib,
                   "--rounds", str(rounds), "--min-sample", str(min_sample)]
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            try:
                wl.proc_times[lib] = json.loads(res.stdout.strip().splitlines()[-1])["seconds"]
            except (ValueError, IndexError, KeyError):
                print(f"{wl.wid}/{lib}: per-process run failed: {res.stderr[-300:]}",
                      file=sys.stderr)


ROOT = Path(__file__).resolve().parent.parent
#: A row this much slower than the baseline is flagged (issue 12: no row > 10 % slower).
SLOWER = 1.10


def checkout(rev: str, into: Path) -> Path:
    """``git archive REV`` of this repository unpacked into ``into`` (its fastconv is
    imported through PYTHONPATH; Numba caches its kernels under it)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev],
                             capture_output=True, check=False)
    if archive.returncode:
        raise SystemExit(f"Error: --baseline {rev}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def _timed_child(wid: str, pythonpath: Path, rounds: int, min_sample: float,
                 env: dict) -> float | None:
    """Seconds per call of fastconv on ``wid`` in a fresh process importing fastconv from
    ``pythonpath`` (None when that process fails)."""
    env = dict(env, PYTHONPATH=os.pathsep.join(
        [str(pythonpath)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", wid, "--lib", "fastconv",
           "--rounds", str(rounds), "--min-sample", str(min_sample)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                         cwd=str(pythonpath))
    try:
        return float(json.loads(res.stdout.strip().splitlines()[-1])["seconds"])
    except (ValueError, IndexError, KeyError):
        print(f"{wid} ({pythonpath}): run failed: {res.stderr[-300:]}", file=sys.stderr)
        return None


def baseline(ws: list[Workload], rev: str, rounds: int, min_sample: float,
             threads: int) -> None:
    """``wl.base_times``: the median of ``rounds`` processes per revision, alternated
    round by round (this checkout and ``rev``), each timing 3 inner rounds."""
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    tmp = Path(tempfile.mkdtemp(prefix="fastconv-baseline-"))
    try:
        base = checkout(rev, tmp)
        trees = {"now": ROOT, "base": base}
        for wl in ws:
            samples: dict = {"now": [], "base": []}
            for r in range(rounds):
                for name in (("now", "base") if r % 2 == 0 else ("base", "now")):
                    t = _timed_child(wl.wid, trees[name], 3, min_sample, env)
                    if t is not None:
                        samples[name].append(t)
            wl.base_times = {k: float(np.median(v)) for k, v in samples.items() if v}
            print(f"{wl.wid}: now {fmt_time(wl.base_times.get('now', 0.0))}, {rev} "
                  f"{fmt_time(wl.base_times.get('base', 0.0))}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def vs_baseline(wl: Workload) -> tuple[str, str, bool]:
    """(baseline time, "1.03x" or "0.85x SLOWER", slower) of one row."""
    now, base = wl.base_times.get("now"), wl.base_times.get("base")
    if not now or not base:
        return "-", "-", False
    slower = now > SLOWER * base
    return fmt_time(base), f"{base / now:.2f}x" + (" SLOWER" if slower else ""), slower


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


def rows(ws: list[Workload], sgemm: float) -> list[list[str]]:
    out = []
    for wl in ws:
        ours = wl.times["fastconv"]
        gflops = wl.flops / ours / 1e9 if wl.flops else 0.0
        comps = {n: t for n, t in wl.times.items() if n not in ("fastconv", "copy")}
        others = "; ".join(f"{n} {fmt_time(t)}" for n, t in comps.items())
        ratios = "; ".join(f"{n} {t / ours:.2f}x" for n, t in comps.items())
        copy = wl.times.get("copy")
        pp = wl.proc_times
        if pp.get("fastconv"):
            proc = "; ".join(f"{n} {fmt_time(t)} ({t / pp['fastconv']:.2f}x)"
                             for n, t in pp.items() if n != "fastconv")
            proc = f"fastconv {fmt_time(pp['fastconv'])}; {proc}" if proc else fmt_time(
                pp["fastconv"])
        else:
            proc = "-"
        out.append([wl.wid, wl.what, fmt_time(ours),
                    f"{gflops:.0f}" if gflops else "-",
                    f"{100 * gflops / sgemm:.0f}%" if gflops else "-",
                    fmt_time(copy) if copy else "-",
                    f"{ours / copy:.2f}" if copy else "-",
                    others, ratios, proc, wl.target, f"{wl.error:.0e}"])
        if wl.base_times:
            out[-1][3:3] = [fmt_time(wl.base_times["now"]) if "now" in wl.base_times else "-",
                            *vs_baseline(wl)[:2]]
    return out


HEADER = ["id", "workload", "fastconv", "GFLOP/s", "% sgemm", "copy", "time/copy", "others",
          "ratio (x faster)", "per-process (ratio)", "target", "max err"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (under 2 minutes)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds per workload")
    ap.add_argument("--only", default="", help="comma-separated workload ids (prefixes)")
    ap.add_argument("--no-append", action="store_true", help="do not write bench/RESULTS.md")
    ap.add_argument("--per-process", action="store_true",
                    help="also time each (workload, library) in a process of its own")
    ap.add_argument("--baseline", default="", metavar="REV",
                    help="also time fastconv at git revision REV, each revision in its own "
                         "processes, alternated round by round (flags rows > 10%% slower)")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--lib", default="", help=argparse.SUPPRESS)
    ap.add_argument("--min-sample", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)
    min_sample = args.min_sample or (0.005 if args.quick else 0.02)
    threads = numba.get_num_threads()
    torch, cv2 = _torch(), _cv2()
    if torch:
        torch.set_num_threads(threads)
    if cv2:
        cv2.setNumThreads(threads)
    if args.child:
        return child(args.child, args.lib, rounds, min_sample)
    copier = Copier(threads)
    mach = machine(threads, copier)
    print(f"{cpu_model()}, {mach['isa']}: sgemm {mach['sgemm']:.0f} GFLOP/s, copy "
          f"{mach['copy_gbs']:.1f} GB/s ({threads} threads)", file=sys.stderr, flush=True)
    keys = args.only.split(",") if args.only else None

    def keep(wid):
        return keys is None or any(wid.startswith(k) for k in keys)

    rng = np.random.default_rng(20240607)
    ws = workloads(rng, keep)
    for wl in [wl for wl in ws if not wl.others]:  # its comparator is not installed
        print(f"{wl.wid}: skipped, no comparator installed (PyTorch/OpenCV)", file=sys.stderr)
    ws = [wl for wl in ws if wl.others]
    start = time.perf_counter()
    for wl in ws:
        check(wl)
        time_all(wl, rounds, min_sample, copier)
        print(f"{wl.wid}: fastconv {fmt_time(wl.times['fastconv'])}", file=sys.stderr, flush=True)
    if args.per_process:
        per_process(ws, max(3, rounds // 2), min_sample, threads)
    if args.baseline:
        baseline(ws, args.baseline, max(3, rounds // 2 + 1), min_sample, threads)
    elapsed = time.perf_counter() - start
    table = rows(ws, mach["sgemm"])
    header = HEADER
    if args.baseline:
        header = HEADER[:3] + ["now (own process)", f"baseline {args.baseline}",
                               "vs baseline"] + HEADER[3:]
    slower = [wl.wid for wl in ws if vs_baseline(wl)[2]]

    from rich.console import Console
    from rich.table import Table

    rt = Table(title=f"fastconv vs comparators ({threads} threads, median of {rounds} rounds; "
                     f"{mach['isa']}, sgemm {mach['sgemm']:.0f} GFLOP/s, copy "
                     f"{mach['copy_gbs']:.1f} GB/s)")
    for h in header:
        rt.add_column(h)
    for r in table:
        rt.add_row(*r)
    Console(width=220).print(rt)

    if not args.no_append:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        md = [f"\n## {stamp}{' (quick)' if args.quick else ''}\n",
              f"CPU: {cpu_model()} ({mach['isa']}), {threads} threads (numba; torch and "
              f"OpenCV set to the same); measured in this run: sgemm {mach['sgemm']:.0f} "
              f"GFLOP/s (np.matmul 2048^3 float32), copy {mach['copy_gbs']:.1f} GB/s "
              f"(np.copyto over {threads} threads, read + written); {versions()}; median of "
              f"{rounds} interleaved rounds; bench time {elapsed:.0f} s. Ratio = comparator "
              f"time / fastconv time (in-process, interleaved: what the targets use); "
              f"per-process: each library timed alone in a fresh process.\n",
              "| " + " | ".join(header) + " |",
              "|" + "---|" * len(header)]
        md += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in table]
        with RESULTS.open("a") as fh:
            fh.write("\n".join(md) + "\n")
    if slower:
        print(f"more than {SLOWER - 1:.0%} slower than {args.baseline}: {', '.join(slower)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
