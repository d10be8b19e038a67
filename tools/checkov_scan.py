"""Scan the stacks' Kubernetes objects with checkov, offline, in one run.

checkov has no Pulumi scanner, so each stack's objects, declared and rendered by its Helm
release (`tools.manifests.stack_objects`), are written to `<stack>.yaml` (secrets masked)
and checkov reads them all at once: its start-up costs more than the checks. Declared and
rendered objects share a file, so checks across objects (a NetworkPolicy for every pod)
see both. It lives in its own environment, .venv-checkov (its pins clash with the
project's); see docs/guardrails.md.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from components import PROJECT_ROOT
from tools.manifests import StackObjects

CHECKOV = PROJECT_ROOT / ".venv-checkov" / "bin" / "checkov"
# Offline: no check-ID mapping download, no policy download.
CHECKOV_ENV = {"BC_SKIP_MAPPING": "TRUE"}


@dataclass(frozen=True)
class CheckResult:
    check: str
    name: str
    resource: str

    def __str__(self) -> str:
        return f"{self.check} {self.resource}: {self.name}"


@dataclass
class StackScan:
    stack: str
    passed: list[CheckResult] = field(default_factory=list)
    failed: list[CheckResult] = field(default_factory=list)


def _results(report: object) -> Mapping[str, list]:
    # One framework gives one report object; checkov answers with a list when there are several.
    reports = report if isinstance(report, list) else [report]
    merged: dict[str, list] = {"passed_checks": [], "failed_checks": []}
    for one in reports:
        for key in merged:
            merged[key].extend(one.get("results", {}).get(key, []))
    return merged


def scan(stacks: Mapping[str, StackObjects], workdir: Path) -> dict[str, StackScan]:
    """checkov's passed and failed checks for each stack's objects."""
    files = {}
    for stack, objects in stacks.items():
        files[stack] = workdir / f"{stack}.yaml"
        files[stack].write_text(objects.all_masked_yaml())
    completed = subprocess.run(
        [str(CHECKOV), "--framework", "kubernetes", "-o", "json", "--skip-download",
         "-f", *map(str, files.values())],
        capture_output=True, text=True, env={**os.environ, **CHECKOV_ENV}, timeout=300,
    )
    try:
        results = _results(json.loads(completed.stdout))
    except ValueError:
        raise RuntimeError(f"checkov gave no JSON (exit {completed.returncode}): {completed.stderr[-2000:]}") from None
    stack_of_file = {str(path.resolve()): stack for stack, path in files.items()}
    scans = {stack: StackScan(stack) for stack in stacks}
    for outcome, key in (("passed", "passed_checks"), ("failed", "failed_checks")):
        for item in results[key]:
            stack = stack_of_file[str(Path(item["file_abs_path"]).resolve())]
            getattr(scans[stack], outcome).append(CheckResult(item["check_id"], item["check_name"], item["resource"]))
    return scans
