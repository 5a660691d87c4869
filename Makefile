# The single entry point: make test | demo | fuzz | bench | lint | clean
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo fuzz bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .

test: install lint
	$(PY) -m pytest
	NUMBA_ENABLE_CUDASIM=1 $(PY) -m pytest -m cudasim tests/test_cuda.py

demo: install
	$(VENV)/bin/fastconv demo

# 10,000 random cases over every op, forward and backward (FUZZ_ARGS="--ops grad" etc.),
# then 2,000 random command lines over sound and hostile files (FUZZ_CLI_ARGS="--seed 3")
fuzz: install
	$(PY) tests/fuzz.py --n 10000 $(FUZZ_ARGS)
	$(PY) tests/fuzz_cli.py --n 2000 $(FUZZ_CLI_ARGS)

bench: install
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name '*.nbi' -delete -o -name '*.nbc' -delete
