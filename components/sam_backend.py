"""The Segment Anything (SAM) ML backend: Deployment, Service and NetworkPolicy.

Replaces the seed's hand-written `sam.yaml`: Label Studio is reached by its Service DNS
name instead of a copied ClusterIP, and the API token comes from the Label Studio
Secret through `secretKeyRef` instead of sitting in the manifest in plain text.

Two kinds of server run here, by `sam.model`: the platform's own (sam-server/, the sam2.1-*
models: one process per pod, one embedding cache for every labeler, each image's clicks routed
to one replica through a headless Service of the replicas) and the upstream
label-studio-ml-backend examples (MobileSAM, SAM, SAM2: gunicorn workers, each holding the
last image it saw).

`sam_manifests` builds the three objects as plain data so they can be tested without a
Pulumi engine; `SamBackend` declares them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.conventions import MetricsEndpoint, SecretKeyRef, child_of, in_cluster_url, labels
from components.network import Peer, Rule, dns, network_policy, to_pods
from components.sam_active_hours import SamActiveHours, SamActiveHoursArgs
from components.sam_container import (
    SAM_PEERS_NAME, SAM_PORT, SAM_PORT_NAME, container_security, environment, volumes_and_mounts,
)
from components.sam_image_policy import image_signature_policy
from components.settings import NetworkSettings, SamSettings
from components.settings.sam import IMAGE_PULL_ALLOWANCE_SECONDS
from components.storage import StoreTrust
from reconciler.contract import SAM_SERVICE_NAME

SAM_NAME = SAM_SERVICE_NAME
# requests (the backend's downloads) reads its CA bundle from this variable.
SAM_CA_VARIABLES = ("REQUESTS_CA_BUNDLE",)
SAM_LABELS = labels(SAM_NAME, **{"app.kubernetes.io/component": "ml-backend"})
HEALTH_PATH = "/health"
# The platform's server exports its Prometheus metrics here, on the port that serves predictions.
METRICS_PATH = "/metrics"
REPLICAS_FIELD = "spec.replicas"
PATCH_FORCE_ANNOTATION = "pulumi.com/patchForce"

STARTUP_PROBE_PERIOD_SECONDS = 10

def service_url(namespace: str) -> str:
    """The in-cluster URL Label Studio uses to reach the backend."""
    return in_cluster_url(SAM_NAME, namespace, SAM_PORT)


def rollout_budget_seconds(settings: SamSettings) -> int:
    """How long a rollout may take before Kubernetes and Pulumi call it failed."""
    return settings.startup_timeout_seconds + IMAGE_PULL_ALLOWANCE_SECONDS


def _http_get_health() -> dict:
    return {"httpGet": {"path": HEALTH_PATH, "port": SAM_PORT}}


def _probes(settings: SamSettings) -> dict:
    # /health answers only once the model is loaded: the startup probe carries the whole
    # loading budget, so liveness never kills a pod that is still loading.
    startup_failures = math.ceil(settings.startup_timeout_seconds / STARTUP_PROBE_PERIOD_SECONDS)
    return {
        "startupProbe": {**_http_get_health(), "periodSeconds": STARTUP_PROBE_PERIOD_SECONDS,
                         "timeoutSeconds": 5, "failureThreshold": startup_failures},
        "readinessProbe": {**_http_get_health(), "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
        # Lenient: a long CPU prediction occupies the worker's threads; a restart would
        # cost a full model load.
        "livenessProbe": {**_http_get_health(), "periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 5},
    }


def _resources(settings: SamSettings) -> dict:
    resources = settings.resources.as_dict()
    if settings.gpus > 0:
        # Extended resources cannot be overcommitted: the request must equal the limit.
        for part in ("requests", "limits"):
            resources[part]["nvidia.com/gpu"] = str(settings.gpus)
    return resources


def _pull_policy(image: str) -> str:
    # A digest never changes what it names, so a cached copy is the image. A bare tag
    # may have moved: pulling on every start keeps all nodes on the tag's current build
    # instead of whatever each node happened to cache.
    return "IfNotPresent" if "@sha256:" in image else "Always"


def _strategy(settings: SamSettings) -> dict:
    if settings.gpus > 0 and settings.replicas > 1:
        # One pod at a time gives its GPUs to its successor; the others keep serving.
        return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    if settings.gpus > 0:
        # A rolling update would start the new pod beside the old one and wait for a
        # second set of GPUs that usually does not exist.
        return {"type": "Recreate"}
    # On CPU the old pod keeps serving until the new one has loaded its model.
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def _deployment(settings: SamSettings, namespace: pulumi.Input[str], label_studio_url: pulumi.Input[str],
                api_token: SecretKeyRef, store_trust: Optional[StoreTrust] = None) -> dict:
    budget = rollout_budget_seconds(settings)
    volumes, mounts = volumes_and_mounts(settings)
    container = {
        "name": "sam",
        "image": settings.image,
        "imagePullPolicy": _pull_policy(settings.image),
        "ports": [{"name": SAM_PORT_NAME, "containerPort": SAM_PORT, "protocol": "TCP"}],
        "env": environment(settings, namespace, label_studio_url, api_token),
        **_probes(settings),
        "resources": _resources(settings),
        "securityContext": container_security(settings),
        "volumeMounts": mounts,
        # A container that exits with an error leaves its log's tail as the termination message:
        # the reconciler names a crash loop by its last line (reconciler/sam_pods.py).
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec = {
        # It talks to Label Studio over HTTP and never to the Kubernetes API.
        "automountServiceAccountToken": False,
        # It finds Label Studio by DNS; Docker-link variables for every Service in the
        # namespace would only add noise to its environment.
        "enableServiceLinks": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
    }
    if store_trust:
        # It follows presigned URLs to the store with requests, which reads this variable.
        pod_spec = store_trust.pod_spec_trusting(pod_spec, SAM_CA_VARIABLES)
    if settings.node_selector:
        pod_spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        pod_spec["tolerations"] = [toleration.as_dict() for toleration in settings.tolerations]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": SAM_NAME,
            "namespace": namespace,
            "labels": dict(SAM_LABELS),
            "annotations": _deployment_annotations(settings, budget),
        },
        "spec": {
            "replicas": settings.replicas,
            "revisionHistoryLimit": 3,
            # Past this deadline Kubernetes marks the rollout failed, and the provider
            # stops waiting: it must not be shorter than the loading budget.
            "progressDeadlineSeconds": budget,
            "strategy": _strategy(settings),
            "selector": {"matchLabels": dict(SAM_LABELS)},
            "template": {"metadata": {"labels": dict(SAM_LABELS)}, "spec": pod_spec},
        },
    }


def _deployment_annotations(settings: SamSettings, budget: int) -> dict[str, str]:
    # The provider waits for the Deployment to become ready; its default 10 minutes is shorter
    # than pulling and loading a large model.
    annotations = {"pulumi.com/timeoutSeconds": str(budget)}
    if settings.active_hours is None:
        # Without active hours the stack owns spec.replicas: an update takes the field back from
        # whoever scaled it (the scaler of active hours just switched off, a `kubectl scale`)
        # instead of failing on their field manager's conflict.
        annotations[PATCH_FORCE_ANNOTATION] = "true"
    return annotations


def _service(namespace: pulumi.Input[str], name: str = SAM_NAME, headless: bool = False) -> dict:
    spec = {
        "type": "ClusterIP",
        "selector": dict(SAM_LABELS),
        "ports": [{"name": SAM_PORT_NAME, "port": SAM_PORT, "targetPort": SAM_PORT_NAME, "protocol": "TCP"}],
    }
    if headless:
        # Its name resolves to every ready replica's address (not-ready ones are left out, so a
        # click is never routed to a pod still loading its model).
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(SAM_LABELS)}, "spec": spec}


def metrics_endpoint(settings: SamSettings) -> Optional[MetricsEndpoint]:
    """Where the backend's pods export Prometheus metrics: the platform's server does, the
    upstream examples export none."""
    if not settings.model.platform_server:
        return None
    return MetricsEndpoint(SAM_NAME, SAM_LABELS, SAM_PORT_NAME, METRICS_PATH)


def _network_policy(settings: SamSettings, namespace: pulumi.Input[str], label_studio_pod_labels: Mapping[str, str],
                    egress: Sequence[Rule], self_test_pod_labels: Sequence[Mapping[str, str]] = (),
                    metrics_scraper: Optional[Peer] = None) -> dict:
    # Label Studio calls the backend, and the reconciler's self-test asks it directly for the
    # cause of a failure; the backend calls Label Studio back for task images. It downloads
    # nothing at start: the checkpoints are baked into the image. The platform's server passes
    # a click to the replica owning its image: replicas call each other.
    callers = [label_studio_pod_labels, *self_test_pod_labels]
    if settings.model.platform_server:
        callers.append(SAM_LABELS)
        egress = [*egress, to_pods(SAM_LABELS, [SAM_PORT])]
    port = [{"protocol": "TCP", "port": SAM_PORT}]
    ingress = [{"from": [{"podSelector": {"matchLabels": dict(caller)}} for caller in callers], "ports": port}]
    if metrics_scraper and metrics_endpoint(settings):
        # Prometheus reads /metrics on the port that serves predictions: a NetworkPolicy admits
        # ports, not paths. Only this port, and only for the scraper's pods.
        ingress.append({"from": [metrics_scraper], "ports": port})
    return network_policy(SAM_NAME, namespace, SAM_LABELS, egress=egress, ingress=ingress)


def sam_manifests(settings: SamSettings, namespace: pulumi.Input[str], label_studio_url: pulumi.Input[str],
                  api_token: SecretKeyRef, label_studio_pod_labels: Mapping[str, str],
                  egress: Sequence[Rule], store_trust: Optional[StoreTrust] = None,
                  self_test_pod_labels: Sequence[Mapping[str, str]] = (),
                  metrics_scraper: Optional[Peer] = None) -> dict[str, dict]:
    """The backend's Kubernetes objects, keyed by kind (Deployment, Service, NetworkPolicy,
    PeersService for the platform's server, and ImageSignaturePolicy with sam.verifySignature).

    Plain strings give plain manifests; Pulumi Inputs may stand in for any string.
    """
    if not settings.image:
        raise ValueError("sam.image is required to deploy the SAM backend")
    manifests = {
        "Deployment": _deployment(settings, namespace, label_studio_url, api_token, store_trust),
        "Service": _service(namespace),
        "NetworkPolicy": _network_policy(settings, namespace, label_studio_pod_labels, egress, self_test_pod_labels,
                                         metrics_scraper),
    }
    if settings.model.platform_server:
        manifests["PeersService"] = _service(namespace, SAM_PEERS_NAME, headless=True)
    if settings.image_signature:
        manifests["ImageSignaturePolicy"] = image_signature_policy(settings.image_signature, namespace, SAM_LABELS)
    return manifests


@dataclass(frozen=True)
class SamBackendArgs:
    settings: SamSettings
    namespace: pulumi.Input[str]
    # Label Studio's in-cluster URL: the backend fetches task images through it. It is
    # only called when predicting, so it need not wait for the release.
    label_studio_url: pulumi.Input[str]
    # The Label Studio API token the backend authenticates with.
    api_token: SecretKeyRef
    # Labels and port of the Label Studio app pods: the only clients the NetworkPolicy
    # admits, and the backend's way back for task images.
    label_studio_pod_labels: Mapping[str, str]
    label_studio_pod_port: int
    network: NetworkSettings
    # The object store's egress rule when the backend follows presigned URLs to it; None when
    # Label Studio streams the images itself.
    object_store: Optional[Rule] = None
    # The store's private CA, when the backend follows presigned URLs to an https store that has one.
    store_trust: Optional[StoreTrust] = None
    # The full reconciler runs' pods (the Job's, the scheduled run's): the self-test asks the
    # backend directly why a prediction failed.
    self_test_pod_labels: Sequence[Mapping[str, str]] = ()
    # The pods that scrape the backend's metrics (the cluster's Prometheus), when something
    # alerts on them; admitted only where the server exports metrics.
    metrics_scraper: Optional[Peer] = None


class SamBackend(pulumi.ComponentResource):
    """The SAM ML backend; `url` (its Service's) resolves before the model is loaded."""

    url: pulumi.Output[str]
    log_command: pulumi.Output[str]
    # The Service's ClusterIP: the address Label Studio's SSRF protection lets through.
    cluster_ip: pulumi.Output[str]
    pod_labels = SAM_LABELS
    port = SAM_PORT
    deployment_name = SAM_NAME
    # How long a pod may take to become ready: past it, a replica that should serve does not.
    startup_budget_seconds: int
    # Where its pods export Prometheus metrics; None for the upstream examples, which export none.
    metrics: Optional[MetricsEndpoint]

    def __init__(self, name: str, args: SamBackendArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:ml:SamBackend", name, None, pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(name="sam")])))
        egress = [*dns(args.network), to_pods(args.label_studio_pod_labels, [args.label_studio_pod_port]),
                  *([args.object_store] if args.object_store else [])]
        manifests = sam_manifests(args.settings, args.namespace, args.label_studio_url, args.api_token,
                                  args.label_studio_pod_labels, egress, args.store_trust, args.self_test_pod_labels,
                                  args.metrics_scraper)
        # The provider's readiness wait stays on: the Deployment completes once /health answers.
        # With active hours the scaler owns spec.replicas: `pulumi up` leaves them as it finds them
        # (leaving the field out instead would not do: the provider takes over a field another
        # manager last wrote and would set it back to 1). Only while it is on: switched off, the
        # Deployment must come back to sam.replicas (docs/sam-backend.md).
        hours = args.settings.active_hours
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment", metadata=manifests["Deployment"]["metadata"], spec=manifests["Deployment"]["spec"],
            opts=child_of(self, SAM_NAME, ignore_changes=[REPLICAS_FIELD] if hours else None))
        if hours:
            SamActiveHours(f"{name}-active-hours",
                           SamActiveHoursArgs(hours, args.namespace, SAM_NAME, args.settings.replicas, args.network),
                           opts=pulumi.ResourceOptions(parent=self, depends_on=[deployment]))
        service = k8s.core.v1.Service(
            f"{name}-service", metadata=manifests["Service"]["metadata"], spec=manifests["Service"]["spec"],
            opts=child_of(self, SAM_NAME))
        if "PeersService" in manifests:
            k8s.core.v1.Service(
                f"{name}-peers-service", metadata=manifests["PeersService"]["metadata"],
                spec=manifests["PeersService"]["spec"], opts=child_of(self))
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy", metadata=manifests["NetworkPolicy"]["metadata"],
            spec=manifests["NetworkPolicy"]["spec"], opts=child_of(self, SAM_NAME))
        if "ImageSignaturePolicy" in manifests:
            policy = manifests["ImageSignaturePolicy"]
            k8s.apiextensions.CustomResource(
                f"{name}-image-signature-policy", api_version=policy["apiVersion"], kind=policy["kind"],
                metadata=policy["metadata"], spec=policy["spec"], opts=child_of(self))

        # From the Service alone: the reconciler starts syncing while the model loads, and
        # waits for the backend to answer before it registers it. Pulumi still waits for the
        # Deployment's rollout, beside the reconciler.
        self.url = service.metadata.apply(lambda metadata: service_url(metadata["namespace"]))
        self.cluster_ip = service.spec.cluster_ip
        self.startup_budget_seconds = rollout_budget_seconds(args.settings)
        self.metrics = metrics_endpoint(args.settings)
        self.log_command = pulumi.Output.from_input(args.namespace).apply(
            lambda ns: f"kubectl -n {ns} logs -f deploy/{SAM_NAME}")
        self.register_outputs({"url": self.url})
