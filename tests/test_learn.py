"""learn_kernel: the seeds' "learn [1, -1] from an edge image" story, and beyond."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from conftest import requires_torch

import fastconv as fc
from fastconv import conv, layers
from fastconv.learn import LearnResult, learn_kernel


def seed_story():
    """The seed's data: 6x8 ones with columns 2:6 zero, Y = corr2d(X, [[1, -1]])."""
    X = np.ones((6, 8))
    X[:, 2:6] = 0
    Y = np.zeros((6, 7))
    Y[:, 1], Y[:, 5] = 1.0, -1.0  # the edges, written out by hand (the seed's printed Y)
    return X, Y


def test_seed_target_is_corr2d():
    X, Y = seed_story()
    np.testing.assert_array_equal(fc.corr2d(X, [[1.0, -1.0]]), Y)


def test_every_seed_learns_the_edge_kernel():
    X, Y = seed_story()
    for seed in range(100):
        res = learn_kernel(X, Y, (1, 2), seed=seed)
        assert res.kernel.shape == (1, 2)
        assert len(res.losses) == 10
        assert res.losses[-1] < 1.0, (seed, res.losses)
        np.testing.assert_allclose(res.kernel, [[1.0, -1.0]], atol=0.25, err_msg=f"seed {seed}")


def _seed_loop(X, Y, w, lr=3e-2, epochs=10):
    """The seed's loop written out in NumPy, with an independent forward and gradient."""
    w = w.astype(np.float64).copy()
    losses = []
    for _ in range(epochs):
        Y_hat = np.stack([X[:, j] * w[0, 0] + X[:, j + 1] * w[0, 1] for j in range(7)], axis=1)
        losses.append(((Y_hat - Y) ** 2).sum())
        d = 2 * (Y_hat - Y)
        w -= lr * np.array([[(d * X[:, :7]).sum(), (d * X[:, 1:]).sum()]])
    return w, losses


@pytest.mark.parametrize("seed", [0, 17, 99])
def test_matches_the_seed_loop(seed):
    X, Y = seed_story()
    w0 = layers.Conv2d(1, 1, (1, 2), bias=False, seed=seed, dtype=np.float64).weight[0, 0]
    want_w, want_losses = _seed_loop(X, Y, w0)
    res = learn_kernel(X, Y, (1, 2), seed=seed)
    np.testing.assert_allclose(res.losses, want_losses, rtol=1e-12)
    np.testing.assert_allclose(res.kernel, want_w, rtol=1e-12, atol=1e-14)


@requires_torch
def test_matches_torch_training_loop():
    import torch

    X, Y = seed_story()
    w0 = layers.Conv2d(1, 1, (1, 2), bias=True, seed=5, dtype=np.float32)
    net = torch.nn.Conv2d(1, 1, (1, 2), bias=True)
    with torch.no_grad():
        net.weight.copy_(torch.tensor(w0.weight))
        net.bias.copy_(torch.tensor(w0.bias))
    Xt = torch.tensor(X, dtype=torch.float32).reshape(1, 1, 6, 8)
    Yt = torch.tensor(Y, dtype=torch.float32).reshape(1, 1, 6, 7)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    losses = []
    for _ in range(20):
        loss = ((net(Xt) - Yt) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    res = learn_kernel(X.astype(np.float32), Y.astype(np.float32), (1, 2), bias=True, seed=5,
                       optimizer="adam", lr=0.05, epochs=20)
    np.testing.assert_allclose(res.losses, losses, rtol=1e-4)
    np.testing.assert_allclose(res.kernel, net.weight.detach().numpy()[0, 0], rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(res.bias, net.bias.item(), rtol=1e-4, atol=1e-5)


def test_callback_sees_every_epoch():
    X, Y = seed_story()
    seen = []
    res = learn_kernel(X, Y, (1, 2), seed=3, epochs=4,
                       callback=lambda e, loss, k: seen.append((e, loss, k.copy())))
    assert [e for e, _, _ in seen] == [1, 2, 3, 4]
    assert [loss for _, loss, _ in seen] == res.losses
    np.testing.assert_array_equal(seen[-1][2], res.kernel)


@pytest.mark.parametrize("how", [dict(optimizer="adam", lr=0.1, epochs=300),
                                 dict(optimizer="sgd", loss="mse", lr=0.5, epochs=60)])
def test_recovers_a_multichannel_kernel(how):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 10, 10))
    w_true = rng.standard_normal((2, 3, 3, 3))
    b_true = np.array([0.5, -1.5])
    y = conv.conv2d(x, w_true, b_true)
    res = learn_kernel(x, y, 3, bias=True, seed=1, **how)
    assert res.kernel.shape == (2, 3, 3, 3) and res.bias.shape == (2,)
    np.testing.assert_allclose(res.kernel, w_true, atol=1e-3)
    np.testing.assert_allclose(res.bias, b_true, atol=1e-3)
    assert res.losses[-1] < 1e-4 * res.losses[0]


