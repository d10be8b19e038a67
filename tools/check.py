"""Guardrail counts at a glance: `python -m tools.check`.

Prints the policy pack's size, what each stack's objects (declared, and rendered by its
Helm release: `tools.manifests.stack_objects`) yield under the pack, kubernetes-validate
and checkov, and how many examples the hypothesis properties ran (counted by hypothesis
itself, from a pytest run of tests/test_config_fuzz.py). Exits non-zero when a stack
breaks a mandatory policy outside tools/policy_skips.py, an object is invalid, checkov
fails a check outside tools/checkov_skips.py, or a stack's chart cannot be rendered.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from pulumi_policy import EnforcementLevel

from policy.guardrails import ALL_POLICIES
from components import PROJECT_ROOT
from tools.checkov_scan import CHECKOV, scan
from tools.checkov_skips import CHECKOV_SKIPS
from tools.manifests import stack_objects
from tools.object_validation import KUBERNETES_VERSION, object_problem
from tools.policy_check import blocking, mandatory, run_pack
from tools.stack_eval import STACKS, evaluate

FUZZ_TESTS = "tests/test_config_fuzz.py"


def invalid_objects(objects: list[dict]) -> int:
    return sum(1 for obj in objects if object_problem(obj))


def fuzz_counts() -> tuple[dict[str, int], bool]:
    """Examples each property ran, from hypothesis' own statistics, and whether pytest passed."""
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", FUZZ_TESTS, "-q", "-p", "no:cacheprovider", "--hypothesis-show-statistics"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, "TESTS": "full"},
    )
    counts: dict[str, int] = {}
    test = None
    for line in completed.stdout.splitlines():
        if header := re.match(rf"^{re.escape(FUZZ_TESTS)}::(\w+):$", line.strip()):
            test = header.group(1)
        elif test and (phase := re.search(r"(\d+) passing, (\d+) failing", line)):
            counts[test] = counts.get(test, 0) + int(phase.group(1)) + int(phase.group(2))
    return counts, completed.returncode == 0


def main() -> int:
    ok = True
    levels = [p.enforcement_level for p in ALL_POLICIES]
    print(f"policies: {len(ALL_POLICIES)} ({levels.count(EnforcementLevel.MANDATORY)} mandatory, "
          f"{levels.count(EnforcementLevel.ADVISORY)} advisory)")

    stacks = {stack: stack_objects(evaluate(stack)) for stack in STACKS}
    for stack, objects in stacks.items():
        for hint in objects.not_rendered:
            ok = False
            print(f"{stack}: chart objects not rendered: {hint}")
        violations = run_pack(objects)
        found = len(mandatory(violations))
        unexplained = len(blocking(violations, objects))
        declared_invalid, rendered_invalid = invalid_objects(objects.declared), invalid_objects(objects.rendered)
        ok = ok and unexplained == 0 and declared_invalid == rendered_invalid == 0
        print(f"{stack}: policy violations {unexplained} mandatory, {found - unexplained} skipped (each with its "
              f"reason in tools/policy_skips.py), {len(violations) - found} advisory; Kubernetes objects validated "
              f"against {KUBERNETES_VERSION}: declared {len(objects.declared) - declared_invalid} valid, "
              f"{declared_invalid} invalid; rendered by the chart {len(objects.rendered) - rendered_invalid} valid, "
              f"{rendered_invalid} invalid")

    if CHECKOV.exists():
        with tempfile.TemporaryDirectory() as workdir:
            scans = scan(stacks, Path(workdir))
        for stack, result in scans.items():
            skipped = [f for f in result.failed if any(s.covers(stack, f.check, f.resource) for s in CHECKOV_SKIPS)]
            unexplained = len(result.failed) - len(skipped)
            ok = ok and unexplained == 0
            print(f"{stack}: checkov over {len(stacks[stack].declared)} declared + {len(stacks[stack].rendered)} "
                  f"rendered objects: {len(result.passed)} passed, {unexplained} failed, "
                  f"{len(skipped)} skipped (each skip with its reason in tools/checkov_skips.py)")
    else:
        ok = False
        print(f"checkov: not run, {CHECKOV} is missing")

    counts, passed = fuzz_counts()
    ok = ok and passed
    print(f"fuzz examples: {sum(counts.values())} "
          f"({', '.join(f'{name} {count}' for name, count in counts.items())}); pytest {'passed' if passed else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
