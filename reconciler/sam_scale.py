"""Bring the SAM Deployment to the replica count sam.activeHours asks for right now.

    python -m reconciler.sam_scale /opt/labeling/sam-schedule.json

Run by the scaler's CronJobs (at each opening minus the lead, at each closing, at the end of the
late-night override) and by the Job a new override starts. Every run decides from the clock, not
from which schedule fired it, so a run that starts late, twice, or after the cluster was down
still leaves the replicas the windows want. It patches only the Deployment's scale subresource,
as its own field manager, which is all its service account may do.
"""

from __future__ import annotations

import json
import sys
import urllib.parse
from pathlib import Path
from typing import Callable

from reconciler.active_hours import ActiveHours, Clock, utc_now
from reconciler.errors import ReconcileError
from reconciler.kubernetes_api import MERGE_PATCH, KubernetesApi

# Who wrote spec.replicas, in the Deployment's managedFields: never Pulumi's provider.
FIELD_MANAGER = "sam-active-hours"


def scale_path(namespace: str, deployment: str) -> str:
    return (f"/apis/apps/v1/namespaces/{namespace}/deployments/{urllib.parse.quote(deployment)}/scale"
            f"?fieldManager={FIELD_MANAGER}")


def schedule_document(hours: ActiveHours, deployment: str, replicas: int) -> dict:
    """What the scaler's ConfigMap carries; `apply_schedule` reads it back."""
    return {"deployment": deployment, "replicas": replicas, "activeHours": hours.to_document()}


def apply_schedule(document: dict, api: KubernetesApi, report: Callable[[str], None], clock: Clock = utc_now) -> int:
    """Patch the Deployment's replicas to what the windows want now; returns that count."""
    hours = ActiveHours.from_document(document["activeHours"])
    deployment = document["deployment"]
    now = clock()
    wanted = hours.replicas_at(now, int(document["replicas"]))
    label = f'deployment "{api.namespace}/{deployment}"'
    api.send("PATCH", scale_path(api.namespace, deployment), label, {"spec": {"replicas": wanted}}, MERGE_PATCH)
    local = now.astimezone(hours.zone).isoformat(timespec="minutes")
    if wanted:
        reason = "kept up by sam.activeHours.keepUpUntil" if hours.kept_up(now) else "inside sam.activeHours"
    else:
        reason = f"outside sam.activeHours until {hours.next_opening(now).isoformat(timespec='minutes')}"
    report(f"{label}: {wanted} replica(s) at {local} ({reason})")
    return wanted


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m reconciler.sam_scale SCHEDULE.json", file=sys.stderr)
        return 2
    try:
        apply_schedule(json.loads(Path(argv[0]).read_text()), KubernetesApi(), lambda line: print(line, flush=True))
    except (ReconcileError, OSError, ValueError, KeyError) as error:
        print(f"sam scale failed: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
