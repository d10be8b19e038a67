"""The whole platform: cluster connection, namespace, storage, Label Studio, ingress, SAM."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.backup import BackupTarget, DatabaseBackup
from components.database import ManagedDatabase, ManagedDatabaseArgs, external_connection

from components.ingress import LabelStudioIngress, IngressArgs
from components.label_studio import LabelStudio, LabelStudioArgs
from components.labeling import LabelingArgs, LabelingConfiguration
from components.sam_backend import SamBackend, SamBackendArgs
from components.settings import Settings
from components.storage import ObjectStorage, StorageArgs


class LabelingPlatform(pulumi.ComponentResource):
    """Composes one component per concern and wires their outputs together."""

    url: str
    label_studio: LabelStudio
    storage: ObjectStorage
    sam: Optional[SamBackend]

    def __init__(self, name: str, settings: Settings, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:index:Platform", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.kubernetes_provider = k8s.Provider(
            "kubernetes",
            kubeconfig=settings.kubernetes.kubeconfig,
            context=settings.kubernetes.context,
            # Objects always carry an explicit namespace; never fall back to `default`.
            namespace=settings.namespace,
            opts=child,
        )
        # One AWS provider, in the configured region, for everything the stack makes there.
        self.aws_provider = (
            aws.Provider("aws", region=settings.storage.region, opts=child)
            if settings.storage.mode == "aws" else None
        )
        in_cluster = pulumi.ResourceOptions(parent=self, provider=self.kubernetes_provider)
        # The namespace holds the database volume claim: deleting it deletes the data.
        self.namespace = k8s.core.v1.Namespace(
            "namespace",
            metadata={
                "name": settings.namespace,
                "labels": {
                    "app.kubernetes.io/part-of": "labeling-platform",
                    # The chart's pods do not meet `restricted`; enforce baseline, report restricted.
                    "pod-security.kubernetes.io/enforce": "baseline",
                    "pod-security.kubernetes.io/warn": "restricted",
                },
            },
            opts=pulumi.ResourceOptions.merge(
                in_cluster, pulumi.ResourceOptions(protect=settings.protect, retain_on_delete=settings.protect)
            ),
        )
        namespace_name = self.namespace.metadata.apply(lambda m: m["name"])
        namespaced = pulumi.ResourceOptions(parent=self, provider=self.kubernetes_provider, depends_on=[self.namespace])

        self.storage = ObjectStorage(
            "storage",
            StorageArgs(
                settings=settings.storage,
                namespace=namespace_name,
                cors_origin=settings.label_studio.public_url,
                protect=settings.protect,
                label_studio_service_account=settings.label_studio.app_service_name,
                kubernetes_provider=self.kubernetes_provider,
                aws_provider=self.aws_provider,
            ),
            opts=namespaced,
        )
        database = settings.label_studio.database
        self.database = None
        connection = external_connection(database) if database.mode == "external" else None
        if database.mode == "rds":
            self.database = ManagedDatabase(
                "database",
                ManagedDatabaseArgs(settings=database, protect=settings.protect, aws_provider=self.aws_provider),
                opts=child,
            )
            connection = self.database.connection
        self.label_studio = LabelStudio(
            "label-studio",
            LabelStudioArgs(settings=settings, storage=self.storage, namespace=namespace_name,
                            kubernetes_provider=self.kubernetes_provider, database=connection),
            opts=namespaced,
        )
        self.url = settings.label_studio.public_url
        if database.mode == "inCluster" and database.backup.enabled:
            DatabaseBackup(
                "backup",
                BackupTarget(
                    settings=database.backup,
                    namespace=namespace_name,
                    database_host=self.label_studio.database_host,
                    database_name=database.name,
                    database_user=database.user,
                    password_secret=self.label_studio.secret_name,
                    password_key=self.label_studio.database_password_key,
                    bucket=self.storage.bucket_name,
                    backup_prefix=f"{self.storage.prefix}/backups",
                    region=self.storage.region,
                    endpoint=self.storage.endpoint,
                    credentials_secret=self.storage.credentials_secret_name,
                    credential_keys=(self.storage.access_key_id_key, self.storage.secret_access_key_key),
                    service_account=None if self.storage.credentials_secret_name else settings.label_studio.app_service_name,
                ),
                self.kubernetes_provider,
                opts=namespaced,
            )
        if settings.ingress.enabled:
            self.ingress = LabelStudioIngress(
                "ingress",
                IngressArgs(settings=settings.ingress, namespace=namespace_name,
                            release_name=settings.label_studio.release_name,
                            service_name=self.label_studio.service_name,
                            kubernetes_provider=self.kubernetes_provider),
                opts=namespaced,
            )
        self.sam = None
        if settings.sam.enabled:
            self.sam = SamBackend(
                "sam",
                SamBackendArgs(
                    settings=settings.sam,
                    namespace=namespace_name,
                    label_studio_url=self.label_studio.service_url,
                    token_secret_name=self.label_studio.secret_name,
                    token_secret_key=self.label_studio.admin_token_key,
                    label_studio_pod_labels=self.label_studio.app_pod_labels,
                    kubernetes_provider=self.kubernetes_provider,
                ),
                opts=namespaced,
            )
        self.labeling = LabelingConfiguration(
            "labeling",
            LabelingArgs(
                settings=settings,
                namespace=namespace_name,
                label_studio_url=self.label_studio.service_url,
                token_secret_name=self.label_studio.secret_name,
                token_secret_key=self.label_studio.admin_token_key,
                bucket_name=self.storage.bucket_name,
                storage_secret_name=self.storage.credentials_secret_name,
                storage_secret_keys=(self.storage.access_key_id_key, self.storage.secret_access_key_key),
                sam_url=self.sam.url if self.sam else None,
                depends_on=[self.label_studio.release, *([self.sam.deployment] if self.sam else [])],
                kubernetes_provider=self.kubernetes_provider,
            ),
            opts=namespaced,
        )
        self.register_outputs({
            "url": self.url,
            "bucketName": self.storage.bucket_name,
            "samBackendUrl": self.sam.url if self.sam else None,
            "teamInviteUrl": self.labeling.invite_url,
        })
