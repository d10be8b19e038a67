"""Label Studio itself (health, token), the projects, and the SAM backend of each project."""

from __future__ import annotations

import time
import urllib.parse
from typing import Callable

from reconciler.client import Deadline, LabelStudioClient, one_line
from reconciler.contract import SAM_SERVICE_NAME, ProjectSpec
from reconciler.errors import ApiError, ReconcileError

HEALTH_POLL_SECONDS = 3
ML_BACKEND_RETRY_SECONDS = 5
# The title marks the ML backends the reconciler manages, as it does its storages.
SAM_BACKEND_TITLE = "SAM (interactive, managed by the labeling reconciler)"
# Earlier releases titled it so; one on the platform's SAM Service is still ours.
LEGACY_SAM_BACKEND_TITLE = "SAM (interactive)"
ML_CONNECTED_STATE = "CO"


def wait_for_health(client: LabelStudioClient, deadline: Deadline, report: Callable[[str], None],
                    sleep: Callable[[float], None] = time.sleep) -> None:
    last_problem = "no answer yet"
    announced = False
    while True:
        try:
            status, answer = client.call("GET", "/health", timeout=min(10.0, max(deadline.remaining(), 1.0)))
            if status == 200 and isinstance(answer, dict) and answer.get("status") == "UP":
                report(f"label studio {client.base_url}: healthy")
                return
            last_problem = f"answered {status}"
        except ApiError as error:
            last_problem = f"answered {error.status}"
        except OSError as error:
            last_problem = one_line(str(getattr(error, "reason", error)))
        if deadline.expired():
            raise ReconcileError(
                f"Label Studio at {client.base_url} was not healthy within {deadline.seconds:.0f} s ({last_problem})")
        if not announced:
            report(f"label studio {client.base_url}: waiting for /health ({last_problem})")
            announced = True
        sleep(min(HEALTH_POLL_SECONDS, deadline.remaining()))


def check_token(client: LabelStudioClient) -> dict:
    try:
        return client.get("/api/current-user/whoami")
    except ApiError as error:
        if error.status == 401:
            raise ReconcileError(
                f"Label Studio rejected the API token (401: {error.detail}); check LABEL_STUDIO_API_KEY "
                "and that LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true") from None
        raise


def list_projects(client: LabelStudioClient) -> list[dict]:
    return client.get_all_pages("/api/projects/?page_size=100")


def find_project(projects: list[dict], title: str) -> dict | None:
    # Label Studio stores titles trimmed; the exact (trimmed) title decides.
    return next((project for project in projects if (project.get("title") or "").strip() == title.strip()), None)


# How Label Studio's field names read in a message.
FIELD_NAMES = {"label_config": "label config", "title": "title"}


def ensure_project(client: LabelStudioClient, spec: ProjectSpec, existing: list[dict],
                   report: Callable[[str], None]) -> dict:
    project = find_project(existing, spec.title)
    try:
        if project is None:
            project = client.post("/api/projects/", {"title": spec.title, "label_config": spec.label_config})
            report(f'project "{spec.title}": created (id {project["id"]})')
        elif normalise_label_config(project.get("label_config") or "") != normalise_label_config(spec.label_config):
            project = client.patch(f"/api/projects/{project['id']}/", {"label_config": spec.label_config})
            report(f'project "{spec.title}": label config updated (id {project["id"]})')
        else:
            report(f'project "{spec.title}": unchanged (id {project["id"]})')
    except ApiError as error:
        if error.status == 400:
            refused = " and ".join(FIELD_NAMES.get(field, field) for field in error.fields) or "project"
            raise ReconcileError(f'project "{spec.title}": Label Studio refused the {refused}: {error.detail}') from None
        raise
    return project


def normalise_label_config(config: str) -> str:
    """Label Studio keeps the text it was given; compare ignoring only surrounding whitespace."""
    return config.strip()


def _same_url(left: str, right: str) -> bool:
    return left.rstrip("/") == right.rstrip("/")


def is_managed_backend(backend: dict) -> bool:
    """An ML backend this reconciler added, known by its title; one a person added by hand
    has a title of their own."""
    if backend.get("title") == SAM_BACKEND_TITLE:
        return True
    host = urllib.parse.urlsplit(backend.get("url") or "").hostname or ""
    return backend.get("title") == LEGACY_SAM_BACKEND_TITLE and host.split(".")[0] == SAM_SERVICE_NAME


