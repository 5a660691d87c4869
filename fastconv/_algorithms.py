"""Which algorithm computes a correlation: the registry behind ``algorithm=`` and "auto".

Each algorithm is one :class:`Algorithm` entry of :data:`REGISTRY`: the ops and devices it
serves, where it can run (``applies``), where "auto" considers it (``regime``: the
measured thresholds below), an estimated cost in seconds (``cost``: per-algorithm rates,
``RATE_*`` / ``FFT_SECONDS_PER_OUTPUT``, to be calibrated from ``bench/RESULTS.md``) and
its ``core``. ``"auto"`` runs the cheapest entry whose regime holds; an entry whose use
depends on the weight's values (``conditional``: separable) is tried first when its regime
holds and falls back to that choice. Adding an algorithm is adding one entry
(:func:`register`). :func:`explain` (``fastconv.explain``) shows a call's choice, the
alternatives with their cost, and why.

A core takes the unpadded 5-D input and the plan's padding, given when it is built:
``core(x, w, bias, out, stride, dilation, groups)``; it reads the padding in place or
makes its padded copy (the runner ``fastconv._run`` never pads for it).

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

- ``"direct_vec"``: the direct correlation on explicit SIMD vectors
  (``fastconv.cpu.microkernel``): 6 output pixels x a block of ``KB`` output channels (64
  float32 on AVX-512, 16 on AVX2) in vector registers, one FMA chain per output over the
  taps. Forward only, any shape. Error bound ``(Cg*taps + 1) * u * (sum |x||w| + |bias|)``.
  Best for few input channels and large kernels at any stride (W4: 3 -> 64 7x7 stride 2,
  2.5x the folded GEMM's speed). With at most one vector of output channels per group
  and at most 4096 output pixels per plane, its *one-vector form* (12 pixels across the
  plane's rows x one vector; ``Cg <= DIRECT_VEC_PLANE_MAX_CG`` (8) in "auto") also serves
  the weight gradient (9 taps x one vector; error ``(P + N) * u * sum |g||x|``): LeNet's
  conv2, forward 1.3 -> 0.63 ms and weight gradient 1.4 -> 0.58 ms against the small-image
  GEMM (1 thread, bench/RESULTS.md 2026-12-02 11:20).
- ``"direct_wide"`` ("auto" only, input gradients): the stride-1 correlation with output
  pixels in the lanes (``fastconv.cpu.microkernel.correlate_wide``), at most 6 output
  channels per group, ``grad_output`` read in place; the direct kernel's bits. LeNet's
  conv2 input gradient 2.2 -> 1.1 ms (1 thread) against ``col2im``.

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
   product per chunk of images on its whole ``im2col`` block, every op of a correlation) when
   ``small.applies``: ``taps >= 2``, ``Kg >= 4``, ``16 <= Cg * taps <= 1024``, at most
   1024 output pixels per plane, a ``col`` block of at most 1 MiB and at least 2**18
   multiply-adds (LeNet's 28x28 and 14x14 layers); then "auto" runs "gemm" even with
   ``Kg < 8``, and the gradients use its ``col2im`` input gradient and per-chunk weight
   gradient;
3. else ``"direct"``; a direct problem of fewer than ``SERIAL_MAX_MACS`` (2**15)
   multiply-adds runs on the calling thread (waking worker threads would cost more),
   one of fewer than ``TINY_MAX_MACS`` (2**11) by ``fastconv.cpu.tiny`` (the same bits,
   a quick cold compile).
4. ``"direct_vec"`` replaces the choice of 1-3 (outside the FFT's regime) where
   ``Cg <= DIRECT_VEC_MAX_CG`` (4), ``Cg * taps >= DIRECT_VEC_MIN_R`` (128), the work is at
   least ``GEMM_MIN_MACS`` and ``Kg`` is at least half the channel block (its cost,
   ``RATE_DIRECT_VEC`` on the block's used channels, is then below the GEMM's and direct's).
   Measured (2 threads, float32, AVX-512, a loaded machine, direct_vec / gemm time):
   3 -> 64 7x7 s2 (R = 147) 0.74; 3 -> 32 5x5 s1 (R = 75) 1.03; 3 -> 32 3x3 s2 (R = 27)
   1.45; 1 -> 64 5x5 (R = 25) 2.1: each output's chain must be long enough to pay for
   its transposed store.

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
and ``"winograd"`` for the input gradient) are ops of this registry ("input_grad",
"weight_grad": :class:`Problem`'s ``op``); each entry's ``grad_cores`` give its cores
and :func:`grad_core` builds the one that runs. The same regimes apply to the correlation
the gradient runs: the input gradient's is the stride-1 correlation of the spread
``grad_output`` with the transposed weight (``Kg`` and ``Cg`` swap; Winograd needs
``grad_output`` read in place: forward stride 1, nothing cropped; it folds the kernel flip
into its weight transform), the weight gradient's has the forward shapes (Winograd:
:func:`winograd_weight_wins`, where the GEMM's shape rule holds). There is no FFT
gradient, and the GEMM's small-image form applies to the forward's shapes (for the input
gradient when every ``grad_output`` value lands on the grid), taking precedence over the
FFT's regime. A gradient core that cannot run for the data (NaN/Inf) runs its fallback:
"auto"'s next choice (the input gradient's Winograd), or the direct kernel (the weight
gradient's Winograd and GEMM, every explicit ``algorithm=``); an explicit algorithm that
does not apply to a gradient runs the direct kernel. The GEMM weight gradient needs stride
1 (else direct); it runs every tap on an L2-sized column chunk while the chunk is cached
and sums a constant number of parts in order (``fastconv.cpu.grad.WEIGHT_PARTS``).

The GPU backend has only ``"direct"``; there "auto" always picks it (and "winograd",
checked as on the CPU, runs it).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fastconv._config import CHANNEL_BLOCK
from fastconv._plan import ConvPlan, InputGradPlan

#: Names accepted by ``algorithm=`` of the conv functions (kept up to date by
#: :func:`register`: "auto" and every explicit entry).
ALGORITHMS: tuple = ("auto",)

FFT_MIN_TAPS = 400
FFT_MAX_CHANNEL_PAIRS = 16
GEMM_MIN_KG = 8
GEMM_MIN_R = 16
GEMM_MIN_MACS = 1 << 20
SERIAL_MAX_MACS = 1 << 15
TINY_MAX_MACS = 1 << 11
SEP_MIN_TAPS = 49
WINOGRAD_MIN_CHANNELS = 16
WINOGRAD_MIN_CHANNELS_STAGED = 64
WINOGRAD_MIN_TILES = 64
WINOGRAD_MIN_MACS = 1 << 24
DIRECT_VEC_MAX_CG = 4
DIRECT_VEC_MIN_R = 128
DIRECT_VEC_PLANE_MAX_CG = 8

#: Cost rates (2 threads, float32). The direct kernel: ~0.12 ns per multiply-add on one
#: 2048x2048 plane (0.5 ms per tap, module doc); the GEMM: the same work through BLAS on
#: wide products; Winograd: the GEMM's rate on 4x (F(4x4)) or 2.25x (F(2x2)) fewer
#: multiplies; the FFT: ~40 ns per output and channel pair whatever the kernel (150-200 ms
#: for 2048x2048); separable: the direct rate on kH + kW taps instead of kH * kW.
RATE_DIRECT = 8e9
RATE_GEMM = 1.5e10
FFT_SECONDS_PER_OUTPUT = 4e-8
#: direct_vec (``fastconv.cpu.microkernel``): W4 (3 -> 64 7x7 stride 2) ran 2.5x faster
#: than the folded GEMM (8.4 vs 21.4 ms, 2 threads, bench/RESULTS.md), on the channels of
#: its blocks that are used (``_direct_vec_cost``)
RATE_DIRECT_VEC = 2.5 * RATE_GEMM

OPS = ("forward", "input_grad", "weight_grad")

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


# --- the problem an algorithm sees ---------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """The correlation an op runs: ``N`` images, weight ``(K, Cg, KD, KH, KW)``, 3-D
    output spatial shape, per-axis stride and dilation, ``groups``; ``op`` is "forward",
    "input_grad" (the stride-1 correlation of the spread ``grad_output`` with the
    transposed weight) or "weight_grad" (the forward shapes)."""

    op: str
    N: int
    w_shape: tuple
    out_spatial: tuple
    stride: tuple
    dilation: tuple
    groups: int
    nspatial: int = 2
    #: input_grad: False when grad_output is spread with a step (a forward stride > 1)
    #: or cropped, so Winograd cannot read it in place.
    in_place: bool = True
    #: bytes per element of the call's computation (the small-image GEMM's block size
    #: rule); 0: not a call's plan (a bare shape rule), the small-image form is not considered
    itemsize: int = 0
    #: input_grad: the forward's ``(w_shape, out_spatial)`` when every ``grad_output`` value
    #: lands on the grid (the small-image ``col2im`` form's rule reads them), else None
    fwd_shapes: tuple | None = None

    @property
    def macs(self) -> int:
        """Multiply-adds of the direct correlation."""
        return self.N * math.prod(self.w_shape) * math.prod(self.out_spatial)

    @property
    def taps(self) -> int:
        return math.prod(self.w_shape[2:])

    @property
    def Kg(self) -> int:
        return int(self.w_shape[0]) // self.groups

    @property
    def Cg(self) -> int:
        return int(self.w_shape[1])


def forward_problem(plan: ConvPlan, op: str = "forward") -> Problem:
    return Problem(op, plan.x_shape[0], plan.w_shape, plan.out_shape[2:], plan.stride,
                   plan.dilation, plan.groups, plan.nspatial, itemsize=plan.dtype.itemsize)


def input_grad_problem(plan: InputGradPlan) -> Problem:
    """The stride-1 correlation an input gradient runs (``Kg`` and ``Cg`` swap)."""
    K, Cg = plan.w_shape[:2]
    wt_shape = (plan.groups * Cg, K // plan.groups) + tuple(plan.w_shape[2:])
    whole = all(s == (0, n, 1) for s, n in zip(plan.spread_src, plan.g_shape[2:], strict=True))
    unit = all(d[2] == 1 for d in plan.spread_dst)
    return Problem("input_grad", plan.g_shape[0], wt_shape, plan.padded_shape[2:], (1, 1, 1),
                   plan.dilation, plan.groups, plan.nspatial, whole and unit,
                   plan.dtype.itemsize, (plan.w_shape, plan.g_shape[2:]) if whole else None)


# --- the registry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Algorithm:
    """One algorithm: where it runs, where "auto" considers it, its cost and its core.

    ``applies(p)`` and ``regime(p)`` return None when they hold, else the reason (shown by
    :func:`explain`; an explicit ``algorithm=`` that does not apply raises ValueError when
    ``strict``). ``cost(p)`` is in estimated seconds. ``cores`` maps each device the
    algorithm runs on to its forward core's factory ``(be, plan) -> core`` (module doc);
    ``grad_cores`` maps "input_grad" and "weight_grad" (those of ``ops``) to such a map of
    gradient core factories ``(be, plan, fallback) -> core`` ("Gradient cores" below).
    ``explicit``: a value of ``algorithm=``; ``conditional``: its use also depends on the
    weight's values (tried first; its factory takes the fallback core as a third argument).
    """

    name: str
    summary: str
    ops: tuple
    applies: Callable
    regime: Callable
    cost: Callable
    cores: dict
    explicit: bool = True
    conditional: bool = False
    strict: bool = False
    grad_cores: dict = field(default_factory=dict)


REGISTRY: dict[str, Algorithm] = {}

#: Built cores by (plan, backend, algorithm, separable allowed); plans are cached and
#: immutable, so a repeated call reuses its core (bounded: cleared when full).
_CORES: dict = {}
_CORES_MAX = 256


def register(entry: Algorithm) -> Algorithm:
    """Add (or replace) an algorithm; "auto" and :func:`explain` see it at once."""
    global ALGORITHMS
    REGISTRY[entry.name] = entry
    ALGORITHMS = ("auto",) + tuple(n for n, e in REGISTRY.items() if e.explicit)
    _CORES.clear()
    return entry


def _always(p: Problem) -> None:
    return None


def _factories(e: Algorithm, op: str) -> dict:
    """``e``'s core factories for ``op``, by device."""
    return e.cores if op == "forward" else e.grad_cores.get(op, {})


