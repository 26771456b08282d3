# Two commands for a newcomer: `make serve` (embedded SQLite, no Redis) and `make test`.
#
# Each install step leaves a stamp file in the virtualenv that depends on the pyproject.toml files
# it read, so make itself decides what is out of date: a re-run with nothing changed does no pip
# work, and deleting the virtualenv deletes its stamps with it.
#   serve:  torch (the embedded server retrains the pruner in a spawned child that imports it)
#           + the service (editable)
#   setup:  the above + the dev tools (pytest, ruff, import-linter, schemathesis, ...), the RQ/Redis
#           worker extra and the SDK (editable); `make test` and `make lint` need it
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
# torch is pinned first, or an unpinned resolver pulls a multi-GB CUDA build. This machine's
# package index serves the CPU build under the plain name; elsewhere pass the PyTorch CPU index,
# as the Dockerfile does: `make serve TORCH_INDEX=https://download.pytorch.org/whl/cpu`.
TORCH_INDEX ?=
TORCH_PIN = torch==2.13.0

.PHONY: setup serve test lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.stamp-serve: pyproject.toml | $(BIN)/python
	@echo "make: installing what serving needs into $(VENV) (torch CPU, the service)"
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH_PIN)
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.stamp-dev: $(VENV)/.stamp-serve pyproject.toml clients/python/pyproject.toml
	@echo "make: installing the dev tools, the worker extra and the SDK into $(VENV)"
	$(BIN)/pip install --quiet -e '.[dev,worker]' -e clients/python
	touch $@

$(VENV)/.stamp-bench: $(VENV)/.stamp-dev pyproject.toml
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

setup: $(VENV)/.stamp-dev

serve: $(VENV)/.stamp-serve
	$(BIN)/dyesp serve

# PYTHONPATH: the import contracts check this checkout's SDK, wherever the installed one lives.
lint: setup
	$(BIN)/ruff check .
	PYTHONPATH=clients/python $(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q

bench: $(VENV)/.stamp-bench
	$(BIN)/python -m benchmarks.quality
