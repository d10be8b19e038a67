"""The platform's alerts: what the PrometheusRule selects, that each alert fires when it should
and stays silent when it should not (Prometheus's own engine, `promtool test rules`, on
synthetic kube-state-metrics series and the SAM server's own), and which stacks declare it."""

from __future__ import annotations

import ast
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest
import yaml

from components.backup import BACKUP_NAME
from components.conventions import ScheduledRun
from components.labeling import JOB_NAME_PATTERN, job_name
from components.monitoring import ALERTS_NAME, AlertTargets, WatchedDeployment, prometheus_rule
from components.reconciler_pods import EXPORT_RESYNC_NAME, SCHEDULED_RECONCILE_NAME
from components.sam_backend import SAM_NAME, metrics_endpoint
from components.settings import MonitoringSettings
from components.settings.monitoring import (
    DEFAULT_PROMETHEUS_NAMESPACE, DEFAULT_SAM_CLICK_P95_SECONDS, DEFAULT_SAM_QUEUED_CLICKS, MAX_SAM_CLICK_P95_SECONDS,
)
from components.upgrade_backup import JOB_NAME_PATTERN as PRE_UPGRADE_JOB_PATTERN
from components.upgrade_backup import PRE_UPGRADE_NAME
from tests.conftest import PROJECT_ROOT, evaluate_cached, stack_settings
from tests.prerequisites import PROMTOOL_INSTALL, require_program

NS = "labeling-test"
OTHER_NS = "labeling-other"
RUNBOOK = "https://git.example.com/platform/labeling-platform/blob/main/docs/operations.md"
SETTINGS = MonitoringSettings(True, {"release": "kube-prometheus-stack"}, RUNBOOK, missed_reconciles=3,
                              prometheus_namespace=DEFAULT_PROMETHEUS_NAMESPACE,
                              sam_click_p95_seconds=DEFAULT_SAM_CLICK_P95_SECONDS,
                              sam_queued_clicks=DEFAULT_SAM_QUEUED_CLICKS)
HOUR, DAY = 3600, 86400
SAM_SERVER = stack_settings("dev", {"sam.model": "sam2.1-tiny"}).sam
# Every alert the platform has, each object as its component names it.
TARGETS = AlertTargets(
    label_studio=WatchedDeployment("label-studio-ls-app", 300),
    deploy_job_pattern=JOB_NAME_PATTERN,
    scheduled_reconcile=ScheduledRun(SCHEDULED_RECONCILE_NAME, 1800),
    export_resync=ScheduledRun(EXPORT_RESYNC_NAME, 1800),
    nightly_backup=ScheduledRun(BACKUP_NAME, 2 * HOUR),
    pre_upgrade_job_pattern=PRE_UPGRADE_JOB_PATTERN,
    sam=WatchedDeployment(SAM_NAME, 1200),
    sam_metrics=metrics_endpoint(SAM_SERVER),
)
RULE = prometheus_rule(SETTINGS, TARGETS, NS)
RULES = {rule["alert"]: rule for rule in RULE["spec"]["groups"][0]["rules"]}
DEPLOY_JOB = job_name("{}", {})
PRE_UPGRADE_JOB = f"{PRE_UPGRADE_NAME}-0a1b2c3d4e"
# The alerts on the platform's SAM server's own metrics (the upstream examples export none).
SAM_SERVER_ALERTS = {"LabelingSamClicksSlow", "LabelingSamClicksQueued"}
SAM_POD, SAM_POD_2 = f"{SAM_NAME}-6d9c7b8f5-x2x4z", f"{SAM_NAME}-6d9c7b8f5-q8w7n"
# A pod of another workload in the namespace whose name starts like the SAM pods' names.
CANARY_POD = f"{SAM_NAME}-canary-5d8f9c7b6-k4m2p"


# --------------------------------------------------------------------------- synthetic series

def metric(name: str, namespace: str = NS, **labels: str) -> str:
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in {"namespace": namespace, **labels}.items()) + "}"


def constant(value: float, minutes: int) -> str:
    """One sample a minute, all the same (kube-state-metrics' timestamps and counts are gauges)."""
    return f"{value:g}x{minutes}"


def failed_job(job: str, namespace: str = NS, failed: bool = True) -> dict:
    return {metric("kube_job_failed", namespace, job_name=job, condition="true"): 1 if failed else 0}


