"""``algorithm="direct_vec"`` (``fastconv.cpu.microkernel``): the explicit-vector
primitives, the output-channel-vectorised correlation against the float64 NumPy oracle
with its stated error bound, PyTorch, the direct kernel's NaN/Inf pattern, bit-identity
for any thread count, and the AVX2 code path (a subprocess without AVX-512).

Error bound (each output is one chain of ``Cg * taps`` fused multiply-adds, then the bias):
``|y - y_exact| <= (Cg*taps + 1) * u * (sum |x| |w| + |bias|)`` with ``u = 2**-24``
(float32) or ``2**-53`` (float64).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

import fastconv as fc
from fastconv.cpu import microkernel as mk
from tests.conftest import requires_torch
from tests.reference import conv_nd, padding_pairs

CONVS = {1: fc.conv1d, 2: fc.conv2d, 3: fc.conv3d}
UNIT = {np.float32: 2.0**-24, np.float64: 2.0**-53}


@njit
def _fma_lanes(a, b, c, out, prod):
    """out[i*lanes + j] = fma(a[i], b[i*lanes + j], c[i*lanes + j]); prod: a[i] * b[...]."""
    n = a.shape[0]
    lanes = out.shape[0] // n
    for i in range(n):
        mk.vstore(out, i * lanes, mk.vfma(mk.vsplat_at(a, i), mk.vload(b, i * lanes),
                                          mk.vload(c, i * lanes)))
        mk.vstore(prod, i * lanes, mk.vfma(mk.vsplat(a[i]), mk.vload(b, i * lanes),
                                           mk.vzero(a[0])))


def same_for_any_thread_count(run):
    """``run()``'s result, after checking it is bit-identical on 1 and on all threads."""
    first = run()
    before = numba.get_num_threads()
    try:
        for n in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(n)
            np.testing.assert_array_equal(run(), first)
    finally:
        numba.set_num_threads(before)
    return first


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vector_primitives_compute_one_rounded_fma_per_lane(dtype):
    lanes = mk.LANES32 if dtype == np.float32 else mk.LANES64
    rng = np.random.default_rng(0)
    a = rng.standard_normal(3).astype(dtype)
    b, c = (rng.standard_normal(3 * lanes).astype(dtype) for _ in range(2))
    out, prod = np.zeros(3 * lanes, dtype), np.zeros(3 * lanes, dtype)
    _fma_lanes(a, b, c, out, prod)
    exact = np.repeat(a, lanes).astype(np.longdouble) * b
    np.testing.assert_allclose(out, (exact + c).astype(dtype), rtol=2 * UNIT[dtype], atol=0)
    np.testing.assert_array_equal(prod, (np.repeat(a, lanes) * b))  # one rounding



@njit
def _phases(src, i, out, lin):
    """out[r] = the phase-r vector of src[i : i + 4*lanes] (vload4); lin = the 4 phases
    interleaved back (vstore4) at offset 1; and the lane-wise a + b, a - b, a * b."""
    a, b, c, d = mk.vload4(src, i)
    for r, v in enumerate((a, b, c, d)):
        mk.vstore(out[r], 0, v)
    mk.vstore4(lin, 1, a, b, c, d)
    mk.vstore(out[4], 0, mk.vadd(a, b))
    mk.vstore(out[5], 0, mk.vsub(a, b))
    mk.vstore(out[6], 0, mk.vmul(a, b))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vload4_splits_phases_and_vstore4_interleaves_them_back(dtype):
    lanes = mk.LANES32 if dtype == np.float32 else mk.LANES64
    src = np.random.default_rng(1).standard_normal(4 * lanes + 8).astype(dtype)
    out, lin = np.zeros((7, lanes), dtype), np.zeros(4 * lanes + 2, dtype)
    _phases(src, 3, out, lin)
    seg = src[3 : 3 + 4 * lanes]
    for r in range(4):
        np.testing.assert_array_equal(out[r], seg[r::4])
    np.testing.assert_array_equal(lin[1:-1], seg)
    assert lin[0] == lin[-1] == 0  # nothing written outside the 4*lanes elements
    a, b = seg[0::4], seg[1::4]
    np.testing.assert_array_equal(out[4:], [a + b, a - b, a * b])


