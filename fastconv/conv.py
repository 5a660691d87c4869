"""Forward cross-correlation and convolution: validate -> plan -> dispatch.

``conv1d/2d/3d`` (cross-correlation, what frameworks call convolution), ``convolve1d/2d/3d``
(true convolution: the kernel flipped on every spatial axis), ``corr2d`` (the seeds'
function).
"""

from __future__ import annotations

import numpy as np

from fastconv import _dispatch, _run
from fastconv._docs import rank_doc
from fastconv._validate import as_array, check_not_all_bool

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


def _conv_doc(nspatial: int, flip: bool):
    """``_CONV_DOC`` for ``conv{n}d`` (``flip=False``) or ``convolve{n}d``."""
    kind = "convolve" if flip else "conv"
    return rank_doc(_CONV_DOC, nspatial, kind="True convolution" if flip else "Cross-correlation",
                    formula=_TRUE if flip else _XCORR, example=_EXAMPLES[(kind, nspatial)])


@_conv_doc(1, False)
def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, device=None, algorithm="auto"):
    return _run.forward("conv1d", 1, x, weight, bias, stride, padding, dilation, groups,
                        padding_mode, device, algorithm, False)


@_conv_doc(2, False)
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, device=None, algorithm="auto"):
    return _run.forward("conv2d", 2, x, weight, bias, stride, padding, dilation, groups,
                        padding_mode, device, algorithm, False)


@_conv_doc(3, False)
def conv3d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, device=None, algorithm="auto"):
    return _run.forward("conv3d", 3, x, weight, bias, stride, padding, dilation, groups,
                        padding_mode, device, algorithm, False)


@_conv_doc(1, True)
def convolve1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
               padding_mode="zeros", *, device=None, algorithm="auto"):
    return _run.forward("convolve1d", 1, x, weight, bias, stride, padding, dilation, groups,
                        padding_mode, device, algorithm, True)


@_conv_doc(2, True)
def convolve2d_nchw(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros", *, device=None, algorithm="auto"):
    return _run.forward("convolve2d", 2, x, weight, bias, stride, padding, dilation, groups,
                        padding_mode, device, algorithm, True)


@_conv_doc(3, True)
def convolve3d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
               padding_mode="zeros", *, device=None, algorithm="auto"):
    return _run.forward("convolve3d", 3, x, weight, bias, stride, padding, dilation, groups,
                        padding_mode, device, algorithm, True)


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
    return _run.forward("corr2d", 2, X[None, None], K[None, None], None, 1, 0, 1, 1, "zeros",
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


def _transpose_doc(nspatial: int):
    return rank_doc(_TRANSPOSE_DOC, nspatial, example=_TRANSPOSE_EXAMPLES[nspatial])


@_transpose_doc(1)
def conv_transpose1d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, device=None):
    return _run.conv_transpose("conv_transpose1d", 1, x, weight, bias, stride, padding,
                               output_padding, groups, dilation, device)


@_transpose_doc(2)
def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, device=None):
    return _run.conv_transpose("conv_transpose2d", 2, x, weight, bias, stride, padding,
                               output_padding, groups, dilation, device)


@_transpose_doc(3)
def conv_transpose3d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, device=None):
    return _run.conv_transpose("conv_transpose3d", 3, x, weight, bias, stride, padding,
                               output_padding, groups, dilation, device)