def cronjob_run(cronjob: str, job: str, started: int, failed: bool, namespace: str = NS) -> dict:
    """One Job a CronJob made, as kube-state-metrics shows it: start time, owner, Failed condition."""
    series = {metric("kube_job_status_start_time", namespace, job_name=job): started,
              metric("kube_job_owner", namespace, job_name=job, owner_kind="CronJob", owner_name=cronjob,
                     owner_is_controller="true"): 1}
    return {**series, **failed_job(job, namespace, failed)}


def cronjob_state(cronjob: str, *, created: int = 0, last_success: Optional[int] = None,
                  last_schedule: Optional[int] = None, interval: Optional[int] = None, namespace: str = NS) -> dict:
    series = {metric("kube_cronjob_created", namespace, cronjob=cronjob): created}
    if last_success is not None:
        series[metric("kube_cronjob_status_last_successful_time", namespace, cronjob=cronjob)] = last_success
    if last_schedule is not None:
        series[metric("kube_cronjob_status_last_schedule_time", namespace, cronjob=cronjob)] = last_schedule
        series[metric("kube_cronjob_next_schedule_time", namespace, cronjob=cronjob)] = last_schedule + interval
    return series


def deployment(name: str, wanted: int, available: int, namespace: str = NS) -> dict:
    return {metric("kube_deployment_spec_replicas", namespace, deployment=name): wanted,
            metric("kube_deployment_status_replicas_available", namespace, deployment=name): available}


SAM_METRICS_MODULE = (PROJECT_ROOT / "sam-server" / "sam_server" / "metrics.py").read_text()
# The server's click histogram buckets, read without importing the server.
[CLICK_BUCKETS] = [ast.literal_eval(node.value) for node in ast.parse(SAM_METRICS_MODULE).body
                   if isinstance(node, ast.Assign) and node.targets[0].id == "CLICK_BUCKETS"]


def scraped(pod: str, namespace: str) -> dict:
    """The labels the PodMonitor's scrape gives every series of a SAM pod."""
    return {"pod": pod, "container": "sam", "endpoint": "http", "job": f"{namespace}/{SAM_NAME}",
            "instance": "10.0.3.7:9090"}


def clicks(pod: str, seconds: float, per_minute: int, cache: str = "miss", namespace: str = NS,
           minutes: int = 60) -> dict:
    """A SAM pod's click histogram, as prometheus_client exports it, counting `per_minute` clicks
    of `seconds` each minute for `minutes`, then none: the buckets' counters in promtool's values
    notation."""
    def counter(per_minute: int) -> str:
        return f"0+{per_minute}x{minutes} {per_minute * minutes}+0x{60 - minutes}"
    bounds = [repr(float(bound)) for bound in CLICK_BUCKETS] + ["+Inf"]
    return {metric("sam_click_seconds_bucket", namespace, cache=cache, le=bound, **scraped(pod, namespace)):
            counter(per_minute if seconds <= float(bound) else 0) for bound in bounds}


def queued(pod: str, depth: int, kind: str = "click", namespace: str = NS) -> dict:
    return {metric("sam_queue_depth", namespace, kind=kind, **scraped(pod, namespace)): depth}


@dataclass(frozen=True)
class Case:
    alert: str
    what: str
    series: dict
    at_minutes: int
    # The firing alert's labels beside alertname and severity, and its summary; None: silent.
    fires_with: Optional[dict] = None
    summary: str = ""
    # Series whose value changes: name -> promtool's values notation (overrides `series`).
    changing: dict = field(default_factory=dict)

    def promtool_test(self) -> dict:
        minutes = self.at_minutes + 1
        inputs = [{"series": name, "values": constant(value, minutes)} for name, value in self.series.items()
                  if name not in self.changing]
        inputs += [{"series": name, "values": values} for name, values in self.changing.items()]
        expected = []
        if self.fires_with is not None:
            rule = RULES[self.alert]
            annotations = {**rule["annotations"], "summary": self.summary}
            expected = [{"exp_labels": {**self.fires_with, "severity": rule["labels"]["severity"]},
                         "exp_annotations": annotations}]
        return {"interval": "1m", "input_series": inputs,
                "alert_rule_test": [{"eval_time": f"{self.at_minutes}m", "alertname": self.alert,
                                     "exp_alerts": expected}]}


