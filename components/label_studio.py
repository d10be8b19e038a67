"""Label Studio: the heartex/label-studio Helm release and the secrets it runs on.

Everything the manual runbook typed by hand is generated here: the first-boot admin
(email from settings, generated password and legacy API token), Django's SECRET_KEY and
the database passwords. They live in ONE Kubernetes Secret; the values
(components/chart_values.py) only name that Secret and its keys.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.chart_values import (
    ADMIN_PASSWORD_KEY, ADMIN_TOKEN_KEY, APP_CONTAINER, APP_POD_PORT, APP_SERVICE_PORT, DATABASE_ADMIN_PASSWORD_KEY,
    DATABASE_PASSWORD_KEY, DJANGO_SECRET_KEY_KEY, chart_values,
)
from components.conventions import (
    LABEL_STUDIO_CHART, SecretKeyRef, app_selector_labels, child_of, in_cluster_url, labels, postgresql_pod_labels,
)
from components.database import POSTGRES_PORT, DatabaseAccess, DatabaseConnection
from components.network import dns, network_policy, pod_identity, to_networks, to_pods
from components.settings import LabelStudioSettings, NetworkSettings
from components.storage import StorageAccess
from components.upgrade_backup import PreUpgradeBackup, PreUpgradeBackupArgs, downgrade_refusal

CHART_NAME = LABEL_STUDIO_CHART
CHART_REPOSITORY = "https://charts.heartex.com/"

# A first install pulls the images, initialises PostgreSQL and runs every migration.
RELEASE_TIMEOUT_SECONDS = 900
# Helm keeps one Secret per revision; enough for `helm rollback`, not an ever-growing pile.
RELEASE_MAX_HISTORY = 10

# Label Studio's legacy tokens are 6 to 40 characters; the longest is the strongest.
ADMIN_TOKEN_LENGTH = 40
DJANGO_SECRET_KEY_LENGTH = 64
PASSWORD_LENGTH = 32

@dataclass(frozen=True)
class MlBackendPeer:
    """An in-cluster ML backend Label Studio calls: its Service's ClusterIP (the one private
    address Label Studio's SSRF protection lets through) and its pods, for the egress policy."""

    address: pulumi.Input[str]
    pod_labels: Mapping[str, str]
    port: int


@dataclass(frozen=True)
class LabelStudioAccess:
    """How the platform's other workloads reach Label Studio and authenticate to it."""

    # The chart's app Service, and its in-cluster URL, which resolves once the release is deployed.
    service_name: str
    service_port: int
    service_url: pulumi.Output[str]
    # The port of the app pods behind the Service (a NetworkPolicy names pod ports).
    pod_port: int
    public_url: str
    api_token: SecretKeyRef
    # Labels of the app pods, for NetworkPolicy peers.
    pod_labels: Mapping[str, str]


@dataclass(frozen=True)
class LabelStudioArgs:
    settings: LabelStudioSettings
    namespace: pulumi.Input[str]
    storage: StorageAccess
    protect: bool
    network: NetworkSettings
    # The in-cluster SAM backend, when there is one.
    ml_backend: Optional[MlBackendPeer] = None
    # A database outside the chart (external or RDS); None runs the chart's PostgreSQL.
    database: Optional[DatabaseConnection] = None


# The stack output that records the deployed versions; the next update reads it back.
DEPLOYED_RELEASE_OUTPUT = "labelStudioRelease"


def release_versions(settings: LabelStudioSettings) -> dict[str, str]:
    """What DEPLOYED_RELEASE_OUTPUT holds."""
    return {"imageTag": settings.image_tag, "chartVersion": settings.chart_version}


