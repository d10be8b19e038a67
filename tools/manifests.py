"""The Kubernetes objects a stack declares, rendered as the provider would send them,
with every secret value masked: the input of kubernetes-validate and checkov.
"""

from __future__ import annotations

import base64
from typing import Any

import yaml

from tools.stack_eval import Evaluation

# The oldest Kubernetes minor the platform supports: objects are validated against its
# schemas (kubernetes-validate), where strict mode also rejects unknown fields.
KUBERNETES_VERSION = "1.33"

MASK = "[masked]"
# Secret.data (and ConfigMap.binaryData) must stay base64 after masking.
MASK_BASE64 = base64.b64encode(MASK.encode()).decode()


def _mask_leaves(value: Any, base64_values: bool) -> Any:
    if isinstance(value, dict):
        return {k: _mask_leaves(v, base64_values) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_leaves(v, base64_values) for v in value]
    return MASK_BASE64 if base64_values else MASK


def _masked(value: Any, path: str, secret_paths: set[str]) -> Any:
    """Mask each leaf under a secret path, keeping the shape (a Secret's keys stay visible)."""
    if path in secret_paths:
        return _mask_leaves(value, base64_values=path.split(".")[0] in ("data", "binaryData"))
    if isinstance(value, dict):
        return {k: _masked(v, f"{path}.{k}" if path else k, secret_paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, f"{path}[{i}]", secret_paths) for i, v in enumerate(value)]
    return value


def _plain_numbers(value: Any) -> Any:
    """Pulumi carries every number as a float; the API server receives 9090, not 9090.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_numbers(v) for v in value]
    return value


def rendered_objects(evaluation: Evaluation) -> list[dict]:
    """Each declared Kubernetes object (Helm releases excluded), secrets masked."""
    return [
        _plain_numbers(_masked(manifest, "", resource.secret_paths))
        for resource in evaluation.resources
        if (manifest := resource.kubernetes_manifest) is not None
    ]


def rendered_yaml(evaluation: Evaluation) -> str:
    return yaml.safe_dump_all(rendered_objects(evaluation), sort_keys=False)