# Near misses that every case carries: the same objects in another stack's namespace.
OTHER_STACK = {
    **failed_job(DEPLOY_JOB, OTHER_NS), **failed_job(PRE_UPGRADE_JOB, OTHER_NS),
    **cronjob_run(SCHEDULED_RECONCILE_NAME, f"{SCHEDULED_RECONCILE_NAME}-1", HOUR, True, OTHER_NS),
    **cronjob_state(SCHEDULED_RECONCILE_NAME, last_schedule=HOUR, interval=HOUR, namespace=OTHER_NS),
    **deployment("label-studio-ls-app", 1, 0, OTHER_NS), **deployment(SAM_NAME, 1, 0, OTHER_NS),
    **queued(SAM_POD, 50, namespace=OTHER_NS),
}
# ... and the other stack's SAM server answering every click slowly (counters: they change).
OTHER_STACK_CHANGING = clicks(SAM_POD, 30, 20, namespace=OTHER_NS)
RECONCILE = SCHEDULED_RECONCILE_NAME
CASES = [
    Case("LabelingDeployJobFailed", "the deploy Job failed", failed_job(DEPLOY_JOB), 5,
         {"namespace": NS, "job_name": DEPLOY_JOB, "condition": "true"}, f"Reconciler Job {NS}/{DEPLOY_JOB} failed"),
    Case("LabelingDeployJobFailed", "a running deploy Job; a scheduled run's and a backup's failed Jobs",
         {**failed_job(DEPLOY_JOB, failed=False), **failed_job(f"{RECONCILE}-29400000"),
          **failed_job(f"{PRE_UPGRADE_NAME}-0a1b2c3d4e"), **failed_job("labeling-reconciler-manual")}, 5),
    Case("LabelStudioUnavailable", "no replica for longer than the grace", deployment("label-studio-ls-app", 2, 0), 10,
         {"namespace": NS, "deployment": "label-studio-ls-app"},
         f"Label Studio {NS}/label-studio-ls-app has no available replica"),
    Case("LabelStudioUnavailable", "a replica back within the grace, another Deployment down",
         {**deployment("label-studio-ls-app", 1, 0), **deployment("other-app", 1, 0)}, 10,
         changing={metric("kube_deployment_status_replicas_available", deployment="label-studio-ls-app"): "0x3 1x8"}),
    Case("LabelingSamUnavailable", "wanted, none ready past the startup budget", deployment(SAM_NAME, 1, 0), 25,
         {"namespace": NS, "deployment": SAM_NAME}, f"SAM backend {NS}/{SAM_NAME} has no ready replica"),
    Case("LabelingSamUnavailable", "still inside the startup budget", deployment(SAM_NAME, 1, 0), 15),
    Case("LabelingSamUnavailable", "scaled to zero outside the labeling windows", deployment(SAM_NAME, 0, 0), 120),
    Case("LabelingScheduledReconcileFailed", "a run failed after the last success",
         {**cronjob_run(RECONCILE, f"{RECONCILE}-1", HOUR, False), **cronjob_run(RECONCILE, f"{RECONCILE}-2", 2 * HOUR, True),
          **cronjob_state(RECONCILE, last_success=HOUR + 300)}, 130,
         {"namespace": NS, "cronjob": RECONCILE}, f"The latest scheduled reconcile {NS}/{RECONCILE} failed"),
    Case("LabelingScheduledReconcileFailed", "the first run failed, none succeeded yet",
         {**cronjob_run(RECONCILE, f"{RECONCILE}-1", HOUR, True), **cronjob_state(RECONCILE)}, 70,
         {"namespace": NS, "cronjob": RECONCILE}, f"The latest scheduled reconcile {NS}/{RECONCILE} failed"),
    Case("LabelingScheduledReconcileFailed", "a kept failed run, then a success; another CronJob's failed run",
         {**cronjob_run(RECONCILE, f"{RECONCILE}-1", HOUR, True), **cronjob_run(RECONCILE, f"{RECONCILE}-2", 2 * HOUR, False),
          **cronjob_state(RECONCILE, last_success=2 * HOUR + 300),
          **cronjob_run(EXPORT_RESYNC_NAME, f"{EXPORT_RESYNC_NAME}-1", 2 * HOUR, True)}, 130),
    Case("LabelingExportResyncFailed", "a run failed after the last success",
         {**cronjob_run(EXPORT_RESYNC_NAME, f"{EXPORT_RESYNC_NAME}-1", HOUR, True),
          **cronjob_state(EXPORT_RESYNC_NAME, last_success=HOUR - 600)}, 70,
         {"namespace": NS, "cronjob": EXPORT_RESYNC_NAME}, f"The latest export re-sync {NS}/{EXPORT_RESYNC_NAME} failed"),
    Case("LabelingExportResyncFailed", "the scheduled reconcile failed, the re-sync succeeded",
         {**cronjob_run(RECONCILE, f"{RECONCILE}-1", HOUR, True),
          **cronjob_run(EXPORT_RESYNC_NAME, f"{EXPORT_RESYNC_NAME}-1", HOUR, False),
          **cronjob_state(EXPORT_RESYNC_NAME, last_success=HOUR + 60)}, 70),
    # Hourly: 3 intervals and a run's deadline (3 h 30 min) after the last success at 1:05.
    Case("LabelingScheduledReconcileStale", "three hourly runs missed",
         cronjob_state(RECONCILE, last_success=HOUR + 300, last_schedule=4 * HOUR, interval=HOUR), 280,
         {"namespace": NS, "cronjob": RECONCILE},
         f"No scheduled reconcile {NS}/{RECONCILE} has succeeded for 3h 35m 0s"),
    Case("LabelingScheduledReconcileStale", "never succeeded since it was made",
         cronjob_state(RECONCILE, created=0, last_schedule=4 * HOUR, interval=HOUR), 280,
         {"namespace": NS, "cronjob": RECONCILE},
         f"No scheduled reconcile {NS}/{RECONCILE} has succeeded for 4h 40m 0s"),
    Case("LabelingScheduledReconcileStale", "two runs missed; another CronJob long without success",
         {**cronjob_state(RECONCILE, last_success=HOUR + 300, last_schedule=3 * HOUR, interval=HOUR),
          **cronjob_state(EXPORT_RESYNC_NAME, last_schedule=4 * HOUR, interval=HOUR)}, 270),
    # Daily at 03:00, a run may start an hour late and take an hour: missing after 26 h.
    Case("LabelingDatabaseBackupMissing", "a night without a backup",
         cronjob_state(BACKUP_NAME, last_success=3 * HOUR + 600, last_schedule=DAY + 3 * HOUR, interval=DAY), 1760,
         {"namespace": NS, "cronjob": BACKUP_NAME},
         f"No database backup {NS}/{BACKUP_NAME} has succeeded for 1d 2h 10m 0s"),
    Case("LabelingDatabaseBackupMissing", "the night's backup is running late, within its deadlines",
         cronjob_state(BACKUP_NAME, last_success=3 * HOUR + 600, last_schedule=DAY + 3 * HOUR, interval=DAY), 1700),
    Case("LabelingPreUpgradeBackupFailed", "the pre-upgrade dump failed", failed_job(PRE_UPGRADE_JOB), 5,
         {"namespace": NS, "job_name": PRE_UPGRADE_JOB, "condition": "true"},
         f"Pre-upgrade backup {NS}/{PRE_UPGRADE_JOB} failed"),
    Case("LabelingPreUpgradeBackupFailed", "a finished dump; the nightly backup's failed run",
         {**failed_job(PRE_UPGRADE_JOB, failed=False), **failed_job(f"{BACKUP_NAME}-29400000")}, 5),
    # 18 clicks a minute on cached images, 2 that wait 12 s for their embedding on the other
    # replica: the team's 95th percentile is 12 s.
    Case("LabelingSamClicksSlow", "one click in 10 takes 12 s, for 10 minutes", {}, 20,
         {"namespace": NS}, f"SAM server {NS}/{SAM_NAME} takes 12s for one click in 20",
         changing={**clicks(SAM_POD, 0.1, 18, "hit"), **clicks(SAM_POD_2, 12, 2)}),
    Case("LabelingSamClicksSlow", "first clicks take 4 s, under the threshold; another workload's slow pod", {}, 20,
         changing={**clicks(SAM_POD, 0.1, 18, "hit"), **clicks(SAM_POD_2, 4, 2), **clicks(CANARY_POD, 30, 20)}),
    Case("LabelingSamClicksSlow", "a slow spell 5 minutes old (it must last 10)", {}, 10,
         changing={**clicks(SAM_POD, 0.1, 18, "hit"), **clicks(SAM_POD_2, 12, 2, minutes=12)}),
    Case("LabelingSamClicksQueued", "8 clicks wait on one replica for 5 minutes",
         {**queued(SAM_POD, 8), **queued(SAM_POD_2, 0)}, 10,
         {"namespace": NS, "pod": SAM_POD}, f"SAM server pod {NS}/{SAM_POD} has 8 clicks waiting for an embedding"),
    Case("LabelingSamClicksQueued", "a burst that drains; warm-ups queued; another workload's queue",
         {**queued(SAM_POD, 50, "warmup"), **queued(CANARY_POD, 50)}, 10,
         changing={metric("sam_queue_depth", kind="click", **scraped(SAM_POD, NS)): "8x3 0x8"}),
]