def test_vector_width_follows_the_isa():
    assert (mk.LANES32, mk.LANES64) == ((16, 8) if mk.AVX512 else (8, 4))
    assert mk.channel_block(4) == mk.NV * mk.LANES32
    assert mk.channel_block(8) == mk.NV * mk.LANES64


def _bound(x, w, b, kw, pairs, dtype):
    """The stated error bound, elementwise (module doc)."""
    nsp = x.ndim - 2
    R = w.shape[1] * int(np.prod(w.shape[2:]))
    mag = conv_nd(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64),
                  None if b is None else np.abs(b).astype(np.float64), kw["stride"], pairs,
                  kw["dilation"], kw["groups"], kw["padding_mode"])
    assert mag.ndim == nsp + 2
    return (R + 1) * UNIT[dtype] * mag


@st.composite
def configs(draw):
    nsp = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 1, 2]))
    Cg = draw(st.integers(1, 8))  # 5-8: the one-vector form's (Kg <= one vector)
    Kg = draw(st.sampled_from([1, 5, 8, 16, 33, 64, 70]))
    N = draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 7 if nsp < 3 else 3)) for _ in range(nsp))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    dil = tuple(draw(st.integers(1, 2)) for _ in range(nsp))
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "circular"]))
    padding = tuple(draw(st.integers(0, 3)) for _ in range(nsp))
    pairs = padding_pairs(padding, kernel, dil)
    spatial = tuple(max(d * (k - 1) + 1, max(p) + 1) + draw(st.integers(0, 14 if nsp < 3 else 4))
                    for k, d, p in zip(kernel, dil, pairs, strict=True))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    x = rng.standard_normal((N, Cg * groups, *spatial)).astype(dtype)
    w = rng.standard_normal((Kg * groups, Cg, *kernel)).astype(dtype)
    b = rng.standard_normal(Kg * groups).astype(dtype) if draw(st.booleans()) else None
    kw = dict(stride=stride, padding=padding, dilation=dil, groups=groups, padding_mode=mode)
    return x, w, b, kw, pairs, dtype


@settings(max_examples=60, deadline=None)
@given(cfg=configs())
def test_direct_vec_within_its_error_bound_of_the_float64_oracle(cfg):
    x, w, b, kw, pairs, dtype = cfg
    got = CONVS[x.ndim - 2](x, w, b, algorithm="direct_vec", **kw)
    want = conv_nd(x.astype(np.float64), w.astype(np.float64),
                   None if b is None else b.astype(np.float64), kw["stride"], pairs,
                   kw["dilation"], kw["groups"], kw["padding_mode"])
    assert got.dtype == dtype and got.shape == want.shape
    err = np.abs(got.astype(np.float64) - want)
    assert np.all(err <= _bound(x, w, b, kw, pairs, dtype))


@requires_torch
@pytest.mark.torch
@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding"), [
    ((2, 3, 45, 38), (64, 3, 7, 7), 2, 3),  # W4's layer, small images
    ((1, 3, 33, 30), (32, 3, 3, 3), 2, 1),  # 3 -> 32 3x3 stride 2
    ((2, 1, 28, 28), (40, 1, 5, 5), 1, 2),
    ((64, 6, 14, 14), (16, 6, 5, 5), 1, 0),  # LeNet's conv2: the one-vector form
])
def test_direct_vec_matches_torch(x_shape, w_shape, stride, padding):
    import torch

    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    got = fc.conv2d(x, w, b, stride=stride, padding=padding, algorithm="direct_vec")
    want = torch.nn.functional.conv2d(*map(torch.from_numpy, (x, w, b)), stride=stride,
                                      padding=padding).numpy()
    R = w[0].size
    np.testing.assert_allclose(got, want, rtol=0, atol=2 * (R + 1) * UNIT[np.float32] * float(
        np.max(np.abs(want)) + 1) * 8)


