"""Differential fuzzing of the forward convolution: fastconv vs the NumPy reference
(``tests/reference.py``) and, when installed, PyTorch.

Each case is drawn from ``numpy.random.default_rng([seed, index])``, so any single case
replays on its own::

    python tests/fuzz.py --n 10000 --seed 0     # make fuzz
    python tests/fuzz.py --seed 0 --case 1234   # replay one case, print its parameters

Prints one line per mismatch (with the reproducer), a summary count and the time, and
exits 1 on any mismatch. ``run()`` is also called by ``tests/test_conv.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reference  # noqa: E402

import fastconv as fc  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None
MODES = ("zeros", "reflect", "replicate", "circular")
LAYOUTS = ("contiguous", "fortran", "reversed", "sliced", "byteswapped", "broadcast")
PADDINGS = ("int", "tuple", "pairs", "valid", "same", "full")
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}


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


def make_arrays(case: dict):
    """(x, weight, bias) as plain arrays (the logical values) for a case."""
    rng = np.random.default_rng(case["data_seed"])
    dt = np.dtype(case["dtype"])
    xshape = (case["n"], case["c"], *case["spatial"])
    if case["x_int"]:
        x = rng.integers(-5, 6, xshape).astype(np.int16)
    else:
        x = rng.standard_normal(xshape).astype(dt)
    if case["special"] != "none" and not case["x_int"]:
        x.flat[int(rng.integers(x.size))] = np.nan if case["special"] == "nan" else -np.inf
    if case["x_layout"] == "broadcast":  # constant along the axis that will have stride 0
        axis = 1 if case["unbatched"] else 0
        x = np.repeat(x.take([0], axis=axis), x.shape[axis], axis=axis)
    w = rng.standard_normal((case["k"], case["c"] // case["groups"], *case["kernel"])).astype(dt)
    b = rng.standard_normal(case["k"]).astype(dt) if case["bias"] else None
    return x, w, b


def _fastconv(case, x, w, b):
    func = getattr(fc, f"{'convolve' if case['flip'] else 'conv'}{case['nsp']}d", None)
    if func is None:  # convolve2d is the two-style function in fastconv.conv
        from fastconv.conv import convolve2d as func
    xa = with_layout(x[0] if case["unbatched"] else x, case["x_layout"])
    wa = with_layout(w, case["w_layout"])
    return func(xa, wa, b, stride=case["stride"], padding=case["padding"],
                dilation=case["dilation"], groups=case["groups"],
                padding_mode=case["padding_mode"], algorithm=case["algorithm"])


def _torch(case, x, w, b, pairs, dtype):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)  # tiny problems: threads only add overhead to the oracle
    nsp = case["nsp"]
    tx = torch.from_numpy(np.ascontiguousarray(x, dtype=dtype))
    tw = torch.from_numpy(np.ascontiguousarray(w, dtype=dtype))
    if case["flip"]:
        tw = torch.flip(tw, dims=list(range(2, 2 + nsp)))
    tb = None if b is None else torch.from_numpy(np.ascontiguousarray(b, dtype=dtype))
    flat = [v for pair in reversed(pairs) for v in pair]  # F.pad wants last axis first
    if any(flat):
        mode = "constant" if case["padding_mode"] == "zeros" else case["padding_mode"]
        tx = F.pad(tx, flat, mode=mode)
    conv = getattr(F, f"conv{nsp}d")
    with torch.no_grad():
        y = conv(tx, tw, tb, stride=case["stride"], dilation=case["dilation"],
                 groups=case["groups"])
    return y.numpy()


def compare(got: np.ndarray, want: np.ndarray, scale: np.ndarray, rtol: float) -> str | None:
    """None when ``got`` matches ``want``: same NaN/Inf positions (and signs), finite values
    within ``rtol * scale`` (``scale`` = the correlation of |x| with |w|: a rounding bound)."""
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
    tol = rtol * scale[fin] + 10 * np.finfo(got.dtype).tiny
    if np.any(err > tol):
        i = int(np.argmax(err - tol))
        return f"max error {err[i]:.3g} > tol {tol[i]:.3g} (want {want[fin][i]:.6g})"
    return None


def check_case(case: dict, *, use_torch: bool = HAS_TORCH) -> list[str]:
    """Problems found for one case (empty list: fastconv agrees with every oracle)."""
    x, w, b = make_arrays(case)
    pairs = reference.padding_pairs(case["padding"], case["kernel"], case["dilation"])
    wr = w[(slice(None), slice(None)) + (slice(None, None, -1),) * case["nsp"]] \
        if case["flip"] else w
    ref_args = dict(stride=case["stride"], padding_pairs=pairs, dilation=case["dilation"],
                    groups=case["groups"], padding_mode=case["padding_mode"])
    with np.errstate(invalid="ignore"):  # inf * 0 -> NaN is the expected answer
        want = reference.conv_nd(x, wr, b, **ref_args)
        scale = reference.conv_nd(np.abs(x), np.abs(wr), None if b is None else np.abs(b),
                                  **ref_args)
    dtype = np.dtype(case["dtype"])  # x_int (int16) promotes to the kernel's float dtype
    try:
        got = _fastconv(case, x, w, b)
    except Exception as exc:  # a valid case must not raise
        return [f"raised {type(exc).__name__}: {exc}"]
    problems = []
    if case["unbatched"]:
        if got.shape != want.shape[1:]:
            return [f"unbatched shape {got.shape} != {want.shape[1:]}"]
        got = got[None]
    if got.dtype != dtype:
        problems.append(f"dtype {got.dtype} != {dtype}")
    if case["algorithm"] == "fft":  # FFT rounding is relative to the whole output's scale
        scale = np.full_like(scale, np.nanmax(scale[np.isfinite(scale)], initial=1.0))
    msg = compare(got, want, scale, RTOL[dtype])
    if msg:
        problems.append(f"vs reference: {msg}")
    if use_torch:
        msg = compare(got, _torch(case, x, w, b, pairs, dtype), scale, RTOL[dtype])
        if msg:
            problems.append(f"vs torch: {msg}")
    return problems


def run(n: int, seed: int = 0, *, use_torch: bool = HAS_TORCH, out=print,
        cases=None) -> list[str]:
    """Check ``n`` cases (or the given case indices); return one reproducer line per mismatch."""
    t0 = time.perf_counter()
    failures = []
    indices = range(n) if cases is None else cases
    for i in indices:
        case = random_case(np.random.default_rng([seed, i]))
        problems = check_case(case, use_torch=use_torch)
        if problems:
            line = (f"MISMATCH {'; '.join(problems)} | repro: python tests/fuzz.py "
                    f"--seed {seed} --case {i}  # {case}")
            failures.append(line)
            if out:
                out(line)
    if out:
        oracles = "NumPy reference" + (" and PyTorch" if use_torch else "")
        out(f"fuzz: {len(indices)} cases vs {oracles}, {len(failures)} mismatches, "
            f"{time.perf_counter() - t0:.1f} s (seed {seed})")
    return failures


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="number of random cases")
    p.add_argument("--seed", type=int, default=0, help="base seed (case i uses [seed, i])")
    p.add_argument("--case", type=int, action="append", help="replay only this case index")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch oracle")
    args = p.parse_args(argv)
    if args.case:
        for i in args.case:
            print(f"case {i}: {random_case(np.random.default_rng([args.seed, i]))}")
    failures = run(args.n, args.seed, use_torch=HAS_TORCH and not args.no_torch,
                   cases=args.case)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
