"""The deploy-time SAM self-test: a labeler's click, asked for the way the labeling UI asks.

For a SAM project with tasks, the reconciler takes a few tasks with different images and asks
Label Studio for an interactive prediction of each, one at a time and then all at once, for
several rounds (`POST /api/ml/<id>/interactive-annotating` with the task and a context holding a
keypoint and a rectangle, as the UI sends them). Label Studio passes them to the backend's
/predict with the task's raw `s3://bucket/key`; the backend downloads the image back from Label
Studio and answers with a brush mask. Each answer must be a mask of its own image's size,
learnt here from the image's bytes. Label Studio reduces a backend failure to "500 Server Error
... /predict"; to name the cause the reconciler then sends the same request to the backend's
/predict itself and reads the backend's own error (its download's status and URL).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from reconciler.client import LabelStudioClient, Opener, one_line, relative_api_path, urllib_opener
from reconciler.contract import SELF_TEST_WARN, ProjectSpec
from reconciler.errors import ApiError, ReconcileError
from reconciler.sam_sizes import RLE_CHANNELS, image_size, rle_values

# This many tasks (different images) are clicked on at once, after one click on each alone: with
# one predictor shared between requests, masks come back shaped like another request's image.
# Each click holds one of Label Studio's uWSGI workers until the backend answers, and a click on
# an image the backend has not cached holds a second one for its download: clicking each image
# alone first leaves the simultaneous clicks needing no more workers than there are clicks. The
# chart starts 2 workers per node core, so a pod on a 2-core node has 4: two held by the
# self-test leave a labeler's click on a new image (a click and its download) the other two.
CONCURRENT_PREDICTIONS = 2
# A race shows only when the simultaneous clicks reach the same predictor: against the upstream
# example with 2 workers and THREADS=8 one round of 2 caught it in 9 of 20 runs, 6 rounds in
# all 20 (docs/sam-backend.md), so the rounds repeat: 8 would miss about one in 120. A round
# costs at most one embedding per click: a few seconds on a CPU, a fraction of one on a GPU.
SIMULTANEOUS_ROUNDS = 8
# No round starts after the rounds have taken this long: on a CPU a round can cost an embedding
# per click (each of the example's workers keeps one image; one worker took 3-15 s a round), every
# hourly reconcile pays it, and labelers clicking meanwhile wait behind it. Against the racy
# example a whole run took 7.3 s on average until caught: the budget leaves it its rounds.
ROUNDS_BUDGET_SECONDS = 30.0
# Why masks get mixed up, whichever way it shows (another image's mask or a predictor that lost
# its image mid-click): the upstream example's image defaults to THREADS=8 around one predictor.
SHARED_PREDICTOR = ("the backend shares one predictor between simultaneous requests "
                    "(THREADS=1 for the upstream example)")
# What the example's predictor (segment_anything's SamPredictor) raises when another request
# reset its image between this request's set_image and its prediction.
LOST_IMAGE_ERROR = "An image must be set with .set_image"
PREDICTION_TIMEOUT_SECONDS = 150
DOWNLOAD_TIMEOUT_SECONDS = 60
# Where the labeler "clicks", in percent of the image: a keypoint in the middle, a box around it.
KEYPOINT_AT = (50.0, 50.0)
RECTANGLE_AT = (25.0, 25.0, 50.0, 50.0)


class SelfTestFailure(Exception):
    """Why a SAM project's self-test failed: the one-line cause."""


# ------------------------------------------------------------------ what the UI sends

@dataclass(frozen=True)
class SmartTool:
    kind: str    # keypointlabels | rectanglelabels
    name: str
    label: str


@dataclass(frozen=True)
class SamTags:
    """The label config's parts a SAM click involves."""

    image_key: str     # the task data key of the image ($image -> image)
    image_name: str
    brush_name: str
    tools: tuple[SmartTool, ...]


