"""Which algorithm computes a correlation: the documented rule behind ``algorithm="auto"``.

Every algorithm computes the same function (SPEC §1) and gives the same answer within
float rounding (float32: relative error ~1e-5 of the output's scale, see
``tests/test_algorithms.py``); they differ only in speed.

- ``"direct"``: the register-blocked Numba loop nest (``fastconv.cpu.conv``). Best for
  few channels per group (depthwise, single-channel images) and tiny problems, where a
  matrix product would be thin and its set-up would dominate.
- ``"gemm"``: BLAS matrix products (``fastconv.cpu.gemm``, SciPy's sgemm/dgemm on
  strided views, ``fastconv.cpu.blas``). Stride 1 with ``Cg >= 32``: the *shifted GEMM*,
  no ``im2col``: one product per kernel tap on the flat padded planes (row stride = the
  plane, an ``lda``), accumulated with ``beta = 1``, garbage columns cropped. Otherwise
  ``im2col`` in L2-sized chunks (a W stride first splits the input into stride phases)
  and one product per chunk. Best when both sides of the product are wide: many output
  channels per group and a large receptive field ``Cg * kD * kH * kW``. The products run
  on the OpenBLAS NumPy links (``numpy.matmul``'s; SciPy's otherwise), single-threaded
  per task under threadpoolctl's limit; a 1x1 layer is one product per image.
- ``"fft"``: frequency-domain correlation (``fastconv.cpu.fft``). Best for large
  kernels on few channels, where the direct cost per output grows with the kernel's
  area but the FFT's does not.
- ``"winograd"``: F(4x4, 3x3) or F(2x2, 3x3) (``fastconv.cpu.winograd``) for 2-D 3x3
  kernels at stride 1 and dilation 1 with at least 8 channels per group on both sides
  (an explicit ``algorithm="winograd"`` elsewhere raises ValueError). 4x (F(4x4)) or
  2.25x (F(2x2)) fewer multiplies than direct, as ``alpha^2`` BLAS products per block
  of tiles; F(4x4) unless F(2x2)'s tiles cost less (``tile_size``: tiles x alpha^2,
  so F(2x2) where F(4x4)'s edge tiles waste most, e.g. 6x6 or 10x10 outputs). Best
  for the 3x3 layers of CNNs (W3, W5). Error bound (float32, random normal data,
  measured against float64 by ``bench/winograd_error.py``): F(4x4) relative RMS
  1.0e-6 (16 channels) to 3.0e-6 (256), max |error| <= 1.2e-5 * max |y| (W5, 256
  channels; 7e-6 at 64); F(2x2) 2-5e-7 RMS, <= 6e-7 * max |y|, as direct (4e-7 RMS,
  <= 2.2e-6 * max |y| with its fastmath reassociation) and gemm. NaN/Inf anywhere
  (weights, or any computed tile output) sends the call to the direct kernel, so they
  propagate exactly as there. On the GPU it runs the direct kernel.

The rule (``choose``), with ``taps = kD * kH * kW``, ``Kg = K // groups``,
``Cg = C // groups``:

0. ``"winograd"`` if it applies (above), the work is at least ``WINOGRAD_MIN_MACS``
   (2**24), the products have at least ``WINOGRAD_MIN_TILES`` (64) rows (``N x`` tiles
   per image) and ``min(Cg, Kg)`` is at least ``WINOGRAD_MIN_CHANNELS`` (16) for images
   of 64 tiles or more (the fused form: 32x32 outputs and up), at least
   ``WINOGRAD_MIN_CHANNELS_STAGED`` (64) for smaller images (the staged form, whose
   transforms are not fused: with few channels they cost more than the products
   save). Measured (``bench/winograd_sweep.py``, table in ``bench/RESULTS.md``: 1-thread
   CPU time gemm / winograd, C = K, 3x3 "same", on a loaded 2-core machine, so +-20%):
   56x56: 16-256 channels 1.15-1.65x (8 channels 1.14x but direct is faster there);
   7x7-28x28 with 64-256 channels 1.05-1.8x; losses: 8-32 channels on 28x28 0.47-0.76x,
   8-16 channels on 7x7/14x14 0.74-0.99x, one 14x14 image (16 tiles) 0.8-1.2x;
1. ``"fft"`` if every stride is 1, ``taps >= FFT_MIN_TAPS`` (400: from a 20x20 kernel)
   and ``Kg * Cg <= FFT_MAX_CHANNEL_PAIRS`` (16). Measured on one 2048x2048 plane
   ("same", float32, 2 threads, loaded 2-core Zen 3), direct/fft time: 9x9 0.14, 15x15
   0.48, 19x19 1.26, 21x21 0.78-1.35, 23x23 1.42, 25x25 1.46, 31x31 2.45; the direct
   kernel costs ~0.5 ms per tap there, the overlap-save FFT ~150-200 ms whatever the
   kernel, so they cross near 400 taps;
2. else ``"gemm"`` if ``Kg >= GEMM_MIN_KG`` (8), ``Cg * taps >= GEMM_MIN_R`` (16) and the
   work ``N * K * Cg * taps * outputs`` is at least ``GEMM_MIN_MACS`` (2**20);
   Small images take the GEMM's small-image form (``fastconv.cpu.small``: one
   product per image on its whole ``im2col`` block, every op of a correlation) when
   ``small.applies``: ``taps >= 2``, ``Kg >= 4``, ``16 <= Cg * taps <= 1024``, at most
   1024 output pixels per plane, a ``col`` block of at most 1 MiB and at least 2**18
   multiply-adds (LeNet's 28x28 and 14x14 layers); then "auto" runs "gemm" even with
   ``Kg < 8``, and the gradients use its ``col2im`` input gradient and per-image weight
   gradient;
3. else ``"direct"``; a direct problem of fewer than ``SERIAL_MAX_MACS`` (2**15)
   multiply-adds runs on the calling thread (waking worker threads would cost more).

The separable rule (CPU, "auto" only, 2-D only): a 2-D correlation whose kernel has at
least ``SEP_MIN_TAPS`` (49) taps (both extents >= 2) and at most ``FFT_MAX_CHANNEL_PAIRS``
channel pairs per group checks its weight when it runs: if every 2-D kernel has
numerical rank 1 (``fastconv.cpu.separable.rank1_factors``: second singular value
<= ``max(kH, kW) * eps`` times the first), it runs as a column pass and a row pass
(``kH + kW`` instead of ``kH * kW`` multiply-adds per output), every padding mode and
stride; otherwise the rule above decides. ``algorithm="direct"`` always runs the 2-D
kernel, and the SciPy drop-ins (``fastconv._scipy``) never take the separable path
(:func:`direct_sums`). Measured on one 1024x1024 plane (float32, Gaussians, one thread,
interleaved, a heavily loaded 2-core VM), separable / direct time: 5x5 6.2 / 8.7 ms,
7x7 10.9 / 12.1 ms, 31x31 13 / 243 ms; on 2048x2048 31x31 the FFT took 276 ms and the
separable path 67 ms (so it also replaces the FFT for rank-1 kernels).

Gradients (``fastconv.grad.conv*_input/conv*_weight``, ``algorithm="auto"|"direct"|"gemm"``,
and ``"winograd"`` for the input gradient) apply the same rule (:func:`choose_for`,
:func:`winograd_wins`) to the correlation they run: the input gradient to the stride-1
correlation of the spread ``grad_output`` with the transposed weight (``Kg`` and ``Cg``
swap; at stride 1 Winograd reads ``grad_output`` in place with its zero padding and folds
the kernel flip into its weight transform), the weight gradient to the forward shapes;
"fft" becomes "direct" there, and the weight gradient has no Winograd form (it keeps the
GEMM). The GEMM weight gradient needs stride 1 and a finite input (else direct); it runs
every tap on an L2-sized column chunk while the chunk is cached and sums a constant
number of parts in order (``fastconv.cpu.grad.WEIGHT_PARTS``).

The GPU backend has only ``"direct"``; there "auto" always picks it (and "winograd",
checked as on the CPU, runs it).
"""