class LabelStudio(pulumi.ComponentResource):
    """The Label Studio Helm release, its generated secrets, and how to reach it."""

    access: LabelStudioAccess
    database: DatabaseAccess
    pre_upgrade_backup: PreUpgradeBackup
    release_versions: dict[str, str]
    admin_email: str
    admin_password: pulumi.Output[str]
    admin_token: pulumi.Output[str]
    log_command: pulumi.Output[str]

    def __init__(self, name: str, args: LabelStudioArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:app:LabelStudio", name, None, pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(name="label-studio")])))
        settings = args.settings
        release_name = settings.release_name
        namespace = pulumi.Output.from_input(args.namespace)

        # In a protected stack the generated secrets cannot be replaced or deleted: the
        # database volume keeps the password it was initialised with, so a regenerated
        # database password would lock Label Studio out of its own data (and a new
        # SECRET_KEY or admin token would break sessions and the SAM backend).
        def generated(purpose: str, length: int) -> pulumi.Output[str]:
            # Alphanumeric: safe verbatim in env vars, connection strings and headers.
            return random.RandomPassword(f"{name}-{purpose}", length=length, special=False,
                                         opts=child_of(self, protect=args.protect)).result

        self.admin_password = generated("admin-password", PASSWORD_LENGTH)
        self.admin_token = generated("admin-api-token", ADMIN_TOKEN_LENGTH)
        secret_data = {
            ADMIN_PASSWORD_KEY: self.admin_password,
            ADMIN_TOKEN_KEY: self.admin_token,
            DJANGO_SECRET_KEY_KEY: generated("django-secret-key", DJANGO_SECRET_KEY_LENGTH),
        }
        outside = args.database
        if outside is None:
            secret_data[DATABASE_PASSWORD_KEY] = generated("database-password", PASSWORD_LENGTH)
            secret_data[DATABASE_ADMIN_PASSWORD_KEY] = generated("database-admin-password", PASSWORD_LENGTH)
        else:
            secret_data[DATABASE_PASSWORD_KEY] = outside.password

        secret = k8s.core.v1.Secret(
            f"{name}-platform-secrets",
            metadata={
                "name": f"{release_name}-platform-secrets",
                "namespace": namespace,
                "labels": labels(**{"app.kubernetes.io/instance": release_name}),
            },
            type="Opaque",
            string_data=secret_data,
            opts=child_of(self, protect=args.protect),
        )
        secret_name = secret.metadata.apply(lambda metadata: metadata["name"])
        # The chart's PostgreSQL Service (bitnami names it `<release>-postgresql`), or the server outside.
        self.database = DatabaseAccess(
            host=(pulumi.Output.from_input(outside.host) if outside
                  else namespace.apply(lambda ns: f"{release_name}-postgresql.{ns}.svc.cluster.local")),
            port=outside.port if outside else POSTGRES_PORT,
            name=settings.database.name,
            user=settings.database.user,
            password=SecretKeyRef(secret_name, DATABASE_PASSWORD_KEY),
            egress=outside.egress if outside else to_pods(postgresql_pod_labels(release_name), [POSTGRES_PORT]),
        )
        # Label Studio migrates the schema forward on rollout: the release changes only after
        # the database is backed up for these versions.
        self.pre_upgrade_backup = PreUpgradeBackup(
            f"{name}-pre-upgrade-backup",
            PreUpgradeBackupArgs(settings=settings, namespace=namespace, database=self.database,
                                 storage=args.storage, network=args.network,
                                 rds_instance=outside.rds_instance if outside else None,
                                 external=outside is not None and outside.rds_instance is None),
            opts=pulumi.ResourceOptions(parent=self))

        downgrade_check = self._downgrade_check(name, settings, args.storage)
        values = chart_values(settings, args.storage, secret_name,
                              ml_backend_address=args.ml_backend.address if args.ml_backend else None,
                              database=outside)
        release = k8s.helm.v3.Release(
            f"{name}-release",
            name=release_name,
            chart=CHART_NAME,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPOSITORY),
            version=settings.chart_version,
            namespace=namespace,
            # The values wait for the downgrade check: a refused downgrade never reaches the release.
            values=pulumi.Output.all(downgrade_check, values).apply(lambda checked: checked[1]),
            timeout=RELEASE_TIMEOUT_SECONDS,
            cleanup_on_fail=True,
            max_history=RELEASE_MAX_HISTORY,
            # Protected: deleting the release deletes the database StatefulSet.
            opts=child_of(self, protect=args.protect, depends_on=self.pre_upgrade_backup.waits_on),
        )

        service = settings.app_service_name
        # From the release: whoever uses the URL waits until Label Studio is deployed.
        deployed_url = pulumi.Output.all(release.name, release.namespace).apply(
            lambda deployed: in_cluster_url(service, deployed[1], APP_SERVICE_PORT))
        self.access = LabelStudioAccess(
            service_name=service, service_port=APP_SERVICE_PORT, service_url=deployed_url, pod_port=APP_POD_PORT,
            public_url=settings.public_url,
            api_token=SecretKeyRef(secret_name, ADMIN_TOKEN_KEY), pod_labels=app_selector_labels(release_name))
        self._egress_policy(name, namespace, args)
        if outside is None:
            self._database_egress_policy(name, namespace, args)
        self.admin_email = settings.admin_email
        self.release_versions = release_versions(settings)
        self.log_command = namespace.apply(lambda ns: f"kubectl -n {ns} logs -f deploy/{service} -c {APP_CONTAINER}")

        self.register_outputs({
            "serviceUrl": deployed_url,
            "secretName": secret_name,
            "url": settings.public_url,
            "adminEmail": self.admin_email,
            "adminPassword": self.admin_password,
            "adminApiToken": self.admin_token,
        })

    def _downgrade_check(self, name: str, settings: LabelStudioSettings, storage: StorageAccess) -> pulumi.Output:
        """The versions this stack's last update deployed, read back from its own outputs (none on a
        first deploy), held against the configured ones: a downgrade without confirmation stops here."""
        deployed = pulumi.StackReference(
            f"{name}-deployed-release",
            stack_name=f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}",
            opts=child_of(self))

        def check(values: list) -> None:
            versions, bucket = values
            before = (self.pre_upgrade_backup.backup_before(
                replace(settings, image_tag=versions["imageTag"], chart_version=versions["chartVersion"]), bucket)
                if versions else "")
            refusal = downgrade_refusal(versions, settings, before)
            if refusal:
                raise pulumi.RunError(refusal)

        return pulumi.Output.all(deployed.get_output(DEPLOYED_RELEASE_OUTPUT), storage.bucket).apply(check)

    def _egress_policy(self, name: str, namespace: pulumi.Output[str], args: LabelStudioArgs) -> None:
        """The app pods (app and nginx containers) reach DNS, their database, the store, SAM,
        and the networks members' own storages, webhooks and ML backends may use; nothing else."""
        egress = [*dns(args.network), self.database.egress, args.storage.egress, *pod_identity(args.network)]
        if args.ml_backend:
            egress.append(to_pods(args.ml_backend.pod_labels, [args.ml_backend.port]))
        if args.network.member_egress_cidrs:
            egress.append(to_networks(args.network.member_egress_cidrs))
        policy = network_policy(f"{args.settings.release_name}-ls-app-egress", namespace, self.access.pod_labels,
                                egress=egress, labels=labels(**{"app.kubernetes.io/instance": args.settings.release_name}))
        k8s.networking.v1.NetworkPolicy(f"{name}-egress-policy", metadata=policy["metadata"], spec=policy["spec"],
                                        opts=child_of(self))

    def _database_egress_policy(self, name: str, namespace: pulumi.Output[str], args: LabelStudioArgs) -> None:
        """The chart's PostgreSQL pods answer; they call nobody. DNS only (the server resolves
        its own Service names); who may connect to them is the chart's ingress policy."""
        release_name = args.settings.release_name
        policy = network_policy(f"{release_name}-postgresql-egress", namespace, postgresql_pod_labels(release_name),
                                egress=dns(args.network), labels=labels(**{"app.kubernetes.io/instance": release_name}))
        k8s.networking.v1.NetworkPolicy(f"{name}-database-egress-policy", metadata=policy["metadata"],
                                        spec=policy["spec"], opts=child_of(self))
