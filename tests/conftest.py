"""Shared test configuration: hypothesis profile, optional-oracle markers."""

from __future__ import annotations

import importlib.util

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "fastconv",
    deadline=None,  # the first call of a kernel compiles it
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.load_profile("fastconv")

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_SCIPY = importlib.util.find_spec("scipy") is not None

requires_torch = pytest.mark.skipif(
    not HAS_TORCH, reason="PyTorch not installed (CI installs torch==2.13.0)"
)
requires_scipy = pytest.mark.skipif(not HAS_SCIPY, reason="SciPy not installed")

#: Test files whose tests take minutes in all (README "Testing": the fuzz cases, the
#: warmup's worker processes); with the peer suites they carry the ``slow`` marker, so
#: ``pytest -m "not slow"`` is a quick local loop (``make test`` and CI run everything).
SLOW_FILES = ("test_fuzz.py", "test_warmup.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW_FILES or item.get_closest_marker("peer") is not None:
            item.add_marker(pytest.mark.slow)
