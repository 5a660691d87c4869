"""The execution layer: the one path every public op takes from its arguments to its result.

A public function (``fastconv.conv``, ``grad``, ``pool``, ``adaptive``, ``fold``,
``unpool``) is a plain ``def`` that calls one runner here. A runner:

1. picks the backend (:func:`fastconv._dispatch.choose`) and wraps the inputs once
   (:func:`prepare`: the backend's ``wrap``; dtype checks);
2. builds the validated plan (``fastconv._plan``: shapes, per-axis ints, padding resolved
   once, in ``_shapes``);
3. asks the algorithm registry (``fastconv._algorithms``) for the core of the chosen
   algorithm; the core is given the unpadded input and reads or makes the plan's padding
   itself (nobody else pads, nobody guesses from shapes);
4. runs it on 5-D arrays of the plan's dtype, and
5. hands the result back on the caller's device (:func:`deliver`: the backend's
   ``finish`` and the one host copy of a NumPy caller's GPU result).

Dask input leaves at step 1 for ``fastconv._dask`` (a lazy graph whose blocks call the
forward runner back).
"""

from __future__ import annotations

import math

import numpy as np

from fastconv import _algorithms, _dask, _dispatch
from fastconv._algorithms import correlation_core, grad_core
from fastconv._dispatch import flip_weight, to_host
from fastconv._plan import (
    ConvPlan,
    InputGradPlan,
    PoolPlan,
    plan_conv,
    plan_conv_input,
    plan_conv_transpose,
    plan_conv_weight,
    plan_pool,
    shape_of,
)
from fastconv._validate import check_algorithm, check_not_all_bool, result_dtype

#: Array arguments that may be None (every other one must be an array).
OPTIONAL_ARRAYS = ("bias",)

#: ``algorithm=`` choices of the gradients (the correlation each one runs).
GRAD_ALGORITHMS = ("auto", "direct", "gemm")
#: The input gradient also takes "winograd" (stride 1, dilation 1, 2-D 3x3 kernels).
INPUT_GRAD_ALGORITHMS = GRAD_ALGORITHMS + ("winograd",)


# --- 1. backend and inputs; 5. results --------------------------------------------------


def wrap_inputs(func: str, backend_name: str, **arrays) -> dict:
    """Inputs as arrays of the chosen backend (its ``wrap``: real numbers, not all bool;
    None only for an optional argument such as ``bias``)."""
    wrap = _dispatch.backend(backend_name).wrap
    out = {}
    for name, a in arrays.items():
        if a is None:
            if name not in OPTIONAL_ARRAYS:
                raise TypeError(f"{func}: {name} must be an array, got None")
            out[name] = None
        else:
            out[name] = wrap(a, name, func)
    check_not_all_bool(func, out)
    return out


def prepare(func: str, device, arrays: dict):
    """The backend name for a call (``device``, else the data's) and the inputs as that
    backend's arrays."""
    name = _dispatch.choose(func, device, *arrays.values())
    return name, wrap_inputs(func, name, **arrays)


def deliver(backend_name: str, out, like, *inputs):
    """The result in the caller's array type (the backend's ``finish``, given ``like``),
    copied back to the host when it ran on the GPU for NumPy ``inputs`` (the one host
    copy of every op)."""
    out = _dispatch.backend(backend_name).finish(out, like)
    if backend_name == "cuda" and not any(_dispatch.is_cuda_array(a) for a in inputs):
        return out.copy_to_host()
    return out


def empty_result(be, shape5: tuple, dtype, bias=None):
    """The result of an op with nothing to sum (an empty batch, no input channels): the
    bias broadcast over ``(N, K, D, H, W)``, or zeros; no kernel runs."""
    if bias is None or 0 in shape5:
        return be.zeros(shape5, dtype)
    b = np.asarray(to_host(bias), dtype).reshape((1, -1, 1, 1, 1))
    return be.asarray(np.ascontiguousarray(np.broadcast_to(b, shape5)), dtype)


