"""The CUDA backend against the CPU backend, on tiny shapes.

Runs under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` set before Numba is
imported: ``make test``'s second pass) or on a real GPU; skipped otherwise. Threads per
block are patched small so multi-block grids and out-of-range threads run.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv as fc
from fastconv import _dispatch
from fastconv.conv import convolve2d_nchw

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "") == "1"
USABLE = SIMULATOR or _dispatch.cuda_available()

pytestmark = [
    pytest.mark.cudasim,
    pytest.mark.skipif(
        not USABLE,
        reason="no CUDA GPU; run with NUMBA_ENABLE_CUDASIM=1 (make test's simulator pass)",
    ),
]

TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Tiny blocks, unless ``FASTCONV_TEST_KEEP_THREADS=1``: ``bench/gpu_check.py`` runs
    this file on a real GPU with the package's block shape, as users get it."""
    import fastconv.cuda

    if os.environ.get("FASTCONV_TEST_KEEP_THREADS") != "1":
        monkeypatch.setattr(fastconv.cuda, "THREADS", (2, 2))


def rand(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def both(op, *args, **kwargs):
    """(CPU result, CUDA result as NumPy) of one call."""
    cpu = op(*args, device="cpu", **kwargs)
    gpu = op(*args, device="cuda", **kwargs)
    assert isinstance(gpu, np.ndarray)
    return cpu, gpu


CONV_CASES = [
    # (rank, x shape, weight shape, kwargs)
    (1, (2, 3, 9), (4, 3, 3), dict()),
    (1, (2, 4, 11), (6, 2, 3), dict(stride=2, padding=((1, 2),), dilation=2, groups=2)),
    (1, (1, 2, 7), (3, 2, 4), dict(padding="same", padding_mode="circular")),
    (2, (2, 3, 5, 6), (5, 3, 3, 2), dict()),
    (2, (1, 4, 6, 7), (4, 1, 3, 3), dict(groups=4, padding=1, padding_mode="reflect")),
    (2, (2, 4, 7, 6), (6, 2, 2, 3), dict(stride=(2, 1), dilation=(1, 2), groups=2,
                                        padding=((1, 0), (2, 1)), padding_mode="replicate")),
    (2, (1, 2, 5, 5), (3, 2, 3, 3), dict(padding="full")),
    (2, (1, 3, 6), (2, 1, 2, 2), dict(padding="valid")),  # unbatched (C, H, W) -> (K, H', W')
    (3, (1, 2, 3, 4, 3), (3, 2, 2, 3, 2), dict(stride=(1, 2, 1), padding=1)),
    (3, (1, 2, 3, 4, 3), (2, 1, 2, 2, 2), dict(groups=2, dilation=(1, 2, 1),
                                              padding="same", padding_mode="reflect")),
]


CONV_IDS = [f"{c[0]}d-" + "-".join(sorted(c[3])) for c in CONV_CASES]
# True convolution differs only by the device-side flip of the weight: one case per rank.
CASES = [(c, False) for c in CONV_CASES] + [(CONV_CASES[i], True) for i in (1, 5, 9)]
IDS = CONV_IDS + [f"convolve{CONV_CASES[i][0]}d" for i in (1, 5, 9)]


@pytest.mark.parametrize(("case", "flip"), CASES, ids=IDS)
def test_conv_matches_cpu(case, flip):
    rank, xs, ws, kwargs = case
    rng = np.random.default_rng(len(xs) * 100 + sum(xs))
    x, w, b = rand(rng, xs), rand(rng, ws), rand(rng, (ws[0],))
    ops = {
        (1, False): fc.conv1d, (2, False): fc.conv2d, (3, False): fc.conv3d,
        (1, True): fc.convolve1d, (2, True): convolve2d_nchw, (3, True): fc.convolve3d,
    }
    cpu, gpu = both(ops[rank, flip], x, w, b, **kwargs)
    assert gpu.shape == cpu.shape and gpu.dtype == np.float32
    np.testing.assert_allclose(gpu, cpu, **TOL[np.float32])


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_padding_mode_and_dtype(mode, dtype):
    rng = np.random.default_rng(7)
    x, w = rand(rng, (1, 2, 5, 6), dtype), rand(rng, (3, 2, 3, 3), dtype)
    cpu, gpu = both(fc.conv2d, x, w, padding=(2, 1), padding_mode=mode)
    assert gpu.dtype == dtype
    np.testing.assert_allclose(gpu, cpu, **TOL[dtype])


def test_untiled_kernel_path(monkeypatch):
    """Kernels whose input tile does not fit shared memory read global memory instead."""
    import fastconv.cuda.conv

    monkeypatch.setattr(fastconv.cuda.conv, "SHARED_BYTES", 0)
    rng = np.random.default_rng(3)
    x, w, b = rand(rng, (2, 4, 6, 5), np.float64), rand(rng, (6, 2, 3, 2), np.float64), None
    cpu, gpu = both(fc.conv2d, x, w, b, stride=2, padding=1, dilation=(2, 1), groups=2)
    np.testing.assert_allclose(gpu, cpu, **TOL[np.float64])


def test_larger_blocks_and_channel_remainder(monkeypatch):
    """K not a multiple of the channel block, blocks larger than the output."""
    import fastconv.cuda

    monkeypatch.setattr(fastconv.cuda, "THREADS", (8, 4))
    rng = np.random.default_rng(4)
    x, w, b = rand(rng, (1, 3, 4, 5)), rand(rng, (7, 3, 2, 2)), rand(rng, (7,))
    cpu, gpu = both(fc.conv2d, x, w, b, padding=1)
    np.testing.assert_allclose(gpu, cpu, **TOL[np.float32])


def test_promotes_integer_input_on_device_and_keeps_nan():
    rng = np.random.default_rng(5)
    img = rng.integers(0, 255, (1, 1, 5, 6), dtype=np.uint8)
    w = rand(rng, (1, 1, 2, 2))
    cpu, gpu = both(fc.conv2d, img, w)
    assert gpu.dtype == np.float32
    np.testing.assert_allclose(gpu, cpu, **TOL[np.float32])
    x = rand(rng, (1, 1, 4, 4))
    x[0, 0, 1, 1] = np.nan
    out = fc.conv2d(x, np.ones((1, 1, 2, 2), np.float32), device="cuda")
    assert np.isnan(out[0, 0, :2, :2]).all() and np.isfinite(out[0, 0, 2:, 2:]).all()


def test_seed_example_on_device():
    out = fc.corr2d(np.arange(9.0).reshape(3, 3), [[0.0, 1.0], [2.0, 3.0]])
    gpu = fc.conv2d(np.arange(9.0).reshape(1, 1, 3, 3), [[[[0.0, 1.0], [2.0, 3.0]]]],
                    device="cuda")
    np.testing.assert_array_equal(gpu[0, 0], [[19.0, 25.0], [37.0, 43.0]])
    np.testing.assert_array_equal(gpu[0, 0], out)


# --- pooling, forward and backward ------------------------------------------------------

POOL_CASES = [
    (1, (2, 3, 9), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (2, (1, 2, 5, 6), dict(kernel_size=2)),
    (2, (2, 2, 6, 5), dict(kernel_size=(3, 2), stride=(2, 1), padding=1, ceil_mode=True)),
    (3, (1, 2, 3, 4, 4), dict(kernel_size=2, stride=1, padding=1)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: f"{c[0]}d-" + "-".join(sorted(c[2])))
def test_max_pool_matches_cpu(case, dtype):
    from numba import cuda

    rank, xs, kwargs = case
    rng = np.random.default_rng(20 + rank)
    x = rand(rng, xs, dtype)
    x.flat[3] = np.nan  # NaN wins its windows
    x.flat[7] = x.flat[8]  # a tie: the first maximum wins
    dil = dict(dilation=2) if rank == 1 else {}
    op = getattr(fc, f"max_pool{rank}d")
    cpu, cpu_idx = op(x, return_indices=True, **kwargs, **dil)
    gpu, gpu_idx = op(x, return_indices=True, device="cuda", **kwargs, **dil)
    np.testing.assert_array_equal(gpu, cpu)
    np.testing.assert_array_equal(gpu_idx, cpu_idx)
    g = rand(rng, cpu.shape, dtype)
    back = getattr(fc.pool, f"max_pool{rank}d_backward")
    want = back(g, x, **kwargs, **dil)
    got = back(cuda.to_device(g), cuda.to_device(x), **kwargs, **dil)
    assert _dispatch.is_cuda_array(got)
    np.testing.assert_array_equal(got.copy_to_host(), want)  # same order: bit-identical


@pytest.mark.parametrize(
    "extra",
    [dict(), dict(count_include_pad=False), dict(divisor_override=5)],
    ids=["include-pad", "exclude-pad", "divisor"],
)
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: f"{c[0]}d-" + "-".join(sorted(c[2])))
def test_avg_pool_matches_cpu(case, extra):
    from numba import cuda

    rank, xs, kwargs = case
    rng = np.random.default_rng(30 + rank)
    x = rand(rng, xs, np.float64)
    op = getattr(fc, f"avg_pool{rank}d")
    cpu, gpu = both(op, x, **kwargs, **extra)
    np.testing.assert_allclose(gpu, cpu, **TOL[np.float64])
    g = rand(rng, cpu.shape, np.float64)
    back = getattr(fc.pool, f"avg_pool{rank}d_backward")
    want = back(g, x, **kwargs, **extra)
    got = back(cuda.to_device(g), cuda.to_device(x), **kwargs, **extra).copy_to_host()
    np.testing.assert_allclose(got, want, **TOL[np.float64])


# --- convolution gradients and transposed convolution -------------------------------------

GRAD_CASES = [
    (1, (2, 4, 9), (6, 2, 3), dict(stride=2, padding=1, dilation=2, groups=2)),
    (2, (1, 4, 4, 5), (4, 2, 3, 2), dict(padding=(2, 1), padding_mode="reflect", groups=2)),
    (2, (1, 2, 4, 5), (3, 2, 2, 3), dict(stride=(1, 2), padding=1, padding_mode="circular")),
    (2, (1, 3, 4, 5), (2, 3, 3, 3), dict(padding="same", padding_mode="replicate")),
    (3, (1, 2, 3, 4, 3), (2, 2, 2, 2, 2), dict(stride=(2, 1, 1), padding=1)),
]


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: f"{c[0]}d-" + "-".join(sorted(c[3])))
def test_conv_gradients_match_cpu(case, monkeypatch):
    import fastconv.cuda.grad

    monkeypatch.setattr(fastconv.cuda.grad, "WEIGHT_CHUNK", 8)  # several partial sums
    rank, xs, ws, kwargs = case
    rng = np.random.default_rng(40 + rank + len(kwargs))
    x, w = rand(rng, xs, np.float64), rand(rng, ws, np.float64)
    g = rand(rng, getattr(fc, f"conv{rank}d")(x, w, **kwargs).shape, np.float64)
    cpu, gpu = both(getattr(fc.grad, f"conv{rank}d_input"), xs, w, g, **kwargs)
    np.testing.assert_allclose(gpu, cpu, **TOL[np.float64])
    cpu, gpu = both(getattr(fc.grad, f"conv{rank}d_weight"), x, ws, g, **kwargs)
    np.testing.assert_allclose(gpu, cpu, **TOL[np.float64])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_bias_grad_matches_cpu_and_stays_on_device(dtype):
    from numba import cuda

    rng = np.random.default_rng(31)
    g = rand(rng, (3, 5, 4, 7), dtype)  # 84 positions per channel: several partial sums
    cpu, gpu = both(fc.grad.conv_bias, g)
    np.testing.assert_allclose(gpu, cpu, **TOL[dtype])
    assert gpu.dtype == dtype
    out = fc.grad.conv_bias(cuda.to_device(g[0]), batched=False)
    assert _dispatch.is_cuda_array(out) and not isinstance(out, np.ndarray)
    np.testing.assert_allclose(out.copy_to_host(), g[0].sum(axis=(1, 2)), **TOL[dtype])


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_conv_transpose_matches_cpu(rank):
    rng = np.random.default_rng(50 + rank)
    xs = (1, 4) + (3 if rank < 3 else 2,) * rank
    w, b = rand(rng, (4, 3) + (2,) * rank), rand(rng, (6,))
    op = getattr(fc, f"conv_transpose{rank}d")
    cpu, gpu = both(op, rand(rng, xs), w, b, stride=2, padding=1, output_padding=1, groups=2)
    np.testing.assert_allclose(gpu, cpu, **TOL[np.float32])


# --- the backend interface ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_pad_matches_cpu(mode):
    import fastconv.cpu
    import fastconv.cuda

    rng = np.random.default_rng(11)
    x = rand(rng, (1, 2, 3, 4, 5), np.float64)
    pads = ((1, 2), (3, 0), (2, 4)) if mode != "reflect" else ((1, 2), (3, 0), (2, 4))
    pads = pads if mode not in ("reflect", "circular") else ((1, 2), (2, 0), (3, 4))
    want = fastconv.cpu.pad(x, pads, mode, fill=-1.5)
    got = fastconv.cuda.pad(fastconv.cuda.wrap(x, "x", "t"), pads, mode, fill=-1.5)
    np.testing.assert_array_equal(got.copy_to_host(), want)


def test_asarray_casts_and_flips_on_device():
    from numba import cuda

    import fastconv.cuda as be

    rng = np.random.default_rng(12)
    h = rng.integers(-50, 50, (2, 3, 4), dtype=np.int16)
    d = cuda.to_device(h)
    flipped = be.asarray(d[:, ::-1, ::-2], np.float64)
    assert flipped.is_c_contiguous() and flipped.dtype == np.float64
    np.testing.assert_array_equal(flipped.copy_to_host(), h[:, ::-1, ::-2].astype(np.float64))
    same = be.asarray(cuda.to_device(h.astype(np.float32)), np.float32)
    assert same.dtype == np.float32
    z = be.zeros((3, 5), np.float32).copy_to_host()
    np.testing.assert_array_equal(z, np.zeros((3, 5), np.float32))


def test_wrap_rejects_complex_and_bool():
    from numba import cuda

    import fastconv.cuda as be

    with pytest.raises(TypeError, match="conv2d: x has dtype complex128"):
        be.wrap(np.zeros((2, 2), complex), "x", "conv2d")
    # bool is refused only when every input is bool (mixed with a number it is promoted)
    with pytest.raises(TypeError, match="conv2d: x and weight have dtype bool"):
        fc.conv2d(cuda.to_device(np.zeros((1, 1, 2, 2), bool)),
                  cuda.to_device(np.zeros((1, 1, 1, 1), bool)))


# --- dispatch: data follows the device ----------------------------------------------------


def test_device_array_in_device_array_out_without_host_copies(monkeypatch):
    from numba import cuda

    rng = np.random.default_rng(13)
    x, w = rand(rng, (1, 2, 5, 5)), rand(rng, (3, 2, 3, 3))
    dx, dw = cuda.to_device(x), cuda.to_device(w)

    def no_transfer(*args, **kwargs):
        raise AssertionError("host <-> device transfer during a device-array call")

    monkeypatch.setattr(cuda, "to_device", no_transfer)
    monkeypatch.setattr(type(dx), "copy_to_host", no_transfer)
    out = fc.conv2d(dx, dw, padding=1)
    monkeypatch.undo()
    assert _dispatch.is_cuda_array(out) and not isinstance(out, np.ndarray)
    np.testing.assert_allclose(out.copy_to_host(), fc.conv2d(x, w, padding=1), **TOL[np.float32])


def test_avg_pool_keeps_its_divisors_on_the_device(monkeypatch):
    """A repeated average pooling of device data makes no host copy (the divisors are
    cached on the device, for a bounded number of shapes)."""
    from numba import cuda

    import fastconv.cuda.arrays

    rng = np.random.default_rng(14)
    x, g = rand(rng, (1, 2, 5, 5)), rand(rng, (1, 2, 3, 3))
    dx, dg = cuda.to_device(x), cuda.to_device(g)
    fc.avg_pool2d(dx, 3, 2, 1)  # the first call with this shape uploads the divisors

    def no_transfer(*args, **kwargs):
        raise AssertionError("host -> device copy during a device-array call")

    monkeypatch.setattr(cuda, "to_device", no_transfer)
    out = fc.avg_pool2d(dx, 3, 2, 1)
    grad = fc.grad.avg_pool2d(dg, dx, 3, 2, 1)
    monkeypatch.undo()
    np.testing.assert_allclose(out.copy_to_host(), fc.avg_pool2d(x, 3, 2, 1), **TOL[np.float32])
    np.testing.assert_allclose(grad.copy_to_host(), fc.grad.avg_pool2d(g, x, 3, 2, 1),
                               **TOL[np.float32])
    monkeypatch.setattr(fastconv.cuda.arrays, "_CONSTANTS_KEPT", 2)
    for k in (2, 3, 4):
        fc.avg_pool2d(dx, k)
    assert len(fastconv.cuda.arrays._CONSTANTS) == 2


def _spy_on_cuda_correlate(monkeypatch):
    import fastconv.cuda

    calls = []
    real = fastconv.cuda.correlate

    def spy(*args):
        calls.append(args[0].shape)
        return real(*args)

    monkeypatch.setattr(fastconv.cuda, "correlate", spy)
    return calls


def test_numpy_in_with_device_cuda_runs_on_gpu_and_returns_numpy(monkeypatch):
    calls = _spy_on_cuda_correlate(monkeypatch)
    x = np.arange(12.0).reshape(1, 12)
    out = fc.conv1d(x, np.ones((2, 1, 2)), device="cuda")
    assert isinstance(out, np.ndarray) and out.shape == (2, 11)
    assert calls == [(1, 1, 1, 1, 12)]
    np.testing.assert_array_equal(out, fc.conv1d(x, np.ones((2, 1, 2)), device="cpu"))


def test_fastconv_device_env_sends_numpy_to_gpu(monkeypatch):
    calls = _spy_on_cuda_correlate(monkeypatch)
    monkeypatch.setenv("FASTCONV_DEVICE", "cuda")
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    out = fc.conv2d(x, np.ones((1, 1, 2, 2)))
    assert isinstance(out, np.ndarray) and len(calls) == 1
    monkeypatch.setenv("FASTCONV_DEVICE", "cpu")
    np.testing.assert_array_equal(out, fc.conv2d(x, np.ones((1, 1, 2, 2))))
    assert len(calls) == 1


def test_devices_lists_cuda():
    assert fc.devices() == ["cpu", "cuda"]


def test_device_cuda_without_gpu_raises(monkeypatch):
    monkeypatch.setattr(_dispatch, "cuda_available", lambda: False)
    assert fc.devices() == ["cpu"]
    msg = r"conv2d: device='cuda' requested but no usable CUDA GPU"
    with pytest.raises(RuntimeError, match=msg):
        fc.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), device="cuda")
    monkeypatch.setenv("FASTCONV_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="no usable CUDA GPU"):
        fc.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)))


