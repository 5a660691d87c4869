"""Layers: Conv1d/2d/3d, MaxPool2d, AvgPool2d (init, forward, backward vs PyTorch)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_torch

import fastconv as fc
from fastconv import conv, grad, layers


def test_default_init_is_pytorchs_uniform():
    layer = layers.Conv2d(6, 8, (3, 5), groups=2, seed=0)
    bound = 1 / np.sqrt(3 * 3 * 5)  # fan_in = in_channels / groups * prod(kernel)
    assert layer.weight.shape == (8, 3, 3, 5) and layer.bias.shape == (8,)
    assert layer.weight.dtype == layer.bias.dtype == np.float32
    assert np.abs(layer.weight).max() <= bound and np.abs(layer.bias).max() <= bound
    assert np.abs(layer.weight).max() > 0.9 * bound  # spread over the whole interval
    again = layers.Conv2d(6, 8, (3, 5), groups=2, seed=0)
    np.testing.assert_array_equal(layer.weight, again.weight)
    assert layers.Conv1d(2, 3, 2, bias=False, seed=0).bias is None


def test_forward_is_conv_and_backward_by_hand():
    layer = layers.Conv1d(1, 1, 2, bias=False, seed=0)
    layer.weight = np.array([[[1.0, -1.0]]])
    np.testing.assert_array_equal(layer(np.array([[[0.0, 1.0, 3.0]]])), [[[-1.0, -2.0]]])
    np.testing.assert_array_equal(layer.backward(np.ones((1, 1, 2))), [[[1.0, 0.0, -1.0]]])
    np.testing.assert_array_equal(layer.weight_grad, [[[1.0, 4.0]]])
    assert layer.bias_grad is None


@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_layer_matches_functions(nsp):
    rng = np.random.default_rng(nsp)
    cls = {1: layers.Conv1d, 2: layers.Conv2d, 3: layers.Conv3d}[nsp]
    layer = cls(4, 6, 2, stride=2, padding=1, dilation=1, groups=2, padding_mode="circular",
                seed=1, dtype=np.float64)
    x = rng.standard_normal((2, 4) + (5,) * nsp)
    kw = dict(stride=2, padding=1, groups=2, padding_mode="circular")
    y = layer(x)
    np.testing.assert_array_equal(y, getattr(conv, f"conv{nsp}d")(x, layer.weight, layer.bias,
                                                                  **kw))
    g = rng.standard_normal(y.shape)
    gx = layer.backward(g)
    np.testing.assert_array_equal(gx, getattr(grad, f"conv{nsp}d_input")(x.shape, layer.weight,
                                                                        g, **kw))
    np.testing.assert_array_equal(layer.weight_grad,
                                  getattr(grad, f"conv{nsp}d_weight")(x, layer.weight.shape, g,
                                                                      **kw))
    np.testing.assert_array_equal(layer.bias_grad, g.sum(axis=(0,) + tuple(range(2, 2 + nsp))))


@requires_torch
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_conv2d_layer_against_torch(mode):
    import torch

    rng = np.random.default_rng(4)
    layer = layers.Conv2d(3, 4, (3, 2), stride=(1, 2), padding=(1, 1), dilation=(2, 1),
                          padding_mode=mode, seed=2)
    ref = torch.nn.Conv2d(3, 4, (3, 2), stride=(1, 2), padding=(1, 1), dilation=(2, 1),
                          padding_mode=mode)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(layer.weight))
        ref.bias.copy_(torch.tensor(layer.bias))
    x = rng.standard_normal((2, 3, 7, 8)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    y = layer.forward(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    g = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.weight_grad, ref.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.bias_grad, ref.bias.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_unbatched_layer():
    rng = np.random.default_rng(8)
    layer = layers.Conv2d(2, 3, 3, padding="same", seed=0, dtype=np.float64)
    x = rng.standard_normal((2, 5, 5))
    y = layer(x)
    assert y.shape == (3, 5, 5)
    gx = layer.backward(np.ones_like(y))
    assert gx.shape == x.shape and layer.weight_grad.shape == (3, 2, 3, 3)
    np.testing.assert_array_equal(layer.bias_grad, [25.0, 25.0, 25.0])


@requires_torch
def test_pool_layers_against_torch():
    import torch

    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 7, 6))
    for ours, ref in [
        (layers.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
         torch.nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)),
        (layers.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
         torch.nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False)),
    ]:
        xt = torch.tensor(x, requires_grad=True)
        yt = ref(xt)
        y = ours(x)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12)
        g = rng.standard_normal(y.shape)
        yt.backward(torch.tensor(g))
        np.testing.assert_allclose(ours.backward(g), xt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_public_names():
    assert fc.Conv2d is layers.Conv2d and fc.MaxPool2d is layers.MaxPool2d
    assert fc.AvgPool2d is layers.AvgPool2d and fc.Conv3d is layers.Conv3d


def test_errors():
    with pytest.raises(RuntimeError, match=r"Conv2d.backward: call forward\(x\) first"):
        layers.Conv2d(1, 1, 2).backward(np.ones((1, 1, 2, 2)))
    with pytest.raises(RuntimeError, match=r"MaxPool2d.backward: call forward\(x\) first"):
        layers.MaxPool2d(2).backward(np.ones((1, 1, 2, 2)))
    with pytest.raises(ValueError, match=r"Conv2d: groups=2 must divide in_channels=3 and "
                                         r"out_channels=4"):
        layers.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match=r"Conv1d: in_channels must be an int >= 1, got 0"):
        layers.Conv1d(0, 4, 3)
    with pytest.raises(TypeError, match=r"Conv3d: bias must be True or False, got 'yes'"):
        layers.Conv3d(1, 1, 1, bias="yes")
    with pytest.raises(ValueError, match=r"Conv2d: padding='same' is not supported for strided"):
        layers.Conv2d(1, 1, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match=r"Conv2d: invalid padding_mode 'edge'"):
        layers.Conv2d(1, 1, 3, padding_mode="edge")
    with pytest.raises(ValueError, match=r"Conv2d: kernel_size must be an int or a tuple of 2"):
        layers.Conv2d(1, 1, (3, 3, 3))