def _bias(be, plan, bias):
    return be.zeros((plan.out_shape[1],), plan.dtype) if bias is None else be.asarray(
        bias, plan.dtype)


# --- forward correlation / convolution ---------------------------------------------------


def correlate(plan: ConvPlan, backend_name: str, x, weight, bias, *, flip: bool = False,
              algorithm: str = "auto"):
    """Run a validated forward plan on wrapped inputs; the 5-D-shaped result reshaped to
    the caller's rank, on the backend (see :func:`deliver`)."""
    be = _dispatch.backend(backend_name)
    if 0 in plan.x_shape[:2]:  # N = 0 or C = 0: nothing to sum, the output is the bias
        out = empty_result(be, plan.out_shape, plan.dtype, bias)
        return out.reshape(plan.user_shape(plan.out_shape))
    x5 = be.asarray(x, plan.dtype).reshape(plan.x_shape)
    w5 = be.asarray(weight, plan.dtype).reshape(plan.w_shape)
    if flip:
        w5 = flip_weight(w5, plan.dtype, be.asarray)
    core = correlation_core(backend_name, be, algorithm, plan)
    out = be.empty(plan.out_shape, plan.dtype)
    # stride and dilation go in as tuples of 3 ints (Numba types them as UniTuples)
    core(x5, w5, _bias(be, plan, bias), out, plan.stride, plan.dilation, plan.groups)
    return out.reshape(plan.user_shape(plan.out_shape))


def forward(func: str, nspatial: int, x, weight, bias, stride, padding, dilation, groups,
            padding_mode, device, algorithm, flip: bool):
    """``conv*d`` (``flip=False``) and ``convolve*d`` (``flip=True``)."""
    if _dask.is_dask(x):  # lazy Dask array out; Dask is imported only for Dask input
        return _dask.conv(func, nspatial, x, weight, bias, stride, padding, dilation, groups,
                          padding_mode, device, algorithm, flip, dask_block)
    check_algorithm(algorithm, func, _algorithms.ALGORITHMS)
    name, a = prepare(func, device, {"x": x, "weight": weight, "bias": bias})
    plan = plan_conv(func, nspatial, a["x"], a["weight"], a["bias"], stride, padding,
                     dilation, groups, padding_mode)
    out = correlate(plan, name, a["x"], a["weight"], a["bias"], flip=flip, algorithm=algorithm)
    return deliver(name, out, x, x)


def dask_block(block, weight, bias, stride, dilation, groups, device, algorithm):
    """One Dask block: a valid correlation of a padded 5-D piece with the 5-D weight."""
    return forward("conv3d", 3, block, weight, bias, stride, 0, dilation, groups, "zeros",
                   device, algorithm, False)


# --- transposed convolution and input gradient ------------------------------------------


def correlate_input(plan: InputGradPlan, backend_name: str, g, weight, bias,
                    algorithm: str = "auto"):
    """Run a validated input-gradient plan (``g`` is grad_output, or the input of a
    transposed convolution); ``bias`` is added to every output."""
    be = _dispatch.backend(backend_name)
    if 0 in plan.g_shape[:2] or 0 in plan.out_shape:  # an empty batch or no channels
        out = empty_result(be, plan.out_shape, plan.dtype, bias)
        return out.reshape(plan.user_shape(plan.out_shape))
    g5 = be.asarray(g, plan.dtype).reshape(plan.g_shape)
    w5 = be.asarray(weight, plan.dtype).reshape(plan.w_shape)
    core = grad_core(backend_name, be, algorithm, plan, "input_grad")
    out = be.empty(plan.padded_shape, plan.dtype)  # the core folds it for non-zero modes
    res = core(g5, w5, _bias(be, plan, bias), out)
    return res.reshape(plan.user_shape(plan.out_shape))


