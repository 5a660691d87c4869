"""fc.output_shape and fc.receptive_field: hand-computed cases, the engine and PyTorch as
oracles, and every error message."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_torch
from reference import output_size

import fastconv as fc


def _args(g):
    """(n, k, s, d, b, a) -> reference.output_size's (n, k, stride, before, after, dilation)."""
    n, k, s, d, b, a = g
    return n, k, s, b, a, d


@pytest.mark.parametrize(
    "args, kwargs, want",
    [
        # d2l 6.3: padding and stride
        (((8, 8), 3), dict(padding=1), (8, 8)),
        (((8, 8), (5, 3)), dict(padding=(2, 1)), (8, 8)),
        (((8, 8), 3), dict(padding=1, stride=2), (4, 4)),
        (((8, 8), (3, 5)), dict(padding=(0, 1), stride=(3, 4)), (2, 2)),
        # the Conv2d lab: a 4x4 image, kernel 2
        ((4, 2), {}, (3,)),
        (((4, 4), 2), dict(stride=2), (2, 2)),
        (((4, 4), 2), dict(stride=3), (1, 1)),
        (((4, 4), 2), dict(stride=3, padding=1), (2, 2)),
        # one 5x5 convolution on the seed's 240x240 image
        (((240, 240), 5), {}, (236, 236)),
        # dilation: effective kernel d*(k-1)+1
        ((10, 3), dict(dilation=2), (6,)),
        (((10, 9, 8), 3), dict(dilation=(1, 2, 3)), (8, 5, 2)),
        # padding forms
        (((7, 6), (4, 3)), dict(padding="same"), (7, 6)),
        (((7, 6), (4, 3)), dict(padding="same", dilation=2), (7, 6)),
        ((5, 3), dict(padding="full"), (7,)),
        ((5, 3), dict(padding="full", dilation=2), (9,)),
        (((5, 5), 3), dict(padding="valid"), (3, 3)),
        ((5, 3), dict(padding=((2, 0),)), (5,)),
        (((6, 6), 2), dict(padding=((1, 0), (0, 3)), stride=(2, 3)), (3, 3)),
        # pooling's ceil rule (PyTorch: a last window starting in the right padding is dropped)
        ((5, 2), dict(stride=2), (2,)),
        ((5, 2), dict(stride=2, ceil_mode=True), (3,)),
        ((6, 3), dict(stride=4, padding=1, ceil_mode=True), (2,)),
        ((4, 2), dict(stride=2, padding=1, ceil_mode=True), (3,)),
    ],
)
def test_output_shape_hand_computed(args, kwargs, want):
    assert fc.output_shape(*args, **kwargs) == want


def test_ten_5x5_convolutions_shrink_240_to_200():
    """The seed: 240x240 through ten 5x5 convolutions gives 200x200."""
    size = (240, 240)
    for _ in range(10):
        size = fc.output_shape(size, 5)
    assert size == (200, 200)
    rf = fc.receptive_field([(5, 1)] * 10)
    assert rf[-1] == {"size": 41, "jump": 1}  # 240 - 41 + 1 = 200


GRID = [(n, k, s, d, b, a) for n in (1, 5, 8, 13)
        for k, s, d, b, a in [(1, 1, 1, 0, 0), (3, 2, 1, 1, 1), (2, 3, 2, 0, 2), (3, 1, 3, 4, 0)]]


@pytest.mark.parametrize("n, k, s, d, b, a", [g for g in GRID if output_size(*_args(g)) >= 1])
def test_output_shape_matches_formula_and_engine(n, k, s, d, b, a):
    want = output_size(n, k, s, b, a, d)
    assert fc.output_shape(n, k, stride=s, dilation=d, padding=((b, a),)) == (want,)
    out = fc.conv1d(np.ones((1, 1, n)), np.ones((1, 1, k)), stride=s, dilation=d,
                    padding=((b, a),))
    assert out.shape == (1, 1, want)


@pytest.mark.parametrize("n, k, s, d, b, a", [g for g in GRID if output_size(*_args(g)) < 1])
def test_output_shape_below_one_is_an_error(n, k, s, d, b, a):
    with pytest.raises(ValueError, match="output_shape: kernel larger than the padded input"):
        fc.output_shape(n, k, stride=s, dilation=d, padding=((b, a),))


@requires_torch
@pytest.mark.parametrize("n", [4, 5, 6, 7, 10])
@pytest.mark.parametrize("k, s, p", [(2, 2, 0), (2, 2, 1), (3, 2, 1), (3, 4, 1), (4, 3, 2)])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_ceil_mode_matches_torch_pooling(n, k, s, p, ceil_mode):
    import torch

    want = torch.nn.functional.max_pool1d(torch.zeros(1, 1, n), k, s, p, ceil_mode=ceil_mode)
    assert fc.output_shape(n, k, stride=s, padding=p, ceil_mode=ceil_mode) == (want.shape[-1],)


