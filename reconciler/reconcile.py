"""Bring a Label Studio instance to a desired state: projects, S3 storages, SAM backend, team access.

Runs as `python /reconciler/reconcile.py /state/desired.json` in a plain python image, so it
uses the standard library only. Every action and every no-op prints one line; a failure
prints one line naming the problem and exits non-zero. Running it twice changes nothing
the second time. API paths and payloads follow Label Studio 1.23.2's source.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

DEFAULT_DEADLINE_SECONDS = 1500
REQUEST_TIMEOUT_SECONDS = 60
HEALTH_POLL_SECONDS = 3
SYNC_POLL_SECONDS = 2
SYNC_PROGRESS_EVERY_SECONDS = 10
ML_BACKEND_RETRY_SECONDS = 5
S3_PROBE_TIMEOUT_SECONDS = 10

# Storages are matched by title, so the reconciler can rename prefixes in place and never
# touches storages a person added by hand.
SOURCE_STORAGE_TITLE = "Source images (managed by the labeling reconciler)"
EXPORT_STORAGE_TITLE = "Annotation export (managed by the labeling reconciler)"
SAM_BACKEND_TITLE = "SAM (interactive)"

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TEAM_SECRET_KEY = "invite-url"

SYNC_DONE_STATUSES = {"completed", "completed_with_errors", "failed"}
ML_CONNECTED_STATE = "CO"


class ReconcileError(Exception):
    """A failure the operator can act on; its text is the one-line reason printed on exit."""


class ApiError(ReconcileError):
    def __init__(self, method: str, path: str, status: int, detail: str):
        self.method, self.path, self.status, self.detail = method, path, status, detail
        super().__init__(f"{method} {path} answered {status}: {detail}")


# ---------------------------------------------------------------- desired state

@dataclass(frozen=True)
class StorageSpec:
    bucket: str
    region: str
    endpoint: str | None
    presign: bool
    presign_ttl_minutes: int


@dataclass(frozen=True)
class ProjectSpec:
    title: str
    label_config: str
    prefix: str
    regex_filter: str
    sam: bool


@dataclass(frozen=True)
class DesiredState:
    storage: StorageSpec
    export_prefix: str
    sam_url: str | None
    projects: tuple[ProjectSpec, ...]
    members: tuple[str, ...]


def _require(mapping: dict, key: str, where: str):
    if key not in mapping or mapping[key] in (None, ""):
        raise ReconcileError(f"desired state: {where}.{key} is missing")
    return mapping[key]


def parse_desired_state(document: dict) -> DesiredState:
    """Validate the JSON document written by the stack and turn it into typed values."""
    if not isinstance(document, dict):
        raise ReconcileError("desired state: the document must be a JSON object")
    storage = _require(document, "storage", "state")
    storage_spec = StorageSpec(
        bucket=_require(storage, "bucket", "storage"),
        region=_require(storage, "region", "storage"),
        endpoint=(storage.get("endpoint") or None),
        presign=bool(storage.get("presign", True)),
        presign_ttl_minutes=int(storage.get("presignTtlMinutes", 60)),
    )
    sam_url = document.get("samUrl") or None
    projects = []
    titles_seen = set()
    for index, project in enumerate(document.get("projects") or []):
        where = f"projects[{index}]"
        title = _require(project, "title", where)
        if title in titles_seen:
            raise ReconcileError(f"desired state: project title {title!r} appears twice")
        titles_seen.add(title)
        wants_sam = bool(project.get("sam", False))
        if wants_sam and not sam_url:
            raise ReconcileError(f"desired state: project {title!r} wants SAM but samUrl is not set")
        projects.append(ProjectSpec(
            title=title,
            label_config=_require(project, "labelConfig", where),
            prefix=str(project.get("prefix") or "").strip("/"),
            regex_filter=project.get("regexFilter") or "",
            sam=wants_sam,
        ))
    return DesiredState(
        storage=storage_spec,
        export_prefix=str(document.get("exportPrefix") or "label-studio/exports").strip("/"),
        sam_url=sam_url,
        projects=tuple(projects),
        members=tuple(document.get("members") or ()),
    )


def credential(environ: dict[str, str], name: str) -> str | None:
    """A credential from `NAME`, or from the file `NAME_FILE` names (a mounted Secret key)."""
    path = environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as error:
            raise ReconcileError(f"cannot read {name} from {path}: {error.strerror}") from None
    return environ.get(name) or None


@dataclass(frozen=True)
class Settings:
    """What the Job's environment supplies besides the desired state."""

    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    team_secret_name: str | None = None
    public_url: str | None = None
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS

    @classmethod
    def from_environment(cls, environ: dict[str, str]) -> "Settings":
        deadline_text = environ.get("RECONCILER_TIMEOUT_SECONDS") or str(DEFAULT_DEADLINE_SECONDS)
        try:
            deadline = float(deadline_text)
        except ValueError:
            raise ReconcileError(f"RECONCILER_TIMEOUT_SECONDS={deadline_text!r} is not a number") from None
        key_id = credential(environ, "AWS_ACCESS_KEY_ID")
        secret = credential(environ, "AWS_SECRET_ACCESS_KEY")
        if bool(key_id) != bool(secret):
            raise ReconcileError("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither")
        return cls(aws_access_key_id=key_id, aws_secret_access_key=secret,
                   team_secret_name=environ.get("TEAM_SECRET_NAME") or None,
                   public_url=environ.get("LABEL_STUDIO_PUBLIC_URL") or None,
                   deadline_seconds=deadline)


