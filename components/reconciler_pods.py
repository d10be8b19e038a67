"""The pods that run the reconciler package from its ConfigMap: the Job `pulumi up` waits for,
the scheduled full reconcile, and the export re-sync. One pod template serves all three; only
the command, the labels (each has its own NetworkPolicy) and what is mounted differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi

from components.conventions import HARDENED_CONTAINER, labels, non_root_pod
from components.label_studio import LabelStudioAccess
from components.storage import StorageKeys, StoreTrust
from reconciler import contract
from reconciler.contract import SCHEDULED_FLAG

RECONCILER_NAME = "labeling-reconciler"
# Pinned: a plain CPython image; the reconciler needs nothing beyond the standard library.
RECONCILER_IMAGE = "python:3.12.8-slim-bookworm"
RECONCILER_UID = 65534
# The store probe's default SSL context reads the CA file from this variable.
RECONCILER_CA_VARIABLES = ("SSL_CERT_FILE",)
# The ConfigMap is mounted here: the package under reconciler/, the state beside it.
WORKING_DIR = "/opt/labeling"
DESIRED_STATE_FILE = "desired.json"
SECRETS_PATH = "/secrets"
# First installs pull images, run migrations and wait for SAM to load its model.
DEADLINE_SECONDS = 1800
LABELS = labels(RECONCILER_NAME)
EXPORT_RESYNC_NAME = "labeling-export-resync"
EXPORT_RESYNC_LABELS = labels(EXPORT_RESYNC_NAME)
# One pass re-saves every annotation inside a request (reconciler/sync.py).
EXPORT_RESYNC_DEADLINE_SECONDS = 1800
SCHEDULED_RECONCILE_NAME = "labeling-scheduled-reconcile"
SCHEDULED_RECONCILE_LABELS = labels(SCHEDULED_RECONCILE_NAME)
# A scheduled run imports only what is new, so it is short unless the bucket grew a lot.
SCHEDULED_RECONCILE_DEADLINE_SECONDS = 1800

def reconciler_pod(*, command: list[str], config_map: pulumi.Input[str], modules: Mapping[str, str],
                   label_studio: LabelStudioAccess, env: list[dict], secrets: Mapping[str, dict],
                   service_account: Optional[str], pod_labels: Mapping[str, str],
                   store_trust: Optional[StoreTrust] = None) -> dict:
    """The pod template of the Job and the CronJob: the package and state from the ConfigMap, each
    of `secrets` (volume name -> secret volume source) mounted read-only under /secrets/<name>,
    credentials only as files. Without `service_account` the pod gets no API token at all."""
    token = label_studio.api_token
    items = [{"key": module, "path": f"reconciler/{module}"} for module in sorted(modules)]
    items.append({"key": DESIRED_STATE_FILE, "path": DESIRED_STATE_FILE})
    secrets = {"label-studio": {"secretName": token.secret_name, "items": [{"key": token.key, "path": "api-token"}]},
               **secrets}
    mounts = [{"name": "reconciler", "mountPath": WORKING_DIR, "readOnly": True},
              *({"name": volume, "mountPath": f"{SECRETS_PATH}/{volume}", "readOnly": True} for volume in secrets)]
    volumes = [{"name": "reconciler", "configMap": {"name": config_map, "items": items}},
               *({"name": volume, "secret": source} for volume, source in secrets.items())]
    env = [
        {"name": contract.LABEL_STUDIO_URL, "value": label_studio.service_url},
        {"name": contract.API_TOKEN + contract.FILE_SUFFIX, "value": f"{SECRETS_PATH}/label-studio/api-token"},
        *env,
        # The ConfigMap is read-only: no bytecode caches next to the modules.
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]
    identity = ({"serviceAccountName": service_account} if service_account
                else {"automountServiceAccountToken": False})
    spec = {
        "restartPolicy": "Never",
        **identity,
        "securityContext": non_root_pod(RECONCILER_UID),
        "containers": [{
            "name": "reconcile",
            "image": RECONCILER_IMAGE,
            "imagePullPolicy": "IfNotPresent",
            "workingDir": WORKING_DIR,
            "command": ["python", "-m", "reconciler", *command, f"{WORKING_DIR}/{DESIRED_STATE_FILE}"],
            "env": env,
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                          "limits": {"cpu": "500m", "memory": "256Mi"}},
            "securityContext": dict(HARDENED_CONTAINER),
            "volumeMounts": mounts,
        }],
        "volumes": volumes,
    }
    if store_trust:
        # Only the store probe uses the default SSL context: Label Studio is plain HTTP in
        # the cluster and the Kubernetes API client loads the service account's CA file.
        spec = store_trust.pod_spec_trusting(spec, RECONCILER_CA_VARIABLES)
    return {"metadata": {"labels": dict(pod_labels)}, "spec": spec}


@dataclass(frozen=True)
class FullRun:
    """What a full run (the Job, the scheduled reconcile) reads besides the ConfigMap."""

    config_map: pulumi.Input[str]
    modules: Mapping[str, str]
    label_studio: LabelStudioAccess
    team_secret: str
    member_secret: pulumi.Input[str]
    storage_keys: Optional[StorageKeys] = None
    # The store's private CA, when it has one.
    store_trust: Optional[StoreTrust] = None

    def pod(self, command: list[str], pod_labels: Mapping[str, str], deadline_seconds: int) -> dict:
        """Credentials arrive as read-only files from their Secrets, never as env values."""
        env = [
            {"name": contract.PUBLIC_URL, "value": self.label_studio.public_url},
            {"name": contract.TEAM_SECRET_NAME, "value": self.team_secret},
            {"name": contract.TIMEOUT_SECONDS, "value": str(deadline_seconds - 60)},
            {"name": contract.MEMBER_PASSWORDS + contract.FILE_SUFFIX,
             "value": f"{SECRETS_PATH}/members/{contract.MEMBER_PASSWORDS_KEY}"},
        ]
        secrets = {"members": {"secretName": self.member_secret}}
        keys = self.storage_keys
        if keys is not None:
            secrets["storage"] = {"secretName": keys.secret_name}
            env += [{"name": variable + contract.FILE_SUFFIX, "value": f"{SECRETS_PATH}/storage/{ref.key}"}
                    for variable, ref in ((contract.ACCESS_KEY_ID, keys.access_key_id),
                                          (contract.SECRET_ACCESS_KEY, keys.secret_access_key))]
        return reconciler_pod(command=command, config_map=self.config_map, modules=self.modules,
                              label_studio=self.label_studio, env=env, secrets=secrets,
                              service_account=RECONCILER_NAME, pod_labels=pod_labels, store_trust=self.store_trust)


def job_manifest(*, name: pulumi.Input[str], namespace: pulumi.Input[str], run: FullRun) -> dict:
    """The Job `pulumi up` runs and waits for."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": LABELS},
        "spec": {
            "backoffLimit": 3,
            "activeDeadlineSeconds": DEADLINE_SECONDS,
            "template": run.pod([], LABELS, DEADLINE_SECONDS),
        },
    }


