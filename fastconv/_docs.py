"""Shared parameter text, written once and filled into docstrings (as SciPy's docfiller).

Boundary modes (``padding_mode``), for an axis ``a b c d`` padded by 3::

    'zeros'      0 0 0 | a b c d | 0 0 0
    'reflect'    d c b | a b c d | c b a      (numpy 'reflect', PyTorch 'reflect')
    'replicate'  a a a | a b c d | d d d      (numpy 'edge')
    'circular'   b c d | a b c d | a b c      (numpy 'wrap')
"""

from __future__ import annotations

DOCS = {
    "stride": """stride : int or tuple of int, default 1
        Step between output positions, per spatial axis (>= 1).""",
    "padding": """padding : int, tuple, tuple of (before, after) pairs, or str, default 0
        Implicit padding per spatial axis. Strings: ``"valid"`` (none), ``"same"``
        (output size == input size; stride 1 only; an odd total puts the extra element
        after, as PyTorch), ``"full"`` (``dilation*(k-1)`` on both sides).""",
    "dilation": """dilation : int or tuple of int, default 1
        Spacing between kernel taps (>= 1).""",
    "groups": """groups : int, default 1
        Split channels into groups; must divide C and K. ``groups == C`` is depthwise.""",
    "padding_mode": """padding_mode : {"zeros", "reflect", "replicate", "circular"}
        How the padded border is filled (numpy's constant/reflect/edge/wrap)::

            'zeros'      0 0 0 | a b c d | 0 0 0
            'reflect'    d c b | a b c d | c b a
            'replicate'  a a a | a b c d | d d d
            'circular'   b c d | a b c d | a b c""",
    "device": """device : {None, "cpu", "cuda"}, keyword-only
        ``None`` follows the data (a ``__cuda_array_interface__`` array runs on the GPU
        and returns a device array; NumPy runs on the CPU unless ``FASTCONV_DEVICE=cuda``).
        ``"cuda"`` with NumPy input runs on the GPU and returns NumPy.""",
    "algorithm": """algorithm : {"auto", "direct", ...}, keyword-only
        Which algorithm computes the result; every choice gives the same answer within
        float tolerance. ``"auto"`` picks from the shapes (see README, "Algorithms").""",
    "dtypes": """float32 and float64 are computed natively and preserved; other real dtypes are
    promoted with ``numpy.result_type(x, weight, float32)``.""",
}


#: The sections a ``*_backward`` docstring ends with, after its own summary: ``{op}`` is
#: the forward op, ``{output}`` names its output ("its output"), ``{example}`` the example
#: (all filled with the summary's fields).
GRAD_SECTIONS = """
    Returns
    -------
    ndarray, shape of ``x``

    Raises
    ------
    ValueError
        As ``{op}``, and when ``grad_output`` does not have {output}'s shape.

    Examples
    --------
    {example}
    """


def fill(**extra):
    """Decorator: substitute ``{stride}``, ``{padding}``, ... in a docstring."""

    def deco(f):
        if f.__doc__:
            f.__doc__ = f.__doc__.format(**DOCS, **extra)
        return f

    return deco


def rank_doc(template: str, nspatial: int, **extra):
    """Decorator: ``template`` filled for rank ``nspatial`` (:data:`RANKS`' texts, ``{n}``
    and ``extra``) as the function's docstring: one docstring for the 1-D, 2-D and 3-D
    versions of an op."""

    def deco(f):
        f.__doc__ = template
        return fill(n=nspatial, **RANKS[nspatial], **extra)(f)

    return deco


#: Shape texts of the conv families per rank (conv, convolve, conv_transpose, gradients).
RANKS = {
    1: dict(rank="1-D", shape_in="(N, C, L) or (C, L)", shape_out="(N, K, L_out) or (K, L_out)",
            kernel="kL", shape="(N, C, L) -> (N, K, L_out)"),
    2: dict(rank="2-D", shape_in="(N, C, H, W) or (C, H, W)",
            shape_out="(N, K, H_out, W_out) or (K, H_out, W_out)", kernel="kH, kW",
            shape="(N, C, H, W) -> (N, K, H_out, W_out)"),
    3: dict(rank="3-D", shape_in="(N, C, D, H, W) or (C, D, H, W)",
            shape_out="(N, K, D_out, H_out, W_out) or (K, D_out, H_out, W_out)",
            kernel="kD, kH, kW", shape="(N, C, D, H, W) -> (N, K, D_out, H_out, W_out)"),
}
