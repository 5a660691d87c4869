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


# --- tunables: in fastconv._config, or listed there with the reason they stay ---------

MOVED = [  # (module, its name, fastconv._config's name)
    ("fastconv.cpu.gemm", "SHIFTED_MIN_CG", "GEMM_SHIFTED_MIN_CG"),
    ("fastconv.cpu.gemm", "MIN_CHUNK_COLUMNS", "GEMM_MIN_CHUNK_COLUMNS"),
    ("fastconv.cpu.fft", "TILE_ELEMENTS", "FFT_TILE_ELEMENTS"),
    ("fastconv.signal", "FFT_MIN_TAPS", "SIGNAL_FFT_MIN_TAPS"),
    ("fastconv.learn", "SERIAL_BELOW", "LEARN_SERIAL_BELOW"),
    ("fastconv.cuda.grad", "WEIGHT_CHUNK", "CUDA_WEIGHT_CHUNK"),
    ("fastconv.cuda.grad", "MAX_PARTIALS", "CUDA_MAX_PARTIALS"),
]
STAYING = [  # listed in fastconv._config's docstring, with the reason
    ("fastconv.cpu.conv", "COLUMN_CHUNK"), ("fastconv.cpu.conv", "PLANE_TASKS"),
    ("fastconv.cpu.pool", "PLANE_TASKS"), ("fastconv.cpu.separable", "PLANE_TASKS"),
    ("fastconv.cpu.lines", "COLUMN_CHUNK"), ("fastconv.cpu.adaptive", "CHUNK_TASKS"),
    ("fastconv.cpu.rules", "MIN_CHANNELS"), ("fastconv.cpu.rules", "MIN_R"),
    ("fastconv.cpu.rules", "FUSED_MIN_IMAGE_TILES"), ("fastconv.cpu.winograd", "U_CACHE_BYTES"),
    ("fastconv.cpu.winograd", "MIN_BLOCKS"),
    ("fastconv.cpu.winograd", "STAGED_TILES"),
    ("fastconv.cpu.winograd_weight", "FUSED_MAX_ACC_BYTES"),
    ("fastconv.cpu.winograd_weight", "STAGED_TILES"),
    ("fastconv.cpu.winograd_weight", "STAGED_BLOCK_TILES"), ("fastconv.cpu.grad", "WEIGHT_PARTS"),
    ("fastconv.cpu.winograd_w", "ROW_COLUMNS"), ("fastconv.cpu.winograd_w", "MIN_TASKS"),
    ("fastconv.ndimage", "FFT_MIN_TAPS"),
]


def test_moved_tunables_are_config_values_under_their_old_names():
    import importlib

    from fastconv import _config

    for module, name, config_name in MOVED:
        assert getattr(importlib.import_module(module), name) is getattr(_config, config_name)


def test_tunables_that_stay_exist_and_are_listed_in_config():
    import importlib

    from fastconv import _config

    doc = " ".join(_config.__doc__.split())
    for module, name in STAYING:
        assert isinstance(getattr(importlib.import_module(module), name), int)
        listed = f"``{module}.{name}``" in doc or (f"``{module}``" in doc
                                                   and f"``{name}``" in doc)
        assert listed, (module, name)
