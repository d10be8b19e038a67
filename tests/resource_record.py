"""The record of what each variant declares: URNs, and the inputs that a replacement would hang on.

    python -m tests.resource_record   # rewrite tests/fixtures/declared_resources.json

The committed record is the promise that a refactoring keeps every resource: a URN that
disappears must come back through an alias (tests/test_resource_identity.py resolves them
as the engine does). Rewrite it only when replacing a resource is the point of a change.
ConfigMap contents are kept as digests: they change with every reconciler release.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from tests.variants import VARIANTS
from tools.stack_eval import DeclaredResource, evaluate

RECORD = Path(__file__).resolve().parent / "fixtures" / "declared_resources.json"


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def recorded_inputs(resource: DeclaredResource) -> Any:
    inputs = resource.masked_inputs()
    if resource.type == "kubernetes:core/v1:ConfigMap" and isinstance(inputs.get("data"), dict):
        inputs = {**inputs, "data": {key: _digest(str(value)) for key, value in inputs["data"].items()}}
    return inputs


def record_of(resources: list[DeclaredResource]) -> list[dict[str, Any]]:
    return [{"urn": r.urn, "type": r.type, "name": r.name, "parent": r.parent, "protect": r.protect,
             "retainOnDelete": r.retain_on_delete, "inputs": recorded_inputs(r)} for r in resources]


def current_record() -> dict[str, list[dict[str, Any]]]:
    return {name: record_of(evaluate(v.stack, v.overrides, v.secrets).resources) for name, v in VARIANTS.items()}


def main() -> int:
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    RECORD.write_text(json.dumps(current_record(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {RECORD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
