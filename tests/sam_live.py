"""What the live SAM tests and the SAM benchmarks share: Label Studio 1.23.2 as the image
serves it (uWSGI, PostgreSQL, the rendered app env, SSRF protection on) with moto holding
images of different sizes under keys with spaces; the SAM container's env as the stack
declares it; a SAM project registered by the reconciler; clicks as the labeling UI sends them;
the SAM stand-in (tests/sam_contract_backend.py); the self-test run again and again, with the
round in which each run caught a backend mixing up simultaneous clicks.

Differences from the cluster, each harmless for what is tested:
- LABEL_STUDIO_URL/LABEL_STUDIO_HOST are Label Studio's local address instead of its Service
  DNS name, and the token's secretKeyRef is resolved to this run's admin token;
- the image cache ($XDG_CACHE_HOME, an emptyDir in the pod) and MODEL_DIR are temporary directories;
- Label Studio runs 10 uWSGI processes unless told otherwise (the chart's default is twice the
  node's cores): each click holds one until the backend answers, and the backend's download
  needs another, so 8 simultaneous clicks on images the backend has not cached need at least 9.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from components import PROJECT_ROOT
from components.chart_values import ADMIN_TOKEN_KEY
from components.sam_container import LABEL_STUDIO_URL_VARIABLES
from reconciler.client import LabelStudioClient
from reconciler.contract import SELF_TEST_WARN, ProjectSpec, RunEnvironment, parse_desired_state
from reconciler.reconcile import reconcile
from reconciler.sam_selftest import (
    CONCURRENT_PREDICTIONS, SHARED_PREDICTOR, SamSelfTest, interactive_context, sam_tags, storage_uri,
)
from reconciler.sam_sizes import RLE_CHANNELS, image_size, rle_values
from tests.live_services import (
    MOTO_ACCESS_KEY_ID, MOTO_SECRET_ACCESS_KEY, SAM_STUB_ADDRESS, free_port, png_bytes, s3_client, start_process,
    wait_for_process_url,
)
from tests.live_stack import LiveStack, live_stack
from tools.stack_eval import Evaluation

BUCKET = "labeling-sam"
PREFIX = "sam contract"
# Every image has its own size, so a mask of another image shows.
IMAGE_SIDES = tuple(16 + 3 * index for index in range(8))
SAM_CONFIG = (PROJECT_ROOT / "label_configs" / "sam_segmentation.xml").read_text()
PREDICTION_TIMEOUT_SECONDS = 150
STAND_IN = Path(__file__).with_name("sam_contract_backend.py")
# Where a failed self-test says the simultaneous clicks showed a shared predictor.
_RACE_IN_ROUND = re.compile(r"\(round (\d+) of \d+\): .*" + re.escape(SHARED_PREDICTOR))


@contextlib.contextmanager
def sam_stack(work_dir: Path, image_sides: tuple[int, ...] = IMAGE_SIDES,
              overrides: Optional[Mapping[str, Any]] = None, uwsgi_processes: int = 10) -> Iterator[LiveStack]:
    """Label Studio and moto holding one PNG per side in `image_sides` under PREFIX."""
    with live_stack(work_dir, BUCKET, {}, extra_env={"UWSGI_PROCESSES": str(uwsgi_processes)},
                    overrides=overrides) as started:
        store = s3_client(started.s3_endpoint)
        store.create_bucket(Bucket=BUCKET)
        for index, side in enumerate(image_sides):
            store.put_object(Bucket=BUCKET, Key=f"{PREFIX}/fruit {index}.png", Body=png_bytes(index, side=side),
                             ContentType="image/png")
        yield started


def deployment_environment(stack: LiveStack, work_dir: Path, evaluation: Optional[Evaluation] = None,
                           **replacements: str) -> dict[str, str]:
    """The SAM container's env as the stack declares it (or `evaluation`, the same stack with
    other SAM settings), for a process on this machine beside this stack's Label Studio."""
    return container_environment(evaluation or stack.evaluation, stack.label_studio_url, stack.admin.token, work_dir,
                                 **replacements)


