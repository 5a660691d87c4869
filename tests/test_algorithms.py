"""Every algorithm computes the same correlation: each is checked against the direct
kernel, the NumPy oracle and PyTorch on seeded random configurations (all padding modes,
groups, dilation, strides, ranks), and "auto" follows the documented rule.

float32 tolerance: |got - want| <= 1e-4 * (1 + max|want|) (GEMM and FFT sum in another
order than the direct loop; FFT rounding grows with the transform size).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastconv as fc
from fastconv._algorithms import ALGORITHMS, choose
from fastconv._plan import plan_conv
from tests.conftest import requires_torch
from tests.reference import conv_nd, padding_pairs

CONVS = {1: fc.conv1d, 2: fc.conv2d, 3: fc.conv3d}
# "winograd" applies to stride-1 3x3 layers only (its own tests: tests/test_winograd.py)
ALGOS = [a for a in ALGORITHMS if a not in ("auto", "winograd")]
MODES = ["zeros", "reflect", "replicate", "circular"]
RTOL32 = 1e-4


def _config(seed: int):
    """A random small correlation: rank, shapes and every parameter, from one seed."""
    rng = np.random.default_rng(seed)
    nsp = int(rng.integers(1, 4))
    groups = int(rng.choice([1, 1, 2, 3]))
    Cg, Kg = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    N = int(rng.integers(1, 3))
    kernel = tuple(int(v) for v in rng.integers(1, 4, nsp))
    dil = tuple(int(v) for v in rng.integers(1, 3, nsp))
    mode = str(rng.choice(MODES))
    if rng.random() < 0.3:
        padding, stride = "same", (1,) * nsp
    else:
        padding = tuple(int(v) for v in rng.integers(0, 3, nsp))
        stride = tuple(int(v) for v in rng.integers(1, 3, nsp))
    pairs = padding_pairs(padding, kernel, dil)
    # big enough for every padding mode (reflect needs pad < size) and a valid output
    spatial = tuple(
        max(d * (k - 1) + 1, max(p) + 1) + int(rng.integers(0, 5 if nsp == 3 else 9))
        for k, d, p in zip(kernel, dil, pairs, strict=True)
    )
    x = rng.standard_normal((N, Cg * groups, *spatial)).astype(np.float32)
    w = rng.standard_normal((Kg * groups, Cg, *kernel)).astype(np.float32)
    b = rng.standard_normal(Kg * groups).astype(np.float32) if rng.random() < 0.7 else None
    kw = dict(stride=stride, padding=padding, dilation=dil, groups=groups, padding_mode=mode)
    return nsp, x, w, b, kw, pairs


def _close(got, want, rtol=RTOL32):
    scale = 1.0 + float(np.max(np.abs(want)))
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("seed", range(40))
def test_algorithm_matches_oracle_and_direct(algorithm, seed):
    nsp, x, w, b, kw, pairs = _config(seed)
    got = CONVS[nsp](x, w, b, algorithm=algorithm, **kw)
    direct = CONVS[nsp](x, w, b, algorithm="direct", **kw)
    want = conv_nd(x, w, b, kw["stride"], pairs, kw["dilation"], kw["groups"], kw["padding_mode"])
    assert got.dtype == np.float32
    assert got.shape == want.shape
    _close(got, want)
    _close(got, direct)


@requires_torch
@pytest.mark.torch
@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("seed", range(100, 130))
def test_algorithm_matches_torch(algorithm, seed):
    import torch
    import torch.nn.functional as F

    nsp, x, w, b, kw, pairs = _config(seed)
    tconv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nsp]
    xt = torch.from_numpy(x)
    if kw["padding_mode"] != "zeros":
        flat = tuple(v for pr in reversed(pairs) for v in pr)
        xt, padding = F.pad(xt, flat, mode=kw["padding_mode"]), 0
    else:
        padding = kw["padding"] if isinstance(kw["padding"], str) else [p[0] for p in pairs]
        if any(p0 != p1 for p0, p1 in pairs):  # "same" with an even extent: pad explicitly
            xt, padding = F.pad(xt, tuple(v for pr in reversed(pairs) for v in pr)), 0
    want = tconv(xt, torch.from_numpy(w), None if b is None else torch.from_numpy(b),
                 stride=kw["stride"], padding=padding, dilation=kw["dilation"],
                 groups=kw["groups"]).numpy()
    got = CONVS[nsp](x, w, b, algorithm=algorithm, **kw)
    _close(got, want)


@pytest.mark.parametrize("algorithm", ALGOS)
def test_float64_is_exact_to_double_rounding(algorithm):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 4, 13, 11))
    w = rng.standard_normal((6, 2, 3, 4))
    b = rng.standard_normal(6)
    got = fc.conv2d(x, w, b, padding=(1, 2), dilation=(2, 1), groups=2, algorithm=algorithm)
    want = conv_nd(x, w, b, 1, [(1, 1), (2, 2)], (2, 1), 2)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("algorithm", ALGOS)
def test_convolve_flips_for_every_algorithm(algorithm):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 12, 12)).astype(np.float32)
    w = rng.standard_normal((9, 2, 5, 5)).astype(np.float32)
    got = fc.convolve2d(x, w, padding=2, algorithm=algorithm)
    want = conv_nd(x, w[..., ::-1, ::-1], None, 1, 2)
    _close(got, want)


@pytest.mark.parametrize("algorithm", ALGOS)
def test_large_kernel_same_padding(algorithm):
    """The W8 shape in miniature: one channel, a large kernel, "same"."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 1, 64, 80)).astype(np.float32)
    w = rng.standard_normal((1, 1, 15, 15)).astype(np.float32)
    got = fc.conv2d(x, w, padding="same", algorithm=algorithm)
    _close(got, conv_nd(x, w, None, 1, padding_pairs("same", (15, 15), 1)))


