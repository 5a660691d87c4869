"""Train a LeNet-style CNN on scikit-learn's digits with fastconv's layers and gradients.

The course's next chapter after convolutions, padding, channels and pooling: a network
trained end to end. The convolutions, pooling and their backward passes are fastconv's
(``fc.Conv2d``, ``fc.MaxPool2d``); the two dense layers, ReLU and softmax cross-entropy are
a few lines of NumPy here (fastconv stays a conv/pool library).

    python examples/lenet_digits.py                  # 10 epochs, test accuracy, epoch times
    python examples/lenet_digits.py --plot lenet.png # + loss/accuracy curves and conv1 kernels
    python examples/lenet_digits.py --compare        # + the same net in PyTorch: losses, step time

Data: the 1,797 8x8 digits that ship inside scikit-learn, upsampled to 28x28 (bilinear)
and scaled to [0, 1]; after a seeded shuffle the last 360 images (20 %) are the test set.
Network: conv 5x5 (1 -> 6, padding 2) -> ReLU -> 2x2 max pool -> conv 5x5 (6 -> 16) -> ReLU
-> 2x2 max pool -> dense 400 -> 120 -> ReLU -> dense 120 -> 10; SGD with momentum 0.9.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

import fastconv as fc

N_TEST = 360
BATCH = 64


def load_digits_28(seed: int = 0):
    """``((x_train, y_train), (x_test, y_test))``: ``x`` is ``(N, 1, 28, 28)`` float64 in
    [0, 1], ``y`` int labels; the last ``N_TEST`` images of a seeded shuffle are the test set."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = zoom(digits.images / 16.0, (1, 3.5, 3.5), order=1).clip(0.0, 1.0)  # 8x8 -> 28x28
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order][:, None], digits.target[order]
    return (x[:-N_TEST], y[:-N_TEST]), (x[-N_TEST:], y[-N_TEST:])


class Dense:
    """``y = x @ weight.T + bias`` with PyTorch's default initialisation."""

    def __init__(self, n_in: int, n_out: int, rng, dtype):
        bound = 1.0 / math.sqrt(n_in)
        self.weight = rng.uniform(-bound, bound, (n_out, n_in)).astype(dtype)
        self.bias = rng.uniform(-bound, bound, n_out).astype(dtype)

    def __call__(self, x):
        self._x = x
        return x @ self.weight.T + self.bias

    def backward(self, g):
        self.weight_grad = g.T @ self._x
        self.bias_grad = g.sum(axis=0)
        return g @ self.weight


class ReLU:
    """``max(x, 0)``, forward and backward in place: here every input is a fresh array
    that only this network holds (a layer's output or gradient)."""

    def __call__(self, x):
        self._y = np.maximum(x, x.dtype.type(0), out=x)
        return self._y

    def backward(self, g):
        return np.multiply(g, self._y > 0, out=g)


class LeNet:
    """conv(1->6, 5x5, pad 2) - ReLU - pool 2 - conv(6->16, 5x5) - ReLU - pool 2 - 400-120-10.

    Each ReLU runs after its max pooling: the two commute (the maximum of ``max(v, 0)``
    over a window is ``max(max(v), 0)``, and the gradient reaches the window's first
    maximum exactly when that maximum is positive, either way), so this is PyTorch's
    conv - ReLU - pool network, its values and gradients, with the ReLU on a quarter of
    the elements."""

    def __init__(self, seed: int = 0, dtype=np.float32):
        rng = np.random.default_rng(seed)
        self.layers = [
            fc.Conv2d(1, 6, 5, padding=2, seed=rng.integers(2**31), dtype=dtype),
            fc.MaxPool2d(2), ReLU(),
            fc.Conv2d(6, 16, 5, seed=rng.integers(2**31), dtype=dtype),
            fc.MaxPool2d(2), ReLU(),
        ]
        self.dense = [Dense(400, 120, rng, dtype), ReLU(), Dense(120, 10, rng, dtype)]
        self.dtype = np.dtype(dtype)

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        self._feature_shape = x.shape
        x = x.reshape(len(x), -1)
        for layer in self.dense:
            x = layer(x)
        return x

    def backward(self, g) -> None:
        for layer in reversed(self.dense):
            g = layer.backward(g)
        g = g.reshape(self._feature_shape)
        for layer in reversed(self.layers[1:]):
            g = layer.backward(g)
        self.layers[0].backward(g, input_grad=False)  # the data needs no gradient

    def params(self):
        """``[(name, array, gradient), ...]`` in PyTorch's ``state_dict`` order."""
        out = []
        for i, layer in enumerate(self.layers + self.dense):
            if hasattr(layer, "weight"):
                out.append((f"{i}.weight", layer.weight, getattr(layer, "weight_grad", None)))
                out.append((f"{i}.bias", layer.bias, getattr(layer, "bias_grad", None)))
        return out


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy and its gradient with respect to the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = len(labels)
    loss = -logp[np.arange(n), labels].mean()
    g = np.exp(logp)
    g[np.arange(n), labels] -= 1
    return float(loss), g / n


