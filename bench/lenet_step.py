"""Per-op time of one LeNet training step (batch 64, float32): fastconv against PyTorch.

Times every op of ``examples/lenet_digits.py``'s step on its own, with the shapes it has
in the step: the convolutions forward, their input and weight gradients, pooling and its
gradient (the functions, and the ``MaxPool2d`` layer that the step runs; PyTorch: the
indices form that its autograd runs), ReLU and the NumPy dense part; then the whole
step. Each op is timed as the median of ``--rounds`` calls after a warm-up, every op of
both frameworks once per round (interleaved: a load change on a shared machine hits all
alike; see NUMBA-SPEED's note that one process is fair to neither, so also run
``--only`` per framework); PyTorch's ops are the ATen calls its autograd makes
(``convolution_backward``, ``max_pool2d_with_indices_backward``).

    python bench/lenet_step.py                 # both frameworks, 2 threads
    python bench/lenet_step.py --only fastconv # one framework (a process of its own)
    python bench/lenet_step.py --threads 1 --cpu-time  # CPU time: a loaded machine

Run under ``flock /tmp/bench.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))


def median_times(ops: dict, rounds: int, clock=time.perf_counter) -> dict:
    """``{framework: {op: median seconds}}``; the calls interleaved round by round (every
    op of every framework once per round), so a load change on a shared machine hits all
    of them alike."""
    calls = [(fw, name, fn) for fw, d in ops.items() for name, fn in d.items()]
    for _, _, fn in calls:  # warm-up: compiling, allocator
        for _ in range(3):
            fn()
    times: dict = {(fw, name): [] for fw, name, _ in calls}
    for _ in range(rounds):
        for fw, name, fn in calls:
            t0 = clock()
            fn()
            times[(fw, name)].append(clock() - t0)
    out: dict = {fw: {} for fw in ops}
    for (fw, name), t in times.items():
        out[fw][name] = float(np.median(t))
    return out


def shapes(seed: int = 0):
    """The step's arrays: input batch, weights and gradients of the right shapes."""
    rng = np.random.default_rng(seed)
    f = np.float32
    a = {
        "x": rng.random((64, 1, 28, 28), dtype=f),
        "w1": rng.standard_normal((6, 1, 5, 5), dtype=f) * f(0.2),
        "b1": rng.standard_normal(6, dtype=f),
        "a1": rng.standard_normal((64, 6, 28, 28), dtype=f),  # conv1 output
        "p1": rng.standard_normal((64, 6, 14, 14), dtype=f),  # pool1 output / conv2 input
        "w2": rng.standard_normal((16, 6, 5, 5), dtype=f) * f(0.1),
        "b2": rng.standard_normal(16, dtype=f),
        "a2": rng.standard_normal((64, 16, 10, 10), dtype=f),  # conv2 output
        "p2": rng.standard_normal((64, 16, 5, 5), dtype=f),
    }
    return a


def fastconv_ops(a):
    import fastconv as fc
    from fastconv import grad

    pools = {k: fc.MaxPool2d(2) for k in ("a1", "a2")}  # the step's path: the layer keeps
    for k, layer in pools.items():  # each maximum's window position (not x)
        layer(a[k])
    return {
        "conv1 forward": lambda: fc.conv2d(a["x"], a["w1"], a["b1"], padding=2),
        "conv1 dW": lambda: grad.conv2d_weight(a["x"], a["w1"].shape, a["a1"], padding=2),
        "conv1 dX": lambda: grad.conv2d_input(a["x"].shape, a["w1"], a["a1"], padding=2),
        "conv1 db": lambda: grad.conv_bias(a["a1"]),
        "pool1 forward": lambda: fc.max_pool2d(a["a1"], 2),
        "pool1 backward": lambda: grad.max_pool2d(a["p1"], a["a1"], 2),
        "pool1 layer fwd": lambda: pools["a1"](a["a1"]),
        "pool1 layer bwd": lambda: pools["a1"].backward(a["p1"]),
        "relu1 fwd+bwd": lambda: _relu(a["a1"]),
        "conv2 forward": lambda: fc.conv2d(a["p1"], a["w2"], a["b2"]),
        "conv2 dW": lambda: grad.conv2d_weight(a["p1"], a["w2"].shape, a["a2"]),
        "conv2 dX": lambda: grad.conv2d_input(a["p1"].shape, a["w2"], a["a2"]),
        "conv2 db": lambda: grad.conv_bias(a["a2"]),
        "pool2 forward": lambda: fc.max_pool2d(a["a2"], 2),
        "pool2 backward": lambda: grad.max_pool2d(a["p2"], a["a2"], 2),
        "pool2 layer fwd": lambda: pools["a2"](a["a2"]),
        "pool2 layer bwd": lambda: pools["a2"].backward(a["p2"]),
        "relu2 fwd+bwd": lambda: _relu(a["a2"]),
    }


def _relu(x):
    """The example's in-place ReLU, forward and backward, on a fresh copy (its input)."""
    import lenet_digits as ex

    relu, y = ex.ReLU(), x.copy()
    return relu.backward(relu(y).copy())


