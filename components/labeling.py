"""Labeling as code: projects, storages, sync and the SAM connection, applied in-cluster.

A Kubernetes Job runs the reconciler package (reconciler/, standard library only, so a
plain Python image needs no pip step) against the Label Studio Service. Its modules and
the desired state travel in a ConfigMap; the API token and S3 keys arrive as read-only
files from their Secrets. The Job's name carries a hash of both and of the credential
Secrets' resource versions (never their values), so a change of desired state or a rotated
key runs it again and an unchanged stack leaves it alone. It has no TTL: a Job that
deleted itself would be re-created by the next `pulumi up`. Pulumi waits for the Job to
complete, so `pulumi up` finishes only when the platform is configured, and the Label
Studio API never has to be reachable from where `pulumi up` runs.

The members' passwords are generated here, one per e-mail, and reach the Job only as a
file of their Secret; `memberPasswords` shows those of the accounts the reconciler recorded
as its own in the team Secret. A CronJob runs the same package from the same ConfigMap with
--export-resync, writing to the bucket the annotations a submit could not; another runs the
full reconcile on a schedule (--scheduled), so images added since, and whatever someone
deleted or changed in Label Studio, are taken care of without a `pulumi up`. The Job and the
scheduled run share a lock in the team Secret (reconciler/lock.py): they never overlap.

Removing members is final, so before the Job the stack reads back which accounts the
reconciler created and names those the run will remove; several at once, or the last ones,
stop the update unless labeling.removeMembers lists them (the reconciler applies the same
rule, reconciler/members.py, so a run the plan could not check is held to it too).

What the stack writes and the reconciler reads is defined once, in reconciler/contract.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, replace
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import PROJECT_ROOT
from components.conventions import ScheduledRun, child_of, resource_version
from components.label_studio import LabelStudioAccess
from components.network import dns, kubernetes_api, network_policy, pod_identity, to_pods
from components.reconciler_pods import (
    DEADLINE_SECONDS, DESIRED_STATE_FILE, EXPORT_RESYNC_LABELS, EXPORT_RESYNC_NAME, LABELS, RECONCILER_NAME,
    SCHEDULED_RECONCILE_LABELS, SCHEDULED_RECONCILE_NAME, FullRun, export_resync_manifest, job_manifest,
    scheduled_reconcile_manifest,
)
from components.settings import LabelingSettings, NetworkSettings
from components.storage import StorageAccess, StorageKeys
from reconciler import contract
from reconciler.active_hours import ActiveHours
from reconciler.contract import DesiredState, ProjectSpec, StorageSpec
from reconciler.members import removal_refusal, removal_warning

RECONCILER_PACKAGE = PROJECT_ROOT / "reconciler"
TEAM_SECRET_SUFFIX = "team-access"
MEMBER_SECRET_SUFFIX = "member-passwords"
MEMBER_PASSWORD_LENGTH = 24


def reconciler_modules() -> dict[str, str]:
    """The reconciler package's modules, file name -> source, as the ConfigMap carries them."""
    return {path.name: path.read_text() for path in sorted(RECONCILER_PACKAGE.glob("*.py"))}


def desired_state(settings: LabelingSettings, storage: StorageAccess, sam_url: Optional[str],
                  sam_self_test: str = contract.SELF_TEST_FAIL,
                  sam_active_hours: Optional[ActiveHours] = None,
                  sam_pod_labels: Optional[Mapping[str, str]] = None) -> DesiredState:
    """What the reconciler makes Label Studio look like; `storage.bucket` is resolved here."""
    return DesiredState(
        # Label Studio has the endpoint as S3_ENDPOINT (components/chart_values.py): the
        # storages leave theirs empty, so members' own endpoints stay SSRF-checked.
        storage=StorageSpec(bucket=storage.bucket, region=storage.region, endpoint=storage.endpoint,
                            presign=storage.presign, endpoint_from_label_studio=bool(storage.endpoint)),
        export_prefix=storage.under_prefix("exports"),
        sam_url=sam_url,
        projects=tuple(ProjectSpec(p.title, p.label_config, p.prefix, p.regex_filter, p.sam, p.split)
                       for p in settings.projects),
        members=settings.members,
        remove_members=settings.remove_members,
        sam_self_test=sam_self_test,
        sam_active_hours=sam_active_hours if sam_url else None,
        sam_pod_labels=dict(sam_pod_labels or {}) if sam_url else {},
    )


