"""SciPy 1.17's own tests of scipy.ndimage's correlate/convolve/correlate1d/convolve1d/
uniform_filter(1d)/gaussian_filter(1d), run against fastconv.ndimage.

Source: the installed wheel's ``scipy/ndimage/tests/test_filters.py``, imported (not
copied) with ``ndimage`` pointing at fastconv (``conftest.import_against_ours``); tests
that call none of the replaced names are deselected. Remaining differences are strict
xfails below, with reasons (the README's "SciPy n-D" section lists the same).
"""

from __future__ import annotations

import pytest

pytest.importorskip("scipy")
import scipy  # noqa: E402

from fastconv import ndimage as _ours  # noqa: E402

from .conftest import import_against_ours  # noqa: E402

pytestmark = pytest.mark.peer

REPLACED = ["correlate", "convolve", "correlate1d", "convolve1d", "uniform_filter",
            "uniform_filter1d", "gaussian_filter", "gaussian_filter1d"]
_T, _ns = import_against_ours("scipy.ndimage.tests.test_filters", "ndimage", _ours, REPLACED)
_T.ndimage = _ns

_COMPLEX = "complex input/weights: fastconv.ndimage is real-valued (TypeError)"
_F32 = ("float32 is computed in float32 (SciPy computes in float64 and rounds once): "
        "agreement to float32 rounding, not SciPy's float64 tolerance")
XFAILS = {
    r"^(?!.*invalid_cval).*complex": _COMPLEX,
    r"test_gauss03": _F32,
    r"test_gaussian_laplace0[12]\[float32\]": _F32,
} if scipy.__version__ == "1.17.1" else {}

globals().update({k: v for k, v in vars(_T).items()
                  if k.startswith(("test_", "Test")) and callable(v)})
