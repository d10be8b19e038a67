"""Run the guardrail policy pack over an offline stack evaluation, without the Pulumi CLI.

The CLI hands each policy the resource's inputs, its options and the policy's config;
this does the same from `tools.stack_eval.Evaluation`, so tests and `tools.check` see
exactly the violations `pulumi preview --policy-pack policy` would report.

It also gives the pack what the CLI never shows it: the objects the Helm release
renders (`tools.manifests.stack_objects`). The CLI sees the release as one resource; here
each rendered object becomes the resource the Kubernetes provider would have declared
for it, `kubernetes:<group>/<version>:<Kind>` with the object as its inputs, a child of
the release with the release's options, so the rules that read Kubernetes objects judge
the chart's output as they judge the stack's own. Of the pack's rules these apply: every
`k8s-*` container rule (the chart's Deployment, and any Job, CronJob or StatefulSet it
renders). These cannot apply to chart output:
- the S3, IAM and RDS rules (`s3-*`, `iam-*`, `rds-encrypted-private`): AWS resources,
  which a chart does not render;
- `helm-release-pinned`, `helm-values-no-literal-secrets`: they judge the Release itself
  (its chart reference and its values), which is checked as the program declares it;
- `protected-stack-data-stores`: it judges Pulumi options (`protect`) and data-store
  types (bucket, release, RDS); rendered objects carry no options of their own: the
  release's `protect` is what keeps them, and the rule checks it on the release.
A mandatory finding on a rendered object that the stack accepts on purpose is listed in
tools/policy_skips.py, scoped to the object and container, with its reason.
"""

from __future__ import annotations

import re
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

from policy.guardrails import ALL_POLICIES, stack_of
from tools.manifests import StackObjects, type_token
from tools.policy_skips import POLICY_SKIPS
from tools.stack_eval import DeclaredResource


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


def rendered_resources(objects: StackObjects) -> list[DeclaredResource]:
    """Each rendered object as the resource the Kubernetes provider would declare for it."""
    resources = []
    for render in objects.renders:
        release = render.release
        prefix, _, _ = release.urn.rpartition("::")
        for obj in render.objects:
            type_ = type_token(obj)
            name = f"{release.name}:{obj['kind']}/{obj['metadata']['name']}"
            resources.append(DeclaredResource(
                type=type_, name=name, urn=f"{prefix}${type_}::{name}", parent=release.urn, custom=True,
                inputs=obj, secret_paths=set(), protect=release.protect, retain_on_delete=release.retain_on_delete,
                dependencies=[], provider=release.provider, aliases=[], delete_before_replace=False,
                ignore_changes=[]))
    return resources


def run_pack(objects: StackObjects) -> list[Violation]:
    """The pack over the stack's declared resources and its release's rendered objects."""
    return run_policies(ALL_POLICIES, objects.evaluation.resources + rendered_resources(objects))


# "name: spec.template.spec.containers[1] (nginx): ..." -> nginx
_CONTAINER = re.compile(r"\] \(([^()]+)\): ")


def subject(violation: Violation, resources: Iterable[DeclaredResource]) -> Optional[str]:
    """What a violation on one of `resources` is about, as a skip names it: `Kind.namespace.name`,
    plus `/container` when the message names one (checkov's form of resource IDs); None when
    the violation is about none of them."""
    for resource in resources:
        if resource.urn == violation.urn:
            metadata = resource.inputs.get("metadata") or {}
            found = f"{resource.type.rsplit(':', 1)[-1]}.{metadata.get('namespace')}.{metadata.get('name')}"
            container = _CONTAINER.search(violation.message)
            return f"{found}/{container.group(1)}" if container else found
    return None


def skipped(violations: Iterable[Violation], objects: StackObjects) -> list[Violation]:
    """The findings on rendered objects that tools/policy_skips.py accepts (never one on a declared resource)."""
    rendered = rendered_resources(objects)
    accepted = []
    for violation in violations:
        about = subject(violation, rendered)
        if about and any(s.covers(stack_of(violation.urn or ""), violation.policy, about) for s in POLICY_SKIPS):
            accepted.append(violation)
    return accepted


def mandatory(violations: Iterable[Violation]) -> list[Violation]:
    return [v for v in violations if v.level == EnforcementLevel.MANDATORY]


def blocking(violations: Iterable[Violation], objects: StackObjects) -> list[Violation]:
    """Mandatory violations outside the skip list: what fails a guardrail run."""
    found = mandatory(violations)
    accepted = skipped(found, objects)
    return [v for v in found if v not in accepted]
