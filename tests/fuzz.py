"""Differential fuzzing of every op, forward and backward: fastconv vs the NumPy reference
(``tests/reference.py``) and, when installed, PyTorch.

Ops (``--ops`` takes op names or these groups, comma-separated; default: all):

- ``conv``:      ``conv``: fc.conv1d/2d/3d and fc.convolve1d/2d/3d (every algorithm);
- ``grad``:      ``conv_input``, ``conv_weight``: fc.grad.conv1d/2d/3d_input and _weight
                 (every padding form and padding_mode, stride, dilation, groups,
                 ``algorithm=`` "auto"/"direct"/"gemm"), ``conv_bias``: fc.grad.conv_bias;
- ``transpose``: ``conv_transpose``: fc.conv_transpose1d/2d/3d (output_padding, groups,
                 dilation; the CPU core's "direct" and "gemm" paths, see
                 :func:`forced_grad_path`);
- ``pool``:      ``max_pool``, ``avg_pool``: fc.max_pool1d/2d/3d (values and
                 return_indices) and fc.avg_pool1d/2d/3d; ``max_pool_grad``,
                 ``avg_pool_grad``: fc.grad.max_pool1d/2d/3d and avg_pool1d/2d/3d
                 (ceil_mode, count_include_pad, divisor_override, dilation; integer-valued
                 inputs with ties check first-maximum semantics).

PyTorch oracles: F.conv*d on an F.pad-ded input (autograd for the gradients, a channel sum
for conv_bias), F.conv_transpose*d, F.max_pool*d with indices and F.avg_pool*d (with
autograd for their gradients). Pooling padding is at most kernel_size // 2 in both
(SPEC §4, PyTorch's rule); a case PyTorch cannot run (F.avg_pool3d on an input smaller
than the kernel) meets only the NumPy reference.

Case ``i`` picks its op from ``numpy.random.default_rng([seed, i])`` (weighted, among the
selected ops) and draws its parameters from ``default_rng([seed, i, op id])``, so
``--ops OP --case i`` replays one case on its own::

    python tests/fuzz.py --n 10000 --seed 0                   # make fuzz
    python tests/fuzz.py --seed 0 --ops conv_input --case 12  # replay one case, print it
    python tests/fuzz.py --n 300 --device cuda                # the GPU against the CPU backend

``--device cuda`` runs every fastconv call of a case on the CPU backend and on the GPU
(``FASTCONV_DEVICE``): the two must agree within float rounding, and the GPU's result meets
the same oracles (``bench/gpu_check.py`` runs it on a real GPU; with
``NUMBA_ENABLE_CUDASIM=1`` it runs in Numba's simulator, slowly).

Prints one line per mismatch (with the reproducer), a per-op summary and the time, and
exits 1 on any mismatch. ``run()`` is also called by ``tests/test_fuzz.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import math
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reference  # noqa: E402

import fastconv as fc  # noqa: E402
from fastconv._shapes import pool_empty_window, pool_out  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None
MODES = ("zeros", "reflect", "replicate", "circular")
LAYOUTS = ("contiguous", "fortran", "reversed", "sliced", "byteswapped", "broadcast")
PADDINGS = ("int", "tuple", "pairs", "valid", "same", "full")
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}

#: op -> (group, relative frequency in a mixed run); append new ops at the end only
OPS = {
    "conv": ("conv", 3.0),
    "conv_input": ("grad", 2.0),
    "conv_weight": ("grad", 2.0),
    "conv_bias": ("grad", 0.5),
    "conv_transpose": ("transpose", 2.0),
    "max_pool": ("pool", 1.0),
    "avg_pool": ("pool", 1.0),
    "max_pool_grad": ("pool", 1.0),
    "avg_pool_grad": ("pool", 1.0),
}
GROUPS = ("conv", "grad", "transpose", "pool")
#: largest reference-loop cost (iterations of its Python loop) a backward case may have
LOOP_BUDGET = 4000


def op_id(op: str) -> int:
    """A stable number for ``op`` (its parameters' seed does not depend on ``--ops``)."""
    return zlib.crc32(op.encode())


def parse_ops(spec: str | None) -> list[str]:
    """``"grad,max_pool"`` -> the op names, in ``OPS`` order; None or "all": every op."""
    if spec is None or spec == "all":
        return list(OPS)
    wanted = set()
    for name in (s.strip() for s in spec.split(",")):
        if name in GROUPS:
            wanted |= {op for op, (group, _) in OPS.items() if group == name}
        elif name in OPS:
            wanted.add(name)
        else:
            raise ValueError(f"--ops: unknown op or group {name!r}; groups {GROUPS}, "
                             f"ops {tuple(OPS)}")
    return [op for op in OPS if op in wanted]


def pick_op(seed: int, index: int, ops: list[str]) -> str:
    if len(ops) == 1:
        return ops[0]
    p = np.array([OPS[op][1] for op in ops])
    return ops[int(np.random.default_rng([seed, index]).choice(len(ops), p=p / p.sum()))]


def make_case(seed: int, index: int, op: str) -> dict:
    """The parameters of case ``index`` of ``op``."""
    case = GENERATORS[op](np.random.default_rng([seed, index, op_id(op)]))
    case["op"] = op
    return case


# --- shared helpers ----------------------------------------------------------------------


def with_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values as ``a`` in another memory layout (view, copy or byte order);
    "broadcast" assumes ``a`` is constant along its first axis."""
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "reversed":  # negative strides on every axis
        return np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])[
            (slice(None, None, -1),) * a.ndim]
    if layout == "sliced":  # every other element of a bigger array
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if layout == "byteswapped":
        return a.astype(a.dtype.newbyteorder())
    if layout == "broadcast":  # zero stride along the first axis
        return np.broadcast_to(a[:1], a.shape)
    return a


def _broadcastable(a: np.ndarray, layout: str, unbatched: bool) -> np.ndarray:
    """``a`` (batched) made constant along the axis that "broadcast" gives stride 0."""
    if layout != "broadcast":
        return a
    axis = 1 if unbatched else 0
    return np.repeat(a.take([0], axis=axis), a.shape[axis], axis=axis)


def _user(a: np.ndarray, layout: str, unbatched: bool) -> np.ndarray:
    """The array a caller passes: batch axis dropped when unbatched, in ``layout``."""
    return with_layout(a[0] if unbatched else a, layout)


def _with_special(rng, a: np.ndarray, special: str) -> np.ndarray:
    if special != "none" and a.dtype.kind == "f":
        a.flat[int(rng.integers(a.size))] = {"nan": np.nan, "inf": np.inf,
                                              "-inf": -np.inf}[special]
    return a


def _per_axis(v, nsp: int) -> list[int]:
    return [int(v)] * nsp if np.isscalar(v) else [int(a) for a in v]


def _int_or_tuple(rng, values: list[int]):
    """An int when every axis agrees (sometimes), else a tuple: both argument forms."""
    if len(set(values)) == 1 and rng.random() < 0.5:
        return values[0]
    return tuple(values)


def compare(got: np.ndarray, want: np.ndarray, scale: np.ndarray, rtol: float) -> str | None:
    """None when ``got`` matches ``want``: same NaN/Inf positions (and signs), finite values
    within ``rtol * scale`` (``scale`` = the op applied to absolute values: a rounding bound)."""
    if got.shape != want.shape:
        return f"shape {got.shape} != {want.shape}"
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    if not np.array_equal(nan_g, nan_w):
        return f"NaN positions differ ({nan_g.sum()} vs {nan_w.sum()})"
    inf_w = np.isinf(want)
    if not np.array_equal(np.isinf(got), inf_w) or not np.array_equal(got[inf_w], want[inf_w]):
        return "Inf positions or signs differ"
    fin = np.isfinite(want)
    err = np.abs(got[fin].astype(np.float64) - want[fin])
    tol = rtol * np.abs(scale[fin]) + 10 * np.finfo(got.dtype).tiny
    if np.any(err > tol):
        i = int(np.argmax(err - tol))
        return f"max error {err[i]:.3g} > tol {tol[i]:.3g} (want {want[fin][i]:.6g})"
    return None


def _check_result(got, want, scale, dtype, rtol, unbatched, torch_want=None) -> list[str]:
    """Shape (batched or not), dtype, and values vs the reference and the torch result."""
    if unbatched:
        if got.shape != want.shape[1:]:
            return [f"unbatched shape {got.shape} != {want.shape[1:]}"]
        got = got[None]
    problems = []
    if got.dtype != dtype:
        problems.append(f"dtype {got.dtype} != {dtype}")
    msg = compare(got, want, scale, rtol)
    if msg:
        problems.append(f"vs reference: {msg}")
    if torch_want is not None:
        msg = compare(got, torch_want, scale, rtol)
        if msg:
            problems.append(f"vs torch: {msg}")
    return problems


def _torch():
    import torch

    torch.set_num_threads(1)  # tiny problems: threads only add overhead to the oracle
    return torch


def _tensor(a, dtype, requires_grad=False):
    torch = _torch()
    return torch.tensor(np.asarray(a, dtype=dtype), requires_grad=requires_grad)


# --- the device under test: the CPU backend, or the GPU against it --------------------------

#: The device ``run(device=...)`` fuzzes: "cpu" (fastconv as a NumPy caller gets it), or
#: "cuda" (every call also runs on the GPU, see :func:`_call`); ``problems`` collects the
#: GPU-vs-CPU differences of the case being checked.
_DEVICE = {"name": "cpu", "problems": []}


@contextlib.contextmanager
def _device_env(name: str):
    """``FASTCONV_DEVICE=name`` for the calls inside (NumPy in, NumPy out on either device)."""
    old = os.environ.get("FASTCONV_DEVICE")
    os.environ["FASTCONV_DEVICE"] = name
    try:
        yield
    finally:
        if old is None:
            del os.environ["FASTCONV_DEVICE"]
        else:
            os.environ["FASTCONV_DEVICE"] = old


def _compare_devices(got, want: np.ndarray) -> str | None:
    """None when the GPU result ``got`` equals the CPU backend's ``want``: same type,
    shape, dtype and NaN/Inf positions; floats within ``RTOL`` of their dtype relative to
    the largest finite CPU value (the two backends sum in different orders); integer
    results (max-pool indices) exactly."""
    if not isinstance(got, np.ndarray):
        return f"returned {type(got).__name__}, not a NumPy array"
    if got.shape != want.shape or got.dtype != want.dtype:
        return f"{got.shape} {got.dtype} != {want.shape} {want.dtype}"
    if want.dtype.kind != "f":
        return None if np.array_equal(got, want) else \
            f"{int((got != want).sum())} of {want.size} values differ"
    top = float(np.max(np.abs(want[np.isfinite(want)]), initial=1.0))
    return compare(got, want, np.full(want.shape, top), RTOL[want.dtype])


def _call(func, *args, **kwargs):
    """``func(*args, **kwargs)`` on the fuzzed device. On "cuda" it runs on the CPU backend
    and on the GPU (``FASTCONV_DEVICE``); a difference between the two (see
    :func:`_compare_devices`) is recorded as a problem of the case, and the GPU result is
    returned for the usual checks against the NumPy reference and PyTorch."""
    if _DEVICE["name"] == "cpu":
        return func(*args, **kwargs)
    with _device_env("cpu"):
        cpu = func(*args, **kwargs)
    with _device_env(_DEVICE["name"]):
        got = func(*args, **kwargs)
    pairs = zip(got, cpu, strict=True) if isinstance(cpu, tuple) else [(got, cpu)]
    for i, (g, c) in enumerate(pairs):
        msg = _compare_devices(g, c)
        if msg:
            what = "indices" if i else "values"
            _DEVICE["problems"].append(f"{_DEVICE['name']} vs cpu {what}: {msg}")
    return got


# --- conv: forward convolution -------------------------------------------------------------


def random_case(rng: np.random.Generator) -> dict:
    """A random valid forward-convolution configuration (small shapes)."""
    nsp = int(rng.integers(1, 4))
    kmax, extra = {1: (5, 8), 2: (4, 5), 3: (3, 3)}[nsp]
    kernel = [int(v) for v in rng.integers(1, kmax + 1, nsp)]
    dilation = [int(v) for v in rng.integers(1, 4, nsp)] if rng.random() < 0.4 else [1] * nsp
    padding = str(rng.choice(PADDINGS))
    stride = [1] * nsp if padding == "same" or rng.random() < 0.4 else [
        int(v) for v in rng.integers(1, 4, nsp)]
    if padding == "int":
        pad_arg = int(rng.integers(0, 3))
    elif padding == "tuple":
        pad_arg = tuple(int(v) for v in rng.integers(0, 3, nsp))
    elif padding == "pairs":
        pad_arg = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (nsp, 2)))
    else:
        pad_arg = padding
    pairs = reference.padding_pairs(pad_arg, kernel, dilation)
    mode = str(rng.choice(MODES))
    spatial = []
    for k, d, (b, a) in zip(kernel, dilation, pairs, strict=True):
        lo = max(1, d * (k - 1) + 1 - b - a)
        if mode == "reflect":
            lo = max(lo, max(b, a) + 1)
        elif mode == "circular":
            lo = max(lo, max(b, a))
        spatial.append(lo + int(rng.integers(0, extra + 1)))
    kind = rng.random()
    if kind < 0.2:  # depthwise (with a channel multiplier)
        groups = int(rng.integers(1, 5))
        cg, kg = 1, int(rng.integers(1, 3))
    else:
        groups = int(rng.choice([1, 1, 2, 3]))
        cg, kg = int(rng.integers(1, 4)), int(rng.integers(1, 7))
    unbatched = bool(rng.random() < 0.15)
    return dict(
        nsp=nsp, n=1 if unbatched else int(rng.integers(1, 3)), c=cg * groups, k=kg * groups,
        groups=groups,
        spatial=spatial, kernel=kernel, stride=stride, dilation=dilation, padding=pad_arg,
        padding_mode=mode, dtype=str(rng.choice(["float32", "float64"])),
        x_int=bool(rng.random() < 0.1), bias=bool(rng.random() < 0.5),
        unbatched=unbatched, flip=bool(rng.random() < 0.25),
        x_layout=str(rng.choice(LAYOUTS)), w_layout=str(rng.choice(LAYOUTS[:-1])),
        special=str(rng.choice(["none"] * 18 + ["nan", "inf"])),
        algorithm=str(rng.choice(["auto"] * 4 + ["direct", "gemm", "fft"])),
        data_seed=int(rng.integers(2**31)),
    )


def make_arrays(case: dict):
    """(x, weight, bias) as plain arrays (the logical values) for a convolution case."""
    rng = np.random.default_rng(case["data_seed"])
    dt = np.dtype(case["dtype"])
    xshape = (case["n"], case["c"], *case["spatial"])
    if case["x_int"]:
        x = rng.integers(-5, 6, xshape).astype(np.int16)
    else:
        x = rng.standard_normal(xshape).astype(dt)
    if case["special"] != "none" and not case["x_int"]:
        x.flat[int(rng.integers(x.size))] = np.nan if case["special"] == "nan" else -np.inf
    x = _broadcastable(x, case["x_layout"], case["unbatched"])
    w = rng.standard_normal((case["k"], case["c"] // case["groups"], *case["kernel"])).astype(dt)
    b = rng.standard_normal(case["k"]).astype(dt) if case["bias"] else None
    return x, w, b


def _conv_args(case: dict) -> dict:
    return dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"],
                groups=case["groups"], padding_mode=case["padding_mode"])


def _ref_conv_args(case: dict) -> dict:
    pairs = reference.padding_pairs(case["padding"], case["kernel"], case["dilation"])
    return dict(stride=case["stride"], padding_pairs=pairs, dilation=case["dilation"],
                groups=case["groups"], padding_mode=case["padding_mode"])


def _out_spatial(case: dict) -> list[int]:
    pairs = reference.padding_pairs(case["padding"], case["kernel"], case["dilation"])
    return [reference.output_size(n, k, s, b, a, d) for n, k, s, (b, a), d in
            zip(case["spatial"], case["kernel"], case["stride"], pairs, case["dilation"],
                strict=True)]


def _fastconv(case, x, w, b):
    func = getattr(fc, f"{'convolve' if case['flip'] else 'conv'}{case['nsp']}d", None)
    if func is None:  # convolve2d is the two-style function in fastconv.conv
        from fastconv.conv import convolve2d as func
    xa = _user(x, case["x_layout"], case["unbatched"])
    wa = with_layout(w, case["w_layout"])
    return _call(func, xa, wa, b, **_conv_args(case), algorithm=case["algorithm"])


def _torch_conv(case, x, w, b, dtype, *, flip=False):
    """The forward conv as a torch graph: (y, tx, tw); tx and tw require grad."""
    F = importlib.import_module("torch.nn.functional")
    nsp = case["nsp"]
    tx = _tensor(x, dtype, requires_grad=True)
    tw = _tensor(w, dtype, requires_grad=True)
    tb = None if b is None else _tensor(b, dtype)
    pairs = reference.padding_pairs(case["padding"], case["kernel"], case["dilation"])
    xin = tx
    flat = [v for pair in reversed(pairs) for v in pair]  # F.pad wants last axis first
    if any(flat):
        mode = "constant" if case["padding_mode"] == "zeros" else case["padding_mode"]
        xin = F.pad(tx, flat, mode=mode)
    win = _torch().flip(tw, dims=list(range(2, 2 + nsp))) if flip else tw
    y = getattr(F, f"conv{nsp}d")(xin, win, tb, stride=case["stride"],
                                  dilation=case["dilation"], groups=case["groups"])
    return y, tx, tw


def check_conv(case: dict, use_torch: bool) -> list[str]:
    x, w, b = make_arrays(case)
    wr = w[(slice(None), slice(None)) + (slice(None, None, -1),) * case["nsp"]] \
        if case["flip"] else w
    with np.errstate(invalid="ignore"):  # inf * 0 -> NaN is the expected answer
        want = reference.conv_nd(x, wr, b, **_ref_conv_args(case))
        scale = reference.conv_nd(np.abs(x), np.abs(wr), None if b is None else np.abs(b),
                                  **_ref_conv_args(case))
    dtype = np.dtype(case["dtype"])  # x_int (int16) promotes to the kernel's float dtype
    got = _fastconv(case, x, w, b)
    if case["algorithm"] == "fft":  # FFT rounding is relative to the whole output's scale
        scale = np.full_like(scale, np.nanmax(scale[np.isfinite(scale)], initial=1.0))
    torch_want = None
    if use_torch:
        with _torch().no_grad():
            torch_want = _torch_conv(case, x, w, b, dtype, flip=case["flip"])[0].numpy()
    return _check_result(got, want, scale, dtype, RTOL[dtype], case["unbatched"], torch_want)


# --- grad: conv1d/2d/3d_input, conv1d/2d/3d_weight, conv_bias -------------------------------


def _conv_grad_case(rng: np.random.Generator) -> dict:
    """A forward configuration whose reference gradient loop stays within LOOP_BUDGET,
    with the gradients' ``algorithm=`` ("auto", "direct", "gemm")."""
    while True:
        case = random_case(rng)
        loops = case["n"] * case["k"] * math.prod(_out_spatial(case))
        if loops <= LOOP_BUDGET:
            break
    for key in ("flip", "bias"):  # forward-only options
        del case[key]
    case.update(g_layout=str(rng.choice(LAYOUTS)),
                algorithm=str(rng.choice(["auto"] * 2 + ["direct", "gemm"])),
                special=str(rng.choice(["none"] * 16 + ["nan", "inf", "-inf"])))
    return case


@contextlib.contextmanager
def forced_grad_path(path: str):
    """Run the CPU input-gradient core of conv_transpose*d with ``path`` ("direct"/"gemm")
    instead of "auto": conv_transpose has no ``algorithm=``, so this passes ``path`` to the
    input-gradient runner (``fastconv._run.correlate_input``) for the call; "auto" leaves
    everything as it is."""
    mod = importlib.import_module("fastconv._run")
    real = mod.correlate_input
    if path == "auto":
        yield
        return

    def forced(plan, backend_name, g, weight, bias, algorithm="auto"):
        return real(plan, backend_name, g, weight, bias, path if algorithm == "auto" else
                    algorithm)

    mod.correlate_input = forced
    try:
        yield
    finally:
        mod.correlate_input = real


def _grad_output(rng, case, dt) -> np.ndarray:
    gshape = (case["n"], case["k"], *_out_spatial(case))
    if case["x_int"]:
        g = rng.integers(-5, 6, gshape).astype(np.int16)
    else:
        g = _with_special(rng, rng.standard_normal(gshape).astype(dt), case["special"])
    return _broadcastable(g, case["g_layout"], case["unbatched"])


def check_conv_input(case: dict, use_torch: bool) -> list[str]:
    rng = np.random.default_rng(case["data_seed"])
    dt = np.dtype(case["dtype"])
    xshape = (case["n"], case["c"], *case["spatial"])
    w = rng.standard_normal((case["k"], case["c"] // case["groups"], *case["kernel"])).astype(dt)
    g = _grad_output(rng, case, dt)
    ref = _ref_conv_args(case)
    with np.errstate(invalid="ignore"):
        want = reference.conv_input_nd(xshape, w, g, **ref)
        scale = reference.conv_input_nd(xshape, np.abs(w), np.abs(g.astype(np.float64)), **ref)
    func = getattr(fc.grad, f"conv{case['nsp']}d_input")
    size = xshape[1:] if case["unbatched"] else xshape
    got = _call(func, size, with_layout(w, case["w_layout"]),
                _user(g, case["g_layout"], case["unbatched"]), **_conv_args(case),
                algorithm=case["algorithm"])
    torch_want = None
    if use_torch:
        y, tx, _ = _torch_conv(case, np.zeros(xshape), w, None, dt)
        y.backward(_tensor(g, dt))
        torch_want = tx.grad.numpy()
    return _check_result(got, want, scale, dt, RTOL[dt], case["unbatched"], torch_want)


def check_conv_weight(case: dict, use_torch: bool) -> list[str]:
    rng = np.random.default_rng(case["data_seed"])
    dt = np.dtype(case["dtype"])
    xshape = (case["n"], case["c"], *case["spatial"])
    if case["x_int"]:
        x = rng.integers(-5, 6, xshape).astype(np.int16)
    else:  # NaN/Inf in x: the case the GEMM weight core hands to the direct one
        x = _with_special(rng, rng.standard_normal(xshape).astype(dt), case["special"])
    x = _broadcastable(x, case["x_layout"], case["unbatched"])
    w_shape = (case["k"], case["c"] // case["groups"], *case["kernel"])
    g = _grad_output(rng, dict(case, x_int=False, special="none"), dt)
    ref = _ref_conv_args(case)
    with np.errstate(invalid="ignore"):
        want = reference.conv_weight_nd(x, w_shape, g, **ref)
        scale = reference.conv_weight_nd(np.abs(x.astype(np.float64)), w_shape, np.abs(g),
                                         **ref)
    func = getattr(fc.grad, f"conv{case['nsp']}d_weight")
    got = _call(func, _user(x, case["x_layout"], case["unbatched"]), w_shape,
                _user(g, case["g_layout"], case["unbatched"]), **_conv_args(case),
                algorithm=case["algorithm"])
    torch_want = None
    if use_torch:
        y, _, tw = _torch_conv(case, x, np.zeros(w_shape), None, dt)
        y.backward(_tensor(g, dt))
        torch_want = tw.grad.numpy()
    # the weight gradient is never unbatched: it always has weight_size
    return _check_result(got, want, scale, dt, RTOL[dt], False, torch_want)


def _conv_bias_case(rng: np.random.Generator) -> dict:
    nsp = int(rng.integers(0, 4))
    batched = bool(rng.random() < 0.8)
    return dict(nsp=nsp, n=int(rng.integers(1, 4)) if batched else 1,
                k=int(rng.integers(1, 7)), spatial=[int(v) for v in rng.integers(1, 7, nsp)],
                batched=batched,
                dtype=str(rng.choice(["float32", "float64"])),
                g_int=bool(rng.random() < 0.1), g_layout=str(rng.choice(LAYOUTS)),
                special=str(rng.choice(["none"] * 16 + ["nan", "inf", "-inf"])),
                data_seed=int(rng.integers(2**31)))


def check_conv_bias(case: dict, use_torch: bool) -> list[str]:
    rng = np.random.default_rng(case["data_seed"])
    dt = np.dtype(case["dtype"])
    gshape = (case["n"], case["k"], *case["spatial"])
    if case["g_int"]:
        g = rng.integers(-5, 6, gshape).astype(np.int16)
        dt = np.dtype(np.float32)
    else:
        g = _with_special(rng, rng.standard_normal(gshape).astype(dt), case["special"])
    unbatched = not case["batched"]
    g = _broadcastable(g, case["g_layout"], unbatched)
    axes = (0,) + tuple(range(2, g.ndim))
    want = g.astype(np.float64).sum(axis=axes)[None]
    scale = np.abs(g.astype(np.float64)).sum(axis=axes)[None]
    got = _call(fc.grad.conv_bias, _user(g, case["g_layout"], unbatched),
                batched=case["batched"])
    torch_want = None
    if use_torch:
        torch_want = _tensor(g, dt).sum(dim=axes).numpy()[None]
    # the result is (K,) for both forms: compare as a batch of one
    return _check_result(got[None], want, scale, dt, RTOL[dt], False, torch_want)


# --- transpose: conv_transpose1d/2d/3d ------------------------------------------------------


def _conv_transpose_case(rng: np.random.Generator) -> dict:
    while True:
        nsp = int(rng.integers(1, 4))
        kmax, extra = {1: (5, 6), 2: (4, 4), 3: (3, 2)}[nsp]
        kernel = [int(v) for v in rng.integers(1, kmax + 1, nsp)]
        dilation = ([int(v) for v in rng.integers(1, 4, nsp)] if rng.random() < 0.4
                    else [1] * nsp)
        stride = [int(v) for v in rng.integers(1, 4, nsp)] if rng.random() < 0.6 else [1] * nsp
        pad = [int(v) for v in rng.integers(0, 3, nsp)] if rng.random() < 0.6 else [0] * nsp
        opad = [int(rng.integers(0, max(s, d))) if rng.random() < 0.5 else 0
                for s, d in zip(stride, dilation, strict=True)]
        spatial = []
        for k, s, d, p, op in zip(kernel, stride, dilation, pad, opad, strict=True):
            n = 1 + int(rng.integers(0, extra + 1))
            while (n - 1) * s - 2 * p + d * (k - 1) + op + 1 < 1:
                n += 1
            spatial.append(n)
        if rng.random() < 0.2:  # depthwise
            groups, cg, kg = int(rng.integers(1, 5)), 1, int(rng.integers(1, 3))
        else:
            groups = int(rng.choice([1, 1, 2, 3]))
            cg, kg = int(rng.integers(1, 4)), int(rng.integers(1, 5))
        unbatched = bool(rng.random() < 0.15)
        n = 1 if unbatched else int(rng.integers(1, 3))
        if n * cg * groups * math.prod(spatial) <= LOOP_BUDGET:
            break
    return dict(
        nsp=nsp, n=n, c=cg * groups, k=kg * groups, groups=groups, spatial=spatial,
        kernel=kernel, stride=_int_or_tuple(rng, stride), padding=_int_or_tuple(rng, pad),
        output_padding=_int_or_tuple(rng, opad), dilation=_int_or_tuple(rng, dilation),
        dtype=str(rng.choice(["float32", "float64"])), x_int=bool(rng.random() < 0.1),
        bias=bool(rng.random() < 0.5), unbatched=unbatched,
        x_layout=str(rng.choice(LAYOUTS)), w_layout=str(rng.choice(LAYOUTS[:-1])),
        special=str(rng.choice(["none"] * 16 + ["nan", "inf", "-inf"])),
        path=str(rng.choice(["auto"] * 2 + ["direct", "gemm"])),
        data_seed=int(rng.integers(2**31)),
    )


def check_conv_transpose(case: dict, use_torch: bool) -> list[str]:
    rng = np.random.default_rng(case["data_seed"])
    dt = np.dtype(case["dtype"])
    xshape = (case["n"], case["c"], *case["spatial"])
    if case["x_int"]:
        x = rng.integers(-5, 6, xshape).astype(np.int16)
    else:
        x = _with_special(rng, rng.standard_normal(xshape).astype(dt), case["special"])
    x = _broadcastable(x, case["x_layout"], case["unbatched"])
    w = rng.standard_normal((case["c"], case["k"] // case["groups"], *case["kernel"])).astype(dt)
    b = rng.standard_normal(case["k"]).astype(dt) if case["bias"] else None
    args = dict(stride=case["stride"], padding=case["padding"],
                output_padding=case["output_padding"], groups=case["groups"],
                dilation=case["dilation"])
    with np.errstate(invalid="ignore"):
        want = reference.conv_transpose_nd(x, w, b, **args)
        scale = reference.conv_transpose_nd(np.abs(x.astype(np.float64)), np.abs(w),
                                            None if b is None else np.abs(b), **args)
    func = getattr(fc, f"conv_transpose{case['nsp']}d")
    with forced_grad_path(case["path"]):
        got = _call(func, _user(x, case["x_layout"], case["unbatched"]),
                    with_layout(w, case["w_layout"]), b, **args)
    torch_want = None
    if use_torch:
        F = importlib.import_module("torch.nn.functional")
        conv_t = getattr(F, f"conv_transpose{case['nsp']}d")
        torch_want = conv_t(_tensor(x, dt), _tensor(w, dt), None if b is None else
                            _tensor(b, dt), **args).numpy()
    return _check_result(got, want, scale, dt, RTOL[dt], case["unbatched"], torch_want)


# --- pool: max_pool/avg_pool forward and backward ------------------------------------------


def _pool_case(rng: np.random.Generator, kind: str) -> dict:
    """A random valid pooling configuration (SPEC §4's padding limit, output >= 1)."""
    while True:
        nsp = int(rng.integers(1, 4))
        kmax, extra = {1: (5, 8), 2: (4, 5), 3: (3, 3)}[nsp]
        kernel = [int(v) for v in rng.integers(1, kmax + 1, nsp)]
        dilation = ([int(v) for v in rng.integers(1, 4, nsp)]
                    if kind == "max" and rng.random() < 0.4 else [1] * nsp)
        stride = (None if rng.random() < 0.3 else
                  [int(v) for v in rng.integers(1, 4, nsp)])
        limits = [k // 2 for k in kernel]  # PyTorch's rule, max and avg alike
        pad = ([int(rng.integers(0, lim + 1)) for lim in limits] if rng.random() < 0.6
               else [0] * nsp)
        spatial = [max(1, d * (k - 1) + 1 - 2 * p) + int(rng.integers(0, extra + 1))
                   for k, d, p in zip(kernel, dilation, pad, strict=True)]
        unbatched = bool(rng.random() < 0.15)
        n = 1 if unbatched else int(rng.integers(1, 3))
        c = int(rng.integers(1, 4))
        ceil_mode = bool(rng.random() < 0.4)
        strides = stride or kernel
        empty = any(  # a dilated window entirely in the padding is refused (a ValueError)
            pool_empty_window(m, k, st, p, d, pool_out(m, k, st, p, d, ceil_mode)) is not None
            for m, k, st, p, d in zip(spatial, kernel, strides, pad, dilation, strict=True))
        if not empty and n * c * math.prod(spatial) * math.prod(kernel) <= 6 * LOOP_BUDGET:
            break
    divisor = None
    if kind == "avg" and rng.random() < 0.25:
        divisor = int(rng.choice([-3, 1, 2, 3, 5, 7]))
    return dict(
        nsp=nsp, n=n, c=c, spatial=spatial, kernel_size=_int_or_tuple(rng, kernel),
        stride=None if stride is None else _int_or_tuple(rng, stride),
        padding=_int_or_tuple(rng, pad), dilation=_int_or_tuple(rng, dilation),
        ceil_mode=ceil_mode,
        count_include_pad=bool(rng.random() < 0.5), divisor_override=divisor,
        return_indices=bool(rng.random() < 0.6),
        dtype=str(rng.choice(["float32", "float64"])),
        values=str(rng.choice(["normal"] * 3 + ["ties", "ties", "int16"])),
        special=str(rng.choice(["none"] * 14 + ["nan", "inf", "-inf"])),
        unbatched=unbatched, x_layout=str(rng.choice(LAYOUTS)),
        g_layout=str(rng.choice(LAYOUTS)), data_seed=int(rng.integers(2**31)),
    )


def _pool_x(rng, case: dict) -> np.ndarray:
    """The pooled input: normal values, or small integers (many ties) as floats or int16."""
    shape = (case["n"], case["c"], *case["spatial"])
    dt = np.dtype(case["dtype"])
    if case["values"] == "normal":
        x = rng.standard_normal(shape).astype(dt)
    else:
        x = rng.integers(-3, 4, shape).astype(np.int16 if case["values"] == "int16" else dt)
    return _broadcastable(_with_special(rng, x, case["special"]), case["x_layout"],
                          case["unbatched"])


def _pool_args(case: dict, kind: str) -> dict:
    args = dict(kernel_size=case["kernel_size"], stride=case["stride"],
                padding=case["padding"], ceil_mode=case["ceil_mode"])
    if kind == "max":
        args["dilation"] = case["dilation"]
    else:
        args.update(count_include_pad=case["count_include_pad"],
                    divisor_override=case["divisor_override"])
    return args


def _torch_pool_ok(case: dict, kind: str) -> bool:
    """Whether PyTorch accepts the case: padding at most kernel_size // 2 on every axis,
    and (F.avg_pool3d only) no spatial size below the kernel size."""
    nsp = case["nsp"]
    kernel = _per_axis(case["kernel_size"], nsp)
    if kind == "avg" and nsp == 3 and any(n < k for n, k in zip(case["spatial"], kernel,
                                                                 strict=True)):
        return False
    return all(p <= k // 2 for p, k in zip(_per_axis(case["padding"], nsp), kernel,
                                           strict=True))


def has_empty_window(case: dict) -> bool:
    """Whether some max-pooling window has no tap inside the input (dilation can step
    over it): PyTorch's backward then scatters to an index past the plane's end, writing
    out of bounds (heap corruption), so such cases skip the torch gradient oracle."""
    nsp = case["nsp"]
    kernel, pad = _per_axis(case["kernel_size"], nsp), _per_axis(case["padding"], nsp)
    stride = kernel if case["stride"] is None else _per_axis(case["stride"], nsp)
    dil = _per_axis(case["dilation"], nsp)
    for n, k, s, p, d in zip(case["spatial"], kernel, stride, pad, dil, strict=True):
        for o in range(reference.pool_output_size(n, k, s, p, d, case["ceil_mode"])):
            if not any(0 <= o * s - p + r * d < n for r in range(k)):
                return True
    return False


def _torch_pool(case: dict, kind: str, tx):
    """F.max_pool*d (values, indices) or F.avg_pool*d (values, None) of a torch tensor;
    1-D average pooling runs as 2-D on a unit axis (avg_pool1d has no divisor_override)."""
    F = importlib.import_module("torch.nn.functional")
    nsp, args = case["nsp"], _pool_args(case, kind)
    if kind == "max":
        y, idx = getattr(F, f"max_pool{nsp}d")(tx, return_indices=True, **args)
        return y, idx
    if nsp == 1:
        for key in ("kernel_size", "stride", "padding"):
            if args[key] is not None:
                args[key] = (1 if key != "padding" else 0, _per_axis(args[key], 1)[0])
        return F.avg_pool2d(tx[:, :, None], **args)[:, :, 0], None
    return getattr(F, f"avg_pool{nsp}d")(tx, **args), None


def _pool_dtype(case: dict, *arrays) -> np.dtype:
    return np.dtype(np.result_type(*[a.dtype for a in arrays], np.float32))


def _check_pool(case: dict, use_torch: bool, kind: str) -> list[str]:
    rng = np.random.default_rng(case["data_seed"])
    x = _pool_x(rng, case)
    dt = _pool_dtype(case, x)
    args = _pool_args(case, kind)
    func = getattr(fc, f"{kind}_pool{case['nsp']}d")
    xa = _user(x, case["x_layout"], case["unbatched"])
    use_torch = use_torch and _torch_pool_ok(case, kind)
    with np.errstate(invalid="ignore"):
        if kind == "max":
            want, want_idx = reference.max_pool_nd(x, **args)
            scale = np.abs(want)  # max pooling is exact
            got = _call(func, xa, return_indices=case["return_indices"], **args)
        else:
            want = reference.avg_pool_nd(x, **args)
            scale = reference.avg_pool_nd(np.abs(x.astype(np.float64)), **args)
            got = _call(func, xa, **args)
    torch_want = torch_idx = None
    if use_torch:
        y, idx = _torch_pool(case, kind, _tensor(x, dt))
        torch_want, torch_idx = y.numpy(), None if idx is None else idx.numpy()
    rtol = 0.0 if kind == "max" else RTOL[dt]
    if kind == "max" and case["return_indices"]:
        got, got_idx = got
        got_idx = got_idx[None] if case["unbatched"] else got_idx
        problems = _check_result(got, want, scale, dt, rtol, case["unbatched"], torch_want)
        if got_idx.dtype != np.int64:
            problems.append(f"indices dtype {got_idx.dtype} != int64")
        for name, ref_idx in (("reference", want_idx), ("torch", torch_idx)):
            if ref_idx is not None and (got_idx.shape != ref_idx.shape
                                        or not np.array_equal(got_idx, ref_idx)):
                bad = "shape" if got_idx.shape != ref_idx.shape else \
                    f"{int((got_idx != ref_idx).sum())} differ"
                problems.append(f"indices vs {name}: {bad}")
        return problems
    return _check_result(got, want, scale, dt, rtol, case["unbatched"], torch_want)


def _check_pool_grad(case: dict, use_torch: bool, kind: str) -> list[str]:
    rng = np.random.default_rng(case["data_seed"])
    x = _pool_x(rng, case)
    args = _pool_args(case, kind)
    out = (reference.max_pool_nd(x, **args)[0] if kind == "max"
           else reference.avg_pool_nd(x, **args))
    g = rng.standard_normal(out.shape).astype(case["dtype"])
    g = _broadcastable(g, case["g_layout"], case["unbatched"])
    dt = _pool_dtype(case, x, g)
    backward = getattr(reference, f"{kind}_pool_backward_nd")
    want = backward(g, x, **args)
    scale = backward(np.abs(g.astype(np.float64)), x, **args)
    func = getattr(fc.grad, f"{kind}_pool{case['nsp']}d")
    got = _call(func, _user(g, case["g_layout"], case["unbatched"]),
                _user(x, case["x_layout"], case["unbatched"]), **args)
    torch_want = None
    if use_torch and _torch_pool_ok(case, kind) and not (kind == "max"
                                                        and has_empty_window(case)):
        tx = _tensor(x, dt, requires_grad=True)
        _torch_pool(case, kind, tx)[0].backward(_tensor(g, dt))
        torch_want = tx.grad.numpy()
    return _check_result(got, want, scale, dt, RTOL[dt], case["unbatched"], torch_want)


GENERATORS = {
    "conv": random_case,
    "conv_input": _conv_grad_case,
    "conv_weight": _conv_grad_case,
    "conv_bias": _conv_bias_case,
    "conv_transpose": _conv_transpose_case,
    "max_pool": lambda rng: _pool_case(rng, "max"),
    "avg_pool": lambda rng: _pool_case(rng, "avg"),
    "max_pool_grad": lambda rng: _pool_case(rng, "max"),
    "avg_pool_grad": lambda rng: _pool_case(rng, "avg"),
}
CHECKS = {
    "conv": check_conv,
    "conv_input": check_conv_input,
    "conv_weight": check_conv_weight,
    "conv_bias": check_conv_bias,
    "conv_transpose": check_conv_transpose,
    "max_pool": lambda case, use_torch: _check_pool(case, use_torch, "max"),
    "avg_pool": lambda case, use_torch: _check_pool(case, use_torch, "avg"),
    "max_pool_grad": lambda case, use_torch: _check_pool_grad(case, use_torch, "max"),
    "avg_pool_grad": lambda case, use_torch: _check_pool_grad(case, use_torch, "avg"),
}


def function_name(case: dict) -> str:
    """The public function a case calls, e.g. ``fc.grad.conv2d_input``."""
    op, n = case["op"], case["nsp"]
    if op == "conv":
        return f"fc.{'convolve' if case['flip'] else 'conv'}{n}d"
    if op in ("conv_input", "conv_weight"):
        return f"fc.grad.conv{n}d_{op[5:]}"
    if op == "conv_bias":
        return "fc.grad.conv_bias"
    if op == "conv_transpose":
        return f"fc.conv_transpose{n}d"
    if op.endswith("_grad"):
        return f"fc.grad.{op[:3]}_pool{n}d"
    return f"fc.{op}{n}d"


def check_case(case: dict, *, use_torch: bool = HAS_TORCH, device: str = "cpu") -> list[str]:
    """Problems found for one case (empty list: fastconv agrees with every oracle). With
    ``device="cuda"`` every fastconv call of the case also runs on the GPU, which must agree
    with the CPU backend, and the GPU's results meet the oracles."""
    _DEVICE.update(name=device, problems=[])
    try:
        problems = CHECKS[case["op"]](case, use_torch)
    except Exception as exc:  # a valid case must not raise
        problems = [f"raised {type(exc).__name__}: {exc}"]
    finally:
        _DEVICE["name"] = "cpu"
    return _DEVICE["problems"] + problems


def run(n: int, seed: int = 0, *, use_torch: bool = HAS_TORCH, out=print, cases=None,
        ops=None, counts: dict | None = None, device: str = "cpu",
        deadline: float | None = None) -> list[str]:
    """Check ``n`` cases (or the given case indices) of the given ops (names or groups,
    default all); return one reproducer line per mismatch. ``counts`` (a dict), when
    given, receives ``op -> [cases, mismatches, seconds]``. ``device="cuda"`` runs every
    case on the GPU too, against the CPU backend. ``deadline`` (a ``time.perf_counter()``
    value) stops before a case that would start after it."""
    t0 = time.perf_counter()
    selected = parse_ops(ops if ops is None or isinstance(ops, str) else ",".join(ops))
    failures = []
    stats = {} if counts is None else counts
    indices = range(n) if cases is None else cases
    done = 0
    for i in indices:
        if deadline is not None and time.perf_counter() > deadline:
            break
        op = pick_op(seed, i, selected)
        case = make_case(seed, i, op)
        t = time.perf_counter()
        problems = check_case(case, use_torch=use_torch, device=device)
        done += 1
        entry = stats.setdefault(op, [0, 0, 0.0])
        entry[0] += 1
        entry[2] += time.perf_counter() - t
        if problems:
            entry[1] += 1
            dev = "" if device == "cpu" else f" --device {device}"
            line = (f"MISMATCH {op} ({function_name(case)}): {'; '.join(problems)} | repro: "
                    f"python tests/fuzz.py --ops {op} --seed {seed} --case {i}{dev}  # {case}")
            failures.append(line)
            if out:
                out(line)
    if out:
        oracles = "NumPy reference" + (" and PyTorch" if use_torch else "")
        if device != "cpu":
            oracles = f"{device} vs the CPU backend, " + oracles
        for op in selected:
            if op in stats:
                cnt, bad, secs = stats[op]
                out(f"  {op:15s} {cnt:6d} cases {bad:4d} mismatches {secs:7.1f} s")
        left = "" if done == len(indices) else f" ({len(indices) - done} left at the deadline)"
        out(f"fuzz: {done} cases{left} vs {oracles}, {len(failures)} mismatches, "
            f"{time.perf_counter() - t0:.1f} s (seed {seed}, ops {','.join(selected)})")
    return failures


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="number of random cases")
    p.add_argument("--seed", type=int, default=0, help="base seed (case i uses [seed, i])")
    p.add_argument("--case", type=int, action="append", help="replay only this case index")
    p.add_argument("--ops", default="all",
                   help=f"comma-separated ops or groups {GROUPS} (default all): "
                        f"{', '.join(OPS)}")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch oracle")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: run every case on the GPU too, against the CPU backend "
                        "(NUMBA_ENABLE_CUDASIM=1 runs it in Numba's simulator)")
    args = p.parse_args(argv)
    if args.device == "cuda" and "cuda" not in fc.devices():
        p.error("--device cuda: no usable CUDA GPU (NUMBA_ENABLE_CUDASIM=1 uses the simulator)")
    try:
        selected = parse_ops(args.ops)
    except ValueError as exc:
        p.error(str(exc))
    if args.case:
        for i in args.case:
            op = pick_op(args.seed, i, selected)
            print(f"case {i}: {function_name(make_case(args.seed, i, op))} "
                  f"{make_case(args.seed, i, op)}")
    failures = run(args.n, args.seed, use_torch=HAS_TORCH and not args.no_torch,
                   cases=args.case, ops=",".join(selected), device=args.device)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
