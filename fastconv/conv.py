"""Forward cross-correlation and convolution: validate -> plan -> dispatch.

``conv1d/2d/3d`` (cross-correlation, what frameworks call convolution), ``convolve1d/2d/3d``
(true convolution: the kernel flipped on every spatial axis), ``corr2d`` (the seeds'
function).
"""

from __future__ import annotations

import numpy as np

from fastconv import _dask, _dispatch
from fastconv._algorithms import ALGORITHMS, correlation_core
from fastconv._docs import fill
from fastconv._plan import ConvPlan, InputGradPlan, plan_conv, plan_conv_transpose
from fastconv._validate import as_array, check_algorithm, check_not_all_bool

#: Array arguments that may be None (every other one must be an array).
OPTIONAL_ARRAYS = ("bias",)


def wrap_inputs(func: str, backend_name: str, **arrays):
    """Inputs as arrays of the chosen backend (dtypes checked: real numbers, not all
    bool; None only for an optional argument such as ``bias``)."""
    be = _dispatch.backend(backend_name) if backend_name != "cpu" else None
    out = {}
    for name, a in arrays.items():
        if a is None:
            if name not in OPTIONAL_ARRAYS:
                raise TypeError(f"{func}: {name} must be an array, got None")
            out[name] = None
        elif be is None:
            out[name] = as_array(a, name, func)
        else:
            out[name] = be.wrap(a, name, func)
    check_not_all_bool(func, out)
    return out


_NO_PADS = ((0, 0),) * 3


def empty_result(be, shape5: tuple, dtype, bias=None):
    """The result of an op with nothing to sum (an empty batch, no input channels): the
    bias broadcast over ``(N, K, D, H, W)``, or zeros; no kernel runs."""
    if bias is None or 0 in shape5:
        return be.zeros(shape5, dtype)
    host = bias.copy_to_host() if hasattr(bias, "copy_to_host") else bias
    b = np.asarray(host, dtype).reshape((1, -1, 1, 1, 1))
    return be.asarray(np.ascontiguousarray(np.broadcast_to(b, shape5)), dtype)


def run_correlate(plan: ConvPlan, backend_name: str, x, weight, bias, *, flip: bool = False,
                  like=None, algorithm: str = "auto"):
    """Pad, allocate and run the backend's correlation core for a validated plan; the
    result takes the array type of ``like`` (the caller's input; default ``x``).
    ``algorithm`` picks the core (see ``fastconv._algorithms``)."""
    be = _dispatch.backend(backend_name)
    if 0 in plan.x_shape[:2]:  # N = 0 or C = 0: nothing to sum, the output is the bias
        out = empty_result(be, plan.out_shape, plan.dtype, bias)
        return be.finish(out.reshape(plan.user_shape(plan.out_shape)), x if like is None else like)
    x5 = be.asarray(x, plan.dtype).reshape(plan.x_shape)
    w5 = be.asarray(weight, plan.dtype).reshape(plan.w_shape)
    if flip:
        w5 = be.asarray(w5[:, :, ::-1, ::-1, ::-1], plan.dtype)
    b = (
        be.zeros((plan.out_shape[1],), plan.dtype)
        if bias is None
        else be.asarray(bias, plan.dtype)
    )
    core = correlation_core(backend_name, be, algorithm, plan)
    if plan.pads == _NO_PADS or getattr(core, "pads_itself", False):
        xp = x5
    else:
        xp = be.pad(x5, plan.pads, plan.padding_mode)
    out = be.empty(plan.out_shape, plan.dtype)
    # stride and dilation go in as tuples of 3 ints (Numba types them as UniTuples)
    core(xp, w5, b, out, plan.stride, plan.dilation, plan.groups)
    return be.finish(out.reshape(plan.user_shape(plan.out_shape)), x if like is None else like)


