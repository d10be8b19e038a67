"""SAM as a team uses it: what each labeler waits for a mask, and how often an image is embedded,
with the upstream example and with the platform's SAM server, on this machine's CPU.

    .venv/bin/python -m benchmarks.sam_latency [--labelers 4] [--images 3] [--clicks 3] [--think 3]
        [--click-pause 1] [--side 1024] [--cpu-limit N] [--replicas 1 2] [--upstream] [--upstream-workers 1 2]

The scenario, against Label Studio 1.23.2 under uWSGI on PostgreSQL with moto (tests/sam_live.py):
the labelers start at once, each on images of their own. For each image a labeler opens its task
(GET /api/tasks/<id>, the labeling UI's request: Label Studio then asks the backend for a
prediction without a click, which our server takes as a warm-up), thinks for --think seconds,
clicks (a smart keypoint and rectangle through interactive-annotating, as the UI sends them),
clicks --clicks times more, --click-pause seconds apart, and opens the next image. The pauses are
the scenario's; every wait measured is a request's. Every mask must be of its own image's size.

Backends, each with the env the stack's SAM Deployment declares and `sam.resources.limits.cpu`
(default: this machine's cores) shared by its workers or replicas:
- the upstream example (tests/sam_real_backend.py: the image's start command, a random MobileSAM
  checkpoint), THREADS=1, for each `sam.workers` in --upstream-workers; with --upstream, or when
  LABEL_STUDIO_ML_BACKEND_DIR is set (`make env-sam-backend`);
- our server (sam-server/, tests/sam_server_process.py: SAM 2.1 tiny of random weights), for each
  replica count in --replicas; with 2, Label Studio calls the first replica as the Service would
  hand it one, and that replica passes each request on to the replica owning its image.
Random weights change no operation's cost. The two run different models: compare what a labeler
waits and how often an image is embedded, not the models.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from benchmarks.sam_setup import describe_upstream, machine, torch_version, upstream_backend
from reconciler.client import LabelStudioClient
from reconciler.sam_selftest import CONCURRENT_PREDICTIONS
from tests.live_stack import LiveStack
from tests.sam_live import SamProject, deployment_environment, document, run, sam_stack, self_test_line
from tests.sam_real_backend import RealBackend, running_real_backend
from tests.sam_server_process import SERVER_PYTHON, metric, running_sam_servers, server_python
from tests.variants import UPSTREAM_MOBILE_SAM
from tools.stack_eval import evaluate

UPSTREAM_VARIABLES = ("WORKERS", "THREADS", "OMP_NUM_THREADS")
# Our server's counters, read from each replica's /metrics before and after the team labels.
COUNTERS = {
    "embeddings": ("sam_embedding_seconds_count", {}),
    "embedding seconds": ("sam_embedding_seconds_sum", {}),
    "warm-ups queued": ("sam_warmups_total", {"outcome": "queued"}),
    "clicks waiting for an embedding": ("sam_cache_lookups_total", {"result": "miss"}),
    "clicks from the cache": ("sam_cache_lookups_total", {"result": "hit"}),
    "forwarded": ("sam_forwarded_total", {"outcome": "answered"}),
}


@dataclass(frozen=True)
class Scenario:
    labelers: int
    images: int
    further_clicks: int
    think_seconds: float
    click_pause_seconds: float

    def describe(self) -> str:
        return (f"{self.labelers} labelers at once, {self.images} images each (their own): open the task, think "
                f"{self.think_seconds:g} s, click, {self.further_clicks} further clicks {self.click_pause_seconds:g} s "
                "apart, next image")


@dataclass
class Waits:
    opening: list[float] = field(default_factory=list)
    first: list[float] = field(default_factory=list)
    further: list[float] = field(default_factory=list)


def timed(request: Callable[[], object]) -> float:
    started = time.perf_counter()
    request()
    return time.perf_counter() - started


def describe(seconds: Sequence[float]) -> str:
    p90 = statistics.quantiles(seconds, n=10, method="inclusive")[-1] if len(seconds) > 1 else seconds[0]
    return f"median {statistics.median(seconds):.2f} s, p90 {p90:.2f} s, max {max(seconds):.2f} s (n={len(seconds)})"


def click_checked(project: SamProject, task: dict) -> None:
    width, height = project.sizes[task["id"]]
    if project.mask_pixels(project.click(task)) != width * height:
        sys.exit(f"task {task['id']}: the mask is not of its image's size {width}x{height}")


def label(api: LabelStudioClient, project: SamProject, tasks: list[dict], scenario: Scenario, waits: Waits) -> None:
    """One labeler's session."""
    for task in tasks:
        waits.opening.append(timed(lambda: api.get(f"/api/tasks/{task['id']}")))
        # The labeler looks at the image: the scenario's pauses, not waits for the backend.
        time.sleep(scenario.think_seconds)
        waits.first.append(timed(lambda: click_checked(project, task)))
        for _ in range(scenario.further_clicks):
            time.sleep(scenario.click_pause_seconds)
            waits.further.append(timed(lambda: click_checked(project, task)))


