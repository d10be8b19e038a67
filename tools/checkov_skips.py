"""checkov checks the platform does not meet on purpose, each scoped to resources and stacks, with
its reason.

An entry is scoped to a check, the resources it names (fnmatch patterns over checkov's
`Kind.namespace.name`) and the stacks it applies to, so a new workload still gets the
check. That is also why these are not `--skip-check` arguments: checkov applies those to
every resource. A skip that matches no failure any more fails tests/test_checkov.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from tools.stack_eval import STACKS


@dataclass(frozen=True)
class ScopedCheck:
    """A checkov check, limited to some resources in some stacks."""

    check: str
    resources: tuple[str, ...]
    reason: str
    stacks: tuple[str, ...] = STACKS

    def covers(self, stack: str, check: str, resource: str) -> bool:
        return (stack in self.stacks and check == self.check
                and any(fnmatchcase(resource, pattern) for pattern in self.resources))


SAM = ("Deployment.*.sam-backend",)
RECONCILER_JOB = ("Job.*.labeling-reconciler-*",)
BACKUP_CRONJOB = ("CronJob.*.database-backup",)

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
    ScopedCheck("CKV_K8S_35", BACKUP_CRONJOB,
                "pg_dump and aws-cli take credentials from PGPASSWORD / AWS_* (by secretKeyRef) or from files "
                "in their own formats (.pgpass, credentials ini), which the stack's Secrets do not hold"),
    ScopedCheck("CKV_K8S_43", SAM,
                "dev runs the seed's moving tag on purpose: the config contract warns in dev and refuses it "
                "in protected stacks, and policy k8s-image-moving-tag reports it (advisory)", stacks=("dev",)),
    ScopedCheck("CKV_K8S_43", RECONCILER_JOB + BACKUP_CRONJOB,
                "exact release tags (python:3.12.8-slim-bookworm, bitnamilegacy/postgresql:17.6.0, "
                "amazon/aws-cli:2.15.0; policy k8s-image-pinned); no registry is reachable here to resolve digests"),
    ScopedCheck("CKV_K8S_15", RECONCILER_JOB + BACKUP_CRONJOB,
                "public images on exact release tags: IfNotPresent reuses the node's copy; Always would add a "
                "registry round trip to every run and gain nothing (no private image to re-authorise)"),
    ScopedCheck("CKV_K8S_38", RECONCILER_JOB,
                "the reconciler writes the team invite link into its one Secret through the API; its Role "
                "allows get/patch on that Secret only"),
]
