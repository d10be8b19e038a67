"""NetworkPolicies shared by the platform's own workloads."""

from __future__ import annotations

from typing import Mapping

import pulumi


def deny_all_ingress(name: str, namespace: pulumi.Input[str], pod_labels: Mapping[str, str]) -> dict:
    """For pods that serve nothing (batch jobs): no inbound traffic at all."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(pod_labels)},
        "spec": {"podSelector": {"matchLabels": dict(pod_labels)}, "policyTypes": ["Ingress"]},
    }
