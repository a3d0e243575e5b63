# Quick start:  make demo       (the whole pipeline on generated data -> runs/runs/demo/)
#               make test       (lint-imports, then the whole test suite as two pytest sessions
#                                side by side, the cluster tier and the rest: what CI runs)
#               make test-fast  (the edit loop: deselects the `cluster` and `slow` tiers)
#               make docs       (regenerates docs/reference.md from the CLI and config code)
# Each creates or refreshes .venv (python3 -m venv + pip install -e ".[test]" -c constraints.txt).

PYTHON      ?= python3
VENV        ?= .venv
CONSTRAINTS ?= constraints.txt
BIN          = $(VENV)/bin
STAMP        = $(VENV)/.ganc-installed
PYTEST_ARGS ?=
# the import contracts ([tool.importlinter] in pyproject.toml): a broken one fails the target
LINT_IMPORTS = $(BIN)/lint-imports --no-logo --no-cache

export RAY_USAGE_STATS_ENABLED = 0

.PHONY: install demo test test-fast docs bench clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]" -c $(CONSTRAINTS)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ganc compress --config configs/demo.yaml

test: $(STAMP)
	$(LINT_IMPORTS)
	bash tests/run_tiers.sh $(BIN)/python $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(LINT_IMPORTS)
	$(BIN)/python -m pytest -q -m "not cluster and not slow" $(PYTEST_ARGS)

docs: $(STAMP)
	$(BIN)/python -m ganc.docgen

bench: $(STAMP)
	$(BIN)/python bench/latency.py

clean:
	rm -rf $(VENV) runs .pytest_cache