def reconciler_cronjob(*, name: str, namespace: pulumi.Input[str], pod_labels: Mapping[str, str], schedule: str,
                       deadline_seconds: int, template: dict) -> dict:
    """A CronJob of the reconciler's package. Forbid: a run still going when the next is due
    finishes first (a second beside it would only do the same work twice); the next schedule
    catches up. Its Jobs carry its labels too, so `kubectl get jobs -l` lists its runs."""
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(pod_labels)},
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"metadata": {"labels": dict(pod_labels)},
                            "spec": {"backoffLimit": 1, "activeDeadlineSeconds": deadline_seconds,
                                     "template": template}},
        },
    }


def scheduled_reconcile_manifest(*, namespace: pulumi.Input[str], schedule: str, run: FullRun) -> dict:
    """The CronJob running the full reconcile on a schedule; it steps aside while the Job runs."""
    return reconciler_cronjob(name=SCHEDULED_RECONCILE_NAME, namespace=namespace,
                              pod_labels=SCHEDULED_RECONCILE_LABELS, schedule=schedule,
                              deadline_seconds=SCHEDULED_RECONCILE_DEADLINE_SECONDS,
                              template=run.pod([SCHEDULED_FLAG], SCHEDULED_RECONCILE_LABELS,
                                               SCHEDULED_RECONCILE_DEADLINE_SECONDS))


def export_resync_manifest(*, namespace: pulumi.Input[str], config_map: pulumi.Input[str], schedule: str,
                           modules: Mapping[str, str], label_studio: LabelStudioAccess,
                           store_trust: Optional[StoreTrust] = None) -> dict:
    """The CronJob re-saving every annotation into the export storages: the reconciler's package
    in its --export-resync mode. It needs the API token only: the storages hold their S3 keys."""
    env = [{"name": contract.TIMEOUT_SECONDS, "value": str(EXPORT_RESYNC_DEADLINE_SECONDS - 60)}]
    template = reconciler_pod(command=["--export-resync"], config_map=config_map, modules=modules,
                              label_studio=label_studio, env=env, secrets={}, service_account=None,
                              pod_labels=EXPORT_RESYNC_LABELS, store_trust=store_trust)
    return reconciler_cronjob(name=EXPORT_RESYNC_NAME, namespace=namespace, pod_labels=EXPORT_RESYNC_LABELS,
                              schedule=schedule, deadline_seconds=EXPORT_RESYNC_DEADLINE_SECONDS, template=template)