@pytest.mark.parametrize("algorithm", ALGOS)
def test_nan_and_inf_propagate(algorithm):
    x = np.zeros((1, 1, 9, 9), np.float32)
    x[0, 0, 4, 4] = np.nan
    x[0, 0, 0, 8] = np.inf
    w = np.ones((8, 1, 3, 3), np.float32)
    got = fc.conv2d(x, w, algorithm=algorithm)
    assert np.isnan(got[0, :, 2:5, 2:5]).all()
    assert np.isinf(got[0, :, 0, 6]).all()
    assert np.isfinite(got[0, :, 6, 0]).all()  # fft too: no spreading over the plane


def _plan(x_shape, w_shape, stride=1, padding=0, groups=1):
    nsp = len(x_shape) - 2
    x, w = np.empty(x_shape, np.float32), np.empty(w_shape, np.float32)
    return plan_conv("conv", nsp, x, w, None, stride, padding, 1, groups, "zeros")


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "stride", "padding", "groups", "want"),
    [
        ((1, 1, 6, 8), (1, 1, 1, 2), 1, 0, 1, "direct"),  # W1: the seed's edge
        ((1, 1, 2048, 2048), (1, 1, 5, 5), 1, 2, 1, "direct"),  # W2: one channel
        ((8, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, "winograd"),  # W3
        ((8, 3, 224, 224), (64, 3, 7, 7), 2, 3, 1, "direct_vec"),  # W4
        ((8, 256, 14, 14), (256, 256, 3, 3), 1, 1, 1, "winograd"),  # W5
        ((8, 256, 28, 28), (128, 256, 1, 1), 1, 0, 1, "gemm"),  # W6: 1x1
        ((8, 128, 56, 56), (128, 1, 3, 3), 1, 1, 128, "direct"),  # W7: depthwise
        ((1, 1, 2048, 2048), (1, 1, 31, 31), 1, 15, 1, "fft"),  # W8: large kernel
        ((1, 1, 64, 64), (1, 1, 31, 31), 2, 15, 1, "direct"),  # strided: no fft
    ],
)
def test_auto_rule(x_shape, w_shape, stride, padding, groups, want):
    assert choose(_plan(x_shape, w_shape, stride, padding, groups)) == want


