"""The reconciler converges through syncs the server cuts short, as the cluster serves
Label Studio: uWSGI with a harakiri of a few seconds, on PostgreSQL, with the rendered app
env, and a few thousand images. The reconciler runs as the Job runs it (its CLI, the
desired state the stack generates); it must end with every object a task, SAM connected,
exit 0, and a second run that changes nothing.

Differences from production, and why they do not matter: harakiri is 4 s instead of 120 s,
so a few thousand objects take the cuts that 25,000 take in production (the benchmark,
benchmarks/sync_at_scale.py, runs the real limits); STORAGE_IN_PROGRESS_TIMER is 1 s
instead of 5 s, which only makes Label Studio call a killed sync dead after 5 s instead of
25 s: the states the reconciler sees, and their order, are the same.
"""

from __future__ import annotations

import json
import re

import pytest

from reconciler.client import LabelStudioClient
from reconciler.projects import ML_CONNECTED_STATE
from tests.live_stack import SAM_SELF_TEST_PASSED, job_environment, live_stack, run_job

pytestmark = pytest.mark.slow

IMAGES = 3000
HARAKIRI_SECONDS = 4
BUCKET = "cut-short"
NO_OP_LINE = re.compile(r"unchanged|: healthy$|: accepted|: reachable$|: available|^members: not managed|^reconcile: done$|"
                        + SAM_SELF_TEST_PASSED)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # The dev stack's projects: many images for the first, a few for the SAM one.
    with live_stack(tmp_path_factory.mktemp("cut-short"), BUCKET, {"kagglecatsanddogs": IMAGES, "fruit": 3},
                    harakiri_seconds=HARAKIRI_SECONDS, extra_env={"STORAGE_IN_PROGRESS_TIMER": "1"},
                    overrides={"labeling.members": []}) as started:
        yield started


@pytest.fixture(scope="module")
def document(stack) -> dict:
    """The state the stack writes into the Job's ConfigMap, pointed at the SAM stand-in."""
    state = json.loads(stack.evaluation.one("kubernetes:core/v1:ConfigMap").inputs["data"]["desired.json"])
    return {**state, "samUrl": stack.sam.url}


@pytest.fixture(scope="module")
def first(stack, document, tmp_path_factory):
    return run_job(tmp_path_factory.mktemp("job"), document,
                   job_environment(stack.label_studio_url, stack.admin.token, timeout_seconds=900), timeout=1000)


def test_every_object_becomes_a_task_through_cut_short_requests(first, stack, document):
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert any("cut short" in line for line in lines), "harakiri never cut a sync: the test proves nothing"
    api = LabelStudioClient(stack.label_studio_url, stack.admin.token)
    counts = {p["title"]: p["task_number"] for p in api.get_all_pages("/api/projects/")}
    assert counts == {document["projects"][0]["title"]: IMAGES, document["projects"][1]["title"]: 3}
    assert lines[-1] == "reconcile: done"


def test_sam_is_connected_after_the_sync(first, stack, document):
    api = LabelStudioClient(stack.label_studio_url, stack.admin.token)
    sam_project = next(p for p in api.get_all_pages("/api/projects/") if p["title"] == document["projects"][1]["title"])
    [backend] = api.get(f"/api/ml/?project={sam_project['id']}")
    assert backend["state"] == ML_CONNECTED_STATE and backend["is_interactive"] is True


def test_a_second_run_changes_nothing(first, stack, document, tmp_path):
    second = run_job(tmp_path, document, job_environment(stack.label_studio_url, stack.admin.token, 900),
                     timeout=1000)
    assert second.returncode == 0, second.stderr
    assert all(NO_OP_LINE.search(line) for line in second.stdout.splitlines()), second.stdout
