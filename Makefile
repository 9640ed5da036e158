# Quick start: `make app` (set up, then open the explorer on the bundled default) and
# `make test` (set up, then run the whole test suite). Everything installs into .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501

.PHONY: setup app serve test test-fast lint format docs bench demo browser clean mutate

$(STAMP): requirements.txt requirements-dev.txt requirements-ray.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

app: setup
	$(BIN)/streamlit run streamlit_app.py --server.port $(PORT)

# The same app on a server that warms up at start (app/warm_up.py): the first visitor's page is
# usable sooner, its first paint slower while the warm-up imports (benchmarks/RESULTS.md).
serve: setup
	$(BIN)/streamlit run serve.py --server.port $(PORT)

# Debian's Chromium for the real-browser test (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: setup browser
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not browser and not slow"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

# The API reference from the docstrings (pdoc) into docs/api/; tests/test_api_docs.py builds
# the same in `make test`.
docs: setup
	$(BIN)/python docs/api.py docs/api

bench: setup
	$(BIN)/python benchmarks/bench_ablation.py

# Mutation testing of the engine modules (not in CI, not in `make test`): mutmut, installed on
# demand, mutates the modules [tool.mutmut] in pyproject.toml names and runs the fast engine
# test files on each mutant, 2 workers at a time. About 15 minutes; see docs/mutation.md.
MUTMUT_VERSION := 3.8.1
MUTATE_CHILDREN ?= 2

mutate: setup
	$(BIN)/python -m pip show mutmut 2>/dev/null | grep -qx "Version: $(MUTMUT_VERSION)" || \
	  $(BIN)/python -m pip install --quiet mutmut==$(MUTMUT_VERSION)
	OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children $(MUTATE_CHILDREN)
	$(BIN)/mutmut results

demo: setup
	$(BIN)/jsae train-demo --output jsae/assets/demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-output docs/api mutants
