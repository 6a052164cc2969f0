# Every target builds the virtual environment it needs first, so a fresh clone
# needs nothing but python3 and `make demo` or `make test`.
#
# One venv, in layers, each a stamp file: the package itself (all `make demo`
# needs), then the `dev` dependency group (tests, lint), then `bench`. A
# layer installs only when its stamp is missing or older than its inputs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BASE := $(VENV)/.stamp-base
DEV := $(VENV)/.stamp-dev
BENCH := $(VENV)/.stamp-bench
# "compat": a plain path entry in site-packages instead of setuptools' import
# hook, so mypy (and any other static tool) run in this venv finds `logstore`.
EDITABLE := -e . --config-settings editable_mode=compat

.PHONY: install test lint pytest demo bench clean

install: $(DEV) $(BENCH)

# The package and its runtime dependencies; builds the C extension in place.
$(BASE): pyproject.toml setup.py logstore/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade 'pip>=25.1'
	$(BIN)/pip install --quiet $(EDITABLE)
	touch $@

# PEP 735 dependency groups (pyproject's [dependency-groups]): `pip --group` needs pip 25.1.
$(DEV): $(BASE) pyproject.toml
	$(BIN)/pip install --quiet --group dev
	touch $@

$(BENCH): $(DEV) pyproject.toml
	$(BIN)/pip install --quiet --group bench
	touch $@

# mypy --strict on the package, then on the demo as a user's program sees the
# package: run from tools/, so only the venv's install can provide `logstore`.
lint: $(DEV)
	$(BIN)/ruff check logstore tests bench tools
	$(BIN)/ruff format --check logstore tests bench tools
	$(BIN)/mypy logstore
	cd tools && ../$(BIN)/mypy --cache-dir ../.mypy_cache demo.py

# The whole suite runs twice: with the compiled codec, then the pure-Python one.
# The real-Kafka tests (marker `kafka`, tests/kafka/) run once, in a third pass:
# one JVM broker is enough, and they write with both codecs in child processes.
# The bench group too: tests/test_bench_run.py runs bench/run.py (lmdb, matplotlib) at tiny sizes.
pytest: $(DEV) $(BENCH)
	$(BIN)/python -c 'import logstore, sys; print("codec:", logstore.__speedups__); sys.exit(logstore.__speedups__ != "compiled")'
	$(BIN)/pytest -q -m "not kafka"
	LOGSTORE_PURE=1 $(BIN)/pytest -q -m "not kafka"
	$(BIN)/pytest -q -m kafka tests/kafka

test: lint pytest

demo: $(BASE)
	$(BIN)/python tools/demo.py

bench: $(BENCH)
	$(BIN)/python bench/run.py $(ARGS)

# Build outputs too (the in-place extension, setuptools' build/ and metadata),
# so the next build compiles for real.
clean:
	rm -rf $(VENV) demo-data bench/work .pytest_cache .mypy_cache .ruff_cache .hypothesis
	rm -rf build dist *.egg-info logstore/_speedups*.so
	find logstore tests bench tools -name __pycache__ -type d -prune -exec rm -rf {} +
