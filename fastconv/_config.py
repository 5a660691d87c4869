"""Numba options and tunables, in one place.

``fastmath`` leaves out ``nnan``/``ninf`` so NaN and Inf propagate exactly as in NumPy:
only reassociation/contraction flags are enabled, which lets LLVM vectorize reductions
and use FMA.
"""

from __future__ import annotations

import os

#: fastmath flags for the compiled cores (never 'nnan'/'ninf': NaN/Inf must propagate).
FASTMATH = set({"contract", "reassoc", "nsz", "arcp"})

#: Options shared by every parallel CPU core.
JIT_PARALLEL = dict(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)
#: Options for small serial helpers (inlined into the parallel cores).
JIT_SERIAL = dict(cache=True, fastmath=FASTMATH, nogil=True)

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

#: Environment variable that sends NumPy inputs to the GPU ("cuda") or keeps them on the CPU.
DEVICE_ENV = "FASTCONV_DEVICE"


def env_device() -> str | None:
    """The device named by ``FASTCONV_DEVICE``, or None."""
    value = os.environ.get(DEVICE_ENV, "").strip().lower()
    return value or None
