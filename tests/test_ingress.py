"""The Ingress: valid for Kubernetes, routed to the chart's app Service only, uploads allowed."""

from __future__ import annotations

import kubernetes_validate
import pytest

from components.chart_values import APP_SERVICE_PORT
from components.ingress import ingress_manifest
from components.settings import ConfigError, IngressSettings, TlsSettings
from tests.conftest import evaluate_cached, stack_settings
from tools.object_validation import KUBERNETES_VERSION
from tools.stack_eval import DELETE

INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
COMPONENT = "labeling:network:LabelStudioIngress"

ISSUER = IngressSettings(True, "label.example.com", "nginx", TlsSettings("letsencrypt-prod", None), "500m")
EXISTING_SECRET = IngressSettings(True, "label.example.com", "nginx", TlsSettings(None, "wildcard-tls"), "100m")
PLAIN_HTTP = IngressSettings(True, "label.internal.example.com", "traefik", None, "1g")


def manifest(settings: IngressSettings) -> dict:
    return ingress_manifest(settings, "labeling", "label-studio", "label-studio-ls-app", APP_SERVICE_PORT)


def backends(obj: dict) -> list[dict]:
    return [path["backend"] for rule in obj["spec"]["rules"] for path in rule["http"]["paths"]]


@pytest.mark.parametrize("settings", [ISSUER, EXISTING_SECRET, PLAIN_HTTP])
def test_manifest_is_a_valid_ingress(settings):
    kubernetes_validate.validate(manifest(settings), KUBERNETES_VERSION, strict=True)


def test_routes_everything_to_the_app_service():
    obj = manifest(ISSUER)
    assert obj["spec"]["ingressClassName"] == "nginx"
    assert obj["spec"]["rules"][0]["host"] == "label.example.com"
    (path,) = obj["spec"]["rules"][0]["http"]["paths"]
    assert path["path"] == "/" and path["pathType"] == "Prefix"
    assert path["backend"] == {"service": {"name": "label-studio-ls-app", "port": {"number": 80}}}


def test_cert_manager_issues_into_the_release_tls_secret():
    obj = manifest(ISSUER)
    assert obj["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    assert obj["spec"]["tls"] == [{"hosts": ["label.example.com"], "secretName": "label-studio-tls"}]


def test_existing_tls_secret_is_used_as_is():
    obj = manifest(EXISTING_SECRET)
    assert "cert-manager.io/cluster-issuer" not in obj["metadata"]["annotations"]
    assert obj["spec"]["tls"] == [{"hosts": ["label.example.com"], "secretName": "wildcard-tls"}]


def test_without_tls_there_is_no_tls_section():
    assert "tls" not in manifest(PLAIN_HTTP)["spec"]


@pytest.mark.parametrize("settings", [ISSUER, EXISTING_SECRET, PLAIN_HTTP])
def test_upload_size_limit_follows_settings(settings):
    annotations = manifest(settings)["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == settings.max_body_size


# --------------------------------------------------------------------------- stacks


def test_declared_ingress_is_valid_and_targets_label_studio(stack_eval):
    settings = stack_settings(stack_eval.stack).ingress
    if not settings.enabled:
        assert not stack_eval.of_type(INGRESS) and not stack_eval.of_type(COMPONENT)
        return
    (ingress,) = stack_eval.of_type(INGRESS)
    obj = ingress.kubernetes_manifest
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    assert backends(obj) == [{"service": {"name": "label-studio-ls-app", "port": {"number": APP_SERVICE_PORT}}}]
    assert obj["metadata"]["namespace"] == stack_eval.one("kubernetes:core/v1:Namespace").inputs["metadata"]["name"]
    if settings.tls and settings.tls.cluster_issuer:
        assert obj["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == settings.tls.cluster_issuer


def test_nothing_routes_to_sam(stack_eval):
    sam_services = {r.inputs["metadata"]["name"] for r in stack_eval.of_type("kubernetes:core/v1:Service")}
    for ingress in stack_eval.of_type(INGRESS):
        assert not {b["service"]["name"] for b in backends(ingress.inputs)} & sam_services


def test_ingress_is_parented_to_its_component(stack_eval):
    for component in stack_eval.of_type(COMPONENT):
        assert [r.type for r in stack_eval.resources if r.parent == component.urn] == [INGRESS]
    assert len(stack_eval.of_type(COMPONENT)) == stack_settings(stack_eval.stack).ingress.enabled


def test_disabled_ingress_declares_nothing():
    ev = evaluate_cached("dev", overrides={"ingress": {"enabled": False}})
    assert not ev.of_type(INGRESS) and not ev.of_type(COMPONENT)


WITHOUT_TLS = {"ingress.tls": DELETE}
PLAIN_HTTP_PROBLEM = ("serves Label Studio over plain HTTP, so passwords and the invite link travel unencrypted; "
                      "expected ingress.tls.clusterIssuer or ingress.tls.secretName, or ingress.plainHttpReason saying "
                      "where TLS ends instead (e.g. at a load balancer)")


def test_an_ingress_without_tls_is_a_warning_in_dev():
    warnings = stack_settings("dev", WITHOUT_TLS).warnings
    assert f"ingress.tls: not set: the Ingress {PLAIN_HTTP_PROBLEM}" in warnings


def test_an_ingress_without_tls_stops_a_protected_stack_with_one_keyed_line():
    with pytest.raises(ConfigError) as refused:
        stack_settings("prod", WITHOUT_TLS)
    assert refused.value.problems == [f"ingress.tls: is not set: the Ingress {PLAIN_HTTP_PROBLEM}"]


def test_a_stated_reason_accepts_plain_http_at_the_ingress():
    reason = {**WITHOUT_TLS, "ingress.plainHttpReason": "TLS ends at the AWS load balancer in front of ingress-nginx"}
    assert not any("plain HTTP" in warning for warning in stack_settings("prod", reason).warnings)
    assert not any("plain HTTP" in warning for warning in stack_settings("dev", reason).warnings)
    with_tls = stack_settings("prod", {"ingress.plainHttpReason": "stale"}).warnings
    assert "ingress.plainHttpReason: ignored while ingress.tls is set" in with_tls
