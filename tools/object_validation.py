"""Whether a Kubernetes object is valid: built-in kinds against kubernetes-validate's schemas,
custom resources against their CRD (tools/custom_resources.py) or their own tool. Apart from
tools/manifests.py so that the offline plan, which validates nothing, never imports the
validators.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Optional

import kubernetes_validate
import kubernetes_validate.utils

from tools.custom_resources import SCHEMAS, custom_resource_problem

# kubernetes-validate reads and parses its schema files, the definitions megabytes of JSON, on
# every call (about 18 ms an object); they never change while a process runs.
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(kubernetes_validate.utils.schema_contents)

# The oldest Kubernetes minor the platform supports: objects are validated against its
# schemas (kubernetes-validate), where strict mode also rejects unknown fields.
KUBERNETES_VERSION = "1.33"

# Custom resources kubernetes-validate has no schema for and that a tool of their own judges.
CHECKED_BY_THEIR_OWN_TOOL = {
    ("monitoring.coreos.com/v1", "PrometheusRule"): "promtool check rules (tests/test_monitoring.py)",
}


def object_problem(obj: Mapping[str, Any]) -> Optional[str]:
    """None when the object is valid for KUBERNETES_VERSION (strict: unknown fields too), or for
    its CRD (tools/custom_resources.py), or is judged by its own tool (CHECKED_BY_THEIR_OWN_TOOL);
    else one line saying what is wrong."""
    kind = (obj.get("apiVersion"), obj.get("kind"))
    if kind in CHECKED_BY_THEIR_OWN_TOOL:
        return None
    if kind in SCHEMAS:
        return custom_resource_problem(obj)
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{error.message} at {'.'.join(map(str, error.path))}"
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError):
        # A custom resource without a schema in tools/custom_resources.py: add one, consciously.
        return f"no Kubernetes {KUBERNETES_VERSION} schema for {obj.get('apiVersion')}"
    return None
