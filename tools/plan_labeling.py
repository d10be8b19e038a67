"""What the reconciler will apply, as the offline plan prints it: read from the desired state
the stack writes into the reconciler's ConfigMap (the reconciler's own input) and from the
CronJobs, so the plan shows what runs, not a second reading of the config.

Members added and removed are relative to the accounts earlier runs created. Offline there is
no cluster to ask, so the plan takes the members of the stack file as committed (git HEAD):
what the last deploy from it made. A stack file git does not hold yet was never deployed from
this repository: every member is added. `pulumi preview` reads the cluster's own record instead.
"""

from __future__ import annotations

import json
import subprocess
from typing import Optional, Sequence

import yaml

from components.reconciler_pods import DESIRED_STATE_FILE, EXPORT_RESYNC_NAME, SCHEDULED_RECONCILE_NAME
from components.settings import PROJECT
from components.settings.stack_file import stack_file_path
from reconciler.contract import parse_desired_state
from tools.stack_eval import Evaluation, configured_members, project_dir


def committed_stack_file(stack: str, revision: str = "HEAD") -> Optional[dict]:
    """The stack's file as git holds it at `revision`; None without git or without that file there."""
    directory = project_dir(stack)
    try:
        # `<revision>:./<file>` is relative to the working directory: the stack's project.
        shown = subprocess.run(["git", "show", f"{revision}:./{stack_file_path(directory, stack).name}"],
                               cwd=directory, capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return yaml.safe_load(shown.stdout) or {}


def committed_members(stack: str, revision: str = "HEAD") -> list[str]:
    """labeling.members of the stack's file at `revision`; none when git does not hold the file."""
    committed = committed_stack_file(stack, revision)
    return configured_members((committed or {}).get("config") or {}, PROJECT)


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def labeling_plan(evaluation: Evaluation, previous_members: Sequence[str]) -> list[str]:
    """One line per project, the members added and removed, and the schedules."""
    config_map = next((r for r in evaluation.of_type("kubernetes:core/v1:ConfigMap")
                       if DESIRED_STATE_FILE in (r.inputs.get("data") or {})), None)
    if config_map is None:
        return ["no reconciler: nothing is applied in Label Studio"]
    state = parse_desired_state(json.loads(config_map.inputs["data"][DESIRED_STATE_FILE]))
    storage = state.storage
    presign = (f"presigned URLs ({storage.presign_ttl_minutes} min)" if storage.presign
               else "served by Label Studio")
    lines = [f'project "{p.title}": s3://{storage.bucket}/{p.prefix} matching {p.regex_filter}, '
             f"SAM {_yes_no(p.sam)}, split {', '.join(p.split) or 'no'}, images {presign}"
             for p in state.projects] or ["projects: none"]
    configured = {email.lower() for email in state.members}
    before = {email.lower() for email in previous_members}
    lines.append(f"members: {len(state.members)} configured; added: {', '.join(sorted(configured - before)) or 'none'};"
                 f" removed: {', '.join(sorted(before - configured)) or 'none'}")
    schedules = {r.inputs["metadata"]["name"]: r.inputs["spec"]["schedule"]
                 for r in evaluation.of_type("kubernetes:batch/v1:CronJob")}
    for name, what in ((SCHEDULED_RECONCILE_NAME, "full reconcile"), (EXPORT_RESYNC_NAME, "export re-sync")):
        lines.append(f"{what}: {schedules[name]!r} ({name})" if name in schedules else f"{what}: off")
    return lines