def _promtool() -> str:
    return require_program("promtool", PROMTOOL_INSTALL)


def _rules_file(directory: Path) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": RULE["spec"]["groups"]}, sort_keys=False))
    return path


def test_promtool_accepts_the_rules(tmp_path):
    result = subprocess.run([_promtool(), "check", "rules", str(_rules_file(tmp_path))], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


CASE_NAMES = [f"{c.alert}-{'fires' if c.fires_with else 'silent'}-{c.what}" for c in CASES]


@pytest.fixture(scope="module")
def promtool_failures(tmp_path_factory) -> str:
    """One `promtool test rules` run over every case (a test group each, named by its id):
    promtool's report of the groups that failed. Each case's test reads its own verdict."""
    assert all(case.at_minutes % 5 == 0 for case in CASES), "every case's time is a multiple of the 5m evaluation"
    directory = tmp_path_factory.mktemp("promtool")
    _rules_file(directory)
    groups = [{"name": name, **Case(c.alert, c.what, {**OTHER_STACK, **c.series}, c.at_minutes, c.fires_with,
                                    c.summary, {**OTHER_STACK_CHANGING, **c.changing}).promtool_test()}
              for name, c in zip(CASE_NAMES, CASES)]
    test_file = directory / "test.yaml"
    # Rules evaluated every 5 minutes (every case's time is a multiple of it): the alerts' windows
    # are tens of minutes to a day, and the day-long backup cases stay cheap.
    test_file.write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "5m",
                                         "tests": groups}, sort_keys=False))
    result = subprocess.run([_promtool(), "test", "rules", str(test_file)], capture_output=True, text=True,
                            timeout=120, cwd=directory)
    report = result.stdout + result.stderr
    assert result.returncode == 0 or "FAILED:" in report, report
    return report


