"""Why the SAM pods cannot start, named by the run while Label Studio refuses the backend: the
statuses and events each cause produces, from a Kubernetes API stand-in, on a fake clock."""

from __future__ import annotations

import functools
import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Mapping

import pytest

from components.sam_backend import SAM_LABELS
from reconciler import reconcile as reconcile_module
from reconciler.client import Deadline, LabelStudioClient
from reconciler.contract import ProjectSpec, RunEnvironment, parse_desired_state
from reconciler.errors import ReconcileError
from reconciler.projects import ML_BACKEND_RETRY_SECONDS, ensure_sam_backend
from reconciler.sam_pods import CONFIRMATION_SECONDS, SamPods, label_selector, node_on_its_way
from reconciler.sam_selftest import SamSelfTest
from tests.sam_fakes import SAM_CONFIG
from tests.test_reconciler_unit import FakeClock, FakeLabelStudio, desired, reachable_s3

# The Job's deadline: the Job's 1,800 s less the minute components/reconciler_pods.py keeps back.
JOB_DEADLINE_SECONDS = 1740
POD = "sam-backend-6d5f7c9b8-x2x7q"
IMAGE = "heartexlabs/label-studio-ml-backend:sam-mastr"
SAM_URL = "http://sam:9090"
LABEL = f'project "SAM": ml backend {SAM_URL}'


# ---------------------------------------------------------------- pods as the API server shows them

def pod(*containers: dict, conditions: tuple[dict, ...] = (), name: str = POD, deleting: bool = False) -> dict:
    metadata = {"name": name, "namespace": "labeling", "labels": {**SAM_LABELS, "pod-template-hash": "6d5f7c9b8"}}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-07T10:00:00Z"
    return {"metadata": metadata,
            "status": {"phase": "Pending", "conditions": list(conditions), "containerStatuses": list(containers)}}


def container(state: dict, restarts: int = 0, last: dict | None = None) -> dict:
    return {"name": "sam", "image": IMAGE, "imageID": "", "ready": False, "started": False, "restartCount": restarts,
            "state": state, "lastState": {"terminated": last} if last else {}}


def waiting(reason: str, message: str = "", **more) -> dict:
    return container({"waiting": {"reason": reason, "message": message}}, **more)


RUNNING_NOT_READY = container({"running": {"startedAt": "2026-12-07T10:00:00Z"}})
PULL_ERROR = (f'rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/{IMAGE}": '
              f'failed to resolve reference "docker.io/{IMAGE}": docker.io/{IMAGE}: not found')
ERR_IMAGE_PULL = waiting("ErrImagePull", PULL_ERROR)
IMAGE_PULL_BACK_OFF = waiting("ImagePullBackOff", f'Back-off pulling image "{IMAGE}"')
PULLING = waiting("ContainerCreating")
TRACEBACK = ("Traceback (most recent call last):\n  File \"/app/model.py\", line 41, in <module>\n"
             "    predictor.set_image(image)\nRuntimeError: CUDA error: no kernel image is available for execution on "
             "the device\n\n")
CRASH_LOOP = waiting("CrashLoopBackOff", f"back-off 40s restarting failed container=sam pod={POD}_labeling(uid)",
                     restarts=3, last={"exitCode": 1, "reason": "Error", "message": TRACEBACK})
OOM_LOOP = waiting("CrashLoopBackOff", "back-off 20s restarting failed container", restarts=2,
                   last={"exitCode": 137, "reason": "OOMKilled"})
MISSING_KEY = waiting("CreateContainerConfigError",
                      'couldn\'t find key admin-api-token in Secret labeling/label-studio-platform-secrets')
NO_GPU = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: " \
         "3 No preemption victims found for incoming pod."
NO_MATCHING_NODE = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: " \
                   "0/3 nodes are available: 3 Preemption is not helpful for scheduling."


def unschedulable(message: str) -> dict:
    return {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}


def event(reason: str, message: str, at: str = "2026-12-07T10:00:05Z") -> dict:
    return {"involvedObject": {"kind": "Pod", "name": POD}, "reason": reason, "message": message,
            "type": "Warning", "lastTimestamp": at}


PULL_EVENTS = [event("Pulling", f'Pulling image "{IMAGE}"'),
               event("Failed", f'Failed to pull image "{IMAGE}": {PULL_ERROR}'), event("Failed", "Error: ErrImagePull"),
               event("BackOff", f'Back-off pulling image "{IMAGE}"'), event("Failed", "Error: ImagePullBackOff")]
