"""checkov's Kubernetes checks over every stack's objects, declared and rendered by its Helm
release: any failure that is not a documented skip (tools/checkov_skips.py, each with its
reason) fails."""

from __future__ import annotations

import pytest
import yaml

from components.restore import RESTORE_NAME
from components.settings import DatabaseMode
from tools.checkov_skips import CHECKOV_SKIPS
from tools.restore_job import restore_job
from tests.conftest import ALL_STACKS, objects_cached
from tests.prerequisites import require_path
from tests.variants import VARIANTS
from tools.checkov_scan import CHECKOV, scan
from tools.manifests import MASK


# Every stack, and the upstream SAM example the stack files no longer run but a stack may
# choose (its root image is what some skips are for).
SCANNED = (*ALL_STACKS, "sam-upstream")


class ShippedObjects:
    """What the project gives a stack's cluster: its declared and rendered objects and, for an
    in-cluster database, the restore Job tools/restore_job.py writes (docs/database.md)."""

    def __init__(self, name: str):
        self.stack_objects = objects_cached(*VARIANTS[name]) if name in VARIANTS else objects_cached(name)
        evaluation = self.stack_objects.evaluation
        in_cluster = evaluation.program["settings"].label_studio.database.mode is DatabaseMode.IN_CLUSTER
        self.restore_job = restore_job(evaluation) if in_cluster else None

    def all_masked_yaml(self) -> str:
        extra = yaml.safe_dump(self.restore_job, sort_keys=False) if self.restore_job else ""
        return self.stack_objects.all_masked_yaml() + (f"---\n{extra}" if extra else "")


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    require_path(CHECKOV, "checkov", "make test installs it (uv sync --locked --project tools/checkov)")
    workdir = tmp_path_factory.mktemp("checkov")
    return workdir, scan({name: ShippedObjects(name) for name in SCANNED}, workdir)


def _explained(stack: str, failure, exemptions) -> bool:
    return any(e.covers(stack, failure.check, failure.resource) for e in exemptions)


@pytest.mark.parametrize("stack", SCANNED)
def test_no_failure_outside_the_skip_list(scans, stack):
    _, results = scans
    assert results[stack].passed, "checkov ran no check: did it read the objects?"
    unexplained = [str(f) for f in results[stack].failed if not _explained(stack, f, CHECKOV_SKIPS)]
    assert unexplained == []


def test_every_skip_is_still_needed(scans):
    _, results = scans
    unused = [s for s in CHECKOV_SKIPS
              if not any(s.covers(stack, f.check, f.resource) for stack in (s.stacks or SCANNED)
                      for f in results[stack].failed)]
    assert unused == [], "these checks pass now: remove their skips"


def test_the_restore_job_is_judged_with_the_stack_it_restores(scans):
    _, results = scans
    for stack in ALL_STACKS:
        if ShippedObjects(stack).restore_job is not None:
            assert any(r.resource.startswith("Job.") and r.resource.endswith(f".{RESTORE_NAME}")
                       for r in results[stack].passed), f"{stack}: checkov did not judge the restore Job"


def test_rendered_secrets_are_masked(scans):
    workdir, _ = scans
    for stack in ALL_STACKS:
        text = (workdir / f"{stack}.yaml").read_text()
        assert "kind: Secret" in text and MASK in text
        assert "mock-generated" not in text and "mock-secret-access-key" not in text


def test_the_chart_objects_are_scanned_in_the_release_namespace(scans):
    _, results = scans
    for stack in ALL_STACKS:
        render = objects_cached(stack).renders[0]
        scanned = {r.resource for r in results[stack].passed + results[stack].failed}
        # checkov has checks for these kinds (none for ServiceAccount or PodDisruptionBudget)
        for kind in ("Deployment", "Service", "Secret"):
            names = [o["metadata"]["name"] for o in render.objects if o["kind"] == kind]
            assert names and all(f"{kind}.{render.namespace}.{name}" in scanned for name in names), kind
        assert not [r for r in scanned if r.split(".")[1] == "default"]