def test_unbatched_multichannel_and_bias():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 8, 9))
    y = conv.conv2d(x, np.ones((1, 2, 2, 2)) * 0.25, np.array([3.0]))
    res = learn_kernel(x, y, 2, bias=True, loss="mse", lr=0.3, epochs=200, seed=0)
    assert isinstance(res, LearnResult) and res.kernel.shape == (1, 2, 2, 2)
    np.testing.assert_allclose(res.kernel, 0.25, atol=1e-3)
    np.testing.assert_allclose(res.bias, [3.0], atol=1e-3)


def test_single_image_bias_is_a_float():
    X, Y = seed_story()
    res = learn_kernel(X, Y + 0.5, (1, 2), bias=True, seed=0, epochs=300, lr=1e-2)
    assert isinstance(res.bias, float)
    np.testing.assert_allclose(res.bias, 0.5, atol=1e-3)


def test_dtype_follows_inputs():
    X, Y = seed_story()
    assert learn_kernel(X.astype(np.float32), Y, (1, 2), seed=0).kernel.dtype == np.float64
    res32 = learn_kernel(X.astype(np.float32), Y.astype(np.float32), (1, 2), seed=0)
    assert res32.kernel.dtype == np.float32
    assert res32.losses[-1] < 1.0


def test_deterministic_across_runs_and_threads():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 40, 40)).astype(np.float32)  # large: parallel path
    y = rng.standard_normal((2, 3, 38, 38)).astype(np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        a = learn_kernel(x, y, 3, bias=True, seed=0, epochs=3, lr=1e-4)
        b = learn_kernel(x, y, 3, bias=True, seed=0, epochs=3, lr=1e-4)
        numba.set_num_threads(1)
        c = learn_kernel(x, y, 3, bias=True, seed=0, epochs=3, lr=1e-4)
    finally:
        numba.set_num_threads(before)
    assert a.kernel.tobytes() == b.kernel.tobytes() == c.kernel.tobytes()
    assert a.losses == b.losses == c.losses
    assert numba.get_num_threads() == before


def test_zero_epochs_returns_the_initial_kernel():
    X, Y = seed_story()
    res = learn_kernel(X, Y, (1, 2), seed=4, epochs=0)
    assert res.losses == []
    w0 = layers.Conv2d(1, 1, (1, 2), bias=False, seed=4, dtype=np.float64).weight[0, 0]
    np.testing.assert_array_equal(res.kernel, w0)


def test_errors():
    X, Y = seed_story()
    with pytest.raises(ValueError, match=r"learn_kernel: x and y must both be 2-D .* got "
                                         r"x.shape=\(6, 8\) and y.shape=\(1, 6, 7\)"):
        learn_kernel(X, Y[None], (1, 2))
    with pytest.raises(ValueError, match=r"learn_kernel: x and y must both be 2-D"):
        learn_kernel(X[None, None, None], Y[None, None, None], (1, 2))
    with pytest.raises(ValueError, match=r"learn_kernel: x and y must have the same batch size"):
        learn_kernel(np.ones((2, 1, 6, 8)), np.ones((3, 1, 6, 7)), (1, 2))
    with pytest.raises(ValueError, match=r"learn_kernel: y must be the 'valid' output of x and a "
                                         r"\(2, 2\) kernel, spatial size \(5, 7\), got"):
        learn_kernel(X, Y, (2, 2))
    with pytest.raises(ValueError, match=r"learn_kernel: y must be the 'valid' output .* "
                                         r"spatial size \(-2, 1\)"):
        learn_kernel(X, Y, (9, 8))
    with pytest.raises(ValueError, match=r"learn_kernel: lr must be a finite number > 0, got -1"):
        learn_kernel(X, Y, (1, 2), lr=-1)
    with pytest.raises(ValueError, match=r"learn_kernel: epochs must be an int >= 0, got 2.5"):
        learn_kernel(X, Y, (1, 2), epochs=2.5)
    with pytest.raises(ValueError, match=r"learn_kernel: invalid optimizer 'rmsprop', should be "
                                         r"one of \('sgd', 'adam'\)"):
        learn_kernel(X, Y, (1, 2), optimizer="rmsprop")
    with pytest.raises(ValueError, match=r"learn_kernel: invalid loss 'l1'"):
        learn_kernel(X, Y, (1, 2), loss="l1")
    with pytest.raises(TypeError, match=r"learn_kernel: callback must be callable"):
        learn_kernel(X, Y, (1, 2), callback=3)
    with pytest.raises(ValueError, match=r"learn_kernel: kernel_size must be >= 1"):
        learn_kernel(X, Y, (0, 2))
    with pytest.raises(TypeError, match=r"learn_kernel: y has dtype complex128"):
        learn_kernel(X, Y.astype(complex), (1, 2))


def test_public_names():
    assert fc.learn_kernel is learn_kernel and fc.LearnResult is LearnResult
