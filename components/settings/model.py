"""The validated settings of one stack: frozen values, one dataclass per section.

Components receive the section they use (plus typed handles from other components),
never the whole `Settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Mapping, Optional

import pulumi

from reconciler.active_hours import ActiveHours


class StorageMode(StrEnum):
    AWS = "aws"                      # the stack creates and hardens an S3 bucket
    S3_COMPATIBLE = "s3Compatible"   # an existing S3-compatible store


class DatabaseMode(StrEnum):
    IN_CLUSTER = "inCluster"  # the chart's PostgreSQL StatefulSet
    EXTERNAL = "external"     # the operator's own server
    RDS = "rds"               # RDS PostgreSQL made by the stack


class SamModel(StrEnum):
    # Served by the platform's own SAM server (sam-server/): one embedding cache for the team.
    SAM2_1_TINY = "sam2.1-tiny"            # CPU or GPU
    SAM2_1_SMALL = "sam2.1-small"          # CPU or GPU
    SAM2_1_BASE_PLUS = "sam2.1-base-plus"  # GPU
    SAM2_1_LARGE = "sam2.1-large"          # GPU
    # Served by the upstream label-studio-ml-backend examples.
    MOBILE_SAM = "MobileSAM"  # segment_anything_model, CPU-friendly
    SAM = "SAM"               # segment_anything_model with ViT-H, needs a GPU
    SAM2 = "SAM2"             # the segment_anything_2_image example, GPU only

    @property
    def platform_server(self) -> bool:
        """Served by sam-server/ (the image built from it), not by an upstream example."""
        return self.value.startswith("sam2.1-")


@dataclass(frozen=True)
class Resources:
    requests: Mapping[str, str]
    limits: Mapping[str, str]

    def as_dict(self) -> dict[str, dict[str, str]]:
        return {"requests": dict(self.requests), "limits": dict(self.limits)}


@dataclass(frozen=True)
class KubernetesSettings:
    context: Optional[str]
    kubeconfig: Optional[pulumi.Output]


@dataclass(frozen=True)
class RdsSettings:
    vpc_id: Optional[str]
    subnet_ids: tuple[str, ...]
    instance_class: str
    engine_version: str
    allocated_storage_gb: int
    max_allocated_storage_gb: int
    multi_az: bool
    backup_retention_days: int
    allowed_security_group_ids: tuple[str, ...]
    allowed_cidrs: tuple[str, ...]
    snapshot_identifier: Optional[str]


@dataclass(frozen=True)
class BackupSettings:
    """Nightly dumps of the in-cluster database into the bucket."""

    enabled: bool
    schedule: str
    retention_days: int


@dataclass(frozen=True)
class DatabaseSettings:
    mode: DatabaseMode
    host: Optional[str]
    port: int
    name: str
    user: str
    password: Optional[pulumi.Output]
    storage_size: str
    ssl_mode: Optional[str]
    rds: RdsSettings
    backup: BackupSettings
    # Where an external server lives, for the app's egress (empty: any address on its port).
    egress_cidrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelStudioSettings:
    release_name: str
    chart_version: str
    image_tag: str
    replicas: int
    resources: Resources
    admin_email: str
    public_url: str
    database: DatabaseSettings
    # The deployed release a move to an older imageTag leaves, once its backup is restored.
    confirm_downgrade_from: Optional[str] = None

    @property
    def app_service_name(self) -> str:
        """The chart's app Service/Deployment name, `<release>-ls-app` (see _helpers.tpl)."""
        return self.release_name if "ls-app" in self.release_name else f"{self.release_name}-ls-app"


@dataclass(frozen=True)
class StorageSettings:
    mode: StorageMode
    bucket_name: str
    region: str
    endpoint: Optional[str]
    prefix: str
    force_destroy: bool
    access_key_id: Optional[pulumi.Output]
    secret_access_key: Optional[pulumi.Output]
    kms_key_arn: Optional[str]
    oidc_provider_arn: Optional[str]
    # Browsers load images through presigned URLs (true) or through Label Studio (false).
    presign: bool
    # Where the store lives, for the pods' egress (empty: decided from the endpoint).
    egress_cidrs: tuple[str, ...] = ()
    # PEM certificates of the private CA an https S3-compatible store's certificate chains to.
    ca_bundle: Optional[str] = None


@dataclass(frozen=True)
class TlsSettings:
    cluster_issuer: Optional[str]
    secret_name: Optional[str]


@dataclass(frozen=True)
class IngressSettings:
    enabled: bool
    host: Optional[str]
    class_name: str
    tls: Optional[TlsSettings]
    max_body_size: str


