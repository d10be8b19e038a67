"""Shared fixtures: stack evaluations, and the stack's objects with its chart rendered, are
cached per (stack, overrides) within a session."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import pytest

from components import PROJECT_ROOT
from components.settings import PROJECT, Settings, StorageMode, parse_settings
from components.settings.label_studio import DEFAULT_CHART_VERSION
from tests.prerequisites import SKIP_PREFIX, MissingPrerequisite, report_missing
from tools.manifests import StackObjects, stack_objects
from tests.user_stacks import user_stack_directory, write_user_stacks
from components.settings.stack_file import plaintext_paths, stack_file_config, stack_file_path
from tools.stack_eval import DELETE, STACKS, Evaluation, evaluate, project_dir, stack_config

CHART_DIR = PROJECT_ROOT.parent / "shared" / "charts" / f"label-studio-{DEFAULT_CHART_VERSION}"

# The stacks this repository ships as examples: tests of what they hold (dev's bucket may
# be destroyed, prod is protected) name them; every other test takes any stack.
EXAMPLE_STACKS = ("dev", "prod")
# Stacks written the way users add theirs (tests/user_stacks.py), in a copy of the project.
_USER_STACK_DIR = user_stack_directory()
USER_STACKS = write_user_stacks(_USER_STACK_DIR)
# Every stack the suite checks as a whole program: the repository's files and the users' kind.
ALL_STACKS = STACKS + USER_STACKS

# `make test` and CI run everything in full (TESTS=full): every example the property tests
# budget, every documented recipe through the whole program on every stack. `make test-fast`,
# the loop run before every commit, tries a share of the examples and judges the recipes'
# configuration on every stack but runs the program for each recipe on one.
FULL_RUN = os.environ.get("TESTS") == "full"


def fuzz_examples(full: int, fast: int) -> int:
    return full if FULL_RUN else fast


_cache: dict[str, Evaluation] = {}
_objects: dict[str, StackObjects] = {}
PREREQUISITES_FILE = Path(__file__).with_name("prerequisites.py")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    """A helper that finds a program missing (MissingPrerequisite) skips the test, or fails it in CI."""
    try:
        return (yield)
    except MissingPrerequisite as missing:
        report_missing(str(missing))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except MissingPrerequisite as missing:
        report_missing(str(missing))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """One summary line per missing prerequisite, wherever the tests that need it stopped."""
    report = yield
    if report.skipped and isinstance(report.longrepr, tuple) and SKIP_PREFIX in report.longrepr[2]:
        report.longrepr = (str(PREREQUISITES_FILE), 1, report.longrepr[2])
    return report


def _key(stack: str, overrides, secrets) -> str:
    return json.dumps([stack, overrides, secrets], sort_keys=True, default=str)


def evaluate_cached(stack: str, overrides=None, secrets=None) -> Evaluation:
    key = _key(stack, overrides, secrets)
    if key not in _cache:
        _cache[key] = evaluate(stack, overrides, secrets)
    return _cache[key]


def objects_cached(stack: str, overrides=None, secrets=None) -> StackObjects:
    """Declared and rendered objects (tools.manifests.stack_objects); the test fails when the chart is missing."""
    key = _key(stack, overrides, secrets)
    if key not in _objects:
        _objects[key] = stack_objects(evaluate_cached(stack, overrides, secrets))
    objects = _objects[key]
    if objects.not_rendered:
        pytest.fail("; ".join(objects.not_rendered))
    return objects


def stack_settings(stack: str, overrides=None, secrets=None) -> Settings:
    """The settings the program reads for `stack` (plus changes), parsed the way the program parses them."""
    _, config, secret_keys = stack_config(stack, overrides, secrets)
    prefix = f"{PROJECT}:"
    values = {key[len(prefix):]: value for key, value in config.items() if key.startswith(prefix)}
    secret = frozenset(key[len(prefix):] for key in secret_keys if key.startswith(prefix))
    plaintext = plaintext_paths(stack_file_config(stack_file_path(project_dir(stack), stack)), PROJECT)
    return parse_settings(values, stack=stack, secret_keys=secret, plaintext_paths=plaintext)


def changed_at(data: dict, path: str, value) -> dict:
    """A deep copy of `data` with the dotted `path` set to `value` (or removed: DELETE)."""
    changed = copy.deepcopy(data)
    *parents, last = path.split(".")
    node = changed
    for part in parents:
        node = node.setdefault(part, {})
    if value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return changed


def pytest_unconfigure(config):
    shutil.rmtree(_USER_STACK_DIR, ignore_errors=True)


@pytest.fixture(params=ALL_STACKS)
def stack_eval(request) -> Evaluation:
    """The evaluation of each stack file as committed, and of the stacks users add."""
    return evaluate_cached(request.param)


def stacks_storing_in(mode: StorageMode) -> tuple[str, ...]:
    """The stacks (committed and user-added) whose storage.mode is `mode`."""
    return tuple(stack for stack in ALL_STACKS if stack_settings(stack).storage.mode is mode)


def stacks_running_sam() -> tuple[str, ...]:
    """The stacks (committed and user-added) with sam.enabled."""
    return tuple(stack for stack in ALL_STACKS if stack_settings(stack).sam.enabled)


@pytest.fixture(scope="session")
def chart_dir() -> Path:
    if not CHART_DIR.is_dir():
        pytest.fail(f"the chart is expected at {CHART_DIR} (shared/ beside the clone)")
    return CHART_DIR