def test_auto_runs_direct_vec_for_the_first_layer_of_a_cnn():
    x, w = np.zeros((8, 3, 224, 224), np.float32), np.zeros((64, 3, 7, 7), np.float32)
    assert fc.explain(fc.conv2d, x, w, stride=2, padding=3).chosen == "direct_vec"
    x, w = np.zeros((8, 64, 56, 56), np.float32), np.zeros((64, 64, 3, 3), np.float32)
    assert fc.explain(fc.conv2d, x, w, padding=1).chosen != "direct_vec"  # Cg > 4
    x, w = np.zeros((64, 6, 14, 14), np.float32), np.zeros((16, 6, 5, 5), np.float32)
    assert fc.explain(fc.conv2d, x, w).chosen == "direct_vec"  # LeNet's conv2: one vector
    x, w = np.zeros((64, 16, 14, 14), np.float32), np.zeros((16, 16, 5, 5), np.float32)
    assert fc.explain(fc.conv2d, x, w).chosen != "direct_vec"  # Cg > 8


def test_one_vector_form_bit_identical_for_any_thread_count():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((7, 6, 14, 14)).astype(np.float32)
    w = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    assert mk.plane_form(16, 4, 100)
    run = lambda: fc.conv2d(x, w, b, algorithm="direct_vec")  # noqa: E731
    same_for_any_thread_count(run)


def test_bit_identical_run_to_run_and_for_any_thread_count():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 3, 41, 37)).astype(np.float32)
    w = rng.standard_normal((70, 3, 7, 7)).astype(np.float32)
    b = rng.standard_normal(70).astype(np.float32)
    run = lambda: fc.conv2d(x, w, b, stride=2, padding=3, algorithm="direct_vec")  # noqa: E731
    first = run()
    before = numba.get_num_threads()
    try:
        results = []
        for n in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(n)
            results.append(run())
    finally:
        numba.set_num_threads(before)
    for r in results + [run()]:
        np.testing.assert_array_equal(r, first)


def test_nan_and_inf_propagate_as_in_direct():
    x = np.ones((1, 2, 16, 16), np.float32)
    x[0, 0, 4, 4] = np.nan
    x[0, 1, 0, 9] = np.inf
    w = np.ones((32, 2, 3, 3), np.float32)
    got = fc.conv2d(x, w, stride=1, padding=1, algorithm="direct_vec")
    want = fc.conv2d(x, w, stride=1, padding=1, algorithm="direct")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    assert np.isnan(got).any() and np.isinf(got).any()


def test_empty_batch_gives_an_empty_result():
    got = fc.conv2d(np.zeros((0, 3, 9, 9), np.float32), np.ones((16, 3, 3, 3), np.float32),
                    algorithm="direct_vec")
    assert got.shape == (0, 16, 7, 7)


def test_avx2_code_path_in_a_process_without_avx512(tmp_path):
    """The 256-bit kernel (6 x 2 blocks of 8 lanes) gives the same results within the
    bound: a subprocess compiles for Haswell (no AVX-512) into its own cache."""
    import llvmlite.binding as llb

    if "+avx2" not in llb.get_host_cpu_features().flatten().split(","):
        pytest.skip("the host has no AVX2")
    code = (
        "import numpy as np, fastconv as fc\n"
        "from fastconv.cpu import microkernel as mk\n"
        "from tests.reference import conv_nd\n"
        "assert not mk.AVX512 and mk.LANES32 == 8 and mk.NV == 2, (mk.AVX512, mk.LANES32)\n"
        "rng = np.random.default_rng(3)\n"
        "for dt, K in [(a, b) for a in (np.float32, np.float64) for b in (21, 8)]:\n"
        "    x = rng.standard_normal((2, 3, 30, 27)).astype(dt)\n"
        "    w = rng.standard_normal((K, 3, 5, 5)).astype(dt)  # 8: the one-vector form\n"
        "    got = fc.conv2d(x, w, stride=2, padding=2, algorithm='direct_vec')\n"
        "    want = conv_nd(x.astype(float), w.astype(float), None, (2, 2), ((2, 2), (2, 2)),"
        " (1, 1), 1, 'zeros')\n"
        "    mag = conv_nd(np.abs(x).astype(float), np.abs(w).astype(float), None, (2, 2),"
        " ((2, 2), (2, 2)), (1, 1), 1, 'zeros')\n"
        "    u = 2.0**-24 if dt == np.float32 else 2.0**-53\n"
        "    assert np.all(np.abs(got - want) <= 76 * u * mag)\n"
        "print('ok')\n"
    )
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=(
        "+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+fxsr,+lzcnt,+mmx,+movbe,"
        "+popcnt,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave"),
        NUMBA_CACHE_DIR=str(tmp_path))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


