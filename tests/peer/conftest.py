"""Upstream test suites run against fastconv, as peers (issue 11): SciPy's own
TestCorrelate2d/TestConvolve2d (vendored verbatim) and PyTorch's own OpInfo sample and
error inputs (read from the installed torch package).

What fastconv deliberately does differently is listed here, each entry an explicit
strict xfail with its reason (a difference that goes away turns the run red), and in
the README's decisions section. Nothing is skipped silently.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

INTEGER_DTYPES = ("SciPy keeps integer inputs' dtype (int64 here); fastconv computes in "
                  "float32/float64 and returns float64 (README: deliberate differences)")
COMPLEX = "complex input: fastconv is real-valued and raises TypeError (README)"

#: test name (pytest node name, parameters included) -> why fastconv differs.
SCIPY_DIFFERENCES = {
    "TestConvolve2d::test_2d_arrays": INTEGER_DTYPES,
    "TestConvolve2d::test_valid_mode": INTEGER_DTYPES,
    "TestConvolve2d::test_valid_mode_complx": COMPLEX,
    "TestConvolve2d::test_fillvalue": INTEGER_DTYPES,
    "TestConvolve2d::test_wrap_boundary": INTEGER_DTYPES,
    "TestConvolve2d::test_sym_boundary": INTEGER_DTYPES,
    "TestConvolve2d::test_same_mode": INTEGER_DTYPES,
    "TestConvolve2d::test_valid_mode2": INTEGER_DTYPES + "; then " + COMPLEX,
    "TestCorrelate2d::test_complex_input": COMPLEX,
    # the same classes with the integer dtype bridged (test_scipy_signaltools_dtype.py)
    "TestConvolve2dInScipyDtype::test_valid_mode_complx": COMPLEX,
    "TestConvolve2dInScipyDtype::test_valid_mode2": COMPLEX,
    "TestCorrelate2dInScipyDtype::test_complex_input": COMPLEX,
}

#: Upstream tests that only resources keep from running by default (not differences).
_LARGE = ("SciPy marks it slow: a 2 GiB int64 input (4 GiB more as float64); set "
          "FASTCONV_PEER_SLOW=1 to run it")
SLOW = {
    "TestConvolve2d::test_large_array": _LARGE,
    "TestConvolve2dInScipyDtype::test_large_array": _LARGE,
}
SCIPY_FILES = ("test_scipy_signaltools.py", "test_scipy_signaltools_dtype.py")


def pytest_configure(config):
    # SciPy's own markers, as its conftest registers them (we provide only NumPy's `xp`)
    for line in (
        "xfail_on_32bit: mark test as failing on 32-bit platforms",
        "array_api_backends: test iterates on all array API backends",
        "skip_xp_backends(backends, reason=None, np_only=False, cpu_only=False, "
        "eager_only=False, exceptions=None): SciPy's per-backend skip (not NumPy here)",
        "xfail_xp_backends(backends, reason=None, np_only=False, cpu_only=False, "
        "eager_only=False, exceptions=None): SciPy's per-backend xfail (not NumPy here)",
    ):
        config.addinivalue_line("markers", line)


@pytest.fixture
def xp():
    """SciPy's ``xp`` fixture, NumPy backend only (what the drop-ins take)."""
    from scipy._lib._array_api import array_namespace

    return array_namespace(np.empty(0))


def _key(item) -> tuple[str, str]:
    cls = item.cls.__name__ + "::" if item.cls is not None else ""
    return cls + item.name.split("[")[0], cls + item.name


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "peer" not in item.nodeid:
            continue
        for key in _key(item):
            reason = SCIPY_DIFFERENCES.get(key)
            if reason and item.path.name in SCIPY_FILES:
                item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
            slow = SLOW.get(key)
            if slow and item.path.name in SCIPY_FILES and not os.environ.get(
                    "FASTCONV_PEER_SLOW"):
                item.add_marker(pytest.mark.skip(reason=slow))