def conv_transpose(func: str, nspatial: int, x, weight, bias, stride, padding, output_padding,
                   groups, dilation, device):
    """``conv_transpose*d``: the input gradient of a correlation, plus a bias."""
    name, a = prepare(func, device, {"x": x, "weight": weight, "bias": bias})
    plan = plan_conv_transpose(func, nspatial, a["x"], a["weight"], a["bias"], stride,
                               padding, output_padding, groups, dilation)
    out = correlate_input(plan, name, a["x"], a["weight"], a["bias"])
    return deliver(name, out, a["x"], x)


def conv_input(func: str, nspatial: int, input_size, weight, grad_output, stride, padding,
               dilation, groups, padding_mode, device, algorithm):
    """``grad.conv*d_input``."""
    check_algorithm(algorithm, func, INPUT_GRAD_ALGORITHMS)
    name, a = prepare(func, device, {"weight": weight, "grad_output": grad_output})
    plan = plan_conv_input(func, nspatial, input_size, a["weight"], a["grad_output"], stride,
                           padding, dilation, groups, padding_mode)
    if algorithm == "winograd":
        _algorithms.check_winograd_input(func, plan)
    out = correlate_input(plan, name, a["grad_output"], a["weight"], None, algorithm)
    return deliver(name, out, a["grad_output"], weight, grad_output)


# --- weight gradient ----------------------------------------------------------------------


def correlate_weight(plan: ConvPlan, backend_name: str, x, grad_output, weight_size: tuple,
                     algorithm: str = "auto"):
    """Run a validated weight-gradient plan (the forward plan of the correlation)."""
    be = _dispatch.backend(backend_name)
    if 0 in plan.x_shape[:2]:  # an empty batch (zeros) or no input channels (empty)
        gw = be.zeros(plan.w_shape, plan.dtype)
    else:
        x5 = be.asarray(x, plan.dtype).reshape(plan.x_shape)
        g5 = be.asarray(grad_output, plan.dtype).reshape(plan.out_shape)
        core = grad_core(backend_name, be, algorithm, plan, "weight_grad")
        gw = be.empty(plan.w_shape, plan.dtype)
        core(x5, g5, gw)  # the core pads the input itself (or reads its zero padding)
    return gw.reshape(weight_size)


def conv_weight(func: str, nspatial: int, x, weight_size, grad_output, stride, padding,
                dilation, groups, padding_mode, device, algorithm):
    """``grad.conv*d_weight``."""
    check_algorithm(algorithm, func, GRAD_ALGORITHMS)
    name, a = prepare(func, device, {"input": x, "grad_output": grad_output})
    plan = plan_conv_weight(func, nspatial, a["input"], weight_size, a["grad_output"], stride,
                            padding, dilation, groups, padding_mode)
    size = tuple(int(v) for v in weight_size)
    out = correlate_weight(plan, name, a["input"], a["grad_output"], size, algorithm)
    return deliver(name, out, x, x, grad_output)


def conv_bias(func: str, grad_output, batched: bool, device):
    """``grad.conv_bias``: ``grad_output`` summed over every axis but the channel axis."""
    name, a = prepare(func, device, {"grad_output": grad_output})
    g = a["grad_output"]
    shape = shape_of(g)
    need = 2 if batched else 1
    if len(shape) < need:
        raise ValueError(
            f"{func}: grad_output must be at least {need}-D "
            f"({'(N, K, *spatial)' if batched else '(K, *spatial)'}), got {len(shape)}-D with "
            f"grad_output.shape={shape}"
        )
    lead = shape[:2] if batched else (1,) + shape[:1]
    g3_shape = lead + (math.prod(shape[len(lead) - (0 if batched else 1):]),)
    dtype = result_dtype(g)
    be = _dispatch.backend(name)
    g3 = be.asarray(g, dtype).reshape(g3_shape)
    out = be.empty((g3_shape[1],), dtype)
    be.sum_channels(g3, out)
    return deliver(name, out, grad_output, grad_output)


# --- pooling ------------------------------------------------------------------------------


