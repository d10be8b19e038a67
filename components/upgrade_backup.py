"""A backup of Label Studio's database before its version changes, which the release waits on.

Label Studio migrates its schema forward when a new version rolls out, and an older
version does not run on the migrated schema: going back is a restore. So whenever
`labelStudio.imageTag` or `labelStudio.chartVersion` changes (and the first time a stack
declares this), the stack backs the database up first and the Helm release depends on it:

- the chart's in-cluster PostgreSQL: a Job running the nightly backup's dump and upload
  (components/backup.py) into `<storage.prefix>/backups/pre-upgrade/to-<imageTag>-chart-<chartVersion>/`.
  Pulumi waits for the Job to complete; a failed Job fails `pulumi up` before the release
  changes. On a first install there is no database yet: the Job says so and succeeds;
- RDS: a manual DB snapshot `<project>-<stack>-pre-upgrade-<digest>`, retained when a later
  version's snapshot takes its place in the program;
- an external server: nothing the stack can take; the summary says what the operator does.

The Job and the snapshot are named by a digest of the version pair: the same versions
declare the same backup, so a second `pulumi up` runs nothing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from typing import Mapping, Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.backup import backup_network_policy, dump_and_upload_pod_spec, one_shot_job
from components.conventions import child_of, labels
from components.database import DatabaseAccess
from components.settings import LabelStudioSettings, NetworkSettings
from components.storage import StorageAccess, WorkloadIdentity

PRE_UPGRADE_NAME = "pre-upgrade-backup"
LABELS = labels(PRE_UPGRADE_NAME)
DIGEST_LENGTH = 10
# Every name of the Job (one per version pair), and no other object's: what the alerts select it by.
JOB_NAME_PATTERN = f"{PRE_UPGRADE_NAME}-[0-9a-f]{{{DIGEST_LENGTH}}}"
# A dump of a large database takes a while; the release waits this long at most.
DEADLINE_SECONDS = 3600


def version_digest(settings: LabelStudioSettings) -> str:
    """Short and stable for one (imageTag, chartVersion) pair."""
    pair = f"{settings.image_tag}\n{settings.chart_version}".encode()
    return hashlib.sha256(pair).hexdigest()[:DIGEST_LENGTH]


def pre_upgrade_prefix(storage: StorageAccess, settings: LabelStudioSettings) -> str:
    """Where the dump taken before moving to these versions lands in the bucket."""
    return f"{storage.under_prefix('backups')}/pre-upgrade/to-{settings.image_tag}-chart-{settings.chart_version}"


def snapshot_identifier(project: str, stack: str, settings: LabelStudioSettings) -> str:
    """An RDS snapshot name: letters, digits and single hyphens, starting with a letter."""
    words = re.sub(r"[^A-Za-z0-9]+", "-", f"{project}-{stack}").strip("-")
    return f"{words}-pre-upgrade-{version_digest(settings)}"


def release_order(version: str) -> tuple[int, ...]:
    """An exact version (1.23.2, 1.24.0-rc1) as numbers that compare in release order; a
    pre-release sorts with its release, which is as far as a downgrade check needs to see."""
    return tuple(int(part) for part in re.split(r"[-+]", version, maxsplit=1)[0].split("."))


def downgrade_refusal(deployed: Optional[Mapping[str, str]], settings: LabelStudioSettings,
                      backup_before_deployed: str) -> Optional[str]:
    """One line stopping a move to an older Label Studio than the stack's last update deployed
    (`deployed`: its imageTag and chartVersion; None on a first deploy), unless
    labelStudio.confirmDowngradeFrom names the deployed release: the older release cannot run
    on the schema the newer one migrated, so the backup taken before it comes back first."""
    deployed_tag = (deployed or {}).get("imageTag")
    if not deployed_tag or release_order(settings.image_tag) >= release_order(deployed_tag):
        return None
    if settings.confirm_downgrade_from == deployed_tag:
        return None
    return (f"labelStudio.imageTag: {settings.image_tag} is older than the deployed {deployed_tag}, and Label Studio "
            f"{settings.image_tag} cannot run on the schema {deployed_tag} migrated; restore {backup_before_deployed} "
            "first (docs/operations.md, rolling back a Label Studio version), then set "
            f"labelStudio.confirmDowngradeFrom {deployed_tag}")


def pre_upgrade_job_manifest(namespace: pulumi.Input[str], settings: LabelStudioSettings,
                             database: DatabaseAccess, storage: StorageAccess) -> dict:
    pod_spec = dump_and_upload_pod_spec(database, storage, pre_upgrade_prefix(storage, settings),
                                        nothing_without_database=True)
    return one_shot_job(f"{PRE_UPGRADE_NAME}-{version_digest(settings)}", namespace, LABELS, pod_spec,
                        backoff_limit=2, deadline_seconds=DEADLINE_SECONDS)


@dataclass(frozen=True)
class PreUpgradeBackupArgs:
    settings: LabelStudioSettings
    namespace: pulumi.Input[str]
    database: DatabaseAccess
    storage: StorageAccess
    network: NetworkSettings
    # Where the database is: the chart's PostgreSQL (both None), the stack's RDS instance
    # (its identifier) or a server the stack does not own.
    rds_instance: Optional[pulumi.Input[str]] = None
    external: bool = False


class PreUpgradeBackup(pulumi.ComponentResource):
    """The backup the release waits on (`waits_on`), and a sentence saying what it is (`summary`)."""

    waits_on: list[pulumi.Resource]
    summary: pulumi.Output[str]
    # Set where the backup is a Job (the in-cluster database).
    job_name_pattern: Optional[str] = None

    def __init__(self, name: str, args: PreUpgradeBackupArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:database:PreUpgradeBackup", name, None, opts)
        settings, digest = args.settings, version_digest(args.settings)
        versions = f"Label Studio {settings.image_tag}, chart {settings.chart_version}"
        self.waits_on = []
        if args.external:
            self.summary = pulumi.Output.from_input(
                f"No backup before {versions}: the database is outside the stack. Back it up yourself "
                "before `pulumi up` changes labelStudio.imageTag or labelStudio.chartVersion.")
        elif args.rds_instance is not None:
            identifier = snapshot_identifier(pulumi.get_project(), pulumi.get_stack(), settings)
            # Retained, never protected: the next version's snapshot takes this one's place in
            # the program, and the snapshot itself must outlive that.
            snapshot = aws.rds.Snapshot(f"{name}-snapshot-{digest}", db_instance_identifier=args.rds_instance,
                                        db_snapshot_identifier=identifier,
                                        opts=child_of(self, retain_on_delete=True))
            self.waits_on.append(snapshot)
            self.summary = pulumi.Output.from_input(
                f"Before {versions}: RDS snapshot {identifier} of the database, kept after the upgrade.")
        else:
            storage, account = self._own_identity(name, args)
            manifest = pre_upgrade_job_manifest(args.namespace, settings, args.database, storage)
            isolation = backup_network_policy(PRE_UPGRADE_NAME, args.namespace, LABELS, args.database, storage,
                                              args.network)
            k8s.networking.v1.NetworkPolicy(f"{name}-network-policy", metadata=isolation["metadata"],
                                            spec=isolation["spec"], opts=child_of(self))
            job = k8s.batch.v1.Job(
                f"{name}-job-{digest}", metadata=manifest["metadata"], spec=manifest["spec"],
                opts=child_of(self, custom_timeouts=pulumi.CustomTimeouts(create=f"{DEADLINE_SECONDS}s"),
                              depends_on=account))
            self.waits_on.append(job)
            self.job_name_pattern = JOB_NAME_PATTERN
            prefix = pre_upgrade_prefix(args.storage, settings)
            self.summary = pulumi.Output.from_input(args.storage.bucket).apply(
                lambda bucket: f"Before {versions}: Job {manifest['metadata']['name']} dumps the database to "
                               f"s3://{bucket}/{prefix}/ (nothing on a first install); the release waits for it.")
        self._args = args
        self.register_outputs({"summary": self.summary})

    def backup_before(self, versions: LabelStudioSettings, bucket: str) -> str:
        """Where the backup this component takes before moving to `versions` is kept."""
        if self._args.external:
            return f"your own backup of the database from before Label Studio {versions.image_tag}"
        if self._args.rds_instance is not None:
            return f"the RDS snapshot {snapshot_identifier(pulumi.get_project(), pulumi.get_stack(), versions)}"
        return f"the dump under s3://{bucket}/{pre_upgrade_prefix(self._args.storage, versions)}/"

    def _own_identity(self, name: str, args: PreUpgradeBackupArgs) -> tuple[StorageAccess, list[pulumi.Resource]]:
        """With IRSA the nightly backup runs as Label Studio's service account, which the chart
        makes: on a first install it does not exist yet and the Job's pod could not start. So
        this Job has its own account, for the same role (which trusts it: ObjectStorageArgs)."""
        identity = args.storage.credentials
        if not isinstance(identity, WorkloadIdentity):
            return args.storage, []
        account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata={"name": PRE_UPGRADE_NAME, "namespace": args.namespace, "labels": LABELS,
                      "annotations": {"eks.amazonaws.com/role-arn": identity.role_arn}},
            automount_service_account_token=False, opts=child_of(self))
        return replace(args.storage, credentials=replace(identity, service_account=PRE_UPGRADE_NAME)), [account]
