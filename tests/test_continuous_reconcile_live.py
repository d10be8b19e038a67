"""Continuous reconciliation against real services: Label Studio 1.23.2 as the image serves it
(uWSGI, PostgreSQL, the rendered app env), moto S3 and the SAM stand-in.

Every run here is the pod's own command in a subprocess (`python -E -S -m reconciler`, only the
standard library, the package and the state laid out as the ConfigMap mounts them, the keys
read from files as the Secrets mount them): the Job's after `pulumi up`, the CronJob's with
--scheduled. One difference from the cluster: outside a pod there is no service-account
token, so no run lock is taken (and members are not managed); the lock is proven against a
Kubernetes API that checks resourceVersions in tests/test_continuous_reconcile_unit.py.

The tests run in order on one instance: the Job applies the state; images added later are
imported by the next scheduled run and the tabs cover them; what is deleted or changed
through the API comes back; a rotated key reaches every storage (moto accepts any key, so the
keys are read back from Label Studio's database); a source storage deleted over existing
tasks stops the run instead of importing every image twice.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from components import PROJECT_ROOT
from reconciler import contract
from reconciler.client import LabelStudioClient
from reconciler.contract import SCHEDULED_FLAG
from reconciler.tabs import MARKER, MARKER_KEY, RANGE_KEY
from tests.live_services import MOTO_ACCESS_KEY_ID, MOTO_SECRET_ACCESS_KEY, postgres_program, upload_images
from tests.live_stack import job_environment, live_stack, run_job

pytestmark = pytest.mark.slow

BUCKET = "labeling-data"
CATS, SAM = "kagglecatsanddogs", "sam-demo"
CATS_TITLE, SAM_TITLE, EMPTY_TITLE = "Cats and dogs", "SAM segmentation", "Nothing there yet"
FIRST, ADDED = {CATS: 20, SAM: 3}, 7
MEMBERS = ["ann@example.com", "bob@example.com"]
SUMMARY = re.compile(r"^reconcile: (\d+) imported, (\d+) repaired, (\d+) unchanged$")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with live_stack(tmp_path_factory.mktemp("continuous"), BUCKET, FIRST) as started:
        yield started


@pytest.fixture(scope="module")
def api(stack) -> LabelStudioClient:
    return LabelStudioClient(stack.label_studio_url, stack.admin.token)


@pytest.fixture(scope="module")
def state(stack) -> dict:
    # The storage part as the stack writes it for this store (its ConfigMap).
    generated = json.loads(stack.evaluation.one("kubernetes:core/v1:ConfigMap").inputs["data"]["desired.json"])
    config = lambda name: (PROJECT_ROOT / "label_configs" / name).read_text()  # noqa: E731
    return {
        "storage": generated["storage"], "exportPrefix": "label-studio/exports", "samUrl": stack.sam.url,
        "projects": [
            {"title": CATS_TITLE, "labelConfig": config("image_classification.xml"), "prefix": CATS,
             "regexFilter": ".*\\.png$", "sam": False, "split": MEMBERS},
            {"title": SAM_TITLE, "labelConfig": config("sam_segmentation.xml"), "prefix": SAM,
             "regexFilter": ".*\\.png$", "sam": True},
            # Label Studio refuses a storage over a prefix holding no object at all; this one holds
            # PNGs only, so the regex imports nothing.
            {"title": EMPTY_TITLE, "labelConfig": config("image_classification.xml"), "prefix": CATS,
             "regexFilter": ".*\\.jpg$", "sam": False},
        ],
        "members": MEMBERS,
    }


class Pod:
    """The reconciler's pod: its command, the ConfigMap's files, the keys as mounted files."""

    def __init__(self, stack, work_dir: Path):
        self.work_dir = work_dir
        self.env = job_environment(stack.label_studio_url, stack.admin.token, timeout_seconds=240)
        self.rotate(MOTO_ACCESS_KEY_ID, MOTO_SECRET_ACCESS_KEY)

    def rotate(self, key_id: str, secret: str) -> None:
        """The storage Secret with other keys, as `pulumi up` writes it after a rotation."""
        keys = self.work_dir / "secrets"
        keys.mkdir(exist_ok=True)
        for variable, value in ((contract.ACCESS_KEY_ID, key_id), (contract.SECRET_ACCESS_KEY, secret)):
            (keys / variable).write_text(value)
            self.env.pop(variable, None)
            self.env[variable + contract.FILE_SUFFIX] = str(keys / variable)

    def run(self, state: dict, *argv: str) -> subprocess.CompletedProcess:
        return run_job(self.work_dir, state, self.env, argv=argv)


@pytest.fixture(scope="module")
def pod(stack, tmp_path_factory) -> Pod:
    return Pod(stack, tmp_path_factory.mktemp("pod"))


def summary(result: subprocess.CompletedProcess) -> tuple[int, int, int]:
    assert result.returncode == 0, result.stderr
    *_, line, done = result.stdout.splitlines()
    assert done == "reconcile: done"
    imported, repaired, unchanged = SUMMARY.match(line).groups()
    return int(imported), int(repaired), int(unchanged)


def project(api, title: str) -> dict:
    return next(p for p in api.get_all_pages("/api/projects/") if p["title"] == title)


def task_ids(api, project_id: int) -> list[int]:
    return sorted(t["id"] for t in api.get(f"/api/tasks/?project={project_id}&page_size=1000")["tasks"])


@pytest.fixture(scope="module")
def first_run(pod, state):
    return pod.run(state)


def test_the_job_applies_the_state_and_ends_with_one_summary_line(first_run, api):
    imported, repaired, unchanged = summary(first_run)
    # Everything is made; only the empty project's sync reads "unchanged" (0 new tasks).
    assert imported == sum(FIRST.values()) and repaired > 0 and unchanged == 1
    assert project(api, CATS_TITLE)["task_number"] == FIRST[CATS]


def test_a_prefix_and_regex_that_import_nothing_are_named_in_the_run(first_run):
    assert (f'project "{EMPTY_TITLE}": source storage s3://{BUCKET}/{CATS}: warning: prefix "{CATS}" with '
            'regexFilter ".*\\.jpg$" imported 0 objects; check both against the bucket\'s keys'
            ) in first_run.stdout.splitlines()


def test_images_added_later_are_imported_by_the_next_scheduled_run_and_the_tabs_cover_them(first_run, pod, state,
                                                                                         stack, api):
    upload_images(stack.s3_endpoint, BUCKET, CATS, FIRST[CATS] + ADDED)
    result = pod.run(state, SCHEDULED_FLAG)
    imported, repaired, _ = summary(result)
    assert imported == ADDED and repaired == len(MEMBERS), "the member tabs moved, nothing else"
    cats = project(api, CATS_TITLE)
    tasks = task_ids(api, cats["id"])
    assert len(tasks) == FIRST[CATS] + ADDED
    ranges = [v["data"][RANGE_KEY] for v in api.get(f"/api/dm/views/?project={cats['id']}")
              if v["data"].get(MARKER_KEY) == MARKER and v["data"].get(RANGE_KEY)]
    covered = sorted(task for first, last in ranges for task in tasks if first <= task <= last)
    assert covered == tasks, "every task, the new ones included, is in exactly one member's tab"
    # Nothing new: the next scheduled run changes nothing.
    assert summary(pod.run(state, SCHEDULED_FLAG))[:2] == (0, 0)


def test_what_was_deleted_or_changed_through_the_api_comes_back(first_run, pod, state, api):
    sam = project(api, SAM_TITLE)
    [backend] = api.get(f"/api/ml/?project={sam['id']}")
    api.call("DELETE", f"/api/ml/{backend['id']}")
    cats = project(api, CATS_TITLE)
    [export] = api.get(f"/api/storages/export/s3?project={cats['id']}")
    api.call("DELETE", f"/api/storages/export/s3/{export['id']}")
    api.patch(f"/api/projects/{cats['id']}/", {"label_config": state["projects"][0]["labelConfig"].replace(
        "Dog", "Fox")})
    lines = pod.run(state, SCHEDULED_FLAG).stdout.splitlines()
    assert f'project "{CATS_TITLE}": label config updated (id {cats["id"]})' in lines
    assert api.get(f"/api/projects/{cats['id']}/")["label_config"].strip() == state["projects"][0]["labelConfig"].strip()
    assert len(api.get(f"/api/storages/export/s3?project={cats['id']}")) == 1
    [again] = api.get(f"/api/ml/?project={sam['id']}")
    assert again["id"] != backend["id"] and again["is_interactive"]

    api.call("DELETE", f"/api/projects/{sam['id']}/")
    imported, repaired, _ = summary(pod.run(state, SCHEDULED_FLAG))
    back = project(api, SAM_TITLE)
    assert back["id"] != sam["id"] and back["task_number"] == FIRST[SAM] and imported == FIRST[SAM]
    assert len(api.get(f"/api/ml/?project={back['id']}")) == 1
    assert len(api.get(f"/api/storages/s3/?project={back['id']}")) == 1
    assert len(api.get(f"/api/storages/export/s3?project={back['id']}")) == 1


def stored_keys(stack) -> set[tuple[str, str]]:
    """The key pairs every S3 storage holds, read from Label Studio's database: its API never returns them."""
    rows = subprocess.run(
        [postgres_program("psql"), "-At", "-F", " ", "-c",
         "select aws_access_key_id, aws_secret_access_key from io_storages_s3importstorage union all "
         "select aws_access_key_id, aws_secret_access_key from io_storages_s3exportstorage"],
        env={**os.environ, **stack.server.database}, capture_output=True, text=True, check=True)
    return {tuple(row.split(" ")) for row in rows.stdout.splitlines()}


