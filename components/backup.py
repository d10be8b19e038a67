"""Nightly dumps of the chart's in-cluster PostgreSQL into the platform bucket.

RDS keeps its own automated backups and an external server is its operator's to back
up; the in-cluster StatefulSet has nothing but its volume. This CronJob dumps it with
`pg_dump --format=custom` (the chart's own PostgreSQL image, so the client matches the
server's major version) and uploads the dump under `<storage.prefix>/backups/` of the
versioned bucket, deleting dumps older than the retention. Restoring: docs/database.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.network import deny_all_ingress
from components.settings import BackupSettings

BACKUP_NAME = "database-backup"
# The chart's PostgreSQL image (values.yaml: postgresql.image), so pg_dump matches the server.
DUMP_IMAGE = "docker.io/bitnamilegacy/postgresql:17.6.0"
UPLOAD_IMAGE = "docker.io/amazon/aws-cli:2.15.0"
# An unprivileged user no host account shares; both images run as any UID.
RUN_AS_USER = 10001
DUMP_FILE = "/backup/labelstudio.dump"
# Custom format: compressed, and pg_restore can clean and recreate objects from it.
DUMP_COMMAND = ("pg_dump", "--format=custom", "--no-owner")
# The restore docs/database.md prescribes (plus --dbname and the dump file).
RESTORE_COMMAND = ("pg_restore", "--clean", "--if-exists", "--no-owner")
LABELS = {"app.kubernetes.io/name": BACKUP_NAME, "app.kubernetes.io/part-of": "labeling-platform"}

# Uploads the dump with a sortable UTC timestamp, then removes dumps older than the
# retention by comparing those timestamps as strings.
UPLOAD_SCRIPT = """\
set -eu
endpoint=""
if [ -n "${S3_ENDPOINT:-}" ]; then endpoint="--endpoint-url ${S3_ENDPOINT}"; fi
stamp=$(date -u +%Y%m%dT%H%M%SZ)
aws $endpoint s3 cp "${DUMP_FILE}" "s3://${BUCKET}/${BACKUP_PREFIX}/labelstudio-${stamp}.dump"
cutoff=$(date -u -d "@$(( $(date -u +%s) - RETENTION_DAYS * 86400 ))" +%Y%m%dT%H%M%SZ)
aws $endpoint s3 ls "s3://${BUCKET}/${BACKUP_PREFIX}/" | awk '{print $4}' | while read -r key; do
  taken=${key#labelstudio-}; taken=${taken%.dump}
  if [ "$taken" \\< "$cutoff" ]; then aws $endpoint s3 rm "s3://${BUCKET}/${BACKUP_PREFIX}/${key}"; fi
done
echo "uploaded labelstudio-${stamp}.dump; kept dumps newer than ${cutoff}"
"""


def _secret_env(name: str, secret: pulumi.Input[str], key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _hardened(container: dict) -> dict:
    return {
        **container,
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "privileged": False, "capabilities": {"drop": ["ALL"]}},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
    }


@dataclass
class BackupTarget:
    """What to dump and where to put it."""

    settings: BackupSettings
    namespace: pulumi.Input[str]
    database_host: pulumi.Input[str]
    database_name: str
    database_user: str
    password_secret: pulumi.Input[str]
    password_key: str
    bucket: pulumi.Input[str]
    backup_prefix: str
    region: str
    endpoint: Optional[str]
    credentials_secret: Optional[pulumi.Input[str]]
    credential_keys: Sequence[str]
    # With IRSA there are no keys: the backup runs as Label Studio's service account.
    service_account: Optional[str]


def backup_cronjob_manifest(target: BackupTarget) -> dict:
    """The CronJob; credentials only by secretKeyRef (or the IRSA service account)."""
    upload_env = [
        {"name": "BUCKET", "value": target.bucket},
        {"name": "BACKUP_PREFIX", "value": target.backup_prefix},
        {"name": "RETENTION_DAYS", "value": str(target.settings.retention_days)},
        {"name": "AWS_DEFAULT_REGION", "value": target.region},
        {"name": "HOME", "value": "/tmp"},
        {"name": "DUMP_FILE", "value": DUMP_FILE},
    ]
    if target.endpoint:
        upload_env.append({"name": "S3_ENDPOINT", "value": target.endpoint})
    if target.credentials_secret is not None:
        upload_env += [_secret_env(key, target.credentials_secret, key) for key in target.credential_keys]
    scratch = [{"name": "backup", "mountPath": "/backup"}, {"name": "tmp", "mountPath": "/tmp"}]
    pod_spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": target.service_account is not None,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_USER,
                            "fsGroup": RUN_AS_USER, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [_hardened({
            "name": "dump",
            "image": DUMP_IMAGE,
            "command": [*DUMP_COMMAND, f"--file={DUMP_FILE}"],
            "env": [
                {"name": "PGHOST", "value": target.database_host},
                {"name": "PGDATABASE", "value": target.database_name},
                {"name": "PGUSER", "value": target.database_user},
                _secret_env("PGPASSWORD", target.password_secret, target.password_key),
            ],
            "volumeMounts": scratch,
        })],
        "containers": [_hardened({
            "name": "upload",
            "image": UPLOAD_IMAGE,
            "command": ["/bin/sh", "-c", UPLOAD_SCRIPT],
            "env": upload_env,
            "volumeMounts": scratch,
        })],
        "volumes": [{"name": "backup", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
    }
    if target.service_account is not None:
        pod_spec["serviceAccountName"] = target.service_account
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": BACKUP_NAME, "namespace": target.namespace, "labels": LABELS},
        "spec": {
            "schedule": target.settings.schedule,
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

    def __init__(self, name: str, target: BackupTarget, kubernetes_provider: k8s.Provider,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:database:Backup", name, None, opts)
        manifest = backup_cronjob_manifest(target)
        child = pulumi.ResourceOptions(parent=self, provider=kubernetes_provider)
        isolation = deny_all_ingress(BACKUP_NAME, target.namespace, LABELS)
        k8s.networking.v1.NetworkPolicy(BACKUP_NAME, metadata=isolation["metadata"], spec=isolation["spec"], opts=child)
        self.cronjob = k8s.batch.v1.CronJob(
            BACKUP_NAME, metadata=manifest["metadata"], spec=manifest["spec"], opts=child)
        self.register_outputs({"schedule": target.settings.schedule, "prefix": target.backup_prefix})