from __future__ import annotations

import contextlib
import math
import threading

from fastconv._config import CHANNEL_BLOCK
from fastconv._plan import ConvPlan

#: Names accepted by ``algorithm=`` of the conv functions.
ALGORITHMS = ("auto", "direct", "gemm", "fft", "winograd")

FFT_MIN_TAPS = 400
FFT_MAX_CHANNEL_PAIRS = 16
GEMM_MIN_KG = 8
GEMM_MIN_R = 16
GEMM_MIN_MACS = 1 << 20
SERIAL_MAX_MACS = 1 << 15
SEP_MIN_TAPS = 49
WINOGRAD_MIN_CHANNELS = 16
WINOGRAD_MIN_CHANNELS_STAGED = 64
WINOGRAD_MIN_TILES = 64
WINOGRAD_MIN_MACS = 1 << 24

_LOCAL = threading.local()


@contextlib.contextmanager
def direct_sums():
    """Within this block "auto" never takes the separable path (the SciPy drop-ins
    promise the sums of a 2-D kernel)."""
    before = getattr(_LOCAL, "no_separable", False)
    _LOCAL.no_separable = True
    try:
        yield
    finally:
        _LOCAL.no_separable = before


def choose(plan: ConvPlan) -> str:
    """The algorithm ``"auto"`` runs for a validated plan (the rule in the module doc).

    Examples
    --------
    >>> from fastconv._plan import plan_conv
    >>> import numpy as np
    >>> x, w = np.zeros((8, 64, 56, 56)), np.zeros((64, 64, 3, 3))
    >>> choose(plan_conv("conv2d", 2, x, w, None, 1, 1, 1, 1, "zeros"))
    'winograd'
    """
    if winograd_wins(plan.x_shape[0], plan.w_shape, plan.out_shape[2:], plan.stride,
                     plan.dilation, plan.groups):
        return "winograd"
    name = choose_for(plan.x_shape[0], plan.w_shape, plan.out_shape[2:], plan.stride,
                      plan.groups)
    return "gemm" if name != "fft" and _small(plan) else name


