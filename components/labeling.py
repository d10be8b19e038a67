"""Labeling as code: projects, storages, sync and the SAM connection, applied in-cluster.

A Kubernetes Job runs `reconciler/reconcile.py` (standard library only, so a plain
Python image needs no pip step) against the Label Studio Service. Its script and the
desired state travel in a ConfigMap; the API token and S3 keys arrive by secretKeyRef.
The Job's name carries a hash of both, so a change of desired state runs it again and
an unchanged state leaves it alone. It has no TTL: a Job that deleted itself would be
re-created by the next `pulumi up`. Pulumi waits for the Job to complete, so `pulumi up`
finishes only when the platform is configured, and the Label Studio API never has to be
reachable from where `pulumi up` runs.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.network import deny_all_ingress
from components.settings import PROJECT_ROOT, Settings

RECONCILER_SCRIPT = PROJECT_ROOT / "reconciler" / "reconcile.py"
RECONCILER_NAME = "labeling-reconciler"
# Pinned: a plain CPython image; the reconciler needs nothing beyond the standard library.
RECONCILER_IMAGE = "python:3.12.8-slim-bookworm"
TEAM_SECRET_SUFFIX = "team-access"
INVITE_URL_KEY = "invite-url"
MOUNT_PATH = "/reconciler"
# First installs pull images, run migrations and wait for SAM to load its model.
DEADLINE_SECONDS = 1800
LABELS = {"app.kubernetes.io/name": RECONCILER_NAME, "app.kubernetes.io/part-of": "labeling-platform"}


def desired_state(settings: Settings, bucket_name: str, sam_url: Optional[str]) -> dict[str, Any]:
    """What the reconciler makes Label Studio look like: the format reconcile.py reads."""
    storage = settings.storage
    return {
        "storage": {
            "bucket": bucket_name,
            "region": storage.region,
            "endpoint": storage.endpoint,
            "presign": True,
            "presignTtlMinutes": 60,
        },
        "exportPrefix": f"{storage.prefix}/exports",
        "samUrl": sam_url,
        "projects": [
            {"title": p.title, "labelConfig": p.label_config, "prefix": p.prefix,
             "regexFilter": p.regex_filter, "sam": p.sam}
            for p in settings.labeling.projects
        ],
        "members": list(settings.labeling.members),
    }


def job_name(state_json: str, script: str) -> str:
    """A name that changes exactly when what the Job would do changes."""
    digest = hashlib.sha256((state_json + "\0" + script).encode()).hexdigest()[:10]
    return f"{RECONCILER_NAME}-{digest}"


SECRETS_PATH = "/secrets"


def job_manifest(*, name: pulumi.Input[str], namespace: pulumi.Input[str], config_map: pulumi.Input[str],
                 label_studio_url: pulumi.Input[str], public_url: str, token_secret: pulumi.Input[str], token_key: str,
                 team_secret: str, storage_secret: Optional[pulumi.Input[str]] = None,
                 storage_keys: Sequence[str] = ()) -> dict:
    """The Job; credentials arrive as read-only files from their Secrets, never as env values."""
    mounts = [{"name": "reconciler", "mountPath": MOUNT_PATH, "readOnly": True},
              {"name": "label-studio-token", "mountPath": f"{SECRETS_PATH}/label-studio", "readOnly": True}]
    volumes = [{"name": "reconciler", "configMap": {"name": config_map}},
               {"name": "label-studio-token",
                "secret": {"secretName": token_secret, "items": [{"key": token_key, "path": "api-token"}]}}]
    env = [
        {"name": "LABEL_STUDIO_URL", "value": label_studio_url},
        # The address people open: the base of the invite link the reconciler stores.
        {"name": "LABEL_STUDIO_PUBLIC_URL", "value": public_url},
        {"name": "LABEL_STUDIO_API_KEY_FILE", "value": f"{SECRETS_PATH}/label-studio/api-token"},
        {"name": "TEAM_SECRET_NAME", "value": team_secret},
        {"name": "RECONCILER_TIMEOUT_SECONDS", "value": str(DEADLINE_SECONDS - 60)},
    ]
    if storage_secret is not None:
        mounts.append({"name": "storage-credentials", "mountPath": f"{SECRETS_PATH}/storage", "readOnly": True})
        volumes.append({"name": "storage-credentials", "secret": {"secretName": storage_secret}})
        env += [{"name": f"{key}_FILE", "value": f"{SECRETS_PATH}/storage/{key}"} for key in storage_keys]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": LABELS},
        "spec": {
            "backoffLimit": 3,
            "activeDeadlineSeconds": DEADLINE_SECONDS,
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": RECONCILER_NAME,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                                        "fsGroup": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "reconcile",
                        "image": RECONCILER_IMAGE,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["python", f"{MOUNT_PATH}/reconcile.py", f"{MOUNT_PATH}/desired.json"],
                        "env": env,
                        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                      "limits": {"cpu": "500m", "memory": "256Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "privileged": False, "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    }


def invite_url_from_secret_data(data: Optional[Mapping[str, str]]) -> Optional[str]:
    """The invite link from the team Secret's (base64) data; None until the reconciler wrote it."""
    encoded = (data or {}).get(INVITE_URL_KEY)
    return base64.b64decode(encoded).decode() if encoded else None