# --- gradient cores ----------------------------------------------------------------------------
#
# An input-gradient factory ``(be, plan: InputGradPlan, fallback)`` returns
# ``core(g, w, bias, out) -> result``: ``g`` the 5-D grad_output, ``w`` the forward weight,
# ``out`` on ``plan.padded_shape``; the result is folded back onto the input for a non-zero
# padding mode (:func:`_folded`). A weight-gradient factory ``(be, plan: ConvPlan, fallback)``
# returns ``core(x, g, gw)``: ``x`` the unpadded input, which the core pads (or whose zero
# padding it reads in place) from the plan. ``fallback`` is the core that runs where this
# one cannot for the data (NaN/Inf): "auto"'s next choice, or "direct" for an explicit
# ``algorithm=`` (:func:`grad_core`); None for the last.


def _folded(be, plan: InputGradPlan, kernel):
    """The input-gradient core of ``kernel(g, w, bias, out)`` (writes ``out`` on the padded
    grid): its result, folded back onto the input for a non-zero padding mode."""
    pads, mode = plan.pads, plan.padding_mode

    def core(g, w, bias, out):
        kernel(g, w, bias, out)
        return out if mode == "zeros" else be.unpad(out, pads, mode)

    return core


def _spread_core(be, plan: InputGradPlan, kernel):
    """The input gradient as ``kernel`` (a forward correlation) on the spread grid."""
    from fastconv.cpu.grad import input_spread

    shape, src, dst = plan.spread_shape, plan.spread_src, plan.spread_dst
    dilation, groups = plan.dilation, plan.groups

    def run(g, w, bias, out):
        input_spread(g, w, bias, out, shape, src, dst, dilation, groups, kernel)

    return _folded(be, plan, run)


