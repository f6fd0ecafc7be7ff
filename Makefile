# Two commands from a fresh clone:
#   make quick   - create .venv, install, rebuild every figure at quick scale (CPU)
#   make test    - create .venv if needed, install, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
STAMP := $(VENV)/.installed

.PHONY: quick paper test lint report clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU build first, so nothing pulls the multi-GB CUDA wheels on a CPU machine
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[workflow,test]'
	touch $(STAMP)

quick: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --config scale=quick -- all_figures

paper: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) all_figures

test: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/snakemake --lint

report: $(STAMP)
	$(BIN)/snakemake --config scale=quick --report results/quick/report.html

clean-venv:
	rm -rf $(VENV)