@pytest.mark.parametrize("name", CASE_NAMES)
def test_alert_under_promtool(name, promtool_failures):
    # promtool names each failed group: "name: <group name>," right after "FAILED:".
    failures = promtool_failures.split("FAILED:")[1:]
    assert not [failure for failure in failures if f"name: {name}," in failure], promtool_failures


def test_every_alert_has_a_firing_and_a_silent_case():
    firing = {c.alert for c in CASES if c.fires_with is not None}
    silent = {c.alert for c in CASES if c.fires_with is None}
    assert firing == silent == set(RULES)


# --------------------------------------------------------------------------- the rule's content

def _selectors(expr: str) -> list[str]:
    return re.findall(r"\b(\w+)\{([^}]*)\}", expr)


def test_every_selector_names_the_namespace_exactly():
    for name, rule in RULES.items():
        for metric_name, matchers in _selectors(rule["expr"]):
            assert f'namespace="{NS}"' in matchers.split(", "), (name, metric_name)


def test_job_patterns_match_exactly_the_jobs_the_components_name():
    deploy = re.compile(JOB_NAME_PATTERN)
    assert deploy.fullmatch(job_name('{"projects": []}', {"m.py": "x"}, ["42"]))
    pre_upgrade = re.compile(PRE_UPGRADE_JOB_PATTERN)
    evaluation = evaluate_cached("dev")
    [job] = [r for r in evaluation.resources if r.type == "kubernetes:batch/v1:Job" and "pre-upgrade" in r.name]
    assert pre_upgrade.fullmatch(job.inputs["metadata"]["name"])
    for other in (f"{SCHEDULED_RECONCILE_NAME}-29400000", f"{EXPORT_RESYNC_NAME}-29400000", f"{BACKUP_NAME}-29400000",
                  "labeling-reconciler-manual", "reconcile-now"):
        assert not deploy.fullmatch(other) and not pre_upgrade.fullmatch(other)


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_each_alert_links_to_its_section_of_the_operations_page():
    anchors = _anchors((PROJECT_ROOT / "docs" / "operations.md").read_text())
    for name, rule in RULES.items():
        url, anchor = rule["annotations"]["runbook_url"].split("#")
        assert url == RUNBOOK and anchor in anchors, name
        assert rule["labels"]["severity"] in ("critical", "warning")


