"""``fastconv.explain``: which algorithm a call would run, its alternatives and why."""

from __future__ import annotations

import inspect

import numpy as np

from fastconv import _algorithms, _dispatch, conv, grad
from fastconv._algorithms import Explanation, explain_problem, forward_problem
from fastconv._plan import plan_conv, plan_conv_input, plan_conv_transpose, plan_conv_weight
from fastconv._run import GRAD_ALGORITHMS, INPUT_GRAD_ALGORITHMS
from fastconv._validate import check_algorithm

#: op name -> (public function, kind, rank)
_OPS = {}
for _n in (1, 2, 3):
    _OPS[f"conv{_n}d"] = (getattr(conv, f"conv{_n}d"), "forward", _n)
    _OPS[f"convolve{_n}d"] = (getattr(conv, f"convolve{_n}d" if _n != 2 else "convolve2d_nchw"),
                              "forward", _n)
    _OPS[f"conv_transpose{_n}d"] = (getattr(conv, f"conv_transpose{_n}d"), "transpose", _n)
    _OPS[f"conv{_n}d_input"] = (getattr(grad, f"conv{_n}d_input"), "input_grad", _n)
    _OPS[f"conv{_n}d_weight"] = (getattr(grad, f"conv{_n}d_weight"), "weight_grad", _n)
_OPS["convolve2d_nchw"] = _OPS["convolve2d"]


def _shaped(a):
    """Anything with a shape and a dtype (device arrays as they are; no copy to a device)."""
    if a is None or (hasattr(a, "shape") and hasattr(a, "dtype")):
        return a
    return np.asarray(a)


def explain(op, *args, **kwargs) -> Explanation:
    """Which algorithm ``op(*args, **kwargs)`` would run, the alternatives with their
    estimated cost, and why (nothing is computed).

    ``op`` is a conv function (``fc.conv2d``, ``fc.convolve2d``, ``fc.conv_transpose2d``,
    ``fc.grad.conv2d_input``, ``fc.grad.conv2d_weight``, ...) or its name. The result
    prints as a table (``print(fc.explain(...))``); ``.chosen`` is the algorithm's name,
    ``.rows`` every candidate as ``(name, seconds, reason)`` with ``reason`` None when
    "auto" considers it. Costs are estimates from the rates in ``fastconv._algorithms``.

    Examples
    --------
    >>> e = explain("conv2d", np.zeros((8, 64, 56, 56)), np.zeros((64, 64, 3, 3)), padding=1)
    >>> e.chosen
    'winograd'
    >>> explain("conv2d", np.zeros((1, 1, 6, 8)), np.zeros((1, 1, 1, 2))).chosen
    'direct'
    """
    name = op if isinstance(op, str) else getattr(op, "__name__", repr(op))
    name = name.removeprefix("grad.")
    if name not in _OPS:
        raise ValueError(f"explain: unknown op {op!r}, should be one of {tuple(_OPS)}")
    fn, kind, nsp = _OPS[name]
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"explain: {name}: {e}") from None
    bound.apply_defaults()
    a = {k: _shaped(v) if k in ("x", "weight", "bias", "input", "grad_output") else v
         for k, v in bound.arguments.items()}
    func = fn.__name__ if kind != "forward" else name
    if kind == "forward":
        check_algorithm(a["algorithm"], func, _algorithms.ALGORITHMS)
        device = _dispatch.choose(func, a["device"], a["x"], a["weight"], a["bias"])
        plan = plan_conv(func, nsp, a["x"], a["weight"], a["bias"], a["stride"], a["padding"],
                         a["dilation"], a["groups"], a["padding_mode"])
        if a["algorithm"] == "winograd":
            _algorithms.check_winograd(func, plan.w_shape, plan.out_shape[2:], plan.stride,
                                       plan.dilation, plan.groups, plan.nspatial)
        return explain_problem(name, device, a["algorithm"], forward_problem(plan))
    if kind == "transpose":
        device = _dispatch.choose(func, a["device"], a["x"], a["weight"], a["bias"])
        plan = plan_conv_transpose(func, nsp, a["x"], a["weight"], a["bias"], a["stride"],
                                   a["padding"], a["output_padding"], a["groups"],
                                   a["dilation"])
        return explain_problem(name, device, "auto", _algorithms.input_grad_problem(plan))
    if kind == "input_grad":
        check_algorithm(a["algorithm"], func, INPUT_GRAD_ALGORITHMS)
        device = _dispatch.choose(func, a["device"], a["weight"], a["grad_output"])
        plan = plan_conv_input(func, nsp, a["input_size"], a["weight"], a["grad_output"],
                               a["stride"], a["padding"], a["dilation"], a["groups"],
                               a["padding_mode"])
        if a["algorithm"] == "winograd":
            _algorithms.check_winograd_input(func, plan)
        return explain_problem(name, device, a["algorithm"],
                               _algorithms.input_grad_problem(plan))
    check_algorithm(a["algorithm"], func, GRAD_ALGORITHMS)
    device = _dispatch.choose(func, a["device"], a["input"], a["grad_output"])
    plan = plan_conv_weight(func, nsp, a["input"], a["weight_size"], a["grad_output"],
                            a["stride"], a["padding"], a["dilation"], a["groups"],
                            a["padding_mode"])
    return explain_problem(name, device, a["algorithm"], forward_problem(plan, "weight_grad"))
