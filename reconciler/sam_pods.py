"""Why the SAM backend's pods cannot start, read from their status and events.

While Label Studio refuses the SAM backend, the run looks at the pods of the SAM Deployment (by
the labels the stack passes in the desired state) through the Kubernetes API. A pod that cannot
pull its image, keeps crashing, cannot be configured or fits on no node never answers: the run
fails with that cause instead of retrying until its deadline. A pod still pulling its image or
loading its model (running, not ready) is not a failure: the startup probe owns that budget, and
a pod that outlives it is restarted by the kubelet and shows up here as a crash loop.

One look is a moment: a registry hiccup, a node the autoscaler is still adding, a container that
crashed once may all pass. A cause counts once the same kind of trouble shows on the same pod on
two looks at least CONFIRMATION_SECONDS apart. The backoff states (CrashLoopBackOff,
ImagePullBackOff) would be settled at once, but one rule for all causes is simpler to reason
about and costs half a minute against a deadline of about half an hour.
"""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Sequence

from reconciler.client import Opener, one_line
from reconciler.errors import ReconcileError
from reconciler.kubernetes_api import SERVICE_ACCOUNT_DIR, KubernetesApi

CONFIRMATION_SECONDS = 30

# The kinds of trouble; a cause is confirmed per pod and kind (ErrImagePull and ImagePullBackOff
# alternate while the kubelet retries: both are the same trouble).
IMAGE_PULL = "image pull"
CRASH_LOOP = "crash loop"
CONFIGURATION = "configuration"
UNSCHEDULABLE = "unschedulable"
# The waiting reasons of a container that does not start by itself, by kind. Any other reason
# (ContainerCreating, PodInitializing) is a container on its way.
WAITING_TROUBLE = {"ErrImagePull": IMAGE_PULL, "ImagePullBackOff": IMAGE_PULL, "InvalidImageName": IMAGE_PULL,
                   "CrashLoopBackOff": CRASH_LOOP, "CreateContainerConfigError": CONFIGURATION}
# The kubelet's event carrying a failed pull's error: ImagePullBackOff's own message names only
# the image ("Back-off pulling image ..."), the error itself is in this event.
PULL_FAILED_EVENT = "Failed"
PULL_FAILED_PREFIX = "Failed to pull image"
# What node autoscalers tell a pod the scheduler could not place: a node is on its way
# (cluster-autoscaler's TriggeredScaleUp, Karpenter's Nominated), or no node would fit it
# (cluster-autoscaler's NotTriggerScaleUp). A pod waiting for a new node is not failing.
NODE_COMING_EVENTS = ("TriggeredScaleUp", "Nominated")
NO_NODE_EVENTS = ("NotTriggerScaleUp",)
_NEVER = datetime.min.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class StartFailure:
    pod: str
    kind: str
    detail: str

    def line(self) -> str:
        return f"pod {self.pod}: {self.detail}"


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _event_time(event: dict) -> datetime:
    # Events written through events.k8s.io carry eventTime and no lastTimestamp.
    stamp = event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
    return datetime.fromisoformat(stamp) if stamp else _NEVER


def _latest(events: Sequence[dict], reasons: Sequence[str]) -> dict | None:
    matching = [event for event in events if event.get("reason") in reasons]
    return max(matching, key=_event_time, default=None)


def node_on_its_way(events: Sequence[dict]) -> bool:
    """Whether an autoscaler's latest word to the pod is that it adds a node for it."""
    coming, refused = _latest(events, NODE_COMING_EVENTS), _latest(events, NO_NODE_EVENTS)
    return coming is not None and (refused is None or _event_time(coming) >= _event_time(refused))


