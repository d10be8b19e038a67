"""sam.activeHours: the SAM Deployment follows the team's labeling windows.

Outside the windows the Deployment runs 0 replicas, so a GPU node pool that scales to zero gives
its node back; from the lead before each opening it runs its configured count again. Two ways to
scale it, chosen by sam.activeHours.scaler (the offline plan cannot see which CRDs a cluster has):

- cronjob: CronJobs in the team's time zone (`spec.timeZone`) at each opening minus the lead,
  each closing and the late-night override's end, plus a Job when a new override is set (it may
  have to start SAM at once). Each runs `python -m reconciler.sam_scale`, which decides from the
  clock (reconciler/active_hours.py) and patches the Deployment's scale subresource as its own
  field manager. Its service account may `patch` `deployments/scale` of that one Deployment and
  nothing else; its pods reach the API server only.
- keda: one KEDA ScaledObject with a cron trigger per window (and one for the override);
  KEDA's HPA owns the replicas, down to minReplicaCount 0.

Either way the Deployment is declared with `ignoreChanges: [spec.replicas]` (components/sam_backend.py):
`pulumi up` neither resets what the scaler set nor fights its field manager.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s

from components import PROJECT_ROOT
from components.conventions import HARDENED_CONTAINER, child_of, labels, non_root_pod
from components.network import kubernetes_api, network_policy
from components.reconciler_pods import RECONCILER_IMAGE, RECONCILER_UID, reconciler_cronjob
from components.settings import NetworkSettings
from components.settings.model import SamActiveHoursSettings, SamScaler
from reconciler.active_hours import ActiveHours, CronTime, date_expression
from reconciler.sam_scale import schedule_document

SCALER_NAME = "sam-active-hours"
SCALER_LABELS = labels(SCALER_NAME)
# What `python -m reconciler.sam_scale` imports, and nothing else of the reconciler.
SCALER_MODULES = ("__init__.py", "active_hours.py", "client.py", "contract.py", "errors.py", "kubernetes_api.py",
                  "sam_scale.py")
WORKING_DIR = "/opt/labeling"
SCHEDULE_FILE = "sam-schedule.json"
# A run that starts late still converges on what the clock says (reconciler/sam_scale.py), so a
# missed start (the cluster or its controller down at the time) is worth running for hours; past
# this the next opening or closing takes over. Without a deadline a CronJob that missed more
# than 100 starts stops scheduling altogether.
STARTING_DEADLINE_SECONDS = 6 * 3600
# One PATCH: a minute is generous.
SCALE_DEADLINE_SECONDS = 120
KEDA_API_VERSION = "keda.sh/v1alpha1"
SCALED_OBJECT_TYPE = f"kubernetes:{KEDA_API_VERSION}:ScaledObject"


def scaler_modules() -> dict[str, str]:
    return {name: (PROJECT_ROOT / "reconciler" / name).read_text() for name in SCALER_MODULES}


def scale_rbac(namespace: pulumi.Input[str], deployment: str) -> dict[str, dict]:
    """Patch the scale of one Deployment: no read of it, no other object, no other verb."""
    metadata = {"name": SCALER_NAME, "namespace": namespace, "labels": SCALER_LABELS}
    return {
        "service_account": {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata,
                            "automountServiceAccountToken": True},
        "role": {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": metadata,
                 "rules": [{"apiGroups": ["apps"], "resources": ["deployments/scale"], "resourceNames": [deployment],
                            "verbs": ["patch"]}]},
        "binding": {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": metadata,
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SCALER_NAME},
                    "subjects": [{"kind": "ServiceAccount", "name": SCALER_NAME, "namespace": namespace}]},
    }


def scale_pod(config_map: pulumi.Input[str], modules: Mapping[str, str]) -> dict:
    """The scaler's pod: the modules and the schedule from its ConfigMap, the reconciler's image."""
    items = [{"key": module, "path": f"reconciler/{module}"} for module in sorted(modules)]
    items.append({"key": SCHEDULE_FILE, "path": SCHEDULE_FILE})
    return {
        "metadata": {"labels": dict(SCALER_LABELS)},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": SCALER_NAME,
            "securityContext": non_root_pod(RECONCILER_UID),
            "containers": [{
                "name": "scale",
                "image": RECONCILER_IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "workingDir": WORKING_DIR,
                "command": ["python", "-m", "reconciler.sam_scale", f"{WORKING_DIR}/{SCHEDULE_FILE}"],
                "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                              "limits": {"cpu": "200m", "memory": "64Mi"}},
                "securityContext": dict(HARDENED_CONTAINER),
                "volumeMounts": [{"name": "scaler", "mountPath": WORKING_DIR, "readOnly": True}],
            }],
            "volumes": [{"name": "scaler", "configMap": {"name": config_map, "items": items}}],
        },
    }


def scale_schedules(hours: ActiveHours) -> dict[str, str]:
    """CronJob name -> cron expression in the team's zone: each opening minus the lead, each
    closing, and the override's end."""
    def named(prefix: str, times: tuple[CronTime, ...]) -> dict[str, str]:
        return {f"{prefix}-{index}": moment.expression() for index, moment in enumerate(times)}

    schedules = {**named("sam-scale-up", hours.scale_up_times()), **named("sam-scale-down", hours.scale_down_times())}
    bounds = hours.keep_up_bounds()
    if bounds:
        schedules["sam-scale-down-keep-up"] = date_expression(bounds[1])
    return schedules