def _forward(func, nspatial, x, weight, bias, stride, padding, dilation, groups,
             padding_mode, device, algorithm, flip):
    if _dask.is_dask(x):  # lazy Dask array out; Dask is imported only for Dask input
        return _dask.conv(func, nspatial, x, weight, bias, stride, padding, dilation, groups,
                          padding_mode, device, algorithm, flip)
    check_algorithm(algorithm, func, ALGORITHMS)
    name = _dispatch.choose(func, device, x, weight, bias)
    a = wrap_inputs(func, name, x=x, weight=weight, bias=bias)
    plan = plan_conv(func, nspatial, a["x"], a["weight"], a["bias"], stride, padding,
                     dilation, groups, padding_mode)
    out = run_correlate(plan, name, a["x"], a["weight"], a["bias"], flip=flip, like=x,
                        algorithm=algorithm)
    if name == "cuda" and not _dispatch.is_cuda_array(x):
        return out.copy_to_host()
    return out


_CONV_DOC = """{kind} of a batch of {rank} signals ({shape}).

    {formula}

    Parameters
    ----------
    x : array_like, shape {shape_in}
        Input, channels first. An unbatched input gives an unbatched output.
    weight : array_like, shape (K, C // groups, {kernel})
    bias : array_like, shape (K,), optional
    {stride}
    {padding}
    {dilation}
    {groups}
    {padding_mode}
    {device}
    {algorithm}

    Returns
    -------
    ndarray, shape {shape_out}
        {dtypes}

    Raises
    ------
    ValueError
        Wrong rank, channel mismatch, bad stride/dilation/padding/groups, kernel larger
        than the padded input (messages name the parameter and the shapes).
    TypeError
        Complex, object or string input, or inputs that are all bool.

    Examples
    --------
    {example}
    """

_XCORR = ("y[n, k, o] = bias[k] + sum_{c in group(k), r} "
          "x_pad[n, c, o*stride + r*dilation] * w[k, c, r]")
_TRUE = "Cross-correlation with the kernel flipped on every spatial axis: conv with w[..., ::-1]."
_RANKS = {
    1: dict(rank="1-D", shape_in="(N, C, L) or (C, L)", shape_out="(N, K, L_out) or (K, L_out)",
            kernel="kL", shape="(N, C, L) -> (N, K, L_out)"),
    2: dict(rank="2-D", shape_in="(N, C, H, W) or (C, H, W)",
            shape_out="(N, K, H_out, W_out) or (K, H_out, W_out)", kernel="kH, kW",
            shape="(N, C, H, W) -> (N, K, H_out, W_out)"),
    3: dict(rank="3-D", shape_in="(N, C, D, H, W) or (C, D, H, W)",
            shape_out="(N, K, D_out, H_out, W_out) or (K, D_out, H_out, W_out)",
            kernel="kD, kH, kW", shape="(N, C, D, H, W) -> (N, K, D_out, H_out, W_out)"),
}
_EXAMPLES = {
    ("conv", 1): ">>> conv1d([[0., 1., 2., 3.]], [[[1., -1.]]])\n    array([[-1., -1., -1.]])",
    ("conv", 2): (
        ">>> x = np.arange(9.).reshape(1, 3, 3)\n"
        "    >>> conv2d(x, [[[[0., 1.], [2., 3.]]]])\n"
        "    array([[[19., 25.],\n            [37., 43.]]])"
    ),
    ("conv", 3): (">>> conv3d(np.ones((1, 2, 2, 2)), np.ones((1, 1, 2, 2, 2))).shape\n"
                  "    (1, 1, 1, 1)"),
    ("convolve", 1): ">>> convolve1d([[0., 1., 2., 3.]], [[[1., -1.]]])\n    array([[1., 1., 1.]])",
    ("convolve", 2): (
        ">>> x = np.arange(9.).reshape(1, 3, 3)\n"
        "    >>> convolve2d_nchw(x, [[[[3., 2.], [1., 0.]]]])\n"
        "    array([[[19., 25.],\n            [37., 43.]]])"
    ),
    ("convolve", 3): (">>> convolve3d(np.ones((1, 2, 2, 2)), np.ones((1, 1, 2, 2, 2))).shape\n"
                      "    (1, 1, 1, 1)"),
}


