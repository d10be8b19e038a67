"""The platform's alerts: one PrometheusRule for the cluster's Prometheus Operator.

The alerts read kube-state-metrics' series of the platform's own objects (metric names as in
its docs/metrics/workload/{job,cronjob,deployment}-metrics.md): a failed run of the deploy
Job, the scheduled reconcile, the export re-sync or the pre-upgrade backup, a nightly backup
or scheduled reconcile that has not succeeded for too long, and Label Studio or SAM without
an available replica. Every expression selects the stack's namespace exactly and each object
by the name the component that declares it computes (`AlertTargets`), so two stacks in one
cluster never answer for each other. Each alert links to its section of docs/operations.md.

`prometheus_rule` is pure (tests run its groups through `promtool test rules`); `Alerts`
only declares its result. SAM click latency and queue depth alerts, and the monitor scraping
them, come with a SAM server that exports metrics: the deployed example exports none, so
there is nothing to select yet. They join `_alerts` and this component then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from components.conventions import ScheduledRun, child_of, labels
from components.settings import MonitoringSettings

ALERTS_NAME = "labeling-alerts"
RULE_API_VERSION = "monitoring.coreos.com/v1"
RULE_KIND = "PrometheusRule"
# Label Studio's pods are ready within a few minutes; a rollout keeps the old one available
# meanwhile. Without any replica for longer, nobody can label.
LABEL_STUDIO_GRACE_SECONDS = 300
CRITICAL = "critical"
WARNING = "warning"


class Regex(str):
    """A label value matched as a regular expression (PromQL anchors it at both ends)."""


@dataclass(frozen=True)
class WatchedDeployment:
    name: str
    # How long it may want replicas and have none available before the alert fires.
    grace_seconds: int


@dataclass(frozen=True)
class AlertTargets:
    """The objects the alerts watch, as the components that declare them name them; None
    where the stack declares no such object (no SAM, RDS instead of the in-cluster dump)."""

    label_studio: WatchedDeployment
    # The deploy Job's names: one per desired state, `<name>-<digest>`.
    deploy_job_pattern: str
    scheduled_reconcile: Optional[ScheduledRun] = None
    export_resync: Optional[ScheduledRun] = None
    nightly_backup: Optional[ScheduledRun] = None
    pre_upgrade_job_pattern: Optional[str] = None
    sam: Optional[WatchedDeployment] = None


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    severity: str
    # Go templates over the firing series' labels and value, as Alertmanager shows them.
    summary: str
    description: str
    for_seconds: int = 0

    @property
    def runbook_anchor(self) -> str:
        """docs/operations.md has a heading named after each alert; this is its anchor."""
        return self.name.lower()

    def rule(self, runbook_url: str) -> dict:
        rule = {"alert": self.name, "expr": self.expr}
        if self.for_seconds:
            rule["for"] = f"{self.for_seconds // 60}m" if self.for_seconds % 60 == 0 else f"{self.for_seconds}s"
        rule["labels"] = {"severity": self.severity}
        rule["annotations"] = {"summary": self.summary, "description": self.description,
                               "runbook_url": f"{runbook_url}#{self.runbook_anchor}"}
        return rule


def series(metric: str, namespace: str, **matchers: str) -> str:
    """`metric` of this stack's namespace only, with exact matchers (a `Regex` matches as one)."""
    parts = [f'namespace="{namespace}"', *(f'{label}{"=~" if isinstance(value, Regex) else "="}"{value}"'
                                           for label, value in matchers.items())]
    return f"{metric}{{{', '.join(parts)}}}"


def job_failed(namespace: str, job_pattern: str) -> str:
    """A Job (of the pattern) whose Failed condition is true: its retries are used up."""
    return f'{series("kube_job_failed", namespace, job_name=Regex(job_pattern), condition="true")} == 1'


def latest_run_failed(namespace: str, cronjob: str) -> str:
    """The CronJob's newest run failed: a failed run started after the last success, or none
    succeeded yet. The next successful run clears it, though the failed Jobs are kept."""
    # A CronJob's Jobs have generated names (<cronjob>-<minutes>): they are picked by their
    # owner, never by a name prefix that another object of the namespace could share.
    failed_run_start = (
        "max by (namespace, cronjob) (label_replace("
        f'{series("kube_job_status_start_time", namespace)}'
        f' * on (namespace, job_name) group_left () ({series("kube_job_failed", namespace, condition="true")} == 1)'
        " * on (namespace, job_name) group_left (owner_name) "
        f'{series("kube_job_owner", namespace, owner_kind="CronJob", owner_name=cronjob)},'
        ' "cronjob", "$1", "owner_name", "(.+)"))')
    # The last success, or 0 while there has been none (the CronJob itself always exists).
    last_success = (f'max by (namespace, cronjob) ({series("kube_cronjob_status_last_successful_time", namespace, cronjob=cronjob)}'
                    f' or {series("kube_cronjob_created", namespace, cronjob=cronjob)} * 0)')
    return f"{failed_run_start} > on (namespace, cronjob) {last_success}"


def no_success_for(namespace: str, run: ScheduledRun, intervals: int) -> str:
    """No run of the CronJob succeeded (since it was created, if none ever did) for longer than
    `intervals` of its schedule plus the time a run may take. The interval is the one around
    now (next schedule minus last), so any cron schedule, even an irregular one, works."""
    selected = {"cronjob": run.cronjob}
    last_success = (f'max by (namespace, cronjob) ({series("kube_cronjob_status_last_successful_time", namespace, **selected)}'
                    f' or {series("kube_cronjob_created", namespace, **selected)})')
    interval = (f'max by (namespace, cronjob) ({series("kube_cronjob_next_schedule_time", namespace, **selected)}'
                f' - {series("kube_cronjob_status_last_schedule_time", namespace, **selected)})')
    return f"time() - {last_success} > {intervals} * {interval} + {run.latest_success_seconds}"


