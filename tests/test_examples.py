"""The LeNet example (examples/lenet_digits.py): it learns, and it is PyTorch's network."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the example's data ship with scikit-learn ([examples])")

_PATH = Path(__file__).resolve().parents[1] / "examples" / "lenet_digits.py"


@pytest.fixture(scope="module")
def lenet():
    spec = importlib.util.spec_from_file_location("lenet_digits", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_data_split(lenet):
    (xtr, ytr), (xte, yte) = lenet.load_digits_28(0)
    assert xtr.shape == (1797 - 360, 1, 28, 28) and xte.shape == (360, 1, 28, 28)
    assert ytr.shape == (1437,) and set(np.unique(yte)) == set(range(10))
    assert 0.0 <= xtr.min() and xtr.max() <= 1.0


def test_one_short_epoch_lowers_the_loss(lenet):
    model, history = lenet.train(epochs=2, limit=384, progress=False)
    assert history[1]["loss"] < history[0]["loss"] < 2.35  # chance level is ln 10 = 2.30
    assert all(np.isfinite(p).all() for _, p, _ in model.params())


def test_gradients_match_finite_differences(lenet):
    """The hand-written dense/ReLU/cross-entropy pieces and fastconv's layers together."""
    (xtr, ytr), _ = lenet.load_digits_28(0)
    x, y = xtr[:4], ytr[:4]
    model = lenet.LeNet(1, np.float64)
    loss, g = lenet.cross_entropy(model(x), y)
    model.backward(g)
    rng = np.random.default_rng(0)
    for name, p, grad in model.params():
        i = tuple(rng.integers(s) for s in p.shape)
        old, h = p[i], 1e-6
        p[i] = old + h
        up = lenet.cross_entropy(model(x), y)[0]
        p[i] = old - h
        down = lenet.cross_entropy(model(x), y)[0]
        p[i] = old
        assert (up - down) / (2 * h) == pytest.approx(grad[i], rel=1e-4, abs=1e-8), name


@pytest.mark.torch
def test_first_steps_agree_with_pytorch(lenet):
    pytest.importorskip("torch", reason="PyTorch is the oracle")
    ours, theirs = lenet.compare_losses(steps=3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert ours[0] != ours[1]  # the weights did change between steps