JOB_DIGEST_LENGTH = 10
# Every name job_name gives, and no other object's: what the alerts select the Job by.
JOB_NAME_PATTERN = f"{RECONCILER_NAME}-[0-9a-f]{{{JOB_DIGEST_LENGTH}}}"


def job_name(state_json: str, modules: Mapping[str, str], credential_versions: Sequence[str] = ()) -> str:
    """A name that changes exactly when what the Job would do changes: the state, the code and,
    for the Job, the resource versions of the credential Secrets it applies (a rotated key must
    reach the storages). Without versions it is also the ConfigMap's name."""
    digest = hashlib.sha256()
    for part in (state_json, *(f"{name}\0{text}" for name, text in sorted(modules.items())), *credential_versions):
        digest.update(part.encode() + b"\0")
    return f"{RECONCILER_NAME}-{digest.hexdigest()[:JOB_DIGEST_LENGTH]}"


def member_removal_check(created: frozenset[str], settings: LabelingSettings) -> list[str]:
    """What the plan says about the accounts the next run removes: [] or one warning line naming
    them; a removal that needs confirming (removal_refusal) stops the update with one line."""
    removing = sorted(created - {email.lower() for email in settings.members})
    refusal = removal_refusal(removing, settings.members, settings.remove_members)
    if refusal:
        raise pulumi.RunError(refusal)
    warning = removal_warning(removing)
    return [warning] if warning else []


def member_passwords_document(passwords: Mapping[str, str]) -> str:
    """What the member Secret holds: e-mail -> password, as the reconciler reads it."""
    return json.dumps(dict(sorted(passwords.items())), sort_keys=True)


def created_members_from_secret_data(data: Optional[Mapping[str, str]]) -> frozenset[str]:
    """The accounts the reconciler created (lower-case e-mails), from the team Secret's data."""
    encoded = (data or {}).get(contract.CREATED_MEMBERS_KEY)
    return frozenset(json.loads(base64.b64decode(encoded).decode())) if encoded else frozenset()


def invite_url_from_secret_data(data: Optional[Mapping[str, str]]) -> Optional[str]:
    """The invite link from the team Secret's (base64) data; None until the reconciler wrote it."""
    encoded = (data or {}).get(contract.INVITE_URL_KEY)
    return base64.b64decode(encoded).decode() if encoded else None


# While Label Studio refuses the SAM backend, a full run lists the SAM pods and their events to
# name what keeps them from starting (reconciler/sam_pods.py). Read only, its namespace only.
SAM_POD_READER_RULE = {"apiGroups": [""], "resources": ["events", "pods"], "verbs": ["list"]}


def reconciler_rbac(namespace: pulumi.Input[str], team_secret: str, reads_sam_pods: bool) -> dict[str, dict]:
    """The full runs may read and write one Secret (the invite link, the record of created accounts,
    the run lock) and, where a project wants SAM, list the pods and events of their namespace."""
    secret_rule = {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [team_secret],
                   "verbs": ["get", "patch"]}
    return {
        "role": {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": RECONCILER_NAME, "namespace": namespace, "labels": LABELS},
            "rules": [secret_rule, *([SAM_POD_READER_RULE] if reads_sam_pods else [])],
        },
        "binding": {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": RECONCILER_NAME, "namespace": namespace, "labels": LABELS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": RECONCILER_NAME},
            "subjects": [{"kind": "ServiceAccount", "name": RECONCILER_NAME, "namespace": namespace}],
        },
    }


