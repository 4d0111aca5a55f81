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
	# robomimic reads our HDF5 in tests/test_interop.py; without its deps (egl_probe, torchvision: see pyproject's dev).
	$(BIN)/python -m pip install --quiet --no-deps robomimic==0.3.0
	# The browser page's test drives Debian's chromium (playwright cannot download browsers): install it where
	# we can (root with apt-get); otherwise tests/test_browser.py fails with one line saying what is missing.
	command -v chromium >/dev/null || ! command -v apt-get >/dev/null || [ "$$(id -u)" != 0 ] || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null || \
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -q --no-install-recommends chromium >/dev/null; }
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/clonekit run maze-procedure --seed $(SEED) --out $(OUT)

quick: $(STAMP)
	$(BIN)/clonekit run maze-procedure --seed $(SEED) --out $(OUT)-quick --quick

test: $(STAMP)
	# Two worker processes (one torch thread each), a whole test file per worker so session fixtures are built once per file group;
	# files in collection order (conftest puts the slowest first), so both workers finish together.
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15

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