def registered(stack: LiveStack, api: LabelStudioClient, url: str, title: str) -> SamProject:
    """A project the reconciler connects to the backend at `url`; its self-test has run (the
    backend has loaded), and its line is printed: its first click is one labeler alone on an image."""
    lines, projects = run(api, document(stack, title, url))
    print(f"  {self_test_line(lines).split(': ', 1)[1]}")
    return SamProject(stack, api, projects[title])


def team_labels(api: LabelStudioClient, project: SamProject, scenario: Scenario) -> Waits:
    # The self-test clicked the first tasks: the team labels images no one has opened yet.
    fresh = project.tasks[CONCURRENT_PREDICTIONS:]
    shares = [fresh[index * scenario.images:(index + 1) * scenario.images] for index in range(scenario.labelers)]
    waits = Waits()
    with ThreadPoolExecutor(max_workers=scenario.labelers) as team:
        list(team.map(lambda share: label(api, project, share, scenario, waits), shares))
    return waits


def print_waits(waits: Waits) -> None:
    print(f"  opening a task: {describe(waits.opening)}")
    print(f"  first click on an image:  {describe(waits.first)}")
    print(f"  further click on it:      {describe(waits.further)}")


def measure_upstream(stack: LiveStack, api: LabelStudioClient, backend: RealBackend, workers: int, cpu_limit: str,
                     scenario: Scenario, work_dir: Path) -> None:
    evaluation = evaluate("dev", {**UPSTREAM_MOBILE_SAM, "sam.workers": workers, "sam.resources.requests.cpu": "1",
                                  "sam.resources.limits.cpu": cpu_limit})
    environment = deployment_environment(stack, work_dir, evaluation)
    assert environment["THREADS"] == "1", environment["THREADS"]
    settings = ", ".join(f"{name}={environment[name]}" for name in UPSTREAM_VARIABLES)
    print(f"upstream example, MobileSAM, sam.workers {workers} ({settings}, limits.cpu {cpu_limit}):")
    with running_real_backend(backend, environment, work_dir, stack.log_dir) as url:
        waits = team_labels(api, registered(stack, api, url, f"SAM team, upstream, {workers} workers"), scenario)
    images = len(waits.first)
    # A worker keeps only the image it embedded last: a further click that finds another image
    # there (another labeler's, or the other worker's) embeds again and takes about as long as a
    # first click; so does one queued behind another labeler's embedding.
    threshold = statistics.median(waits.first) / 2
    slow = sum(1 for seconds in waits.further if seconds > threshold)
    print_waits(waits)
    print(f"  embeddings: {images} first clicks on {images} images, each one, and {slow} of {len(waits.further)} "
          f"further clicks took as long (over {threshold:.2f} s, half the median first click): up to "
          f"{images + slow} for {images} images")


def counters(urls: Sequence[str]) -> list[dict[str, float]]:
    return [{name: metric(url, series, **labels) for name, (series, labels) in COUNTERS.items()} for url in urls]