def sam_tags(label_config: str) -> SamTags:
    try:
        root = ElementTree.fromstring(label_config)
    except ElementTree.ParseError as error:
        raise SelfTestFailure(f"the label config does not parse: {error}") from None
    image = next((tag for tag in root.iter() if tag.tag == "Image" and tag.get("value", "").startswith("$")), None)
    brush = next((tag for tag in root.iter() if tag.tag == "BrushLabels"), None)
    if image is None or brush is None:
        raise SelfTestFailure("the label config has no <Image value=\"$...\"> and <BrushLabels> for SAM to fill")
    tools = []
    for tag_name, kind in (("KeyPointLabels", "keypointlabels"), ("RectangleLabels", "rectanglelabels")):
        tool = next((tag for tag in root.iter() if tag.tag == tag_name and tag.get("toName") == image.get("name")), None)
        label = next((child.get("value") for child in tool.iter("Label")), None) if tool is not None else None
        if tool is not None and label:
            tools.append(SmartTool(kind, tool.get("name", ""), label))
    if not tools:
        raise SelfTestFailure("the label config has no KeyPointLabels or RectangleLabels on the image to click with")
    return SamTags(image.get("value")[1:], image.get("name", ""), brush.get("name", ""), tuple(tools))


def interactive_context(tags: SamTags, width: int, height: int) -> dict:
    """The context the labeling UI sends after a smart keypoint and a smart rectangle."""
    results = []
    for index, tool in enumerate(tags.tools):
        if tool.kind == "keypointlabels":
            value = {"x": KEYPOINT_AT[0], "y": KEYPOINT_AT[1], "width": 0.5, tool.kind: [tool.label]}
        else:
            x, y, w, h = RECTANGLE_AT
            value = {"x": x, "y": y, "width": w, "height": h, "rotation": 0, tool.kind: [tool.label]}
        results.append({"original_width": width, "original_height": height, "image_rotation": 0, "value": value,
                        "is_positive": True, "id": f"selftest{index}", "from_name": tool.name,
                        "to_name": tags.image_name, "type": tool.kind, "origin": "manual"})
    return {"result": results}


# ------------------------------------------------------------------ downloads

class _SameHostAuthorization(urllib.request.HTTPRedirectHandler):
    """Follow Label Studio's 303 to a presigned URL without the token, as requests does: the
    store refuses a request that carries a second authorization."""

    def redirect_request(self, request, fp, code, message, headers, new_url):
        redirected = super().redirect_request(request, fp, code, message, headers, new_url)
        if redirected is not None and urllib.parse.urlsplit(new_url).netloc != urllib.parse.urlsplit(
                request.full_url).netloc:
            redirected.remove_header("Authorization")
        return redirected


