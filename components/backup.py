"""Dumps of the chart's in-cluster PostgreSQL into the platform bucket: nightly, and once
before every change of Label Studio's version.

RDS keeps its own automated backups and an external server is its operator's to back
up; the in-cluster StatefulSet has nothing but its volume. The nightly CronJob dumps it
with `pg_dump --format=custom` (the chart's own PostgreSQL image, so the client matches
the server's major version) and uploads the dump under `<storage.prefix>/backups/` of the
versioned bucket, deleting dumps older than the retention. The pre-upgrade backup
(components/upgrade_backup.py) runs the same two containers once, into
`<storage.prefix>/backups/pre-upgrade/`. Restoring: docs/database.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from components.conventions import HARDENED_CONTAINER, ScheduledRun, child_of, labels, non_root_pod
from components.database import DatabaseAccess
from components.network import dns, network_policy, pod_identity
from components.settings import BackupSettings, NetworkSettings
from components.storage import StorageAccess, StorageKeys, WorkloadIdentity

BACKUP_NAME = "database-backup"
# The chart's PostgreSQL image (values.yaml: postgresql.image), so pg_dump matches the server.
DUMP_IMAGE = "docker.io/bitnamilegacy/postgresql:17.6.0"
UPLOAD_IMAGE = "docker.io/amazon/aws-cli:2.15.0"
# An unprivileged user no host account shares; both images run as any UID.
RUN_AS_USER = 10001
DUMP_FILE = "/backup/labelstudio.dump"
# Custom format: compressed, and pg_restore can clean and recreate objects from it.
DUMP_COMMAND = ("pg_dump", "--format=custom", "--no-owner")
# Left beside the dump file when there is no database to dump; the upload then skips.
NOTHING_SUFFIX = ".nothing"

# With NOTHING_WITHOUT_DATABASE set (the pre-upgrade backup), a database Service that does
# not resolve is a first install: the chart has not made its PostgreSQL yet, so there is
# nothing to lose. Everything else, including a database that resolves but refuses, fails.
DUMP_SCRIPT = f"""\
set -eu
if [ -n "${{NOTHING_WITHOUT_DATABASE:-}}" ] && ! getent hosts "${{PGHOST}}" >/dev/null 2>&1; then
  message="nothing to back up: ${{PGHOST}} does not resolve, the database is not installed yet"
  echo "$message" | tee "${{DUMP_FILE}}{NOTHING_SUFFIX}"
  exit 0
fi
exec {" ".join(DUMP_COMMAND)} --file="${{DUMP_FILE}}"
"""
# The restore docs/database.md prescribes (plus --dbname and the dump file).
RESTORE_COMMAND = ("pg_restore", "--clean", "--if-exists", "--no-owner")
# A rollback to an older Label Studio first empties the schema: tables a newer release's
# migrations added are not in the older dump, and `--clean` would leave them behind to
# break the next upgrade (docs/operations.md).
EMPTY_SCHEMA_SQL = "DROP SCHEMA public CASCADE; CREATE SCHEMA public;"
LABELS = labels(BACKUP_NAME)

# aws-cli's endpoint: an S3-compatible store's (S3_ENDPOINT); on AWS the CLI's own for the region.
STORE_ENDPOINT_SCRIPT = """\
endpoint=""
if [ -n "${S3_ENDPOINT:-}" ]; then endpoint="--endpoint-url ${S3_ENDPOINT}"; fi
"""
# The nightly dumps' names right under BACKUP_PREFIX: `aws s3 ls` lists a folder such as
# pre-upgrade/ as a line without a key, which the pattern skips.
LIST_DUMPS_SCRIPT = ("aws $endpoint s3 ls \"s3://${BUCKET}/${BACKUP_PREFIX}/\""
                     " | awk '$4 ~ /^labelstudio-.*[.]dump$/ {print $4}'")

# Uploads the dump with a sortable UTC timestamp; with RETENTION_DAYS, then removes dumps
# older than the retention by comparing those timestamps as strings.
UPLOAD_SCRIPT = f"""\
set -eu
if [ -e "${{DUMP_FILE}}{NOTHING_SUFFIX}" ]; then exit 0; fi
{STORE_ENDPOINT_SCRIPT}stamp=$(date -u +%Y%m%dT%H%M%SZ)
aws $endpoint s3 cp "${{DUMP_FILE}}" "s3://${{BUCKET}}/${{BACKUP_PREFIX}}/labelstudio-${{stamp}}.dump"
if [ -z "${{RETENTION_DAYS:-}}" ]; then
  echo "uploaded s3://${{BUCKET}}/${{BACKUP_PREFIX}}/labelstudio-${{stamp}}.dump"
  exit 0
