"""The package's structure: one execution layer, the algorithm registry (same choices as
the rule it replaced), ``fastconv.explain``, the backend contract, plain public ``def``s
and an import graph without cycles."""

from __future__ import annotations

import ast
import inspect
import math
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv as fc
from fastconv import _algorithms, _dispatch
from fastconv._algorithms import Algorithm, Problem
from fastconv.cpu.microkernel import channel_block

PKG = pathlib.Path(fc.__file__).parent


# --- the registry makes today's decisions (a frozen copy of the rule it replaced) --------


def _frozen_winograd_wins(N, w_shape, out_spatial, stride, dilation, groups) -> bool:
    from fastconv.cpu.winograd import FUSED_MIN_IMAGE_TILES, applies, tile_size

    A = _algorithms
    if applies(w_shape, out_spatial, stride, dilation, groups) is not None:
        return False
    K, Cg = int(w_shape[0]), int(w_shape[1])
    Kg = K // groups
    oh, ow = int(out_spatial[1]), int(out_spatial[2])
    m = tile_size(oh, ow)
    per_image = -(-oh // m) * -(-ow // m)
    fused = per_image >= FUSED_MIN_IMAGE_TILES
    macs = N * math.prod(w_shape) * math.prod(out_spatial)
    return (min(Cg, Kg) >= (A.WINOGRAD_MIN_CHANNELS if fused else A.WINOGRAD_MIN_CHANNELS_STAGED)
            and N * per_image >= A.WINOGRAD_MIN_TILES and macs >= A.WINOGRAD_MIN_MACS)


def _frozen_choose_for(N, w_shape, out_spatial, stride, groups) -> str:
    A = _algorithms
    K, Cg = int(w_shape[0]), int(w_shape[1])
    Kg = K // groups
    taps = math.prod(w_shape[2:])
    unit_stride = all(int(s) == 1 for s in stride)
    if unit_stride and taps >= A.FFT_MIN_TAPS and Kg * Cg <= A.FFT_MAX_CHANNEL_PAIRS:
        return "fft"
    macs = N * math.prod(w_shape) * math.prod(out_spatial)
    if Kg >= A.GEMM_MIN_KG and Cg * taps >= A.GEMM_MIN_R and macs >= A.GEMM_MIN_MACS:
        return "gemm"
    return "direct"


def _frozen_forward(p: Problem) -> str:
    """The rule of ``choose`` + ``_separable_shape`` before the registry (commit a5e8000)."""
    A = _algorithms
    _, Cg, KD, KH, KW = p.w_shape
    Kg = p.w_shape[0] // p.groups
    if (p.nspatial == 2 and KH >= 2 and KW >= 2 and KH * KW >= A.SEP_MIN_TAPS
            and Kg * Cg <= A.FFT_MAX_CHANNEL_PAIRS):
        return "separable"
    return _frozen_unconditional(p)


def _frozen_unconditional(p: Problem) -> str:
    """:func:`_frozen_forward` without the separable path (its fallback)."""
    A = _algorithms
    _, Cg, KD, KH, KW = p.w_shape
    Kg = p.w_shape[0] // p.groups
    if _frozen_winograd_wins(p.N, p.w_shape, p.out_spatial, p.stride, p.dilation, p.groups):
        return "winograd"
    name = _frozen_choose_for(p.N, p.w_shape, p.out_spatial, p.stride, p.groups)
    vec_rule = name != "fft" and Cg * KD * KH * KW >= A.DIRECT_VEC_MIN_R and (
        p.macs >= A.GEMM_MIN_MACS)
    if vec_rule and Cg <= A.DIRECT_VEC_MAX_CG and 2 * Kg >= channel_block(4):
        return "direct_vec"  # few input channels, large kernel (fastconv.cpu.microkernel)
    # its one-vector form (2026-12-02): 8-16 output channels (one float32 vector), at
    # most 8 input channels, at most 4096 output pixels per plane (LeNet's 6 -> 16 layer)
    if _frozen_vec_plane(p.N, p.w_shape, p.out_spatial, p.stride, p.groups, 4):
        return "direct_vec"
    return name


def _wide_wins(p: Problem) -> bool:
    """The wide-row input gradient (``direct_wide``, 2026-12-02): grad_output in place, at
    most 6 output channels per group, a long enough chain and work, at most 4096 output
    pixels per plane, and cheaper than the GEMM (the only other choice its regime can meet
    with a lower cost)."""
    A = _algorithms
    if not (p.in_place and p.Kg <= 6 and p.Cg * p.taps >= A.DIRECT_VEC_MIN_R
            and p.macs >= A.GEMM_MIN_MACS and p.out_spatial[1] * p.out_spatial[2] <= 4096):
        return False
    return A.REGISTRY["direct_wide"].cost(p) < min(
        A.REGISTRY[n].cost(p) for n in ("direct", "gemm")
        if A.REGISTRY[n].regime(p) is None)


def _frozen_input_grad(p: Problem) -> str:
    """``fastconv.cpu.grad.correlate_input``'s "auto" (stride-1 correlation)."""
    if p.in_place and _frozen_winograd_wins(p.N, p.w_shape, p.out_spatial, (1, 1, 1),
                                            p.dilation, p.groups):
        return "winograd"
    if _wide_wins(p):
        return "direct_wide"
    name = _frozen_choose_for(p.N, p.w_shape, p.out_spatial, (1, 1, 1), p.groups)
    return "direct" if name == "fft" else name


def _frozen_winograd_weight_wins(N, w_shape, out_spatial, stride, dilation, groups) -> bool:
    """``fastconv.cpu.grad.winograd_weight_wins`` before the registry took the gradients'
    choices (commit 8143c84)."""
    from fastconv.cpu.winograd_weight import applies, tile_size

    A = _algorithms
    K, Cg = int(w_shape[0]), int(w_shape[1])
    if not applies((N, Cg * groups), w_shape, (N, K) + tuple(out_spatial), stride, dilation):
        return False
    oh, ow = int(out_spatial[1]), int(out_spatial[2])
    m = tile_size(oh, ow)
    tiles = N * -(-oh // m) * -(-ow // m)
    macs = N * math.prod(int(v) for v in w_shape) * oh * ow
    return (min(Cg, K // groups) >= A.WINOGRAD_MIN_CHANNELS and tiles >= A.WINOGRAD_MIN_TILES
            and macs >= A.WINOGRAD_MIN_MACS)


def _frozen_vec_plane(N, w_shape, out_spatial, stride, groups, itemsize) -> bool:
    """direct_vec's one-vector form (2026-12-02; forward and weight gradient): 8-16
    float32 (4-8 float64) output channels per group, at most 8 input channels, a chain of
    at least 128 taps, 2**20 multiply-adds, at most 4096 output pixels per plane, not the
    FFT's regime."""
    A = _algorithms
    K, Cg = int(w_shape[0]), int(w_shape[1])
    Kg = K // groups
    lanes = 8 if itemsize == 8 else 16
    macs = N * math.prod(w_shape) * math.prod(out_spatial)
    return (_frozen_choose_for(N, w_shape, out_spatial, stride, groups) != "fft"
            and lanes <= 2 * Kg and Kg <= lanes and Cg <= A.DIRECT_VEC_PLANE_MAX_CG
            and Cg * math.prod(w_shape[2:]) >= A.DIRECT_VEC_MIN_R
            and macs >= A.GEMM_MIN_MACS and out_spatial[1] * out_spatial[2] <= 4096)


def _frozen_weight_grad(p: Problem) -> str:
    """``fastconv.cpu.grad.correlate_weight``'s "auto" (no small-image form: ``itemsize``
    0)."""
    if _frozen_vec_plane(p.N, p.w_shape, p.out_spatial, p.stride, p.groups, 4):
        return "direct_vec"
    name = _frozen_choose_for(p.N, p.w_shape, p.out_spatial, p.stride, p.groups)
    if name == "gemm" and _frozen_winograd_weight_wins(p.N, p.w_shape, p.out_spatial, p.stride,
                                                       p.dilation, p.groups):
        return "winograd"
    return "direct" if name == "fft" else name


@st.composite
def problems(draw, op="forward"):
    nsp = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 1, 2, 4]))
    Kg = draw(st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128]))
    Cg = draw(st.sampled_from([1, 2, 3, 8, 16, 32, 64, 256]))
    k = [draw(st.sampled_from([1, 2, 3, 3, 3, 5, 7, 9, 20, 25])) for _ in range(nsp)]
    out = [draw(st.sampled_from([1, 2, 5, 6, 10, 14, 28, 31, 56, 64, 112])) for _ in range(nsp)]
    stride = [draw(st.sampled_from([1, 1, 1, 2])) for _ in range(nsp)]
    dil = [draw(st.sampled_from([1, 1, 2])) for _ in range(nsp)]
    N = draw(st.sampled_from([1, 2, 4, 8, 32]))
    pad3 = lambda v, f: (f,) * (3 - nsp) + tuple(v)  # noqa: E731
    in_place = draw(st.booleans()) if op == "input_grad" else True
    return Problem(op, N, (groups * Kg, Cg) + pad3(k, 1), pad3(out, 1),
                   (1, 1, 1) if op == "input_grad" else pad3(stride, 1), pad3(dil, 1), groups,
                   nsp, in_place)