def test_unknown_algorithm_is_rejected():
    with pytest.raises(ValueError, match=r"conv2d: invalid algorithm 'fast', should be one of"):
        fc.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)), algorithm="fast")


@given(seed=st.integers(0, 2**31 - 1), algorithm=st.sampled_from(ALGOS))
def test_algorithms_agree_hypothesis(seed, algorithm):
    nsp, x, w, b, kw, _ = _config(seed)
    _close(CONVS[nsp](x, w, b, algorithm=algorithm, **kw),
           CONVS[nsp](x, w, b, algorithm="direct", **kw))


def test_tiny_direct_runs_serial_and_matches_the_seed():
    """W1-sized problems skip the thread pool; the seed's numbers still come out."""
    from fastconv._algorithms import correlation_core
    from fastconv.cpu import tiny as cpu_tiny

    plan = _plan((1, 1, 3, 3), (1, 1, 2, 2))  # under TINY_MAX_MACS: fastconv.cpu.tiny
    assert correlation_core("cpu", None, "auto", plan) is cpu_tiny.correlate_tiny
    got = fc.conv2d(np.arange(9.0).reshape(1, 1, 3, 3), np.arange(4.0).reshape(1, 1, 2, 2))
    np.testing.assert_array_equal(got, [[[[19.0, 25.0], [37.0, 43.0]]]])


FEW_CHANNEL_CASES = [
    # x shape, w shape, stride, padding, dilation, groups
    ((1, 1, 37, 300), (1, 1, 5, 5), 1, 2, 1, 1),  # W2-like: one plane, flat rows
    ((2, 6, 11, 13), (6, 1, 3, 3), 1, 1, 1, 6),  # depthwise "same": flat rows
    ((2, 6, 11, 13), (12, 1, 3, 3), 2, 1, 1, 6),  # multiplier 2, strided
    ((1, 4, 9, 10), (2, 2, 3, 4), 1, (3, 0), 2, 2),  # padding wider than the taps reach
    ((1, 2, 9, 600), (3, 2, 7, 7), 3, 3, 1, 1),  # rows longer than a column chunk
    ((1, 1, 5, 5), (1, 1, 3, 3), 1, 4, 1, 1),  # padding only: no interior
    ((1, 3, 6, 7, 8), (3, 1, 3, 2, 3), 1, 1, 1, 3),  # 3-D depthwise
]


@pytest.mark.parametrize("case", FEW_CHANNEL_CASES)
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_few_channel_kernel_matches_oracle(case, mode):
    """The depthwise/single-plane kernel, which reads zero padding in place."""
    x_shape, w_shape, stride, padding, dilation, groups = case
    rng = np.random.default_rng(len(x_shape) * 100 + w_shape[0])
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    nsp = len(x_shape) - 2
    pairs = padding_pairs(padding, w_shape[2:], (dilation,) * nsp)
    got = CONVS[nsp](x, w, b, stride=stride, padding=padding, dilation=dilation,
                     groups=groups, padding_mode=mode, algorithm="direct")
    _close(got, conv_nd(x, w, b, stride, pairs, dilation, groups, mode))


def test_few_channel_kernel_nan_weight_reaches_the_padded_border():
    """Zero padding read in place still multiplies the weights by the padding's zeros:
    a NaN weight makes every output NaN, as with a padded copy (and PyTorch)."""
    x = np.ones((1, 2, 40, 40), np.float32)
    w = np.ones((2, 1, 3, 3), np.float32)
    w[0, 0, 0, 0] = np.nan
    w[1, 0, 2, 2] = np.inf
    got = fc.conv2d(x, w, padding=1, groups=2, algorithm="direct")
    assert np.isnan(got[0, 0]).all()
    assert np.isinf(got[0, 1, :-1, :-1]).all()
    assert np.isnan(got[0, 1, -1]).all() and np.isnan(got[0, 1, :, -1]).all()


