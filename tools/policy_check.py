"""Run the guardrail policy pack over an offline stack evaluation, without the Pulumi CLI.

The CLI hands each policy the resource's inputs, its options and the policy's config;
this does the same from `tools.stack_eval.Evaluation`, so tests and `tools.check` see
exactly the violations `pulumi preview --policy-pack policy` would report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)

from policy.guardrails import ALL_POLICIES
from tools.stack_eval import DeclaredResource, Evaluation


@dataclass(frozen=True)
class Violation:
    policy: str
    level: EnforcementLevel
    message: str
    urn: Optional[str]

    def __str__(self) -> str:
        return f"[{self.policy} ({self.level.value})] {self.message}"


def options_of(resource: DeclaredResource) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=resource.protect,
        ignore_changes=list(resource.ignore_changes),
        delete_before_replace=resource.delete_before_replace,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
        parent=resource.parent,
    )


def default_config(policy: Policy) -> Mapping[str, Any]:
    """The policy's config as its schema defaults it (no --policy-pack-config given)."""
    if policy.config_schema is None:
        return {}
    return {k: v["default"] for k, v in policy.config_schema.properties.items() if "default" in v}


def stack_resources(resources: Iterable[DeclaredResource]) -> list[PolicyResource]:
    """The stack as a stack policy sees it: resources linked to their parents and dependencies."""
    declared = list(resources)
    by_urn = {r.urn: PolicyResource(r.type, r.inputs, r.urn, r.name, options_of(r), None, None, [], {})
              for r in declared}
    for r in declared:
        linked = by_urn[r.urn]
        linked.parent = by_urn.get(r.parent) if r.parent else None
        linked.dependencies.extend(by_urn[d] for d in r.dependencies if d in by_urn)
    return list(by_urn.values())


def run_policies(policies: Iterable[Policy], resources: Iterable[DeclaredResource]) -> list[Violation]:
    """Every violation the policies report for these resources, resource policies first."""
    declared = list(resources)
    violations: list[Violation] = []
    for policy in policies:
        def report(message: str, urn: Optional[str] = None, policy: Policy = policy) -> None:
            violations.append(Violation(policy.name, policy.enforcement_level, message, urn))

        config = default_config(policy)
        if isinstance(policy, ResourceValidationPolicy):
            for r in declared:
                policy.validate(ResourceValidationArgs(r.type, r.inputs, r.urn, r.name, options_of(r), None, config),
                                report)
        else:
            policy.validate(StackValidationArgs(stack_resources(declared), config), report)
    return violations


def run_pack(evaluation: Evaluation) -> list[Violation]:
    return run_policies(ALL_POLICIES, evaluation.resources)


def mandatory(violations: Iterable[Violation]) -> list[Violation]:
    return [v for v in violations if v.level == EnforcementLevel.MANDATORY]