# direct ------------------------------------------------------------------------------------


def _direct_cost(p: Problem) -> float:
    return p.macs / RATE_DIRECT


def _padded(be, plan: ConvPlan, kernel):
    """``kernel`` (which reads a padded input) given the plan's padded copy."""
    pads, mode = plan.pads, plan.padding_mode
    if not any(b or a for b, a in pads):
        return kernel

    def core(x, w, bias, out, stride, dilation, groups):
        kernel(be.pad(x, pads, mode), w, bias, out, stride, dilation, groups)

    return core


def _direct_core(be, plan: ConvPlan):
    """The 4-channel row kernel; on the calling thread below ``SERIAL_MAX_MACS`` (waking
    worker threads would cost more); for fewer than ``CHANNEL_BLOCK`` output channels per
    group (depthwise, single planes) the few-channel kernel, which reads zero padding in
    place (no padded copy), with the same sums as on a padded copy (Dask's blocks rely on
    it)."""
    macs = forward_problem(plan).macs
    if macs < SERIAL_MAX_MACS:
        return _padded(be, plan, _serial_kernel(macs))
    if plan.w_shape[0] // plan.groups >= CHANNEL_BLOCK:
        return _padded(be, plan, be.correlate)
    from fastconv.cpu.conv import few_channel_core

    if plan.padding_mode != "zeros":
        return _padded(be, plan, few_channel_core())
    return few_channel_core(plan.pads)


def _serial_kernel(macs):
    """``correlate``'s kernel on the calling thread: below ``TINY_MAX_MACS`` the scalar
    tiny kernel (the same bits, a fraction of the cold compile), else its serial twin."""
    # imported once, then kept: an import statement per call costs more than a tiny problem
    global _SERIAL, _TINY
    if macs < TINY_MAX_MACS:
        if _TINY is None:
            from fastconv.cpu.tiny import correlate_tiny

            _TINY = correlate_tiny
        return _TINY
    if _SERIAL is None:
        from fastconv.cpu.conv import correlate_serial

        _SERIAL = correlate_serial
    return _SERIAL


_SERIAL = _TINY = None


def _gpu_direct_core(be, plan: ConvPlan):
    """The GPU's direct kernel on the plan's padded copy."""
    return _padded(be, plan, be.correlate)


def _direct_input_core(be, plan: InputGradPlan, fallback):
    """The direct kernel on the spread grid (on the calling thread when tiny)."""
    macs = input_grad_problem(plan).macs
    if macs < SERIAL_MAX_MACS:
        return _spread_core(be, plan, _serial_kernel(macs))
    from fastconv.cpu.conv import correlate

    return _spread_core(be, plan, correlate)


def _gpu_input_core(be, plan: InputGradPlan, fallback):
    """The GPU backend's input gradient (its one direct kernel, folded)."""
    args = (plan.spread_shape, plan.spread_src, plan.spread_dst, plan.dilation, plan.groups,
            plan.pads, plan.padding_mode)

    def core(g, w, bias, out):
        return be.correlate_input(g, w, bias, out, *args)

    return core


def _direct_weight_core(be, plan: ConvPlan, fallback):
    """The direct weight-gradient kernel on the plan's padded copy."""
    from fastconv.cpu.grad import weight_direct

    pads, mode, stride, dilation, groups = (plan.pads, plan.padding_mode, plan.stride,
                                            plan.dilation, plan.groups)

    def core(x, g, gw):  # tiny: the serial twin (same bits, a third of the cold compile)
        weight_direct(be.pad(x, pads, mode), g, gw, stride, dilation, groups,
                      serial=g.size * gw[0].size < SERIAL_MAX_MACS)

    return core


def _gpu_weight_core(be, plan: ConvPlan, fallback):
    """The GPU backend's weight gradient (zero padding read in place, else a padded copy)."""
    pads, mode, groups = plan.pads, plan.padding_mode, plan.groups
    stride, dilation = np.array(plan.stride), np.array(plan.dilation)
    zeros = mode == "zeros"

    def core(x, g, gw):
        xp = x if zeros else be.pad(x, pads, mode)
        be.correlate_weight(xp, g, gw, stride, dilation, groups, pads=pads if zeros else None)

    return core


register(Algorithm(
    "direct", "register-blocked loop nest (fastconv.cpu.conv; the GPU's one kernel)", OPS,
    _always, _always, _direct_cost, {"cpu": _direct_core, "cuda": _gpu_direct_core},
    grad_cores={"input_grad": {"cpu": _direct_input_core, "cuda": _gpu_input_core},
                "weight_grad": {"cpu": _direct_weight_core, "cuda": _gpu_weight_core}}))


# gemm --------------------------------------------------------------------------------------


def _fft_regime(p: Problem) -> str | None:
    if any(int(s) != 1 for s in p.stride):
        return "stride > 1"
    if p.taps < FFT_MIN_TAPS:
        return f"kernel has {p.taps} taps < FFT_MIN_TAPS={FFT_MIN_TAPS}"
    if p.Kg * p.Cg > FFT_MAX_CHANNEL_PAIRS:
        return (f"Kg*Cg = {p.Kg * p.Cg} channel pairs per group > "
                f"FFT_MAX_CHANNEL_PAIRS={FFT_MAX_CHANNEL_PAIRS}")
    return None


def _small(p: Problem) -> bool:
    """Whether the GEMM's small-image form (``fastconv.cpu.small``) runs this problem: its
    rule on the forward's shapes (every op; an input gradient also needs every
    ``grad_output`` value on the grid)."""
    if not p.itemsize:
        return False
    if p.op == "input_grad":
        if p.fwd_shapes is None:
            return False
        w_shape, out_spatial = p.fwd_shapes
    else:
        w_shape, out_spatial = p.w_shape, p.out_spatial
    from fastconv.cpu.small import applies

    return applies(p.N, w_shape, out_spatial, p.groups, p.itemsize)


