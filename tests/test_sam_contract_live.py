"""The SAM contract, live: Label Studio 1.23.2 as the image serves it (uWSGI, PostgreSQL, the
rendered app env, SSRF protection on), moto holding images whose keys have spaces, and a SAM
stand-in (tests/sam_contract_backend.py) that downloads each task image the way the real
backend does: label-studio-sdk's `get_local_path` with exactly the env the SAM Deployment
declares. The deploy-time self-test runs against it (it passes, presign on and off) and against
stand-ins broken each way (it fails with one line naming the cause).

Differences from the cluster, each harmless for what is tested:
- the stand-in computes no mask: it answers a box over the downloaded image's size, encoded by
  the SDK's converter as the example does; the size is what the contract is about;
- LABEL_STUDIO_URL/LABEL_STUDIO_HOST are Label Studio's local address instead of its Service
  DNS name, and the token's secretKeyRef is resolved to this run's admin token;
- the image cache ($XDG_CACHE_HOME, an emptyDir in the pod) and MODEL_DIR are temporary directories;
- Label Studio runs 10 uWSGI processes (the chart's default is twice the node's cores): each
  click holds one until the backend answers, and the backend's download needs another, so 8
  simultaneous clicks on images the backend has not cached need at least 9.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from components import PROJECT_ROOT
from components.chart_values import ADMIN_TOKEN_KEY
from components.sam_backend import LABEL_STUDIO_URL_VARIABLES
from reconciler.client import LabelStudioClient
from reconciler.contract import RunEnvironment, parse_desired_state
from reconciler.errors import ReconcileError
from reconciler.reconcile import reconcile
from reconciler.sam_selftest import image_size, rle_values, storage_uri
from tests.live_services import (
    MOTO_ACCESS_KEY_ID, MOTO_SECRET_ACCESS_KEY, SAM_STUB_ADDRESS, free_port, png_bytes, s3_client, start_process,
    wait_for_process_url,
)
from tests.live_stack import job_environment, live_stack, run_job

pytestmark = pytest.mark.slow

BUCKET = "labeling-sam"
PREFIX = "sam contract"
# Every image has its own size, so a mask of another image shows.
IMAGE_SIDES = [16 + 3 * index for index in range(8)]
STAND_IN = Path(__file__).with_name("sam_contract_backend.py")
SAM_CONFIG = (PROJECT_ROOT / "label_configs" / "sam_segmentation.xml").read_text()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with live_stack(tmp_path_factory.mktemp("sam-contract"), BUCKET, {},
                    extra_env={"UWSGI_PROCESSES": "10"}) as started:
        store = s3_client(started.s3_endpoint)
        store.create_bucket(Bucket=BUCKET)
        for index, side in enumerate(IMAGE_SIDES):
            store.put_object(Bucket=BUCKET, Key=f"{PREFIX}/fruit {index}.png", Body=png_bytes(index, side=side),
                             ContentType="image/png")
        yield started


@pytest.fixture(scope="module")
def api(stack) -> LabelStudioClient:
    return LabelStudioClient(stack.label_studio_url, stack.admin.token)


def deployment_environment(stack, work_dir: Path, **replacements: str) -> dict[str, str]:
    """The SAM container's env as the stack declares it, for a process on this machine."""
    deployment = stack.evaluation.one("kubernetes:apps/v1:Deployment", "labeling-sam-deployment")
    [container] = deployment.inputs["spec"]["template"]["spec"]["containers"]
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work_dir)}
    for variable in container["env"]:
        name = variable["name"]
        if "valueFrom" in variable:
            assert variable["valueFrom"]["secretKeyRef"]["key"] == ADMIN_TOKEN_KEY
            environment[name] = stack.admin.token
        elif name in LABEL_STUDIO_URL_VARIABLES:
            environment[name] = stack.label_studio_url
        elif name in ("XDG_CACHE_HOME", "MODEL_DIR"):
            environment[name] = str(work_dir / name.lower())
        else:
            environment[name] = variable["value"]
    assert environment["THREADS"] == "1"
    return {**environment, **replacements}


@contextlib.contextmanager
def stand_in(stack, work_dir: Path, mode: str = "serial", **replacements: str) -> Iterator[str]:
    """The stand-in on the SAM address Label Studio lets through; yields its URL."""
    work_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = start_process(f"sam-{mode}-{port}", [sys.executable, str(STAND_IN), "--port", str(port), "--mode", mode],
                            stack.log_dir, deployment_environment(stack, work_dir, **replacements))
    try:
        url = f"http://{SAM_STUB_ADDRESS}:{port}"
        wait_for_process_url(process, f"{url}/health", 60, expect_status=200)
        yield url
    finally:
        process.stop()


def document(stack, title: str, sam_url: str, presign: bool = False) -> dict:
    generated = json.loads(stack.evaluation.one("kubernetes:core/v1:ConfigMap").inputs["data"]["desired.json"])
    return {"storage": {**generated["storage"], "presign": presign}, "exportPrefix": "label-studio/exports",
            "samUrl": sam_url, "members": [],
            "projects": [{"title": title, "labelConfig": SAM_CONFIG, "prefix": PREFIX,
                          "regexFilter": ".*\\.png$", "sam": True}]}


def run(stack, api, state: dict, report=None) -> tuple[list[str], dict]:
    lines: list[str] = []

    def record(line: str) -> None:
        lines.append(line)
        if report:
            report(line)

    environment = RunEnvironment(aws_access_key_id=MOTO_ACCESS_KEY_ID, aws_secret_access_key=MOTO_SECRET_ACCESS_KEY,
                                 deadline_seconds=300)
    projects = reconcile(parse_desired_state(state), api, environment, report=record)
    return lines, projects


