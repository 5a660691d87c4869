"""SciPy 1.17's own tests of scipy.signal's correlate/convolve/fftconvolve/oaconvolve/
choose_conv_method/correlate2d/convolve2d, run against fastconv.signal.

Source: the installed wheel's ``scipy/signal/tests/test_signaltools.py``, imported (not
copied) with those names pointing at fastconv (``conftest.import_against_ours``); tests
that call none of them are deselected, and so are the ones SciPy marks slow
(``FASTCONV_PEER_SLOW=1`` runs them: 10,347 more, 1 min 40 s on 2 loaded cores).
fastconv's two documented differences (README "SciPy n-D": integer inputs give float
results, complex inputs raise ``TypeError``) are expected failures by the conftest's
``BRIDGED`` rule: a failing test is run again with them bridged, and is an expected
failure only if it then passes.
"""

from __future__ import annotations

import pytest

pytest.importorskip("scipy")
from fastconv import signal as OURS  # noqa: E402

from .conftest import import_against_ours  # noqa: E402

pytestmark = pytest.mark.peer

REPLACED = ["correlate", "convolve", "fftconvolve", "oaconvolve", "choose_conv_method",
            "correlate2d", "convolve2d"]
_T, _ns = import_against_ours("scipy.signal.tests.test_signaltools", "signal", OURS,
                              REPLACED)
_T.signal = _ns
for _n in REPLACED:
    setattr(_T, _n, getattr(OURS, _n))
#: Where the conftest's bridge swaps the names: SciPy's test module, its ``signal``.
BRIDGED = (_T, _ns)

_CLASSES = ("TestConvolve", "TestConvolve2d", "TestFFTConvolve", "TestOAConvolve",
            "TestAllFreqConvolves", "TestCorrelateReal", "TestCorrelate",
            "TestCorrelateComplex", "TestCorrelate2d")
globals().update({k: getattr(_T, k) for k in _CLASSES})
globals().update({k: v for k, v in vars(_T).items()
                  if k.startswith("test_") and callable(v)})
