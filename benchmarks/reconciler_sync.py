"""How long the reconciler's storage sync takes for 1,000 and 25,000 images (the seed's data set size).

Starts moto and Label Studio on 127.0.0.1 (tests/live_services.py), uploads small generated
PNGs with boto3, runs the reconciler for one project per size and prints the sync time the
reconciler reports and the time per object.

    .venv/bin/python -m benchmarks.reconciler_sync [--sizes 1000 25000]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

from components import PROJECT_ROOT
from reconciler.client import LabelStudioClient
from reconciler.contract import RunEnvironment, parse_desired_state
from reconciler.reconcile import reconcile
from tests.live_services import MOTO_ACCESS_KEY_ID, MOTO_SECRET_ACCESS_KEY, live_stack, upload_images

BUCKET = "benchmark"
SYNCED_LINE = re.compile(r"synced (\d+) tasks in ([\d.]+)s")


def desired_state(s3_endpoint: str, size: int) -> dict:
    return {
        "storage": {"bucket": BUCKET, "region": "us-east-1", "endpoint": s3_endpoint,
                    "presign": True, "presignTtlMinutes": 60},
        "exportPrefix": "label-studio/exports",
        "samUrl": None,
        "projects": [{"title": f"Benchmark {size}",
                      "labelConfig": (PROJECT_ROOT / "label_configs" / "image_classification.xml").read_text(),
                      "prefix": f"images-{size}", "regexFilter": ".*\\.(jpe?g|png)$", "sam": False}],
        "members": [],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 25000])
    arguments = parser.parse_args()
    settings = RunEnvironment(aws_access_key_id=MOTO_ACCESS_KEY_ID, aws_secret_access_key=MOTO_SECRET_ACCESS_KEY,
                            deadline_seconds=3600)
    with tempfile.TemporaryDirectory(prefix="reconciler-benchmark-") as work_dir, \
            live_stack(Path(work_dir), BUCKET, {}) as stack:
        client = LabelStudioClient(stack.label_studio_url, stack.admin.token)
        print(f"{'objects':>8} {'upload s':>9} {'sync s':>8} {'ms/object':>10} {'run s':>7}")
        for size in arguments.sizes:
            upload_started = time.monotonic()
            upload_images(stack.s3_endpoint, BUCKET, f"images-{size}", size)
            upload_seconds = time.monotonic() - upload_started
            lines: list[str] = []
            run_started = time.monotonic()
            reconcile(parse_desired_state(desired_state(stack.s3_endpoint, size)), client, settings,
                          report=lines.append)
            run_seconds = time.monotonic() - run_started
            [(synced, sync_seconds)] = [(int(match[1]), float(match[2]))
                                        for match in map(SYNCED_LINE.search, lines) if match]
            if synced != size:
                print(f"expected {size} tasks, the reconciler synced {synced}", file=sys.stderr)
                return 1
            print(f"{size:>8} {upload_seconds:>9.1f} {sync_seconds:>8.1f} {1000 * sync_seconds / size:>10.2f} "
                  f"{run_seconds:>7.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