@settings(max_examples=400, deadline=None)
@given(p=problems())
def test_registry_auto_matches_the_frozen_forward_rule(p):
    entry, fallback = _algorithms.auto(p, "cpu")
    assert entry.name == _frozen_forward(p)
    if entry.conditional:  # the separable path falls back to the rule without it
        assert fallback.name == _frozen_unconditional(p)


@settings(max_examples=300, deadline=None)
@given(p=problems())
def test_choose_for_and_winograd_wins_keep_their_answers(p):
    assert _algorithms.choose_for(p.N, p.w_shape, p.out_spatial, p.stride, p.groups) == \
        _frozen_choose_for(p.N, p.w_shape, p.out_spatial, p.stride, p.groups)
    assert _algorithms.winograd_wins(p.N, p.w_shape, p.out_spatial, p.stride, p.dilation,
                                     p.groups) == \
        _frozen_winograd_wins(p.N, p.w_shape, p.out_spatial, p.stride, p.dilation, p.groups)


@settings(max_examples=200, deadline=None)
@given(p=problems("input_grad"))
def test_registry_input_grad_matches_the_backend_rule(p):
    assert _algorithms.auto(p, "cpu")[0].name == _frozen_input_grad(p)


@settings(max_examples=200, deadline=None)
@given(p=problems("weight_grad"))
def test_registry_weight_grad_matches_the_backend_rule(p):
    assert _algorithms.auto(p, "cpu")[0].name == _frozen_weight_grad(p)


