"""``unfold`` and ``fold`` on the GPU (same names and arguments as ``fastconv.cpu.fold``).

unfold: one thread per column element. fold: one thread per output pixel gathers the
column entries that land on it (taps ``(i, j)`` whose block position is whole and in
range), so there are no atomics and results are deterministic.
"""

from __future__ import annotations

from numba import cuda

from fastconv.cuda._launch import PerDtype, grid3, launch

__all__ = ["fold", "unfold"]


def _build(nbtype):
    zero = nbtype(0)

    @cuda.jit
    def unfold_kernel(x, cols, sh, sw, ph, pw, dh, dw):
        ow, oh = cuda.grid(2)
        N, C, H, W = x.shape
        KH, KW, OH, OW = cols.shape[2], cols.shape[3], cols.shape[4], cols.shape[5]
        if ow >= OW or oh >= OH:
            return
        z = cuda.blockIdx.z
        while z < N * C * KH * KW:
            j = z % KW
            i = (z // KW) % KH
            c = (z // (KW * KH)) % C
            n = z // (KW * KH * C)
            h = oh * sh - ph + i * dh
            w = ow * sw - pw + j * dw
            v = zero
            if 0 <= h < H and 0 <= w < W:
                v = x[n, c, h, w]
            cols[n, c, i, j, oh, ow] = v
            z += cuda.gridDim.z

    @cuda.jit
    def fold_kernel(cols, out, sh, sw, ph, pw, dh, dw):
        w, h = cuda.grid(2)
        N, C, H, W = out.shape
        KH, KW, OH, OW = cols.shape[2], cols.shape[3], cols.shape[4], cols.shape[5]
        if w >= W or h >= H:
            return
        z = cuda.blockIdx.z
        while z < N * C:
            c = z % C
            n = z // C
            acc = zero
            for i in range(KH):
                a = h + ph - i * dh
                if a < 0 or a % sh != 0 or a // sh >= OH:
                    continue
                oh = a // sh
                for j in range(KW):
                    b = w + pw - j * dw
                    if b < 0 or b % sw != 0 or b // sw >= OW:
                        continue
                    acc += cols[n, c, i, j, oh, b // sw]
            out[n, c, h, w] = acc
            z += cuda.gridDim.z

    return unfold_kernel, fold_kernel


_KERNELS = PerDtype(_build)


def unfold(x, cols, stride, padding, dilation) -> None:
    if cols.size:
        blocks, tpb = grid3(cols.shape[5], cols.shape[4],
                            cols.shape[0] * cols.shape[1] * cols.shape[2] * cols.shape[3])
        launch(_KERNELS[x.dtype][0], blocks, tpb, x, cols, *stride, *padding, *dilation)


def fold(cols, out, stride, padding, dilation) -> None:
    if out.size:
        blocks, tpb = grid3(out.shape[3], out.shape[2], out.shape[0] * out.shape[1])
        launch(_KERNELS[out.dtype][1], blocks, tpb, cols, out, *stride, *padding, *dilation)
