"""Shared fixtures: stack evaluations are cached per (stack, overrides) within a session."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from tools.stack_eval import Evaluation, evaluate  # noqa: E402

CHART_DIR = PROJECT_ROOT.parent / "shared" / "charts" / "label-studio-2.0.5"
STACKS = ("dev", "prod")

_cache: dict[str, Evaluation] = {}


def evaluate_cached(stack: str, overrides=None, secrets=None) -> Evaluation:
    key = json.dumps([stack, overrides, secrets], sort_keys=True, default=str)
    if key not in _cache:
        _cache[key] = evaluate(stack, overrides, secrets)
    return _cache[key]


@pytest.fixture(params=STACKS)
def stack_eval(request) -> Evaluation:
    """The evaluation of each stack file as committed."""
    return evaluate_cached(request.param)


@pytest.fixture(scope="session")
def chart_dir() -> Path:
    if not CHART_DIR.is_dir():
        pytest.fail(f"the chart is expected at {CHART_DIR} (shared/ beside the clone)")
    return CHART_DIR
