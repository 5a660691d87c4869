"""Numba options and tunables.

``fastmath`` leaves out ``nnan``/``ninf`` so NaN and Inf propagate exactly as in NumPy:
only reassociation/contraction flags are enabled, which lets LLVM vectorize reductions
and use FMA.

The tunables read by Python code live here (each module imports its own under its old
name). Three groups stay beside their code, on purpose:

- **Read inside compiled kernels**, where Numba freezes a global's value at compile time
  and its on-disk cache is keyed by the kernel's own source file, so a value edited here
  would be served stale from the cache: ``fastconv.cpu.conv`` (``COLUMN_CHUNK``,
  ``PLANE_TASKS``), ``fastconv.cpu.pool`` and ``fastconv.cpu.separable``
  (``PLANE_TASKS``), ``fastconv.cpu.lines`` (``COLUMN_CHUNK``), ``fastconv.cpu.adaptive``
  (``CHUNK_TASKS``). (``CHANNEL_BLOCK`` below is read by ``fastconv.cpu.conv``'s kernels
  too: after editing it, clear the Numba cache, ``make clean``.)
- **The algorithm choice**: the registry's constants in ``fastconv._algorithms`` (rates,
  crossovers), the Winograd shape rules in ``fastconv.cpu.rules`` (``MIN_CHANNELS``,
  ``MIN_R``, ``FUSED_MIN_IMAGE_TILES``), the Winograd block sizes in
  ``fastconv.cpu.winograd`` (``U_CACHE_BYTES``, ``MIN_BLOCKS``, ``STAGED_TILES``),
  ``fastconv.cpu.winograd_weight``
  (``FUSED_MAX_ACC_BYTES``, ``STAGED_TILES``, ``STAGED_BLOCK_TILES``) and the task split
  of ``fastconv.cpu.winograd_w`` (``ROW_COLUMNS``, ``MIN_TASKS``), tuned together with
  those rules.
- ``fastconv.cpu.grad.WEIGHT_PARTS`` (the fixed split that makes the GEMM weight gradient
  thread-count independent), ``fastconv.ndimage.FFT_MIN_TAPS`` and the CUDA launch shape
  ``fastconv.cuda.THREADS`` (which the simulator tests shrink).
"""

from __future__ import annotations

import os

#: fastmath flags for the compiled cores (never 'nnan'/'ninf': NaN/Inf must propagate).
FASTMATH = set({"contract", "reassoc", "nsz", "arcp"})

#: Options shared by every parallel CPU core.
JIT_PARALLEL = dict(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)
#: Options for small serial helpers (inlined into the parallel cores).
JIT_SERIAL = dict(cache=True, fastmath=FASTMATH, nogil=True)
#: For kernels whose sums must keep their written order bit for bit (no reassociation).
JIT_ORDERED = dict(cache=True, nogil=True)

#: Output channels computed together by one task of the direct correlation kernel.
CHANNEL_BLOCK = 4

#: Most bytes of the ``im2col`` buffer of the GEMM algorithm (images are batched up to it).
GEMM_COL_BYTES = 16 << 20

#: Output bytes of one column chunk of the shifted GEMM (kept in L2 across the taps).
GEMM_CHUNK_BYTES = 256 << 10

#: Bytes of one task's ``im2col`` chunk (strided layers); larger chunks make fatter products.
GEMM_COL_CHUNK_BYTES = 1 << 20

#: Bytes of one Winograd block's transformed input and products (``V`` and ``M``): W3
#: (64 channels) measured faster with whole 196-tile images (products at 97 GF/s, 1 thread)
#: than with 98-tile halves (74 GF/s) that fit the 2 MiB L2 better.
WINOGRAD_BLOCK_BYTES = 4 << 20

#: Fewest input channels per group for the shifted GEMM (``fastconv.cpu.gemm``): each of
#: its products reduces over ``Cg`` only, im2col's over ``Cg * taps``. Measured (8 images,
#: 3x3, 64 outputs): im2col is 1.5x faster at Cg=3, equal at Cg=16, slower from Cg=32
#: (W3, Cg=64: 1.2x).
GEMM_SHIFTED_MIN_CG = 32

#: Fewest output columns of one GEMM chunk (narrower products lose more to BLAS packing
#: than they gain from the L2 cache).
GEMM_MIN_CHUNK_COLUMNS = 256

#: Most elements of one FFT tile (``fastconv.cpu.fft``; float32: 256 KiB); a 2-D tile is
#: at most 256x256.
FFT_TILE_ELEMENTS = 1 << 16

#: ``fastconv.signal``'s ``method="auto"`` uses the FFT from this many elements in the
#: smaller input (the engine's direct/FFT crossover, ``fastconv._algorithms.FFT_MIN_TAPS``).
SIGNAL_FFT_MIN_TAPS = 400

#: ``learn_kernel``: below this many multiply-adds per epoch the forward runs on the
#: calling thread (its serial twin; waking the thread pool costs more than the
#: arithmetic). Numba's thread count is never changed; results are identical either way.
LEARN_SERIAL_BELOW = 1 << 18

#: CUDA weight gradient (``fastconv.cuda.grad``): output positions summed by one thread of
#: pass 1 (at least; grown so that no weight element has more than
#: ``CUDA_MAX_PARTIALS`` partial sums).
CUDA_WEIGHT_CHUNK = 256
CUDA_MAX_PARTIALS = 1024

#: Environment variable that sends NumPy inputs to the GPU ("cuda") or keeps them on the CPU.
DEVICE_ENV = "FASTCONV_DEVICE"


def env_device() -> str | None:
    """The device named by ``FASTCONV_DEVICE``, or None."""
    value = os.environ.get(DEVICE_ENV, "").strip().lower()
    return value or None
