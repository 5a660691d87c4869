"""``unfold`` (im2col) and ``fold`` (col2im, its adjoint) on the CPU, PyTorch's layout:
``x`` is ``(N, C, H, W)``; ``cols`` is ``(N, C, KH, KW, OH, OW)`` (a view of
``(N, C*KH*KW, OH*OW)``). Padding is implicit: taps outside the input read (unfold) or
drop (fold) zeros; nothing is padded or copied.

unfold: one task per ``(n, c, i, j)`` row of ``cols`` (each row a strided copy of the
input, zeros at the borders). fold: one task per ``(n, c)`` plane (race-free, no
atomics), adding the rows in ``(i, j, oh, ow)`` order, so results are deterministic.
"""

from __future__ import annotations

from numba import njit, prange

from fastconv._config import JIT_PARALLEL, JIT_SERIAL


@njit(inline="always", **JIT_SERIAL)
def _inside(off, stride, n, nout):
    """Outputs [lo, hi) whose tap ``o*stride + off`` lies in ``[0, n)``."""
    lo = 0 if off >= 0 else min(nout, (stride - 1 - off) // stride)
    hi = max(lo, min(nout, (n - 1 - off) // stride + 1))
    return lo, hi


@njit(**JIT_PARALLEL)
def unfold_kernel(x, cols, sh, sw, ph, pw, dh, dw):
    """cols[n, c, i, j, oh, ow] = x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw] (0 outside)."""
    N, C, H, W = x.shape
    KH, KW, OH, OW = cols.shape[2], cols.shape[3], cols.shape[4], cols.shape[5]
    for t in prange(N * C * KH * KW):
        j = t % KW
        i = (t // KW) % KH
        c = (t // (KW * KH)) % C
        n = t // (KW * KH * C)
        offw = j * dw - pw
        wlo, whi = _inside(offw, sw, W, OW)
        dst = cols[n, c, i, j]
        for oh in range(OH):
            h = oh * sh - ph + i * dh
            drow = dst[oh]
            if h < 0 or h >= H:
                drow[:] = 0
                continue
            src = x[n, c, h]
            for ow in range(wlo):
                drow[ow] = 0
            for ow in range(wlo, whi):
                drow[ow] = src[ow * sw + offw]
            for ow in range(whi, OW):
                drow[ow] = 0


@njit(**JIT_PARALLEL)
def fold_kernel(cols, out, sh, sw, ph, pw, dh, dw):
    """out[n, c] = sum over (i, j, oh, ow) of cols[n, c, i, j, oh, ow] placed at
    (oh*sh - ph + i*dh, ow*sw - pw + j*dw) (taps outside ``out`` dropped)."""
    N, C, H, W = out.shape
    KH, KW, OH, OW = cols.shape[2], cols.shape[3], cols.shape[4], cols.shape[5]
    for t in prange(N * C):
        c = t % C
        n = t // C
        plane = out[n, c]
        plane[:] = 0
        for i in range(KH):
            for j in range(KW):
                offw = j * dw - pw
                wlo, whi = _inside(offw, sw, W, OW)
                src = cols[n, c, i, j]
                for oh in range(OH):
                    h = oh * sh - ph + i * dh
                    if h < 0 or h >= H:
                        continue
                    drow, srow = plane[h], src[oh]
                    for ow in range(wlo, whi):
                        drow[ow * sw + offw] += srow[ow]


def unfold(x, cols, stride, padding, dilation) -> None:
    """Fill ``cols`` (N, C, KH, KW, OH, OW) from ``x`` (N, C, H, W)."""
    unfold_kernel(x, cols, *stride, *padding, *dilation)


def fold(cols, out, stride, padding, dilation) -> None:
    """Fill ``out`` (N, C, H, W) by summing ``cols`` (N, C, KH, KW, OH, OW) into place."""
    fold_kernel(cols, out, *stride, *padding, *dilation)


__all__ = ["fold", "unfold"]
