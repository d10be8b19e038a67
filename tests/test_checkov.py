"""checkov's Kubernetes checks over every stack's rendered objects: any failure that is
not a documented skip (tools/checkov_skips.py, each with its reason) fails."""

from __future__ import annotations

import pytest

from tools.checkov_skips import CHECKOV_SKIPS
from tests.conftest import STACKS, evaluate_cached
from tests.prerequisites import require_path
from tools.checkov_scan import CHECKOV, scan
from tools.manifests import MASK


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    require_path(CHECKOV, "checkov", "make test installs it (uv sync --locked --project tools/checkov)")
    workdir = tmp_path_factory.mktemp("checkov")
    return workdir, scan({stack: evaluate_cached(stack) for stack in STACKS}, workdir)


def _explained(stack: str, failure, exemptions) -> bool:
    return any(e.covers(stack, failure.check, failure.resource) for e in exemptions)


@pytest.mark.parametrize("stack", STACKS)
def test_no_failure_outside_the_skip_list(scans, stack):
    _, results = scans
    assert results[stack].passed, "checkov ran no check: did it read the objects?"
    unexplained = [str(f) for f in results[stack].failed if not _explained(stack, f, CHECKOV_SKIPS)]
    assert unexplained == []


def test_every_skip_is_still_needed(scans):
    _, results = scans
    unused = [s for s in CHECKOV_SKIPS
              if not any(s.covers(stack, f.check, f.resource) for stack in s.stacks for f in results[stack].failed)]
    assert unused == [], "these checks pass now: remove their skips"


def test_rendered_secrets_are_masked(scans):
    workdir, _ = scans
    for stack in STACKS:
        text = (workdir / f"{stack}.yaml").read_text()
        assert "kind: Secret" in text and MASK in text
        assert "mock-generated" not in text and "mock-secret-access-key" not in text
