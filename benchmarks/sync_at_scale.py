"""The seed's scale: 25,000 images synced into a project, as the cluster serves Label Studio.

    .venv/bin/python -m benchmarks.sync_at_scale [--objects 25000] [--harakiri 120]

Label Studio 1.23.2 under uWSGI with the release's limits (harakiri 120 s, http-timeout
300 s), on PostgreSQL, with the rendered app env and Label Studio's own
STORAGE_IN_PROGRESS_TIMER (5 s); moto holding the images. In one run, the same 25,000
objects are synced twice, each time into a fresh Label Studio on a fresh database (so
neither side inherits the other's tables):

- bare: the shortest correct API sequence: create the project and its source storage,
  then POST sync; when the request is cut short, poll the storage list every second until
  Label Studio releases the storage; POST again; until a POST reports completion;
- reconciler: the Job's command (`python -m reconciler`), from health check to SAM-less done.

Prints both times, their ratio, and what bounds them: the requests harakiri cut, the time
spent waiting for Label Studio to release a killed sync, and the sync rate.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

from reconciler.client import LabelStudioClient
from reconciler.sync import COMPLETED, HELD, POLL_SECONDS, cut_short
from tests.live_services import MOTO_ACCESS_KEY_ID, MOTO_SECRET_ACCESS_KEY
from tests.live_stack import RELEASE_HARAKIRI_SECONDS, job_environment, label_studio_stack, moto_holding, run_job

BUCKET = "seed-scale"
PREFIX = "kagglecatsanddogs"
SYNCED = re.compile(r"synced (\d+) tasks in ([\d.]+)s(?: .*\((\d+) requests, (\d+) cut short\))?")


def bare_sync(url: str, token: str, label_config: str) -> dict:
    """Create a project and storage, then sync to completion with nothing but the API. The
    storage names no endpoint: Label Studio has the store's as S3_ENDPOINT, as the stack sets it."""
    client = LabelStudioClient(url, token)
    started = time.monotonic()
    project = client.post("/api/projects/", {"title": "Bare API sequence", "label_config": label_config})
    storage = client.post("/api/storages/s3/", {
        "project": project["id"], "title": "bare", "bucket": BUCKET, "prefix": PREFIX,
        "regex_filter": r".*\.(jpe?g|png)$", "use_blob_urls": True, "presign": True, "recursive_scan": True,
        "region_name": "us-east-1", "s3_endpoint": "", "aws_access_key_id": MOTO_ACCESS_KEY_ID,
        "aws_secret_access_key": MOTO_SECRET_ACCESS_KEY})
    requests = cut = 0
    waited = 0.0
    while True:
        requests += 1
        try:
            if client.post(f"/api/storages/s3/{storage['id']}/sync", timeout=3600).get("status") in COMPLETED:
                break
        except Exception as error:  # noqa: BLE001 - only a cut-short request is expected
            if not cut_short(error):
                raise
            cut += 1
        release_started = time.monotonic()
        while True:
            listed = client.get(f"/api/storages/s3/?project={project['id']}")
            status = next(item for item in listed if item["id"] == storage["id"])["status"]
            if status not in HELD:
                break
            time.sleep(POLL_SECONDS)
        waited += time.monotonic() - release_started
        if status in COMPLETED:
            break
    tasks = client.get(f"/api/projects/{project['id']}/")["task_number"]
    return {"seconds": time.monotonic() - started, "tasks": tasks, "requests": requests, "cut": cut,
            "waited": waited}


def reconciler_sync(stack, work_dir: Path) -> dict:
    """The Job's command on the stack's own desired state, reduced to the one project."""
    state = json.loads(stack.evaluation.one("kubernetes:core/v1:ConfigMap").inputs["data"]["desired.json"])
    project = next(p for p in state["projects"] if p["prefix"] == PREFIX)
    document = {**state, "samUrl": None, "members": [], "projects": [{**project, "sam": False}]}
    started = time.monotonic()
    result = run_job(work_dir, document, job_environment(stack.label_studio_url, stack.admin.token, 3000),
                     timeout=3600)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"the reconciler failed: {result.stderr.strip()}")
    match = next(m for line in result.stdout.splitlines() if (m := SYNCED.search(line)))
    waits = [line for line in result.stdout.splitlines() if "cut short" in line and "waiting" in line]
    return {"seconds": seconds, "sync_seconds": float(match[2]), "tasks": int(match[1]),
            "requests": int(match[3] or 1), "cut": int(match[4] or 0), "waits": len(waits)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=25000)
    parser.add_argument("--harakiri", type=int, default=RELEASE_HARAKIRI_SECONDS)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sync-at-scale-") as work_dir:
        work = Path(work_dir)
        uploading = time.monotonic()
        with moto_holding(work, BUCKET, {PREFIX: arguments.objects}) as (s3_endpoint, keys):
            print(f"{arguments.objects} images in moto in {time.monotonic() - uploading:.0f} s; Label Studio under "
                  f"uWSGI (harakiri {arguments.harakiri} s) on PostgreSQL, a fresh one for each side")
            options = {"harakiri_seconds": arguments.harakiri, "overrides": {"labeling.members": []}}
            with label_studio_stack(work / "bare", s3_endpoint, BUCKET, keys, **options) as stack:
                state = json.loads(stack.evaluation.one("kubernetes:core/v1:ConfigMap").inputs["data"]["desired.json"])
                label_config = next(p for p in state["projects"] if p["prefix"] == PREFIX)["labelConfig"]
                bare = bare_sync(stack.label_studio_url, stack.admin.token, label_config)
            print(f"bare API sequence: {bare['tasks']} tasks in {bare['seconds']:.1f} s; {bare['requests']} sync "
                  f"requests, {bare['cut']} cut short by harakiri, {bare['waited']:.1f} s waiting for Label Studio to "
                  f"release a killed sync; {bare['tasks'] / bare['seconds']:.0f} tasks/s overall")
            with label_studio_stack(work / "reconciler", s3_endpoint, BUCKET, keys, **options) as stack:
                ours = reconciler_sync(stack, work / "job")
            print(f"reconciler (python -m reconciler): {ours['tasks']} tasks, sync {ours['sync_seconds']:.1f} s, "
                  f"whole run {ours['seconds']:.1f} s; {ours['requests']} sync requests, {ours['cut']} cut short")
            print(f"ratio reconciler/bare: {ours['seconds'] / bare['seconds']:.3f} (whole run), "
                  f"{ours['sync_seconds'] / bare['seconds']:.3f} (sync alone)")


if __name__ == "__main__":
    main()