class SamScaler(StrEnum):
    CRONJOB = "cronjob"  # two CronJobs patch the Deployment's scale subresource
    KEDA = "keda"        # a KEDA ScaledObject with cron triggers (KEDA installed in the cluster)


@dataclass(frozen=True)
class SamActiveHoursSettings:
    """sam.activeHours switched on: the windows (reconciler/active_hours.py) and who scales."""

    hours: ActiveHours
    scaler: SamScaler


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: str
    value: Optional[str]
    effect: Optional[str]

    def as_dict(self) -> dict[str, str]:
        out = {"key": self.key, "operator": self.operator}
        if self.value is not None:
            out["value"] = self.value
        if self.effect is not None:
            out["effect"] = self.effect
        return out


@dataclass(frozen=True)
class ImageSignatureSettings:
    """sam.verifySignature: the cluster admits the SAM pods only with an image the platform's
    sam-image workflow signed (keyless), as a Kyverno ClusterPolicy checks at admission."""

    # owner/name of the GitHub repository whose workflow signed the image.
    repository: str


@dataclass(frozen=True)
class SamSettings:
    enabled: bool
    model: SamModel
    image: Optional[str]
    gpus: int
    node_selector: Mapping[str, str]
    tolerations: tuple[Toleration, ...]
    resources: Resources
    shm_size: str
    startup_timeout_seconds: int
    # gunicorn worker processes, each with its own predictor answering one request at a time
    # (the upstream examples; the platform's server runs one process per pod).
    workers: int = 1
    # Pods inside the labeling windows.
    replicas: int = 1
    # The platform's server: MiB of image features its embedding cache holds.
    embedding_cache_mib: Optional[int] = None
    # The emptyDir the backend caches downloaded task images in.
    image_cache_size: str = "10Gi"
    # What a failed deploy-time self-test does to the run: fail it, or only warn.
    self_test: str = "fail"
    # SAM 2's MODEL_CONFIG and MODEL_CHECKPOINT (None for the other models).
    model_config: Optional[str] = None
    model_checkpoint: Optional[str] = None
    # The team's labeling windows; None: SAM runs around the clock.
    active_hours: Optional[SamActiveHoursSettings] = None
    # None: the cluster is not asked to check the image's signature.
    image_signature: Optional[ImageSignatureSettings] = None


@dataclass(frozen=True)
class LabelingProject:
    title: str
    label_config_path: str
    label_config: str
    prefix: str
    regex_filter: str
    sam: bool
    # Members who get a Data Manager tab each over an equal share of the tasks.
    split: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelingSettings:
    projects: tuple[LabelingProject, ...]
    members: tuple[str, ...]
    # Cron schedule of the export re-sync; None when it is switched off.
    export_resync_schedule: Optional[str] = None
    # Cron schedule of the scheduled full reconcile; None when it is switched off.
    reconcile_schedule: Optional[str] = None
    # Accounts the stack created that may go when several go at once, or the last ones go.
    remove_members: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetworkSettings:
    """What the pods' egress NetworkPolicies may reach beyond the platform's own peers."""

    dns_namespace: str
    node_local_dns: Optional[str]
    eks_pod_identity: bool
    api_server_cidrs: tuple[str, ...]
    member_egress_cidrs: tuple[str, ...]


@dataclass(frozen=True)
class MonitoringSettings:
    """Alerts for the Prometheus Operator, when the cluster runs it."""

    enabled: bool
    # Labels the cluster's Prometheus selects rule objects by (its ruleSelector).
    rule_labels: Mapping[str, str]
    # docs/operations.md as the team reads it: each alert links to its section there.
    runbook_url: str
    # How many intervals of the scheduled reconcile may pass without a success.
    missed_reconciles: int
    # Where the cluster's Prometheus runs: the platform's SAM server lets its pods scrape /metrics.
    prometheus_namespace: str
    # The platform's SAM server: the 95th percentile of click latency, and the clicks waiting for
    # an embedding on one replica, above which the team is waiting on SAM.
    sam_click_p95_seconds: int
    sam_queued_clicks: int


@dataclass(frozen=True)
class Settings:
    stack: str
    namespace: str
    protect: bool
    kubernetes: KubernetesSettings
    label_studio: LabelStudioSettings
    storage: StorageSettings
    ingress: IngressSettings
    sam: SamSettings
    labeling: LabelingSettings
    network: NetworkSettings
    monitoring: MonitoringSettings
    warnings: tuple[str, ...] = field(default=())
