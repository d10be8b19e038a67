"""The platform's SAM server's metrics: the PodMonitor that has the cluster's Prometheus scrape
them, the NetworkPolicy rule that lets that Prometheus in and nothing else, and which stacks
plan them (the alerts that read the metrics: tests/test_monitoring.py)."""

from __future__ import annotations

import copy

import pytest

from components.monitoring import PROMETHEUS_POD_LABELS
from components.network import pods_in
from components.sam_backend import METRICS_PATH, SAM_NAME, SAM_PORT
from components.settings.monitoring import DEFAULT_PROMETHEUS_NAMESPACE
from tests.conftest import evaluate_cached, stack_settings
from tests.variants import SAM_SERVER_IMAGE, UPSTREAM_SAM_ON_GPU, VARIANTS
from tools.object_validation import object_problem
from tools.stack_eval import Evaluation

POD_MONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
ALERTS = "labeling:monitoring:Alerts"
SAM_SERVER = {"sam.model": "sam2.1-tiny", "sam.image": SAM_SERVER_IMAGE}
SAM_SERVER_ALERTS = {"LabelingSamClicksSlow", "LabelingSamClicksQueued"}


def _sam(evaluation: Evaluation, type_: str) -> dict:
    [manifest] = [r.kubernetes_manifest for r in evaluation.of_type(type_)
                  if r.kubernetes_manifest["metadata"]["name"] == SAM_NAME]
    return manifest


def _cross_namespace_peers(evaluation: Evaluation) -> list[tuple[dict, list]]:
    """(peer, ports) of each rule of the SAM policy that admits pods of another namespace."""
    policy = _sam(evaluation, NETWORK_POLICY)
    return [(peer, rule["ports"]) for rule in policy["spec"]["ingress"] for peer in rule["from"]
            if "namespaceSelector" in peer]


def _alert_names(evaluation: Evaluation) -> set[str]:
    [rule] = evaluation.of_type("kubernetes:monitoring.coreos.com/v1:PrometheusRule")
    return {r["alert"] for r in rule.inputs["spec"]["groups"][0]["rules"]}


def test_prod_with_the_platform_server_scrapes_its_pods_with_a_pod_monitor_of_the_alerts():
    evaluation = evaluate_cached(*VARIANTS["sam-server"])
    [resource] = evaluation.of_type(POD_MONITOR)
    assert {r.urn: r for r in evaluation.resources}[resource.parent].type == ALERTS
    monitor, deployment = resource.kubernetes_manifest, _sam(evaluation, DEPLOYMENT)
    assert object_problem(monitor) is None
    # Selected the way the PrometheusRule is, in the stack's namespace.
    settings = stack_settings(*VARIANTS["sam-server"])
    assert settings.monitoring.rule_labels and monitor["metadata"]["labels"].items() >= settings.monitoring.rule_labels.items()
    assert monitor["metadata"]["namespace"] == settings.namespace and "namespaceSelector" not in monitor["spec"]
    # The SAM pods, and the port that serves /metrics by its name.
    pod = deployment["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    [container] = pod["spec"]["containers"]
    assert {"name": endpoint["port"], "containerPort": SAM_PORT, "protocol": "TCP"} in container["ports"]
    assert endpoint["path"] == METRICS_PATH
    assert SAM_SERVER_ALERTS <= _alert_names(evaluation)


def test_prod_with_the_platform_server_lets_the_monitoring_namespace_s_prometheus_in_on_the_sam_port_only():
    evaluation = evaluate_cached(*VARIANTS["sam-server"])
    assert _cross_namespace_peers(evaluation) == [
        (pods_in(DEFAULT_PROMETHEUS_NAMESPACE, PROMETHEUS_POD_LABELS), [{"protocol": "TCP", "port": SAM_PORT}])]


def test_dev_with_monitoring_on_scrapes_from_the_namespace_it_is_given():
    evaluation = evaluate_cached("dev", {**SAM_SERVER, "monitoring.enabled": True,
                                         "monitoring.prometheusNamespace": "observability"})
    assert len(evaluation.of_type(POD_MONITOR)) == 1 and SAM_SERVER_ALERTS <= _alert_names(evaluation)
    [(peer, _)] = _cross_namespace_peers(evaluation)
    assert peer == pods_in("observability", PROMETHEUS_POD_LABELS)


def test_dev_with_the_platform_server_and_monitoring_off_plans_no_scrape():
    evaluation = evaluate_cached("dev", SAM_SERVER)
    assert not stack_settings("dev", SAM_SERVER).monitoring.enabled
    assert evaluation.of_type(POD_MONITOR) == [] and evaluation.of_type(ALERTS) == []
    assert _cross_namespace_peers(evaluation) == []


def test_the_upstream_example_exports_no_metrics_so_nothing_scrapes_it():
    evaluation = evaluate_cached("prod", UPSTREAM_SAM_ON_GPU)
    assert evaluation.of_type(POD_MONITOR) == [] and _cross_namespace_peers(evaluation) == []
    assert not SAM_SERVER_ALERTS & _alert_names(evaluation)


@pytest.mark.parametrize("change, problem", [
    (lambda spec: spec["podMetricsEndpoints"][0].update(prot="http"), "'prot' was unexpected"),
    (lambda spec: spec.pop("selector"), "'selector' is a required property"),
])
def test_a_pod_monitor_off_its_crd_is_refused(change, problem):
    broken = copy.deepcopy(_sam(evaluate_cached(*VARIANTS["sam-server"]), POD_MONITOR))
    change(broken["spec"])
    assert problem in object_problem(broken)


def test_the_sam_server_keys_are_ignored_with_a_warning_while_sam_runs_an_upstream_example():
    settings = stack_settings("prod", {**UPSTREAM_SAM_ON_GPU, "monitoring.samQueuedClicks": 8})
    assert any(w.startswith("monitoring.samQueuedClicks: ignored unless SAM runs the platform's server")
               for w in settings.warnings), settings.warnings
