# Two commands on a fresh machine: `make demo` (install + the whole pipeline on digits) and
# `make test` (install + ruff + import contracts + the test suite). Both install into ./.venv first.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
VENV ?= .venv
PY := $(VENV)/bin/python
# Quiet pip, minus this machine's harmless "Location ... is ignored" index warnings.
PIP := $(PY) -m pip install -q --disable-pip-version-check
QUIET := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: install demo test lint clean
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) torch==2.14.1 torchvision==0.29.1 $(QUIET)
	$(PIP) -e ".[test,ray]" $(QUIET)
	touch $@

demo: install
	PATH="$(abspath $(VENV))/bin:$$PATH" mlflow run . --env-manager local --experiment-name mixscale

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) mlflow.db mlruns mlartifacts
