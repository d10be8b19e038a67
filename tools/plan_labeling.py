"""What the reconciler will apply, as the offline plan prints it: read from the desired state
the stack writes into the reconciler's ConfigMap (the reconciler's own input) and from the
CronJobs, so the plan shows what runs, not a second reading of the config.

Members added and removed are relative to the accounts earlier runs created: offline, those
of the stack file as committed (tools/deployed.py). `pulumi preview` reads the cluster's own
record instead.
"""

from __future__ import annotations

import json
from typing import Sequence

from components.reconciler_pods import DESIRED_STATE_FILE, EXPORT_RESYNC_NAME, SCHEDULED_RECONCILE_NAME
from components.sam_active_hours import SCALED_OBJECT_TYPE, scale_schedules
from reconciler.active_hours import HOURS_PER_WEEK
from reconciler.contract import DesiredState, parse_desired_state
from tools.stack_eval import Evaluation


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
    lines += sam_hours_plan(evaluation, state)
    schedules = {r.inputs["metadata"]["name"]: r.inputs["spec"]["schedule"]
                 for r in evaluation.of_type("kubernetes:batch/v1:CronJob")}
    for name, what in ((SCHEDULED_RECONCILE_NAME, "full reconcile"), (EXPORT_RESYNC_NAME, "export re-sync")):
        lines.append(f"{what}: {schedules[name]!r} ({name})" if name in schedules else f"{what}: off")
    return lines


def sam_hours_plan(evaluation: Evaluation, state: DesiredState) -> list[str]:
    """When SAM holds its node: the windows and their weekly hours, and who scales it."""
    if state.sam_url is None:
        return []
    hours = state.sam_active_hours
    if hours is None:
        return [f"SAM active hours: off; SAM runs {HOURS_PER_WEEK} h of {HOURS_PER_WEEK} h a week"]
    scaler = ("KEDA ScaledObject" if evaluation.of_type(SCALED_OBJECT_TYPE)
              else f"CronJobs {', '.join(scale_schedules(hours))}")
    return [f"SAM active hours: {hours.describe()}; scaled by {scaler}",
            "SAM image: with 0 replicas outside the windows, a new image rolls out with no pod and is first "
            "pulled when the next window opens (the next self-test inside a window proves it)"]