@pytest.mark.parametrize("presign", [False, True], ids=["streamed", "presigned"])
def test_the_self_test_passes_through_the_real_download_path(stack, api, tmp_path, presign):
    title = f"SAM contract, presign {presign}"
    with stand_in(stack, tmp_path) as url:
        lines, _ = run(stack, api, document(stack, title, url, presign))
    [line] = [line for line in lines if "SAM self-test" in line]
    assert re.fullmatch(rf'project "{title}": SAM self-test: masks of each image\'s own size \(\d+x\d+, \d+x\d+\); '
                        r"first click \d+\.\d\d s \(download and embedding\), 2 simultaneous clicks \d+\.\d\d s",
                        line), line
    # get_local_path kept each image it fetched, under its key's name, in the Deployment's cache dir.
    cached = [path.name.split("__", 1)[1] for path in (tmp_path / "xdg_cache_home" / "label-studio").iterdir()]
    assert len(cached) == 2 and all(re.fullmatch(r"fruit \d\.png", name) for name in cached), cached


def test_eight_simultaneous_clicks_on_eight_images_each_get_their_own_images_mask(stack, api, tmp_path):
    title = "SAM contract, eight clicks"
    with stand_in(stack, tmp_path) as url:
        _, projects = run(stack, api, document(stack, title, url))
        [backend] = api.get(f"/api/ml/?project={projects[title]['id']}")
        listing = api.get(f"/api/tasks/?project={projects[title]['id']}&page_size=8")
        tasks = listing["tasks"] if isinstance(listing, dict) else listing
        assert len(tasks) == 8
        store = s3_client(stack.s3_endpoint)

        def click(task: dict) -> tuple[int, dict]:
            return task["id"], api.post(f"/api/ml/{backend['id']}/interactive-annotating", {
                "task": task["id"], "context": {"result": [{
                    "original_width": 100, "original_height": 100, "image_rotation": 0,
                    "value": {"x": 50, "y": 50, "width": 0.5, "keypointlabels": ["Banana"]}, "is_positive": True,
                    "id": "click", "from_name": "tag2", "to_name": "image", "type": "keypointlabels",
                    "origin": "manual"}]}}, timeout=150)

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(click, tasks))
    sizes = {}
    for task in tasks:
        key = storage_uri(task["data"]["image"]).removeprefix(f"s3://{BUCKET}/")
        sizes[task["id"]] = image_size(store.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert len(set(sizes.values())) == 8
    for task_id, answer in answers:
        assert "errors" not in answer, answer
        [mask] = answer["data"]["result"]
        width, height = sizes[task_id]
        assert rle_values(mask["value"]["rle"])[0] == width * height * 4


BROKEN = [
    ("wrong-token", "serial", {"LABEL_STUDIO_API_KEY": "not-the-token-of-anyone", "LABEL_STUDIO_ACCESS_TOKEN": "x"},
     "the backend's image download got 401 Unauthorized from {ls}/tasks/"),
    ("download-failing", "serial", {"LABEL_STUDIO_URL": "{ls}/elsewhere", "LABEL_STUDIO_HOST": "{ls}/elsewhere"},
     "the backend's image download got 404 Not Found from {ls}/elsewhere/tasks/"),
    ("old-build", "no-task-id", {},
     "the backend image predates label-studio-ml-backend's task-aware downloads (April 2024)"),
    ("racy", "racy", {}, "the backend mixes up simultaneous requests (more than one thread per predictor"),
]


@pytest.mark.parametrize(("case", "mode", "replacements", "cause"), BROKEN, ids=[case for case, *_ in BROKEN])
def test_a_broken_backend_fails_the_self_test_with_one_line_naming_the_cause(stack, api, tmp_path, case, mode,
                                                                             replacements, cause):
    replacements = {name: value.format(ls=stack.label_studio_url) for name, value in replacements.items()}
    with stand_in(stack, tmp_path, mode, **replacements) as url:
        with pytest.raises(ReconcileError) as failed:
            run(stack, api, document(stack, f"SAM contract, {case}", url))
    message = str(failed.value)
    assert message.startswith(f'project "SAM contract, {case}": SAM self-test failed: '), message
    assert cause.format(ls=stack.label_studio_url) in message, message
    assert "\n" not in message


def test_a_backend_gone_after_it_was_connected_is_named_unreachable(stack, api, tmp_path):
    with contextlib.ExitStack() as running:
        url = running.enter_context(stand_in(stack, tmp_path))

        def stop_once_connected(line: str) -> None:
            if ": ml backend " in line and ": created" in line:
                running.close()

        with pytest.raises(ReconcileError) as failed:
            run(stack, api, document(stack, "SAM contract, gone", url), report=stop_once_connected)
    assert f"SAM self-test failed: backend unreachable from Label Studio at {url} (" in str(failed.value)


def test_the_job_prints_the_cause_as_its_one_line(stack, tmp_path):
    with stand_in(stack, tmp_path / "backend", LABEL_STUDIO_API_KEY="not-the-token-of-anyone",
                  LABEL_STUDIO_ACCESS_TOKEN="x") as url:
        result = run_job(tmp_path / "job", document(stack, "SAM contract, as the Job", url),
                         job_environment(stack.label_studio_url, stack.admin.token))
    assert result.returncode == 1
    assert result.stderr.startswith('reconcile failed: project "SAM contract, as the Job": SAM self-test failed: '
                                    "the backend's image download got 401 Unauthorized"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
