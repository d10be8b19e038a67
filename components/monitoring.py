"""The platform's alerts: one PrometheusRule for the cluster's Prometheus Operator, and the
PodMonitor that has it scrape the series kube-state-metrics does not export.

The alerts read kube-state-metrics' series of the platform's own objects (metric names as in
its docs/metrics/workload/{job,cronjob,deployment}-metrics.md): a failed run of the deploy
Job, the scheduled reconcile, the export re-sync or the pre-upgrade backup, a nightly backup
or scheduled reconcile that has not succeeded for too long, and Label Studio or SAM without
an available replica. With the platform's own SAM server (sam-server/, which exports metrics
at /metrics; the upstream examples export none) they also read its click latency and queue
depth, scraped through the PodMonitor. Every expression selects the stack's namespace exactly
and each object by the name the component that declares it computes (`AlertTargets`), so two
stacks in one cluster never answer for each other. Each alert links to its section of
docs/operations.md.

`prometheus_rule` and `pod_monitor` are pure (tests run the rule's groups through `promtool
test rules`); `Alerts` only declares their results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from components.conventions import MetricsEndpoint, ScheduledRun, child_of, labels
from components.network import Peer, pods_in
from components.settings import MonitoringSettings

ALERTS_NAME = "labeling-alerts"
OPERATOR_API_VERSION = "monitoring.coreos.com/v1"
RULE_KIND = "PrometheusRule"
POD_MONITOR_KIND = "PodMonitor"
# The Prometheus Operator labels every Prometheus pod it runs so (its makeSelectorLabels).
PROMETHEUS_POD_LABELS = {"app.kubernetes.io/name": "prometheus"}
# Label Studio's pods are ready within a few minutes; a rollout keeps the old one available
# meanwhile. Without any replica for longer, nobody can label.
LABEL_STUDIO_GRACE_SECONDS = 300
# The clicks of the last 5 minutes make the percentile: several scrapes at any usual interval.
CLICK_LATENCY_WINDOW = "5m"
# A slow spell that lasts 10 minutes is a team waiting, not one large image.
SLOW_CLICKS_FOR_SECONDS = 600
# A queue that does not drain within 5 minutes holds more clicks than the replica embeds.
QUEUED_CLICKS_FOR_SECONDS = 300
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
    # The SAM pods' metrics, when its server exports them (the platform's own).
    sam_metrics: Optional[MetricsEndpoint] = None


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


def click_latency_p95(namespace: str, sam: MetricsEndpoint) -> str:
    """The 95th percentile of the team's clicks over the window, from every SAM pod's histogram
    (a click is counted by the replica that answers it, never by the one that forwarded it)."""
    buckets = series("sam_click_seconds_bucket", namespace, pod=Regex(sam.pod_pattern))
    return f"histogram_quantile(0.95, sum by (namespace, le) (rate({buckets}[{CLICK_LATENCY_WINDOW}])))"


def queued_clicks(namespace: str, sam: MetricsEndpoint) -> str:
    """Clicks waiting for an embedding, per SAM pod (each replica has its own embedding lane)."""
    return f'max by (namespace, pod) ({series("sam_queue_depth", namespace, pod=Regex(sam.pod_pattern), kind="click")})'


def _sam_server_alerts(settings: MonitoringSettings, sam: MetricsEndpoint, namespace: str) -> list[Alert]:
    return [
        Alert("LabelingSamClicksSlow", f"{click_latency_p95(namespace, sam)} > {settings.sam_click_p95_seconds}",
              WARNING, f"SAM server {{{{ $labels.namespace }}}}/{sam.deployment} takes "
                       "{{ $value | humanizeDuration }} for one click in 20",
              f"Labelers wait for their masks: 5% of the clicks of the last {CLICK_LATENCY_WINDOW} took longer than "
              f"{settings.sam_click_p95_seconds} s (monitoring.samClickP95Seconds).", SLOW_CLICKS_FOR_SECONDS),
        Alert("LabelingSamClicksQueued", f"{queued_clicks(namespace, sam)} > {settings.sam_queued_clicks}", WARNING,
              "SAM server pod {{ $labels.namespace }}/{{ $labels.pod }} has {{ $value }} clicks waiting for an "
              "embedding",
              f"More than {settings.sam_queued_clicks} clicks (monitoring.samQueuedClicks) wait on this replica: "
              "each waits for every embedding ahead of it.", QUEUED_CLICKS_FOR_SECONDS),
    ]


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
    if targets.sam_metrics:
        alerts += _sam_server_alerts(settings, targets.sam_metrics, namespace)
    return alerts


def prometheus_rule(settings: MonitoringSettings, targets: AlertTargets, namespace: str) -> dict:
    """The PrometheusRule: the alerts of what this stack declares, in its namespace, labelled
    for the cluster's Prometheus to select (`monitoring.ruleLabels`)."""
    return {
        "apiVersion": OPERATOR_API_VERSION,
        "kind": RULE_KIND,
        "metadata": {"name": ALERTS_NAME, "namespace": namespace, "labels": labels(ALERTS_NAME, **settings.rule_labels)},
        "spec": {"groups": [{"name": "labeling-platform",
                             "rules": [a.rule(settings.runbook_url) for a in _alerts(settings, targets, namespace)]}]},
    }


