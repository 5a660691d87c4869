# The single entry point: make test | demo | fuzz | bench | gpu-check | lint | clean
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo fuzz bench gpu-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .

# warmup first: it compiles every CPU kernel in parallel processes (a cold cache's compile
# is most of the suite's time: its slowest tests were first calls), then the suite loads them.
# A speed step only: a kernel it misses is tests/test_warmup.py's failure, not this line's.
test: install lint
	$(VENV)/bin/fastconv warmup || true
	$(PY) -m pytest
	NUMBA_ENABLE_CUDASIM=1 $(PY) -m pytest -m cudasim tests/test_cuda.py
	NUMBA_ENABLE_CUDASIM=1 $(MAKE) --no-print-directory gpu-check GPU_PYTHON=$(PY) GPU_ARGS=--smoke

demo: install
	$(VENV)/bin/fastconv warmup
	$(VENV)/bin/fastconv demo

# 10,000 random cases over every op, forward and backward (FUZZ_ARGS="--ops grad" etc.),
# then 2,000 random command lines over sound and hostile files (FUZZ_CLI_ARGS="--seed 3")
fuzz: install
	$(PY) tests/fuzz.py --n 10000 $(FUZZ_ARGS)
	$(PY) tests/fuzz_cli.py --n 2000 $(FUZZ_CLI_ARGS)

bench: install
	$(PY) -m pip install -q -e '.[bench]' torch==2.13.0
	$(PY) bench/run.py --per-process $(BENCH_ARGS)

# The real-GPU check (issue 13): no install, no venv (a GPU machine may have no network):
# the system Python with the checkout on PYTHONPATH. GPU_ARGS: --quick, --smoke, --out DIR.
GPU_PYTHON ?= python3
gpu-check:
	PYTHONUNBUFFERED=1 PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(GPU_PYTHON) bench/gpu_check.py $(GPU_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name '*.nbi' -delete -o -name '*.nbc' -delete