def test_the_rule_carries_the_selector_labels_and_the_platform_labels():
    assert RULE["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert RULE["metadata"]["labels"]["app.kubernetes.io/part-of"] == "labeling-platform"
    assert (RULE["metadata"]["name"], RULE["metadata"]["namespace"]) == (ALERTS_NAME, NS)


def test_the_sam_server_alerts_read_the_server_s_own_metrics_and_thresholds():
    exported = set(re.findall(r'(?:Histogram|Gauge|Counter)\(\s*"(\w+)"', SAM_METRICS_MODULE))
    for name in SAM_SERVER_ALERTS:
        [used] = {m for m, _ in _selectors(RULES[name]["expr"])}
        assert re.sub(r"_bucket$", "", used) in exported, name
    assert f"> {DEFAULT_SAM_CLICK_P95_SECONDS}" in RULES["LabelingSamClicksSlow"]["expr"]
    assert f"> {DEFAULT_SAM_QUEUED_CLICKS}" in RULES["LabelingSamClicksQueued"]["expr"]
    # A percentile past the histogram's top bucket reads as that bucket: a threshold must stay below it.
    assert MAX_SAM_CLICK_P95_SECONDS < max(CLICK_BUCKETS)


def test_a_stack_without_sam_scheduled_runs_or_nightly_backup_alerts_on_what_it_has():
    rule = prometheus_rule(SETTINGS, AlertTargets(TARGETS.label_studio, TARGETS.deploy_job_pattern), NS)
    assert [r["alert"] for r in rule["spec"]["groups"][0]["rules"]] == ["LabelingDeployJobFailed",
                                                                         "LabelStudioUnavailable"]


# --------------------------------------------------------------------------- which stacks declare it

def _declared_rules(evaluation) -> list:
    return [r for r in evaluation.resources if r.type == "kubernetes:monitoring.coreos.com/v1:PrometheusRule"]


def _alerts_of(evaluation) -> dict[str, str]:
    [resource] = _declared_rules(evaluation)
    by_urn = {r.urn: r for r in evaluation.resources}
    assert by_urn[resource.parent].type == "labeling:monitoring:Alerts"
    return {r["alert"]: r["expr"] for r in resource.inputs["spec"]["groups"][0]["rules"]}


def test_prod_declares_the_rule_under_the_alerts_component():
    alerts = _alerts_of(evaluate_cached("prod"))
    # RDS: no backup Job or CronJob of the stack's own to watch; the upstream SAM example exports no metrics.
    # Prod runs the platform's SAM server on RDS: no in-cluster backup.
    assert set(alerts) == set(RULES) - {"LabelingDatabaseBackupMissing", "LabelingPreUpgradeBackupFailed"}
    assert 'deployment="label-studio-ls-app"' in alerts["LabelStudioUnavailable"]


def test_dev_declares_no_rule():
    assert not stack_settings("dev").monitoring.enabled
    assert _declared_rules(evaluate_cached("dev")) == []


def test_switching_monitoring_on_in_dev_watches_every_object_it_declares():
    evaluation = evaluate_cached("dev", {"monitoring.enabled": True})
    alerts = _alerts_of(evaluation)
    assert set(alerts) == set(RULES)
    namespace = stack_settings("dev").namespace
    cronjobs = {r.inputs["metadata"]["name"] for r in evaluation.resources if r.type == "kubernetes:batch/v1:CronJob"}
    deployments = {r.inputs["metadata"]["name"] for r in evaluation.resources
                   if r.type == "kubernetes:apps/v1:Deployment"}
    selected = {value for expr in alerts.values() for _, matchers in _selectors(expr)
                for value in re.findall(r'(?:cronjob|owner_name|deployment)="([^"]+)"', matchers)}
    assert selected == cronjobs | deployments | {"label-studio-ls-app"}
    assert all(f'namespace="{namespace}"' in expr for expr in alerts.values())