def pod_monitor(settings: MonitoringSettings, endpoint: MetricsEndpoint, namespace: str) -> dict:
    """The PodMonitor of the endpoint's pods, labelled like the rule (`monitoring.ruleLabels`).

    A PodMonitor, not a ServiceMonitor: the SAM pods sit behind two Services (the ClusterIP one
    and the headless one of the replicas' peers), and a ServiceMonitor selecting by the pods'
    labels would match both and scrape every pod twice. Without a namespaceSelector it selects
    pods of its own namespace only; the series get that `namespace` and their `pod`."""
    return {
        "apiVersion": OPERATOR_API_VERSION,
        "kind": POD_MONITOR_KIND,
        "metadata": {"name": endpoint.deployment, "namespace": namespace,
                     "labels": labels(endpoint.deployment, **settings.rule_labels)},
        "spec": {"selector": {"matchLabels": dict(endpoint.pod_labels)},
                 "podMetricsEndpoints": [{"port": endpoint.port_name, "path": endpoint.path}]},
    }


def prometheus_scraper(settings: MonitoringSettings) -> Peer:
    """The cluster's Prometheus pods, as a scraped workload's NetworkPolicy admits them."""
    return pods_in(settings.prometheus_namespace, PROMETHEUS_POD_LABELS)


@dataclass(frozen=True)
class AlertsArgs:
    settings: MonitoringSettings
    namespace: pulumi.Input[str]
    targets: AlertTargets


class Alerts(pulumi.ComponentResource):
    """The PrometheusRule of the platform's alerts, and the PodMonitor of the metrics they read."""

    def __init__(self, name: str, args: AlertsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:monitoring:Alerts", name, None, opts)
        namespace = pulumi.Output.from_input(args.namespace)
        self._declare(f"{name}-rule", RULE_KIND,
                      namespace.apply(lambda ns: prometheus_rule(args.settings, args.targets, ns)))
        sam_metrics = args.targets.sam_metrics
        if sam_metrics:
            self._declare(f"{name}-sam-pod-monitor", POD_MONITOR_KIND,
                          namespace.apply(lambda ns: pod_monitor(args.settings, sam_metrics, ns)))
        self.register_outputs({"ruleName": ALERTS_NAME})

    def _declare(self, name: str, kind: str, manifest: pulumi.Output[dict]) -> None:
        k8s.apiextensions.CustomResource(
            name, api_version=OPERATOR_API_VERSION, kind=kind, metadata=manifest.apply(lambda m: m["metadata"]),
            spec=manifest.apply(lambda m: m["spec"]), opts=child_of(self))