def test_import_fastconv_does_not_import_numba_cuda():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    code = "import sys, fastconv; print('numba.cuda' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert res.stdout.strip() == "False"


# --- zero-copy interop (real GPU only) ---------------------------------------------------


def test_torch_cuda_tensor_zero_copy():
    if SIMULATOR:
        pytest.skip("needs a real GPU")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a real GPU with a CUDA build of PyTorch")
    x = torch.randn(1, 2, 6, 6, device="cuda")
    w = torch.randn(3, 2, 3, 3, device="cuda")
    out = fc.conv2d(x, w, padding=1)
    t = torch.as_tensor(out, device="cuda")
    assert t.data_ptr() == out.__cuda_array_interface__["data"][0]
    want = torch.nn.functional.conv2d(x, w, padding=1)
    torch.testing.assert_close(t, want, rtol=1e-4, atol=1e-4)


def test_cupy_in_cupy_out():
    cupy = pytest.importorskip("cupy")
    if SIMULATOR:
        pytest.skip("needs a real GPU")
    x = cupy.arange(16, dtype=cupy.float32).reshape(1, 1, 4, 4)
    out = fc.conv2d(x, cupy.ones((1, 1, 2, 2), dtype=cupy.float32))
    assert isinstance(out, cupy.ndarray)
    want = fc.conv2d(cupy.asnumpy(x), np.ones((1, 1, 2, 2), np.float32))
    np.testing.assert_array_equal(cupy.asnumpy(out), want)