def winograd_reason(w_shape: tuple, out_spatial: tuple, stride: tuple, dilation: tuple,
                    groups: int) -> str | None:
    """None where ``algorithm="winograd"`` applies (5-D weight shape, 3-D output spatial
    shape, per-axis stride and dilation), else why not (for the ValueError)."""
    from fastconv.cpu.winograd import applies

    return applies(w_shape, out_spatial, stride, dilation, groups)


def check_winograd(func: str, w_shape: tuple, out_spatial: tuple, stride: tuple,
                   dilation: tuple, groups: int, nspatial: int) -> None:
    """ValueError naming ``func`` when ``algorithm="winograd"`` cannot run this correlation
    (``w_shape`` is 5-D; the message shows the caller's ``nspatial`` kernel axes)."""
    reason = winograd_reason(w_shape, out_spatial, stride, dilation, groups)
    if reason is not None:
        shape = tuple(int(v) for v in w_shape[:2] + tuple(w_shape[5 - nspatial :]))
        raise ValueError(f"{func}: algorithm='winograd' {reason} (weight.shape={shape}, "
                         f"groups={groups})")


def winograd_wins(N: int, w_shape: tuple, out_spatial: tuple, stride: tuple, dilation: tuple,
                  groups: int) -> bool:
    """Whether "auto" runs the Winograd algorithm (the rule in the module doc)."""
    if winograd_reason(w_shape, out_spatial, stride, dilation, groups) is not None:
        return False
    from fastconv.cpu.winograd import FUSED_MIN_IMAGE_TILES, tile_size

    K, Cg = int(w_shape[0]), int(w_shape[1])
    Kg = K // groups
    oh, ow = int(out_spatial[1]), int(out_spatial[2])
    m = tile_size(oh, ow)
    per_image = -(-oh // m) * -(-ow // m)
    fused = per_image >= FUSED_MIN_IMAGE_TILES
    macs = N * math.prod(w_shape) * math.prod(out_spatial)
    return (min(Cg, Kg) >= (WINOGRAD_MIN_CHANNELS if fused else WINOGRAD_MIN_CHANNELS_STAGED)
            and N * per_image >= WINOGRAD_MIN_TILES and macs >= WINOGRAD_MIN_MACS)


def choose_for(N: int, w_shape: tuple, out_spatial: tuple, stride: tuple, groups: int) -> str:
    """The rule of :func:`choose` from the shapes of a correlation: ``N`` images, weight
    ``(K, Cg, KD, KH, KW)``, output spatial shape, per-axis stride, groups. The gradients
    use it for the correlation they run (``fastconv.cpu.grad``)."""
    K, Cg = int(w_shape[0]), int(w_shape[1])
    Kg = K // groups
    taps = math.prod(w_shape[2:])
    unit_stride = all(int(s) == 1 for s in stride)
    if unit_stride and taps >= FFT_MIN_TAPS and Kg * Cg <= FFT_MAX_CHANNEL_PAIRS:
        return "fft"
    macs = N * math.prod(w_shape) * math.prod(out_spatial)
    if Kg >= GEMM_MIN_KG and Cg * taps >= GEMM_MIN_R and macs >= GEMM_MIN_MACS:
        return "gemm"
    return "direct"


def correlation_core(backend_name: str, be, algorithm: str, plan: ConvPlan):
    """The backend function that runs ``plan`` with ``algorithm`` ("auto" resolved by
    :func:`choose`); every one has the signature of ``fastconv.cpu.conv.correlate``."""
    if algorithm == "winograd":
        check_winograd(plan.func, plan.w_shape, plan.out_shape[2:], plan.stride,
                       plan.dilation, plan.groups, plan.nspatial)
    if backend_name != "cpu":
        return be.correlate
    name = choose(plan) if algorithm == "auto" else algorithm
    if algorithm == "auto" and _separable_shape(plan):
        return _separable_core(plan, _core(be, name, plan))
    return _core(be, name, plan)


def _separable_shape(plan: ConvPlan) -> bool:
    """Whether "auto" tries the separable path for this plan (the weight decides)."""
    _, Cg, KD, KH, KW = plan.w_shape
    Kg = plan.w_shape[0] // plan.groups
    return (plan.nspatial == 2 and KH >= 2 and KW >= 2 and KH * KW >= SEP_MIN_TAPS
            and Kg * Cg <= FFT_MAX_CHANNEL_PAIRS
            and not getattr(_LOCAL, "no_separable", False))


def _separable_core(plan: ConvPlan, fallback):
    """A core that runs the two 1-D passes, reading the padding in place, when every 2-D
    kernel of the weight has rank 1, else ``fallback`` (given a padded copy unless it
    pads itself)."""
    from fastconv.cpu.pad import pad
    from fastconv.cpu.separable import rank1_factors, separable

    fallback_pads = getattr(fallback, "pads_itself", False)

    def core(x, w, bias, out, stride, dilation, groups):
        factors = rank1_factors(w[:, :, 0], out.dtype)
        if factors is None:
            if not fallback_pads:
                x = pad(x, plan.pads, plan.padding_mode)
            return fallback(x, w, bias, out, stride, dilation, groups)
        separable(x, factors[0], factors[1], bias, out, stride, dilation, groups, plan.pads,
                  plan.padding_mode)

    core.pads_itself = True
    return core


def _core(be, name: str, plan: ConvPlan):
    if name == "winograd":
        from fastconv.cpu import winograd

        if plan.padding_mode == "zeros":  # the blocks read the zero padding in place
            return winograd.zero_padding_core(plan.pads)
        return winograd.correlate
    if name == "direct":
        if _macs(plan) < SERIAL_MAX_MACS:
            return _serial_core()
        return _direct_core(be, plan)
    if name == "gemm" and _small(plan):
        from fastconv.cpu import small

        return small.zero_padding_core(plan.pads) if plan.padding_mode == "zeros" else (
            small.correlate)
    if name == "gemm":  # pads each image in the task threads (no parallel-region pass)
        from fastconv.cpu.gemm import padding_core

        return padding_core(plan.x_shape, plan.pads, plan.padding_mode)
    else:
        from fastconv.cpu.fft import correlate, zero_padding_core

        if plan.padding_mode == "zeros":  # the tiles read the zero padding in place
            return zero_padding_core(plan.pads)
    return correlate


def _direct_core(be, plan: ConvPlan):
    """The 4-channel row kernel, or for fewer than ``CHANNEL_BLOCK`` output channels per
    group (depthwise, single planes) the few-channel kernel, which reads zero padding in
    place (no padded copy). (``few_channel_core(row_borders=True)`` is 1.6-2x faster on
    W7 but rounds border columns an ulp differently; it is not wired to "auto" because
    the Dask layer resolves "auto" to "direct" per block and promises bit-identity.)"""
    if plan.w_shape[0] // plan.groups >= CHANNEL_BLOCK:
        return be.correlate
    from fastconv.cpu.conv import few_channel_core

    if plan.padding_mode != "zeros":
        return few_channel_core()
    return few_channel_core(tuple(plan.x_shape), plan.pads)


def _serial_core():
    # imported once, then kept: an import statement per call costs more than a tiny problem
    global _SERIAL_CORE
    if _SERIAL_CORE is None:
        from fastconv.cpu.conv import correlate_serial

        _SERIAL_CORE = correlate_serial
    return _SERIAL_CORE


_SERIAL_CORE = None


def _small(plan: ConvPlan) -> bool:
    """Whether the small-image GEMM (``fastconv.cpu.small``) runs this plan."""
    from fastconv.cpu.small import applies

    return applies(plan.x_shape[0], plan.w_shape, plan.out_shape[2:], plan.groups,
                   plan.dtype.itemsize)


def _macs(plan: ConvPlan) -> int:
    """Multiply-adds of the direct correlation."""
    return plan.x_shape[0] * math.prod(plan.w_shape) * math.prod(plan.out_shape[2:])