def team_access_rbac(namespace: pulumi.Input[str], team_secret: str) -> dict[str, dict]:
    """The Job may read and write one Secret (the invite link) and nothing else."""
    return {
        "role": {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": RECONCILER_NAME, "namespace": namespace, "labels": LABELS},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [team_secret],
                       "verbs": ["get", "patch"]}],
        },
        "binding": {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": RECONCILER_NAME, "namespace": namespace, "labels": LABELS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": RECONCILER_NAME},
            "subjects": [{"kind": "ServiceAccount", "name": RECONCILER_NAME, "namespace": namespace}],
        },
    }


@dataclass
class LabelingArgs:
    settings: Settings
    namespace: pulumi.Input[str]
    label_studio_url: pulumi.Input[str]
    token_secret_name: pulumi.Input[str]
    token_secret_key: str
    bucket_name: pulumi.Input[str]
    storage_secret_name: Optional[pulumi.Input[str]]
    storage_secret_keys: Sequence[str]
    sam_url: Optional[pulumi.Input[str]]
    depends_on: Sequence[pulumi.Resource]
    kubernetes_provider: k8s.Provider


class LabelingConfiguration(pulumi.ComponentResource):
    """The reconciler Job and what it needs: script, desired state, identity, team Secret."""

    team_secret_name: str
    job_name: pulumi.Output[str]
    invite_url: pulumi.Output[Optional[str]]

    def __init__(self, name: str, args: LabelingArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:app:LabelingConfiguration", name, None, opts)
        settings = args.settings
        child = pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider)
        script = RECONCILER_SCRIPT.read_text()
        wants_sam = any(p.sam for p in settings.labeling.projects)
        state_json = pulumi.Output.all(args.bucket_name, args.sam_url if wants_sam else None).apply(
            lambda values: json.dumps(desired_state(settings, values[0], values[1]), indent=2, sort_keys=True))
        self.job_name = state_json.apply(lambda text: job_name(text, script))

        config_map = k8s.core.v1.ConfigMap(
            "reconciler",
            metadata={"name": self.job_name, "namespace": args.namespace, "labels": LABELS},
            data={"reconcile.py": script, "desired.json": state_json},
            opts=child,
        )
        self.team_secret_name = f"{settings.label_studio.release_name}-{TEAM_SECRET_SUFFIX}"
        # The reconciler writes the invite link here; Pulumi only makes the empty Secret.
        k8s.core.v1.Secret(
            "team-access",
            metadata={"name": self.team_secret_name, "namespace": args.namespace, "labels": LABELS},
            type="Opaque",
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(ignore_changes=["data", "stringData"])),
        )
        k8s.core.v1.ServiceAccount(
            "reconciler",
            metadata={"name": RECONCILER_NAME, "namespace": args.namespace, "labels": LABELS},
            automount_service_account_token=True,
            opts=child,
        )
        rbac = team_access_rbac(args.namespace, self.team_secret_name)
        k8s.rbac.v1.Role("reconciler", metadata=rbac["role"]["metadata"], rules=rbac["role"]["rules"], opts=child)
        k8s.rbac.v1.RoleBinding("reconciler", metadata=rbac["binding"]["metadata"],
                                role_ref=rbac["binding"]["roleRef"], subjects=rbac["binding"]["subjects"], opts=child)

        manifest = job_manifest(
            name=self.job_name, namespace=args.namespace, config_map=config_map.metadata.apply(lambda m: m["name"]),
            label_studio_url=args.label_studio_url, public_url=settings.label_studio.public_url,
            token_secret=args.token_secret_name,
            token_key=args.token_secret_key, team_secret=self.team_secret_name,
            storage_secret=args.storage_secret_name, storage_keys=args.storage_secret_keys,
        )
        isolation = deny_all_ingress(RECONCILER_NAME, args.namespace, LABELS)
        k8s.networking.v1.NetworkPolicy("reconciler", metadata=isolation["metadata"], spec=isolation["spec"], opts=child)
        job = k8s.batch.v1.Job(
            "reconciler",
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            # Runs once Label Studio and SAM are up; Pulumi then waits for it to complete.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(
                depends_on=list(args.depends_on),
                custom_timeouts=pulumi.CustomTimeouts(create=f"{DEADLINE_SECONDS}s"))),
        )
        # Read the invite link back once the Job has written it. The id derives from the
        # Job, so the preview of a (re)run leaves it unknown instead of reading a Secret
        # that is not filled yet.
        filled = k8s.core.v1.Secret.get(
            "team-access-filled",
            job.metadata.apply(lambda metadata: f"{metadata['namespace']}/{self.team_secret_name}"),
            opts=pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider),
        )
        self.invite_url = pulumi.Output.secret(filled.data.apply(invite_url_from_secret_data))
        self.register_outputs({"jobName": self.job_name, "teamSecretName": self.team_secret_name,
                               "inviteUrl": self.invite_url})
