"""Direct cross-correlation on padded 5-D device arrays ``(N, C, D, H, W)``.

One thread computes one output position for a block of up to ``CHANNEL_BLOCK`` output
channels (register blocking: each input value it reads feeds that many accumulators).
The grid is 3-D: x over output columns, y over output rows, z over
(batch, group, channel block, output depth). Per input channel and kernel depth slice the
block first stages its input tile plus halo and the weight slice in shared memory, then
every thread reads only shared memory. When that tile would not fit ``SHARED_BYTES``
(very large or very dilated kernels) the untiled kernel reads global memory instead.
No atomics: every output element is written by exactly one thread, so results are
deterministic.
"""

from __future__ import annotations

from numba import cuda

from fastconv._config import CHANNEL_BLOCK
from fastconv.cuda._launch import PerDtype, grid3, launch

__all__ = ["correlate"]

#: Largest dynamic shared-memory request of the tiled kernel (bytes); bigger tiles fall
#: back to the untiled kernel. 48 KiB is available on every CUDA GPU without opt-in.
SHARED_BYTES = 48 * 1024


@cuda.jit(device=True)
def channel_block(z, OD, nkb, groups, Kg):
    """Grid slice ``z = ((n*groups + g)*nkb + kb)*OD + od`` as ``(n, g, od, k0, nk)``:
    batch, group, output depth and the ``nk`` (<= ``CHANNEL_BLOCK``) output channels from
    ``k0`` that channel block ``kb`` of group ``g`` covers."""
    od = z % OD
    r = z // OD
    kb = r % nkb
    r //= nkb
    g = r % groups
    n = r // groups
    k0 = g * Kg + kb * CHANNEL_BLOCK
    return n, g, od, k0, min(CHANNEL_BLOCK, g * Kg + Kg - k0)


def _build(nbtype):
    B = CHANNEL_BLOCK

    @cuda.jit
    def correlate_tiled(xp, w, bias, out, sd, sh, sw, dd, dh, dw, groups, nkb, tile_h, tile_w):
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        TX, TY = cuda.blockDim.x, cuda.blockDim.y
        oh0 = cuda.blockIdx.y * TY
        ow0 = cuda.blockIdx.x * TX
        oh, ow = oh0 + ty, ow0 + tx
        K, Cg, KD, KH, KW = w.shape[0], w.shape[1], w.shape[2], w.shape[3], w.shape[4]
        OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
        PH, PW = xp.shape[3], xp.shape[4]
        Kg = K // groups
        active = oh < OH and ow < OW
        tid = ty * TX + tx
        nthreads = TX * TY
        tile_n = tile_h * tile_w
        khw = KH * KW
        smem = cuda.shared.array(0, nbtype)
        acc = cuda.local.array(B, nbtype)
        row0, col0 = oh0 * sh, ow0 * sw
        base = (ty * sh) * tile_w + tx * sw
        nz = xp.shape[0] * groups * nkb * OD
        z = cuda.blockIdx.z
        while z < nz:
            n, g, od, k0, nk = channel_block(z, OD, nkb, groups, Kg)
            for j in range(B):
                acc[j] = bias[k0 + j] if j < nk else 0
            for c in range(Cg):
                ci = g * Cg + c
                for a in range(KD):
                    plane = od * sd + a * dd
                    cuda.syncthreads()  # the previous slice is no longer read
                    i = tid
                    while i < tile_n:
                        gr = row0 + i // tile_w
                        gc = col0 + i % tile_w
                        smem[i] = xp[n, ci, plane, gr, gc] if gr < PH and gc < PW else 0
                        i += nthreads
                    i = tid
                    while i < nk * khw:
                        j = i // khw
                        rem = i - j * khw
                        smem[tile_n + i] = w[k0 + j, c, a, rem // KW, rem % KW]
                        i += nthreads
                    cuda.syncthreads()
                    if active:
                        for b in range(KH):
                            roff = base + b * dh * tile_w
                            for e in range(KW):
                                v = smem[roff + e * dw]
                                woff = tile_n + b * KW + e
                                for j in range(nk):
                                    acc[j] += v * smem[woff + j * khw]
            if active:
                for j in range(nk):
                    out[n, k0 + j, od, oh, ow] = acc[j]
            z += cuda.gridDim.z

    @cuda.jit
    def correlate_global(xp, w, bias, out, sd, sh, sw, dd, dh, dw, groups, nkb):
        ow, oh = cuda.grid(2)
        K, Cg, KD, KH, KW = w.shape[0], w.shape[1], w.shape[2], w.shape[3], w.shape[4]
        OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
        if oh >= OH or ow >= OW:
            return
        Kg = K // groups
        acc = cuda.local.array(B, nbtype)
        nz = xp.shape[0] * groups * nkb * OD
        z = cuda.blockIdx.z
        while z < nz:
            n, g, od, k0, nk = channel_block(z, OD, nkb, groups, Kg)
            for j in range(B):
                acc[j] = bias[k0 + j] if j < nk else 0
            for c in range(Cg):
                ci = g * Cg + c
                for a in range(KD):
                    for b in range(KH):
                        for e in range(KW):
                            v = xp[n, ci, od * sd + a * dd, oh * sh + b * dh, ow * sw + e * dw]
                            for j in range(nk):
                                acc[j] += v * w[k0 + j, c, a, b, e]
            for j in range(nk):
                out[n, k0 + j, od, oh, ow] = acc[j]
            z += cuda.gridDim.z

    return correlate_tiled, correlate_global


_KERNELS = PerDtype(_build)


def tile_shape(block: tuple, kernel_hw: tuple, stride_hw: tuple, dilation_hw: tuple) -> tuple:
    """Rows and columns of the input tile (+ halo) that a (tx, ty) block of outputs reads."""
    tx, ty = block[0], block[1]
    (kh, kw), (sh, sw), (dh, dw) = kernel_hw, stride_hw, dilation_hw
    return (ty - 1) * sh + (kh - 1) * dh + 1, (tx - 1) * sw + (kw - 1) * dw + 1


def correlate(xp, w, bias, out, stride, dilation, groups) -> None:
    """out[n, k, o] = bias[k] + sum_{c in group(k), r} xp[n, c, o*stride + r*dilation] * w[k, c, r].

    ``xp`` is already padded; ``bias`` has K entries (zeros when there is none); ``stride``
    and ``dilation`` are 3 host ints each. All arrays are device arrays of one dtype.
    """
    sd, sh, sw = (int(v) for v in stride)
    dd, dh, dw = (int(v) for v in dilation)
    groups = int(groups)
    N, K = out.shape[0], out.shape[1]
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    KH, KW = w.shape[3], w.shape[4]
    B = CHANNEL_BLOCK
    nkb = -(-(K // groups) // B)
    blocks, tpb = grid3(OW, OH, N * groups * nkb * OD)
    tiled, untiled = _KERNELS[out.dtype]
    tile_h, tile_w = tile_shape(tpb, (KH, KW), (sh, sw), (dh, dw))
    shared = (tile_h * tile_w + B * KH * KW) * out.dtype.itemsize
    args = (xp, w, bias, out, sd, sh, sw, dd, dh, dw, groups, nkb)
    if shared <= SHARED_BYTES:
        launch(tiled, blocks, tpb, *args, tile_h, tile_w, shared=shared)
    else:
        launch(untiled, blocks, tpb, *args)