class SGD:
    """SGD with momentum, PyTorch's update: ``buf = m * buf + grad``; ``p -= lr * buf``."""

    def __init__(self, model: LeNet, lr: float = 0.05, momentum: float = 0.9):
        self.model, self.lr, self.momentum = model, lr, momentum
        self.bufs = None

    def step(self) -> None:
        params = self.model.params()
        if self.bufs is None:
            self.bufs = [g.copy() for _, _, g in params]
        else:
            for buf, (_, _, g) in zip(self.bufs, params, strict=True):
                buf *= self.momentum
                buf += g
        for buf, (_, p, _) in zip(self.bufs, params, strict=True):
            p -= p.dtype.type(self.lr) * buf


def train_step(model: LeNet, opt: SGD, xb, yb) -> float:
    loss, g = cross_entropy(model(xb), yb)
    model.backward(g.astype(model.dtype))
    opt.step()
    return loss


def batches(n: int, epoch: int, seed: int):
    """The data order of one epoch: a seeded permutation cut into ``BATCH``-sized batches."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i:i + BATCH] for i in range(0, n, BATCH)]


def accuracy(model: LeNet, x, y) -> float:
    return float((model(x.astype(model.dtype)).argmax(axis=1) == y).mean())


def train(epochs: int = 10, lr: float = 0.05, seed: int = 0, dtype=np.float32, limit=None,
          progress: bool = True):
    """Train; returns ``(model, history)`` with per-epoch loss, accuracy and seconds."""
    (xtr, ytr), (xte, yte) = load_digits_28(seed)
    if limit:
        xtr, ytr = xtr[:limit], ytr[:limit]
    xtr = xtr.astype(dtype)
    model = LeNet(seed, dtype)
    opt = SGD(model, lr)
    history = []
    bar = _progress(progress)
    with bar:
        for epoch in range(epochs):
            t0 = time.perf_counter()
            parts = batches(len(xtr), epoch, seed)
            task = bar.add_task(f"epoch {epoch + 1}/{epochs}", total=len(parts))
            losses = []
            for idx in parts:
                losses.append(train_step(model, opt, xtr[idx], ytr[idx]))
                bar.advance(task)
            seconds = time.perf_counter() - t0
            acc = accuracy(model, xte, yte)
            history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)),
                            "test_accuracy": acc, "seconds": seconds})
            bar.console.print(f"epoch {epoch + 1:2d}  loss {np.mean(losses):.4f}  "
                              f"test accuracy {acc:.2%}  ({seconds:.2f} s)")
    return model, history


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    transient=True, disable=not enabled)


# -- the same network in PyTorch ------------------------------------------------------------

def torch_twin(model: LeNet):
    """The same network in PyTorch, with ``model``'s current weights copied in."""
    import torch
    from torch import nn

    net = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 10),
    ).to(torch.float64 if model.dtype == np.float64 else torch.float32)
    torch_params = [p for p in net.parameters()]
    with torch.no_grad():
        for p, (_, ours, _) in zip(torch_params, model.params(), strict=True):
            p.copy_(torch.from_numpy(np.ascontiguousarray(ours)))
    return net


def compare_losses(steps: int = 5, seed: int = 0, dtype=np.float64):
    """Losses of the first ``steps`` training steps of fastconv and PyTorch from the same
    weights and batches: ``(ours, theirs)``."""
    import torch

    (xtr, ytr), _ = load_digits_28(seed)
    xtr = xtr.astype(dtype)
    model = LeNet(seed, dtype)
    net = torch_twin(model)
    opt = SGD(model, 0.05)
    topt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    ours, theirs = [], []
    for idx in batches(len(xtr), 0, seed)[:steps]:
        ours.append(train_step(model, opt, xtr[idx], ytr[idx]))
        topt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(xtr[idx])),
                                                 torch.from_numpy(ytr[idx]))
        loss.backward()
        topt.step()
        theirs.append(loss.item())
    return ours, theirs


def make_step(framework: str, seed: int = 0):
    """One training step (batch 64, float32) of ``framework`` ("fastconv" or "torch") on
    the first batch, as a function of no arguments (also ``bench/lenet_step.py``'s)."""
    (xtr, ytr), _ = load_digits_28(seed)
    xb, yb = xtr[:BATCH].astype(np.float32), ytr[:BATCH]
    model = LeNet(seed)
    if framework == "fastconv":
        opt = SGD(model)

        def step():
            train_step(model, opt, xb, yb)

        return step
    import torch

    net = torch_twin(model)
    topt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    tx, ty = torch.from_numpy(xb), torch.from_numpy(yb)

    def step():
        topt.zero_grad()
        torch.nn.functional.cross_entropy(net(tx), ty).backward()
        topt.step()

    return step


