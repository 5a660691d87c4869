"""The contract the code cites lives in the repository: every citation of a SPEC section
("SPEC", the section sign, a number) in the sources, tests, examples, benchmarks and docs
names a section of docs/SPEC.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "docs" / "SPEC.md"
CITATION = re.compile(r"SPEC\s*§\s*(\S*)")
SECTIONS = re.compile(r"^#+\s+(\d+)\.\s", re.M)


def _sources():
    for folder in ("fastconv", "cli", "tests", "bench", "examples", "docs"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".md") and path != SPEC:
                yield path
    yield ROOT / "README.md"


def test_spec_sections_parse():
    assert set(SECTIONS.findall(SPEC.read_text())) >= {"1", "2", "3", "4", "5"}


def test_every_spec_citation_names_an_existing_section():
    sections = set(SECTIONS.findall(SPEC.read_text()))
    cited, bad = 0, []
    for path in _sources():
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for m in CITATION.finditer(line):
                cited += 1
                number = re.match(r"\d+", m.group(1))
                if number is None or number.group() not in sections:
                    bad.append(f"{path.relative_to(ROOT)}:{lineno}: {m.group(0)!r}")
    assert cited > 0  # the pattern still finds the citations
    assert not bad, "citations of missing SPEC sections:\n" + "\n".join(bad)
