"""Harness that runs SciPy's own test classes for the functions fastconv replaces.

The test files ship with the SciPy wheel (``scipy/ndimage/tests/test_filters.py``,
``scipy/signal/tests/test_signaltools.py``); ``test_peer_*.py`` import them, point their
module-level names (``ndimage``, ``correlate``, ...) at fastconv's functions, and collect
their tests. Only tests whose source calls one of the replaced functions are kept. This
conftest supplies what SciPy's own conftest would: the markers, a NumPy-only ``xp``
fixture, ``num_parallel_threads``. Known, documented differences are strict xfails
(``XFAILS`` in each test file; README "SciPy n-D" lists them).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import re
import types

import numpy as np
import pytest

#: SciPy's signaltools suite is opt-in (FASTCONV_PEER_SIGNAL=1) until its differences are
#: classified (test_peer_signal.py says why); not collected otherwise (11,709 skips).
collect_ignore = [] if os.environ.get("FASTCONV_PEER_SIGNAL") == "1" else ["test_peer_signal.py"]

MARKERS = [
    "xslow: extremely slow",
    "xfail_on_32bit: fails on 32-bit platforms",
    "array_api_backends: iterates on array API backends",
    "skip_xp_backends(backends, reason=None, np_only=False, cpu_only=False, eager_only=False, "
    "exceptions=None): SciPy's backend skips (only NumPy runs here)",
    "xfail_xp_backends(backends, reason=None, np_only=False, cpu_only=False, "
    "eager_only=False, exceptions=None): SciPy's backend xfails (only NumPy runs here)",
    "timeout: non-default timeout",
    "fail_slow: non-default slow-test limit",
    "thread_unsafe: not thread-safe",
    "parallel_threads(n): pytest-run-parallel",
    "iterations(n): pytest-run-parallel",
]


def pytest_configure(config):
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    # SciPy's test file parametrizes with an itertools iterator (deprecated in pytest 9):
    # ignored in pyproject.toml's filterwarnings (collection starts before this conftest)


@pytest.fixture
def xp():
    """NumPy only (the array-API-compat namespace SciPy's tests expect)."""
    from scipy._lib._array_api import array_namespace

    return array_namespace(np.empty(0))


@pytest.fixture
def num_parallel_threads():
    return 1


class Namespace(types.ModuleType):
    """A module whose replaced names are fastconv's; every other name is SciPy's."""

    def __init__(self, name, scipy_module, ours: dict):
        super().__init__(name)
        self._scipy = scipy_module
        self.__dict__.update(ours)

    def __getattr__(self, name):
        return getattr(self._scipy, name)


@contextlib.contextmanager
def swapped(obj, attrs: dict):
    """Set attributes of ``obj`` for the duration of the block, then restore them."""
    old = {k: obj.__dict__[k] for k in attrs if k in obj.__dict__}
    for k, v in attrs.items():
        setattr(obj, k, v)
    try:
        yield
    finally:
        for k in attrs:
            if k in old:
                setattr(obj, k, old[k])
            else:
                delattr(obj, k)


def import_against_ours(test_module: str, package: str, ours_module, names):
    """Import SciPy's test module ``test_module`` so that both ``from scipy import
    <package>`` and ``from scipy.<package> import <name>`` give fastconv's functions, and
    parametrize lists built at import time hold ours too. SciPy's capability table gets
    our functions under SciPy's entries (its decorators look them up)."""
    import scipy
    from scipy._lib._array_api import xp_capabilities_table

    real = importlib.import_module(f"scipy.{package}")
    ours = {n: getattr(ours_module, n) for n in names}
    for n, f in ours.items():
        ref = getattr(real, n)
        if ref in xp_capabilities_table:
            xp_capabilities_table[f] = xp_capabilities_table[ref]
    ns = Namespace(f"fastconv_as_scipy_{package}", real, ours)
    with swapped(scipy, {package: ns}), swapped(real, ours):
        mod = importlib.import_module(test_module)
    return mod, ns


def _calls(item, names) -> bool:
    fn = getattr(item, "function", None)
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError):
        return True
    return any(re.search(rf"\b{re.escape(n)}\b", src) for n in names)


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        mod = item.module
        names = getattr(mod, "REPLACED", None)
        if names is None:
            keep.append(item)
            continue
        if not _calls(item, names):
            drop.append(item)
            continue
        xfails = getattr(mod, "XFAILS", {})
        for pattern, reason in xfails.items():
            if re.search(pattern, item.nodeid):
                item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
                break
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