fi
cutoff=$(date -u -d "@$(( $(date -u +%s) - RETENTION_DAYS * 86400 ))" +%Y%m%dT%H%M%SZ)
{LIST_DUMPS_SCRIPT} | while read -r key; do
  taken=${{key#labelstudio-}}; taken=${{taken%.dump}}
  if [ "$taken" \\< "$cutoff" ]; then aws $endpoint s3 rm "s3://${{BUCKET}}/${{BACKUP_PREFIX}}/${{key}}"; fi
done
echo "uploaded labelstudio-${{stamp}}.dump; kept dumps newer than ${{cutoff}}"
"""

def hardened(container: dict) -> dict:
    """A one-shot container of a backup or restore pod: unprivileged, read-only, bounded."""
    return {
        **container,
        "imagePullPolicy": "IfNotPresent",
        "securityContext": dict(HARDENED_CONTAINER),
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
    }


# The variable aws-cli reads for its CA bundle.
BACKUP_CA_VARIABLES = ("AWS_CA_BUNDLE",)
# Both containers of a backup or restore pod share the dump file's directory; HOME is /tmp.
SCRATCH_MOUNTS = ({"name": "backup", "mountPath": "/backup"}, {"name": "tmp", "mountPath": "/tmp"})


@dataclass(frozen=True)
class DatabaseBackupArgs:
    """What to dump and where to put it."""

    settings: BackupSettings
    namespace: pulumi.Input[str]
    database: DatabaseAccess
    storage: StorageAccess
    network: NetworkSettings


def store_env(storage: StorageAccess, backup_prefix: str) -> list[dict]:
    """Where aws-cli finds the dumps (BUCKET, BACKUP_PREFIX, S3_ENDPOINT of an S3-compatible
    store) and its keys, by secretKeyRef; with IRSA there are none: the pod's service account
    assumes the role (one_shot_pod_spec)."""
    env = [
        {"name": "BUCKET", "value": storage.bucket},
        {"name": "BACKUP_PREFIX", "value": backup_prefix},
        {"name": "AWS_DEFAULT_REGION", "value": storage.region},
        {"name": "HOME", "value": "/tmp"},
        {"name": "DUMP_FILE", "value": DUMP_FILE},
    ]
    if storage.endpoint:
        env.append({"name": "S3_ENDPOINT", "value": storage.endpoint})
    if isinstance(storage.credentials, StorageKeys):
        keys = storage.credentials
        env += [keys.access_key_id.env(keys.access_key_id.key), keys.secret_access_key.env(keys.secret_access_key.key)]
    return env


def database_env(database: DatabaseAccess) -> list[dict]:
    """libpq's connection variables, the password by secretKeyRef."""
    return [
        {"name": "PGHOST", "value": database.host},
        {"name": "PGDATABASE", "value": database.name},
        {"name": "PGUSER", "value": database.user},
        database.password.env("PGPASSWORD"),
        {"name": "DUMP_FILE", "value": DUMP_FILE},
    ]


def one_shot_container(name: str, image: str, script: str, env: list[dict]) -> dict:
    """A hardened container running `script` once, on the pod's scratch directories."""
    return hardened({"name": name, "image": image, "command": ["/bin/sh", "-c", script], "env": env,
                     "volumeMounts": list(SCRATCH_MOUNTS)})


def store_client(storage: StorageAccess, container: dict) -> dict:
    """The aws-cli container of a pod, trusting the store's private CA when it has one; the
    PostgreSQL container never talks to the store and gets no bundle."""
    return storage.trust.container_trusting(container, BACKUP_CA_VARIABLES) if storage.trust else container


def one_shot_pod_spec(storage: StorageAccess, init_container: dict, container: dict) -> dict:
    """A pod that runs `init_container`, then `container`, never restarted, as an unprivileged
    user; with IRSA as the service account the role trusts, otherwise without any token."""
    identity = storage.credentials if isinstance(storage.credentials, WorkloadIdentity) else None
    pod_spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": identity is not None,
        "securityContext": non_root_pod(RUN_AS_USER),
        "initContainers": [init_container],
        "containers": [container],
        "volumes": [{"name": "backup", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}},
                    *([storage.trust.volume()] if storage.trust else [])],
    }
    if identity is not None:
        pod_spec["serviceAccountName"] = identity.service_account
    return pod_spec


