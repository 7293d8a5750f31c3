# Two commands set everything up on a fresh machine: `make run` and `make test`.
# Everything lives inside the project: .venv/ (Python), .local/ (Airflow home, warehouse,
# sandbox and server logs). Nothing is installed system-wide.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test stop venv bench bench-sandbox bench-extract bench-transform bench-load clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: set PYTHON=python3.x (3.11 to 3.13)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,postgres]'
	@touch $(STAMP)

venv: $(STAMP)

## run: start the sandbox and a local Airflow, backfill the daily sync over the last 3 days, print a summary
run: $(STAMP)
	$(BIN)/recurly-elt local run

## stop: stop the sandbox and Airflow started by `make run`
stop:
	@if [ -x $(BIN)/recurly-elt ]; then $(BIN)/recurly-elt local stop; fi

## test: install what the tests need and run the whole suite (SQLite and PostgreSQL)
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## bench: the benchmark figures quoted in docs/benchmarks.md
bench: bench-sandbox bench-extract bench-transform bench-load

bench-sandbox: $(STAMP)
	$(BIN)/recurly-elt bench sandbox

bench-extract: $(STAMP)
	$(BIN)/recurly-elt bench extract

bench-transform: $(STAMP)
	$(BIN)/recurly-elt bench transform

bench-load: $(STAMP)
	$(BIN)/recurly-elt bench load --destination braze
	$(BIN)/recurly-elt bench load --destination klaviyo

clean: stop
	rm -rf .local
