"""The shape of the code and of what it declares: short modules, narrow component inputs,
one naming rule, and a deploy whose wait chain is no longer than its data needs."""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import re
from typing import Optional

import pytest

from components import PROJECT_ROOT
from components.settings import Settings
from tests.conftest import evaluate_cached
from tests.variants import VARIANTS
from tools.stack_eval import Evaluation

COMPONENTS = PROJECT_ROOT / "components"
MAX_MODULE_LINES = 400
# The data a deploy needs, in order: an IAM user, its access key, the credentials Secret
# (or: a generated password, the platform Secret, the SAM Deployment), the ConfigMap or
# the Helm release, the reconciler Job.
MAX_WAIT_CHAIN = 5


def component_modules() -> list[str]:
    return sorted(".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
                  for path in COMPONENTS.rglob("*.py") if path.name != "__init__.py")


@pytest.mark.parametrize("path", sorted(COMPONENTS.rglob("*.py")), ids=lambda p: str(p.relative_to(COMPONENTS)))
def test_every_module_reads_in_one_sitting(path):
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES


def _component_classes() -> list[tuple[str, ast.ClassDef, str]]:
    """(module, class, type token) of every ComponentResource in components/."""
    found = []
    for module in component_modules():
        tree = ast.parse((PROJECT_ROOT / (module.replace(".", "/") + ".py")).read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and any(ast.unparse(base) == "pulumi.ComponentResource" for base in node.bases):
                [token] = [call.args[0].value for call in ast.walk(node) if isinstance(call, ast.Call)
                           and ast.unparse(call.func) == "super().__init__"]
                found.append((module, node, token))
    return found


def test_type_tokens_name_their_class():
    classes = _component_classes()
    assert len(classes) >= 8
    for module, node, token in classes:
        package, area, name = token.split(":")
        assert (package, name) == ("labeling", node.name), f"{module}.{node.name} registers as {token}"


def test_no_component_input_carries_the_whole_settings():
    args_classes = [getattr(importlib.import_module(module), name) for module in component_modules()
                    for name in dir(importlib.import_module(module)) if name.endswith("Args")]
    assert len({id(cls) for cls in args_classes}) >= 7
    for cls in args_classes:
        assert dataclasses.is_dataclass(cls), cls
        for field in dataclasses.fields(cls):
            # Annotations are strings here (`from __future__ import annotations`).
            hint = field.type if isinstance(field.type, str) else field.type.__name__
            assert not re.search(rf"\b{Settings.__name__}\b", hint), f"{cls.__name__}.{field.name} is the whole Settings"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_children_are_named_after_their_component(variant):
    evaluation = evaluate_cached(*VARIANTS[variant])
    components = {r.urn: r for r in evaluation.resources if not r.custom}
    for resource in evaluation.resources:
        parent = components.get(resource.parent or "")
        if parent is not None:
            assert resource.name.startswith(f"{parent.name}-"), (resource.name, parent.name)


def wait_chain(evaluation: Evaluation, to: Optional[str] = None) -> tuple[str, ...]:
    """The longest path of created resources each waiting for the one before (providers and
    components left out; a dependency on a component is one on each of its resources); with
    `to`, the longest one ending at the resource of that name."""
    by_urn = {r.urn: r for r in evaluation.resources}
    created = {urn for urn, r in by_urn.items() if r.custom and not r.type.startswith("pulumi:providers:")}

    def created_under(urn: str) -> set[str]:
        if urn in created:
            return {urn}
        return set().union(*(created_under(r.urn) for r in evaluation.resources if r.parent == urn))

    @functools.lru_cache(maxsize=None)
    def longest_to(urn: str) -> tuple[str, ...]:
        waits_for = set().union(*(created_under(d) for d in by_urn[urn].dependencies if d in by_urn)) - {urn}
        return max((longest_to(d) for d in waits_for), key=len, default=()) + (by_urn[urn].name,)

    return max((longest_to(urn) for urn in created if to is None or by_urn[urn].name == to), key=len)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_deploy_waits_no_longer_than_its_data_needs(variant):
    chain = wait_chain(evaluate_cached(*VARIANTS[variant]))
    assert len(chain) <= MAX_WAIT_CHAIN, " -> ".join(chain)


def test_the_wait_chain_follows_data_dependencies():
    """The measure is live: the reconciler Job waits for Label Studio's release through its URL."""
    evaluation = evaluate_cached(*VARIANTS["no-sam"])
    chain = wait_chain(evaluation, to="labeling-configuration-job")
    assert chain[-2:] == ("labeling-label-studio-release", "labeling-configuration-job")
    # The export re-sync calls Label Studio too, so it waits as long, never longer.
    assert len(chain) == len(wait_chain(evaluation))
