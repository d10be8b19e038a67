"""What every Kubernetes object and workload of the platform shares: labels, security
contexts, and references to Secret keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi

PLATFORM = "labeling-platform"
PART_OF = {"app.kubernetes.io/part-of": PLATFORM}

# No privilege escalation, no Linux capabilities, no privileged mode: what every container gets.
UNPRIVILEGED_CONTAINER = {"allowPrivilegeEscalation": False, "privileged": False, "capabilities": {"drop": ["ALL"]}}
# ... and no writes outside mounted volumes, for every image that allows it.
HARDENED_CONTAINER = {**UNPRIVILEGED_CONTAINER, "readOnlyRootFilesystem": True}


def labels(name: Optional[str] = None, **extra: str) -> dict[str, str]:
    """`app.kubernetes.io/part-of` on everything; `name` and any other label where given."""
    result = {"app.kubernetes.io/name": name} if name else {}
    return {**result, **extra, **PART_OF}


def non_root_pod(uid: int) -> dict:
    """The pod securityContext of the platform's own workloads: one unprivileged user, seccomp on."""
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"}}


@dataclass(frozen=True)
class SecretKeyRef:
    """One key of a Kubernetes Secret: how secret values travel between components."""

    secret_name: pulumi.Input[str]
    key: str

    def env(self, variable: str) -> dict:
        return {"name": variable, "valueFrom": {"secretKeyRef": {"name": self.secret_name, "key": self.key}}}

    def chart_ref(self) -> dict:
        """The label-studio chart's form of a reference (`global.extraEnvironmentSecrets`, `pgConfig.password`)."""
        return {"secretName": self.secret_name, "secretKey": self.key}


def resource_version(metadata: dict) -> str:
    """The API server's version of an object: it changes with every write and reveals nothing of the data.
    The provider hands `metadata` over as its output type, keyed by Python names."""
    return str(metadata.get("resource_version") or "")


def child_of(parent: pulumi.Resource, formerly: Optional[str] = None, **options) -> pulumi.ResourceOptions:
    """Options of a component's child. `formerly` is the child's name before child names
    carried the component's name: the alias keeps the existing resource instead of replacing it."""
    aliases = [pulumi.Alias(name=formerly)] if formerly else None
    return pulumi.ResourceOptions(parent=parent, aliases=aliases, **options)


def in_cluster_url(service: str, namespace: str, port: int) -> str:
    """How pods reach a Service of the platform: its DNS name, never a copied ClusterIP."""
    return f"http://{service}.{namespace}.svc.cluster.local:{port}"


LABEL_STUDIO_CHART = "label-studio"


def app_selector_labels(release_name: str) -> dict[str, str]:
    """The selector labels the label-studio chart puts on its app pods (`ls-app.selectorLabels`);
    here, beside the platform's own labels, because the policy pack selects those pods too."""
    return {"app.kubernetes.io/name": "ls-app", "app.kubernetes.io/instance": release_name}


def postgresql_pod_labels(release_name: str) -> dict[str, str]:
    """The labels the chart's bitnami PostgreSQL subchart puts on its pods (not rendered
    offline: see tools/chart_render.py); the policy pack selects those pods too."""
    return {"app.kubernetes.io/name": "postgresql", "app.kubernetes.io/instance": release_name}

@dataclass(frozen=True)
class ScheduledRun:
    """A CronJob the platform declares, as whoever watches it needs it: its name, and how long
    after its schedule a run may still succeed (a late start, then the run's own deadline)."""

    cronjob: str
    latest_success_seconds: int

    @classmethod
    def of(cls, manifest: dict) -> "ScheduledRun":
        spec = manifest["spec"]
        return cls(manifest["metadata"]["name"], spec.get("startingDeadlineSeconds", 0)
                   + spec["jobTemplate"]["spec"]["activeDeadlineSeconds"])


@dataclass(frozen=True)
class MetricsEndpoint:
    """A Deployment whose pods export Prometheus metrics, as whoever scrapes them and alerts on
    them needs it: the pods' labels, the container port's name and the path."""

    deployment: str
    pod_labels: Mapping[str, str]
    port_name: str
    path: str

    @property
    def pod_pattern(self) -> str:
        """The names of the Deployment's pods, `<deployment>-<template hash>-<suffix>`, and of no
        other workload's: a series is picked by its pod, never by a name prefix."""
        return f"{self.deployment}-[a-z0-9]+-[a-z0-9]+"
