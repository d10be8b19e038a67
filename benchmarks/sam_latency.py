"""CPU latency of the real SAM backend: a labeler's first click on an image (download and
embedding) and each further click on the same image.

    LABEL_STUDIO_ML_BACKEND_DIR=... .venv/bin/python -m benchmarks.sam_latency [--images 8] [--clicks 4]
        [--side 1024] [--workers 1 2] [--cpu-limit N]

Needs the example server and its venv (`make env-sam-backend` prints what to export). It runs
as in the opt-in test (tests/sam_real_backend.py: the image's start command, a random MobileSAM
checkpoint, whose values change no operation, so the latency is MobileSAM's) with the env the
dev stack's Deployment declares for each `sam.workers` given and `sam.resources.limits.cpu`
(default: this machine's cores), so OMP_NUM_THREADS is each worker's share of the limit. Label
Studio 1.23.2 and moto as in the live tests (tests/sam_live.py); each click is a keypoint and a
rectangle sent to Label Studio's interactive-annotating as the labeling UI sends them, one at a
time (one labeler): the figures are what that labeler waits. Each worker keeps only the last
image's embedding, so with more than one worker a further click that gunicorn hands to
another worker pays the embedding again; the benchmark counts those.

The images are --side pixels square: SAM scales every image to 1024 on its longest side before
the embedding, so the embedding's cost does not depend on the size, but the mask (scaled back
to the image and encoded as a brush RLE) grows with the pixel count.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reconciler.client import LabelStudioClient
from tests.sam_live import SamProject, deployment_environment, document, run, sam_stack
from tests.variants import UPSTREAM_MOBILE_SAM
from tests.sam_real_backend import (
    ML_BACKEND_DIR_VARIABLE, SETUP_COMMAND, IncompleteSetup, RealBackend, real_backend_from_environment,
    running_real_backend,
)
from tools.stack_eval import evaluate

THREAD_VARIABLES = ("WORKERS", "THREADS", "OMP_NUM_THREADS")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def torch_version(backend: RealBackend) -> str:
    return subprocess.run([str(backend.python), "-c", "import torch; print(torch.__version__)"],
                          capture_output=True, text=True, check=True).stdout.strip()


def describe(seconds: list[float]) -> str:
    p90 = statistics.quantiles(seconds, n=10, method="inclusive")[-1] if len(seconds) > 1 else seconds[0]
    return (f"median {statistics.median(seconds):.2f} s, p90 {p90:.2f} s "
            f"(min {min(seconds):.2f}, max {max(seconds):.2f}, n={len(seconds)})")


def timed_click(project: SamProject, task: dict) -> float:
    started = time.perf_counter()
    answer = project.click(task)
    elapsed = time.perf_counter() - started
    width, height = project.sizes[task["id"]]
    if project.mask_pixels(answer) != width * height:
        sys.exit(f"task {task['id']}: the mask is not of its image's size {width}x{height}")
    return elapsed


def measure(stack, api: LabelStudioClient, backend: RealBackend, workers: int, cpu_limit: str, clicks: int,
            work_dir: Path) -> None:
    evaluation = evaluate("dev", {**UPSTREAM_MOBILE_SAM, "sam.workers": workers, "sam.resources.requests.cpu": "1",
                                  "sam.resources.limits.cpu": cpu_limit})
    environment = deployment_environment(stack, work_dir, evaluation)
    settings = ", ".join(f"{name}={environment[name]}" for name in THREAD_VARIABLES)
    title = f"SAM latency, {workers} workers"
    with running_real_backend(backend, environment, work_dir, stack.log_dir) as url:
        # The reconciler registers the backend and runs its self-test: every worker has loaded.
        _, projects = run(api, document(stack, title, url))
        project = SamProject(stack, api, projects[title])
        first, further = [], []
        # The self-test clicked the first tasks: a worker may still hold one of their embeddings.
        for task in reversed(project.tasks):
            first.append(timed_click(project, task))
            further.extend(timed_click(project, task) for _ in range(clicks))
    print(f"limits.cpu {cpu_limit}, {settings}:")
    print(f"  first click on an image (download, embedding, mask): {describe(first)}")
    print(f"  further click on the same image (mask):               {describe(further)}")
    # A worker keeps the embedding of the last image it saw: a click that reaches another
    # worker computes it again, and takes about as long as a first click.
    again = sum(1 for seconds in further if seconds > statistics.median(first) / 2)
    print(f"  further clicks that computed the embedding again (another worker): {again} of {len(further)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="images, each clicked first once")
    parser.add_argument("--clicks", type=int, default=4, help="further clicks on each image")
    parser.add_argument("--side", type=int, default=1024, help="the images' width and height in pixels")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="sam.workers values to measure")
    parser.add_argument("--cpu-limit", default=str(os.cpu_count() or 1), help="sam.resources.limits.cpu")
    args = parser.parse_args(argv)
    try:
        backend = real_backend_from_environment()
    except IncompleteSetup as incomplete:
        sys.exit(str(incomplete))
    if backend is None:
        sys.exit(f"set {ML_BACKEND_DIR_VARIABLE} to a label-studio-ml-backend checkout ({SETUP_COMMAND})")
    print(f"SAM latency on {cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"MobileSAM (random weights), torch {torch_version(backend)}, {args.images} images of "
          f"{args.side}x{args.side}, {datetime.date.today().isoformat()}")
    with tempfile.TemporaryDirectory(prefix="labeling-sam-latency-") as work:
        with sam_stack(Path(work) / "stack", image_sides=(args.side,) * args.images,
                       overrides=UPSTREAM_MOBILE_SAM) as stack:
            api = LabelStudioClient(stack.label_studio_url, stack.admin.token)
            for workers in args.workers:
                measure(stack, api, backend, workers, args.cpu_limit, args.clicks, Path(work) / f"workers-{workers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