@dataclass(frozen=True)
class LabelingConfigurationArgs:
    settings: LabelingSettings
    namespace: pulumi.Input[str]
    # Names the team Secret `<release>-team-access`.
    release_name: str
    # The running Label Studio: its URL resolves once the release is deployed.
    label_studio: LabelStudioAccess
    storage: StorageAccess
    network: NetworkSettings
    # The SAM backend's Service URL; None without SAM. The reconciler waits for the backend
    # itself, so syncing starts without waiting for the model to load.
    sam_url: Optional[pulumi.Input[str]] = None
    # A protected stack cannot delete the team Secret: it is the record of the accounts the
    # reconciler created, which decides whose passwords the stack hands out.
    protect: bool = False
    # What a failed SAM self-test does (sam.selfTest).
    sam_self_test: str = contract.SELF_TEST_FAIL
    # The SAM pods and port: the self-test asks the backend itself for the cause of a failure, and
    # a run Label Studio keeps refusing the backend reads the pods' status for why they do not start.
    sam_pod_labels: Optional[Mapping[str, str]] = None
    sam_port: int = 0
    # sam.activeHours: outside the windows a run reports SAM paused instead of waiting for it.
    sam_active_hours: Optional[ActiveHours] = None


class LabelingConfiguration(pulumi.ComponentResource):
    """The reconciler Job and what it needs: modules, desired state, identity, team Secret, the
    members' passwords; and the CronJob re-syncing the export storages."""

    # The pods of the full runs (the Job, the scheduled reconcile): the SAM backend admits them
    # for the self-test's diagnosis.
    full_run_pod_labels = (LABELS, SCHEDULED_RECONCILE_LABELS)
    job_name_pattern = JOB_NAME_PATTERN

    # The CronJobs it declares; None where switched off.
    scheduled_reconcile: Optional[ScheduledRun]
    export_resync: Optional[ScheduledRun]

    invite_url: pulumi.Output[Optional[str]]
    # e-mail -> password of each configured member whose account the reconciler created.
    member_passwords: pulumi.Output[dict]

    def __init__(self, name: str, args: LabelingConfigurationArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:app:LabelingConfiguration", name, None, pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(name="labeling")])))
        settings = args.settings
        modules = reconciler_modules()
        wants_sam = any(p.sam for p in settings.projects)
        resolved_storage = pulumi.Output.from_input(args.storage.bucket).apply(
            lambda bucket: replace(args.storage, bucket=bucket))
        state_json = pulumi.Output.all(resolved_storage, args.sam_url if wants_sam else None).apply(
            lambda values: json.dumps(desired_state(settings, values[0], values[1], args.sam_self_test,
                                                    args.sam_active_hours, args.sam_pod_labels).to_document(),
                                      indent=2, sort_keys=True))
        bundle = state_json.apply(lambda text: job_name(text, modules))

        config_map = k8s.core.v1.ConfigMap(
            f"{name}-configmap",
            metadata={"name": bundle, "namespace": args.namespace, "labels": LABELS},
            data={**modules, DESIRED_STATE_FILE: state_json},
            opts=child_of(self, "reconciler"),
        )
        team_secret = f"{args.release_name}-{TEAM_SECRET_SUFFIX}"
        # The reconciler writes the invite link here; Pulumi only makes the empty Secret.
        team_access = k8s.core.v1.Secret(
            f"{name}-team-access",
            metadata={"name": team_secret, "namespace": args.namespace, "labels": LABELS},
            type="Opaque",
            opts=child_of(self, "team-access", ignore_changes=["data", "stringData"], protect=args.protect),
        )
        k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata={"name": RECONCILER_NAME, "namespace": args.namespace, "labels": LABELS},
            automount_service_account_token=True,
            opts=child_of(self, "reconciler"),
        )
        rbac = reconciler_rbac(args.namespace, team_secret, reads_sam_pods=bool(
            wants_sam and args.sam_url is not None and args.sam_pod_labels))
        k8s.rbac.v1.Role(f"{name}-role", metadata=rbac["role"]["metadata"], rules=rbac["role"]["rules"],
                         opts=child_of(self, "reconciler"))
        k8s.rbac.v1.RoleBinding(f"{name}-role-binding", metadata=rbac["binding"]["metadata"],
                                role_ref=rbac["binding"]["roleRef"], subjects=rbac["binding"]["subjects"],
                                opts=child_of(self, "reconciler"))
        isolation = network_policy(RECONCILER_NAME, args.namespace, LABELS, ingress=[], egress=full_run_egress(args))
        k8s.networking.v1.NetworkPolicy(f"{name}-network-policy", metadata=isolation["metadata"],
                                        spec=isolation["spec"], opts=child_of(self, "reconciler"))

        # One generated password per member; the reconciler signs each missing account up with it.
        passwords = {email: random.RandomPassword(f"{name}-member-{email.lower()}", length=MEMBER_PASSWORD_LENGTH,
                                                  special=False, opts=child_of(self)).result
                     for email in settings.members}
        # Output.all of no keyword arguments is an empty list, not a mapping.
        all_passwords = pulumi.Output.all(**passwords) if passwords else pulumi.Output.from_input({})
        member_secret = k8s.core.v1.Secret(
            f"{name}-member-passwords",
            metadata={"name": f"{args.release_name}-{MEMBER_SECRET_SUFFIX}", "namespace": args.namespace,
                      "labels": LABELS},
            type="Opaque",
            string_data={contract.MEMBER_PASSWORDS_KEY: pulumi.Output.secret(
                all_passwords.apply(member_passwords_document))},
            opts=child_of(self),
        )

        storage_keys = args.storage.credentials if isinstance(args.storage.credentials, StorageKeys) else None
        config_map_name = config_map.metadata.apply(lambda m: m["name"])
        run = FullRun(config_map_name, modules, args.label_studio, team_secret,
                      member_secret.metadata.apply(lambda m: m["name"]), storage_keys, args.storage.trust)
        # Before the Job: which accounts the reconciler created (read from the team Secret; unknown
        # in the preview of a new stack, which has none) and so which the run would remove.
        recorded = k8s.core.v1.Secret.get(
            f"{name}-team-access-record",
            team_access.metadata.apply(lambda metadata: f"{metadata['namespace']}/{metadata['name']}"),
            opts=child_of(self))
        # The Secret's data is secret; the e-mails it yields are in the stack's config already.
        removal_warnings = pulumi.Output.unsecret(recorded.data.apply(
            lambda data: member_removal_check(created_members_from_secret_data(data), settings)))
        removal_warnings.apply(lambda lines: [pulumi.log.warn(line, self) for line in lines])
        # The Job runs again when the state, the code or a credential Secret changes; it waits
        # for the removal check, so a refused removal never reaches the cluster.
        versions = [member_secret.metadata.apply(resource_version)]
        if storage_keys is not None:
            versions.append(storage_keys.version)
        job = pulumi.Output.all(state_json, removal_warnings, *versions).apply(
            lambda values: job_name(values[0], modules, [str(v) for v in values[2:]]))
        manifest = job_manifest(name=job, namespace=args.namespace, run=run)
        # Its inputs carry Label Studio's deployed URL: it runs once Label Studio is up (the SAM
        # backend may still be loading; the reconciler waits for it after the syncs), and Pulumi
        # then waits for it to complete.
        job_resource = k8s.batch.v1.Job(
            f"{name}-job", metadata=manifest["metadata"], spec=manifest["spec"],
            opts=child_of(self, "reconciler", custom_timeouts=pulumi.CustomTimeouts(create=f"{DEADLINE_SECONDS}s")),
        )
        # Read the invite link back once the Job has written it. The id derives from the
        # Job, so the preview of a (re)run leaves it unknown instead of reading a Secret
        # that is not filled yet.
        filled = k8s.core.v1.Secret.get(
            f"{name}-team-access-read",
            job_resource.metadata.apply(lambda metadata: f"{metadata['namespace']}/{team_secret}"),
            opts=child_of(self, "team-access-filled"),
        )
        self.invite_url = pulumi.Output.secret(filled.data.apply(invite_url_from_secret_data))
        # Only the accounts the reconciler recorded as its own: a pre-existing account keeps its password.
        self.member_passwords = pulumi.Output.secret(pulumi.Output.all(filled.data, all_passwords).apply(
            lambda values: {email: password for email, password in values[1].items()
                            if email.lower() in created_members_from_secret_data(values[0])}))
        self.export_resync = self.scheduled_reconcile = None
        if settings.export_resync_schedule:
            self.export_resync = self._export_resync(name, args, config_map_name, modules,
                                                     settings.export_resync_schedule)
        if settings.reconcile_schedule:
            self.scheduled_reconcile = self._scheduled_reconcile(name, args, run, settings.reconcile_schedule)
        self.register_outputs({"jobName": job, "teamSecretName": team_secret, "inviteUrl": self.invite_url,
                               "memberPasswords": self.member_passwords})

    def _export_resync(self, name: str, args: LabelingConfigurationArgs, config_map: pulumi.Input[str],
                       modules: Mapping[str, str], schedule: str) -> ScheduledRun:
        manifest = export_resync_manifest(namespace=args.namespace, config_map=config_map, schedule=schedule,
                                          modules=modules, label_studio=args.label_studio,
                                          store_trust=args.storage.trust)
        k8s.batch.v1.CronJob(f"{name}-export-resync", metadata=manifest["metadata"], spec=manifest["spec"],
                             opts=child_of(self))
        # It serves nothing; it reaches DNS, Label Studio and the store (its probe): no Kubernetes API.
        isolation = network_policy(EXPORT_RESYNC_NAME, args.namespace, EXPORT_RESYNC_LABELS, ingress=[], egress=[
            *dns(args.network), to_pods(args.label_studio.pod_labels, [args.label_studio.pod_port]),
            args.storage.egress])
        k8s.networking.v1.NetworkPolicy(f"{name}-export-resync-network-policy", metadata=isolation["metadata"],
                                        spec=isolation["spec"], opts=child_of(self))
        return ScheduledRun.of(manifest)

    def _scheduled_reconcile(self, name: str, args: LabelingConfigurationArgs, run: FullRun,
                             schedule: str) -> ScheduledRun:
        manifest = scheduled_reconcile_manifest(namespace=args.namespace, schedule=schedule, run=run)
        k8s.batch.v1.CronJob(f"{name}-scheduled-reconcile", metadata=manifest["metadata"], spec=manifest["spec"],
                             opts=child_of(self))
        isolation = network_policy(SCHEDULED_RECONCILE_NAME, args.namespace, SCHEDULED_RECONCILE_LABELS, ingress=[],
                                   egress=full_run_egress(args))
        k8s.networking.v1.NetworkPolicy(f"{name}-scheduled-reconcile-network-policy",
                                        metadata=isolation["metadata"], spec=isolation["spec"], opts=child_of(self))
        return ScheduledRun.of(manifest)


def full_run_egress(args: LabelingConfigurationArgs) -> list[dict]:
    """A full run serves nothing; it reaches DNS, Label Studio, the store (its probe and the
    self-test's image downloads), the Kubernetes API (the team Secret) and the SAM backend (the
    self-test), where a project wants SAM."""
    wants_sam = any(p.sam for p in args.settings.projects)
    sam = [to_pods(args.sam_pod_labels, [args.sam_port])] if wants_sam and args.sam_pod_labels else []
    return [*dns(args.network), to_pods(args.label_studio.pod_labels, [args.label_studio.pod_port]),
            args.storage.egress, kubernetes_api(args.network), *pod_identity(args.network), *sam]
