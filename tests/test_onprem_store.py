"""An S3-compatible store in the operator's own network: where the pods may connect to it,
and the private CA its certificate chains to."""

from __future__ import annotations

import pulumi
import pytest

from components.network import PRIVATE_RANGES, endpoint_egress
from components.settings.storage import may_resolve_private
from tests.conftest import evaluate_cached

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
