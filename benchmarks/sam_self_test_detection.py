"""How often the deploy-time SAM self-test catches a backend that shares one predictor between
simultaneous requests, and how long it takes against healthy ones.

    .venv/bin/python -m benchmarks.sam_self_test_detection [--runs 20] [--upstream] [--upstream-workers 2]

The self-test (reconciler/sam_selftest.py) runs --runs times per backend as the reconciler runs it,
against Label Studio 1.23.2 under uWSGI on PostgreSQL with moto (tests/sam_live.py), on the same
project and the same running backend, as hourly reconciles meet a long-running pod. A run that
fails naming the shared predictor counts as caught, in the round it names; the first k rounds of
a run are exactly what a self-test of k rounds would have sent, so one set of runs gives the rate
for every number of rounds up to the self-test's. Backends:
- racy: the stand-in's model of the example's image defaults with 2 workers
  (tests/sam_contract_backend.py `racy`);
- the upstream example with THREADS=8, for each --upstream-workers (with --upstream, or when
  LABEL_STUDIO_ML_BACKEND_DIR is set), otherwise in the env the stack declares;
- healthy: the upstream example in the env the stack declares (THREADS=1), and our server (SAM
  2.1 tiny, 1 replica), where the self-test passes: its duration is what every reconcile pays.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import ContextManager, Iterator, Optional

from benchmarks.sam_setup import describe_upstream, machine, upstream_backend
from reconciler.client import LabelStudioClient
from reconciler.sam_selftest import CONCURRENT_PREDICTIONS, SIMULTANEOUS_ROUNDS
from tests.live_stack import LiveStack
from tests.sam_live import deployment_environment, document, rounds_until_caught, run, sam_stack, stand_in
from tests.sam_real_backend import RealBackend, running_real_backend
from tests.sam_server_process import running_sam_servers, server_python
from tests.variants import UPSTREAM_MOBILE_SAM
from tools.stack_eval import evaluate

CORES = os.cpu_count() or 1


def measure(stack: LiveStack, api: LabelStudioClient, name: str, backend: ContextManager[str], runs: int) -> None:
    """The self-test `runs` times against the backend `backend` starts (it yields its URL)."""
    title = f"SAM self-test {api.get('/api/projects/')['count'] + 1}"
    with backend as url:
        # Registered with sam.selfTest warn: a racy backend is connected all the same.
        _, projects = run(api, {**document(stack, title, url), "samSelfTest": "warn"})
        started = time.monotonic()
        caught = rounds_until_caught(api, projects[title], url, runs)
        seconds = (time.monotonic() - started) / runs
    found = [round_number for round_number in caught if round_number is not None]
    if not found:
        print(f"{name}: passed {runs} of {runs} runs, {seconds:.1f} s each")
        return
    within = ", ".join(f"{rounds}: {sum(1 for number in found if number <= rounds)}"
                       for rounds in range(1, SIMULTANEOUS_ROUNDS + 1))
    print(f"{name}: caught in {len(found)} of {runs} runs ({seconds:.1f} s a run)")
    print(f"  caught within k rounds, of {runs}: {within}")


def upstream(stack: LiveStack, backend: RealBackend, workers: int, work_dir: Path,
             **replacements: str) -> ContextManager[str]:
    evaluation = evaluate("dev", {**UPSTREAM_MOBILE_SAM, "sam.workers": workers, "sam.resources.requests.cpu": "1",
                                  "sam.resources.limits.cpu": str(CORES)})
    environment = deployment_environment(stack, work_dir, evaluation, **replacements)
    return running_real_backend(backend, environment, work_dir, stack.log_dir)


@contextlib.contextmanager
def ours(stack: LiveStack, work_dir: Path) -> Iterator[str]:
    evaluation = evaluate("dev", {"sam.model": "sam2.1-tiny", "sam.resources.requests.cpu": "1",
                                  "sam.resources.limits.cpu": str(CORES)})
    with running_sam_servers(deployment_environment(stack, work_dir, evaluation), work_dir, stack.log_dir) as [url]:
        yield url


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="self-test runs per backend")
    parser.add_argument("--upstream", action="store_true", help="also the upstream example (needs its env)")
    parser.add_argument("--upstream-workers", type=int, nargs="*", default=[2], help="its WORKERS with THREADS=8")
    args = parser.parse_args(argv)
    example = upstream_backend(args.upstream)
    server_python()
    print(f"SAM self-test detection, {machine()}")
    print(f"Each run: {CONCURRENT_PREDICTIONS} tasks clicked alone, then at once, {SIMULTANEOUS_ROUNDS} rounds, "
          "through Label Studio 1.23.2 (uWSGI, PostgreSQL), moto")
    if example:
        print(f"Upstream: {describe_upstream(example)}")
    with tempfile.TemporaryDirectory(prefix="labeling-sam-detection-") as work:
        with sam_stack(Path(work) / "stack") as stack:
            api = LabelStudioClient(stack.label_studio_url, stack.admin.token)
            measure(stack, api, "racy stand-in (2 workers, THREADS=8)", stand_in(stack, Path(work) / "racy", "racy"),
                    args.runs)
            for workers in args.upstream_workers if example else []:
                measure(stack, api, f"upstream example, WORKERS={workers}, THREADS=8",
                        upstream(stack, example, workers, Path(work) / f"racy-{workers}", THREADS="8"), args.runs)
            if example:
                measure(stack, api, "upstream example as the stack runs it (WORKERS=2, THREADS=1)",
                        upstream(stack, example, 2, Path(work) / "healthy"), min(args.runs, 3))
            measure(stack, api, "ours (SAM 2.1 tiny, 1 replica)", ours(stack, Path(work) / "ours"), min(args.runs, 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
