"""Where the Winograd kernels run, and in which form: shape rules, importable without them.

The cost model (``fastconv._algorithms``) asks these on every call; importing the kernel
modules only to ask them cost ~70 ms of a fresh process's first ``conv2d`` (their Numba
dispatchers), most of the 0.5 s budget left after importing NumPy and Numba. The kernel
modules re-export them under their old names (``winograd.applies``,
``winograd.tile_size``, ``winograd_w.applies``, ``winograd_w.applies_cols``).

>>> winograd_2d((64, 64, 1, 3, 3), (1, 56, 56), (1, 1, 1), (1, 1, 1), 1) is None
True
"""

from __future__ import annotations

from fastconv.cpu import blas

#: Fewest channels per group (both sides) for which the 2-D Winograd path applies.
MIN_CHANNELS = 8
#: Fewest input channels per group (times depth taps) for which the W-Winograd path runs.
MIN_R = 16
#: Fewest tiles per image for the fused form: below it a block of whole images would
#: make products too short (OpenBLAS sgemm, 1 thread: 25 GF/s at 16 x 256 x 256,
#: 63 at 64 rows, 82 at 128, 136 on 1024^3), so small images take the staged form.
FUSED_MIN_IMAGE_TILES = 64


def winograd_2d(w_shape, out_spatial, stride, dilation, groups) -> str | None:
    """None if ``fastconv.cpu.winograd`` computes this correlation (5-D weight shape, 3-D
    output spatial shape, 3-tuples), else the reason it does not."""
    K, Cg, KD, KH, KW = (int(v) for v in w_shape)
    if (KD, KH, KW) != (1, 3, 3) or int(out_spatial[0]) != 1:
        return "needs a 2-D 3x3 kernel"
    if any(int(s) != 1 for s in stride):
        return f"needs stride 1, got stride {tuple(int(s) for s in stride)[1:]}"
    if any(int(d) != 1 for d in dilation[1:]):
        return f"needs dilation 1, got dilation {tuple(int(d) for d in dilation)[1:]}"
    Kg = K // groups
    if min(Cg, Kg) < MIN_CHANNELS:
        return (f"needs at least {MIN_CHANNELS} channels per group, got {Cg} input and "
                f"{Kg} output channels per group")
    return None


def winograd_depth(w_shape, stride, dilation, groups) -> bool:
    """Whether ``fastconv.cpu.winograd_w.correlate`` computes this 5-D correlation (3-D
    layers with 3 kernel columns only: 2-D 3x3 layers have the 2-D Winograd)."""
    K, Cg, KD, KH, KW = (int(v) for v in w_shape)
    return (KW == 3 and KD > 1 and int(stride[1]) == 1 and int(stride[2]) == 1
            and int(dilation[2]) == 1 and Cg * KD >= MIN_R and K // groups >= 8
            and blas.available())


def winograd_cols(w_shape, stride, dilation, groups) -> bool:
    """Whether ``fastconv.cpu.winograd_w.correlate_cols`` computes this 5-D correlation:
    1 x 1 x 5 kernels (1-D layers), unit stride and dilation along W, at least ``MIN_R``
    input and 8 output channels per group."""
    K, Cg, KD, KH, KW = (int(v) for v in w_shape)
    return (KW == 5 and KD == 1 and KH == 1 and int(stride[2]) == 1 and int(dilation[2]) == 1
            and Cg >= MIN_R and K // groups >= 8 and blas.available())


def tile_size(out_h: int, out_w: int) -> int:
    """The output tile ``m`` (4 or 2): F(4x4) unless its edge tiles waste so much that
    F(2x2)'s cost is lower (cost ~ tiles * alpha^2)."""
    f4 = -(-out_h // 4) * -(-out_w // 4) * 36
    f2 = -(-out_h // 2) * -(-out_w // 2) * 16
    return 4 if f4 <= f2 else 2
