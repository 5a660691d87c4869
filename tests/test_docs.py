"""Documentation: every public name is in the README, and every example runs.

The docstring examples of every fastconv module and the ``>>>`` examples in README.md
(one test per README section, so a failure points at its owner) run with doctest.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import numpy as np
import pytest

import fastconv as fc

README = Path(__file__).resolve().parent.parent / "README.md"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def readme() -> str:
    return README.read_text(encoding="utf-8")


def documented(name: str, text: str) -> bool:
    """``name`` appears as a whole identifier (``fc.conv2d``, ``conv2d(``, ``| conv2d |``)."""
    return re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", text) is not None


@pytest.mark.parametrize("name", fc.__all__)
def test_public_name_in_readme(name):
    assert documented(name, readme()), f"fastconv.{name} is not mentioned in README.md"


def test_documented_detects_missing_names():
    assert documented("conv2d", "use `fc.conv2d(x, w)`")
    assert not documented("conv2d", "use `fc.conv2d_nchw(x, w)`")
    assert not documented("pool1d", "max_pool1d")


def _modules() -> list[str]:
    """fastconv and its submodules, except the GPU backend (needs numba.cuda) and __main__."""
    names = ["fastconv"]
    for info in pkgutil.walk_packages(fc.__path__, "fastconv."):
        if not (info.name.startswith("fastconv.cuda") or info.name == "fastconv.__main__"):
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("modname", _modules())
def test_docstring_examples(modname):
    module = importlib.import_module(modname)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in finder.find(module, modname, globs={"np": np, "fc": fc, **vars(module)}):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {modname}"


def test_docstring_examples_exist_for_public_functions():
    """Every public function has an example (STYLE: a tiny example checkable by eye)."""
    missing = [name for name in fc.__all__ if inspect.isfunction(getattr(fc, name))
               and ">>>" not in (getattr(fc, name).__doc__ or "")]
    assert missing == []


def readme_sections() -> dict[str, str]:
    """README text by section (``<!-- section:NAME -->``); text outside them is "intro"."""
    text = readme()
    sections = dict(re.findall(r"<!-- section:(\w+) -->(.*?)<!-- /section:\1 -->", text, re.S))
    sections["intro"] = re.sub(r"<!-- section:(\w+) -->.*?<!-- /section:\1 -->", "", text,
                               flags=re.S)
    return sections


@pytest.mark.parametrize("section", sorted(readme_sections()))
def test_readme_examples(section):
    # a closing ``` fence ends an example's expected output, as a blank line would
    text = re.sub(r"^\s*```.*$", "", readme_sections()[section], flags=re.M)
    test = doctest.DocTestParser().get_doctest(text, {"np": np, "fc": fc}, f"README:{section}",
                                               str(README), 0)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} README examples failed"
