# Quick start:  make demo       (the whole pipeline on generated data -> runs/runs/demo/)
#               make test       (the whole test suite: what CI runs)
#               make test-fast  (the edit loop: deselects the `cluster` and `slow` tiers)
# Both create or refresh .venv (python3 -m venv + pip install --no-compile -e ".[test]" -c constraints.txt).

PYTHON      ?= python3
VENV        ?= .venv
CONSTRAINTS ?= constraints.txt
BIN          = $(VENV)/bin
STAMP        = $(VENV)/.ganc-installed
PYTEST_ARGS ?=

export RAY_USAGE_STATS_ENABLED = 0

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-compile -e ".[test]" -c $(CONSTRAINTS)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ganc compress --config configs/demo.yaml

# `make test`: two pytest workers (pytest-xdist; each test file whole on one worker), then
# the tests marked `serial` (they measure time) alone. Fails if either part fails.
XDIST       ?= -n 2 --dist loadgroup
test: $(STAMP)
	@$(BIN)/python -m pytest -q $(XDIST) -m "not serial" $(PYTEST_ARGS); a=$$?; \
	$(BIN)/python -m pytest -q -m serial $(PYTEST_ARGS); b=$$?; \
	if [ $$b -eq 5 ]; then b=0; fi; \
	echo "make test: parallel part exited $$a, serial part $$b"; \
	if [ $$a -ne 0 ]; then exit $$a; fi; exit $$b

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not cluster and not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/latency.py

clean:
	rm -rf $(VENV) runs .pytest_cache
