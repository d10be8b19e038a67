"""The reconciler against real services: Label Studio 1.23.2 as the image serves it (uWSGI,
PostgreSQL, the rendered app env), moto S3 and a SAM stand-in.

One session starts the services (see tests/live_services.py); the first reconcile runs
in-process, the second as the Job runs it (a subprocess with only the stdlib on its path).
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from dataclasses import replace

import pytest

from components import PROJECT_ROOT
from reconciler.client import LabelStudioClient
from reconciler.contract import RunEnvironment, parse_desired_state
from reconciler.errors import ReconcileError
from reconciler.projects import ML_CONNECTED_STATE
from reconciler.reconcile import reconcile
from reconciler.errors import ApiError
from tests.live_services import (
    MOTO_ACCESS_KEY_ID, MOTO_SECRET_ACCESS_KEY, BrowserSession, SamBackendStub, free_port, s3_client,
)
from tests.live_stack import SAM_SELF_TEST_PASSED, job_environment, live_stack, run_job

BUCKET = "labeling-data"
CATS_PREFIX = "kagglecatsanddogs"
SAM_PREFIX = "sam-demo"
IMAGES = {CATS_PREFIX: 30, SAM_PREFIX: 5}
CATS_TITLE = "Cats and dogs"
SAM_TITLE = "SAM segmentation"
# Lines a run prints when it changes nothing.
NO_OP_LINE = re.compile(r"unchanged|: healthy$|: accepted|: reachable$|: available|^members: not managed|^reconcile: done$|"
                        + SAM_SELF_TEST_PASSED)

pytestmark = pytest.mark.slow


def label_config(name: str) -> str:
    return (PROJECT_ROOT / "label_configs" / name).read_text()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    with live_stack(tmp_path_factory.mktemp("live"), BUCKET, IMAGES) as started:
        # An object the regex filter must skip.
        s3_client(started.s3_endpoint).put_object(Bucket=BUCKET, Key=f"{CATS_PREFIX}/README.txt", Body=b"not an image")
        yield started


@pytest.fixture(scope="session")
def desired_document(stack) -> dict:
    # The storage part as the stack writes it for this store: the endpoint is Label Studio's
    # S3_ENDPOINT (the storages carry none), and a loopback endpoint means Label Studio's proxy.
    generated = json.loads(stack.evaluation.one("kubernetes:core/v1:ConfigMap").inputs["data"]["desired.json"])
    return {
        "storage": generated["storage"],
        "exportPrefix": "label-studio/exports",
        "samUrl": stack.sam.url,
        "projects": [
            {"title": CATS_TITLE, "labelConfig": label_config("image_classification.xml"),
             "prefix": CATS_PREFIX, "regexFilter": ".*\\.(jpe?g|png)$", "sam": False},
            {"title": SAM_TITLE, "labelConfig": label_config("sam_segmentation.xml"),
             "prefix": SAM_PREFIX, "regexFilter": ".*\\.(jpe?g|png)$", "sam": True},
        ],
        "members": ["annotator@example.com"],
    }


@pytest.fixture(scope="session")
def settings() -> RunEnvironment:
    return RunEnvironment(aws_access_key_id=MOTO_ACCESS_KEY_ID, aws_secret_access_key=MOTO_SECRET_ACCESS_KEY,
                        deadline_seconds=300)


@pytest.fixture(scope="session")
def api(stack) -> LabelStudioClient:
    return LabelStudioClient(stack.label_studio_url, stack.admin.token)


@pytest.fixture(scope="session")
def first_run(desired_document, settings, api):
    lines: list[str] = []
    projects = reconcile(parse_desired_state(desired_document), api, settings, report=lines.append)
    return lines, projects


def test_first_run_creates_projects_with_their_label_configs(first_run, api, desired_document):
    lines, projects = first_run
    for spec in desired_document["projects"]:
        stored = api.get(f"/api/projects/{projects[spec['title']]['id']}/")
        assert stored["title"] == spec["title"]
        assert stored["label_config"].strip() == spec["labelConfig"].strip()
        assert f'project "{spec["title"]}": created (id {stored["id"]})' in lines


def test_sync_imports_one_task_per_image(first_run, api):
    lines, projects = first_run
    for title, prefix in ((CATS_TITLE, CATS_PREFIX), (SAM_TITLE, SAM_PREFIX)):
        stored = api.get(f"/api/projects/{projects[title]['id']}/")
        assert stored["task_number"] == IMAGES[prefix]  # README.txt was filtered out
        assert any(line.startswith(f'project "{title}": source storage s3://{BUCKET}/{prefix}: synced {IMAGES[prefix]} tasks in ')
                   for line in lines), lines


def test_source_storage_has_the_desired_settings(first_run, api, stack):
    _, projects = first_run
    [storage] = api.get(f"/api/storages/s3/?project={projects[CATS_TITLE]['id']}")
    assert storage["bucket"] == BUCKET and storage["prefix"] == CATS_PREFIX
    assert storage["use_blob_urls"] is True and storage["presign"] is False and storage["presign_ttl"] == 60
    assert not storage["s3_endpoint"] and storage["region_name"] == "us-east-1"
    assert "aws_secret_access_key" not in storage  # Label Studio never returns keys


def test_export_storage_exists_per_project(first_run, api):
    _, projects = first_run
    for title, slug in ((CATS_TITLE, "cats-and-dogs"), (SAM_TITLE, "sam-segmentation")):
        [export] = api.get(f"/api/storages/export/s3?project={projects[title]['id']}")
        assert export["bucket"] == BUCKET
        assert export["prefix"] == f"label-studio/exports/{slug}"


def test_sam_backend_is_connected_and_interactive(first_run, api, stack):
    _, projects = first_run
    [backend] = api.get(f"/api/ml/?project={projects[SAM_TITLE]['id']}")
    assert backend["url"] == stack.sam.url
    assert backend["is_interactive"] is True and backend["state"] == ML_CONNECTED_STATE
    assert {"/health", "/setup"} <= set(stack.sam.paths_called())
    assert api.get(f"/api/ml/?project={projects[CATS_TITLE]['id']}") == []


def test_invite_link_exists_and_is_never_printed(first_run, api):
    lines, _ = first_run
    invite = api.get("/api/invite")
    assert invite["invite_url"].startswith("/user/signup/?token=") and invite["token"]
    assert "invite link: available (kept out of logs)" in lines
    assert not any(invite["token"] in line for line in lines)


def test_members_are_left_alone_without_the_team_secret_to_record_them_in(first_run):
    """Members are managed in tests/test_team_live.py, where the team Secret is at hand."""
    lines, _ = first_run
    assert ("members: not managed (the accounts it creates are recorded in the team Secret, out of reach here)"
            in lines)


def test_second_run_as_the_job_changes_nothing(first_run, stack, desired_document, api, tmp_path):
    _, projects = first_run
    result = run_job(tmp_path, desired_document, job_environment(stack.label_studio_url, stack.admin.token))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(NO_OP_LINE.search(line) for line in lines), lines
    after = {project["title"]: project["id"] for project in api.get_all_pages("/api/projects/")}
    assert {title: after.get(title) for title in projects} == {title: project["id"] for title, project in projects.items()}


def test_bad_token_fails_with_a_clear_message(first_run, stack, desired_document, tmp_path):
    result = run_job(tmp_path, desired_document, job_environment(stack.label_studio_url, "not-the-token"))
    assert result.returncode != 0
    assert "Label Studio rejected the API token" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unreachable_s3_endpoint_is_named(first_run, stack, desired_document, tmp_path):
    dead_endpoint = f"http://127.0.0.1:{free_port()}"
    document = {**desired_document, "storage": {**desired_document["storage"], "endpoint": dead_endpoint}}
    result = run_job(tmp_path, document, job_environment(stack.label_studio_url, stack.admin.token))
    assert result.returncode != 0
    assert f"S3 endpoint {dead_endpoint} is unreachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_label_config_reports_label_studios_validation_text(first_run, api, settings, desired_document):
    broken = ('<View><Image name="image" value="$image"/>'
              '<Choices name="choice" toName="nowhere"><Choice value="Cat"/></Choices></View>')
    document = {**desired_document, "projects": [{**desired_document["projects"][0], "title": "Broken config",
                                                  "labelConfig": broken}]}
    with pytest.raises(ReconcileError, match=r'project "Broken config": Label Studio refused the label config: '
                                                 r'label_config: toName="nowhere" not found'):
        reconcile(parse_desired_state(document), api, settings, report=lambda line: None)


def test_backend_still_loading_its_model_is_retried(first_run, api, settings, desired_document, stack):
    loading_backend = SamBackendStub(healthy_after_calls=1, predict=stack.sam.predict).start()
    try:
        document = {**desired_document, "samUrl": loading_backend.url,
                    "projects": [{**desired_document["projects"][1], "title": "SAM, slow start"}]}
        lines: list[str] = []
        projects = reconcile(parse_desired_state(document), api, replace(settings, deadline_seconds=120),
                                 report=lines.append)
    finally:
        loading_backend.stop()
    label = f'project "SAM, slow start": ml backend {loading_backend.url}'
    assert any(line.startswith(f"{label}: waiting for the backend to answer healthy") for line in lines), lines
    assert any(line.startswith(f"{label}: created") for line in lines), lines
    [backend] = api.get(f"/api/ml/?project={projects['SAM, slow start']['id']}")
    assert backend["is_interactive"] is True


def test_label_studio_itself_trims_titles_and_holds_them_to_three_characters(api):
    """Why the stack trims titles and counts 3-50 characters: Label Studio 1.23.2 does."""
    created = api.post("/api/projects/", {"title": "  Trimmed by Label Studio  "})
    assert created["title"] == "Trimmed by Label Studio"
    with pytest.raises(ReconcileError) as caught:
        api.post("/api/projects/", {"title": "ab"})
    assert caught.value.status == 400 and caught.value.fields == ("title",)


def test_a_padded_title_run_twice_leaves_one_project_with_a_stable_id(first_run, api, settings, desired_document):
    padded = {**desired_document["projects"][0], "title": "  Padded title  "}
    document = {**desired_document, "projects": [padded]}
    ids = []
    for _ in range(2):
        projects = reconcile(parse_desired_state(document), api, settings, report=lambda line: None)
        ids.append(projects["Padded title"]["id"])
    titled = [p for p in api.get_all_pages("/api/projects/") if p["title"].strip() == "Padded title"]
    assert [p["id"] for p in titled] == [ids[0]] == [ids[1]]


def test_switching_sam_off_removes_the_backend_the_reconciler_added_and_no_other(first_run, api, settings,
                                                                              desired_document, stack):
    _, projects = first_run
    project_id = projects[SAM_TITLE]["id"]
    by_hand = api.post("/api/ml/", {"project": project_id, "url": stack.sam.url, "title": "Added by hand"})
    without_sam = {**desired_document, "samUrl": None,
                   "projects": [{**spec, "sam": False} for spec in desired_document["projects"]]}
    lines: list[str] = []
    reconcile(parse_desired_state(without_sam), api, settings, report=lines.append)
    assert [b["id"] for b in api.get(f"/api/ml/?project={project_id}")] == [by_hand["id"]]
    assert any(line.startswith(f'project "{SAM_TITLE}": ml backend {stack.sam.url}: removed') for line in lines)
    # Put SAM back for the tests that run after this one.
    api.call("DELETE", f"/api/ml/{by_hand['id']}")
    reconcile(parse_desired_state(desired_document), api, settings, report=lambda line: None)


# ------------------------------------------------------------------ network edges

def test_label_studio_runs_with_ssrf_protection_on(stack):
    assert "SSRF_PROTECTION_ENABLED" not in stack.environment and "ML_BLOCK_LOCAL_IP" not in stack.environment
    assert stack.environment["S3_ENDPOINT"] == stack.s3_endpoint


@pytest.mark.parametrize("endpoint", ["store", "http://169.254.169.254"])
def test_a_storage_a_member_points_at_an_internal_address_is_refused(first_run, api, stack, endpoint):
    """Every member may add storages in the open-source edition; the platform's own store (on
    127.0.0.1 here) and the metadata address stay out of reach of the URLs they enter."""
    _, projects = first_run
    s3_endpoint = stack.s3_endpoint if endpoint == "store" else endpoint
    with pytest.raises(ApiError) as refused:
        api.post("/api/storages/s3/", {"project": projects[CATS_TITLE]["id"], "title": "member's own",
                                       "bucket": BUCKET, "s3_endpoint": s3_endpoint, "region_name": "us-east-1",
                                       "aws_access_key_id": MOTO_ACCESS_KEY_ID,
                                       "aws_secret_access_key": MOTO_SECRET_ACCESS_KEY})
    # Label Studio answers its SSRF refusal with 403 (SsrfBlockedUrlError).
    assert refused.value.status == 403 and "reserved network address" in refused.value.detail


def test_an_ml_backend_on_any_address_but_sams_is_refused(first_run, api, stack):
    _, projects = first_run
    with pytest.raises(ApiError) as refused:
        api.post("/api/ml/", {"project": projects[CATS_TITLE]["id"], "url": stack.label_studio_url, "title": "own"})
    assert "reserved network address" in refused.value.detail


def test_the_browser_gets_the_image_bytes_through_label_studio(first_run, api, stack):
    """presign false (a loopback store no browser could reach): the task's image URL is Label
    Studio's own, and the logged-in session gets the object's bytes through it."""
    _, projects = first_run
    browser = BrowserSession(stack.label_studio_url).log_in(stack.admin.email, stack.admin.password)
    listing = api.get(f"/api/tasks/?project={projects[CATS_TITLE]['id']}&page_size=1")
    [task] = listing["tasks"] if isinstance(listing, dict) else listing
    status, body, _ = browser.get(f"/api/tasks/{task['id']}/")
    image_url = json.loads(body)["data"]["image"]
    # Label Studio's own address (labelStudio.publicUrl), never the store's.
    assert status == 200 and image_url.startswith(f"{stack.label_studio_url}/tasks/{task['id']}/resolve/?fileuri="), \
        image_url
    # The URL names the object it stands for: s3://bucket/key, base64-encoded.
    fileuri = urllib.parse.parse_qs(urllib.parse.urlsplit(image_url).query)["fileuri"][0]
    key = base64.b64decode(fileuri).decode().removeprefix(f"s3://{BUCKET}/")
    status, image, content_type = browser.get(image_url.removeprefix(stack.label_studio_url))
    assert status == 200 and image == s3_client(stack.s3_endpoint).get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert image.startswith(b"\x89PNG"), content_type