# --- the wide-row form (input gradients with few channels: "direct_wide") ---------------

WIDE_CASES = [
    # (x shape, w shape, conv kwargs): LeNet's conv2, padding modes, dilation, groups, 1-D/3-D
    ((64, 6, 14, 14), (16, 6, 5, 5), {}),
    ((3, 5, 20, 17), (12, 5, 5, 3), {"padding": 2}),
    ((2, 4, 19, 23), (16, 4, 3, 5), {"padding": 1, "padding_mode": "reflect"}),
    ((2, 3, 21, 18), (20, 3, 3, 3), {"padding": 2, "dilation": 2}),
    ((2, 8, 16, 16), (32, 4, 3, 3), {"padding": "same", "padding_mode": "circular",
                                      "groups": 2}),
    ((3, 2, 40), (64, 2, 9), {"padding": 4}),
    ((2, 3, 6, 9, 9), (16, 3, 3, 3, 3), {"padding": 1}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("x_shape", "w_shape", "kw"), WIDE_CASES)
def test_wide_input_gradient_has_the_direct_kernels_bits(x_shape, w_shape, kw, dtype):
    """Each output of the wide-row kernel is the direct kernel's FMA chain (same taps,
    same order, bias after): the same bits, whatever the padding mode, dilation, groups."""
    from fastconv import _algorithms, _dispatch
    from fastconv._plan import plan_conv_input

    n = len(x_shape) - 2
    grads = {1: fc.grad.conv1d_input, 2: fc.grad.conv2d_input, 3: fc.grad.conv3d_input}[n]
    rng = np.random.default_rng(sum(x_shape))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    g = rng.standard_normal(CONVS[n](x, w, **kw).shape).astype(dtype)
    want = grads(x_shape, w, g, algorithm="direct", **kw)
    args = [kw.get(k, d) for k, d in (("stride", 1), ("padding", 0), ("dilation", 1),
                                       ("groups", 1), ("padding_mode", "zeros"))]
    plan = plan_conv_input(f"conv{n}d_input", n, x_shape, w, g, *args)
    be = _dispatch.backend("cpu")
    core = _algorithms.REGISTRY["direct_wide"].grad_cores["input_grad"]["cpu"](be, plan, None)
    out = np.empty(plan.padded_shape, dtype)
    got = core(g.reshape(plan.g_shape), w.reshape(plan.w_shape), np.zeros(x_shape[1], dtype),
               out)
    np.testing.assert_array_equal(got.reshape(x_shape), want)


def test_auto_runs_the_wide_kernel_for_lenets_conv2_input_gradient():
    x, w = np.zeros((64, 6, 14, 14), np.float32), np.zeros((16, 6, 5, 5), np.float32)
    g = np.zeros((64, 16, 10, 10), np.float32)
    assert fc.explain(fc.grad.conv2d_input, x.shape, w, g).chosen == "direct_wide"
    g2 = np.zeros((64, 16, 8, 8), np.float32)  # stride 2: grad_output spread, not in place
    assert fc.explain(fc.grad.conv2d_input, x.shape, w, g2, stride=2,
                      padding=3).chosen != "direct_wide"
    assert fc.explain(fc.conv2d, x, w).chosen != "direct_wide"  # not a forward entry


def test_wide_kernel_bit_identical_for_any_thread_count_and_propagates_nan():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    g = rng.standard_normal((9, 16, 10, 10)).astype(np.float32)
    g[1, 3, 4, 4], g[2, 0, 0, 9] = np.nan, np.inf
    run = lambda: fc.grad.conv2d_input((9, 6, 14, 14), w, g)  # noqa: E731
    first = same_for_any_thread_count(run)
    want = fc.grad.conv2d_input((9, 6, 14, 14), w, g, algorithm="direct")
    np.testing.assert_array_equal(first, want)  # NaN/Inf where direct has them
    assert np.isnan(first).any() and np.isinf(first).any()


# --- the one-vector weight gradient (direct_vec's "weight_grad") ------------------------

WEIGHT_CASES = [
    # (x shape, w shape, conv kwargs): LeNet's conv2 (read in place), padding (a slab),
    # reflect, stride, dilation, groups, 1-D and 3-D
    ((64, 6, 14, 14), (16, 6, 5, 5), {}),
    ((3, 5, 20, 20), (9, 5, 5, 5), {"padding": 2}),
    ((2, 5, 20, 20), (12, 5, 5, 5), {"padding": 2, "padding_mode": "reflect"}),
    ((3, 4, 17, 15), (12, 2, 3, 5), {"groups": 2, "stride": (2, 1), "padding": 2,
                                      "dilation": (1, 2)}),
    ((4, 3, 40), (8, 3, 9), {"stride": 2}),
    ((2, 3, 7, 9, 9), (8, 3, 3, 3, 3), {"padding": 1}),
    ((3, 4, 12, 13), (8, 4, 2, 2), {"padding": "same"}),  # padding after only: a slab
    ((3, 4, 12, 13), (8, 4, 2, 3), {"padding": "same", "padding_mode": "replicate"}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("x_shape", "w_shape", "kw"), WEIGHT_CASES)
def test_one_vector_weight_gradient_within_its_error_bound(x_shape, w_shape, kw, dtype):
    """Each weight gradient is per image one FMA chain over its ``P`` output pixels, the
    images' sums added in order: ``|gw - gw_exact| <= (P + N) * u * sum |g| |x|``
    against the float64 oracle, also where the registry would not pick it."""
    n = len(x_shape) - 2
    wgrads = {1: fc.grad.conv1d_weight, 2: fc.grad.conv2d_weight, 3: fc.grad.conv3d_weight}
    rng = np.random.default_rng(sum(x_shape))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    g = rng.standard_normal(CONVS[n](x, w, **kw).shape).astype(dtype)
    K, groups = w_shape[0], kw.get("groups", 1)
    from fastconv._plan import plan_conv_weight

    args = [kw.get(k, d) for k, d in (("stride", 1), ("padding", 0), ("dilation", 1),
                                       ("groups", 1), ("padding_mode", "zeros"))]
    plan = plan_conv_weight(f"conv{n}d_weight", n, x, w.shape, g, *args)
    lanes = mk.LANES32 if dtype == np.float32 else mk.LANES64
    if K // groups > lanes:
        pytest.skip("more output channels than one vector (float64 on AVX2)")
    gw = np.empty(plan.w_shape, dtype)
    mk.weight_gradient(x.reshape(plan.x_shape), g.reshape(plan.out_shape), gw, plan.stride,
                       plan.dilation, plan.groups, plan.pads, plan.padding_mode)
    want = wgrads[n](x.astype(np.float64), w.shape, g.astype(np.float64), **kw)
    mag = wgrads[n](np.abs(x).astype(np.float64), w.shape, np.abs(g).astype(np.float64), **kw)
    chain = g.shape[0] + int(np.prod(g.shape[2:]))
    err = np.abs(gw.reshape(w.shape).astype(np.float64) - want)
    assert np.all(err <= chain * UNIT[dtype] * mag)


def test_auto_runs_the_one_vector_weight_gradient_for_lenets_conv2():
    x, g = np.zeros((64, 6, 14, 14), np.float32), np.zeros((64, 16, 10, 10), np.float32)
    assert fc.explain(fc.grad.conv2d_weight, x, (16, 6, 5, 5), g).chosen == "direct_vec"
    g = np.zeros((64, 64, 10, 10), np.float32)  # 64 output channels: not one vector
    assert fc.explain(fc.grad.conv2d_weight, x, (64, 6, 5, 5), g).chosen != "direct_vec"


def test_one_vector_weight_gradient_bit_identical_for_any_thread_count_and_nan():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((9, 6, 14, 14)).astype(np.float32)
    g = rng.standard_normal((9, 16, 10, 10)).astype(np.float32)
    run = lambda: fc.grad.conv2d_weight(x, (16, 6, 5, 5), g)  # noqa: E731
    same_for_any_thread_count(run)
    x[2, 1, 3, 3] = np.nan
    got = fc.grad.conv2d_weight(x, (16, 6, 5, 5), g)
    want = fc.grad.conv2d_weight(x, (16, 6, 5, 5), g, algorithm="direct")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got[:, 1]).any() and not np.isnan(got[:, 0]).any()