def test_a_rotated_key_reaches_every_storage(first_run, pod, state, stack, api):
    assert stored_keys(stack) == {(MOTO_ACCESS_KEY_ID, MOTO_SECRET_ACCESS_KEY)}
    pod.rotate("AKIAROTATEDKEY000001", "rotated-secret-access-key-value")
    lines = pod.run(state).stdout.splitlines()
    assert sum(line.endswith(")") and ": updated credentials (id" in line for line in lines) == 2 * len(
        state["projects"])
    assert stored_keys(stack) == {("AKIAROTATEDKEY000001", "rotated-secret-access-key-value")}


def test_a_source_storage_deleted_over_existing_tasks_stops_the_run_without_duplicates(first_run, pod, state, api):
    cats = project(api, CATS_TITLE)
    [source] = api.get(f"/api/storages/s3/?project={cats['id']}")
    api.call("DELETE", f"/api/storages/s3/{source['id']}")
    result = pod.run(state, SCHEDULED_FLAG)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f'reconcile failed: project "{CATS_TITLE}": its source storage was deleted while the project holds '
        f"{FIRST[CATS] + ADDED} tasks; a new one would import every object again as a duplicate task, so none is "
        "made: add new images to another project, or delete the project's tasks to import them afresh"]
    assert project(api, CATS_TITLE)["task_number"] == FIRST[CATS] + ADDED
    assert api.get(f"/api/storages/s3/?project={cats['id']}") == []
