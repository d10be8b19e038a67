"""Egress: every pod the stack runs is fenced by an egress NetworkPolicy, and no egress rule
reaches the cloud metadata address, where any pod could pick up the node's credentials.

"Every pod" is each workload the program declares and the Label Studio release's pods (the
CLI shows the pack the release, not what it renders): its app pods, which the chart labels
`app.kubernetes.io/name: ls-app`, `app.kubernetes.io/instance: <release>`, and, unless
`values.postgresql.enabled` is false, the bitnami PostgreSQL pods, labelled
`app.kubernetes.io/name: postgresql`, `app.kubernetes.io/instance: <release>`.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable, Iterator, Mapping, Optional

from pulumi_policy import PolicyResource, ReportViolation, StackValidationArgs

from components.conventions import LABEL_STUDIO_CHART, app_selector_labels, postgresql_pod_labels
from components.settings.network import METADATA_ADDRESS

NETWORK_POLICY_TYPE = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
# Where each workload type keeps its pod template.
POD_TEMPLATE_PATHS: Mapping[str, tuple[str, ...]] = {
    "kubernetes:core/v1:Pod": (),
    "kubernetes:apps/v1:Deployment": ("spec", "template"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template"),
    "kubernetes:batch/v1:Job": ("spec", "template"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template"),
}
HELM_RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
# The pack's other modules import this one (never the reverse): the Pulumi CLI loads
# guardrails.py as a top-level module, this one through the repository root.


def dig(value: Any, path: Iterable[str]) -> Any:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _namespace(props: Mapping[str, Any]) -> Optional[str]:
    namespace = dig(props, ("metadata", "namespace"))
    return namespace if isinstance(namespace, str) else None


def selects(selector: Any, labels: Mapping[str, str]) -> bool:
    """A label selector's verdict on these labels (matchLabels and matchExpressions)."""
    if not isinstance(selector, Mapping):
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def fences_egress(spec: Mapping[str, Any]) -> bool:
    """Kubernetes' rule: a policy limits egress when policyTypes names Egress, or when it has
    no policyTypes and an egress section."""
    types = spec.get("policyTypes")
    return "Egress" in types if types else "egress" in spec


def pods_of(resource: PolicyResource) -> Iterator[tuple[Optional[str], Mapping[str, str]]]:
    """(namespace, pod labels) of a workload's pods, or of each kind of pod the Label Studio release runs."""
    props = resource.props
    if resource.resource_type == HELM_RELEASE_TYPE:
        if props.get("chart") != LABEL_STUDIO_CHART or not isinstance(props.get("name"), str):
            return
        namespace = props.get("namespace") if isinstance(props.get("namespace"), str) else None
        yield namespace, app_selector_labels(props["name"])
        # The chart's default runs the subchart's PostgreSQL.
        if dig(props, ("values", "postgresql", "enabled")) is not False:
            yield namespace, postgresql_pod_labels(props["name"])
        return
    path = POD_TEMPLATE_PATHS.get(resource.resource_type)
    if path is None:
        return
    template = dig(props, path)
    yield _namespace(props), dict(dig(template, ("metadata", "labels")) or {})


def admits_metadata(rule: Mapping[str, Any]) -> bool:
    """An egress rule lets traffic reach 169.254.169.254 (on some port)."""
    peers = rule.get("to")
    if not peers:
        return True  # no `to`: every destination
    metadata = ipaddress.ip_address(METADATA_ADDRESS)
    for peer in peers:
        block = peer.get("ipBlock") if isinstance(peer, Mapping) else None
        if not block:
            continue  # pods and namespaces, never a host address
        if metadata in ipaddress.ip_network(block["cidr"], strict=False) and not any(
                metadata in ipaddress.ip_network(cut, strict=False) for cut in block.get("except") or []):
            return True
    return False


def egress_problems(resources: list[PolicyResource]) -> Iterator[tuple[str, str]]:
    """(message, urn) for each unfenced pod and each rule open to the metadata address."""
    fences = [(_namespace(r.props), r.props.get("spec") or {}, r) for r in resources
              if r.resource_type == NETWORK_POLICY_TYPE and fences_egress(r.props.get("spec") or {})]
    for namespace, spec, policy in fences:
        for index, rule in enumerate(spec.get("egress") or []):
            if admits_metadata(rule):
                yield (f"{policy.name}: spec.egress[{index}] admits the cloud metadata address {METADATA_ADDRESS}; "
                       "cut 169.254.0.0/16 out of its ipBlock", policy.urn)
    for resource in resources:
        for namespace, labels in pods_of(resource):
            # Unknown namespaces (a preview before the Namespace exists) match any.
            if not any((namespace is None or fence_namespace is None or namespace == fence_namespace)
                       and selects(spec.get("podSelector"), labels) for fence_namespace, spec, _ in fences):
                yield (f"{resource.name}: no egress NetworkPolicy selects its pods {dict(labels)}", resource.urn)


def validate_egress(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for message, urn in egress_problems(list(args.resources)):
        report_violation(message, urn)