def _pull_error(events: Sequence[dict]) -> str | None:
    pulls = [event for event in events if (event.get("message") or "").startswith(PULL_FAILED_PREFIX)]
    latest = _latest(pulls, (PULL_FAILED_EVENT,))
    return one_line(latest["message"]) if latest else None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _container_trouble(container: dict, events: Sequence[dict]) -> tuple[str, str] | None:
    """(kind, detail) of a container that does not start by itself; None for one on its way."""
    waiting = (container.get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason") or ""
    kind = WAITING_TROUBLE.get(reason)
    name = container.get("name", "?")
    message = one_line(waiting.get("message") or "")
    if kind == IMAGE_PULL:
        return kind, f"image {container.get('image', '?')} cannot be pulled ({reason}): {_pull_error(events) or message}"
    if kind == CONFIGURATION:
        return kind, f"container {name} cannot be created ({reason}): {message}"
    if kind == CRASH_LOOP:
        last = (container.get("lastState") or {}).get("terminated") or {}
        detail = (f"container {name} keeps crashing ({reason}, {container.get('restartCount', 0)} restarts): "
                  f"last exit {last.get('reason', 'unknown')}, exit code {last.get('exitCode', '?')}")
        # The tail of its log, when the container declares FallbackToLogsOnError.
        final_words = _last_line(last.get("message") or "")
        return kind, f"{detail}: {final_words}" if final_words else detail
    return None


def _pod_name(pod: dict) -> str:
    return (pod.get("metadata") or {}).get("name", "?")


def start_failure(pod: dict, events: Sequence[dict]) -> StartFailure | None:
    """What keeps `pod` from starting, from its status and its events; None when nothing does
    (running, loading its model, pulling its image, waiting for a node an autoscaler adds)."""
    name = _pod_name(pod)
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if (condition.get("type") == "PodScheduled" and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"):
            if node_on_its_way(events):
                return None
            return StartFailure(name, UNSCHEDULABLE, f"unschedulable: {one_line(condition.get('message') or '')}")
    for container in status.get("containerStatuses") or []:
        trouble = _container_trouble(container, events)
        if trouble:
            return StartFailure(name, *trouble)
    return None


class SamPods:
    """The SAM Deployment's pods, looked at while Label Studio refuses the backend. Without a way to
    read them (no service-account token outside a cluster, a refused request) the run says so once
    and waits for the backend as it would without this."""

    def __init__(self, labels: Mapping[str, str], report: Callable[[str], None], connect: Callable[[], KubernetesApi],
                 clock: Callable[[], float] = time.monotonic):
        self.selector = label_selector(labels)
        self._report = report
        self._connect = connect
        self._clock = clock
        self._api: KubernetesApi | None = None
        self._watching = bool(labels)
        # (pod, kind) -> when that trouble was first seen.
        self._first_seen: dict[tuple[str, str], float] = {}

    @classmethod
    def in_pod(cls, labels: Mapping[str, str], report: Callable[[str], None], opener: Opener | None = None,
               service_account_dir: Path = SERVICE_ACCOUNT_DIR, api_server: str | None = None,
               clock: Callable[[], float] = time.monotonic) -> "SamPods":
        def connect() -> KubernetesApi:
            if not (service_account_dir / "token").exists():
                raise ReconcileError(f"no service-account token at {service_account_dir}")
            return KubernetesApi(opener, service_account_dir, api_server)
        return cls(labels, report, connect, clock)

    def start_failure(self) -> str | None:
        """The cause that has kept a SAM pod from starting for CONFIRMATION_SECONDS, as one line."""
        if not self._watching:
            return None
        try:
            failures = self._look()
        except (ReconcileError, OSError, ValueError) as error:
            self._watching = False
            self._report(f"SAM pods: not watched ({one_line(str(error))}); waiting for the backend until the deadline")
            return None
        now = self._clock()
        for failure in failures:
            first = self._first_seen.setdefault((failure.pod, failure.kind), now)
            if now - first >= CONFIRMATION_SECONDS:
                return failure.line()
        return None

    def _look(self) -> list[StartFailure]:
        if self._api is None:
            self._api = self._connect()
        api = self._api
        base = f"/api/v1/namespaces/{urllib.parse.quote(api.namespace)}"
        listed = api.send("GET", f"{base}/pods?labelSelector={urllib.parse.quote(self.selector)}",
                          f"pods {self.selector}")
        failures = []
        for pod in sorted(listed.get("items") or [], key=_pod_name):
            # A pod being deleted (the old ReplicaSet's, in a rollout) is not the one that has to start;
            # the events only refine trouble the status shows (the pull's error, a node on its way), so
            # a pod loading its model costs no second request.
            if (pod.get("metadata") or {}).get("deletionTimestamp") or start_failure(pod, ()) is None:
                continue
            name = _pod_name(pod)
            selector = urllib.parse.quote(f"involvedObject.kind=Pod,involvedObject.name={name}")
            events = api.send("GET", f"{base}/events?fieldSelector={selector}", f"events of pod {name}")
            failure = start_failure(pod, events.get("items") or [])
            if failure:
                failures.append(failure)
        return failures