def _make(nspatial: int, flip: bool):
    kind = "convolve" if flip else "conv"
    func = f"{kind}{nspatial}d"

    def op(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, device=None, algorithm="auto"):
        return _forward(func, nspatial, x, weight, bias, stride, padding, dilation, groups,
                        padding_mode, device, algorithm, flip)

    op.__name__ = op.__qualname__ = func
    op.__doc__ = _CONV_DOC
    fill(kind="True convolution" if flip else "Cross-correlation",
         formula=_TRUE if flip else _XCORR, example=_EXAMPLES[(kind, nspatial)],
         **_RANKS[nspatial])(op)
    return op


conv1d = _make(1, False)
conv2d = _make(2, False)
conv3d = _make(3, False)
convolve1d = _make(1, True)
convolve2d_nchw = _make(2, True)
convolve3d = _make(3, True)


def corr2d(X, K) -> np.ndarray:
    """The seeds' 2-D cross-correlation: plain 2-D arrays, "valid" output.

    ``Y[i, j] = (X[i:i+h, j:j+w] * K).sum()``; output shape ``(H - h + 1, W - w + 1)``.

    Examples
    --------
    >>> corr2d([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]])
    array([[19., 25.],
           [37., 43.]])
    """
    X = as_array(X, "X", "corr2d")
    K = as_array(K, "K", "corr2d")
    check_not_all_bool("corr2d", {"X": X, "K": K})
    for name, a in (("X", X), ("K", K)):
        if a.ndim != 2:
            raise ValueError(
                f"corr2d: {name} must be 2-D, got {a.ndim}-D with {name}.shape={a.shape}"
            )
    return _forward("corr2d", 2, X[None, None], K[None, None], None, 1, 0, 1, 1, "zeros",
                    None, "auto", False)[0, 0]


def convolve2d(in1, in2, *args, **kwargs):
    """True 2-D convolution, in two call styles told apart by the rank of the first input.

    - ``convolve2d(in1, in2, mode="full", boundary="fill", fillvalue=0)`` with a 2-D
      ``in1``: drop-in for ``scipy.signal.convolve2d`` (see :func:`correlate2d`).
    - ``convolve2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
      padding_mode="zeros", *, device=None, algorithm="auto")`` with a 3-D ``(C, H, W)``
      or 4-D ``(N, C, H, W)`` ``x``: :func:`conv2d` with the kernel flipped on both
      spatial axes (the NCHW twin of ``convolve1d``/``convolve3d``).

    Examples
    --------
    >>> convolve2d([[1, 2], [3, 4]], [[1, 1]], mode="valid")
    array([[3.],
           [7.]])
    >>> convolve2d(np.arange(9.).reshape(1, 3, 3), [[[[3., 2.], [1., 0.]]]])
    array([[[19., 25.],
            [37., 43.]]])
    """
    if np.ndim(in1) <= 2 and not _dispatch.is_cuda_array(in1):
        from fastconv._scipy import scipy_convolve2d

        return scipy_convolve2d(in1, in2, *args, **kwargs)
    return convolve2d_nchw(in1, in2, *args, **kwargs)


def correlate2d(in1, in2, mode: str = "full", boundary: str = "fill", fillvalue=0):
    """Drop-in for ``scipy.signal.correlate2d`` on the fastconv engine.

    Same defaults and results for every ``mode`` ("full", "valid", "same") and
    ``boundary`` ("fill", "wrap", "symm"), including SciPy's swap when ``in2`` is larger
    than ``in1`` in "valid" mode. The result dtype follows fastconv's rule (float32 or
    float64), not SciPy's integer-preserving one.

    Examples
    --------
    >>> correlate2d([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]], mode="valid")
    array([[19., 25.],
           [37., 43.]])
    """
    from fastconv._scipy import scipy_correlate2d

    return scipy_correlate2d(in1, in2, mode=mode, boundary=boundary, fillvalue=fillvalue)


# --- transposed convolution (the input gradient of a correlation) ----------------------


