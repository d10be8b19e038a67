"""Prints the offline plan time of each stack against a process that only imports the same
SDK modules, and the fast test suite's time as `make test-fast` runs it.

    python -m benchmarks.plan_and_tests

Each figure is the wall time of a fresh process, as a user or CI would see it. The plan's
baseline imports exactly the SDK modules (pulumi*, yaml, helm_python) that a plan of the
stack leaves loaded, so the ratio is what the program, its evaluation and the chart render
add to imports nobody can avoid. Targets on a 2-core machine: each plan within 2x its
baseline, the fast suite (tests not marked slow) under 60 s.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time

from components import PROJECT_ROOT

RUNS = 3
PLAN_RATIO_TARGET = 2.0
FAST_SUITE_TARGET_SECONDS = 60.0
# Third-party SDKs: what any program declaring these resources imports.
SDK_PACKAGES = ("pulumi", "pulumi_aws", "pulumi_kubernetes", "pulumi_random", "yaml", "helm_python")
# The loop as people run it before a commit, environment checks included.
FAST_SUITE = ["make", "--silent", "test-fast"]


def wall_time(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=PROJECT_ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def sdk_modules_of_plan(stack: str, out: str) -> list[str]:
    """The SDK modules loaded once a plan of `stack` has run."""
    script = (f"import json, sys; from tools import plan; plan.main([{stack!r}, '--out', {out!r}]); "
              f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {SDK_PACKAGES!r})))")
    shown = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, check=True, capture_output=True,
                           text=True)
    return json.loads(shown.stdout.splitlines()[-1])


def median_of(command: list[str]) -> float:
    return statistics.median(wall_time(command) for _ in range(RUNS))


def main() -> None:
    with tempfile.TemporaryDirectory() as out:
        for stack in ("dev", "prod"):
            modules = sdk_modules_of_plan(stack, out)
            imports = median_of([sys.executable, "-c", "import " + ", ".join(modules)])
            plan = median_of([sys.executable, "-m", "tools.plan", stack, "--out", out])
            ratio = plan / imports
            print(f"offline plan {stack}: median {plan:.2f} s over {RUNS} runs; importing its {len(modules)} SDK "
                  f"modules alone {imports:.2f} s; ratio {ratio:.2f} (target <= {PLAN_RATIO_TARGET:.1f}: "
                  f"{'met' if ratio <= PLAN_RATIO_TARGET else 'missed'})")
    suite = wall_time(FAST_SUITE)
    print(f"fast test suite (make test-fast): {suite:.1f} s (target < {FAST_SUITE_TARGET_SECONDS:.0f} s: "
          f"{'met' if suite < FAST_SUITE_TARGET_SECONDS else 'missed'})")


if __name__ == "__main__":
    main()
