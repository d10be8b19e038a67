"""Prints the offline plan time of each stack and the fast test suite's time.

    python -m benchmarks.plan_and_tests

Each figure is the wall time of a fresh process, as a user or CI would see it (imports
of pulumi, pulumi-aws and pulumi-kubernetes included). Targets on a 2-core machine:
plan under 5 s per stack, the fast suite (tests not marked slow) under 60 s.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from components import PROJECT_ROOT

PLAN_RUNS = 3


def wall_time(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=PROJECT_ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    for stack in ("dev", "prod"):
        runs = [wall_time([sys.executable, "-m", "tools.plan", stack]) for _ in range(PLAN_RUNS)]
        print(f"offline plan {stack}: median {statistics.median(runs):.2f} s over {PLAN_RUNS} runs "
              f"(min {min(runs):.2f} s, max {max(runs):.2f} s)")
    suite = wall_time([sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider"])
    print(f"fast test suite (-m 'not slow'): {suite:.1f} s")


if __name__ == "__main__":
    main()