def time_steps(framework: str, rounds: int = 30, seed: int = 0) -> list[float]:
    """Seconds per training step (batch 64, float32) of ``framework``, after warm-up."""
    step = make_step(framework, seed)
    for _ in range(5):
        step()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def step_times(rounds: int = 30) -> dict:
    """Median step time of each framework, in a process of its own (alternating) and
    interleaved in this process."""
    separate = {"fastconv": [], "torch": []}
    for _ in range(3):
        for fw in separate:
            out = subprocess.run([sys.executable, __file__, "--time-step", fw,
                                  "--rounds", str(rounds)], capture_output=True, text=True,
                                 check=True)
            separate[fw].extend(json.loads(out.stdout.strip().splitlines()[-1]))
    together = {"fastconv": [], "torch": []}
    for _ in range(3):
        for fw in together:
            together[fw].extend(time_steps(fw, rounds))
    return {where: {fw: float(np.median(t)) for fw, t in d.items()}
            for where, d in (("own process", separate), ("one process", together))}


def plot(history, model: LeNet, path: str) -> None:
    """Loss and test-accuracy curves beside a grid of conv1's kernels, as a PNG (Pillow)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (760, 320), "white")
    d = ImageDraw.Draw(img)
    x0, y0, w, h = 50, 20, 420, 260
    d.rectangle([x0, y0, x0 + w, y0 + h], outline="black")
    n = len(history)
    losses = [e["loss"] for e in history]
    accs = [e["test_accuracy"] for e in history]
    top = max(losses) or 1.0

    def pts(vals, scale):
        return [(x0 + w * i / max(n - 1, 1), y0 + h * (1 - v / scale)) for i, v in
                enumerate(vals)]

    d.line(pts(losses, top), fill="crimson", width=2)
    d.line(pts(accs, 1.0), fill="navy", width=2)
    d.text((x0, y0 + h + 8), f"epochs 1..{n}", fill="black")
    d.text((x0 + 5, y0 + 5), f"loss (red, max {top:.2f})  test accuracy (blue, "
           f"final {accs[-1]:.1%})", fill="black")
    k = model.layers[0].weight[:, 0]
    k = (k - k.min()) / (np.ptp(k) or 1.0)
    cell = 36
    for i, kern in enumerate(k):
        tile = Image.fromarray((kern * 255).astype(np.uint8)).resize((cell, cell),
                                                                      Image.NEAREST)
        img.paste(tile, (520 + (i % 3) * (cell + 8), 60 + (i // 3) * (cell + 8)))
    d.text((520, 30), "conv1 kernels", fill="black")
    img.save(path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", metavar="PNG", help="draw the curves and conv1's kernels")
    ap.add_argument("--compare", action="store_true",
                    help="PyTorch twin: first losses (float64) and one step's time")
    ap.add_argument("--time-step", choices=["fastconv", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=30, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.time_step:  # child process of step_times()
        _limit_threads()
        print(json.dumps(time_steps(args.time_step, args.rounds)))
        return
    _limit_threads()
    model, history = train(args.epochs, args.lr, args.seed)
    total = sum(e["seconds"] for e in history)
    print(f"test accuracy {history[-1]['test_accuracy']:.2%} "
          f"({round((1 - history[-1]['test_accuracy']) * N_TEST)} of {N_TEST} wrong), "
          f"{total:.1f} s of training, {total / len(history):.2f} s per epoch "
          f"(the first includes compiling)")
    if args.plot:
        plot(history, model, args.plot)
        print(f"wrote {args.plot}")
    if args.compare:
        ours, theirs = compare_losses()
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            print(f"step {i + 1}: fastconv {a:.12f}  torch {b:.12f}  diff {abs(a - b):.1e}")
        for where, t in step_times().items():
            print(f"one training step, batch {BATCH}, {where}: fastconv "
                  f"{t['fastconv'] * 1e3:.2f} ms, torch {t['torch'] * 1e3:.2f} ms "
                  f"({t['torch'] / t['fastconv']:.2f}x)")


def _limit_threads() -> None:
    """Both frameworks on the same threads (2 unless FASTCONV_THREADS says otherwise).
    NumPy's BLAS (the dense layers' products, ~0.1 ms each) runs on one thread: its idle
    worker threads spin, and on a small machine they would take cores from fastconv's.
    fastconv's products then find the BLAS on one thread and need not limit it per call."""
    import scipy.linalg  # noqa: F401 - loads SciPy's BLAS (fastconv's products) first
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")  # every BLAS loaded so far, SciPy's included
    n = int(os.environ.get("FASTCONV_THREADS", "2"))
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass
    import numba

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


if __name__ == "__main__":
    main()
