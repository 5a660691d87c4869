"""Harness that runs SciPy's own test classes for the functions fastconv replaces.

The test files ship with the SciPy wheel (``scipy/ndimage/tests/test_filters.py``,
``scipy/signal/tests/test_signaltools.py``); ``test_peer_*.py`` import them, point their
module-level names (``ndimage``, ``correlate``, ...) at fastconv's functions, and collect
their tests. Only tests whose source calls one of the replaced functions are kept; tests
SciPy itself marks ``slow`` (SciPy's default run skips them too) run only with
``FASTCONV_PEER_SLOW=1``. This conftest supplies what SciPy's own conftest would: the
markers, a NumPy-only ``xp`` fixture, ``num_parallel_threads``.

Known, documented differences (README "SciPy n-D") are expected failures, by one of two
rules:

- ``XFAILS`` in a test file: node-id pattern -> reason, a strict xfail;
- ``BRIDGED`` in a test file (the signal suite): a test that fails is run once more with
  fastconv's two documented differences bridged (``Bridge``): a result is cast to the
  dtype SciPy returns for those inputs (integer results must be exact integers first),
  and complex inputs are computed from real and imaginary parts by fastconv's real
  functions. If it then passes, it is an expected failure naming the difference(s) that
  were bridged; if it still fails, or nothing needed bridging, it fails as it did.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import os
import re
import types

import numpy as np
import pytest

#: Tests SciPy marks slow (its default run skips them) run only when this is set.
RUN_SLOW = bool(os.environ.get("FASTCONV_PEER_SLOW"))

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


@functools.cache
def _source(fn) -> str | None:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return None


def _calls(item, names) -> bool:
    src = _source(getattr(item, "function", None))
    return src is None or any(re.search(rf"\b{re.escape(n)}\b", src) for n in names)


def _scipy_slow(item) -> bool:
    """Marked slow by SciPy (on the test, its class or its parameters; our own modules
    mark themselves ``peer``)."""
    return any(m.name in ("slow", "xslow") for m in item.iter_markers())


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        mod = item.module
        names = getattr(mod, "REPLACED", None)
        if names is None:
            keep.append(item)
            continue
        if (_scipy_slow(item) and not RUN_SLOW) or not _calls(item, names):
            drop.append(item)
            continue
        xfails = getattr(mod, "XFAILS", {})
        for pattern, reason in xfails.items():
            if re.search(pattern, item.nodeid):
                item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
                item.user_properties.append(("fastconv_xfail", reason))
                break
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# --- the bridge: a failure is a documented difference only if bridging it passes -------

#: README "SciPy n-D" rows, by the difference a bridged call needed.
DIFFERENCES = {
    "dtype": "integer (or float16, longdouble) inputs give float32/float64 where SciPy keeps "
             "the input dtype (README 'SciPy n-D': 'integer inputs (signal)'); cast to SciPy's "
             "dtype, fastconv's exact-integer results pass",
    "complex": "complex inputs raise TypeError (README 'SciPy n-D': 'complex inputs'); "
               "computed from real and imaginary parts by fastconv, the test passes",
}
#: Functions whose second input SciPy conjugates (correlation is antilinear in in2).
CONJUGATES = ("correlate", "correlate2d")
#: Functions whose output dtype in SciPy is ``numpy.result_type(in1, in2)`` (the direct
#: sums). SciPy's FFT functions return floats, as fastconv's do, except for longdouble
#: and when they transform nothing (``_untransformed``).
DIRECT = ("correlate", "convolve", "correlate2d", "convolve2d")


class Bridge:
    """fastconv's function ``name`` with its documented differences undone, recording
    which were needed in ``used``."""

    def __init__(self, name: str, ours, used: set):
        self.name, self.ours, self.used = name, ours, used
        functools.update_wrapper(self, ours)

    def _split(self, a, b, args, kwargs):
        """in1 * in2 from four real calls (fillvalue, if any, split alike)."""
        self.used.add("complex")
        a, b = np.asarray(a), np.asarray(b)
        if self.name == "choose_conv_method":
            return self(a.real, b.real, *args, **kwargs)
        args, kwargs, fill = _take_fillvalue(self.name, args, kwargs)

        def call(x, y, part):
            extra = {} if fill is None else {"fillvalue": getattr(fill, part)}
            return self(x, y, *args, **kwargs, **extra)

        rr, ii = call(a.real, b.real, "real"), call(a.imag, b.imag, "imag")
        ri, ir = call(a.real, b.imag, "real"), call(a.imag, b.real, "imag")
        if self.name in CONJUGATES:
            out = (rr + ii) + 1j * (ir - ri)
        else:
            out = (rr - ii) + 1j * (ri + ir)
        return out.astype(np.result_type(a, b, np.complex64))

    def __call__(self, in1, in2, *args, **kwargs):
        a, b = np.asarray(in1), np.asarray(in2)
        if "c" in (a.dtype.kind, b.dtype.kind):
            return self._split(in1, in2, args, kwargs)
        out = self.ours(in1, in2, *args, **kwargs)
        if not isinstance(out, np.ndarray | np.generic):  # choose_conv_method's answer
            return out
        want = np.result_type(a, b)
        if want == out.dtype or (self.name not in DIRECT and want != np.longdouble
                                 and not _untransformed(a, b)):
            return out
        self.used.add("dtype")
        if want.kind in "iub":
            np.testing.assert_array_equal(out, np.round(out), "not exact integers")
            return out.astype(np.int64).astype(want)  # wraps as SciPy's integer sums do
        return out.astype(want)


def _untransformed(a, b) -> bool:
    """SciPy's FFT functions return ``in1 * in2`` (the inputs' dtype) when no axis is
    transformed: 0-d inputs, or length 1 on every axis of one input."""
    return a.ndim == 0 or all(1 in (m, n) for m, n in zip(a.shape, b.shape, strict=False))


def _take_fillvalue(name, args, kwargs):
    """(args, kwargs, complex fillvalue or None) of a convolve2d/correlate2d call."""
    if name not in ("convolve2d", "correlate2d"):
        return args, kwargs, None
    kwargs = dict(kwargs)
    if len(args) >= 3:
        fill, args = args[2], args[:2]
    else:
        fill = kwargs.pop("fillvalue", 0)
    return args, kwargs, np.complex128(np.asarray(fill).reshape(()))


def bridged_rerun(item) -> set | None:
    """Run ``item`` once more with every replaced function bridged. The differences
    bridged when it passes, None when it fails again."""
    mod = item.module
    used: set = set()
    test_mod, ns = mod.BRIDGED
    swaps = {n: Bridge(n, getattr(mod.OURS, n), used) for n in mod.REPLACED}
    with swapped(test_mod, swaps), swapped(ns, swaps):
        try:
            item.runtest()
        except (Exception, pytest.fail.Exception):
            return None
    return used


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except (Exception, pytest.fail.Exception):
        listed = dict(item.user_properties).get("fastconv_xfail")  # an XFAILS entry
        if listed is None and getattr(item.module, "BRIDGED", None) is None:
            raise
        used = None if listed else bridged_rerun(item)
        if not (listed or used):
            raise
    # outside the handler, so the report does not render the first failure's traceback
    # (formatting a traceback through SciPy's 4,000-line test files costs ~1 s a test);
    # an XFAILS test that passes still fails the run (its marker is strict)
    raise pytest.xfail.Exception(listed or "; ".join(DIFFERENCES[k] for k in sorted(used)))