# --- the GEMM paths: shifted (stride 1), im2col tasks (strided), no-SciPy fallback -----

GEMM_CASES = [  # (x shape, w shape, kwargs): each exercises one branch of fastconv.cpu.gemm
    ((2, 6, 9, 11), (8, 3, 3, 2), dict(padding=(1, 2), dilation=(2, 1), groups=2)),
    ((2, 4, 5, 6, 7), (8, 4, 3, 1, 1), {}),  # 3-D, no garbage columns: written in place
    ((2, 16, 6, 7), (8, 16, 1, 1), {}),  # 1x1: in place
    ((1, 5, 4, 7, 6), (6, 5, 2, 3, 2), dict(padding=(1, 2, 0), dilation=(1, 1, 2))),  # 3-D
    ((3, 4, 40), (10, 2, 5), dict(padding=3, dilation=2, groups=2)),  # 1-D
    ((2, 6, 13, 17), (8, 3, 3, 4), dict(stride=(2, 3), padding=(1, 2), dilation=(1, 2),
                                        groups=2)),  # strided: W phases
    ((2, 3, 7, 9, 11), (4, 3, 2, 3, 3), dict(stride=(2, 1, 2), padding=1)),  # 3-D strided
    ((2, 3, 30, 30), (16, 3, 7, 7), dict(stride=2, padding=3)),  # W4 in miniature
]


