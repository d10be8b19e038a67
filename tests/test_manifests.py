"""Every Kubernetes object a stack declares is valid for the target cluster version, and
the program declares the same thing every time it runs."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.conftest import STACKS, evaluate_cached
from tools.manifests import KUBERNETES_VERSION
from tools.stack_eval import evaluate

EXPECTED_KINDS = {"Namespace", "Secret", "Service", "Deployment", "NetworkPolicy", "Ingress"}


def object_id(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


@pytest.mark.parametrize("stack", STACKS)
def test_every_object_is_valid_kubernetes(stack):
    objects = evaluate_cached(stack).kubernetes_objects()
    problems = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{object_id(obj)}: {error.message} at {'.'.join(map(str, error.path))}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError):
            # A CRD (cert-manager Certificate, ...) has no built-in schema: decide consciously.
            problems.append(f"{object_id(obj)}: no Kubernetes {KUBERNETES_VERSION} schema for {obj.get('apiVersion')}")
    assert problems == []
    assert EXPECTED_KINDS <= {o["kind"] for o in objects}


def _declaration(resource) -> tuple:
    return resource.type, resource.name, resource.inputs, sorted(resource.secret_paths), resource.protect


@pytest.mark.parametrize("stack", STACKS)
def test_two_runs_declare_identical_resources(stack):
    """Nothing random, time-based or order-dependent leaks into inputs: preview equals up."""
    first, second = evaluate(stack), evaluate(stack)
    declared = {r.urn: _declaration(r) for r in first.resources}
    assert declared.keys() == {r.urn for r in second.resources}
    for resource in second.resources:
        assert _declaration(resource) == declared[resource.urn], resource.urn
