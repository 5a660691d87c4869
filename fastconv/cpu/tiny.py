"""The direct correlation for tiny problems: one scalar loop per output, quick to compile.

:func:`correlate_tiny` has :func:`fastconv.cpu.conv.correlate`'s signature and gives its
bits: every output of the big kernel is the chain ``acc = fma(w, x, acc)`` over its taps
in (c, d, h, w) order from the bias (its ``_fma_row4`` passes contract ``a += w * x`` to
one ``fma`` per tap; its three-tap ``_fma_taps3`` passes of the partial channel block
come out of LLVM's reassociation as the same chain), and this kernel spells that chain
out with LLVM's ``fma`` intrinsic, which no fastmath flag reorders.

It compiles one small signature per dtype (no ``prange``, no unrolled or vectorised row
passes, no inlined helpers): a fraction of ``correlate_serial``'s cold compile
(``bench/compile_times.py``). ``tests/test_tiny.py`` compares the two byte for byte.
"""

from __future__ import annotations

from numba import njit

from fastconv._config import JIT_SERIAL
from fastconv.cpu.conv import _fma


@njit(**JIT_SERIAL)
def correlate_tiny(xp, w, bias, out, stride, dilation, groups):
    """out[n, k, o] = bias[k] + sum_{c in group(k), r} xp[n, c, o*stride + r*dilation] * w[k, c, r].

    ``xp`` is already padded (as for :func:`fastconv.cpu.conv.correlate`).

    Examples
    --------
    >>> import numpy as np
    >>> out = np.empty((1, 1, 1, 1, 2))
    >>> correlate_tiny(np.arange(3.).reshape(1, 1, 1, 1, 3), np.ones((1, 1, 1, 1, 2)),
    ...                np.zeros(1), out, (1, 1, 1), (1, 1, 1), 1)
    >>> out.ravel().tolist()
    [1.0, 3.0]
    """
    N = xp.shape[0]
    K, Cg, KD, KH, KW = w.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    sd, sh, sw = stride[0], stride[1], stride[2]
    dd, dh, dw = dilation[0], dilation[1], dilation[2]
    Kg = K // groups
    for n in range(N):
        for k in range(K):
            c0 = k // Kg * Cg
            for od in range(OD):
                for oh in range(OH):
                    for ow in range(OW):
                        acc = bias[k]
                        for c in range(Cg):
                            for a in range(KD):
                                for b in range(KH):
                                    row = xp[n, c0 + c, od * sd + a * dd, oh * sh + b * dh]
                                    for e in range(KW):
                                        acc = _fma(w[k, c, a, b, e], row[ow * sw + e * dw], acc)
                        out[n, k, od, oh, ow] = acc