def max_pool(func: str, nspatial: int, x, kernel_size, stride, padding, dilation, ceil_mode,
             return_indices, device):
    """``max_pool*d``."""
    if _dask.is_dask(x):  # lazy Dask array(s) out
        return _dask.pool("max", func, nspatial, x, kernel_size, stride, padding, dilation,
                          ceil_mode, return_indices, device=device)
    name, a = prepare(func, device, {"x": x})
    plan = plan_pool(func, nspatial, a["x"], kernel_size, stride, padding, dilation,
                     ceil_mode, "max")
    be = _dispatch.backend(name)
    out = be.empty(plan.out_shape, plan.dtype)
    idx = be.empty(plan.out_shape, np.int64) if return_indices else None
    if plan.x_shape[0]:  # an empty batch gives empty results (PyTorch); no kernel runs
        x5 = be.asarray(a["x"], plan.dtype).reshape(plan.x_shape)
        be.max_pool(x5, out, idx, plan.kernel, plan.stride, plan.pads, plan.dilation)
    shape = plan.user_shape(plan.out_shape)
    out = deliver(name, out.reshape(shape), a["x"], x)
    if not return_indices:
        return out
    return out, deliver(name, idx.reshape(shape), a["x"], x)


def avg_pool(func: str, nspatial: int, x, kernel_size, stride, padding, ceil_mode,
             count_include_pad, divisor_override, device):
    """``avg_pool*d``."""
    if _dask.is_dask(x):  # lazy Dask array out
        return _dask.pool("avg", func, nspatial, x, kernel_size, stride, padding, 1,
                          ceil_mode, False, count_include_pad, divisor_override, device)
    name, a = prepare(func, device, {"x": x})
    plan = plan_pool(func, nspatial, a["x"], kernel_size, stride, padding, 1, ceil_mode,
                     "avg", count_include_pad, divisor_override)
    be = _dispatch.backend(name)
    out = be.empty(plan.out_shape, plan.dtype)
    if plan.x_shape[0]:  # an empty batch gives an empty result (PyTorch); no kernel runs
        x5 = be.asarray(a["x"], plan.dtype).reshape(plan.x_shape)
        be.avg_pool(x5, out, plan.kernel, plan.stride, plan.pads, plan.divisors)
    return deliver(name, out.reshape(plan.user_shape(plan.out_shape)), a["x"], x)


def _check_pool_grad_output(plan: PoolPlan, grad_output, x) -> None:
    want = plan.user_shape(plan.out_shape)
    if shape_of(grad_output) != want:
        raise ValueError(
            f"{plan.func}: grad_output.shape={shape_of(grad_output)} does not match the "
            f"pooling output shape {want} (x.shape={shape_of(x)})"
        )


def pool_backward(func: str, nspatial: int, kind: str, grad_output, x, kernel_size, stride,
                  padding, dilation, ceil_mode, count_include_pad=True, divisor_override=None):
    """``grad.max_pool*d`` (``kind="max"``) and ``grad.avg_pool*d`` (``"avg"``)."""
    name, a = prepare(func, None, {"grad_output": grad_output, "x": x})
    plan = plan_pool(func, nspatial, a["x"], kernel_size, stride, padding, dilation,
                     ceil_mode, kind, count_include_pad, divisor_override)
    _check_pool_grad_output(plan, a["grad_output"], a["x"])
    be = _dispatch.backend(name)
    dtype = result_dtype(a["x"], a["grad_output"])
    gx = be.empty(plan.x_shape, dtype)
    if not plan.x_shape[0]:  # an empty batch: an empty gradient, no kernel runs
        pass
    elif kind == "max":
        g5 = be.asarray(a["grad_output"], dtype).reshape(plan.out_shape)
        x5 = be.asarray(a["x"], dtype).reshape(plan.x_shape)
        be.max_pool_backward(g5, x5, gx, plan.kernel, plan.stride, plan.pads, plan.dilation)
    else:
        g5 = be.asarray(a["grad_output"], dtype).reshape(plan.out_shape)
        be.avg_pool_backward(g5, gx, plan.kernel, plan.stride, plan.pads, plan.divisors)
    return deliver(name, gx.reshape(shape_of(a["x"])), a["x"], x)