def scale_cronjobs(hours: ActiveHours, namespace: pulumi.Input[str], template: dict) -> list[dict]:
    """One CronJob per schedule, firing in the team's zone (so the windows follow daylight saving time)."""
    cronjobs = []
    for name, schedule in scale_schedules(hours).items():
        cronjob = reconciler_cronjob(name=name, namespace=namespace, pod_labels=SCALER_LABELS, schedule=schedule,
                                     deadline_seconds=SCALE_DEADLINE_SECONDS, template=template)
        cronjob["spec"].update(timeZone=hours.time_zone, startingDeadlineSeconds=STARTING_DEADLINE_SECONDS)
        cronjobs.append(cronjob)
    return cronjobs


def keep_up_job_name(hours: ActiveHours) -> str:
    """Named by the override: a new keepUpUntil runs it once, an unchanged one leaves it alone."""
    digest = hashlib.sha256(hours.keep_up_until.isoformat().encode() + hours.time_zone.encode()).hexdigest()[:10]
    return f"sam-keep-up-{digest}"


def keep_up_job(hours: ActiveHours, namespace: pulumi.Input[str], template: dict) -> dict:
    """Run once when an override is set: SAM may be paused already and must come up now."""
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": keep_up_job_name(hours), "namespace": namespace, "labels": dict(SCALER_LABELS)},
            "spec": {"backoffLimit": 2, "activeDeadlineSeconds": SCALE_DEADLINE_SECONDS, "template": template}}


def scaled_object(hours: ActiveHours, namespace: pulumi.Input[str], deployment: str, replicas: int) -> dict:
    """KEDA's cron scaler: a trigger per window (from the opening minus the lead to the closing),
    one for the override; outside every trigger KEDA scales to minReplicaCount 0."""
    triggers = [(start.expression(), stop.expression()) for start, stop in hours.up_spans()]
    bounds = hours.keep_up_bounds()
    if bounds:
        triggers.append((date_expression(bounds[0]), date_expression(bounds[1])))
    return {
        "apiVersion": KEDA_API_VERSION, "kind": "ScaledObject",
        "metadata": {"name": deployment, "namespace": namespace, "labels": dict(SCALER_LABELS)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            "minReplicaCount": 0,
            "maxReplicaCount": replicas,
            "triggers": [{"type": "cron", "metadata": {"timezone": hours.time_zone, "start": start, "end": end,
                                                      "desiredReplicas": str(replicas)}}
                         for start, end in triggers],
        },
    }


@dataclass(frozen=True)
class SamActiveHoursArgs:
    settings: SamActiveHoursSettings
    namespace: pulumi.Input[str]
    # The SAM Deployment's name and its replica count inside the windows.
    deployment: str
    replicas: int
    network: NetworkSettings


class SamActiveHours(pulumi.ComponentResource):
    """The scaler that runs SAM inside the team's windows only."""

    def __init__(self, name: str, args: SamActiveHoursArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:ml:SamActiveHours", name, None, opts)
        hours = args.settings.hours
        if args.settings.scaler is SamScaler.KEDA:
            obj = scaled_object(hours, args.namespace, args.deployment, args.replicas)
            k8s.apiextensions.CustomResource(f"{name}-scaled-object", api_version=obj["apiVersion"], kind=obj["kind"],
                                             metadata=obj["metadata"], spec=obj["spec"], opts=child_of(self))
        else:
            self._cronjob_scaler(name, args)
        self.register_outputs({})

    def _cronjob_scaler(self, name: str, args: SamActiveHoursArgs) -> None:
        hours = args.settings.hours
        modules = scaler_modules()
        document = json.dumps(schedule_document(hours, args.deployment, args.replicas), indent=2, sort_keys=True)
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-configmap", metadata={"name": SCALER_NAME, "namespace": args.namespace, "labels": SCALER_LABELS},
            data={**modules, SCHEDULE_FILE: document}, opts=child_of(self))
        rbac = scale_rbac(args.namespace, args.deployment)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account", metadata=rbac["service_account"]["metadata"],
            automount_service_account_token=True, opts=child_of(self))
        role = k8s.rbac.v1.Role(f"{name}-role", metadata=rbac["role"]["metadata"], rules=rbac["role"]["rules"],
                                opts=child_of(self))
        binding = k8s.rbac.v1.RoleBinding(
            f"{name}-role-binding", metadata=rbac["binding"]["metadata"], role_ref=rbac["binding"]["roleRef"],
            subjects=rbac["binding"]["subjects"], opts=child_of(self))
        # It serves nothing and talks to the API server only (the pod finds it by address, no DNS).
        fence = network_policy(SCALER_NAME, args.namespace, SCALER_LABELS, ingress=[],
                               egress=[kubernetes_api(args.network)])
        policy = k8s.networking.v1.NetworkPolicy(f"{name}-network-policy", metadata=fence["metadata"],
                                                 spec=fence["spec"], opts=child_of(self))
        # The pods may run only once they can: their identity, its permission and their fence exist.
        ready = [config_map, account, role, binding, policy]
        template = scale_pod(config_map.metadata.apply(lambda m: m["name"]), modules)
        for cronjob in scale_cronjobs(hours, args.namespace, template):
            k8s.batch.v1.CronJob(f"{name}-{cronjob['metadata']['name']}", metadata=cronjob["metadata"],
                                 spec=cronjob["spec"], opts=child_of(self, depends_on=ready))
        if hours.keep_up_until is not None:
            job = keep_up_job(hours, args.namespace, template)
            k8s.batch.v1.Job(f"{name}-keep-up", metadata=job["metadata"], spec=job["spec"],
                             opts=child_of(self, depends_on=ready))
