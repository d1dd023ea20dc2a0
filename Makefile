# Entry points. Each target installs what it needs first: uv (through pip when it is
# missing) and the locked workspace.

PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
PORT ?= 8000

.PHONY: setup demo test test-faults lint bench

setup:
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 \
		|| $(PYTHON) -m pip install --quiet uv
	$(UV) sync --locked --quiet

demo: setup
	$(UV) run markets serve --replay --port $(PORT)

test: setup
	$(UV) run pytest

test-faults: setup
	MAINSPRING_FAULTS=full $(UV) run pytest -m faults

lint: setup
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy

bench: setup
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq wrk) \
		|| echo "bench: wrk unavailable; the HTTP benchmark falls back to its Python load generator"
	$(UV) run python benchmarks/run_all.py
