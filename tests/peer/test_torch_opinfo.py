"""PyTorch's own OpInfo sample and error inputs, run against fastconv's functionals.

The inputs come from the installed torch package
(``torch.testing._internal.common_methods_invocations``: ``sample_inputs`` and
``error_inputs`` of ``nn.functional.conv1d/2d/3d``, ``conv_transpose1d/2d/3d``,
``max_pool1d/2d/3d`` and ``avg_pool1d/2d/3d``), unchanged. Each sample runs through the
torch op (the oracle) and through ``fastconv.<op>`` on the same data: values (and max
pooling's indices) must agree, and so must the gradients (``fastconv.grad``) of every
conv and pooling sample against torch's autograd. Each error input must raise
``ValueError`` or ``TypeError`` in fastconv (PyTorch's message wording is not compared:
fastconv's messages name the function, the parameter and the shapes).

Deliberate differences are strict xfails with their reason (README: design decisions).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed (CI installs torch==2.13.0)")
pytest.importorskip("expecttest", reason="torch's test generators need expecttest "
                    "(in fastconv's [test] extra)")
from torch.testing._internal.common_methods_invocations import op_db  # noqa: E402

import fastconv as fc  # noqa: E402

pytestmark = [pytest.mark.peer, pytest.mark.torch]

OPS = tuple(f"{kind}{n}d" for kind in ("conv", "conv_transpose", "max_pool", "avg_pool")
            for n in (1, 2, 3))
_DB = {op.name: op for op in op_db if op.name.startswith("nn.functional.")}

PROMOTES = ("fastconv promotes mixed dtypes as numpy.result_type does (int input + float "
            "bias -> float64); PyTorch requires one dtype (README: deliberate differences)")


def _samples():
    for name in OPS:
        op = _DB[f"nn.functional.{name}"]
        for i, s in enumerate(op.sample_inputs("cpu", torch.float64, requires_grad=False)):
            yield pytest.param(name, s, id=f"{name}-{i}")


def _error_inputs():
    for name in OPS:
        op = _DB[f"nn.functional.{name}"]
        if op.error_inputs_func is None:  # conv_transpose*: PyTorch defines none
            continue
        for i, e in enumerate(op.error_inputs("cpu")):
            s = e.sample_input
            tensors = [s.input, *[a for a in s.args if isinstance(a, torch.Tensor)]]
            marks = ()
            if (e.error_regex == "should be the same"
                    and not any(t.is_complex() for t in tensors)):
                marks = pytest.mark.xfail(strict=True, reason=PROMOTES)
            yield pytest.param(name, s, e.error_regex, id=f"{name}-{i}", marks=marks)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Thousands of tiny problems: one thread each side (waking a thread pool per call
    costs more than the arithmetic; results do not depend on the thread count)."""
    import numba

    threads = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    yield
    torch.set_num_threads(threads[0])
    numba.set_num_threads(threads[1])


def _np(a):
    return a.detach().numpy() if isinstance(a, torch.Tensor) else a


def _torch_run(name, s):
    """The torch op on a sample, with inputs that track gradients (the oracle)."""
    x = s.input.detach().clone().requires_grad_()
    args = [a.detach().clone().requires_grad_() if isinstance(a, torch.Tensor) else a
            for a in s.args]
    with warnings.catch_warnings():  # e.g. padding="same" with an even kernel
        warnings.simplefilter("ignore", UserWarning)
        out = _DB[f"nn.functional.{name}"].op(x, *args, **s.kwargs)
    return x, args, out


@pytest.mark.parametrize("name, sample", list(_samples()))
def test_sample_input_matches_torch(name, sample):
    x, args, want = _torch_run(name, sample)
    kwargs = dict(sample.kwargs)
    got = getattr(fc, name)(_np(x), *[_np(a) for a in args], **kwargs)
    if isinstance(want, tuple):  # max pooling with return_indices
        np.testing.assert_array_equal(got[0], want[0].detach().numpy())
        np.testing.assert_array_equal(got[1], want[1].numpy())
        y = want[0]
    else:
        assert got.shape == tuple(want.shape)
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-12, atol=1e-12)
        y = want
    if name.startswith("conv_transpose") or y.numel() == 0:
        return
    g = np.random.default_rng(0).standard_normal(tuple(y.shape))
    y.backward(torch.from_numpy(g))
    nsp = int(name[-2])
    if "pool" in name:
        kwargs.pop("return_indices", None)
        gx = getattr(fc.grad, name)(g, _np(x), *[_np(a) for a in args], **kwargs)
        np.testing.assert_allclose(gx, x.grad.numpy(), rtol=1e-12, atol=1e-12)
        return
    w, b = args[0], (args[1] if len(args) > 1 else None)
    gi = getattr(fc.grad, f"conv{nsp}d_input")(tuple(x.shape), _np(w), g, **kwargs)
    np.testing.assert_allclose(gi, x.grad.numpy(), rtol=1e-10, atol=1e-10)
    gw = getattr(fc.grad, f"conv{nsp}d_weight")(_np(x), tuple(w.shape), g, **kwargs)
    np.testing.assert_allclose(gw, w.grad.numpy(), rtol=1e-10, atol=1e-10)
    if b is not None:
        gb = fc.grad.conv_bias(g, batched=x.dim() == nsp + 2)
        np.testing.assert_allclose(gb, b.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, sample, torch_regex", list(_error_inputs()))
def test_error_input_is_refused(name, sample, torch_regex):
    with pytest.raises((ValueError, TypeError), match=rf"^{name}: "):
        getattr(fc, name)(_np(sample.input), *[_np(a) for a in sample.args],
                          **{k: _np(v) for k, v in sample.kwargs.items()})
