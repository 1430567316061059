# numbanet — two commands for a newcomer:  `make lab`  and  `make test`.
# Every target is idempotent: the venv is created once and reinstalled only
# when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch is a test-only oracle.  Pinning 2.13.0 takes the CPU wheel that the
# project's machines keep on disk; an unpinned `torch` would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
JOBS   ?= 2

.PHONY: help venv install install-test lab test test-unit test-sim test-book test-full book bench clean

help:
	@echo "make lab        create .venv, install numbanet, open JupyterLab on book/"
	@echo "make test       create .venv if missing, install the test extra, run every test"
	@echo "make test-sim   only the CUDA kernels, in numba's CUDA simulator (no GPU needed)"
	@echo "make test-full  the long versions (more Hypothesis examples, slow tests)"
	@echo "make book       execute every chapter and build the HTML book (book/_build/html)"
	@echo "make bench      CPU convolution benchmark against PyTorch"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e ".[lab]"
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) install "$(TORCH)" -e ".[test]"
	touch $@

venv: $(VENV)/bin/python
install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

lab: install
	$(VENV)/bin/jupyter lab book/

# Everything CI runs.  pytest exits 5 when it collects nothing: a failure here too.
test: test-unit test-sim test-book

# Unit and oracle tests, on both cores.
test-unit: install-test
	$(PY) -m pytest -n $(JOBS) -m "not gpu and not slow" --ignore=tests/book

# The CUDA kernels in numba's CUDA simulator (tests/cuda, tiny shapes; the unit run skips that
# folder without a GPU).  A second process: the simulator is chosen before numba is imported.
test-sim: install-test
	NUMBA_ENABLE_CUDASIM=1 $(PY) -m pytest tests/cuda -n $(JOBS) -m "not gpu and not slow"

# Execute every chapter in CI mode (small settings), build the HTML book, open it in Chromium.
test-book: install-test
	NUMBANET_CI=1 $(PY) book/_tools/build.py --jobs $(JOBS)
	$(PY) -m pytest tests/book

# The full-length versions: more Hypothesis examples, slow tests, chapters at full settings.
test-full: install-test
	HYPOTHESIS_PROFILE=full $(PY) -m pytest -n $(JOBS) -m "not gpu" --ignore=tests/book
	NUMBANET_CI=0 $(PY) book/_tools/build.py --jobs $(JOBS)
	$(PY) -m pytest tests/book

# The static HTML book of the executed chapters (full settings unless NUMBANET_CI=1).
book: install-test
	$(PY) book/_tools/build.py --jobs $(JOBS)

bench: install-test
	$(PY) bench/conv_cpu.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
