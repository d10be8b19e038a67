"""Bring a Label Studio instance to a desired state: projects, S3 storages, SAM backend, team access.

Runs as `python -m reconciler /opt/labeling/desired.json` in a plain python image, so it
uses the standard library only. Every action and every no-op prints one line; a failure
prints one line naming the problem and exits non-zero. Running it twice changes nothing
the second time. API paths and payloads follow Label Studio 1.23.2's source.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable

from reconciler import contract
from reconciler.client import Deadline, LabelStudioClient, Opener, one_line
from reconciler.contract import DesiredState, RunEnvironment, credential, parse_desired_state
from reconciler.errors import ReconcileError
from reconciler.projects import check_token, ensure_project, ensure_sam_backend, remove_sam_backends, wait_for_health
from reconciler.storages import (
    EXPORT_STORAGES, SOURCE_STORAGES, ensure_storage, export_storage_payload, import_storage_payload,
    probe_s3_endpoint, s3_probe_url, sync_source_storage,
)
from reconciler.team import SERVICE_ACCOUNT_DIR, fetch_invite_url, report_members, store_invite_in_secret


def _print(line: str) -> None:
    print(line, flush=True)


def reconcile(state: DesiredState, client: LabelStudioClient, environment: RunEnvironment,
              report: Callable[[str], None] = _print, deadline: Deadline | None = None,
              s3_opener: Opener | None = None, kubernetes_opener: Opener | None = None,
              service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> dict[str, dict]:
    """Apply `state`; returns the Label Studio project of each desired title."""
    deadline = deadline or Deadline(environment.deadline_seconds)
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
        source = ensure_storage(client, "source", SOURCE_STORAGES, project,
                                import_storage_payload(state, spec, environment), state, spec, report)
        ensure_storage(client, "export", EXPORT_STORAGES, project,
                       export_storage_payload(state, spec, environment), state, spec, report)
        sync_source_storage(client, source, spec, deadline, report)
        if spec.sam:
            ensure_sam_backend(client, project, state.sam_url, spec, deadline, report)
        else:
            remove_sam_backends(client, project, spec, report)
    invite_url = fetch_invite_url(client, environment.public_url or client.base_url)
    report("invite link: available (kept out of logs)")
    if environment.team_secret_name:
        store_invite_in_secret(invite_url, environment.team_secret_name, report, kubernetes_opener,
                               service_account_dir)
    report_members(client, state.members, report)
    return projects


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m reconciler DESIRED_STATE.json", file=sys.stderr)
        return 2
    try:
        url = os.environ.get(contract.LABEL_STUDIO_URL)
        token = credential(dict(os.environ), contract.API_TOKEN)
        if not url or not token:
            raise ReconcileError(f"{contract.LABEL_STUDIO_URL} and {contract.API_TOKEN} "
                                 f"(or {contract.API_TOKEN}{contract.FILE_SUFFIX}) must be set")
        try:
            document = json.loads(Path(argv[0]).read_text())
        except (OSError, ValueError) as error:
            raise ReconcileError(f"cannot read desired state {argv[0]}: {error}") from None
        state = parse_desired_state(document)
        environment = RunEnvironment.from_environment(dict(os.environ))
        reconcile(state, LabelStudioClient(url, token), environment)
    except ReconcileError as error:
        print(f"reconcile failed: {error}", file=sys.stderr, flush=True)
        return 1
    except Exception as error:  # noqa: BLE001 - the contract is one line, never a traceback
        print(f"reconcile failed: unexpected {type(error).__name__}: {one_line(str(error))}",
              file=sys.stderr, flush=True)
        return 1
    print("reconcile: done", flush=True)
    return 0

