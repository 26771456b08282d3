# Two commands for a newcomer: `make serve` (embedded SQLite, no Redis) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: setup serve test lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch is pinned to the CPU build first: an unpinned resolver would pull a multi-GB CUDA build.
setup: $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,worker]' -e clients/python

serve: setup
	$(BIN)/dyesp serve

# PYTHONPATH: the import contracts check this checkout's SDK, wherever the installed one lives.
lint: setup
	$(BIN)/ruff check .
	PYTHONPATH=clients/python $(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks.quality
