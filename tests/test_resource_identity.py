"""Every resource the record holds keeps its identity: its URN, or an alias that resolves to it.

A resource whose URN changes without an alias is deleted and created anew: for the bucket,
the database or a generated password that is data loss. The record
(tests/fixtures/declared_resources.json) holds the URNs each configuration declared
before names and types were made uniform; this test resolves the program's aliases the
way the engine does (pulumi/pulumi pkg/resource/deploy/step_generator.go,
`generateAliases`, `collapseAliasToUrn`, `inheritedChildAlias`) and finds each old URN
again. Resources added since are allowed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import pytest

from tests.conftest import evaluate_cached
from tests.resource_record import RECORD
from tests.variants import VARIANTS

ROOT_STACK_TYPE = "pulumi:pulumi:Stack"

# Inputs that decide whether a data-holding resource is kept or replaced (or, for a
# generated password, regenerated): they must stay as recorded.
KEPT_INPUTS = {
    "aws:s3/bucket:Bucket": ("bucket",),
    "aws:rds/instance:Instance": ("engine", "dbName", "username", "storageEncrypted", "snapshotIdentifier", "port"),
    "random:index/randomPassword:RandomPassword": ("length", "special", "upper", "lower", "numeric"),
    "kubernetes:core/v1:Namespace": ("metadata",),
    "kubernetes:helm.sh/v3:Release": ("name", "namespace", "chart", "repositoryOpts"),
}


def _qualified_type(urn: str) -> str:
    return urn.split("::")[2]


def _name(urn: str) -> str:
    return urn.split("::", 3)[3]


def _urn(stack: str, project: str, type_: str, name: str, parent: Optional[str]) -> str:
    qualified = type_
    if parent and _qualified_type(parent) != ROOT_STACK_TYPE:
        qualified = f"{_qualified_type(parent)}${type_}"
    return f"urn:pulumi:{stack}::{project}::{qualified}::{name}"


@dataclass(frozen=True)
class Registration:
    """A resource as the engine names it: the qualified type is the whole parent chain."""

    urn: str
    type: str
    name: str
    parent: Optional[str]
    aliases: tuple[dict, ...] = ()


def engine_view(entries: Iterable[tuple[str, str, str, Optional[str], Iterable[dict]]]) -> list[Registration]:
    """(mock URN, type, name, parent mock URN, aliases) in registration order -> engine URNs.

    The mock monitor qualifies a URN by the parent's own type only, and keeps the root
    stack in it; the engine uses the whole chain of parent types and leaves the stack out.
    """
    engine_urn: dict[str, str] = {}
    registrations = []
    for mock_urn, type_, name, parent, aliases in entries:
        stack_and_project = mock_urn.split("::")[:2]
        parent_urn = engine_urn.get(parent or "")
        if parent and parent_urn is None:  # the root stack
            parent_urn = "::".join([*stack_and_project, ROOT_STACK_TYPE, "stack"])
        engine_urn[mock_urn] = _urn(stack_and_project[0].split(":")[2], stack_and_project[1], type_, name, parent_urn)
        registrations.append(Registration(engine_urn[mock_urn], type_, name, parent_urn, tuple(aliases)))
    return registrations


class AliasResolver:
    """The engine's step generator, reduced to finding each registration's old URN."""

    def __init__(self, old_urns: set[str]):
        self.old_urns = old_urns
        self.matched: dict[str, str] = {}  # new URN -> the old URN it took over

    def _collapse(self, resource: Registration, alias: dict[str, Any]) -> str:
        if "urn" in alias:
            return alias["urn"]
        spec = alias.get("spec", {})
        stack, project = resource.urn.split("::")[0].split(":")[2], resource.urn.split("::")[1]
        parent = spec.get("parentUrn") or resource.parent
        if spec.get("parentUrn"):
            parent = self.matched.get(parent, parent)
        if spec.get("noParent"):
            parent = None
        return _urn(spec.get("stack") or stack, spec.get("project") or project,
                    spec.get("type") or resource.type, spec.get("name") or resource.name, parent)

    def _inherited(self, type_: str, name: str, parent_name: str, parent_alias: str) -> str:
        # A child named `<parent>-<role>` follows its parent's old name.
        if name.startswith(parent_name):
            name = _name(parent_alias) + name[len(parent_name):]
        prefix = parent_alias.rsplit("::", 2)[0]
        return f"{prefix}::{_qualified_type(parent_alias)}${type_}::{name}"

    def aliases(self, resource: Registration) -> list[str]:
        found = [self._collapse(resource, alias) for alias in resource.aliases]
        parent_alias = self.matched.get(resource.parent or "")
        if parent_alias:
            parent_name = _name(resource.parent)
            found.append(self._inherited(resource.type, resource.name, parent_name, parent_alias))
            for alias_urn in list(found[:len(resource.aliases)]):
                found.append(self._inherited(_qualified_type(alias_urn).rsplit("$", 1)[-1], _name(alias_urn),
                                             parent_name, parent_alias))
        return list(dict.fromkeys(found))

    def resolve(self, resource: Registration) -> Optional[str]:
        """The old URN this registration takes over, if any (its own URN first, as the engine looks)."""
        if resource.urn in self.old_urns:
            return resource.urn
        for candidate in self.aliases(resource):
            if candidate in self.old_urns:
                self.matched[resource.urn] = candidate
                return candidate
        return None


def recorded() -> dict[str, list[dict[str, Any]]]:
    return json.loads(RECORD.read_text())


def recorded_registrations(variant: str) -> dict[str, dict[str, Any]]:
    """Engine URN -> recorded entry."""
    entries = recorded()[variant]
    view = engine_view((e["urn"], e["type"], e["name"], e["parent"], ()) for e in entries)
    return {registration.urn: entry for registration, entry in zip(view, entries)}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_recorded_resource_keeps_its_identity(variant):
    old = recorded_registrations(variant)
    stack, overrides, secrets = VARIANTS[variant]
    resources = evaluate_cached(stack, overrides, secrets).resources
    view = engine_view((r.urn, r.type, r.name, r.parent, r.aliases) for r in resources)
    resolver = AliasResolver(set(old))
    taken: dict[str, str] = {}
    for registration, resource in zip(view, resources):
        previous = resolver.resolve(registration)
        if previous is None:
            continue
        assert previous not in taken, f"{registration.urn} and {taken[previous]} both claim {previous}"
        taken[previous] = registration.urn
        if resource.custom:  # a component may change its type token; a cloud resource never
            assert old[previous]["type"] == resource.type, f"{registration.urn} changes the type of {previous}"
        for key in KEPT_INPUTS.get(resource.type, ()):
            assert resource.masked_inputs().get(key) == old[previous]["inputs"].get(key), (
                f"{resource.urn}: input {key} differs from the recorded {previous}")
        # Gaining protection keeps the resource (and is the point of protecting more); losing it does not.
        assert resource.protect or not old[previous]["protect"], f"{resource.urn}: protect dropped"
        assert resource.retain_on_delete or not old[previous]["retainOnDelete"], f"{resource.urn}: retainOnDelete dropped"
    lost = sorted(set(old) - set(taken))
    assert not lost, f"{variant}: these resources would be deleted and created anew: {lost}"


def test_the_resolver_finds_nothing_without_aliases():
    """The resolver is not lenient: a renamed resource with no alias is lost, with one it is found."""
    old = recorded_registrations("dev")
    [bucket] = [urn for urn, entry in old.items() if entry["type"] == "aws:s3/bucket:Bucket"]
    parent = next(urn for urn, entry in old.items() if entry["urn"] == old[bucket]["parent"])
    renamed = Registration(bucket.rsplit("::", 1)[0] + "::renamed-bucket", "aws:s3/bucket:Bucket", "renamed-bucket",
                           parent)
    assert AliasResolver(set(old)).resolve(renamed) is None
    aliased = Registration(renamed.urn, renamed.type, renamed.name, parent, ({"spec": {"name": "bucket"}},))
    assert AliasResolver(set(old)).resolve(aliased) == bucket
