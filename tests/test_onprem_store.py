"""An S3-compatible store in the operator's own network: where the pods may connect to it,
and the private CA its certificate chains to."""

from __future__ import annotations

import json

import kubernetes_validate
import pulumi
import pytest

from components.network import PRIVATE_RANGES, endpoint_egress
from components.settings.storage import may_resolve_private
from components.storage import (
    STORE_CA_CONFIG_MAP, STORE_CA_DIR, STORE_CA_FILE, STORE_CA_KEY, STORE_CA_VOLUME, StoreTrust,
)
from tests.conftest import evaluate_cached, objects_cached
from tests.variants import ON_PREMISES_HTTPS, STORE_CA_PEM, VARIANTS
from tools.object_validation import KUBERNETES_VERSION

ON_PREMISES = {"mode": "s3Compatible", "bucketName": "team-images", "endpoint": "https://ceph.corp.example.com"}
KEYS = {"storage.accessKeyId": "AKIAONPREMISES", "storage.secretAccessKey": "on-premises-secret"}


def test_an_on_premises_endpoint_without_egress_cidrs_stops_the_plan_with_one_line():
    with pytest.raises(pulumi.RunError) as caught:
        evaluate_cached("dev", overrides={"storage": ON_PREMISES}, secrets=KEYS)
    [problem] = [line.strip() for line in str(caught.value).splitlines()[1:]]
    assert problem.startswith('storage.egressCidrs: is required for endpoint "https://ceph.corp.example.com": '
                              "a DNS name may resolve to a private address")
    assert "pulumi config set --path 'storage.egressCidrs[0]' 10.20.0.0/16" in problem


