"""The GEMM algorithm's 1x1 form (``fastconv.cpu.gemm.shifted`` with one tap and at least
4 image-group products: one product per image and group, written in place into the
output, W6's path), both ways: OpenBLAS (``shifted_tasks``) and, for float32 on AVX-512
with ``Kg % 8 == 0`` and pixels a multiple of 16, the Numba register-block kernel
(``pointwise_rows``): against the float64 NumPy oracle, with and without bias, groups,
float32 and float64, and bit-identical for any thread count.

float32 tolerance: measured max |error| / max |y| <= 6.5e-7 on W6 (256 input channels,
random normal data) and on these layers; the tests allow 2e-6.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

import fastconv as fc
from fastconv import cpu
from fastconv.cpu import gemm
from tests.reference import conv_nd


def _close(got, want, dtype):
    tol = 1e-12 if dtype == np.float64 else 2e-6
    scale = float(np.max(np.abs(want))) or 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)


def _spy(monkeypatch):
    """Record the chunk table of each :func:`gemm.shifted_tasks` call."""
    seen = []
    real = gemm.shifted_tasks

    def spy(*args):
        seen.append(args[4].copy())  # chunks: (first pitch row, stop, args row)
        return real(*args)

    monkeypatch.setattr(gemm, "shifted_tasks", spy)
    return seen


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("groups, with_bias", [(1, False), (1, True), (2, True)])
def test_one_product_per_image_matches_oracle(monkeypatch, dtype, groups, with_bias):
    rng = np.random.default_rng(11)
    N, Cg, Kg, H, W = 4, 40, 12, 7, 9  # Cg >= GEMM_SHIFTED_MIN_CG, N * groups >= 4
    x = rng.standard_normal((N, Cg * groups, H, W)).astype(dtype)
    w = rng.standard_normal((Kg * groups, Cg, 1, 1)).astype(dtype)
    b = rng.standard_normal(Kg * groups).astype(dtype) if with_bias else None
    seen = _spy(monkeypatch)
    got = fc.conv2d(x, w, b, groups=groups, algorithm="gemm")
    assert len(seen) == 1 and seen[0].tolist() == [[0, H, 0]]  # whole images, in place
    assert got.dtype == dtype
    _close(got, conv_nd(x, w, b, groups=groups), dtype)


requires_kernel = pytest.mark.skipif(not gemm.pointwise_ok(np.float32, 8, 16),
                                     reason="the register-block kernel needs AVX-512")


@requires_kernel
@pytest.mark.parametrize("kc", [gemm.POINTWISE_KC, 16])  # one pass / passes of 16 channels
@pytest.mark.parametrize("groups, with_bias", [(1, False), (1, True), (2, True)])
def test_register_block_kernel_matches_oracle(monkeypatch, kc, groups, with_bias):
    rng = np.random.default_rng(13)
    N, Cg, Kg, H, W = 4, 40, 16, 8, 10  # 80 pixels: one 48-column block, two of 16
    x = rng.standard_normal((N, Cg * groups, H, W)).astype(np.float32)
    w = rng.standard_normal((Kg * groups, Cg, 1, 1)).astype(np.float32)
    b = rng.standard_normal(Kg * groups).astype(np.float32) if with_bias else None
    monkeypatch.setattr(gemm, "POINTWISE_KC", kc)
    seen = _spy(monkeypatch)
    got = fc.conv2d(x, w, b, groups=groups, algorithm="gemm")
    assert not seen  # not the OpenBLAS tasks
    _close(got, conv_nd(x, w, b, groups=groups), np.float32)
    assert gemm.pointwise_ok(np.float32, 16, 80) and not gemm.pointwise_ok(np.float64, 16, 80)
    assert not gemm.pointwise_ok(np.float32, 12, 80) and not gemm.pointwise_ok(np.float32, 16, 72)


@pytest.mark.parametrize("Kg, W", [(24, 11), (24, 16)])  # OpenBLAS / the kernel (AVX-512)
def test_bit_identical_for_any_thread_count(Kg, W):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((6, 64, 10, W)).astype(np.float32)
    w = rng.standard_normal((Kg, 64, 1, 1)).astype(np.float32)
    b = rng.standard_normal(Kg).astype(np.float32)
    n = numba.get_num_threads()
    runs = []
    for t in sorted({1, 2, n}):
        numba.set_num_threads(min(t, n))
        try:
            runs += [fc.conv2d(x, w, b, algorithm="gemm") for _ in range(2)]
        finally:
            numba.set_num_threads(n)
    _close(runs[0], conv_nd(x, w, b), np.float32)
    for r in runs[1:]:
        assert np.array_equal(r, runs[0])


def _nan_scratch(Cg):
    """The kernel's scratch, filled with NaN: a panel row it fails to copy shows."""
    scratch = gemm.pointwise_scratch(Cg, np.float32)
    scratch[...] = np.nan
    return scratch


