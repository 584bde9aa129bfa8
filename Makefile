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

.PHONY: demo haar-demo test lint fmt install bench data clean help docs wheel-check

help:
	@echo "make demo   - set up .venv if needed and run the demo (offline)"
	@echo "make test   - set up .venv if needed, lint, and run the whole test suite"
	@echo "make bench  - run the benchmarks and rewrite benchmarks/README.md"
	@echo "make docs   - build the documentation site (warnings are errors) into docs/_build/html"
	@echo "make wheel-check - build sdist + wheel, twine check, test the wheel in a fresh venv"
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

# ------------------------------------------------------------------------------------ docs
# Sphinx + myst-nb, offline: MathJax comes from the npm package (unpacked into docs/_vendor),
# intersphinx from local inventories (docs/inventories.py), the diagram from Graphviz's dot.
# The four Colab notebooks are executed on every build (MRFLAX_DOCS_EXECUTE=cache|off to skip).
DOCS_STAMP := $(VENV)/.docs-stamp
MATHJAX_VERSION ?= 3.2.2
MATHJAX := docs/_vendor/mathjax/.fetched-$(MATHJAX_VERSION)
SPHINXOPTS ?=

$(DOCS_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,docs]'
	@touch $(DOCS_STAMP)

$(MATHJAX):
	docs/fetch_mathjax.sh $(MATHJAX_VERSION)
	@touch $(MATHJAX)

docs: $(DOCS_STAMP) $(MATHJAX)
	@command -v dot >/dev/null || { echo "installing Debian package graphviz (needs root)"; \
	  apt-get update -qq && apt-get install -y -qq graphviz; }
	$(PY) docs/check_coverage.py
	$(VENV)/bin/sphinx-build -E -W --keep-going -b html $(SPHINXOPTS) docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

# Builds the sdist and the wheel, runs twine check, installs the wheel (alone) into a fresh venv
# and runs README's library snippets against it from a temporary directory.
wheel-check:
	PYTHON=$(PYTHON) bash .ci/wheel_check.sh

data:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then echo "fashion-mnist IDX files present"; \
	else echo "installing Debian package dataset-fashion-mnist (needs root)"; \
	  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info docs/_build docs/_vendor docs/notebooks
