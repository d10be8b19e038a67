"""S3 storages of each project: the source storage (images become tasks, then sync) and the
export storage (annotations are written back to the bucket)."""

from __future__ import annotations

import hashlib
import http.client
import re
import time
import urllib.parse
import urllib.request
from typing import Callable

from reconciler.client import Deadline, LabelStudioClient, Opener, one_line, urllib_opener
from reconciler.contract import DesiredState, ProjectSpec, RunEnvironment, StorageSpec
from reconciler.errors import ApiError, ReconcileError
from reconciler.sync import SyncTarget, cut_reason, cut_short, sync_until_complete

S3_PROBE_TIMEOUT_SECONDS = 10
CREATE_ATTEMPTS = 3

# Storages are matched by title, so the reconciler can rename prefixes in place and never
# touches storages a person added by hand.
SOURCE_STORAGE_TITLE = "Source images (managed by the labeling reconciler)"
EXPORT_STORAGE_TITLE = "Annotation export (managed by the labeling reconciler)"
SOURCE_STORAGES = "/api/storages/s3/"
EXPORT_STORAGES = "/api/storages/export/s3"


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


def _storage_payload(state: DesiredState, environment: RunEnvironment, title: str, prefix: str) -> dict:
    """What import and export storages share: where the bucket is and how to reach it."""
    storage = state.storage
    payload = {
        "title": title,
        # Label Studio never returns stored keys: the fingerprint tells a later run they changed.
        "description": credentials_fingerprint(environment.aws_access_key_id, environment.aws_secret_access_key),
        "bucket": storage.bucket,
        "prefix": prefix,
        "region_name": storage.region,
        "s3_endpoint": "" if storage.endpoint_from_label_studio else (storage.endpoint or ""),
    }
    if environment.aws_access_key_id:
        payload["aws_access_key_id"] = environment.aws_access_key_id
        payload["aws_secret_access_key"] = environment.aws_secret_access_key
    return payload


def import_storage_payload(state: DesiredState, project: ProjectSpec, environment: RunEnvironment) -> dict:
    return {
        **_storage_payload(state, environment, SOURCE_STORAGE_TITLE, project.prefix),
        "regex_filter": project.regex_filter,
        "use_blob_urls": True,  # each image object becomes one task; no task JSON files
        "presign": state.storage.presign,
        "presign_ttl": state.storage.presign_ttl_minutes,
        "recursive_scan": True,
    }