def test_with_egress_cidrs_the_pods_reach_exactly_those_networks_on_the_endpoint_port():
    evaluation = evaluate_cached("dev", overrides={"storage": {**ON_PREMISES, "egressCidrs": ["10.20.0.0/16"]}},
                                 secrets=KEYS)
    assert evaluation.resources
    rule = {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 443}]}
    policies = [r.inputs for r in evaluation.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")]
    assert any(rule in policy["spec"]["egress"] for policy in policies)


@pytest.mark.parametrize("endpoint, needs_cidrs", [
    ("https://ceph.corp.example.com", True),
    ("https://s3.example.com:8443", True),
    ("http://10.0.0.5:9000", False),  # an address: the rule names it
    ("http://minio.storage.svc:9000", False),  # in the cluster: any pod
    ("http://minio", False),
    ("https://rgw.internal", False),  # .internal / .local: the private ranges
    ("https://s3.eu-central-2.wasabisys.com", False),  # a public service: public addresses
    ("https://account.r2.cloudflarestorage.com", False),
])
def test_which_endpoints_need_their_networks_named(endpoint, needs_cidrs):
    assert may_resolve_private(endpoint) is needs_cidrs
    if not needs_cidrs and endpoint.endswith(".internal"):
        assert [block["ipBlock"]["cidr"] for block in endpoint_egress(endpoint)["to"]] == list(PRIVATE_RANGES)


# --------------------------------------------------------------------------- the store's private CA

WORKLOAD_TYPES = ("kubernetes:batch/v1:Job", "kubernetes:batch/v1:CronJob", "kubernetes:apps/v1:Deployment")
CONSUMERS = {
    # resource name (up to a version digest) -> the variables its store client reads the CA file from
    "labeling-backup-cronjob": ["AWS_CA_BUNDLE"],  # aws-cli
    "labeling-label-studio-pre-upgrade-backup-job": ["AWS_CA_BUNDLE"],  # the same containers, once
    "labeling-configuration-job": ["SSL_CERT_FILE"],  # the reconciler's probe (ssl default context)
    "labeling-configuration-export-resync": ["SSL_CERT_FILE"],
    "labeling-sam-deployment": ["REQUESTS_CA_BUNDLE"],  # SAM follows presigned URLs with requests
}


def _pod_spec(manifest: dict) -> dict:
    spec = manifest["spec"]
    spec = spec.get("jobTemplate", {}).get("spec", spec)
    return spec["template"]["spec"]


def test_the_ca_bundle_reaches_every_client_of_the_store_from_one_config_map():
    evaluation = evaluate_cached(*VARIANTS["on-premises-https"])
    [config_map] = [r for r in evaluation.of_type("kubernetes:core/v1:ConfigMap")
                    if r.inputs["metadata"]["name"] == STORE_CA_CONFIG_MAP]
    assert config_map.inputs["data"] == {STORE_CA_KEY: STORE_CA_PEM.strip()}
    assert config_map.parent == evaluation.one("labeling:storage:ObjectStorage").urn
    for name, variables in CONSUMERS.items():
        [resource] = [r for r in evaluation.resources if r.type in WORKLOAD_TYPES
                      and (r.name == name or r.name.startswith(f"{name}-"))]
        pod = _pod_spec(resource.kubernetes_manifest)
        assert StoreTrust(STORE_CA_CONFIG_MAP).volume() in pod["volumes"], name
        for container in pod["containers"]:
            assert StoreTrust.volume_mount() in container["volumeMounts"], name
            assert [e for e in container["env"] if e.get("value") == STORE_CA_FILE] == [
                {"name": variable, "value": STORE_CA_FILE} for variable in variables], name
        kubernetes_validate.validate(resource.kubernetes_manifest, KUBERNETES_VERSION, strict=True)


def test_label_studio_gets_the_bundle_for_boto3_only():
    """AWS_CA_BUNDLE for its S3 clients; REQUESTS_CA_BUNDLE would drop the public CAs for ML backends and webhooks."""
    objects = objects_cached(*VARIANTS["on-premises-https"])
    values = objects.evaluation.one("kubernetes:helm.sh/v3:Release").inputs["values"]
    assert values["global"]["extraEnvironmentVars"]["AWS_CA_BUNDLE"] == STORE_CA_FILE
    assert "REQUESTS_CA_BUNDLE" not in values["global"]["extraEnvironmentVars"]
    [deployment] = [o for render in objects.renders for o in render.objects
                    if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-ls-app")]
    pod = deployment["spec"]["template"]["spec"]
    assert {"name": STORE_CA_VOLUME, "configMap": {"name": STORE_CA_CONFIG_MAP,
                                                   "items": [{"key": STORE_CA_KEY, "path": STORE_CA_KEY}]}} \
        in pod["volumes"]
    app = next(c for c in pod["containers"] if c["name"] == "app")
    assert StoreTrust.volume_mount() in app["volumeMounts"]
    assert {"name": "AWS_CA_BUNDLE", "value": STORE_CA_FILE} in app["env"]


def test_without_a_bundle_nothing_mounts_one():
    evaluation = evaluate_cached(*VARIANTS["s3-compatible"])
    assert STORE_CA_DIR not in json.dumps([r.inputs for r in evaluation.resources])


@pytest.mark.parametrize("bundle, problem", [
    ("not a certificate", "holds no PEM certificate"),
    ("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----",
     "holds a PRIVATE KEY block; expected CA certificates only"),
    ("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----", "is not base64 DER"),
])
def test_a_bundle_that_is_not_ca_certificates_stops_the_plan_with_one_line(bundle, problem):
    with pytest.raises(pulumi.RunError) as caught:
        evaluate_cached("dev", overrides={"storage": {**ON_PREMISES_HTTPS, "caBundle": bundle}}, secrets=KEYS)
    [line] = [line.strip() for line in str(caught.value).splitlines()[1:]]
    assert line.startswith("storage.caBundle: ") and problem in line


def test_a_bundle_for_a_plain_http_store_is_ignored_with_a_warning():
    http = {**ON_PREMISES_HTTPS, "endpoint": "http://10.20.0.5:9000"}
    evaluation = evaluate_cached("dev", overrides={"storage": http}, secrets=KEYS)
    assert any(w.startswith("storage.caBundle: ignored: storage.endpoint") for w in evaluation.warnings)
    assert STORE_CA_DIR not in json.dumps([r.inputs for r in evaluation.resources])