@pytest.mark.parametrize("path", ["shifted", "im2col", "no-scipy"])
@pytest.mark.parametrize("small_chunks", [False, True], ids=["chunk", "tiny-chunks"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", GEMM_CASES, ids=lambda c: f"{c[0]}*{c[1]}")
def test_gemm_paths_match_direct_and_oracle(case, dtype, small_chunks, path, monkeypatch):
    """Each path of fastconv.cpu.gemm (strided cases always take im2col): the shifted
    GEMM (forced for few channels), im2col tasks, and im2col + numpy.matmul without SciPy."""
    from fastconv.cpu import blas, gemm

    monkeypatch.setattr(gemm, "SHIFTED_MIN_CG", 1 if path == "shifted" else 10**9)
    blas_ok = path != "no-scipy"

    if small_chunks:  # many column/row chunks per image, a partial last one
        monkeypatch.setattr(gemm, "GEMM_CHUNK_BYTES", 1)
        monkeypatch.setattr(gemm, "GEMM_COL_CHUNK_BYTES", 1)
        monkeypatch.setattr(gemm, "MIN_CHUNK_COLUMNS", 5)
    if not blas_ok:
        monkeypatch.setattr(blas, "available", lambda: False)
    xs, wsh, kw = case
    rng = np.random.default_rng(len(xs) * 100 + wsh[0])
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(wsh).astype(dtype)
    b = rng.standard_normal(wsh[0]).astype(dtype)
    conv = CONVS[len(xs) - 2]
    got = conv(x, w, b, algorithm="gemm", **kw)
    direct = conv(x, w, b, algorithm="direct", **kw)
    nsp = len(xs) - 2
    pairs = padding_pairs(kw.get("padding", 0), wsh[2:], kw.get("dilation", 1))
    want = conv_nd(x, w, b, kw.get("stride", (1,) * nsp), pairs, kw.get("dilation", (1,) * nsp),
                   kw.get("groups", 1))
    assert got.dtype == dtype
    rtol = RTOL32 if dtype == np.float32 else 1e-12
    _close(got, want, rtol)
    _close(got, direct, rtol)


# --- the BLAS thread limit: held only while products run, safe across Python threads ----


def _blas_threads() -> dict:
    from threadpoolctl import threadpool_info

    return {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_blas_limit_is_one_inside_tasks_and_restored_after_concurrent_calls():
    """threadpoolctl's limit is taken by the first call in flight and restored by the last:
    a call that finishes while another is still multiplying leaves the BLAS single-threaded
    for that one; afterwards every BLAS has its own setting back. Numba's thread count is
    never changed. Concurrent calls give the serial call's result bit for bit."""
    import threading

    import numba
    from threadpoolctl import threadpool_limits

    from fastconv.cpu import blas

    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 32, 12, 12)).astype(np.float32)
    w = rng.standard_normal((16, 32, 3, 3)).astype(np.float32)
    want = fc.conv2d(x, w, padding=1, algorithm="gemm")
    nthreads = numba.get_num_threads()
    original = _blas_threads()
    # set from a thread that then ends (threadpoolctl lets a live thread that holds a
    # limit block every other thread's limits)
    _on_a_thread(lambda: threadpool_limits(limits=3, user_api="blas"))
    try:
        outside = _blas_threads()
        assert outside and all(v == 3 for v in outside.values())
        inside, entered, release = [], threading.Event(), threading.Event()

        def slow_task(i):  # a call still in flight while another starts and ends
            entered.set()
            assert release.wait(60)
            inside.append(_blas_threads())

        holder = threading.Thread(target=blas.parallel, args=(slow_task, 1))
        holder.start()
        assert entered.wait(60)
        results = [None] * 4

        def call(i):
            results[i] = fc.conv2d(x, w, padding=1, algorithm="gemm")

        threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        release.set()
        holder.join()
        assert inside and all(v == 1 for v in inside[0].values())
        assert _blas_threads() == outside
        # the first call (which took the limit) ends while a second one still multiplies:
        # the limit is handed over, kept for the second, restored after it
        a_in, b_in, a_done, seen = (threading.Event(), threading.Event(), threading.Event(),
                                    [])

        def task_a(i):
            a_in.set()
            assert b_in.wait(60)

        def task_b(i):
            assert a_in.wait(60)
            b_in.set()
            assert a_done.wait(60)
            seen.append(_blas_threads())

        first = threading.Thread(target=blas.parallel, args=(task_a, 1))
        second = threading.Thread(target=blas.parallel, args=(task_b, 1))
        first.start()
        second.start()
        first.join()
        a_done.set()
        second.join()
        assert seen and all(v == 1 for v in seen[0].values())
        assert _blas_threads() == outside
        for got in results:
            np.testing.assert_array_equal(got, want)
    finally:
        _on_a_thread(lambda: [threadpool_limits(limits={p: n}) for p, n in original.items()])
    assert _blas_threads() == original
    assert numba.get_num_threads() == nthreads


def _on_a_thread(fn) -> None:
    import threading

    t = threading.Thread(target=fn)
    t.start()
    t.join()


# --- the GEMM weight gradient (chunks x taps, partial sums) and thread determinism -------

GRAD_CASES = [c for c in GEMM_CASES if "stride" not in c[2]]  # the stride-1 ones


@pytest.mark.parametrize("parts", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: f"{c[0]}*{c[1]}")
def test_gemm_weight_grad_chunks_and_parts_match_oracle(case, dtype, parts, monkeypatch):
    """The GEMM weight gradient with many column chunks per image and the (image, chunk)
    sequence split into partial sums: against the float64 NumPy oracle and direct."""
    from fastconv.cpu import gemm
    from fastconv.cpu import grad as cpu_grad
    from tests.reference import conv_weight_nd

    monkeypatch.setattr(gemm, "GEMM_CHUNK_BYTES", 1)
    monkeypatch.setattr(gemm, "MIN_CHUNK_COLUMNS", 7)
    monkeypatch.setattr(cpu_grad, "WEIGHT_PARTS", parts)
    xs, wsh, kw = case
    rng = np.random.default_rng(len(xs) * 10 + wsh[0] + parts)
    x = rng.standard_normal(xs).astype(dtype)
    nsp = len(xs) - 2
    y = CONVS[nsp](x, np.zeros(wsh, dtype), **kw)
    g = rng.standard_normal(y.shape).astype(dtype)
    weight = getattr(fc.grad, f"conv{nsp}d_weight")
    got = weight(x, wsh, g, algorithm="gemm", **kw)
    direct = weight(x, wsh, g, algorithm="direct", **kw)
    pairs = padding_pairs(kw.get("padding", 0), wsh[2:], kw.get("dilation", 1))
    want = conv_weight_nd(x, wsh, g, 1, pairs, kw.get("dilation", 1), kw.get("groups", 1))
    assert got.dtype == dtype
    rtol = RTOL32 if dtype == np.float32 else 1e-12
    _close(got, want, rtol)
    _close(got, direct, rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_gemm_path_bit_identical_for_1_and_2_threads(dtype, monkeypatch):
    """Shifted forward (chunks), 1x1 whole-image products, strided im2col tasks, input
    gradient and the weight gradient's partial sums: the same bytes run to run and on 1
    or 2 threads."""
    import numba

    from fastconv.cpu import gemm

    monkeypatch.setattr(gemm, "GEMM_CHUNK_BYTES", 1)
    monkeypatch.setattr(gemm, "GEMM_COL_CHUNK_BYTES", 1)
    monkeypatch.setattr(gemm, "MIN_CHUNK_COLUMNS", 9)
    monkeypatch.setattr(gemm, "SHIFTED_MIN_CG", 1)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4, 8, 11, 13)).astype(dtype)
    w3 = rng.standard_normal((8, 4, 3, 3)).astype(dtype)
    w1 = rng.standard_normal((16, 8, 1, 1)).astype(dtype)
    w7 = rng.standard_normal((8, 8, 5, 5)).astype(dtype)
    g = rng.standard_normal((4, 8, 11, 13)).astype(dtype)
    kw = dict(padding=1, groups=2)

    def run():
        return [a.tobytes() for a in (
            fc.conv2d(x, w3, algorithm="gemm", **kw),
            fc.conv2d(x, w1, algorithm="gemm"),
            fc.conv2d(x, w7, stride=2, padding=2, algorithm="gemm"),
            fc.grad.conv2d_input(x.shape, w3, g, algorithm="gemm", **kw),
            fc.grad.conv2d_weight(x, w3.shape, g, algorithm="gemm", **kw))]

    before = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        first, second = run(), run()
        numba.set_num_threads(1)
        single = run()
    finally:
        numba.set_num_threads(before)
    assert first == second == single