def export_storage_payload(state: DesiredState, project: ProjectSpec, environment: RunEnvironment) -> dict:
    return _storage_payload(state, environment, EXPORT_STORAGE_TITLE,
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


def probe_s3_endpoint(storage: StorageSpec, opener: Opener | None = None) -> None:
    """Label Studio turns S3 errors for endpoints it does not trust into a bare 500, so find
    out first whether the endpoint answers at all. Any HTTP status (403 included) means reachable."""
    url = s3_probe_url(storage)
    request = urllib.request.Request(url, method="HEAD")
    try:
        (opener or urllib_opener())(request, S3_PROBE_TIMEOUT_SECONDS)
    except OSError as error:
        reason = one_line(str(getattr(error, "reason", error)))
        raise ReconcileError(f"S3 endpoint {storage.endpoint or url} is unreachable ({reason})") from None


def _storage_error(kind: str, spec_title: str, storage: StorageSpec, error: ApiError) -> ReconcileError:
    where = f"s3://{storage.bucket}" + (f" at {storage.endpoint}" if storage.endpoint else "")
    if error.status == 500:
        return ReconcileError(
            f'project "{spec_title}": Label Studio failed creating the {kind} storage for {where} with a bare 500 '
            "(it hides S3 errors for endpoints outside S3_TRUSTED_STORAGE_DOMAINS): check bucket, keys and region")
    if "reserved network" in error.detail:
        return ReconcileError(
            f'project "{spec_title}": Label Studio refused the S3 endpoint {storage.endpoint}: {error.detail} '
            "(set it as Label Studio's S3_ENDPOINT and mark the state's storage endpointFromLabelStudio)")
    return ReconcileError(f'project "{spec_title}": {kind} storage for {where}: {error.detail}')


def _managed(client: LabelStudioClient, collection: str, project: dict, title: str) -> dict | None:
    existing = client.get(f"{collection}?project={project['id']}")
    return next((item for item in existing if item.get("title") == title), None)


def _create(client: LabelStudioClient, collection: str, project: dict, desired: dict, label: str,
            report: Callable[[str], None]) -> dict:
    """Creating an export storage exports every annotation inside the request, which the server
    may cut short: the storage may exist then, so look before asking again."""
    attempt = 1
    while True:
        try:
            return client.post(collection, {**desired, "project": project["id"]})
        except (ApiError, OSError, http.client.HTTPException) as error:
            if not cut_short(error) or attempt == CREATE_ATTEMPTS:
                if isinstance(error, ApiError):
                    raise
                raise ReconcileError(f"{label}: create request failed: {cut_reason(error)}") from None
            report(f"{label}: create request cut short ({cut_reason(error)}); looking for it again")
        found = _managed(client, collection, project, desired["title"])
        if found is not None:
            return found
        attempt += 1


def ensure_storage(client: LabelStudioClient, kind: str, collection: str, project: dict, desired: dict,
                   state: DesiredState, spec: ProjectSpec, report: Callable[[str], None]) -> dict:
    """kind is "source" or "export"; collection the API path, e.g. /api/storages/s3/."""
    current = _managed(client, collection, project, desired["title"])
    label = f'project "{spec.title}": {kind} storage s3://{desired["bucket"]}/{desired["prefix"]}'
    try:
        if current is None:
            current = _create(client, collection, project, desired, label, report)
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


def ensure_source_storage(client: LabelStudioClient, project: dict, desired: dict, state: DesiredState,
                          spec: ProjectSpec, report: Callable[[str], None]) -> dict:
    """The source storage, as ensure_storage makes it; except in a project that already holds
    tasks while its managed source storage is gone (deleted by hand). Label Studio links each
    task to the storage that imported it and deletes the links with the storage, so a new
    storage would import every object again as a second task beside the annotated first."""
    if _managed(client, SOURCE_STORAGES, project, desired["title"]) is None:
        tasks = int(client.get(f"/api/projects/{project['id']}/").get("task_number") or 0)
        if tasks:
            raise ReconcileError(
                f'project "{spec.title}": its source storage was deleted while the project holds {tasks} tasks; '
                "a new one would import every object again as a duplicate task, so none is made: add new "
                "images to another project, or delete the project's tasks to import them afresh")
    return ensure_storage(client, "source", SOURCE_STORAGES, project, desired, state, spec, report)


def sync_source_storage(client: LabelStudioClient, storage: dict, spec: ProjectSpec, deadline: Deadline,
                        report: Callable[[str], None], sleep: Callable[[float], None] = time.sleep) -> int:
    """Import new objects as tasks, through requests the server cuts short (reconciler/sync.py)."""
    label = f'project "{spec.title}": source storage s3://{storage["bucket"]}/{storage.get("prefix") or ""}'

    def task_count() -> int:
        return int(client.get(f"/api/projects/{storage['project']}/").get("task_number") or 0)

    target = SyncTarget(label, SOURCE_STORAGES, storage["id"], storage["project"], task_count)
    result = sync_until_complete(client, target, deadline, report, sleep=sleep)
    status = result.storage.get("status")
    suffix = " (with errors: see the storage in the UI)" if status == "completed_with_errors" else ""
    if result.requests > 1:
        suffix += f" ({result.requests} requests, {result.cut_short} cut short)"
    if result.created:
        report(f"{label}: synced {result.created} tasks in {result.seconds:.1f}s{suffix}")
    else:
        existed = int((result.storage.get("meta") or {}).get("tasks_existed") or 0)
        report(f"{label}: unchanged (0 new tasks, {existed} already imported){suffix}")
        if task_count() == 0:
            # Nothing under the prefix matched: most often a mistyped prefix or a regex that
            # misses the keys (it is matched against the whole key, prefix included).
            report(f'{label}: warning: prefix "{spec.prefix}" with regexFilter "{spec.regex_filter}" imported 0 '
                   "objects; check both against the bucket's keys")
    return result.created


def resync_export_storage(client: LabelStudioClient, project: dict, spec: ProjectSpec, deadline: Deadline,
                          report: Callable[[str], None], sleep: Callable[[float], None] = time.sleep) -> int:
    """Re-save every annotation of the project into its export storage; returns how many.

    Label Studio writes an annotation to the bucket when it is submitted; one submitted while
    S3 was unreachable is saved in the database only (the submit answers 500) and nothing
    retries it. The export sync re-saves all annotations inside the request, so a pass cut
    short starts over: the project's annotation count stays fixed, and three cuts in a row
    end the run with the reason (reconciler/sync.py)."""
    listed = client.get(f"{EXPORT_STORAGES}?project={project['id']}")
    storage = next((item for item in listed if item.get("title") == EXPORT_STORAGE_TITLE), None)
    if storage is None:
        report(f'project "{spec.title}": no export storage yet; nothing to re-sync')
        return 0
    label = f'project "{spec.title}": export storage s3://{storage["bucket"]}/{storage.get("prefix") or ""}'

    def annotation_count() -> int:
        return int(client.get(f"/api/projects/{project['id']}/").get("total_annotations_number") or 0)

    target = SyncTarget(label, EXPORT_STORAGES, storage["id"], project["id"], annotation_count)
    result = sync_until_complete(client, target, deadline, report, sleep=sleep)
    written = int(result.storage.get("last_sync_count") or 0)
    suffix = f" ({result.requests} requests, {result.cut_short} cut short)" if result.requests > 1 else ""
    report(f"{label}: re-synced {written} annotations in {result.seconds:.1f}s{suffix}")
    return written