def run_input_grad(plan: InputGradPlan, backend_name: str, g, weight, bias,
                   algorithm: str = "auto"):
    """Run the backend's input-gradient core for a validated plan (``g`` is grad_output,
    or the input of a transposed convolution); ``bias`` is added to every output.
    ``algorithm`` picks the CPU core ("auto", "direct", "gemm"; see ``fastconv.cpu.grad``)."""
    be = _dispatch.backend(backend_name)
    if not hasattr(be, "correlate_input"):
        raise NotImplementedError(f"{plan.func}: not implemented on device {backend_name!r}")
    if 0 in plan.g_shape[:2] or 0 in plan.out_shape:  # an empty batch or no channels
        out = empty_result(be, plan.out_shape, plan.dtype, bias)
        return be.finish(out.reshape(plan.user_shape(plan.out_shape)), g)
    g5 = be.asarray(g, plan.dtype).reshape(plan.g_shape)
    w5 = be.asarray(weight, plan.dtype).reshape(plan.w_shape)
    b = (
        be.zeros((plan.out_shape[1],), plan.dtype)
        if bias is None
        else be.asarray(bias, plan.dtype)
    )
    out = be.empty(plan.padded_shape, plan.dtype)
    res = be.correlate_input(g5, w5, b, out, plan.spread_shape, plan.spread_src,
                             plan.spread_dst, plan.dilation, plan.groups, plan.pads,
                             plan.padding_mode,
                             **({"algorithm": algorithm} if backend_name == "cpu" else {}))
    return be.finish(res.reshape(plan.user_shape(plan.out_shape)), g)


_TRANSPOSE_DOC = """Transposed convolution of a batch of {rank} signals ({shape}).

    The adjoint of :func:`conv{n}d` with the same weight, stride, padding, dilation and
    groups (PyTorch's ``conv_transpose{n}d``, sometimes called "deconvolution")::

        y[n, k, i] = bias[k] + sum_{{c in group(k), o, r : o*stride + r*dilation == i + padding}}
                     x[n, c, o] * weight[c, k % (K // groups), r]

    Output size per axis: ``(n - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1``.

    Parameters
    ----------
    x : array_like, shape {shape_in}
    weight : array_like, shape (C, K // groups, {kernel})
    bias : array_like, shape (K,), optional
    {stride}
    padding : int or tuple of int, default 0
        Removes ``padding`` elements from both ends of every output axis.
    output_padding : int or tuple of int, default 0
        Extra elements at the end of every output axis; must be smaller than either the
        stride or the dilation (PyTorch's rule).
    {groups}
    {dilation}
    {device}

    Returns
    -------
    ndarray, shape {shape_out}
        {dtypes}

    Raises
    ------
    ValueError
        Wrong rank, channel mismatch, bad stride/dilation/padding/groups,
        ``output_padding`` too large, an output size below 1.

    Examples
    --------
    {example}
    """

_TRANSPOSE_EXAMPLES = {
    1: ">>> conv_transpose1d([[[1., 1.]]], [[[1., -1.]]])\n    array([[[ 1.,  0., -1.]]])",
    2: (">>> conv_transpose2d(np.ones((1, 1, 1, 1)), np.arange(4.).reshape(1, 1, 2, 2),\n"
        "    ...                   stride=2, output_padding=1)[0, 0]\n"
        "    array([[0., 1., 0.],\n           [2., 3., 0.],\n           [0., 0., 0.]])"),
    3: (">>> conv_transpose3d(np.ones((1, 1, 2, 2, 2)), np.ones((1, 1, 2, 2, 2))).shape\n"
        "    (1, 1, 3, 3, 3)"),
}


def _make_transpose(nspatial: int):
    func = f"conv_transpose{nspatial}d"

    def op(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
           *, device=None):
        name = _dispatch.choose(func, device, x, weight, bias)
        a = wrap_inputs(func, name, x=x, weight=weight, bias=bias)
        plan = plan_conv_transpose(func, nspatial, a["x"], a["weight"], a["bias"], stride,
                                   padding, output_padding, groups, dilation)
        out = run_input_grad(plan, name, a["x"], a["weight"], a["bias"])
        if name == "cuda" and not _dispatch.is_cuda_array(x):
            return out.copy_to_host()
        return out

    op.__name__ = op.__qualname__ = func
    op.__doc__ = _TRANSPOSE_DOC
    fill(n=nspatial, example=_TRANSPOSE_EXAMPLES[nspatial], **_RANKS[nspatial])(op)
    return op


conv_transpose1d = _make_transpose(1)
conv_transpose2d = _make_transpose(2)
conv_transpose3d = _make_transpose(3)
