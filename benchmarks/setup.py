"""Setup times: a fresh clone to a finished offline plan and to a passing fast suite, each
next to the same command in this (warm) checkout.

    python -m benchmarks.setup [--plan-runs 3] [--skip-suite]

A fresh clone is `git clone` of this checkout's committed HEAD into a temporary directory
with ../shared linked beside it, as CI lays it out; package caches (uv's, pip's, npm's) stay
warm, so the figures are what a second checkout on the same machine costs. Each figure is
the wall time of the whole make command: bootstrapping uv, syncing the environments from
the locks, and the run itself. Targets (issue 17): the fresh plan within 4x the warm one
and under 10 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from components import PROJECT_ROOT

SHARED = PROJECT_ROOT.parent / "shared"
PLAN = ["make", "plan", "STACK=dev"]
FAST_SUITE = ["make", "test-fast"]


def timed(command: list[str], cwd: Path, log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as out:
        completed = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(f"{' '.join(command)} failed in {cwd} (exit {completed.returncode}):\n"
                 + "\n".join(log.read_text().splitlines()[-30:]))
    return elapsed


def fresh_clone(parent: Path) -> Path:
    clone = parent / "main"
    subprocess.run(["git", "clone", "--quiet", str(PROJECT_ROOT), str(clone)], check=True)
    (parent / "shared").symlink_to(SHARED)
    return clone


def in_fresh_clones(command: list[str], runs: int, logs: Path) -> list[float]:
    times = []
    for run in range(runs):
        with tempfile.TemporaryDirectory(prefix="labeling-fresh-") as parent:
            clone = fresh_clone(Path(parent))
            times.append(timed(command, clone, logs / f"fresh-{command[1]}-{run}.log"))
    return times


def describe(times: list[float]) -> str:
    if len(times) == 1:
        return f"{times[0]:.1f} s"
    return f"median {statistics.median(times):.2f} s over {len(times)} runs (min {min(times):.2f}, max {max(times):.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan-runs", type=int, default=3)
    parser.add_argument("--skip-suite", action="store_true", help="only the plan figures")
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        sys.exit(f"no {SHARED}: the clones need ../shared beside them")
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                           capture_output=True, text=True, check=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()
    print(f"setup benchmark of commit {head} on {os.cpu_count()} cores"
          + (" (uncommitted changes are not in the fresh clones)" if dirty else ""))
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("note: PYTHONDONTWRITEBYTECODE is set: a module without a .pyc yet is compiled on every run")

    with tempfile.TemporaryDirectory(prefix="labeling-bench-logs-") as logs_dir:
        logs = Path(logs_dir)
        timed(PLAN, PROJECT_ROOT, logs / "warm-up.log")  # the warm checkout really is warm
        warm = [timed(PLAN, PROJECT_ROOT, logs / f"warm-plan-{run}.log") for run in range(args.plan_runs)]
        fresh = in_fresh_clones(PLAN, args.plan_runs, logs)
        ratio = statistics.median(fresh) / statistics.median(warm)
        print(f"make plan STACK=dev, warm checkout: {describe(warm)}")
        print(f"make plan STACK=dev, fresh clone:   {describe(fresh)}  ({ratio:.1f}x warm)")
        if args.skip_suite:
            return 0
        warm_suite = timed(FAST_SUITE, PROJECT_ROOT, logs / "warm-suite.log")
        fresh_suite = in_fresh_clones(FAST_SUITE, 1, logs)
        print(f"make test-fast, warm checkout: {describe([warm_suite])}")
        print(f"make test-fast, fresh clone:   {describe(fresh_suite)}  ({fresh_suite[0] / warm_suite:.1f}x warm)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
