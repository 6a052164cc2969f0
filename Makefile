# Every target builds its own virtual environment first, so a fresh clone
# needs nothing but python3 and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp

.PHONY: install test lint pytest demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py logstore/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,lz4,snappy,bench]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check logstore tests bench tools
	$(BIN)/ruff format --check logstore tests bench tools
	$(BIN)/mypy logstore

# The whole suite runs twice: with the compiled codec, then the pure-Python one.
pytest: $(STAMP)
	$(BIN)/python -c 'import logstore, sys; print("codec:", logstore.__speedups__); sys.exit(logstore.__speedups__ != "compiled")'
	$(BIN)/pytest -q
	LOGSTORE_PURE=1 $(BIN)/pytest -q

test: lint pytest

demo: $(STAMP)
	$(BIN)/python tools/demo.py

bench: $(STAMP)
	$(BIN)/python bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) demo-data .pytest_cache .mypy_cache .ruff_cache .hypothesis
