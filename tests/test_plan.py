"""Plans: one check serves forward and transposed convolutions, and every size and
padding rule the plans use is a function of ``fastconv._shapes`` (checked against the
NumPy reference's independent formulas)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import output_size

import fastconv as fc
from fastconv import _plan, _shapes

X = np.arange(4 * 9 * 9, dtype=np.float32).reshape(1, 4, 9, 9) / 100
W = np.linspace(-1, 1, 4 * 2 * 3 * 3, dtype=np.float32).reshape(4, 2, 3, 3)

#: NumPy integer scalars and tuples holding them: accepted like ints by every parameter
#: of both convolutions (the forward and transposed checks were drifted copies once).
NUMPY_INTS = [
    ("groups", np.int64(2)), ("groups", np.int32(2)),
    ("stride", np.int64(2)), ("stride", (np.int32(2), 1)),
    ("padding", np.int64(1)), ("padding", (np.int64(1), np.uint8(0))),
    ("dilation", np.int64(2)), ("dilation", (1, np.int16(2))),
]


@pytest.mark.parametrize("name, value", NUMPY_INTS)
@pytest.mark.parametrize("op", [fc.conv2d, fc.conv_transpose2d])
def test_numpy_integer_parameters_equal_python_ints(op, name, value):
    kw = {"groups": 2, name: value}
    plain = {k: (tuple(int(e) for e in v) if isinstance(v, tuple) else int(v))
             for k, v in kw.items()}
    np.testing.assert_array_equal(op(X, W, **kw), op(X, W, **plain))


@pytest.mark.parametrize("name, value, exc, match", [
    ("groups", True, ValueError, "groups must be an int >= 1, got True"),
    ("groups", 2.0, ValueError, "groups must be an int >= 1, got 2.0"),
    ("stride", 0, ValueError, "stride"),
    ("dilation", (1, 0), ValueError, "dilation"),
    ("stride", 1.5, TypeError, "stride must be an int or a tuple of 2 ints"),
])
@pytest.mark.parametrize("op", [fc.conv2d, fc.conv_transpose2d])
def test_forward_and_transposed_refuse_alike(op, name, value, exc, match):
    with pytest.raises(exc, match=f"{op.__name__}: .*{match}"):
        op(X, W, **{"groups": 2, name: value})


def test_one_check_function_serves_both():
    """The forward and transposed plans come from the same check (same resolved
    parameters; the transposed one with its weight read as (C, K // groups, *k))."""
    fwd = _plan.check_conv("f", 2, X, W, None, 2, 1, 1, np.int64(2))
    tr = _plan.check_conv("f", 2, X, W, None, 2, 1, 1, np.int64(2), output_padding=1)
    assert fwd.groups == tr.groups == 2 and type(tr.groups) is int
    assert fwd.pads == tr.pads == ((1, 1), (1, 1))
    assert fwd.K == 4 and tr.K == 4
    assert fwd.out_spatial == (5, 5)
    assert tr.out_spatial == (18, 18)  # (9-1)*2 - 2 + 2 + 1 + 1


@given(n=st.integers(1, 12), k=st.integers(1, 4), s=st.integers(1, 3), d=st.integers(1, 3),
       p=st.integers(0, 3), op=st.integers(0, 2))
def test_transposed_size_inverts_the_forward_size(n, k, s, d, p, op):
    """A transposed convolution's output size is the input size of the forward one that
    gives ``n`` (PyTorch's rule), checked against the reference's forward formula."""
    if op >= max(s, d):
        with pytest.raises(ValueError, match="output_padding"):
            _shapes.transpose_output_spatial((n,), (k,), (s,), (p,), (op,), (d,), "f")
        return
    m = (n - 1) * s - 2 * p + d * (k - 1) + op + 1
    if m < 1:
        with pytest.raises(ValueError, match="output size"):
            _shapes.transpose_output_spatial((n,), (k,), (s,), (p,), (op,), (d,), "f")
        return
    assert _shapes.transpose_output_spatial((n,), (k,), (s,), (p,), (op,), (d,), "f") == (m,)
    if op < s:  # (an output_padding allowed by the dilation alone adds whole strides)
        assert output_size(m, k, s, p, p, d) == n
    else:
        assert output_size(m, k, s, p, p, d) == n + op // s


@given(o=st.integers(1, 8), n=st.integers(1, 12), k=st.integers(1, 4), s=st.integers(1, 3),
       d=st.integers(1, 2), b=st.integers(0, 3), fold=st.booleans())
def test_input_grad_spread_places_every_output_once(o, n, k, s, d, b, fold):
    """The spread slices put ``g[o]`` at ``reach - before + o*stride`` (``reach - 0`` when
    folding) of a grid of length ``n + reach``, dropping exactly what falls outside."""
    reach = d * (k - 1)
    (grid,), (length,), (src,), (dst,) = _shapes.input_grad_spread(
        (o,), (n,), (k,), (s,), (d,), ((b, b),), fold)
    assert grid == (n + 2 * b if fold else n) and length == grid + reach
    lead = reach - (0 if fold else b)
    want = [(i, lead + i * s) for i in range(o) if 0 <= lead + i * s < length]
    got = list(zip(range(*src), range(*dst), strict=True))
    assert got == want


def test_user_shape_is_one_rule_for_every_plan():
    x = np.ones((3, 7), np.float32)  # unbatched 1-D
    conv = _plan.plan_conv("conv1d", 1, x, np.ones((2, 3, 2), np.float32), None, 1, 0, 1, 1,
                           "zeros")
    pool = _plan.plan_pool("max_pool1d", 1, x, 2, None, 0, 1, False, "max")
    tr = _plan.plan_conv_transpose("conv_transpose1d", 1, x, np.ones((3, 2, 2), np.float32),
                                   None, 1, 0, 0, 1, 1)
    assert conv.user_shape(conv.out_shape) == (2, 6)
    assert pool.user_shape(pool.out_shape) == (3, 3)
    assert tr.user_shape(tr.out_shape) == (2, 8)
    assert _shapes.user_shape((5, 2, 1, 1, 6), 1, False) == (5, 2, 6)


@pytest.mark.parametrize("mode, pad, ok", [
    ("reflect", 4, False), ("reflect", 3, True), ("circular", 4, True), ("circular", 5, False),
    ("replicate", 9, True), ("zeros", 9, True),
])
def test_mode_padding_limits(mode, pad, ok):
    x = np.ones((1, 1, 4, 4), np.float32)
    w = np.ones((1, 1, 1, 1), np.float32)
    if ok:
        assert fc.conv2d(x, w, padding=pad, padding_mode=mode).shape == (1, 1, 4 + 2 * pad,
                                                                           4 + 2 * pad)
    else:
        with pytest.raises(ValueError, match=f"conv2d: {mode} padding"):
            fc.conv2d(x, w, padding=pad, padding_mode=mode)


def test_receptive_step_is_the_recurrence():
    size, jump = 1, 1
    for k, s, d in [(3, 1, 1), (2, 2, 1), (3, 1, 2)]:
        size, jump = _shapes.receptive_step(size, jump, k, s, d)
    assert (size, jump) == (1 + 2 + 1 + 2 * 2 * 2, 2)
    assert [r["size"] for r in fc.receptive_field([(3, 1), (2, 2), (3, 1, 2)])] == [3, 4, 12]


def test_a_repeated_pooling_call_reuses_its_plan_and_bad_calls_raise_every_time():
    x = np.zeros((2, 3, 10, 10), np.float32)
    first = _plan.plan_pool("max_pool2d", 2, x, 2, None, 0, 1, False, "max")
    assert _plan.plan_pool("max_pool2d", 2, np.ones_like(x), 2, None, 0, 1, False,
                           "max") is first
    other = _plan.plan_pool("max_pool2d", 2, x, 2, None, 0, 1, True, "max")  # ceil_mode
    assert other is not first
    assert _plan.plan_pool("max_pool2d", 2, x.astype(np.float64), 2, None, 0, 1, False,
                           "max").dtype == np.float64
    for _ in range(2):  # never cached: raises on every call
        with pytest.raises(ValueError, match="padding"):
            _plan.plan_pool("max_pool2d", 2, x, 2, None, 3, 1, False, "max")
