# Two commands a newcomer types: `make verify` (main job) and `make test` (the claims checklist).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: verify test test-all figures bench clean

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "need Python 3.11 on PATH as $(PY) (override with PY=...)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

verify: $(STAMP)
	$(BIN)/python -m verify

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -n 2 -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

figures: $(STAMP)
	$(BIN)/python -m figures

bench: $(STAMP)
	$(BIN)/python -m bench.bench_layers

clean:
	rm -rf $(VENV) report figures/out .pytest_cache .hypothesis
