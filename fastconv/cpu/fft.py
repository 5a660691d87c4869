"""Correlation by FFT, for large kernels.

The input is already padded, so every output is a "valid" correlation of ``xp`` with the
dilated kernel ``wd``. A circular correlation of length ``F >= P`` (the padded extent) is
exact at those positions (no window wraps around), so::

    y = irfftn(rfftn(xp, F) * conj(rfftn(wd, F)))[o * stride]

summed over the channels of each group in the frequency domain. An input or kernel
holding NaN or Inf goes to the direct kernel instead, so that they propagate only to the
outputs whose windows hold them, exactly as with the other algorithms. SciPy's ``scipy.fft``
(with one worker per Numba thread) is used when installed, ``numpy.fft`` otherwise.
"""

from __future__ import annotations

import numba
import numpy as np

from fastconv.cpu.conv import correlate as direct_correlate

try:  # pragma: no cover - exercised where SciPy is installed (the test extras)
    import scipy.fft as _sfft

    def _rfftn(a, s):
        return _sfft.rfftn(a, s=s, axes=(-3, -2, -1), workers=numba.get_num_threads())

    def _irfftn(a, s):
        return _sfft.irfftn(a, s=s, axes=(-3, -2, -1), workers=numba.get_num_threads())

    def _fast_len(n: int) -> int:
        return int(_sfft.next_fast_len(n, real=True))

except ImportError:  # pragma: no cover

    def _rfftn(a, s):
        return np.fft.rfftn(a, s=s, axes=(-3, -2, -1))

    def _irfftn(a, s):
        return np.fft.irfftn(a, s=s, axes=(-3, -2, -1))

    def _fast_len(n: int) -> int:
        m = n
        while True:  # smallest 2^a 3^b 5^c >= n
            r = m
            for p in (2, 3, 5):
                while r % p == 0:
                    r //= p
            if r == 1:
                return m
            m += 1


def correlate(xp, w, bias, out, stride, dilation, groups):
    """out[n, k, o] = bias[k] + sum_{c in group(k), r} xp[n, c, o*stride + r*dilation] * w[k, c, r].

    Same arguments and result (within float rounding) as
    :func:`fastconv.cpu.conv.correlate`.
    """
    if not (np.isfinite(xp).all() and np.isfinite(w).all()):
        # an FFT would spread one NaN/Inf over the whole plane: keep NumPy's propagation
        return direct_correlate(xp, w, bias, out, stride, dilation, groups)
    N, C = xp.shape[:2]
    K, Cg = w.shape[:2]
    Kg = K // groups
    d = [int(v) for v in dilation]
    s = [int(v) for v in stride]
    span = [(k - 1) * di + 1 for k, di in zip(w.shape[2:], d, strict=True)]
    wd = np.zeros((K, Cg, *span), dtype=w.dtype)
    wd[:, :, :: d[0], :: d[1], :: d[2]] = w
    fshape = [_fast_len(n) for n in xp.shape[2:]]
    xf = _rfftn(xp, fshape)
    wf = _rfftn(wd, fshape)
    np.conjugate(wf, out=wf)
    OD, OH, OW = out.shape[2:]
    keep = (
        slice(None),
        slice(None),
        slice(0, (OD - 1) * s[0] + 1, s[0]),
        slice(0, (OH - 1) * s[1] + 1, s[1]),
        slice(0, (OW - 1) * s[2] + 1, s[2]),
    )
    for g in range(groups):
        xg = xf[:, g * Cg : (g + 1) * Cg]
        wg = wf[g * Kg : (g + 1) * Kg]
        yf = xg[:, None, 0] * wg[None, :, 0]
        for c in range(1, Cg):
            yf += xg[:, None, c] * wg[None, :, c]
        y = _irfftn(yf, fshape)
        out[:, g * Kg : (g + 1) * Kg] = y[keep]
    if np.any(bias):
        out += bias.reshape(1, K, 1, 1, 1)
    return out