def measure_ours(stack: LiveStack, api: LabelStudioClient, replicas: int, cores: int, scenario: Scenario,
                 work_dir: Path) -> None:
    # The machine's cores, split between the replicas as pods on their own CPUs would have them.
    cpu_limit = str(max(1, cores // replicas))
    evaluation = evaluate("dev", {"sam.model": "sam2.1-tiny", "sam.replicas": replicas,
                                  "sam.resources.requests.cpu": "1", "sam.resources.limits.cpu": cpu_limit})
    environment = deployment_environment(stack, work_dir, evaluation)
    where = (f"{replicas} replicas of limits.cpu {cpu_limit}, Label Studio calling replica 1 as through the Service"
             if replicas > 1 else f"1 replica, limits.cpu {cpu_limit}")
    print(f"ours, SAM 2.1 tiny, {where} (OMP_NUM_THREADS={environment['OMP_NUM_THREADS']}):")
    with running_sam_servers(environment, work_dir, stack.log_dir, replicas=replicas) as urls:
        project = registered(stack, api, urls[0], f"SAM team, ours, {replicas} replicas")
        before = counters(urls)
        waits = team_labels(api, project, scenario)
        after = counters(urls)
    counted = [{name: end[name] - start[name] for name in COUNTERS} for start, end in zip(before, after)]
    total = {name: sum(replica[name] for replica in counted) for name in COUNTERS}
    clicks = int(total["clicks from the cache"] + total["clicks waiting for an embedding"])
    print_waits(waits)
    print(f"  embeddings: {total['embeddings']:.0f} for {len(waits.first)} images, "
          f"{total['embedding seconds'] / max(total['embeddings'], 1):.2f} s each on average; warm-ups queued as "
          f"tasks opened: {total['warm-ups queued']:.0f}; clicks that waited for an embedding: "
          f"{total['clicks waiting for an embedding']:.0f} of {clicks}")
    if replicas > 1:
        for number, replica in enumerate(counted, start=1):
            print(f"  replica {number}: {replica['embeddings']:.0f} embeddings, passed {replica['forwarded']:.0f} "
                  "requests on to the image's owner")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labelers", type=int, default=4, help="labelers clicking at once")
    parser.add_argument("--images", type=int, default=3, help="images each labeler labels")
    parser.add_argument("--clicks", type=int, default=3, help="further clicks on each image")
    parser.add_argument("--think", type=float, default=3.0, help="seconds from opening a task to its first click")
    parser.add_argument("--click-pause", type=float, default=1.0, help="seconds between further clicks")
    parser.add_argument("--side", type=int, default=1024, help="the images' width and height in pixels (about)")
    parser.add_argument("--cpu-limit", type=int, default=os.cpu_count() or 1, help="sam.resources.limits.cpu")
    parser.add_argument("--replicas", type=int, nargs="*", default=[1, 2], help="our server's replica counts")
    parser.add_argument("--upstream", action="store_true", help="also the upstream example (needs its env)")
    parser.add_argument("--upstream-workers", type=int, nargs="*", default=[1, 2], help="its sam.workers values")
    args = parser.parse_args(argv)
    scenario = Scenario(args.labelers, args.images, args.clicks, args.think, args.click_pause)
    upstream = upstream_backend(args.upstream)
    if args.replicas:
        server_python()
    images = CONCURRENT_PREDICTIONS + scenario.labelers * scenario.images
    print(f"SAM for a team, {machine()}")
    print(f"Scenario: {scenario.describe()}; images of about {args.side}x{args.side} (each its own size); "
          f"Label Studio 1.23.2 under uWSGI on PostgreSQL, moto")
    if upstream:
        print(f"Upstream: {describe_upstream(upstream)}")
    print(f"Ours: sam-server with SAM 2.1 tiny, torch {torch_version(SERVER_PYTHON)}")
    print("Both with random weights on the CPU; different models: compare what a labeler waits and how often an "
          "image is embedded")
    with tempfile.TemporaryDirectory(prefix="labeling-sam-team-") as work:
        sides = tuple(args.side + index for index in range(images))
        # Each click holds a uWSGI process, and a first click's download another.
        with sam_stack(Path(work) / "stack", image_sides=sides, uwsgi_processes=max(10, 2 * scenario.labelers + 2)) \
                as stack:
            api = LabelStudioClient(stack.label_studio_url, stack.admin.token)
            for workers in args.upstream_workers if upstream else []:
                measure_upstream(stack, api, upstream, workers, str(args.cpu_limit), scenario,
                                 Path(work) / f"upstream-{workers}")
            for replicas in args.replicas:
                measure_ours(stack, api, replicas, args.cpu_limit, scenario, Path(work) / f"ours-{replicas}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
