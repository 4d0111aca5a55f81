# clonekit: `make demo` runs the main experiment end to end, `make test` runs the test suite.
# Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SEED ?= 0
OUT ?= results/maze-procedure

.PHONY: setup demo quick test lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/clonekit run maze-procedure --seed $(SEED) --out $(OUT)

quick: $(STAMP)
	$(BIN)/clonekit run maze-procedure --seed $(SEED) --out $(OUT)-quick --quick

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard benchmarks/*.py)
	$(BIN)/ruff format --check src tests $(wildcard benchmarks/*.py)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests $(wildcard benchmarks/*.py)
	$(BIN)/ruff check --fix src tests $(wildcard benchmarks/*.py)

bench: $(STAMP)
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf results .pytest_cache .mypy_cache .ruff_cache