def test_empty_batch_and_zero_channels_on_the_device():
    # issue 11: nothing to sum runs no kernel (a 0-block launch would fail) and gives
    # PyTorch's empty result, or the bias for zero input channels
    from numba import cuda

    d, z = cuda.to_device, np.zeros
    assert fc.conv2d(d(z((0, 3, 8, 8))), d(z((4, 3, 3, 3))), d(np.ones(4))).shape == (0, 4, 6, 6)
    y = fc.conv2d(d(z((2, 0, 8, 8))), d(z((4, 0, 3, 3))), d(np.arange(4.0))).copy_to_host()
    np.testing.assert_array_equal(y, np.broadcast_to(np.arange(4.0)[:, None, None], y.shape))
    np.testing.assert_array_equal(
        fc.conv2d(z((2, 0, 8, 8)), z((4, 0, 3, 3)), np.arange(4.0), device="cuda"), y)
    assert fc.max_pool2d(d(z((0, 3, 8, 8))), 2, return_indices=True)[1].shape == (0, 3, 4, 4)
    assert fc.grad.max_pool2d(d(z((0, 3, 4, 4))), d(z((0, 3, 8, 8))), 2).shape == (0, 3, 8, 8)
    gw = fc.grad.conv2d_weight(d(z((0, 3, 8, 8))), (4, 3, 3, 3), d(z((0, 4, 6, 6))))
    np.testing.assert_array_equal(gw.copy_to_host(), z((4, 3, 3, 3)))
    assert fc.conv_transpose2d(d(z((0, 3, 4, 4))), d(z((3, 2, 3, 3)))).shape == (0, 2, 6, 6)