def one_shot_job(name: pulumi.Input[str], namespace: pulumi.Input[str], pod_labels: dict, pod_spec: dict,
                 backoff_limit: int, deadline_seconds: int) -> dict:
    """A Job running `pod_spec` to completion, labelled like its pods."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": pod_labels},
        "spec": {
            "backoffLimit": backoff_limit,
            "activeDeadlineSeconds": deadline_seconds,
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }


def dump_and_upload_pod_spec(database: DatabaseAccess, storage: StorageAccess, backup_prefix: str,
                             retention_days: Optional[int] = None, nothing_without_database: bool = False) -> dict:
    """One dump of the database uploaded under `backup_prefix`: the pod of the nightly CronJob
    and of the pre-upgrade Job. Credentials only by secretKeyRef (or the IRSA service account)."""
    upload_env = store_env(storage, backup_prefix)
    if retention_days is not None:
        upload_env.append({"name": "RETENTION_DAYS", "value": str(retention_days)})
    dump_env = database_env(database)
    if nothing_without_database:
        dump_env.append({"name": "NOTHING_WITHOUT_DATABASE", "value": "true"})
    return one_shot_pod_spec(
        storage, one_shot_container("dump", DUMP_IMAGE, DUMP_SCRIPT, dump_env),
        store_client(storage, one_shot_container("upload", UPLOAD_IMAGE, UPLOAD_SCRIPT, upload_env)))


def backup_network_policy(name: str, namespace: pulumi.Input[str], pod_labels: dict, database: DatabaseAccess,
                          storage: StorageAccess, network: NetworkSettings) -> dict:
    """A backup pod serves nothing; it reaches DNS, the database and the store."""
    return network_policy(name, namespace, pod_labels, ingress=[], egress=[
        *dns(network), database.egress, storage.egress, *pod_identity(network)])


def backup_cronjob_manifest(args: DatabaseBackupArgs) -> dict:
    """The nightly CronJob."""
    pod_spec = dump_and_upload_pod_spec(args.database, args.storage, args.storage.under_prefix("backups"),
                                        retention_days=args.settings.retention_days)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": BACKUP_NAME, "namespace": args.namespace, "labels": LABELS},
        "spec": {
            "schedule": args.settings.schedule,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "backoffLimit": 2,
                    "activeDeadlineSeconds": 3600,
                    "template": {"metadata": {"labels": LABELS}, "spec": pod_spec},
                },
            },
        },
    }


class DatabaseBackup(pulumi.ComponentResource):
    """The backup CronJob of the in-cluster database."""

    scheduled_run: ScheduledRun

    def __init__(self, name: str, args: DatabaseBackupArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:database:DatabaseBackup", name, None, pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(type_="labeling:database:Backup", name="backup")])))
        manifest = backup_cronjob_manifest(args)
        isolation = backup_network_policy(BACKUP_NAME, args.namespace, LABELS, args.database, args.storage,
                                          args.network)
        k8s.networking.v1.NetworkPolicy(f"{name}-network-policy", metadata=isolation["metadata"],
                                        spec=isolation["spec"], opts=child_of(self, BACKUP_NAME))
        k8s.batch.v1.CronJob(f"{name}-cronjob", metadata=manifest["metadata"], spec=manifest["spec"],
                             opts=child_of(self, BACKUP_NAME))
        self.scheduled_run = ScheduledRun.of(manifest)
        self.register_outputs({"schedule": args.settings.schedule, "prefix": args.storage.under_prefix("backups")})
