"""checkov checks the platform does not meet on purpose, each scoped to resources and stacks, with
its reason.

An entry is scoped to a check, the resources it names (fnmatch patterns over checkov's
`Kind.namespace.name`) and the stacks it applies to, so a new workload still gets the
check. Skips for the objects the Helm release renders name the chart's objects
(`<release>-ls-app`), so the stack's own objects still get every check. That is also why these are not `--skip-check` arguments: checkov applies those to
every resource. A skip that matches no failure any more fails tests/test_checkov.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Optional


@dataclass(frozen=True)
class ScopedCheck:
    """A check (a checkov ID, or a policy name in tools/policy_skips.py), limited to some resources in
    some stacks."""

    check: str
    resources: tuple[str, ...]
    reason: str
    # None: every stack, the ones users add included.
    stacks: Optional[tuple[str, ...]] = None

    def covers(self, stack: str, check: str, resource: str) -> bool:
        return ((self.stacks is None or stack in self.stacks) and check == self.check
                and any(fnmatchcase(resource, pattern) for pattern in self.resources))


SAM = ("Deployment.*.sam-backend",)
# The reconciler's Job, its scheduled run and its CronJob re-syncing the exports: the same image.
RECONCILER_JOB = ("Job.*.labeling-reconciler-*", "CronJob.*.labeling-export-resync",
                  "CronJob.*.labeling-scheduled-reconcile")
# The CronJobs and the override Job scaling SAM to the active hours: the reconciler's image.
SAM_SCALER = ("CronJob.*.sam-scale-*", "Job.*.sam-keep-up-*")
# The nightly database backup, the pre-upgrade backup Job and the restore Job (tools/restore_job.py):
# the same two containers.
DATABASE_BACKUPS = ("CronJob.*.database-backup", "Job.*.pre-upgrade-backup-*", "Job.*.database-restore")
# Rendered by the chart (release `label-studio`): the app Deployment.
CHART_APP = ("Deployment.*.label-studio-ls-app",)

CHECKOV_SKIPS = [
    ScopedCheck("CKV_K8S_23", SAM,
                "the upstream SAM image declares no USER and runs as root; runAsNonRoot would stop it starting"),
    ScopedCheck("CKV_K8S_40", SAM,
                "same root image: it writes torch/matplotlib caches under root's home, so no high UID either"),
    ScopedCheck("CKV_K8S_22", SAM,
                "the SAM backend writes caches and the model's sqlite under its working directory; "
                "/tmp, /dev/shm and MODEL_DIR are emptyDirs, the rest of the image cannot be read-only"),
    ScopedCheck("CKV_K8S_35", SAM,
                "label-studio-ml-backend reads its Label Studio token only from the environment "
                "(LABEL_STUDIO_API_KEY); it comes by secretKeyRef, never inline"),
    ScopedCheck("CKV_K8S_35", DATABASE_BACKUPS,
                "pg_dump, pg_restore and aws-cli take credentials from PGPASSWORD / AWS_* (by secretKeyRef) or from files "
                "in their own formats (.pgpass, credentials ini), which the stack's Secrets do not hold"),
    ScopedCheck("CKV_K8S_43", SAM,
                "a stack may run a SAM tag without a digest (the example stacks until the sam-image workflow's "
                "first digest, the upstream examples' moving sam-master): the config contract warns there and "
                "refuses it in protected stacks unless sam.unpinnedImageReason says why; policy "
                "k8s-image-moving-tag reports it (advisory), and every pulumi up proves the pulled build with the "
                "SAM self-test"),
    ScopedCheck("CKV_K8S_43", RECONCILER_JOB + SAM_SCALER + DATABASE_BACKUPS,
                "exact release tags (python:3.12.8-slim-bookworm, bitnamilegacy/postgresql:17.6.0, "
                "amazon/aws-cli:2.15.0; policy k8s-image-pinned); no registry is reachable here to resolve digests"),
    ScopedCheck("CKV_K8S_15", RECONCILER_JOB + SAM_SCALER + DATABASE_BACKUPS,
                "public images on exact release tags: IfNotPresent reuses the node's copy; Always would add a "
                "registry round trip to every run and gain nothing (no private image to re-authorise)"),
    ScopedCheck("CKV_K8S_38", (RECONCILER_JOB[0], RECONCILER_JOB[2]),
                "the reconciler (the Job and its scheduled run) writes the team invite link, its record of "
                "created accounts and its run lock into its one Secret through the API, and reads the SAM "
                "pods' status and events to name why they cannot start; its Role allows get/patch on that "
                "Secret only, and list on pods and events while a project wants SAM"),
    ScopedCheck("CKV_K8S_38", SAM_SCALER,
                "the scaler of sam.activeHours patches the SAM Deployment's replicas through the API; its Role "
                "allows patch on that one Deployment's scale subresource only"),
    # The chart's app Deployment: its defaults where the stack's values do not change them.
    *(ScopedCheck(check, CHART_APP,
                  "the chart renders its nginx sidecar and db-migrations init container without requests and "
                  "limits (app.nginx.resources / app.initContainer.resources, not set by the stack); checkov "
                  "judges the Deployment as a whole, the app container's own (labelStudio.resources) stay "
                  "checked by policy k8s-container-resources-set, whose skip names only those two containers")
      for check in ("CKV_K8S_10", "CKV_K8S_11", "CKV_K8S_12", "CKV_K8S_13")),
    ScopedCheck("CKV_K8S_43", CHART_APP,
                "the exact release tag heartexlabs/label-studio:<labelStudio.imageTag> (policy k8s-image-pinned); "
                "no registry is reachable here to resolve its digest"),
    ScopedCheck("CKV_K8S_15", CHART_APP,
                "a public image on an exact release tag: IfNotPresent reuses the node's copy; Always would add a "
                "registry round trip to every pod start and gain nothing"),
    ScopedCheck("CKV_K8S_35", CHART_APP,
                "Label Studio reads SECRET_KEY, POSTGRE_PASSWORD, LABEL_STUDIO_PASSWORD / _USER_TOKEN and "
                "STORAGE_AWS_* only from its environment; the chart delivers them by secretKeyRef, never inline"),
    ScopedCheck("CKV_K8S_40", CHART_APP,
                "the image's own user is UID 1001 (the chart's runAsUser and fsGroup); another UID would not "
                "own the image's /label-studio files"),
    ScopedCheck("CKV_K8S_22", CHART_APP,
                "the chart's default (app.containerSecurityContext sets no readOnlyRootFilesystem); Label Studio "
                "and the image's nginx have not been shown to start on a read-only root here"),
    *(ScopedCheck(check, CHART_APP,
                  "the chart's default (app.containerSecurityContext drops no capabilities); the containers run "
                  "as UID 1001 without privilege escalation, so they hold no effective capabilities; dropping "
                  "the bounding set too is a change of the running pods, for the stack's own settings")
      for check in ("CKV_K8S_37", "CKV_K8S_28")),
    ScopedCheck("CKV_K8S_31", CHART_APP,
                "the chart's default (app.podSecurityContext sets fsGroup only, no seccompProfile); a change of "
                "the running pods, for the stack's own settings"),
]