def remove_sam_backends(client: LabelStudioClient, project: dict, spec: ProjectSpec,
                        report: Callable[[str], None]) -> None:
    """A project that no longer asks for SAM (or SAM switched off) loses the backend the
    reconciler added, and keeps any a person added."""
    for backend in client.get(f"/api/ml/?project={project['id']}"):
        if is_managed_backend(backend):
            client.call("DELETE", f"/api/ml/{backend['id']}")
            report(f'project "{spec.title}": ml backend {backend["url"]}: removed (id {backend["id"]}, '
                   "SAM is not wanted any more)")


def ensure_sam_backend(client: LabelStudioClient, project: dict, sam_url: str, spec: ProjectSpec,
                       deadline: Deadline, report: Callable[[str], None],
                       sleep: Callable[[float], None] = time.sleep,
                       pods_failure: Callable[[], str | None] = lambda: None) -> dict:
    """Connect the SAM backend for interactive pre-annotation. Label Studio calls the backend's
    /health and /setup before it accepts it, and SAM answers only once its model is loaded, so
    refusals are retried until the deadline; unless `pods_failure` names a cause that keeps the
    backend's pods from starting (reconciler/sam_pods.py): then no answer is coming."""
    label = f'project "{spec.title}": ml backend {sam_url}'
    # Only a backend the reconciler manages is updated; one added by hand is left as it is.
    managed = [item for item in client.get(f"/api/ml/?project={project['id']}") if is_managed_backend(item)]
    current = next((item for item in managed if _same_url(item.get("url", ""), sam_url)), managed[0] if managed else None)
    wanted = {"is_interactive": True, "url": sam_url, "title": SAM_BACKEND_TITLE}
    if current is not None:
        if (current.get("is_interactive") and current.get("state") == ML_CONNECTED_STATE
                and current.get("title") == SAM_BACKEND_TITLE):
            report(f"{label}: unchanged (id {current['id']}, connected, interactive)")
            return current
        request = ("PATCH", f"/api/ml/{current['id']}", wanted)
        action = "reconnected"
    else:
        request = ("POST", "/api/ml/", {"project": project["id"], **wanted})
        action = "created"
    announced = False
    while True:
        try:
            _, backend = client.call(*request)
            if backend.get("state") == ML_CONNECTED_STATE:
                report(f"{label}: {action} (id {backend['id']}, interactive)")
                return backend
            problem = backend.get("error_message") or f"state {backend.get('readable_state')}"
            # The record exists now: further attempts re-validate it instead of adding another.
            request = ("PATCH", f"/api/ml/{backend['id']}", wanted)
        except ApiError as error:
            if error.status != 400:
                raise
            problem = error.detail
        cause = pods_failure()
        if cause:
            raise ReconcileError(f"{label}: SAM pods cannot start: {cause}")
        if deadline.expired():
            raise ReconcileError(f"{label}: not healthy before the deadline: {problem}")
        if not announced:
            report(f"{label}: waiting for the backend to answer healthy ({problem[:160]})")
            announced = True
        sleep(min(ML_BACKEND_RETRY_SECONDS, deadline.remaining()))


# Label Studio asks the backend for a prediction as a labeler opens a task that has none from
# the backend's model version: on opening it (the Data Manager) when show_collab_predictions is
# on, and in the labeling stream when the project's model_version also names the backend (by
# its title). The platform's SAM server answers at once and embeds the image in the background,
# so the labeler's first click costs one decoder pass.
PREDICTION_ON_OPEN = {"show_collab_predictions": True, "model_version": SAM_BACKEND_TITLE}


def ensure_prediction_on_open(client: LabelStudioClient, project: dict, spec: ProjectSpec,
                              report: Callable[[str], None]) -> None:
    current = client.get(f"/api/projects/{project['id']}/")
    changes = {name: value for name, value in PREDICTION_ON_OPEN.items() if current.get(name) != value}
    if changes:
        client.patch(f"/api/projects/{project['id']}/", changes)
        report(f'project "{spec.title}": SAM warm-up on task open: set {", ".join(sorted(changes))}')
