# mrflax: the two quickstart commands are `make demo` and `make test`.
# Both create .venv when it is missing and (re)install when pyproject.toml changed.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DATA_DIR ?= $(HOME)/tensorflow_datasets
WORKDIR ?= workdir/digits
# Parallel test workers: default to the machine's cores (the suite is written for 2).
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: demo haar-demo test lint fmt install bench data clean help

help:
	@echo "make demo   - set up .venv if needed and run the demo (offline)"
	@echo "make test   - set up .venv if needed, lint, and run the whole test suite"
	@echo "make bench  - run the benchmarks and rewrite benchmarks/README.md"
	@echo "make lint / fmt / data / clean"

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "mrflax needs Python >= 3.11, found " + sys.version' \
	  || { echo "error: $(PYTHON) is older than 3.11; run 'make PYTHON=python3.11 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Trains a small HVAE on scikit-learn's digits (offline), prints bits/dim, writes samples.
demo: $(STAMP)
	$(PY) -m experiments.main --config=experiments/digits/config.py --workdir=$(WORKDIR)

haar-demo: $(STAMP)
	$(PY) -m experiments.haar_demo --workdir $(WORKDIR)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# pytest exits 5 when it collects no tests: that is a failure here, with a message.
test: lint
	@$(PY) -m pytest -n $(JOBS) --dist worksteal -q --durations=15 $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests (exit code 5)"; fi; exit $$rc

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

data:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then echo "fashion-mnist IDX files present"; \
	else echo "installing Debian package dataset-fashion-mnist (needs root)"; \
	  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
