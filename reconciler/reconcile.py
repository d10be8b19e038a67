"""Bring a Label Studio instance to a desired state: projects, S3 storages, SAM backend, tabs,
team access and members; or, with --export-resync, only re-sync the export storages.
With --scheduled (the scheduled reconcile) it is the same full run, skipped while the Job or
another run holds the run lock (reconciler/lock.py).

Runs as `python -m reconciler /opt/labeling/desired.json` in a plain python image, so it
uses the standard library only. Every action and every no-op prints one line; a failure
prints one line naming the problem and exits non-zero. Running it twice changes nothing
the second time. API paths and payloads follow Label Studio 1.23.2's source.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable

from reconciler.active_hours import Clock, utc_now
from reconciler.client import Deadline, LabelStudioClient, Opener, client_from_environment, one_line
from reconciler.contract import SCHEDULED_FLAG, DesiredState, RunEnvironment, parse_desired_state
from reconciler.errors import ReconcileError
from reconciler.projects import (
    check_token, ensure_prediction_on_open, ensure_project, ensure_sam_backend, find_project, list_projects,
    remove_sam_backends, wait_for_health,
)
from reconciler.storages import (
    EXPORT_STORAGES, ensure_source_storage, ensure_storage, export_storage_payload, import_storage_payload,
    probe_s3_endpoint, resync_export_storage, s3_probe_url, sync_source_storage,
)
from reconciler.sam_pods import SamPods
from reconciler.sam_selftest import SamSelfTest
from reconciler.members import CreatedRecord, SignUp, invite_sign_up, reconcile_members
from reconciler.lock import RunLock
from reconciler.summary import RunSummary
from reconciler.tabs import ensure_tabs
from reconciler.team import SERVICE_ACCOUNT_DIR, TeamSecret, absolute_invite_url, fetch_invite, store_invite_in_secret

EXPORT_RESYNC_FLAG = "--export-resync"


def _print(line: str) -> None:
    print(line, flush=True)


def reconcile(state: DesiredState, client: LabelStudioClient, environment: RunEnvironment,
              report: Callable[[str], None] = _print, deadline: Deadline | None = None,
              s3_opener: Opener | None = None, kubernetes_opener: Opener | None = None,
              service_account_dir: Path = SERVICE_ACCOUNT_DIR, sign_up: SignUp | None = None,
              sam_self_test: SamSelfTest | None = None, clock: Clock = utc_now,
              sam_pods: SamPods | None = None, sleep: Callable[[float], None] = time.sleep) -> dict[str, dict]:
    """Apply `state`; returns the Label Studio project of each desired title. `clock` tells whether
    SAM is inside its active hours; `sleep` is how the run waits between attempts."""
    deadline = deadline or Deadline(environment.deadline_seconds)
    _check_services(state, client, deadline, report, s3_opener, sleep)
    existing = list_projects(client)
    projects: dict[str, dict] = {}
    for spec in state.projects:
        project = ensure_project(client, spec, existing, report)
        projects[spec.title] = project
        source = ensure_source_storage(client, project, import_storage_payload(state, spec, environment), state,
                                       spec, report)
        ensure_storage(client, "export", EXPORT_STORAGES, project,
                       export_storage_payload(state, spec, environment), state, spec, report)
        sync_source_storage(client, source, spec, deadline, report, sleep)
        if not spec.sam:
            remove_sam_backends(client, project, spec, report)
        ensure_tabs(client, project, spec, report)
    # Only now SAM: the backend may still be loading its model, and labeling without it can
    # start as soon as the tasks are in.
    sam_projects = [spec for spec in state.projects if spec.sam]
    if sam_projects and _sam_paused(state, clock(), report):
        sam_projects = []
    pods = sam_pods or SamPods.in_pod(state.sam_pod_labels, report, kubernetes_opener, service_account_dir)
    for spec in sam_projects:
        project = projects[spec.title]
        backend = ensure_sam_backend(client, project, state.sam_url, spec, deadline, report, sleep,
                                     pods.start_failure)
        ensure_prediction_on_open(client, project, spec, report)
        (sam_self_test or SamSelfTest(client, state.sam_url)).run(project, backend, spec, report, state.sam_self_test)
    invite = fetch_invite(client)
    report("invite link: available (kept out of logs)")
    secret = None
    if environment.team_secret_name:
        secret = TeamSecret.in_pod(environment.team_secret_name, report, kubernetes_opener, service_account_dir)
    if secret is not None:
        store_invite_in_secret(absolute_invite_url(environment.public_url or client.base_url, invite["invite_url"]),
                               secret, report)
        reconcile_members(client, state.members, environment.member_passwords, CreatedRecord(secret),
                          sign_up or invite_sign_up(client.base_url, invite["token"]), report, state.remove_members)
    elif state.members:
        # Without the record the reconciler could not tell its accounts from anyone else's later.
        report("members: not managed (the accounts it creates are recorded in the team Secret, out of reach here)")
    return projects


def _sam_paused(state: DesiredState, now, report: Callable[[str], None]) -> bool:
    """Outside the active hours SAM runs no pod: connecting it would wait for a backend that is not
    coming, so the step is skipped, with the time it comes back, and the run goes on."""
    hours = state.sam_active_hours
    if hours is None or hours.inside(now):
        return False
    report(f"SAM paused by sam.activeHours until {hours.next_opening(now).isoformat(timespec='minutes')}")
    return True


def _check_services(state: DesiredState, client: LabelStudioClient, deadline: Deadline,
                    report: Callable[[str], None], s3_opener: Opener | None,
                    sleep: Callable[[float], None] = time.sleep) -> None:
    wait_for_health(client, deadline, report, sleep)
    user = check_token(client)
    report(f"api token: accepted (user {user.get('email', '?')})")
    if state.projects:
        probe_s3_endpoint(state.storage, s3_opener)
        report(f"s3 endpoint {state.storage.endpoint or s3_probe_url(state.storage)}: reachable")


def resync_exports(state: DesiredState, client: LabelStudioClient, environment: RunEnvironment,
                   report: Callable[[str], None] = _print, deadline: Deadline | None = None,
                   s3_opener: Opener | None = None) -> int:
    """Write every annotation of each project to its export storage again; returns how many.
    An annotation saved while S3 was unreachable reaches the bucket only this way."""
    deadline = deadline or Deadline(environment.deadline_seconds)
    _check_services(state, client, deadline, report, s3_opener)
    existing = list_projects(client)
    exported = 0
    for spec in state.projects:
        project = find_project(existing, spec.title)
        if project is None:
            report(f'project "{spec.title}": not created yet; nothing to export')
            continue
        exported += resync_export_storage(client, project, spec, deadline, report)
    return exported


def _run_lock(environment: RunEnvironment) -> RunLock | None:
    """The lock in the team Secret, held in the pod's name (its host name); None outside a pod
    (no Kubernetes API to keep it in)."""
    if not environment.team_secret_name or not (SERVICE_ACCOUNT_DIR / "token").exists():
        return None
    return RunLock(TeamSecret(environment.team_secret_name), socket.gethostname(), environment.deadline_seconds)


def reconcile_once(state: DesiredState, client: LabelStudioClient, environment: RunEnvironment,
                   lock: RunLock | None, scheduled: bool, report: Callable[[str], None] = _print,
                   **connections) -> bool:
    """A full run under the run lock, ending with the summary line; False when a scheduled run
    found another run applying the state and left it alone (the next schedule catches up).
    `connections` go to `reconcile` (openers, the service-account directory, the sign-up)."""
    deadline = Deadline(environment.deadline_seconds)
    if lock is not None:
        if scheduled:
            holder = lock.try_acquire()
            if holder is not None:
                report(f"reconcile: skipped, another run ({holder}) is applying the state")
                return False
            report(f"run lock: taken by {lock.holder}")
        else:
            lock.acquire(deadline.remaining, report)
    summary = RunSummary(report)
    try:
        reconcile(state, client, environment, report=summary, deadline=deadline, **connections)
    finally:
        if lock is not None:
            lock.release()
    report(summary.line())
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    mode = argv[0] if argv[:1] in ([EXPORT_RESYNC_FLAG], [SCHEDULED_FLAG]) else None
    argv = argv[1:] if mode else argv
    if len(argv) != 1:
        print(f"usage: python -m reconciler [{EXPORT_RESYNC_FLAG} | {SCHEDULED_FLAG}] DESIRED_STATE.json",
              file=sys.stderr)
        return 2
    try:
        environ = dict(os.environ)
        client = client_from_environment(environ)
        try:
            document = json.loads(Path(argv[0]).read_text())
        except (OSError, ValueError) as error:
            raise ReconcileError(f"cannot read desired state {argv[0]}: {error}") from None
        state = parse_desired_state(document)
        environment = RunEnvironment.from_environment(environ)
        if mode == EXPORT_RESYNC_FLAG:
            resync_exports(state, client, environment)
        else:
            reconcile_once(state, client, environment, _run_lock(environment), mode == SCHEDULED_FLAG)
    except ReconcileError as error:
        print(f"reconcile failed: {error}", file=sys.stderr, flush=True)
        return 1
    except Exception as error:  # noqa: BLE001 - the contract is one line, never a traceback
        print(f"reconcile failed: unexpected {type(error).__name__}: {one_line(str(error))}",
              file=sys.stderr, flush=True)
        return 1
    print("reconcile: done", flush=True)
    return 0
