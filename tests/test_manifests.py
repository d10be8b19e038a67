"""Every Kubernetes object of a stack, declared or rendered by its Helm release, is valid
for the target cluster version, and the program declares the same thing every time it
runs."""

from __future__ import annotations

import pytest

from tests.conftest import ALL_STACKS, objects_cached
from tests.variants import VARIANTS
from tools.manifests import object_id
from tools.object_validation import object_problem
from tools.stack_eval import evaluate

EXPECTED_KINDS = {"Namespace", "Secret", "Service", "Deployment", "NetworkPolicy", "Ingress"}
# The chart's app Deployment, Service and ServiceAccount are among them in every configuration.
EXPECTED_RENDERED_KINDS = {"Deployment", "Service", "ServiceAccount"}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_object_is_valid_kubernetes(variant):
    stack = objects_cached(*VARIANTS[variant])
    objects = stack.all()
    problems = [f"{object_id(obj)}: {problem}" for obj in objects if (problem := object_problem(obj))]
    assert problems == []
    assert EXPECTED_KINDS - ({"Ingress"} if variant == "no-ingress" else set()) <= {o["kind"] for o in objects}
    assert EXPECTED_RENDERED_KINDS <= {o["kind"] for o in stack.rendered}


def _declaration(resource) -> tuple:
    return resource.type, resource.name, resource.inputs, sorted(resource.secret_paths), resource.protect


@pytest.mark.parametrize("stack", ALL_STACKS)
def test_two_runs_declare_identical_resources(stack):
    """Nothing random, time-based or order-dependent leaks into inputs: preview equals up."""
    first, second = evaluate(stack), evaluate(stack)
    declared = {r.urn: _declaration(r) for r in first.resources}
    assert declared.keys() == {r.urn for r in second.resources}
    for resource in second.resources:
        assert _declaration(resource) == declared[resource.urn], resource.urn