@requires_kernel
@pytest.mark.parametrize("L", [16, 32, 48, 80, 144, 784])  # panels of 48 and the 16-wide rest
@pytest.mark.parametrize("kc", [gemm.POINTWISE_KC, 24])
# row blocks per panel 2 / 1 (no block left to copy the next panel) / 3; channels not a
# multiple of 16 (rows copied after the block's last 16) / a multiple
@pytest.mark.parametrize("Cg, Kg", [(56, 16), (64, 8), (40, 24), (256, 16)])
def test_packed_panels_any_split_same_bits(L, kc, Cg, Kg):
    """The kernel called directly: every split of the columns into pieces (and the
    thread count's choice, ``pointwise_pieces``) gives the same bits, matching the
    float64 oracle, with the bias added after each sum; in one pass (``kc >= Cg``) the
    panels are packed by the row blocks of the panel before (software pipelining)."""
    rng = np.random.default_rng(L)
    N, G = 3, 2
    x = rng.standard_normal((N, G, Cg, L)).astype(np.float32)
    w = rng.standard_normal((G, Kg, Cg)).astype(np.float32)
    b = rng.standard_normal((G, Kg)).astype(np.float32)
    want = np.einsum("gkc,ngcl->ngkl", w.astype(np.float64), x.astype(np.float64))
    want += b[None, :, :, None]
    runs = []
    for pieces in sorted({1, 2, 3, (L + 47) // 48, gemm.pointwise_pieces(N * G, L)}):
        out = np.full((N, G, Kg, L), np.nan, np.float32)
        gemm.pointwise_rows(w, x, out, b, True, kc, pieces, _nan_scratch(Cg), 0)
        runs.append(out)
    _close(runs[0], want, np.float32)
    for r in runs[1:]:
        assert np.array_equal(r, runs[0])
    # non-temporal stores (one pass, no bias; 16-byte aligned output as NumPy's, or
    # 64-byte aligned as fastconv's own results): the same bits
    if kc >= Cg:
        outs = [np.full((N, G, Kg, L), np.nan, np.float32) for _ in range(2)]
        buf = np.full(outs[0].size + 16, np.nan, np.float32)
        off = (-buf.ctypes.data % 64) // 4
        outs.append(buf[off : off + outs[0].size].reshape(outs[0].shape))
        for flag, out in enumerate(outs):
            assert out.ctypes.data % (64 if flag == 2 else 16) == 0
            gemm.pointwise_rows(w, x, out, b, False, kc, 2, _nan_scratch(Cg), flag)
        _close(outs[1], want - b[None, :, :, None], np.float32)
        assert np.array_equal(outs[1], outs[0])
        assert np.array_equal(outs[2], outs[0])


@pytest.mark.parametrize("shape", [(3, 5), (8, 128, 28, 28), (1, 1, 1, 1, 16385)])
def test_results_are_plain_arrays_on_whole_cache_lines(shape):
    """``cpu.empty``: large results start on a 64-byte line; every result is a
    C-contiguous, writeable array of the asked shape and dtype."""
    for dtype in (np.float32, np.float64):
        a = cpu.empty(shape, dtype)
        assert a.shape == shape and a.dtype == dtype
        assert a.flags.c_contiguous and a.flags.writeable
        if a.nbytes >= cpu.ALIGN_BYTES:
            assert a.ctypes.data % 64 == 0
    y = fc.conv2d(np.ones((8, 16, 28, 28), np.float32), np.ones((8, 16, 1, 1), np.float32))
    assert y.ctypes.data % 64 == 0 and y.flags.c_contiguous and y.flags.writeable
    y[...] = 0  # the caller owns it