def container_environment(evaluation: Evaluation, label_studio_url: str, token: str, work_dir: Path,
                          **replacements: str) -> dict[str, str]:
    """The SAM container's env in `evaluation`, for a process on this machine: the pod's IP is the
    loopback address Label Studio lets through, Label Studio is at `label_studio_url`, the token's
    secretKeyRef is `token`, and `$(NAME)` references are expanded as the kubelet does."""
    deployment = evaluation.one("kubernetes:apps/v1:Deployment", "labeling-sam-deployment")
    [container] = deployment.inputs["spec"]["template"]["spec"]["containers"]
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work_dir)}
    for variable in container["env"]:
        name = variable["name"]
        if "valueFrom" in variable and "fieldRef" in variable["valueFrom"]:
            assert variable["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
            environment[name] = SAM_STUB_ADDRESS
        elif "valueFrom" in variable:
            assert variable["valueFrom"]["secretKeyRef"]["key"] == ADMIN_TOKEN_KEY
            environment[name] = token
        elif name in LABEL_STUDIO_URL_VARIABLES:
            environment[name] = label_studio_url
        elif name in ("XDG_CACHE_HOME", "MODEL_DIR", "HOME"):
            environment[name] = str(work_dir / name.lower())
        else:
            environment[name] = re.sub(r"\$\((\w+)\)", lambda ref: environment.get(ref.group(1), ref.group(0)),
                                       variable["value"])
    return {**environment, **replacements}


@contextlib.contextmanager
def stand_in(stack: LiveStack, work_dir: Path, mode: str = "serial", **replacements: str) -> Iterator[str]:
    """The SAM stand-in (tests/sam_contract_backend.py) in `mode`, with the Deployment's env and
    `replacements`, on the SAM address Label Studio lets through; yields its URL."""
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


def document(stack: LiveStack, title: str, sam_url: str, presign: bool = False) -> dict:
    """The desired state of one SAM project over PREFIX, with the stack's storage."""
    generated = json.loads(stack.evaluation.one("kubernetes:core/v1:ConfigMap").inputs["data"]["desired.json"])
    return {"storage": {**generated["storage"], "presign": presign}, "exportPrefix": "label-studio/exports",
            "samUrl": sam_url, "members": [],
            "projects": [{"title": title, "labelConfig": SAM_CONFIG, "prefix": PREFIX,
                          "regexFilter": ".*\\.png$", "sam": True}]}


def self_test_passed(title: str) -> re.Pattern:
    """The line the reconciler prints when project `title`'s SAM self-test passes (its rounds
    stop early when a slow backend spends their time budget)."""
    return re.compile(rf'project "{re.escape(title)}": SAM self-test: masks of each image\'s own size '
                      r"\(\d+x\d+, \d+x\d+\); first click \d+\.\d\d s \(download and embedding\), "
                      rf"{CONCURRENT_PREDICTIONS} simultaneous clicks \d times in \d+\.\d s, slowest \d+\.\d\d s")


def self_test_line(lines: list[str]) -> str:
    [line] = [line for line in lines if "SAM self-test" in line]
    return line


def rounds_until_caught(api: LabelStudioClient, project: dict, sam_url: str, runs: int) -> list[Optional[int]]:
    """The project's self-test run `runs` times against the backend at `sam_url`, as the reconciler
    runs it; for each run, the round whose simultaneous clicks showed a shared predictor (0: the
    clicks alone already did), None when it passed. A failure with another cause fails."""
    [backend] = api.get(f"/api/ml/?project={project['id']}")
    spec = ProjectSpec(project["title"], project["label_config"], PREFIX, "", sam=True)
    caught: list[Optional[int]] = []
    for _ in range(runs):
        lines: list[str] = []
        SamSelfTest(api, sam_url).run(project, backend, spec, lines.append, SELF_TEST_WARN)
        line = self_test_line(lines)
        if SHARED_PREDICTOR not in line:
            assert self_test_passed(project["title"]).fullmatch(line), line
            caught.append(None)
        else:
            in_round = _RACE_IN_ROUND.search(line)
            caught.append(int(in_round.group(1)) if in_round else 0)
    return caught


def run(api: LabelStudioClient, state: dict, report=None) -> tuple[list[str], dict]:
    """The reconciler's run of `state`, as the Job runs it; (lines it reported, projects)."""
    lines: list[str] = []

    def record(line: str) -> None:
        lines.append(line)
        if report:
            report(line)

    environment = RunEnvironment(aws_access_key_id=MOTO_ACCESS_KEY_ID, aws_secret_access_key=MOTO_SECRET_ACCESS_KEY,
                                 deadline_seconds=300)
    projects = reconcile(parse_desired_state(state), api, environment, report=record)
    return lines, projects


class SamProject:
    """A SAM project the reconciler created: its tasks, their images' sizes, and clicks on them."""

    def __init__(self, stack: LiveStack, api: LabelStudioClient, project: dict):
        self._api = api
        [self._backend] = api.get(f"/api/ml/?project={project['id']}")
        listing = api.get(f"/api/tasks/?project={project['id']}&page_size=100")
        self.tasks = listing["tasks"] if isinstance(listing, dict) else listing
        store = s3_client(stack.s3_endpoint)
        self.sizes = {}
        for task in self.tasks:
            key = storage_uri(task["data"]["image"]).removeprefix(f"s3://{BUCKET}/")
            self.sizes[task["id"]] = image_size(store.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        self._tags = sam_tags(SAM_CONFIG)

    def click(self, task: dict) -> dict:
        """A smart keypoint and rectangle on `task`, as the labeling UI asks Label Studio for them."""
        width, height = self.sizes[task["id"]]
        return self._api.post(f"/api/ml/{self._backend['id']}/interactive-annotating",
                              {"task": task["id"], "context": interactive_context(self._tags, width, height)},
                              timeout=PREDICTION_TIMEOUT_SECONDS)

    def click_all_at_once(self) -> list[tuple[int, dict]]:
        """One click on every task at the same moment: (task id, answer) each."""
        with ThreadPoolExecutor(max_workers=len(self.tasks)) as pool:
            return list(pool.map(lambda task: (task["id"], self.click(task)), self.tasks))

    def mask_pixels(self, answer: dict) -> int:
        assert "errors" not in answer, answer
        [mask] = answer["data"]["result"]
        return rle_values(mask["value"]["rle"])[0] // RLE_CHANNELS

    def assert_each_mask_fits_its_own_image(self, answers: list[tuple[int, dict]]) -> None:
        assert len(set(self.sizes.values())) == len(self.tasks)
        for task_id, answer in answers:
            width, height = self.sizes[task_id]
            assert self.mask_pixels(answer) == width * height, (task_id, self.sizes[task_id])


def assert_simultaneous_clicks_each_get_their_own_mask(stack: LiveStack, api: LabelStudioClient, sam_url: str,
                                                       title: str) -> None:
    """A SAM project over all of the stack's images, registered for the backend at `sam_url`; one
    click on every image at the same moment, each answered with a mask of its own image's size."""
    _, projects = run(api, document(stack, title, sam_url))
    project = SamProject(stack, api, projects[title])
    assert len(project.tasks) == len(IMAGE_SIDES)
    project.assert_each_mask_fits_its_own_image(project.click_all_at_once())