class Deadline:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._ends_at = clock() + seconds
        self.seconds = seconds

    def remaining(self) -> float:
        return max(0.0, self._ends_at - self._clock())

    def expired(self) -> bool:
        return self.remaining() <= 0


# ---------------------------------------------------------------- pure helpers

def project_slug(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return slug or "project"


def export_prefix_for(export_prefix: str, title: str) -> str:
    return f"{export_prefix.strip('/')}/{project_slug(title)}".lstrip("/")


def credentials_fingerprint(key_id: str | None, secret: str | None) -> str:
    """Label Studio never returns stored keys, so a digest kept in the storage's description
    is how a later run tells whether the keys changed. It reveals nothing about the secret."""
    if not key_id:
        return "credentials: workload identity"
    digest = hashlib.sha256(f"{key_id}\0{secret}".encode()).hexdigest()[:16]
    return f"credentials: sha256:{digest}"


def s3_probe_url(storage: StorageSpec) -> str:
    """A URL on the S3 endpoint that any S3 implementation answers, even unsigned (with 403)."""
    if storage.endpoint:
        return f"{storage.endpoint.rstrip('/')}/{urllib.parse.quote(storage.bucket)}"
    return f"https://{storage.bucket}.s3.{storage.region}.amazonaws.com/"


def _storage_payload(state: DesiredState, settings: Settings, title: str, prefix: str) -> dict:
    """What import and export storages share: where the bucket is and how to reach it."""
    storage = state.storage
    payload = {
        "title": title,
        # Label Studio never returns stored keys: the fingerprint tells a later run they changed.
        "description": credentials_fingerprint(settings.aws_access_key_id, settings.aws_secret_access_key),
        "bucket": storage.bucket,
        "prefix": prefix,
        "region_name": storage.region,
        "s3_endpoint": storage.endpoint or "",
    }
    if settings.aws_access_key_id:
        payload["aws_access_key_id"] = settings.aws_access_key_id
        payload["aws_secret_access_key"] = settings.aws_secret_access_key
    return payload


def import_storage_payload(state: DesiredState, project: ProjectSpec, settings: Settings) -> dict:
    return {
        **_storage_payload(state, settings, SOURCE_STORAGE_TITLE, project.prefix),
        "regex_filter": project.regex_filter,
        "use_blob_urls": True,  # each image object becomes one task; no task JSON files
        "presign": state.storage.presign,
        "presign_ttl": state.storage.presign_ttl_minutes,
        "recursive_scan": True,
    }


def export_storage_payload(state: DesiredState, project: ProjectSpec, settings: Settings) -> dict:
    return _storage_payload(state, settings, EXPORT_STORAGE_TITLE,
                            export_prefix_for(state.export_prefix, project.title))


CREDENTIAL_FIELDS = ("aws_access_key_id", "aws_secret_access_key")


def _comparable(value):
    # Label Studio stores an empty optional text field as null or "" depending on the path.
    return "" if value is None else value


def changed_fields(desired: dict, actual: dict) -> list[str]:
    """Fields of `desired` whose value differs from `actual`; write-only keys are compared
    through the fingerprint in the description instead."""
    return sorted(name for name, value in desired.items()
                  if name not in CREDENTIAL_FIELDS and _comparable(actual.get(name)) != _comparable(value))


def patch_for(desired: dict, changed: list[str]) -> dict:
    patch = {name: desired[name] for name in changed}
    if "description" in changed:  # the keys themselves changed: send them
        patch.update({name: desired[name] for name in CREDENTIAL_FIELDS if name in desired})
    return patch


def normalise_label_config(config: str) -> str:
    """Label Studio keeps the text it was given; compare ignoring only surrounding whitespace."""
    return config.strip()


def describe_error_body(body: bytes) -> str:
    """The human part of a Label Studio error answer: validation texts first, then detail."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        document = json.loads(text)
    except ValueError:
        return _one_line(text)[:300] or "(empty answer)"
    if isinstance(document, dict):
        validation = document.get("validation_errors")
        if validation:
            return _one_line(_flatten_messages(validation))
        for key in ("detail", "error", "message"):
            if document.get(key):
                return _one_line(str(document[key]))
    return _one_line(_flatten_messages(document))[:300]


def _flatten_messages(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{key}: {_flatten_messages(item)}" for key, item in value.items())
    if isinstance(value, list):
        return "; ".join(_flatten_messages(item) for item in value)
    return str(value)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def relative_api_path(next_url: str) -> str:
    """Pagination links are absolute and may carry Label Studio's own host name: keep path+query."""
    parts = urllib.parse.urlsplit(next_url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def absolute_invite_url(base_url: str, invite_path: str) -> str:
    return urllib.parse.urljoin(base_url.rstrip("/") + "/", invite_path.lstrip("/"))


# ---------------------------------------------------------------- HTTP

# An opener takes a prepared request and a timeout and returns (status, body); HTTP error
# statuses are returned, not raised, and network failures raise OSError.
Opener = Callable[[urllib.request.Request, float], tuple[int, bytes]]


def urllib_opener(context: ssl.SSLContext | None = None) -> Opener:
    def open_request(request: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
    return open_request


class LabelStudioClient:
    def __init__(self, base_url: str, token: str, opener: Opener | None = None):
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._open = opener or urllib_opener()

    def call(self, method: str, path: str, body: dict | None = None,
             timeout: float = REQUEST_TIMEOUT_SECONDS) -> tuple[int, object]:
        """Send one request; returns (status, decoded JSON or None). Network errors raise OSError."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Authorization", f"Token {self._token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        status, raw = self._open(request, timeout)
        if status >= 400:
            raise ApiError(method, path.split("?")[0], status, describe_error_body(raw))
        try:
            return status, (json.loads(raw) if raw else None)
        except ValueError:
            return status, None

    def get(self, path: str, timeout: float = REQUEST_TIMEOUT_SECONDS):
        return self.call("GET", path, timeout=timeout)[1]

    def post(self, path: str, body: dict | None = None, timeout: float = REQUEST_TIMEOUT_SECONDS):
        return self.call("POST", path, body if body is not None else {}, timeout=timeout)[1]

    def patch(self, path: str, body: dict, timeout: float = REQUEST_TIMEOUT_SECONDS):
        return self.call("PATCH", path, body, timeout=timeout)[1]

    def get_all_pages(self, path: str) -> list[dict]:
        """Follow `next` links of a paginated list; accepts a plain list too."""
        items: list[dict] = []
        next_path: str | None = path
        while next_path:
            page = self.get(next_path)
            if isinstance(page, list):
                return items + page
            items.extend(page.get("results", []))
            next_path = relative_api_path(page["next"]) if page.get("next") else None
        return items


def _print(line: str) -> None:
    print(line, flush=True)


# ---------------------------------------------------------------- steps

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
            last_problem = _one_line(str(getattr(error, "reason", error)))
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


def probe_s3_endpoint(storage: StorageSpec, opener: Opener | None = None) -> None:
    """Label Studio turns S3 errors for endpoints it does not trust into a bare 500, so find
    out first whether the endpoint answers at all. Any HTTP status (403 included) means reachable."""
    url = s3_probe_url(storage)
    request = urllib.request.Request(url, method="HEAD")
    try:
        (opener or urllib_opener())(request, S3_PROBE_TIMEOUT_SECONDS)
    except OSError as error:
        reason = _one_line(str(getattr(error, "reason", error)))
        raise ReconcileError(f"S3 endpoint {storage.endpoint or url} is unreachable ({reason})") from None


def find_project(projects: list[dict], title: str) -> dict | None:
    # The title filter is a substring match, so the exact title decides.
    return next((project for project in projects if project.get("title") == title), None)


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
            raise ReconcileError(f'project "{spec.title}": Label Studio refused the label config: {error.detail}') from None
        raise
    return project


def _storage_error(kind: str, spec_title: str, storage: StorageSpec, error: ApiError) -> ReconcileError:
    where = f"s3://{storage.bucket}" + (f" at {storage.endpoint}" if storage.endpoint else "")
    if error.status == 500:
        return ReconcileError(
            f'project "{spec_title}": Label Studio failed creating the {kind} storage for {where} with a bare 500 '
            "(it hides S3 errors for endpoints outside S3_TRUSTED_STORAGE_DOMAINS): check bucket, keys and region")
    if "reserved network" in error.detail:
        return ReconcileError(
            f'project "{spec_title}": Label Studio refused the S3 endpoint {storage.endpoint}: {error.detail} '
            "(private endpoints need SSRF_PROTECTION_ENABLED=false)")
    return ReconcileError(f'project "{spec_title}": {kind} storage for {where}: {error.detail}')


def ensure_storage(client: LabelStudioClient, kind: str, collection: str, project: dict, desired: dict,
                   state: DesiredState, spec: ProjectSpec, report: Callable[[str], None]) -> dict:
    """kind is "source" or "export"; collection the API path, e.g. /api/storages/s3/."""
    existing = client.get(f"{collection}?project={project['id']}")
    current = next((item for item in existing if item.get("title") == desired["title"]), None)
    label = f'project "{spec.title}": {kind} storage s3://{desired["bucket"]}/{desired["prefix"]}'
    try:
        if current is None:
            current = client.post(collection, {**desired, "project": project["id"]})
            report(f"{label}: created (id {current['id']})")
            return current
        changed = changed_fields(desired, current)
        if not changed:
            report(f"{label}: unchanged (id {current['id']})")
            return current
        detail_path = f"{collection.rstrip('/')}/{current['id']}"
        current = client.patch(detail_path, patch_for(desired, changed))
        shown = ["credentials" if name == "description" else name for name in changed]
        report(f"{label}: updated {', '.join(shown)} (id {current['id']})")
        return current
    except ApiError as error:
        raise _storage_error(kind, spec.title, state.storage, error) from None


def sync_source_storage(client: LabelStudioClient, storage: dict, spec: ProjectSpec, deadline: Deadline,
                        report: Callable[[str], None], sleep: Callable[[float], None] = time.sleep) -> int:
    """Import new objects as tasks. Without Redis, Label Studio syncs inside the POST, so the
    POST runs in a thread while this one polls the storage for progress either way."""
    detail_path = f"/api/storages/s3/{storage['id']}"
    label = f'project "{spec.title}": source storage s3://{storage["bucket"]}/{storage.get("prefix") or ""}'
    outcome: dict[str, object] = {}

    def start_sync() -> None:
        try:
            outcome["answer"] = client.post(f"{detail_path}/sync", timeout=max(deadline.remaining(), 1.0))
        except (ReconcileError, OSError) as error:
            outcome["error"] = error

    started_at = time.monotonic()
    worker = threading.Thread(target=start_sync, daemon=True)
    worker.start()
    last_progress_at = started_at
    while True:
        worker.join(timeout=SYNC_POLL_SECONDS)
        if "error" in outcome:
            raise ReconcileError(f"{label}: sync request failed: {outcome['error']}")
        current = client.get(detail_path)
        status = current.get("status")
        if not worker.is_alive() and status in SYNC_DONE_STATUSES:
            break
        if time.monotonic() - last_progress_at >= SYNC_PROGRESS_EVERY_SECONDS:
            last_progress_at = time.monotonic()
            report(f"{label}: syncing, {current.get('last_sync_count') or 0} new tasks so far "
                   f"({time.monotonic() - started_at:.0f} s)")
        if deadline.expired():
            raise ReconcileError(f"{label}: sync did not finish before the deadline (status {status})")
        if not worker.is_alive():
            sleep(SYNC_POLL_SECONDS)  # queued in Redis: the POST returned, the worker syncs
    elapsed = time.monotonic() - started_at
    if status == "failed":
        reason = (current.get("traceback") or "no traceback").strip().splitlines()[-1]
        raise ReconcileError(f"{label}: sync failed: {_one_line(reason)}")
    created = int(current.get("last_sync_count") or 0)
    existed = int((current.get("meta") or {}).get("tasks_existed") or 0)
    suffix = " (with errors: see the storage in the UI)" if status == "completed_with_errors" else ""
    if created:
        report(f"{label}: synced {created} tasks in {elapsed:.1f}s{suffix}")
    else:
        report(f"{label}: unchanged (0 new tasks, {existed} already imported){suffix}")
    return created


def _same_url(left: str, right: str) -> bool:
    return left.rstrip("/") == right.rstrip("/")


def ensure_sam_backend(client: LabelStudioClient, project: dict, sam_url: str, spec: ProjectSpec,
                       deadline: Deadline, report: Callable[[str], None],
                       sleep: Callable[[float], None] = time.sleep) -> dict:
    """Connect the SAM backend for interactive pre-annotation. Label Studio calls the backend's
    /health and /setup before it accepts it, and SAM answers only once its model is loaded, so
    refusals are retried until the deadline."""
    label = f'project "{spec.title}": ml backend {sam_url}'
    backends = client.get(f"/api/ml/?project={project['id']}")
    current = next((item for item in backends if _same_url(item.get("url", ""), sam_url)), None)
    if current is not None:
        if current.get("is_interactive") and current.get("state") == ML_CONNECTED_STATE:
            report(f"{label}: unchanged (id {current['id']}, connected, interactive)")
            return current
        request = ("PATCH", f"/api/ml/{current['id']}", {"is_interactive": True, "url": sam_url})
        action = "reconnected"
    else:
        request = ("POST", "/api/ml/", {"project": project["id"], "url": sam_url,
                                        "is_interactive": True, "title": SAM_BACKEND_TITLE})
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
            request = ("PATCH", f"/api/ml/{backend['id']}", {"is_interactive": True, "url": sam_url})
        except ApiError as error:
            if error.status != 400:
                raise
            problem = error.detail
        if deadline.expired():
            raise ReconcileError(f"{label}: not healthy before the deadline: {problem}")
        if not announced:
            report(f"{label}: waiting for the backend to answer healthy ({problem[:160]})")
            announced = True
        sleep(min(ML_BACKEND_RETRY_SECONDS, deadline.remaining()))


def fetch_invite_url(client: LabelStudioClient, public_base_url: str) -> str:
    """GET /api/invite answers {"invite_url": "/user/signup/?token=<organization token>", "token": ...}."""
    invite = client.get("/api/invite")
    return absolute_invite_url(public_base_url, invite["invite_url"])


def report_members(client: LabelStudioClient, members: tuple[str, ...], report: Callable[[str], None]) -> None:
    """Label Studio 1.23.2's open-source API can add a user record (POST /api/users/) but not
    give it a password, and sign-up refuses an e-mail that already exists: creating members
    would lock them out. So members join through the invite link; this only reports who has."""
    if not members:
        return
    joined = {str(user.get("email", "")).lower() for user in client.get_all_pages("/api/users/")}
    for email in members:
        if email.lower() in joined:
            report(f'member "{email}": has joined')
        else:
            report(f'member "{email}": not joined yet (send them the invite link from the team Secret)')


def store_invite_in_secret(invite_url: str, secret_name: str, report: Callable[[str], None],
                           opener: Opener | None = None,
                           service_account_dir: Path = SERVICE_ACCOUNT_DIR,
                           api_server: str | None = None) -> None:
    """Write the invite link into the existing Secret `secret_name` (key invite-url) of the pod's
    namespace, with the pod's service-account token. The link is never printed."""
    token_path = service_account_dir / "token"
    if not token_path.exists():
        report(f'team secret "{secret_name}": skipped (no service-account token at {service_account_dir})')
        return
    namespace = (service_account_dir / "namespace").read_text().strip()
    if api_server is None:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        api_server = f"https://{host}:{port}"
    if opener is None:
        opener = urllib_opener(ssl.create_default_context(cafile=str(service_account_dir / "ca.crt")))
    url = f"{api_server}/api/v1/namespaces/{namespace}/secrets/{urllib.parse.quote(secret_name)}"
    headers = {"Authorization": f"Bearer {token_path.read_text().strip()}", "Accept": "application/json"}
    label = f'team secret "{namespace}/{secret_name}"'

    def send(method: str, body: dict | None = None, content_type: str = "") -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers=dict(headers))
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            status, raw = opener(request, REQUEST_TIMEOUT_SECONDS)
        except OSError as error:
            raise ReconcileError(f"{label}: Kubernetes API unreachable ({error})") from None
        if status >= 400:
            raise ReconcileError(f"{label}: {method} answered {status}: {describe_error_body(raw)}")
        return json.loads(raw) if raw else {}

    stored = (send("GET").get("data") or {}).get(TEAM_SECRET_KEY)
    wanted = base64.b64encode(invite_url.encode()).decode()
    if stored == wanted:
        report(f"{label}: unchanged")
        return
    send("PATCH", {"data": {TEAM_SECRET_KEY: wanted}}, "application/merge-patch+json")
    report(f"{label}: invite link stored under key {TEAM_SECRET_KEY}")


# ---------------------------------------------------------------- the whole run

def reconcile(state: DesiredState, client: LabelStudioClient, settings: Settings,
              report: Callable[[str], None] = _print, deadline: Deadline | None = None,
              s3_opener: Opener | None = None, kubernetes_opener: Opener | None = None,
              service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> dict[str, dict]:
    """Apply `state`; returns the Label Studio project of each desired title."""
    deadline = deadline or Deadline(settings.deadline_seconds)
    wait_for_health(client, deadline, report)
    user = check_token(client)
    report(f"api token: accepted (user {user.get('email', '?')})")
    if state.projects:
        probe_s3_endpoint(state.storage, s3_opener)
        report(f"s3 endpoint {state.storage.endpoint or s3_probe_url(state.storage)}: reachable")
    existing = client.get_all_pages("/api/projects/?page_size=100")
    projects: dict[str, dict] = {}
    for spec in state.projects:
        project = ensure_project(client, spec, existing, report)
        projects[spec.title] = project
        source = ensure_storage(client, "source", "/api/storages/s3/", project,
                                import_storage_payload(state, spec, settings), state, spec, report)
        ensure_storage(client, "export", "/api/storages/export/s3", project,
                       export_storage_payload(state, spec, settings), state, spec, report)
        sync_source_storage(client, source, spec, deadline, report)
        if spec.sam:
            ensure_sam_backend(client, project, state.sam_url, spec, deadline, report)
    invite_url = fetch_invite_url(client, settings.public_url or client.base_url)
    report("invite link: available (kept out of logs)")
    if settings.team_secret_name:
        store_invite_in_secret(invite_url, settings.team_secret_name, report, kubernetes_opener,
                               service_account_dir)
    report_members(client, state.members, report)
    return projects


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: reconcile.py DESIRED_STATE.json", file=sys.stderr)
        return 2
    try:
        url = os.environ.get("LABEL_STUDIO_URL")
        token = credential(dict(os.environ), "LABEL_STUDIO_API_KEY")
        if not url or not token:
            raise ReconcileError("LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (or LABEL_STUDIO_API_KEY_FILE) must be set")
        try:
            document = json.loads(Path(argv[0]).read_text())
        except (OSError, ValueError) as error:
            raise ReconcileError(f"cannot read desired state {argv[0]}: {error}") from None
        state = parse_desired_state(document)
        settings = Settings.from_environment(dict(os.environ))
        reconcile(state, LabelStudioClient(url, token), settings)
    except ReconcileError as error:
        print(f"reconcile failed: {error}", file=sys.stderr, flush=True)
        return 1
    except Exception as error:  # noqa: BLE001 - the contract is one line, never a traceback
        print(f"reconcile failed: unexpected {type(error).__name__}: {_one_line(str(error))}",
              file=sys.stderr, flush=True)
        return 1
    print("reconcile: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
