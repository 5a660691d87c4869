"""Launch helpers shared by the CUDA kernels: block/grid shapes from the package's
``THREADS`` setting, per-dtype kernel builders and a launch that keeps Numba's
low-occupancy warnings (tiny grids are normal here) out of the user's way.
"""

from __future__ import annotations

import warnings

from numba.core.errors import NumbaPerformanceWarning

#: The largest grid extent used on the z axis (CUDA allows 65535); kernels loop over the rest.
MAX_GRID_Z = 65535


def threads() -> tuple[int, int]:
    """The package-wide threads-per-block setting ``fastconv.cuda.THREADS`` (read per call,
    so tests can patch it small)."""
    from fastconv import cuda as pkg

    tx, ty = pkg.THREADS
    return int(tx), int(ty)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def grid3(nx: int, ny: int, nz: int, *, flat_rows: bool = True):
    """(blocks, threads) covering ``nx`` x ``ny`` x ``nz`` elements, x fastest.

    A block is ``THREADS = (tx, ty)`` threads; when ``ny == 1`` (1-D rows) and
    ``flat_rows`` is set, the block is reshaped to ``(tx * ty, 1)`` so no thread row idles.
    The z axis has one thread per block and at most ``MAX_GRID_Z`` blocks: kernels stride
    over ``z`` by ``gridDim.z``.
    """
    tx, ty = threads()
    if ny == 1 and flat_rows:
        tx, ty = tx * ty, 1
    blocks = (ceil_div(nx, tx), ceil_div(ny, ty), max(1, min(nz, MAX_GRID_Z)))
    return blocks, (tx, ty, 1)


def grid1(n: int):
    """(blocks, threads) for a flat launch over ``n`` elements."""
    tx, ty = threads()
    tpb = tx * ty
    return max(1, ceil_div(n, tpb)), tpb


def launch(kernel, blocks, tpb, *args, shared: int = 0) -> None:
    """``kernel[blocks, tpb, 0, shared](*args)`` without low-occupancy warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaPerformanceWarning)
        kernel[blocks, tpb, 0, shared](*args)


class PerDtype:
    """Build a kernel once per NumPy dtype: ``builder(numba_type) -> kernel``.

    Kernels that size shared or local arrays need the element type as a compile-time
    constant; this caches one compiled family per dtype (still compiled lazily).
    """

    def __init__(self, builder):
        self.builder = builder
        self.kernels = {}

    def __getitem__(self, dtype):
        from numba import from_dtype

        key = str(dtype)
        if key not in self.kernels:
            self.kernels[key] = self.builder(from_dtype(dtype))
        return self.kernels[key]
