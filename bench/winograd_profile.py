"""Where Winograd's time goes: the fused form's stages (fill, input transform, products,
output transform + store) timed separately on one thread for W3/W5-like shapes, with
their GF/s; compare with the whole call on 1 and N threads. Not part of `make bench`.

    flock /tmp/bench.lock .venv/bin/python bench/winograd_profile.py
"""

from __future__ import annotations

import time

import numba
import numpy as np

import fastconv as fc
from fastconv.cpu import blas
from fastconv.cpu import winograd as wg


def stages(x, w, m, min_tiles=0, rounds=5):
    N, C, H, W = x.shape
    K = w.shape[0]
    U = wg.weight_transform(w, 1, m, False)
    a2, alpha = (m + 2) ** 2, m + 2
    th, tw = -(-H // m), -(-W // m)
    dt = x.dtype
    s = dt.itemsize
    blist = wg.blocks(N, th, tw, max(min_tiles, wg.target_tiles(m, C, K, s)))
    out = np.empty((N, K, H, W), dt)
    bias = np.zeros(K, dt)
    Wt = tw * m + 2
    tot = dict(fill=0.0, tin=0.0, prod=0.0, tout=0.0, store=0.0)
    best = None
    for _ in range(rounds):
        cur = dict.fromkeys(tot, 0.0)
        for n0, nimg, ty0, nty in blist:
            T = nimg * nty * tw
            Hr = nty * m + 2
            xb = np.empty((nimg, Hr, Wt, C), dt)
            V = np.empty((a2, T, C), dt)
            M = np.empty((a2, T, K), dt)
            yb = np.empty((nimg, nty * m, tw * m, K), dt)
            tmp = np.empty((alpha, alpha, max(C, K)), dt)
            acc = np.zeros(K, dt)
            prod = blas.Gemm(dt, T, K, C, lda=C, ldb=K, ldc=K)
            t0 = time.thread_time()
            wg.fill_rows(x, n0, 0, ty0 * m, 1, 1, xb)
            t1 = time.thread_time()
            wg.transform_input(xb, m, tmp, V, 0)
            t2 = time.thread_time()
            va, ua, ma = blas.address(V), blas.address(U), blas.address(M)
            with blas.single_threaded_blas():
                for a in range(a2):
                    prod(va + a * T * C * s, ua + a * C * K * s, ma + a * T * K * s, False)
            t3 = time.thread_time()
            wg.transform_output(M, bias, m, tmp[:m].copy(), yb, acc, 0)
            t4 = time.thread_time()
            wg.store_rows(yb, out, n0, 0, ty0 * m)
            t5 = time.thread_time()
            for k, d in zip(cur, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                cur[k] += d
        if best is None or sum(cur.values()) < sum(best.values()):
            best = cur
    flops = 2 * a2 * N * th * tw * C * K
    print(f"  blocks {len(blist)} x {blist[0][1] * blist[0][3] * tw} tiles; "
          + ", ".join(f"{k} {1e3 * v:.2f}" for k, v in best.items())
          + f" ms; total {1e3 * sum(best.values()):.2f} ms; "
          f"products {flops / best['prod'] / 1e9:.0f} GF/s")


def staged(x, w, m, rounds=5):
    """The staged form's stages (all images transformed, then each point's product over
    every tile, then the inverse transforms), one thread, CPU time."""
    N, C, H, W = x.shape
    K = w.shape[0]
    U = wg.weight_transform(w, 1, m, False)
    a2, alpha = (m + 2) ** 2, m + 2
    th, tw = -(-H // m), -(-W // m)
    per = th * tw
    T = N * per
    dt = x.dtype
    s = dt.itemsize
    V = np.empty((a2, T, C), dt)
    M = np.empty((a2, T, K), dt)
    out = np.empty((N, K, H, W), dt)
    bias = np.zeros(K, dt)
    xb = np.empty((1, th * m + 2, tw * m + 2, C), dt)
    yb = np.empty((1, th * m, tw * m, K), dt)
    tmp = np.empty((alpha, alpha, max(C, K)), dt)
    acc = np.zeros(K, dt)
    prod = blas.Gemm(dt, T, K, C, lda=C, ldb=K, ldc=K)
    va, ua, ma = blas.address(V), blas.address(U), blas.address(M)
    best = None
    for _ in range(rounds):
        t0 = time.thread_time()
        for j in range(N):
            wg.fill_rows(x, j, 0, 0, 1, 1, xb)
            wg.transform_input(xb, m, tmp, V, j * per)
        t1 = time.thread_time()
        with blas.single_threaded_blas():
            for a in range(a2):
                prod(va + a * T * C * s, ua + a * C * K * s, ma + a * T * K * s, False)
        t2 = time.thread_time()
        for j in range(N):
            wg.transform_output(M, bias, m, tmp[:m].copy(), yb, acc, j * per)
            wg.store_rows(yb, out, j, 0, 0)
        t3 = time.thread_time()
        cur = (t1 - t0, t2 - t1, t3 - t2)
        if best is None or sum(cur) < sum(best):
            best = cur
    flops = 2 * a2 * T * C * K
    print(f"  staged {T} tiles: fill+tin {1e3 * best[0]:.2f}, prod {1e3 * best[1]:.2f}, "
          f"tout+store {1e3 * best[2]:.2f} ms; products {flops / best[1] / 1e9:.0f} GF/s")


def whole(x, w, threads, rounds=7):
    numba.set_num_threads(threads)
    f = lambda: fc.conv2d(x, w, padding=1, algorithm="winograd")  # noqa: E731
    f()
    ts = []
    for _ in range(rounds):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main():
    rng = np.random.default_rng(0)
    nt = numba.get_num_threads()
    for name, xs, k in (("W3", (8, 64, 56, 56), 64), ("W5", (8, 256, 14, 14), 256)):
        x = rng.standard_normal(xs, dtype=np.float32)
        w = rng.standard_normal((k, xs[1], 3, 3), dtype=np.float32)
        m = wg.tile_size(xs[2], xs[3])
        print(f"{name} F({m}x{m}) one thread, CPU time per stage (best of 5 rounds):")
        per = -(-xs[2] // m) * -(-xs[3] // m)
        if per >= wg.FUSED_MIN_IMAGE_TILES:
            stages(x, w, m)
        else:  # fused in whole-image blocks where wg.run takes it; the staged form beside
            if xs[0] * per >= wg.MIN_BLOCKS * wg.FUSED_MIN_IMAGE_TILES:
                stages(x, w, m, wg.FUSED_MIN_IMAGE_TILES)
            staged(x, w, m)
        t1, tn = whole(x, w, 1), whole(x, w, nt)
        print(f"  whole call: 1 thread {1e3 * t1:.2f} ms, {nt} threads {1e3 * tn:.2f} ms "
              f"({t1 / tn:.2f}x)", flush=True)
        numba.set_num_threads(nt)


if __name__ == "__main__":
    main()