def torch_ops(a):
    import torch
    import torch.nn.functional as F

    t = {k: torch.from_numpy(v) for k, v in a.items()}
    aten = torch.ops.aten
    _, idx1 = F.max_pool2d(t["a1"], 2, return_indices=True)
    _, idx2 = F.max_pool2d(t["a2"], 2, return_indices=True)

    def conv_bwd(g, x, w, pad, mask):
        return aten.convolution_backward(g, x, w, [w.shape[0]], [1, 1], [pad, pad], [1, 1],
                                         False, [0, 0], 1, mask)

    def pool_bwd(g, x, idx):
        return aten.max_pool2d_with_indices_backward(g, x, [2, 2], [2, 2], [0, 0], [1, 1],
                                                     False, idx)

    def relu(x):
        y = torch.relu(x)
        return aten.threshold_backward(y, y, 0)

    return {
        "conv1 forward": lambda: F.conv2d(t["x"], t["w1"], t["b1"], padding=2),
        "conv1 dW": lambda: conv_bwd(t["a1"], t["x"], t["w1"], 2, [False, True, False]),
        "conv1 dX": lambda: conv_bwd(t["a1"], t["x"], t["w1"], 2, [True, False, False]),
        "conv1 db": lambda: t["a1"].sum((0, 2, 3)),
        "pool1 forward": lambda: F.max_pool2d(t["a1"], 2),
        "pool1 backward": lambda: aten.max_pool2d_with_indices_backward(
            t["p1"], t["a1"], [2, 2], [2, 2], [0, 0], [1, 1], False, idx1),
        "pool1 layer fwd": lambda: F.max_pool2d(t["a1"], 2, return_indices=True),
        "pool1 layer bwd": lambda: pool_bwd(t["p1"], t["a1"], idx1),
        "relu1 fwd+bwd": lambda: relu(t["a1"]),
        "conv2 forward": lambda: F.conv2d(t["p1"], t["w2"], t["b2"]),
        "conv2 dW": lambda: conv_bwd(t["a2"], t["p1"], t["w2"], 0, [False, True, False]),
        "conv2 dX": lambda: conv_bwd(t["a2"], t["p1"], t["w2"], 0, [True, False, False]),
        "conv2 db": lambda: t["a2"].sum((0, 2, 3)),
        "pool2 forward": lambda: F.max_pool2d(t["a2"], 2),
        "pool2 backward": lambda: aten.max_pool2d_with_indices_backward(
            t["p2"], t["a2"], [2, 2], [2, 2], [0, 0], [1, 1], False, idx2),
        "pool2 layer fwd": lambda: F.max_pool2d(t["a2"], 2, return_indices=True),
        "pool2 layer bwd": lambda: pool_bwd(t["p2"], t["a2"], idx2),
        "relu2 fwd+bwd": lambda: relu(t["a2"]),
    }


def dense_part():
    import lenet_digits as ex

    rng = np.random.default_rng(0)
    model = ex.LeNet(0)
    feats = rng.standard_normal((64, 400), dtype=np.float32)
    labels = rng.integers(0, 10, 64)

    def run():
        x = feats
        for layer in model.dense:
            x = layer(x)
        _, g = ex.cross_entropy(x, labels)
        g = g.astype(np.float32)
        for layer in reversed(model.dense):
            g = layer.backward(g)

    return run


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["fastconv", "torch"])
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cpu-time", action="store_true",
                    help="time CPU seconds of this process (time.process_time) instead of "
                         "wall time: steadier on a loaded machine, meaningful with --threads 1")
    args = ap.parse_args(argv)
    import lenet_digits as ex

    os.environ["FASTCONV_THREADS"] = str(args.threads)
    ex._limit_threads()  # as the example runs: NumPy's and SciPy's BLAS on one thread
    frameworks = [args.only] if args.only else ["fastconv", "torch"]
    a = shapes()
    ops = {}
    if "fastconv" in frameworks:
        ops["fastconv"] = fastconv_ops(a)
        ops["fastconv"]["dense + loss (NumPy)"] = dense_part()
        ops["fastconv"]["whole step"] = ex.make_step("fastconv")
    if "torch" in frameworks:
        ops["torch"] = torch_ops(a)
        ops["torch"]["whole step"] = ex.make_step("torch")
    names = list(next(iter(ops.values())))
    for fw in ops:
        for n in ops[fw]:
            if n not in names:
                names.append(n)
    res = median_times(ops, args.rounds,
                       time.process_time if args.cpu_time else time.perf_counter)
    head = f"{'op':24s}" + "".join(f"{fw:>12s}" for fw in res)
    if len(res) == 2:
        head += f"{'ratio':>8s}"
    print(f"{head}\n" + "-" * len(head))
    for n in names:
        cells = [res[fw].get(n) for fw in res]
        line = f"{n:24s}" + "".join("" if c is None else f"{c * 1e3:9.3f} ms" for c in cells)
        if len(res) == 2 and None not in cells:
            line += f"{cells[0] / cells[1]:8.1f}x"
        print(line)


if __name__ == "__main__":
    main()