def _frozen_input_grad_plan(plan) -> str:
    """What ``fastconv.cpu.grad.correlate_input(algorithm="auto")`` ran for a plan before
    the registry took its choice (commit 8143c84): "winograd", "small" (``col2im``),
    "gemm" (the shifted GEMM on the spread grid) or "direct"."""
    from fastconv.cpu import small

    N, groups = plan.g_shape[0], plan.groups
    K, Cg = plan.w_shape[:2]
    wt_shape = (groups * Cg, K // groups) + tuple(plan.w_shape[2:])
    whole = all(s == (0, n, 1) for s, n in zip(plan.spread_src, plan.g_shape[2:], strict=True))
    unit = all(d[2] == 1 for d in plan.spread_dst)
    out_spatial = plan.padded_shape[2:]
    if whole and unit and _frozen_winograd_wins(N, wt_shape, out_spatial, (1, 1, 1),
                                                plan.dilation, groups):
        return "winograd"
    if _wide_wins(_algorithms.input_grad_problem(plan)):
        return "direct_wide"
    if whole and small.applies(N, plan.w_shape, plan.g_shape[2:], groups, plan.dtype.itemsize):
        return "small"
    name = _frozen_choose_for(N, wt_shape, out_spatial, (1, 1, 1), groups)
    return "gemm" if name == "gemm" else "direct"


def _frozen_weight_grad_plan(plan) -> str:
    """What ``fastconv.cpu.grad.correlate_weight(algorithm="auto")`` ran for a plan before
    the registry took its choice (commit 8143c84)."""
    from fastconv.cpu import small

    N, out_spatial = plan.x_shape[0], plan.out_shape[2:]
    if _frozen_vec_plane(N, plan.w_shape, out_spatial, plan.stride, plan.groups,
                         plan.dtype.itemsize):
        return "direct_vec"
    name = _frozen_choose_for(N, plan.w_shape, out_spatial, plan.stride, plan.groups)
    if name == "gemm" and _frozen_winograd_weight_wins(N, plan.w_shape, out_spatial,
                                                       plan.stride, plan.dilation, plan.groups):
        return "winograd"
    if small.applies(N, plan.w_shape, out_spatial, plan.groups, plan.dtype.itemsize):
        return "small"
    return "gemm" if name == "gemm" else "direct"


def _registry_grad(plan, op: str) -> str:
    """The registry's "auto" for a gradient plan, the GEMM's small-image form named."""
    p = (_algorithms.input_grad_problem(plan) if op == "input_grad"
         else _algorithms.forward_problem(plan, op))
    name = _algorithms.auto(p, "cpu")[0].name
    return "small" if name == "gemm" and _algorithms._small(p) else name


def _shaped(shape, dtype):
    return np.broadcast_to(np.zeros((), dtype), shape)  # a shape and a dtype, no memory


@st.composite
def grad_plans(draw):
    """Real gradient plans (``fastconv._plan``) of random calls: every padding mode the
    rule can see, both float dtypes, batches, strides, dilations and groups."""
    from fastconv._plan import plan_conv, plan_conv_input, plan_conv_transpose, plan_conv_weight

    nsp = draw(st.sampled_from([2, 2, 1, 3]))
    groups = draw(st.sampled_from([1, 1, 2]))
    Kg = draw(st.sampled_from([16, 64, 4, 6, 8, 32, 1]))
    Cg = draw(st.sampled_from([16, 64, 1, 2, 3, 8]))
    k = [draw(st.sampled_from([3, 3, 3, 1, 2, 5])) for _ in range(nsp)]
    size = [draw(st.sampled_from([28, 56, 6, 8, 12, 14, 32])) for _ in range(nsp)]
    stride = [draw(st.sampled_from([1, 1, 2])) for _ in range(nsp)]
    dil = [draw(st.sampled_from([1, 1, 1, 2])) for _ in range(nsp)]
    dil = [1 if d * (kk - 1) >= n else d for d, kk, n in zip(dil, k, size, strict=True)]
    padding = draw(st.sampled_from([0, 1, 2]))
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect"]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    N = draw(st.sampled_from([8, 1, 2, 32]))
    op = draw(st.sampled_from(["input_grad", "weight_grad", "transpose"]))
    func = f"conv{nsp}d"
    x = _shaped((N, groups * Cg, *size), dtype)
    w = _shaped((groups * Kg, Cg, *k), dtype)
    fwd = plan_conv(func, nsp, x, w, None, stride, padding, dil, groups, mode)
    g = _shaped(fwd.user_shape(fwd.out_shape), dtype)
    if op == "weight_grad":
        return op, plan_conv_weight(func, nsp, x, w.shape, g, stride, padding, dil, groups, mode)
    if op == "input_grad":
        return op, plan_conv_input(func, nsp, x.shape, w, g, stride, padding, dil, groups, mode)
    wt = _shaped((groups * Kg, Cg, *k), dtype)  # conv_transpose's weight: (C_in, C_out/g, *k)
    return "input_grad", plan_conv_transpose(f"conv_transpose{nsp}d", nsp, g, wt, None, stride,
                                             padding, 0, groups, dil)


@settings(max_examples=400, deadline=None)
@given(case=grad_plans())
def test_registry_gradient_choices_match_the_rule_they_replaced(case):
    """The gradients' "auto" (the registry, :func:`fastconv._algorithms.grad_core`) is the
    rule ``fastconv.cpu.grad`` applied before (frozen copies above), for every plan."""
    op, plan = case
    frozen = _frozen_input_grad_plan if op == "input_grad" else _frozen_weight_grad_plan
    assert _registry_grad(plan, op) == frozen(plan)


@pytest.mark.parametrize(("x", "w", "kw", "want"), [
    ((8, 64, 56, 56), (64, 64, 3, 3), {"padding": 1}, ("winograd", "winograd")),  # B3
    ((8, 256, 14, 14), (256, 256, 3, 3), {"padding": 1}, ("winograd", "winograd")),  # B5
    ((8, 64, 56, 56), (64, 64, 3, 3), {"padding": 1, "padding_mode": "reflect"},
     ("winograd", "winograd")),
    ((8, 64, 56, 56), (64, 64, 3, 3), {"padding": 1, "stride": 2}, ("gemm", "gemm")),
    ((64, 6, 14, 14), (16, 6, 5, 5), {}, ("direct_wide", "direct_vec")),  # LeNet's conv2
    ((8, 32, 56, 56), (32, 1, 3, 3), {"padding": 1, "groups": 32}, ("direct", "direct")),
])
def test_gradient_choices_of_benchmark_layers(x, w, kw, want):
    """Benchmark-like layers: the registry's gradient choices, as before and as named."""
    from fastconv._plan import plan_conv, plan_conv_input, plan_conv_weight

    x, w = _shaped(x, np.float32), _shaped(w, np.float32)
    args = [kw.get(k, d) for k, d in (("stride", 1), ("padding", 0), ("dilation", 1),
                                       ("groups", 1), ("padding_mode", "zeros"))]
    fwd = plan_conv("conv2d", 2, x, w, None, *args)
    g = _shaped(fwd.user_shape(fwd.out_shape), np.float32)
    pi = plan_conv_input("conv2d_input", 2, x.shape, w, g, *args)
    pw = plan_conv_weight("conv2d_weight", 2, x, w.shape, g, *args)
    assert (_frozen_input_grad_plan(pi), _frozen_weight_grad_plan(pw)) == want
    assert (_registry_grad(pi, "input_grad"), _registry_grad(pw, "weight_grad")) == want
    assert fc.explain(fc.grad.conv2d_input, x.shape, w, g, **kw).chosen == want[0].replace(
        "small", "gemm")
    assert fc.explain(fc.grad.conv2d_weight, x, w.shape, g, **kw).chosen == want[1].replace(
        "small", "gemm")


def test_the_gpu_has_one_algorithm():
    p = Problem("forward", 8, (64, 64, 1, 3, 3), (1, 56, 56), (1, 1, 1), (1, 1, 1), 1)
    assert _algorithms.auto(p, "cuda")[0].name == "direct"
    assert _algorithms.select(p, "cuda", "gemm").name == "direct"
    assert [row[0].name for row in _algorithms.candidates(p, "cuda")] == ["direct"]


def test_costs_are_seconds_that_grow_with_the_work():
    small = Problem("forward", 1, (8, 8, 1, 3, 3), (1, 16, 16), (1, 1, 1), (1, 1, 1), 1)
    big = Problem("forward", 4, (8, 8, 1, 3, 3), (1, 16, 16), (1, 1, 1), (1, 1, 1), 1)
    for e in _algorithms.REGISTRY.values():
        assert 0 < e.cost(small) < e.cost(big) < 10


@pytest.fixture
def registry_snapshot():
    """Restore the registry (and the names ``algorithm=`` accepts) after a test."""
    saved = dict(_algorithms.REGISTRY)
    yield
    _algorithms.REGISTRY.clear()
    _algorithms.REGISTRY.update(saved)
    _algorithms.register(saved["direct"])  # recomputes ALGORITHMS, clears built cores


def test_adding_an_algorithm_is_one_entry(registry_snapshot):
    """A new entry is chosen by "auto" where it is cheapest, accepted by ``algorithm=``
    and listed by ``explain``, with no edit anywhere else."""
    calls = []

    def core(be, plan):
        direct = _algorithms.REGISTRY["direct"].cores["cpu"](be, plan)

        def run(*args):
            calls.append(plan.func)
            direct(*args)

        return run

    _algorithms.register(Algorithm(
        "twice_as_fast", "the direct kernel, costed at half (a test entry)", ("forward",),
        lambda p: None, lambda p: None, lambda p: p.macs / (2 * _algorithms.RATE_DIRECT) / 2,
        {"cpu": core}))
    assert "twice_as_fast" in _algorithms.ALGORITHMS
    x, w = np.arange(9.0).reshape(1, 1, 3, 3), np.arange(4.0).reshape(1, 1, 2, 2)
    np.testing.assert_array_equal(fc.conv2d(x, w), [[[[19, 25], [37, 43]]]])
    np.testing.assert_array_equal(fc.conv2d(x, w, algorithm="twice_as_fast"),
                                  [[[[19, 25], [37, 43]]]])
    assert calls == ["conv2d", "conv2d"]
    assert fc.explain(fc.conv2d, x, w).chosen == "twice_as_fast"


def test_adding_a_gradient_algorithm_is_one_entry(registry_snapshot):
    """An entry with gradient cores is chosen by the gradients' "auto" where it is
    cheapest, accepted by their ``algorithm=`` machinery and listed by ``explain``; its
    fallback (NaN/Inf) is the next choice."""
    calls = []

    def input_core(be, plan, fallback):
        calls.append(("input", fallback is not None))
        return _algorithms.REGISTRY["direct"].grad_cores["input_grad"]["cpu"](be, plan, None)

    def weight_core(be, plan, fallback):
        calls.append(("weight", fallback is not None))
        return _algorithms.REGISTRY["direct"].grad_cores["weight_grad"]["cpu"](be, plan, None)

    _algorithms.register(Algorithm(
        "cheap_grads", "the direct gradients, costed at a tenth (a test entry)",
        ("input_grad", "weight_grad"), lambda p: None, lambda p: None,
        lambda p: p.macs / (10 * _algorithms.RATE_DIRECT), {},
        grad_cores={"input_grad": {"cpu": input_core}, "weight_grad": {"cpu": weight_core}}))
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((1, 2, 7, 7)), rng.standard_normal((3, 2, 3, 3))
    g = rng.standard_normal((1, 3, 5, 5))
    dx = fc.grad.conv2d_input(x.shape, w, g)
    dw = fc.grad.conv2d_weight(x, w.shape, g)
    assert calls == [("input", True), ("weight", True)]
    assert dx.tobytes() == fc.grad.conv2d_input(x.shape, w, g, algorithm="direct").tobytes()
    assert dw.tobytes() == fc.grad.conv2d_weight(x, w.shape, g, algorithm="direct").tobytes()
    assert fc.explain(fc.grad.conv2d_weight, x, w.shape, g).chosen == "cheap_grads"
    assert fc.explain(fc.conv2d, x, w).chosen != "cheap_grads"  # not a forward entry


# --- explain ---------------------------------------------------------------------------


def test_explain_names_the_choice_the_alternatives_and_why():
    x, w = np.zeros((8, 64, 56, 56), np.float32), np.zeros((64, 64, 3, 3), np.float32)
    e = fc.explain(fc.conv2d, x, w, padding=1)
    assert (e.op, e.device, e.requested, e.chosen) == ("conv2d", "cpu", "auto", "winograd")
    names = [r[0] for r in e.rows]
    assert set(names) == {"direct", "direct_vec", "gemm", "fft", "winograd", "separable"}
    costs = [r[1] for r in e.rows]
    assert costs == sorted(costs)
    reasons = dict((r[0], r[2]) for r in e.rows)
    assert reasons["winograd"] is None and "FFT_MIN_TAPS" in reasons["fft"]
    text = str(e)
    assert "runs 'winograd'" in text and "FFT_MIN_TAPS" in text and "est. time" in text
    assert repr(e) == text


def test_explain_agrees_with_what_runs(monkeypatch):
    import fastconv._run

    seen = []
    real = fastconv._run.correlation_core

    def spy(backend_name, be, algorithm, plan):
        core = real(backend_name, be, algorithm, plan)
        seen.append(_algorithms.auto(_algorithms.forward_problem(plan), backend_name)[0].name)
        return core

    monkeypatch.setattr(fastconv._run, "correlation_core", spy)
    rng = np.random.default_rng(0)
    for xs, ws, kw in [((1, 1, 6, 8), (1, 1, 1, 2), {}),
                       ((2, 16, 20, 20), (16, 16, 3, 3), {"padding": 1}),
                       ((1, 1, 30, 30), (1, 1, 21, 21), {"padding": "same"})]:
        x, w = rng.standard_normal(xs), rng.standard_normal(ws)
        fc.conv2d(x, w, **kw)
        assert seen[-1] == fc.explain("conv2d", x, w, **kw).chosen


def test_explain_other_ops_and_names():
    w, g = np.zeros((64, 64, 3, 3)), np.zeros((8, 64, 56, 56))
    assert fc.explain(fc.grad.conv2d_input, (8, 64, 56, 56), w, g, padding=1).chosen == \
        "winograd"
    assert fc.explain("grad.conv2d_weight", np.zeros((8, 64, 56, 56)), (64, 64, 3, 3), g,
                      padding=1).chosen == "winograd"
    assert fc.explain("grad.conv2d_weight", np.zeros((8, 64, 56, 56)), (64, 64, 3, 3), g,
                      padding=1, algorithm="gemm").chosen == "gemm"
    e = fc.explain(fc.conv_transpose2d, np.zeros((2, 8, 9, 9)), np.zeros((8, 4, 3, 3)), stride=2)
    assert e.chosen == "direct" and "winograd" not in [r[0] for r in e.rows if r[2] is None]
    e = fc.explain(fc.conv2d, np.zeros((1, 1, 8, 8)), np.zeros((1, 1, 3, 3)), algorithm="fft")
    assert (e.requested, e.chosen, e.why) == ("fft", "fft", "requested explicitly")


def test_explain_shows_the_gradients_own_candidates_and_fallbacks():
    """A gradient's explanation lists its own candidates (no FFT, no separable path) with
    costs; an explicit algorithm that does not apply to a gradient runs "direct", and
    explain says why (and the result is the direct one, bit for bit)."""
    x, g = np.zeros((8, 64, 56, 56)), np.zeros((8, 64, 56, 56))
    e = fc.explain(fc.grad.conv2d_weight, x, (64, 64, 3, 3), g, padding=1)
    assert (e.op, e.chosen) == ("conv2d_weight", "winograd")
    assert {r[0] for r in e.rows} == {"direct", "direct_vec", "gemm", "winograd"}
    reasons = {r[0]: r[2] for r in e.rows}  # direct_vec: its one-vector form only
    assert "one-vector form only" in reasons.pop("direct_vec")
    assert all(r is None for r in reasons.values()) and "runs 'winograd'" in str(e)
    rng = np.random.default_rng(1)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    g = rng.standard_normal((2, 16, 14, 14)).astype(np.float32)  # padding 3: g is cropped
    e = fc.explain(fc.grad.conv2d_input, (2, 16, 10, 10), w, g, padding=3, algorithm="winograd")
    assert e.chosen == "direct" and "read in place" in e.why
    got = fc.grad.conv2d_input((2, 16, 10, 10), w, g, padding=3, algorithm="winograd")
    want = fc.grad.conv2d_input((2, 16, 10, 10), w, g, padding=3, algorithm="direct")
    assert got.tobytes() == want.tobytes()


def test_explain_errors():
    with pytest.raises(ValueError, match=r"explain: unknown op 'max_pool2d'"):
        fc.explain("max_pool2d", np.zeros((1, 1, 4, 4)), 2)
    with pytest.raises(TypeError, match=r"explain: conv2d: .*weight"):
        fc.explain(fc.conv2d, np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match=r"conv2d: channel mismatch"):
        fc.explain(fc.conv2d, np.zeros((1, 3, 4, 4)), np.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"conv2d: algorithm='winograd' needs a 2-D 3x3"):
        fc.explain(fc.conv2d, np.zeros((1, 8, 8, 8)), np.zeros((8, 8, 5, 5)),
                   algorithm="winograd")


# --- the backend contract ------------------------------------------------------------------


def test_both_backends_implement_the_contract_with_the_same_signatures():
    pytest.importorskip("numba.cuda")
    import fastconv.cpu
    import fastconv.cuda

    for name in _dispatch.CONTRACT:
        cpu, gpu = getattr(fastconv.cpu, name), getattr(fastconv.cuda, name)
        assert list(inspect.signature(cpu).parameters) == \
            list(inspect.signature(gpu).parameters), name
        for be in (fastconv.cpu, fastconv.cuda):
            assert name in be.__all__ and f"``{name}" in be.__doc__, (be.__name__, name)


def test_no_backend_probing_or_padding_guesses_left():
    src = {p.name: p.read_text() for p in PKG.rglob("*.py")}
    assert not [n for n, s in src.items() if "hasattr(be" in s]
    assert not [n for n, s in src.items() if "pads_itself" in s]
    assert not [n for n, s in src.items() if "== x_shape" in s]
    host_copies = {str(p.relative_to(PKG)) for p in PKG.glob("*.py")
                   if ".copy_to_host()" in p.read_text()}
    assert host_copies == {"_run.py", "_dispatch.py"}  # the one host-copy step (and to_host)


# --- public functions are plain defs --------------------------------------------------------

PUBLIC = ["conv1d", "conv2d", "conv3d", "convolve1d", "convolve3d", "conv_transpose1d",
          "conv_transpose2d", "conv_transpose3d", "max_pool1d", "max_pool2d", "max_pool3d",
          "avg_pool1d", "avg_pool2d", "avg_pool3d"]
GRADS = [f"conv{n}d_{k}" for n in (1, 2, 3) for k in ("input", "weight")] + [
    f"{k}_pool{n}d" for n in (1, 2, 3) for k in ("max", "avg")]


@pytest.mark.parametrize("name", PUBLIC + [f"grad.{g}" for g in GRADS])
def test_public_functions_are_plain_defs_with_real_signatures(name):
    func = fc.grad if name.startswith("grad.") else fc
    func = getattr(func, name.removeprefix("grad."))
    params = inspect.signature(func).parameters
    assert "args" not in params and "kwargs" not in params
    assert func.__doc__ and ">>>" in func.__doc__
    source = inspect.getsource(func)
    assert f"def {func.__name__}(" in source
    tree = ast.parse(source.strip().split("\n", 1)[1] if source.startswith("@") else source)
    assert tree  # the def itself parses: it is the function, not a factory's closure


def test_help_shows_the_signature():
    assert str(inspect.signature(fc.conv2d)) == (
        "(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, "
        "padding_mode='zeros', *, device=None, algorithm='auto')")
    assert fc.conv2d.__module__ == "fastconv.conv" and fc.conv2d.__qualname__ == "conv2d"


# --- the import graph has no cycle (function-level imports included) ------------------------


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree):
    """``(node, in_function)`` for every import statement of a module."""
    found = []

    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append((child, in_function))
            walk(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    walk(tree, False)
    return found


def import_graph() -> dict[str, set[str]]:
    """fastconv's modules and the fastconv modules each imports anywhere in its code,
    function-level imports included (``from pkg import mod`` counts as importing
    ``pkg.mod``). Not edges: a package's ``__init__`` that Python runs before any of its
    submodules, and a function-level import of the module's own package (by the time a
    function runs, its package has finished initialising: ``fastconv.cuda._launch``
    reads ``fastconv.cuda.THREADS`` per call so tests can patch it)."""
    mods = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for name, path in mods.items():
        deps = set()
        is_pkg = path.name == "__init__.py"
        ancestors = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
        for node, in_function in _imports(ast.parse(path.read_text())):
            new = set()
            if isinstance(node, ast.Import):
                new.update(a.name for a in node.names if a.name in mods)
            else:
                if node.level:
                    base = name.split(".")[: len(name.split(".")) - node.level + is_pkg]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
                new.update(subs)
                if len(subs) < len(node.names) and base in mods:
                    new.add(base)
            deps |= (new - ancestors) if in_function else new
        deps.discard(name)
        graph[name] = deps
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        state[v] = 2
        stack.pop()
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert {"fastconv.conv", "fastconv._run", "fastconv._dask"} <= set(graph)
    assert "fastconv._run" in graph["fastconv.conv"]
    assert "fastconv.conv" not in graph["fastconv._dask"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_pool_and_grad_import_nothing_sideways():
    graph = import_graph()
    assert "fastconv.conv" not in graph["fastconv.pool"] | graph["fastconv.grad"]
    assert "fastconv.pool" not in graph["fastconv.adaptive"] | graph["fastconv.fold"] | \
        graph["fastconv.unpool"]