# --- the fuzzer's device mode (tests/fuzz.py --device cuda) ------------------------------


def test_fuzz_device_mode_matches_and_catches_a_wrong_gpu_result(monkeypatch):
    import fuzz

    import fastconv.cuda

    counts = {}
    assert fuzz.run(3, seed=5, ops="conv_bias,avg_pool", device="cuda", use_torch=False,
                    out=None, counts=counts) == []
    assert sum(c[0] for c in counts.values()) == 3
    real = fastconv.cuda.finish

    def off_by_half(out, like):  # every GPU result (after the kernels) is 0.5 too large
        from numba import cuda

        return real(cuda.to_device(out.copy_to_host() + 0.5), like)

    monkeypatch.setattr(fastconv.cuda, "finish", off_by_half)
    failures = fuzz.run(2, seed=5, ops="conv,max_pool", device="cuda", use_torch=False,
                        out=None)
    assert len(failures) == 2
    assert all("cuda vs cpu values:" in line and "--device cuda" in line for line in failures)

# --- the pooling family: adaptive, Lp, max-unpooling, unfold/fold ----------------------


FAMILY_CASES = [
    # (rank, x shape, output size): non-dividing, larger than the input, None, global
    (1, (2, 3, 7), (3,)),
    (2, (2, 2, 5, 7), (3, 9)),
    (2, (3, 4, 5), (None, 2)),
    (3, (1, 2, 3, 4, 5), (2, 1, 3)),
    (2, (2, 3, 4, 4), 1),
]