def _gemm_regime(p: Problem) -> str | None:
    # small images: one product per chunk of images on its im2col block (the forward keeps the
    # FFT's regime for the FFT; the gradients have no FFT form)
    if (p.op != "forward" or _fft_regime(p) is not None) and _small(p):
        return None
    return _gemm_shapes_regime(p)


def _gemm_shapes_regime(p: Problem) -> str | None:
    """The GEMM's regime from the correlation's shapes (its small-image form aside)."""
    if p.Kg < GEMM_MIN_KG:
        return f"Kg = {p.Kg} output channels per group < GEMM_MIN_KG={GEMM_MIN_KG}"
    if p.Cg * p.taps < GEMM_MIN_R:
        return f"Cg*taps = {p.Cg * p.taps} < GEMM_MIN_R={GEMM_MIN_R}"
    if p.macs < GEMM_MIN_MACS:
        return f"{p.macs} multiply-adds < GEMM_MIN_MACS={GEMM_MIN_MACS}"
    if _fft_regime(p) is None:  # measured: the FFT beats the products there
        return "large kernel on few channels (the FFT's regime)"
    return None


def _gemm_cost(p: Problem) -> float:
    if p.op == "forward":  # 3-D, 3 kernel columns: F(4, 3) along W halves the products
        from fastconv.cpu.rules import winograd_depth  # (C3, 1-thread CPU: 45 ms vs the

        if winograd_depth(p.w_shape, p.stride, p.dilation, p.groups):  # folded GEMM's 106 ms,
            return p.macs / (RATE_GEMM * 2.0)  # bench/RESULTS.md "2026-12-02 11:xx")
        from fastconv.cpu.rules import winograd_cols  # 1-D k5: F(4, 5) along W

        if winograd_cols(p.w_shape, p.stride, p.dilation, p.groups):  # (C1: 1-thread CPU
            return p.macs / (RATE_GEMM * 1.45)  # 15.9 vs 23.2 ms, bench/RESULTS.md)
    return p.macs / RATE_GEMM


def _gemm_core(be, plan: ConvPlan):
    if _small(forward_problem(plan)):
        from fastconv.cpu import small

        if plan.padding_mode == "zeros":  # the blocks read the zero padding in place
            return small.zero_padding_core(plan.pads)
        return _padded(be, plan, small.correlate)
    # pads each image in the task threads (no parallel-region pass); 3-D layers with 3
    # kernel columns run F(4, 3) along W on the products (fastconv.cpu.winograd_w)
    from fastconv.cpu.winograd_w import padding_core

    return padding_core(plan.pads, plan.padding_mode)


def _gemm_input_core(be, plan: InputGradPlan, fallback):
    """``col2im`` (``fastconv.cpu.small``) for small images, else the shifted GEMM on the
    spread grid."""
    if _small(input_grad_problem(plan)):
        from fastconv.cpu.grad import input_small

        dst, dilation, groups = plan.spread_dst, plan.dilation, plan.groups

        def run(g, w, bias, out):
            input_small(g, w, bias, out, dst, dilation, groups)

        return _folded(be, plan, run)
    from fastconv.cpu.gemm import correlate

    return _spread_core(be, plan, correlate)


def _gemm_weight_core(be, plan: ConvPlan, fallback):
    """One product per chunk of images (``fastconv.cpu.small``) for small
    images, else the shifted GEMM on the padded copy; the direct kernel where the shifted
    GEMM cannot run (stride > 1, NaN/Inf in the input)."""
    pads, mode, stride, dilation, groups = (plan.pads, plan.padding_mode, plan.stride,
                                            plan.dilation, plan.groups)
    if _small(forward_problem(plan, "weight_grad")):
        from fastconv.cpu import small

        zeros = mode == "zeros"
        before = tuple(int(b) for b, _ in pads) if zeros else (0, 0, 0)
        st, dil = np.array(stride), np.array(dilation)

        def core(x, g, gw, cols=None):
            small.weight_gradient(x if zeros else be.pad(x, pads, mode), g, gw, st, dil,
                                  groups, before, cols if zeros else None)

        core.small_cols = zeros  # a layer may pass its forward's im2col blocks (cols=)
        return core
    from fastconv.cpu.grad import weight_direct, weight_gemm

    def core(x, g, gw):
        xp = be.pad(x, pads, mode)
        if not weight_gemm(xp, g, gw, stride, dilation, groups):
            weight_direct(xp, g, gw, stride, dilation, groups)

    return core


register(Algorithm(
    "gemm", "BLAS matrix products: shifted GEMM or chunked im2col (fastconv.cpu.gemm)", OPS,
    _always, _gemm_regime, _gemm_cost, {"cpu": _gemm_core},
    grad_cores={"input_grad": {"cpu": _gemm_input_core},
                "weight_grad": {"cpu": _gemm_weight_core}}))


# fft ---------------------------------------------------------------------------------------


def _fft_cost(p: Problem) -> float:
    return p.N * p.groups * p.Kg * p.Cg * math.prod(p.out_spatial) * FFT_SECONDS_PER_OUTPUT


def _fft_core(be, plan: ConvPlan):
    from fastconv.cpu import fft

    if plan.padding_mode == "zeros":  # the tiles read the zero padding in place
        return fft.zero_padding_core(plan.pads)
    return _padded(be, plan, fft.correlate)


register(Algorithm(
    "fft", "overlap-save frequency-domain correlation (fastconv.cpu.fft)", ("forward",),
    _always, _fft_regime, _fft_cost, {"cpu": _fft_core}))


# winograd ----------------------------------------------------------------------------------


def winograd_reason(w_shape: tuple, out_spatial: tuple, stride: tuple, dilation: tuple,
                    groups: int) -> str | None:
    """None where ``algorithm="winograd"`` applies (5-D weight shape, 3-D output spatial
    shape, per-axis stride and dilation), else why not (for the ValueError)."""
    from fastconv.cpu.rules import winograd_2d

    return winograd_2d(w_shape, out_spatial, stride, dilation, groups)


def _winograd_applies(p: Problem) -> str | None:
    if p.op == "weight_grad":  # F(3x3, m x m) of fastconv.cpu.winograd_weight
        from fastconv.cpu.winograd_weight import applies

        ok = applies((p.N, p.Cg * p.groups), p.w_shape, (p.N, p.w_shape[0]) + tuple(
            p.out_spatial), p.stride, p.dilation)
        return None if ok else "needs a 2-D 3x3 kernel, stride 1 and dilation 1"
    if not p.in_place:
        return "needs grad_output read in place (forward stride 1, nothing cropped)"
    return winograd_reason(p.w_shape, p.out_spatial, p.stride, p.dilation, p.groups)