SCALE_UP = event("TriggeredScaleUp", "pod triggered scale-up: [{eks-gpu-a10 0->1 (max: 2)}]", "2026-12-07T10:00:10Z")
NO_SCALE_UP = event("NotTriggerScaleUp", "pod didn't trigger scale-up: 1 node(s) didn't match Pod's node "
                                         "affinity/selector", "2026-12-07T10:00:40.123456Z")


class FakeCluster:
    """The API server of namespace "labeling" as the run's service account reads it: each look at
    the pods asks `pods(now)`, so a pod's status can change as the fake clock runs."""

    def __init__(self, clock: FakeClock, pods: Callable[[float], list[dict]],
                 events: Mapping[str, list[dict]] | None = None, forbidden: bool = False):
        self.clock, self.pods, self.events, self.forbidden = clock, pods, events or {}, forbidden
        self.requests: list[str] = []

    def __call__(self, request: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
        self.requests.append(request.full_url)
        assert request.get_method() == "GET" and request.get_header("Authorization") == "Bearer service-account-jwt"
        if self.forbidden:
            return 403, json.dumps({"kind": "Status", "reason": "Forbidden", "code": 403, "message": (
                'pods is forbidden: User "system:serviceaccount:labeling:labeling-reconciler" cannot list resource '
                '"pods" in API group "" in the namespace "labeling"')}).encode()
        url = urllib.parse.urlsplit(request.full_url)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/api/v1/namespaces/labeling/pods":
            wanted = dict(pair.split("=", 1) for pair in query["labelSelector"].split(","))
            items = [item for item in self.pods(self.clock.now) if wanted.items() <= item["metadata"]["labels"].items()]
        elif url.path == "/api/v1/namespaces/labeling/events":
            fields = dict(pair.split("=", 1) for pair in query["fieldSelector"].split(","))
            assert fields["involvedObject.kind"] == "Pod"
            items = self.events.get(fields["involvedObject.name"], [])
        else:
            return 404, b'{"kind":"Status","code":404,"message":"not found"}'
        return 200, json.dumps({"kind": "List", "items": items}).encode()


@pytest.fixture
def service_account(tmp_path) -> Path:
    (tmp_path / "token").write_text("service-account-jwt\n")
    (tmp_path / "namespace").write_text("labeling\n")
    return tmp_path


def refusing_label_studio(refusals: int = 10**6) -> LabelStudioClient:
    fake = FakeLabelStudio()
    fake.ml_refusals_left = refusals
    return LabelStudioClient("http://ls", "good-token", fake)


def connect_sam(client: LabelStudioClient, clock: FakeClock, pods: SamPods, lines: list[str]) -> dict:
    return ensure_sam_backend(client, {"id": 7}, SAM_URL, ProjectSpec("SAM", SAM_CONFIG, "p", "", True),
                              Deadline(JOB_DEADLINE_SECONDS, clock), lines.append, clock.sleep, pods.start_failure)


def watching(service_account: Path, clock: FakeClock, pods: Callable[[float], list[dict]],
             events: Mapping[str, list[dict]] | None = None, lines: list[str] | None = None,
             forbidden: bool = False) -> tuple[SamPods, FakeCluster]:
    cluster = FakeCluster(clock, pods, events, forbidden)
    report = (lines if lines is not None else []).append
    return SamPods.in_pod(SAM_LABELS, report, cluster, service_account, "https://k", clock), cluster


# ---------------------------------------------------------------- each cause, within a minute

CAUSES = {
    # ErrImagePull and ImagePullBackOff alternate while the kubelet retries: one trouble.
    "image pull": (lambda now: [pod(ERR_IMAGE_PULL if now < 10 else IMAGE_PULL_BACK_OFF)], PULL_EVENTS,
                   f"image {IMAGE} cannot be pulled (ImagePullBackOff): Failed to pull image \"{IMAGE}\": {PULL_ERROR}"),
    # Between crashes the container runs a while: the same trouble seen again confirms it.
    "crash loop": (lambda now: [pod(CRASH_LOOP if now % 30 < 10 else RUNNING_NOT_READY)], [],
                   "container sam keeps crashing (CrashLoopBackOff, 3 restarts): last exit Error, exit code 1: "
                   "RuntimeError: CUDA error: no kernel image is available for execution on the device"),
    "crash loop without a message": (lambda now: [pod(OOM_LOOP)], [],
                                     "container sam keeps crashing (CrashLoopBackOff, 2 restarts): last exit "
                                     "OOMKilled, exit code 137"),
    "no GPU free": (lambda now: [pod(conditions=(unschedulable(NO_GPU),))],
                    [event("FailedScheduling", NO_GPU)], f"unschedulable: {NO_GPU}"),
    # The autoscaler's latest word: no node it could add would fit either.
    "no node matches": (lambda now: [pod(conditions=(unschedulable(NO_MATCHING_NODE),))], [SCALE_UP, NO_SCALE_UP],
                        f"unschedulable: {NO_MATCHING_NODE}"),
    "missing Secret key": (lambda now: [pod(MISSING_KEY)], [],
                           "container sam cannot be created (CreateContainerConfigError): couldn't find key "
                           "admin-api-token in Secret labeling/label-studio-platform-secrets"),
}


@pytest.mark.parametrize("cause", CAUSES)
def test_a_pod_that_cannot_start_fails_the_wait_with_its_cause_once_confirmed(cause, service_account):
    pods, events, detail = CAUSES[cause]
    clock, lines = FakeClock(), []
    watch, _ = watching(service_account, clock, pods, {POD: events}, lines)
    with pytest.raises(ReconcileError) as failed:
        connect_sam(refusing_label_studio(), clock, watch, lines)
    assert str(failed.value) == f"{LABEL}: SAM pods cannot start: pod {POD}: {detail}"
    assert "\n" not in str(failed.value)
    # Seen first on the first refusal, again half a minute later: not at the deadline.
    assert clock.now == CONFIRMATION_SECONDS == 30
    assert [line for line in lines if "SAM pods" in line] == []


# ---------------------------------------------------------------- on its way is not a failure

def _connected_after(seconds: int, service_account: Path, pods, events=None
                     ) -> tuple[list[str], FakeClock, FakeCluster]:
    clock, lines = FakeClock(), []
    watch, cluster = watching(service_account, clock, pods, events, lines)
    backend = connect_sam(refusing_label_studio(seconds // ML_BACKEND_RETRY_SECONDS), clock, watch, lines)
    assert backend["state"] == "CO" and cluster.requests, "the pods were looked at"
    return lines, clock, cluster


def test_a_pod_pulling_its_image_then_loading_its_model_is_waited_for(service_account):
    # The old ReplicaSet's pod, crash-looping while it is deleted, is not the one that has to start.
    leaving = pod(CRASH_LOOP, name="sam-backend-5c4b3a291-old00", deleting=True)
    lines, clock, cluster = _connected_after(
        300, service_account, lambda now: [leaving, pod(PULLING if now < 60 else RUNNING_NOT_READY)])
    assert clock.now == 300
    assert lines[-1] == f"{LABEL}: created (id 1, interactive)"
    assert not any("/events" in url for url in cluster.requests), "events are read only for trouble"


def test_a_pull_that_fails_once_and_then_succeeds_is_waited_for(service_account):
    _, clock, _ = _connected_after(
        120, service_account, lambda now: [pod(ERR_IMAGE_PULL if now < 5 else RUNNING_NOT_READY)], {POD: PULL_EVENTS})
    assert clock.now == 120


def test_a_pod_waiting_for_the_node_an_autoscaler_adds_is_waited_for(service_account):
    _, clock, _ = _connected_after(
        420, service_account,
        lambda now: [pod(conditions=(unschedulable(NO_GPU),)) if now < 300 else pod(RUNNING_NOT_READY)],
        {POD: [event("FailedScheduling", NO_GPU), SCALE_UP]})
    assert clock.now == 420


def test_the_autoscalers_latest_word_decides_whether_a_node_is_coming():
    assert node_on_its_way([event("FailedScheduling", NO_GPU), SCALE_UP])
    assert not node_on_its_way([SCALE_UP, NO_SCALE_UP])
    assert node_on_its_way([NO_SCALE_UP, event("Nominated", "Pod should schedule on: nodeclaim/gpu-x", "2026-12-07T10:01:00Z")])
    # Events written through events.k8s.io carry eventTime (microseconds) and no lastTimestamp.
    assert not node_on_its_way([SCALE_UP, {**NO_SCALE_UP, "lastTimestamp": None, "eventTime": "2026-12-07T10:00:11.5Z"}])
    assert not node_on_its_way([event("FailedScheduling", NO_GPU)])


# ---------------------------------------------------------------- no way to read the pods

def test_without_a_service_account_token_the_wait_goes_on_as_before_and_says_so_once(tmp_path):
    clock, lines = FakeClock(), []
    watch = SamPods.in_pod(SAM_LABELS, lines.append, service_account_dir=tmp_path / "none", clock=clock)
    with pytest.raises(ReconcileError, match=r"not healthy before the deadline: non_field_errors: Can't connect"):
        connect_sam(refusing_label_studio(), clock, watch, lines)
    assert clock.now == JOB_DEADLINE_SECONDS
    assert [line for line in lines if line.startswith("SAM pods")] == [
        f"SAM pods: not watched (no service-account token at {tmp_path / 'none'}); waiting for the backend until "
        "the deadline"]


def test_a_refused_pod_list_is_reported_once_and_not_asked_again(service_account):
    clock, lines = FakeClock(), []
    watch, cluster = watching(service_account, clock, lambda now: [pod(OOM_LOOP)], lines=lines, forbidden=True)
    with pytest.raises(ReconcileError, match=r"not healthy before the deadline"):
        connect_sam(refusing_label_studio(), clock, watch, lines)
    assert len(cluster.requests) == 1
    [line] = [line for line in lines if line.startswith("SAM pods")]
    assert line.startswith(f"SAM pods: not watched (pods {label_selector(SAM_LABELS)}: GET answered 403: pods is "
                           'forbidden: User "system:serviceaccount:labeling:labeling-reconciler" cannot list')


def test_a_run_finds_the_pods_by_the_labels_in_its_state(tmp_path):
    """The run builds its look at the pods from the state and its service account (here: none)."""
    fake, clock, lines = FakeLabelStudio({"fruit": 2}), FakeClock(), []
    fake.ml_refusals_left = 2
    state = parse_desired_state(_sam_document())
    assert state.sam_pod_labels == SAM_LABELS
    client = LabelStudioClient("http://label-studio:80", "good-token", fake)
    reconcile_module.reconcile(state, client, RunEnvironment(), report=lines.append, s3_opener=reachable_s3,
                               service_account_dir=tmp_path, sleep=clock.sleep,
                               sam_self_test=SamSelfTest(client, SAM_URL, image_opener=fake,
                                                         backend_opener=fake.sam.backend))
    assert f"SAM pods: not watched (no service-account token at {tmp_path}); waiting for the backend until " \
           "the deadline" in lines
    assert f"{LABEL}: created (id 4, interactive)" in lines


# ---------------------------------------------------------------- the Job's one line

def _sam_document() -> dict:
    project = {"title": "SAM", "labelConfig": SAM_CONFIG, "prefix": "fruit", "regexFilter": "", "sam": True}
    return {**desired(projects=[project], sam_url=SAM_URL), "samPodLabels": dict(SAM_LABELS)}


def test_the_cause_is_the_jobs_one_line_on_stderr(monkeypatch, capsys, tmp_path, service_account):
    fake, clock = FakeLabelStudio({"fruit": 2}), FakeClock()
    fake.ml_refusals_left = 10**6
    watch, _ = watching(service_account, clock, lambda now: [pod(OOM_LOOP)])
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://label-studio:80")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "good-token")
    for variable in ("TEAM_SECRET_NAME", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MEMBER_PASSWORDS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(reconcile_module, "client_from_environment",
                        lambda environ: LabelStudioClient(environ["LABEL_STUDIO_URL"], "good-token", fake))
    monkeypatch.setattr(reconcile_module, "reconcile", functools.partial(
        reconcile_module.reconcile, s3_opener=reachable_s3, sam_pods=watch, sleep=clock.sleep))
    state_file = tmp_path / "desired.json"
    state_file.write_text(json.dumps(_sam_document()))
    assert reconcile_module.main([str(state_file)]) == 1
    out, err = capsys.readouterr()
    assert err == (f"reconcile failed: {LABEL}: SAM pods cannot start: pod {POD}: container sam keeps crashing "
                   "(CrashLoopBackOff, 2 restarts): last exit OOMKilled, exit code 137\n")
    assert f"{LABEL}: waiting for the backend to answer healthy" in out and "Traceback" not in out + err


def test_sam_pod_labels_that_are_not_label_values_are_refused():
    with pytest.raises(ReconcileError, match=r"^desired state: samPodLabels is not an object of label -> value$"):
        parse_desired_state({**_sam_document(), "samPodLabels": ["app.kubernetes.io/name=sam-backend"]})