def test_gemm_rows_run_as_numba_parallel_regions(monkeypatch):
    """The GEMM paths of the bench's W6 (1x1, in place), C1 (F(4, 5) along W), C3 (F(4, 3)
    along W) rows, the padded shifted GEMM and the GEMM weight gradient run their tasks as
    Numba parallel regions, never on ``blas.parallel``'s Python threads (which did not
    scale on 2 vCPUs for calls after idle time), and give the same bytes on 1 and 2
    threads and as the float64 reference."""
    import numba

    from fastconv.cpu import blas

    def no_python_threads(task, ntasks):
        raise AssertionError("blas.parallel called")

    rng = np.random.default_rng(21)

    def r(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    x6, w6, b6 = r(3, 64, 9, 10), r(16, 64, 1, 1), r(16)
    x1, w1, b1 = r(2, 16, 1500), r(8, 16, 5), r(8)  # (output sizes past the small-image
    x3, w3 = r(1, 8, 5, 12, 21), r(8, 8, 3, 3, 3)  # path's SMALL_MAX_PIXELS)
    xp, wp = r(2, 64, 33, 35), r(8, 32, 3, 3)
    xg, gg = r(2, 32, 40, 41), r(2, 32, 40, 41)
    calls = [
        (lambda: fc.conv2d(x6, w6, b6, algorithm="gemm"), (x6, w6, b6, {})),
        (lambda: fc.conv1d(x1, w1, b1, padding=2, algorithm="gemm"),
         (x1, w1, b1, dict(padding=((2, 2),)))),
        (lambda: fc.conv3d(x3, w3, padding=1, algorithm="gemm"),
         (x3, w3, None, dict(padding=((1, 1),) * 3))),
        (lambda: fc.conv2d(xp, wp, padding=1, groups=2, algorithm="gemm"),
         (xp, wp, None, dict(padding=((1, 1),) * 2, groups=2))),
        (lambda: fc.grad.conv2d_weight(xg, (32, 32, 3, 3), gg, padding=1, algorithm="gemm"),
         None),
    ]
    monkeypatch.setattr(blas, "parallel", no_python_threads)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = [f() for f, _ in calls]
        numba.set_num_threads(1)
        one = [f() for f, _ in calls]
    finally:
        numba.set_num_threads(before)
    for a, b, (_, ref) in zip(two, one, calls, strict=True):
        assert a.tobytes() == b.tobytes()
        if ref is not None:
            x, w, bias, kw = ref
            want = conv_nd(x, w, bias, (1,) * (x.ndim - 2), kw.get("padding", ((0, 0),) * 2),
                           (1,) * (x.ndim - 2), kw.get("groups", 1))
            _close(a, want)
    gw = fc.grad.conv2d_weight(xg.astype(np.float64), (32, 32, 3, 3), gg.astype(np.float64),
                               padding=1, algorithm="direct")
    _close(two[-1], gw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_1x1_gemm_does_not_depend_on_the_blas_thread_setting(dtype):
    """A 1x1 layer is one product per image, but not a BLAS-threaded one: OpenBLAS's
    sgemm/dgemm give different bits on 1 and 2 threads for some shapes (measured with
    NumPy's OpenBLAS 0.3, SkylakeX: ``np.matmul`` of (64, 449) @ (449, 784) differs in
    float32 and float64; a sweep of 150 random sgemm shapes with K <= 1200 differed in 94),
    so fastconv multiplies single-threaded per task and the application's BLAS setting
    never changes its result."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 449, 28, 28)).astype(dtype)
    w = rng.standard_normal((64, 449, 1, 1)).astype(dtype)
    with threadpool_limits(limits=1, user_api="blas"):
        one = fc.conv2d(x, w, algorithm="gemm")
    with threadpool_limits(limits=2, user_api="blas"):
        two = fc.conv2d(x, w, algorithm="gemm")
    assert one.tobytes() == two.tobytes()
    want = np.einsum("kc,ncs->nks", w[:, :, 0, 0].astype(np.float64),
                     x.reshape(2, 449, -1).astype(np.float64)).reshape(one.shape)
    _close(one, want, RTOL32 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("batch, groups", [(4, 1), (1, 2), (3, 1)])
def test_1x1_gemm_bias_added_in_the_tasks(batch, groups, monkeypatch):
    """A 1x1 stride-1 layer multiplies straight into the output and each task adds the
    bias to its own block (whole images, or column chunks for small batches): the same
    two roundings as the product plus a separate bias pass, on 1 or 2 threads, and the
    float64 reference's values."""
    import numba

    from fastconv.cpu import gemm

    monkeypatch.setattr(gemm, "GEMM_CHUNK_BYTES", 1)
    monkeypatch.setattr(gemm, "MIN_CHUNK_COLUMNS", 9)
    rng = np.random.default_rng(12)
    x = rng.standard_normal((batch, 8, 7, 9)).astype(np.float32)
    w = rng.standard_normal((6, 8 // groups, 1, 1)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        got = fc.conv2d(x, w, b, groups=groups, algorithm="gemm")
        plain = fc.conv2d(x, w, groups=groups, algorithm="gemm")
        numba.set_num_threads(1)
        single = fc.conv2d(x, w, b, groups=groups, algorithm="gemm")
    finally:
        numba.set_num_threads(before)
    assert got.tobytes() == single.tobytes() == (plain + b[:, None, None]).tobytes()
    _close(got, fc.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                          groups=groups, algorithm="direct"))