def no_available_replica(namespace: str, deployment: str) -> str:
    """The Deployment wants replicas and has none available. One scaled to zero on purpose
    (SAM outside the labeling hours) wants none, so it stays silent."""
    return (f'{series("kube_deployment_spec_replicas", namespace, deployment=deployment)} > 0'
            f' and on (namespace, deployment) '
            f'{series("kube_deployment_status_replicas_available", namespace, deployment=deployment)} == 0')


def _alerts(settings: MonitoringSettings, targets: AlertTargets, namespace: str) -> list[Alert]:
    job = "{{ $labels.namespace }}/{{ $labels.job_name }}"
    cronjob = "{{ $labels.namespace }}/{{ $labels.cronjob }}"
    deployment = "{{ $labels.namespace }}/{{ $labels.deployment }}"
    alerts = [
        Alert("LabelingDeployJobFailed", job_failed(namespace, targets.deploy_job_pattern), WARNING,
              f"Reconciler Job {job} failed",
              "The Job of the last pulumi up used up its retries: the configuration it applies is not in Label "
              "Studio. The last line of its log names the cause."),
        Alert("LabelStudioUnavailable", no_available_replica(namespace, targets.label_studio.name), CRITICAL,
              f"Label Studio {deployment} has no available replica",
              "Nobody can open or label; the reconciler's runs fail until it is back.",
              targets.label_studio.grace_seconds),
    ]
    if targets.scheduled_reconcile:
        run = targets.scheduled_reconcile
        alerts += [
            Alert("LabelingScheduledReconcileFailed", latest_run_failed(namespace, run.cronjob), WARNING,
                  f"The latest scheduled reconcile {cronjob} failed",
                  "New images are not imported and drift is not repaired until a run succeeds; the next schedule "
                  "tries again."),
            Alert("LabelingScheduledReconcileStale", no_success_for(namespace, run, settings.missed_reconciles),
                  WARNING, f"No scheduled reconcile {cronjob} has succeeded for {{{{ $value | humanizeDuration }}}}",
                  f"{settings.missed_reconciles} or more scheduled runs in a row failed or did not run (suspended, "
                  "skipped, never scheduled)."),
        ]
    if targets.export_resync:
        alerts.append(Alert("LabelingExportResyncFailed", latest_run_failed(namespace, targets.export_resync.cronjob),
                            WARNING, f"The latest export re-sync {cronjob} failed",
                            "Annotations a submit could not write to the bucket stay out of it until a run succeeds."))
    if targets.nightly_backup:
        alerts.append(Alert("LabelingDatabaseBackupMissing", no_success_for(namespace, targets.nightly_backup, 1),
                            CRITICAL, f"No database backup {cronjob} has succeeded for "
                                      "{{ $value | humanizeDuration }}",
                            "The newest dump in the bucket is older than one schedule interval and a run: a restore "
                            "would lose the work since."))
    if targets.pre_upgrade_job_pattern:
        alerts.append(Alert("LabelingPreUpgradeBackupFailed", job_failed(namespace, targets.pre_upgrade_job_pattern),
                            WARNING, f"Pre-upgrade backup {job} failed",
                            "The dump before the new Label Studio or chart version failed: the release was not "
                            "upgraded."))
    if targets.sam:
        alerts.append(Alert("LabelingSamUnavailable", no_available_replica(namespace, targets.sam.name), WARNING,
                            f"SAM backend {deployment} has no ready replica",
                            "SAM-assisted labeling gets no masks: the backend wants replicas and none became ready "
                            "within its startup budget.", targets.sam.grace_seconds))
    return alerts


def prometheus_rule(settings: MonitoringSettings, targets: AlertTargets, namespace: str) -> dict:
    """The PrometheusRule: the alerts of what this stack declares, in its namespace, labelled
    for the cluster's Prometheus to select (`monitoring.ruleLabels`)."""
    return {
        "apiVersion": RULE_API_VERSION,
        "kind": RULE_KIND,
        "metadata": {"name": ALERTS_NAME, "namespace": namespace, "labels": labels(ALERTS_NAME, **settings.rule_labels)},
        "spec": {"groups": [{"name": "labeling-platform",
                             "rules": [a.rule(settings.runbook_url) for a in _alerts(settings, targets, namespace)]}]},
    }


@dataclass(frozen=True)
class AlertsArgs:
    settings: MonitoringSettings
    namespace: pulumi.Input[str]
    targets: AlertTargets


class Alerts(pulumi.ComponentResource):
    """The PrometheusRule of the platform's alerts."""

    def __init__(self, name: str, args: AlertsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:monitoring:Alerts", name, None, opts)
        rule = pulumi.Output.from_input(args.namespace).apply(
            lambda namespace: prometheus_rule(args.settings, args.targets, namespace))
        k8s.apiextensions.CustomResource(
            f"{name}-rule", api_version=RULE_API_VERSION, kind=RULE_KIND,
            metadata=rule.apply(lambda r: r["metadata"]), spec=rule.apply(lambda r: r["spec"]), opts=child_of(self))
        self.register_outputs({"ruleName": ALERTS_NAME})
