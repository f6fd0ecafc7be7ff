# Two commands from a fresh clone:
#   make quick   - create .venv, install, rebuild every figure at quick scale (CPU)
#   make test    - create .venv if needed, install, run the test suite
# Every target runs Snakemake from .venv; the workflow then runs each job with the same
# interpreter (workflow/rules/common.smk), whatever `python` is on the PATH.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
SCALE ?= quick
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: setup quick paper test lint report gpu-check clean-venv

# Jobs must not compile torch on import: with PYTHONDONTWRITEBYTECODE set they would, in
# every job. prefixlab.precompile writes the bytecode of what jobs, figures and Snakemake
# import (4.3 s of a fresh set-up on 2 cores); compileall over the whole environment took
# 13.4 s, pip's own compiling longer still. The tests import more (pytest, scipy, Triton), so
# their set-up compiles everything; a file that does not compile (some packages ship
# Python 2 examples) stays uncompiled, hence the `-`.
PRECOMPILE = $(BIN)/python -m prefixlab.precompile
COMPILE = -$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU build first, so nothing pulls the multi-GB CUDA wheels on a CPU machine
	$(BIN)/pip install -q --no-compile torch==2.13.0
	$(BIN)/pip install -q --no-compile -e '.[workflow]'
	$(PRECOMPILE)
	touch $(STAMP)

# The test extras (pytest, scipy, Triton for the kernel tests) only where tests run: a CPU
# machine's `make quick` needs none of them.
$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install -q --no-compile -e '.[workflow,test]'
	$(COMPILE)
	touch $(TEST_STAMP)

setup: $(STAMP)

# A second, older Triton (common on GPU machines) that every kernel must also compile and
# interpret with: tests/kernels/test_aot.py puts it first on PYTHONPATH. Its interpreter
# needs a numpy before 2.4 (it converts 1-element arrays to scalars, which 2.4 refuses).
OLD_TRITON := $(VENV)/triton-3.6
$(OLD_TRITON)/.installed: | $(STAMP)
	$(BIN)/pip install -q --no-deps --target $(OLD_TRITON) triton==3.6.0 'numpy<2.4'
	touch $@

quick: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --config scale=$(SCALE) -- all_figures

paper: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) all_figures

test: $(TEST_STAMP) $(OLD_TRITON)/.installed
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/snakemake --lint

report: $(STAMP)
	$(BIN)/snakemake --config scale=$(SCALE) --report results/$(SCALE)/report.html

# On a CUDA machine: kernel tests on the GPU, kernel and population benchmarks, a timed
# slice of every paper-scale job kind; one summary in benchmarks/out/gpu_check.md.
gpu-check:
	$(if $(wildcard $(STAMP)),$(BIN)/python,$(PYTHON)) benchmarks/gpu_check.py

clean-venv:
	rm -rf $(VENV)