def download_opener() -> Opener:
    opener = urllib.request.build_opener(_SameHostAuthorization())

    def open_request(request: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
        try:
            with opener.open(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
    return open_request


def storage_uri(resolve_url: str) -> str | None:
    """The `s3://bucket/key` a task's resolve URL stands for (its base64 `fileuri`)."""
    encoded = urllib.parse.parse_qs(urllib.parse.urlsplit(resolve_url).query).get("fileuri", [None])[0]
    if not encoded:
        return None
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def presign_path(task_id: int, uri: str) -> str:
    """The URL form label-studio-sdk's get_local_path (the backend) downloads a storage object by."""
    return f"/tasks/{task_id}/presign/?fileuri={base64.urlsafe_b64encode(uri.encode()).decode()}"


# ------------------------------------------------------------------ the backend's own error

_DOWNLOAD_ERROR = re.compile(r"(\d{3}) (?:Client|Server) Error: (.*?) for url: (\S+)")
_DOWNLOAD_HINTS = {
    401: "the backend's LABEL_STUDIO_API_KEY is not a token Label Studio accepts",
    403: "refused: the store rejects the presigned URL, or the backend's token may not read the project",
    404: "not found: the object is gone, or the backend's LABEL_STUDIO_URL points at another Label Studio",
}


def describe_backend_error(detail: str) -> str:
    """The cause a backend's /predict error names, in one line."""
    download = _DOWNLOAD_ERROR.search(detail)
    if download:
        status = int(download.group(1))
        hint = _DOWNLOAD_HINTS.get(status, download.group(2))
        return f"the backend's image download got {status} {download.group(2)} from {download.group(3)} ({hint})"
    if "Task ID is required for cloud storage" in detail:
        return ("the backend image predates label-studio-ml-backend's task-aware downloads (April 2024): "
                "it cannot fetch cloud-storage images; use a current build")
    if "no access_token provided" in detail or "set LABEL_STUDIO_API_KEY" in detail:
        return "the backend has no Label Studio token (LABEL_STUDIO_API_KEY / LABEL_STUDIO_ACCESS_TOKEN)"
    if LOST_IMAGE_ERROR in detail:
        return (f"the backend's predictor lost its image to another request ({one_line(detail)[:120]}): "
                f"{SHARED_PREDICTOR}")
    return f"the backend failed: {one_line(detail)[:300]}"


# ------------------------------------------------------------------ one project


@dataclass(frozen=True)
class Sample:
    task: dict
    uri: str | None       # s3://bucket/key, or None for an image Label Studio holds itself
    path: str             # where the image is downloaded from, relative to Label Studio
    size: tuple[int, int] | None


class SamSelfTest:
    """Asks for interactive predictions of a SAM project and checks the masks."""

    def __init__(self, client: LabelStudioClient, sam_url: str, image_opener: Opener | None = None,
                 backend_opener: Opener | None = None, clock: Callable[[], float] = time.monotonic):
        self._client = client
        self._sam_url = sam_url.rstrip("/")
        self._download = image_opener or download_opener()
        self._backend = backend_opener or urllib_opener()
        self._clock = clock

    def run(self, project: dict, backend: dict, spec: ProjectSpec, report: Callable[[str], None],
            mode: str) -> None:
        label = f'project "{spec.title}": SAM self-test'
        try:
            outcome = self._test(project, backend, spec)
        except SelfTestFailure as failure:
            message = f"{label} failed: {failure}"
            if mode == SELF_TEST_WARN:
                report(f"{message} (warning only: sam.selfTest is warn)")
                return
            raise ReconcileError(message) from None
        report(f"{label}: {outcome}")

    def _test(self, project: dict, backend: dict, spec: ProjectSpec) -> str:
        tags = sam_tags(project.get("label_config") or spec.label_config)
        tasks = self._tasks(project["id"])
        if not tasks:
            return "no tasks yet; nothing to predict on (tested on the next run with tasks)"
        samples = [self._sample(task, tags) for task in tasks]
        # One at a time first: the backend downloads each image and computes its embedding.
        first = [self._predict(backend, sample, tags) for sample in samples]
        outcomes = [self._check(sample, answer, project, tags) for sample, (answer, _) in zip(samples, first)]
        slowest, rounds, started = 0.0, 0, self._clock()
        with ThreadPoolExecutor(max_workers=len(samples)) as pool:
            while rounds < SIMULTANEOUS_ROUNDS and self._clock() - started < ROUNDS_BUDGET_SECONDS:
                rounds += 1
                together = list(pool.map(lambda sample: self._predict(backend, sample, tags), samples))
                where = f"among {len(samples)} simultaneous clicks (round {rounds} of {SIMULTANEOUS_ROUNDS})"
                for sample, (answer, seconds) in zip(samples, together):
                    self._check(sample, answer, project, tags, where)
                    slowest = max(slowest, seconds)
        return (f"masks of each image's own size ({', '.join(outcomes)}); first click "
                f"{max(seconds for _, seconds in first):.2f} s (download and embedding), {len(samples)} simultaneous "
                f"clicks {rounds} times in {self._clock() - started:.1f} s, slowest {slowest:.2f} s")

    def _tasks(self, project_id: int) -> list[dict]:
        listing = self._client.get(f"/api/tasks/?project={project_id}&page_size={CONCURRENT_PREDICTIONS}")
        tasks = listing.get("tasks", []) if isinstance(listing, dict) else listing or []
        return tasks[:CONCURRENT_PREDICTIONS]

    def _sample(self, task: dict, tags: SamTags) -> Sample:
        reference = (task.get("data") or {}).get(tags.image_key)
        if not isinstance(reference, str) or not reference:
            raise SelfTestFailure(f"task {task['id']} has no data.{tags.image_key} to segment")
        uri = storage_uri(reference)
        path = presign_path(task["id"], uri) if uri else relative_api_path(reference)
        request = urllib.request.Request(self._client.base_url + path)
        request.add_header("Authorization", self._client.authorization)
        try:
            status, data = self._download(request, DOWNLOAD_TIMEOUT_SECONDS)
        except OSError as error:
            raise SelfTestFailure(f"Label Studio did not serve task {task['id']}'s image at "
                                  f"{self._client.base_url + path}: {one_line(str(error))}") from None
        if status >= 400:
            raise SelfTestFailure(f"Label Studio answered {status} for task {task['id']}'s image at "
                                  f"{self._client.base_url + path}" + (f" ({uri})" if uri else ""))
        return Sample(task, uri, path, image_size(data))

    def _predict(self, backend: dict, sample: Sample, tags: SamTags) -> tuple[object, float]:
        width, height = sample.size or (100, 100)
        started = self._clock()
        try:
            answer = self._client.post(f"/api/ml/{backend['id']}/interactive-annotating",
                                       {"task": sample.task["id"],
                                        "context": interactive_context(tags, width, height)},
                                       timeout=PREDICTION_TIMEOUT_SECONDS)
        except ApiError as error:
            answer = {"errors": [f"Label Studio answered {error.status}: {error.detail}"]}
        except (TimeoutError, socket.timeout):
            answer = {"errors": [f"Label Studio did not answer within {PREDICTION_TIMEOUT_SECONDS} s"]}
        except OSError as error:
            answer = {"errors": [f"Label Studio was unreachable: {one_line(str(error))}"]}
        return answer, self._clock() - started

    def _check(self, sample: Sample, answer: object, project: dict, tags: SamTags, where: str = "") -> str:
        """The image's size when `answer` is a mask of it; `where` says which simultaneous clicks it was among."""
        task_id = sample.task["id"]
        errors = answer.get("errors") if isinstance(answer, dict) else None
        if errors:
            raise SelfTestFailure(self._cause(one_line(" ".join(map(str, errors))), sample, project, tags, where))
        prediction = answer.get("data") if isinstance(answer, dict) else None
        results = prediction.get("result") if isinstance(prediction, dict) else None
        masks = [r for r in results or [] if isinstance(r, dict) and r.get("type") == "brushlabels"
                 and isinstance(r.get("value"), dict) and r["value"].get("format") == "rle"]
        if not masks:
            raise SelfTestFailure(f"empty result: the backend answered task {task_id} without a brush mask "
                                  f"({json.dumps(results)[:120] if results is not None else 'no result'})")
        try:
            count, _ = rle_values(masks[0]["value"].get("rle"))
        except ValueError as error:
            raise SelfTestFailure(f"task {task_id}'s mask is not a valid brush RLE: {error}") from None
        if sample.size is None:
            return f"task {task_id}: {count // RLE_CHANNELS} pixels, image size not read (neither PNG nor JPEG)"
        width, height = sample.size
        if count != width * height * RLE_CHANNELS:
            raise SelfTestFailure(
                f"task {task_id}'s mask has {count // RLE_CHANNELS} pixels but its image is {width}x{height} "
                f"({width * height}){f', {where}' if where else ''}: {SHARED_PREDICTOR}")
        return f"{width}x{height}"

    def _cause(self, error: str, sample: Sample, project: dict, tags: SamTags, where: str) -> str:
        """Label Studio's error, and for a failing backend the backend's own words."""
        if "timed out" in error.lower():
            return f"timeout: the backend did not answer in time ({error[:200]})"
        if "reserved network address" in error:
            return f"Label Studio's SSRF protection refuses the backend address {self._sam_url} ({error[:160]})"
        if "Max retries exceeded" in error or "Connection refused" in error or "Failed to establish" in error:
            return f"backend unreachable from Label Studio at {self._sam_url} ({error[:200]})"
        if "Server Error" in error and "/predict" in error:
            described = self._ask_backend(sample, project, tags)
            if not where:
                return described or f"the backend failed on /predict ({error[:200]})"
            # The same click alone got its mask before the rounds: what fails it is the company.
            return (f"task {sample.task['id']} {where}: " + (described or f"the backend failed on /predict "
                    f"({error[:120]}) where the same click alone got its mask: {SHARED_PREDICTOR}"))
        return f"Label Studio reports: {error[:300]}"

    def _ask_backend(self, sample: Sample, project: dict, tags: SamTags) -> str | None:
        """The request Label Studio sends to /predict, sent directly: the backend's error detail."""
        width, height = sample.size or (100, 100)
        task = {"id": sample.task["id"], "data": {**(sample.task.get("data") or {}),
                                                   tags.image_key: sample.uri or sample.path}}
        body = {"tasks": [task], "project": f"{project['id']}.0", "label_config": project.get("label_config"),
                "params": {"login": None, "password": None, "context": interactive_context(tags, width, height)}}
        request = urllib.request.Request(self._sam_url + "/predict", data=json.dumps(body).encode(), method="POST")
        request.add_header("Content-Type", "application/json")
        try:
            status, raw = self._backend(request, PREDICTION_TIMEOUT_SECONDS)
        except OSError:
            return None
        try:
            detail = json.loads(raw).get("detail") or raw.decode(errors="replace")
        except (ValueError, AttributeError):
            detail = raw.decode(errors="replace")
        return describe_backend_error(str(detail)) if status >= 400 else None
