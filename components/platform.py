"""The whole platform: cluster connection, namespace, storage, Label Studio, ingress, SAM, alerts.

Each component gets its own settings section and typed handles from the components it
builds on (`StorageAccess`, `LabelStudioAccess`, `DatabaseAccess`); providers reach them
through `opts.providers`. Dependencies travel with the data: a component that uses an
output waits for the resource behind it, and for nothing else.
"""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.backup import DatabaseBackup, DatabaseBackupArgs
from components.conventions import child_of, in_cluster_url, labels
from components.database import ManagedDatabase, ManagedDatabaseArgs, external_connection
from components.ingress import IngressArgs, LabelStudioIngress
from components.label_studio import LabelStudio, LabelStudioArgs, MlBackendPeer
from components.labeling import LabelingConfiguration, LabelingConfigurationArgs
from components.monitoring import (
    LABEL_STUDIO_GRACE_SECONDS, Alerts, AlertsArgs, AlertTargets, WatchedDeployment, prometheus_scraper,
)
from components.sam_backend import SamBackend, SamBackendArgs
from components.settings import DatabaseMode, Settings, StorageMode
from components.storage import ObjectStorage, ObjectStorageArgs
from components.upgrade_backup import PRE_UPGRADE_NAME


class LabelingPlatform(pulumi.ComponentResource):
    """Composes one component per concern and wires their outputs together."""

    url: str
    label_studio: LabelStudio
    storage: ObjectStorage
    sam: Optional[SamBackend]
    labeling: LabelingConfiguration
    log_commands: pulumi.Output[str]

    def __init__(self, name: str, settings: Settings, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:index:LabelingPlatform", name, None, pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(type_="labeling:index:Platform")])))
        kubernetes = k8s.Provider(
            f"{name}-kubernetes",
            kubeconfig=settings.kubernetes.kubeconfig,
            context=settings.kubernetes.context,
            # Objects always carry an explicit namespace; never fall back to `default`.
            namespace=settings.namespace,
            opts=child_of(self, "kubernetes"),
        )
        providers: list[pulumi.ProviderResource] = [kubernetes]
        if settings.storage.mode is StorageMode.AWS:
            # One AWS provider, in the configured region, for everything the stack makes there.
            providers.append(aws.Provider(f"{name}-aws", region=settings.storage.region, opts=child_of(self, "aws")))
        in_cluster = pulumi.ResourceOptions(parent=self, providers=providers)

        # The namespace holds the database volume claim: deleting it deletes the data.
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": settings.namespace,
                "labels": labels(**{
                    # The chart's pods do not meet `restricted`; enforce baseline, report restricted.
                    "pod-security.kubernetes.io/enforce": "baseline",
                    "pod-security.kubernetes.io/warn": "restricted",
                }),
            },
            opts=child_of(self, "namespace", provider=kubernetes, protect=settings.protect,
                          retain_on_delete=settings.protect),
        )
        # Everything in the namespace takes its name from here, and so waits for it.
        namespace_name = namespace.metadata.apply(lambda m: m["name"])
        label_studio_settings = settings.label_studio
        database = label_studio_settings.database

        self.storage = ObjectStorage(
            f"{name}-storage",
            ObjectStorageArgs(settings=settings.storage, namespace=namespace_name,
                              cors_origin=label_studio_settings.public_url, protect=settings.protect,
                              workload_service_account=label_studio_settings.app_service_name,
                              # The pre-upgrade backup runs before the chart makes the app's account.
                              also_trusted_service_accounts=(
                                  (PRE_UPGRADE_NAME,) if database.mode is DatabaseMode.IN_CLUSTER else ())),
            opts=in_cluster,
        )
        connection = None
        if database.mode is DatabaseMode.EXTERNAL:
            connection = external_connection(database)
        elif database.mode is DatabaseMode.RDS:
            connection = ManagedDatabase(f"{name}-database", ManagedDatabaseArgs(database, settings.protect),
                                         opts=in_cluster).connection
        # Label Studio lets exactly the SAM Service's ClusterIP through its SSRF protection, and
        # SAM needs Label Studio's token: the address is handed over once SAM exists.
        ml_backend = None
        if settings.sam.enabled:
            # Created only with SAM: an output never resolved would hold the program forever.
            sam_address, resolve_sam_address = pulumi.deferred_output()
            ml_backend = MlBackendPeer(sam_address, SamBackend.pod_labels, SamBackend.port)
        self.label_studio = LabelStudio(
            f"{name}-label-studio",
            LabelStudioArgs(settings=label_studio_settings, namespace=namespace_name, storage=self.storage.access,
                            protect=settings.protect, network=settings.network, ml_backend=ml_backend,
                            database=connection),
            opts=in_cluster,
        )
        access = self.label_studio.access
        self.url = label_studio_settings.public_url
        backup = None
        if database.mode is DatabaseMode.IN_CLUSTER and database.backup.enabled:
            backup = DatabaseBackup(
                f"{name}-backup",
                DatabaseBackupArgs(settings=database.backup, namespace=namespace_name,
                                   database=self.label_studio.database, storage=self.storage.access,
                                   network=settings.network),
                opts=in_cluster,
            )
        if settings.ingress.enabled:
            LabelStudioIngress(
                f"{name}-ingress",
                IngressArgs(settings=settings.ingress, namespace=namespace_name,
                            release_name=label_studio_settings.release_name,
                            service_name=access.service_name, service_port=access.service_port),
                opts=in_cluster,
            )
        self.sam = None
        log_commands = [self.label_studio.log_command]
        if settings.sam.enabled:
            self.sam = SamBackend(
                f"{name}-sam",
                SamBackendArgs(
                    settings=settings.sam,
                    namespace=namespace_name,
                    # The address, not the deployed URL: the backend calls Label Studio only
                    # when predicting, so it loads its model while the release deploys.
                    label_studio_url=namespace_name.apply(
                        lambda ns: in_cluster_url(access.service_name, ns, access.service_port)),
                    api_token=access.api_token,
                    label_studio_pod_labels=access.pod_labels,
                    label_studio_pod_port=access.pod_port,
                    network=settings.network,
                    # Presigned image URLs send the backend to the store itself.
                    object_store=self.storage.access.egress if self.storage.access.presign else None,
                    store_trust=self.storage.access.trust if self.storage.access.presign else None,
                    self_test_pod_labels=LabelingConfiguration.full_run_pod_labels,
                    # The alerts read the server's metrics: Prometheus scrapes them.
                    metrics_scraper=prometheus_scraper(settings.monitoring) if settings.monitoring.enabled else None,
                ),
                opts=in_cluster,
            )
            resolve_sam_address(self.sam.cluster_ip)
            log_commands.append(self.sam.log_command)
        self.labeling = LabelingConfiguration(
            f"{name}-configuration",
            LabelingConfigurationArgs(settings=settings.labeling, namespace=namespace_name,
                                      release_name=label_studio_settings.release_name, label_studio=access,
                                      storage=self.storage.access, network=settings.network,
                                      sam_url=self.sam.url if self.sam else None, protect=settings.protect,
                                      sam_self_test=settings.sam.self_test,
                                      sam_pod_labels=SamBackend.pod_labels, sam_port=SamBackend.port,
                                      sam_active_hours=(settings.sam.active_hours.hours
                                                        if settings.sam.active_hours else None)),
            opts=in_cluster,
        )
        if settings.monitoring.enabled:
            targets = AlertTargets(
                label_studio=WatchedDeployment(label_studio_settings.app_service_name, LABEL_STUDIO_GRACE_SECONDS),
                deploy_job_pattern=LabelingConfiguration.job_name_pattern,
                scheduled_reconcile=self.labeling.scheduled_reconcile,
                export_resync=self.labeling.export_resync,
                nightly_backup=backup.scheduled_run if backup else None,
                pre_upgrade_job_pattern=self.label_studio.pre_upgrade_backup.job_name_pattern,
                sam=WatchedDeployment(SamBackend.deployment_name, self.sam.startup_budget_seconds) if self.sam else None,
                sam_metrics=self.sam.metrics if self.sam else None,
            )
            Alerts(f"{name}-alerts", AlertsArgs(settings.monitoring, namespace_name, targets), opts=in_cluster)
        self.log_commands = pulumi.Output.all(*log_commands).apply("\n".join)
        self.register_outputs({
            "url": self.url,
            "bucketName": self.storage.access.bucket,
            "samBackendUrl": self.sam.url if self.sam else None,
            "teamInviteUrl": self.labeling.invite_url,
        })