def _winograd_weight_regime(p: Problem) -> str | None:
    """:func:`winograd_weight_wins`: where the GEMM's shape rule holds, 2-D 3x3,
    enough channels, work and tiles."""
    from fastconv.cpu.winograd_weight import tile_size

    if _gemm_shapes_regime(p) is not None:
        return "replaces gemm only where gemm's regime holds"
    oh, ow = int(p.out_spatial[1]), int(p.out_spatial[2])
    m = tile_size(oh, ow)
    tiles = p.N * -(-oh // m) * -(-ow // m)
    if min(p.Cg, p.Kg) < WINOGRAD_MIN_CHANNELS:
        return f"min(Cg, Kg) = {min(p.Cg, p.Kg)} < {WINOGRAD_MIN_CHANNELS}"
    if tiles < WINOGRAD_MIN_TILES:
        return f"{tiles} tiles < WINOGRAD_MIN_TILES={WINOGRAD_MIN_TILES}"
    if p.macs < WINOGRAD_MIN_MACS:
        return f"{p.macs} multiply-adds < WINOGRAD_MIN_MACS={WINOGRAD_MIN_MACS}"
    return None


def _winograd_regime(p: Problem) -> str | None:
    if p.op == "weight_grad":
        return _winograd_weight_regime(p)
    from fastconv.cpu.rules import FUSED_MIN_IMAGE_TILES, tile_size

    oh, ow = int(p.out_spatial[1]), int(p.out_spatial[2])
    m = tile_size(oh, ow)
    per_image = -(-oh // m) * -(-ow // m)
    fused = per_image >= FUSED_MIN_IMAGE_TILES
    need = WINOGRAD_MIN_CHANNELS if fused else WINOGRAD_MIN_CHANNELS_STAGED
    if min(p.Cg, p.Kg) < need:
        return (f"min(Cg, Kg) = {min(p.Cg, p.Kg)} < {need} "
                f"({'fused' if fused else 'staged'} form, {per_image} tiles per image)")
    if p.N * per_image < WINOGRAD_MIN_TILES:
        return f"{p.N * per_image} tiles < WINOGRAD_MIN_TILES={WINOGRAD_MIN_TILES}"
    if p.macs < WINOGRAD_MIN_MACS:
        return f"{p.macs} multiply-adds < WINOGRAD_MIN_MACS={WINOGRAD_MIN_MACS}"
    return None


def _winograd_cost(p: Problem) -> float:
    from fastconv.cpu.rules import tile_size

    m = tile_size(int(p.out_spatial[1]), int(p.out_spatial[2]))
    saving = 9 * m * m / (m + 2) ** 2  # multiplies of direct / of F(m x m, 3x3)
    return p.macs / (RATE_GEMM * saving)


def _winograd_core(be, plan: ConvPlan):
    from fastconv.cpu import winograd

    if plan.padding_mode == "zeros":  # the blocks read the zero padding in place
        return winograd.zero_padding_core(plan.pads)
    return _padded(be, plan, winograd.correlate)


def _winograd_input_core(be, plan: InputGradPlan, fallback):
    """``grad_output`` read in place with its zero padding (stride 1); ``fallback`` where
    a value is not finite."""
    from fastconv.cpu.grad import input_winograd

    shape, dst, groups = plan.spread_shape, plan.spread_dst, plan.groups
    pads, mode = plan.pads, plan.padding_mode

    def core(g, w, bias, out):
        if input_winograd(g, w, bias, out, shape, dst, groups):
            return out if mode == "zeros" else be.unpad(out, pads, mode)
        return fallback(g, w, bias, out)

    return core


def _winograd_weight_core(be, plan: ConvPlan, fallback):
    """F(3x3, m x m) (``fastconv.cpu.winograd_weight``), zero padding read in place; the
    direct kernel where a value is not finite (its NaN/Inf pattern)."""
    from fastconv.cpu.grad import weight_direct, weight_winograd

    pads, mode, stride, dilation, groups = (plan.pads, plan.padding_mode, plan.stride,
                                            plan.dilation, plan.groups)
    zeros = mode == "zeros"
    before = (pads[1][0], pads[2][0]) if zeros else (0, 0)

    def core(x, g, gw):
        xp = x if zeros else be.pad(x, pads, mode)
        if not weight_winograd(xp, g, gw, groups, before):
            weight_direct(be.pad(x, pads, mode) if zeros else xp, g, gw, stride, dilation,
                          groups)

    return core


register(Algorithm(
    "winograd", "F(4x4, 3x3) / F(2x2, 3x3) as BLAS products (fastconv.cpu.winograd; the "
    "weight gradient: fastconv.cpu.winograd_weight)", OPS, _winograd_applies,
    _winograd_regime, _winograd_cost, {"cpu": _winograd_core}, strict=True,
    grad_cores={"input_grad": {"cpu": _winograd_input_core},
                "weight_grad": {"cpu": _winograd_weight_core}}))


# direct_vec --------------------------------------------------------------------------------


def _direct_vec_plane(p: Problem) -> bool:
    """Whether direct_vec runs its one-vector form (``microkernel.plane_form``)."""
    from fastconv.cpu.microkernel import plane_form

    return plane_form(p.Kg, p.itemsize or 4, int(p.out_spatial[1]) * int(p.out_spatial[2]))


def _direct_vec_block(p: Problem) -> int:
    """Output channels per block: one vector in the one-vector form, else KB."""
    from fastconv.cpu.microkernel import LANES32, LANES64, channel_block

    if _direct_vec_plane(p):
        return LANES64 if p.itemsize == 8 else LANES32
    return channel_block(p.itemsize or 4)


def _direct_vec_regime(p: Problem) -> str | None:
    if p.Cg * p.taps < DIRECT_VEC_MIN_R:  # (the shape-only rules first: no kernel import)
        return f"Cg*taps = {p.Cg * p.taps} < DIRECT_VEC_MIN_R={DIRECT_VEC_MIN_R}"
    if p.macs < GEMM_MIN_MACS:
        return f"{p.macs} multiply-adds < GEMM_MIN_MACS={GEMM_MIN_MACS}"
    if p.op == "weight_grad" and not _direct_vec_plane(p):
        return "weight gradient: one-vector form only (Kg <= one vector, small planes)"
    if _direct_vec_plane(p):
        if p.Cg > DIRECT_VEC_PLANE_MAX_CG:
            return (f"Cg = {p.Cg} input channels per group > DIRECT_VEC_PLANE_MAX_CG="
                    f"{DIRECT_VEC_PLANE_MAX_CG} (one-vector form)")
    elif p.Cg > DIRECT_VEC_MAX_CG:
        return f"Cg = {p.Cg} input channels per group > DIRECT_VEC_MAX_CG={DIRECT_VEC_MAX_CG}"
    kb = _direct_vec_block(p)
    if 2 * p.Kg < kb:
        return f"Kg = {p.Kg} output channels per group < half a vector block ({kb})"
    if _fft_regime(p) is None:
        return "large kernel on few channels (the FFT's regime)"
    return None


def _direct_vec_cost(p: Problem) -> float:
    kb = _direct_vec_block(p)
    used = p.Kg / (-(-p.Kg // kb) * kb)  # the block's channels past Kg are computed too
    return p.macs / (RATE_DIRECT_VEC * used)


def _direct_vec_core(be, plan: ConvPlan):
    from fastconv.cpu import microkernel

    return microkernel.padding_core(plan.pads, plan.padding_mode)  # reads x in place


def _direct_vec_weight_core(be, plan: ConvPlan, fallback):
    """The one-vector weight gradient (``fastconv.cpu.microkernel.weight_gradient``), the
    padding read in place; the direct kernel where it does not apply (an explicit
    ``algorithm=``: more than one vector of output channels)."""
    from fastconv.cpu.microkernel import weight_gradient

    if not _direct_vec_plane(forward_problem(plan, "weight_grad")):
        return _direct_weight_core(be, plan, fallback)
    pads, mode, stride, dilation, groups = (plan.pads, plan.padding_mode, plan.stride,
                                            plan.dilation, plan.groups)

    def core(x, g, gw):
        weight_gradient(x, g, gw, stride, dilation, groups, pads, mode)

    return core


register(Algorithm(
    "direct_vec", "output-channel-vectorised direct kernel on explicit SIMD vectors "
    "(fastconv.cpu.microkernel)", ("forward", "weight_grad"), _always, _direct_vec_regime,
    _direct_vec_cost, {"cpu": _direct_vec_core},
    grad_cores={"weight_grad": {"cpu": _direct_vec_weight_core}}))


# direct_wide -------------------------------------------------------------------------------


def _direct_wide_regime(p: Problem) -> str | None:
    if not p.in_place:
        return "needs grad_output read in place (forward stride 1, nothing cropped)"
    if p.Cg * p.taps < DIRECT_VEC_MIN_R:  # (the shape-only rules first: no kernel import)
        return f"Cg*taps = {p.Cg * p.taps} < DIRECT_VEC_MIN_R={DIRECT_VEC_MIN_R}"
    if p.macs < GEMM_MIN_MACS:
        return f"{p.macs} multiply-adds < GEMM_MIN_MACS={GEMM_MIN_MACS}"
    from fastconv.cpu.microkernel import WC

    if p.Kg > WC:
        return f"Kg = {p.Kg} output channels per group > one block of {WC}"
    from fastconv.cpu.microkernel import PLANE_MAX_PIXELS

    if math.prod(p.out_spatial[1:]) > PLANE_MAX_PIXELS:  # a task's slab: its whole planes
        return f"{math.prod(p.out_spatial[1:])} output pixels per plane > {PLANE_MAX_PIXELS}"
    return None


def _direct_wide_cost(p: Problem) -> float:
    """The direct_vec rate on the lanes that hold outputs: ``Kg`` of the block's ``WC``
    channels, ``OW`` of each wide row (``OW + (KW - 1) * dilation``), whole blocks of
    ``WQ`` vectors per plane."""
    from fastconv.cpu.microkernel import LANES32, LANES64, WC, WQ

    span = WQ * (LANES64 if p.itemsize == 8 else LANES32)
    OH, OW = int(p.out_spatial[1]), int(p.out_spatial[2])
    width = OW + (int(p.w_shape[4]) - 1) * int(p.dilation[2])
    used = p.Kg / WC * OH * OW / (-(-((OH - 1) * width + OW) // span) * span)
    return p.macs / (RATE_DIRECT_VEC * used)


def _direct_wide_input_core(be, plan: InputGradPlan, fallback):
    """``grad_output`` read in place with its zero padding (stride 1) by the wide-row
    kernel (``fastconv.cpu.microkernel.correlate_wide``); folded for a non-zero mode."""
    from fastconv.cpu.grad import _transposed_weight
    from fastconv.cpu.microkernel import correlate_wide

    pads = tuple((d[0], n - d[1]) for d, n in zip(plan.spread_dst, plan.spread_shape[2:],
                                                  strict=True))
    dilation, groups = plan.dilation, plan.groups

    def run(g, w, bias, out):
        correlate_wide(g, _transposed_weight(w, groups), bias, out, dilation, groups, pads)

    return _folded(be, plan, run)


register(Algorithm(
    "direct_wide", "direct kernel with output pixels in the SIMD lanes, for few output "
    "channels (fastconv.cpu.microkernel.correlate_wide; input gradients)", ("input_grad",),
    _always, _direct_wide_regime, _direct_wide_cost, {}, explicit=False,
    grad_cores={"input_grad": {"cpu": _direct_wide_input_core}}))


# separable ---------------------------------------------------------------------------------


def _separable_applies(p: Problem) -> str | None:
    _, _, KD, KH, KW = p.w_shape
    if p.nspatial != 2 or KH < 2 or KW < 2:
        return "needs a 2-D kernel of at least 2x2"
    return None


def _separable_regime(p: Problem) -> str | None:
    if p.taps < SEP_MIN_TAPS:
        return f"kernel has {p.taps} taps < SEP_MIN_TAPS={SEP_MIN_TAPS}"
    if p.Kg * p.Cg > FFT_MAX_CHANNEL_PAIRS:
        return f"Kg*Cg = {p.Kg * p.Cg} > FFT_MAX_CHANNEL_PAIRS={FFT_MAX_CHANNEL_PAIRS}"
    if getattr(_LOCAL, "no_separable", False):
        return "off inside direct_sums() (the SciPy drop-ins)"
    return None


def _separable_cost(p: Problem) -> float:
    KH, KW = int(p.w_shape[3]), int(p.w_shape[4])
    return p.N * p.groups * p.Kg * p.Cg * math.prod(p.out_spatial) * (KH + KW) / RATE_DIRECT


def _separable_core(be, plan: ConvPlan, fallback):
    """The two 1-D passes, reading the padding in place, when every 2-D kernel of the
    weight has rank 1 (checked when it runs), else ``fallback``."""
    from fastconv.cpu.separable import rank1_factors, separable

    pads, mode = plan.pads, plan.padding_mode

    def core(x, w, bias, out, stride, dilation, groups):
        factors = rank1_factors(w[:, :, 0], out.dtype)
        if factors is None:
            return fallback(x, w, bias, out, stride, dilation, groups)
        separable(x, factors[0], factors[1], bias, out, stride, dilation, groups, pads, mode)

    return core


register(Algorithm(
    "separable", "a column pass and a row pass for rank-1 kernels (fastconv.cpu.separable)",
    ("forward",), _separable_applies, _separable_regime, _separable_cost,
    {"cpu": _separable_core}, explicit=False, conditional=True))


# --- selection -----------------------------------------------------------------------------


def candidates(p: Problem, device: str = "cpu", all_costs: bool = True):
    """Every entry serving ``p.op`` on ``device``, with its cost and why "auto" would not
    take it (None: in the running): ``[(entry, cost, reason)]``, cheapest first.
    ``all_costs=False`` (the selection) leaves the cost of an entry out of the running
    as ``inf``: some costs read constants of their kernel module, and importing a kernel
    module only to cost an entry that cannot run delays a fresh process's first call."""
    rows = []
    for e in REGISTRY.values():
        if p.op not in e.ops or device not in _factories(e, p.op):
            continue
        reason = e.applies(p) or e.regime(p)
        rows.append((e, e.cost(p) if all_costs or reason is None else math.inf, reason))
    rows.sort(key=lambda r: r[1])
    return rows


def auto(p: Problem, device: str = "cpu", conditional: bool = True) -> tuple:
    """What "auto" runs: ``(entry, fallback)``; ``fallback`` is the cheapest unconditional
    entry in its regime, ``entry`` a conditional one tried first (or ``fallback``)."""
    rows = [r for r in candidates(p, device, all_costs=False) if r[2] is None]
    fallback = next(e for e, _, _ in rows if not e.conditional)
    if conditional:
        for e, _, _ in rows:
            if e.conditional:
                return e, fallback
    return fallback, fallback


def select(p: Problem, device: str, algorithm: str) -> Algorithm:
    """The entry ``algorithm=`` names (on a device without it, or for a gradient where it
    does not apply: the direct kernel), or for "auto" the cheapest in its regime
    (conditional entries aside)."""
    if algorithm == "auto":
        return auto(p, device, conditional=False)[0]
    e = REGISTRY[algorithm]
    if device not in _factories(e, p.op) or (p.op != "forward" and e.applies(p) is not None):
        return REGISTRY["direct"]
    return e


def choose(plan: ConvPlan) -> str:
    """The algorithm ``"auto"`` runs for a validated plan (the separable path aside).

    Examples
    --------
    >>> from fastconv._plan import plan_conv
    >>> import numpy as np
    >>> x, w = np.zeros((8, 64, 56, 56)), np.zeros((64, 64, 3, 3))
    >>> choose(plan_conv("conv2d", 2, x, w, None, 1, 1, 1, 1, "zeros"))
    'winograd'
    """
    return auto(forward_problem(plan), "cpu", conditional=False)[0].name


def choose_for(N: int, w_shape: tuple, out_spatial: tuple, stride: tuple, groups: int) -> str:
    """The rule of :func:`choose` from the shapes of a correlation (Winograd and the
    small-image form aside): ``N`` images, weight ``(K, Cg, KD, KH, KW)``, output spatial
    shape, per-axis stride, groups."""
    p = Problem("forward", N, tuple(w_shape), tuple(out_spatial), tuple(stride), (1, 1, 1),
                groups)
    for name in ("fft", "gemm"):
        if REGISTRY[name].regime(p) is None:
            return name
    return "direct"


def winograd_wins(N: int, w_shape: tuple, out_spatial: tuple, stride: tuple, dilation: tuple,
                  groups: int) -> bool:
    """Whether "auto" runs the Winograd algorithm (the rule in the module doc)."""
    p = Problem("forward", N, tuple(w_shape), tuple(out_spatial), tuple(stride),
                tuple(dilation), groups)
    e = REGISTRY["winograd"]
    return e.applies(p) is None and e.regime(p) is None


def winograd_weight_wins(N: int, w_shape: tuple, out_spatial: tuple, stride: tuple,
                         dilation: tuple, groups: int) -> bool:
    """Whether "auto" runs the Winograd weight gradient (``fastconv.cpu.winograd_weight``)
    of ``N`` images, weight ``(K, Cg, KD, KH, KW)`` and output spatial shape ``out_spatial``:
    where the rule picks "gemm", a 2-D 3x3 kernel at stride 1 and dilation 1, at least
    ``WINOGRAD_MIN_CHANNELS`` channels per group on both sides, ``WINOGRAD_MIN_MACS`` of
    work and ``WINOGRAD_MIN_TILES`` tiles in the batch."""
    p = Problem("weight_grad", N, tuple(w_shape), tuple(out_spatial), tuple(stride),
                tuple(dilation), groups)
    e = REGISTRY["winograd"]
    return e.applies(p) is None and e.regime(p) is None


def check_winograd(func: str, w_shape: tuple, out_spatial: tuple, stride: tuple,
                   dilation: tuple, groups: int, nspatial: int) -> None:
    """ValueError naming ``func`` when ``algorithm="winograd"`` cannot run this correlation
    (``w_shape`` is 5-D; the message shows the caller's ``nspatial`` kernel axes)."""
    reason = winograd_reason(w_shape, out_spatial, stride, dilation, groups)
    if reason is not None:
        shape = tuple(int(v) for v in w_shape[:2] + tuple(w_shape[5 - nspatial :]))
        raise ValueError(f"{func}: algorithm='winograd' {reason} (weight.shape={shape}, "
                         f"groups={groups})")


def check_winograd_input(func: str, plan: InputGradPlan) -> None:
    """ValueError when ``algorithm="winograd"`` cannot run this input gradient (the
    stride-1 correlation of ``grad_output`` with the flipped, transposed weight)."""
    p = input_grad_problem(plan)
    stride = tuple(d[2] for d in plan.spread_dst)
    if any(s != 1 for s in stride):
        raise ValueError(f"{func}: algorithm='winograd' needs stride 1, got stride "
                         f"{stride[3 - plan.nspatial:]}")
    check_winograd(func, p.w_shape, p.out_spatial, stride, plan.dilation, plan.groups,
                   plan.nspatial)


def correlation_core(backend_name: str, be, algorithm: str, plan: ConvPlan):
    """The core that runs ``plan`` with ``algorithm`` ("auto" resolved by the registry)
    on backend ``be`` (module doc: it takes the unpadded input)."""
    key = (id(plan), backend_name, algorithm, getattr(_LOCAL, "no_separable", False))
    hit = _CORES.get(key)
    if hit is not None and hit[0] is plan and hit[1] is be:
        return hit[2]
    core = _build_core(backend_name, be, algorithm, plan)
    if len(_CORES) >= _CORES_MAX:
        _CORES.clear()
    _CORES[key] = (plan, be, core)
    return core


def grad_core(backend_name: str, be, algorithm: str, plan, op: str):
    """The core that runs a gradient ``op`` ("input_grad": ``plan`` an InputGradPlan;
    "weight_grad": the forward's ConvPlan) with ``algorithm`` on backend ``be`` ("Gradient
    cores" above). "auto": the cheapest entry in its regime, falling back (NaN/Inf) to the
    next cheapest; an explicit algorithm falls back to "direct"."""
    key = (plan, backend_name, algorithm, op)  # by value: a gradient's plan may be new
    hit = _CORES.get(key)
    if hit is not None and hit[1] is be:
        return hit[2]
    core = _build_grad_core(backend_name, be, algorithm, plan, op)
    if len(_CORES) >= _CORES_MAX:
        _CORES.clear()
    _CORES[key] = (plan, be, core)
    return core


def _build_grad_core(backend_name: str, be, algorithm: str, plan, op: str):
    p = input_grad_problem(plan) if op == "input_grad" else forward_problem(plan, op)
    if algorithm == "auto":
        chain = [e for e, _, reason in candidates(p, backend_name, all_costs=False)
                 if reason is None]
    else:
        chain = [select(p, backend_name, algorithm)]
        if chain[0].name != "direct":
            chain.append(REGISTRY["direct"])
    core = None
    for e in reversed(chain):  # each core gets the next one as its fallback
        core = e.grad_cores[op][backend_name](be, plan, core)
    return core


def backend_input_grad(be, backend_name: str, g, w, bias, out, spread_shape, spread_src,
                       spread_dst, dilation, groups, pads, mode, algorithm):
    """A backend's ``correlate_input`` (the contract's arguments) through the registry."""
    pads = tuple((int(b), int(a)) for b, a in pads)
    padded = tuple(out.shape)
    inner = padded[2:] if mode == "zeros" else tuple(
        n - b - a for n, (b, a) in zip(padded[2:], pads, strict=True))
    plan = InputGradPlan(
        func="correlate_input", nspatial=3, g_shape=tuple(g.shape), w_shape=tuple(w.shape),
        out_shape=padded[:2] + inner, spread_shape=tuple(spread_shape),
        spread_src=tuple(tuple(v) for v in spread_src),
        spread_dst=tuple(tuple(v) for v in spread_dst), padded_shape=padded,
        dilation=tuple(int(v) for v in dilation), pads=pads, groups=int(groups),
        padding_mode=mode, dtype=np.dtype(out.dtype), unbatched=False)
    return _build_grad_core(backend_name, be, algorithm, plan, "input_grad")(g, w, bias, out)


def backend_weight_grad(be, backend_name: str, xp, g, gw, stride, dilation, groups, algorithm,
                        pads):
    """A backend's ``correlate_weight`` (the contract's arguments: ``pads`` None for a
    padded ``xp``, else its zero padding) through the registry."""
    pads = ((0, 0),) * 3 if pads is None else tuple((int(b), int(a)) for b, a in pads)
    plan = ConvPlan(
        func="correlate_weight", nspatial=3, x_shape=tuple(xp.shape), w_shape=tuple(gw.shape),
        out_shape=tuple(g.shape), stride=tuple(int(v) for v in stride),
        dilation=tuple(int(v) for v in dilation), pads=pads, groups=int(groups),
        padding_mode="zeros", dtype=np.dtype(gw.dtype), unbatched=False)
    _build_grad_core(backend_name, be, algorithm, plan, "weight_grad")(xp, g, gw)
    return gw


def _build_core(backend_name: str, be, algorithm: str, plan: ConvPlan):
    p = forward_problem(plan)
    if algorithm != "auto":
        if REGISTRY[algorithm].strict:  # checked on every device
            reason = REGISTRY[algorithm].applies(p)
            if reason is not None:
                shape = plan.w_shape[:2] + plan.w_shape[5 - plan.nspatial :]
                raise ValueError(f"{plan.func}: algorithm={algorithm!r} {reason} "
                                 f"(weight.shape={shape}, groups={plan.groups})")
        return select(p, backend_name, algorithm).cores[backend_name](be, plan)
    entry, fallback = auto(p, backend_name)
    core = fallback.cores[backend_name](be, plan)
    if entry is not fallback:
        return entry.cores[backend_name](be, plan, core)
    return core


# --- explain -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    """What :func:`explain` returns: the op, the device, the algorithm asked for and the
    one that runs, and every candidate as ``(name, seconds, reason)`` (reason None: in
    the running for "auto")."""

    op: str
    device: str
    requested: str
    chosen: str
    why: str
    problem: Problem | None
    rows: tuple

    def __str__(self) -> str:
        lines = [f"{self.op} on {self.device}: algorithm={self.requested!r} runs "
                 f"{self.chosen!r}", f"  why: {self.why}"]
        if self.problem is not None:
            p = self.problem
            lines.append(f"  correlation: N={p.N}, weight {tuple(p.w_shape)}, output "
                         f"{tuple(p.out_spatial)}, stride {tuple(p.stride)}, groups {p.groups}, "
                         f"{p.macs} multiply-adds")
        if self.rows:
            width = max(len(r[0]) for r in self.rows)
            lines.append(f"  {'algorithm':<{width}}  {'est. time':>10}  considered by auto?")
            for name, secs, reason in self.rows:
                mark = "*" if name == self.chosen else " "
                lines.append(f"{mark} {name:<{width}}  {_seconds(secs):>10}  "
                             f"{'yes' if reason is None else 'no: ' + reason}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython
        printer.text(str(self))


def _seconds(s: float) -> str:
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"


def explain_problem(op: str, device: str, requested: str, p: Problem,
                    conditional: bool = True) -> Explanation:
    """An :class:`Explanation` of the correlation ``p`` with ``algorithm=requested``."""
    rows = candidates(p, device)
    table = tuple((e.name, cost, reason) for e, cost, reason in rows)
    if requested == "auto":
        entry, fallback = auto(p, device, conditional)
        if entry is not fallback:
            chosen = entry.name
            why = (f"{entry.name} is tried first (its regime holds; it runs if every 2-D "
                   f"kernel has rank 1), else {fallback.name}, the cheapest other in its regime")
        else:
            chosen = entry.name
            why = f"{entry.name} is the cheapest algorithm in its regime"
    else:
        chosen = select(p, device, requested).name
        entry = REGISTRY[requested]
        if chosen == requested:
            why = "requested explicitly"
        elif device not in _factories(entry, p.op):
            why = f"{requested!r} is not available on {device}; the {chosen} kernel runs"
        else:
            why = f"{requested!r} {entry.applies(p)}; the {chosen} kernel runs"
    return Explanation(op, device, requested, chosen, why, p, table)
