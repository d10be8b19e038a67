"""Public access to Label Studio: one Ingress to the chart's app Service.

The chart's own ingress stays off: this one sets what the runbook lacked, the upload
size limit of ingress-nginx and TLS from cert-manager or an existing Secret. The SAM
backend is deliberately not routed: only Label Studio talks to it, inside the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s

from components.conventions import child_of, labels
from components.settings import IngressSettings

# Storage sync runs inside the request without Redis: 25,000 objects take minutes,
# far beyond ingress-nginx's 60 s default read timeout.
PROXY_TIMEOUT_SECONDS = "600"


def ingress_manifest(settings: IngressSettings, namespace: pulumi.Input[str], release_name: str,
                     service_name: str, service_port: int) -> dict[str, Any]:
    """The networking.k8s.io/v1 Ingress routing every path of the host to Label Studio."""
    if not settings.host:
        raise ValueError("ingress.host is required to declare the ingress")
    annotations = {
        # ingress-nginx answers 413 to uploads above 1 MB without it.
        "nginx.ingress.kubernetes.io/proxy-body-size": settings.max_body_size,
        "nginx.ingress.kubernetes.io/proxy-read-timeout": PROXY_TIMEOUT_SECONDS,
        "nginx.ingress.kubernetes.io/proxy-send-timeout": PROXY_TIMEOUT_SECONDS,
    }
    spec: dict[str, Any] = {
        "ingressClassName": settings.class_name,
        "rules": [{
            "host": settings.host,
            "http": {"paths": [{
                "path": "/",
                "pathType": "Prefix",
                "backend": {"service": {"name": service_name, "port": {"number": service_port}}},
            }]},
        }],
    }
    if settings.tls:
        if settings.tls.cluster_issuer:
            # cert-manager issues the certificate into `<release>-tls`.
            annotations["cert-manager.io/cluster-issuer"] = settings.tls.cluster_issuer
        tls_secret = settings.tls.secret_name or f"{release_name}-tls"
        spec["tls"] = [{"hosts": [settings.host], "secretName": tls_secret}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": release_name,
            "namespace": namespace,
            "labels": labels(**{"app.kubernetes.io/instance": release_name}),
            "annotations": annotations,
        },
        "spec": spec,
    }


@dataclass(frozen=True)
class IngressArgs:
    settings: IngressSettings
    namespace: pulumi.Input[str]
    # The Ingress and its TLS Secret are named after the release they route to.
    release_name: str
    service_name: str
    service_port: int


class LabelStudioIngress(pulumi.ComponentResource):
    """The Ingress that exposes Label Studio at `host`."""

    host: str

    def __init__(self, name: str, args: IngressArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:network:LabelStudioIngress", name, None, pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(type_="labeling:network:Ingress", name="ingress")])))
        manifest = ingress_manifest(args.settings, args.namespace, args.release_name, args.service_name,
                                    args.service_port)
        self.host = args.settings.host
        k8s.networking.v1.Ingress(f"{name}-ingress", metadata=manifest["metadata"], spec=manifest["spec"],
                                  opts=child_of(self, "ingress"))
        self.register_outputs({"host": self.host})