@pytest.mark.parametrize("case", FAMILY_CASES, ids=[f"{c[0]}d-{c[2]}" for c in FAMILY_CASES])
def test_adaptive_matches_cpu(case):
    from numba import cuda

    rank, xs, out = case
    rng = np.random.default_rng(sum(xs))
    x = rand(rng, xs, np.float64)
    for kind in ("avg", "max"):
        op = getattr(fc, f"adaptive_{kind}_pool{rank}d")
        back = getattr(fc.grad, f"adaptive_{kind}_pool{rank}d")
        cpu, gpu = both(op, x, out)
        np.testing.assert_allclose(gpu, cpu, **TOL[np.float64])
        if kind == "max":
            ci = op(x, out, return_indices=True)[1]
            gi = op(x, out, return_indices=True, device="cuda")[1]
            assert isinstance(gi, np.ndarray)
            np.testing.assert_array_equal(gi, ci)
        g = rand(rng, cpu.shape, np.float64)
        want = back(g, x, out)
        got = back(cuda.to_device(g), cuda.to_device(x), out).copy_to_host()
        np.testing.assert_allclose(got, want, **TOL[np.float64])


def test_lp_unpool_fold_match_cpu():
    from numba import cuda

    rng = np.random.default_rng(7)
    x = rand(rng, (2, 2, 5, 6), np.float64)
    x[0, 0] = 0.0  # zero windows
    cpu, gpu = both(fc.lp_pool2d, x, 2, (2, 3), (2, 2), True)
    np.testing.assert_allclose(gpu, cpu, **TOL[np.float64])
    for norm in (np.inf, -np.inf):
        inf_cpu, inf_gpu = both(fc.lp_pool2d, x, norm, 2)
        np.testing.assert_array_equal(inf_gpu, inf_cpu)
        gi = np.ones(inf_cpu.shape)
        np.testing.assert_array_equal(
            fc.grad.lp_pool2d(cuda.to_device(gi), cuda.to_device(x), norm, 2).copy_to_host(),
            fc.grad.lp_pool2d(gi, x, norm, 2))
    g = rand(rng, cpu.shape, np.float64)
    got = fc.grad.lp_pool2d(cuda.to_device(g), cuda.to_device(x), 2, (2, 3), (2, 2), True)
    np.testing.assert_allclose(got.copy_to_host(), fc.grad.lp_pool2d(g, x, 2, (2, 3), (2, 2),
                                                                     True), **TOL[np.float64])
    v, idx = fc.max_pool2d(x, 2, return_indices=True)
    cpu, gpu = both(fc.max_unpool2d, v, idx, 2, output_size=(5, 6))
    np.testing.assert_array_equal(gpu, cpu)
    gu = rand(rng, cpu.shape, np.float64)
    got = fc.grad.max_unpool2d(cuda.to_device(gu), cuda.to_device(v), cuda.to_device(idx), 2,
                               output_size=(5, 6))
    np.testing.assert_array_equal(got.copy_to_host(),
                                  fc.grad.max_unpool2d(gu, v, idx, 2, output_size=(5, 6)))
    with pytest.raises(ValueError, match="invalid max index 99"):
        fc.max_unpool2d(v, np.full(idx.shape, 99), 2, device="cuda")
    cpu, gpu = both(fc.unfold, x, (2, 3), 2, 1, (2, 1))
    np.testing.assert_array_equal(gpu, cpu)
    cpu, gpu = both(fc.fold, cpu, (5, 6), (2, 3), 2, 1, (2, 1))
    np.testing.assert_allclose(gpu, cpu, **TOL[np.float64])