def test_receptive_field_hand_computed():
    rf = fc.receptive_field([(3, 1), (2, 2), (3, 1)])
    assert [r["size"] for r in rf] == [3, 4, 8]
    assert [r["jump"] for r in rf] == [1, 2, 2]


def test_receptive_field_dict_layers_and_dilation():
    rf = fc.receptive_field([
        {"kernel_size": 3},
        {"kernel_size": 3, "stride": 2},
        {"kernel_size": 3, "dilation": 2},
        (2, 2, 1),
        (1,),
    ])
    # size += dilation*(k-1)*jump; jump *= stride
    assert rf == [
        {"size": 3, "jump": 1},
        {"size": 5, "jump": 2},
        {"size": 13, "jump": 2},
        {"size": 15, "jump": 4},
        {"size": 15, "jump": 4},
    ]
    assert fc.receptive_field([]) == []


def test_receptive_field_is_what_one_output_sees():
    """Perturb one input pixel: exactly `size` outputs of a stride-1 stack change."""
    layers = [(3, 1), (3, 1, 2), (2, 1)]
    size = fc.receptive_field(layers)[-1]["size"]
    x = np.zeros((1, 1, 30))
    x[0, 0, 15] = 1.0
    for k, _, *d in layers:
        x = fc.conv1d(x, np.ones((1, 1, k)), dilation=d[0] if d else 1)
    assert np.count_nonzero(x) == size


@pytest.mark.parametrize(
    "exc, match, call",
    [
        (ValueError, r"output_shape: kernel larger than the padded input: padded input \(4, 8\) "
         r"vs dilated kernel \(5, 5\) gives output size \(0, 4\) < 1",
         lambda: fc.output_shape((4, 8), 5)),
        (ValueError, r"output_shape: stride must be >= 1, got 0",
         lambda: fc.output_shape((8, 8), 3, stride=0)),
        (ValueError, r"output_shape: dilation must be >= 1, got \(1, 0\)",
         lambda: fc.output_shape((8, 8), 3, dilation=(1, 0))),
        (ValueError, r"output_shape: input_shape must be >= 1, got \(0, 8\)",
         lambda: fc.output_shape((0, 8), 3)),
        (ValueError, r"output_shape: kernel_size must be an int or a tuple of 2 ints, got "
         r"\(3, 3, 3\)", lambda: fc.output_shape((8, 8), (3, 3, 3))),
        (ValueError, r"output_shape: padding must be >= 0, got -2",
         lambda: fc.output_shape(8, 3, padding=-2)),
        (ValueError, r"output_shape: invalid padding string 'half'",
         lambda: fc.output_shape(8, 3, padding="half")),
        (ValueError, r"output_shape: padding='same' is not supported for strided convolutions",
         lambda: fc.output_shape(8, 3, padding="same", stride=2)),
        (ValueError, r"output_shape: ceil_mode needs symmetric padding, got \(\(1, 0\),\)",
         lambda: fc.output_shape(8, 3, padding=((1, 0),), ceil_mode=True)),
        (ValueError, r"output_shape: output size \(0,\) < 1 for input_shape=\(2,\)",
         lambda: fc.output_shape(2, 3, ceil_mode=True)),
        (TypeError, r"output_shape: stride must be an int or a tuple of 1 ints, got 1.5",
         lambda: fc.output_shape(8, 3, stride=1.5)),
        (ValueError, r"receptive_field: layer 1 stride must be an int >= 1, got 0",
         lambda: fc.receptive_field([(3, 1), (3, 0)])),
        (ValueError, r"receptive_field: layer 0 kernel_size must be an int >= 1, got 2.5",
         lambda: fc.receptive_field([{"kernel_size": 2.5}])),
        (ValueError, r"receptive_field: layer 0 must be a dict with a 'kernel_size' or a tuple "
         r"\(k,\), \(k, s\) or \(k, s, d\), got \{'stride': 2\}",
         lambda: fc.receptive_field([{"stride": 2}])),
        (ValueError, r"receptive_field: layer 2 must be a dict .* got \(3, 1, 1, 1\)",
         lambda: fc.receptive_field([(3,), (3,), (3, 1, 1, 1)])),
        (ValueError, r"receptive_field: layer 0 must be a dict .* got 3",
         lambda: fc.receptive_field([3])),
    ],
)
def test_errors(exc, match, call):
    with pytest.raises(exc, match=match):
        call()
