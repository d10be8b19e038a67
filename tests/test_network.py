"""The network edges: where each pod may connect (components/network.py and the policies the
components declare), how storage.presign is decided, and what the reconciler's storages
carry. The rendered side (SSRF on in the chart's Deployment, every pod fenced) is in
tests/test_chart_wiring.py; Label Studio's own verdicts in tests/test_reconciler_live.py."""

from __future__ import annotations

import ipaddress
import json

import pytest

from components.network import LINK_LOCAL, PRIVATE_RANGES, endpoint_egress, to_internet, to_networks
from components.sam_backend import SAM_LABELS, SAM_PORT
from reconciler.contract import DesiredState, RunEnvironment, StorageSpec
from reconciler.storages import _storage_payload
from tests.conftest import evaluate_cached, stack_settings
from tests.variants import S3_COMPATIBLE, STORAGE_KEYS, VARIANTS
from tools.stack_eval import Evaluation

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def settings_for(changes: dict):
    """dev's settings with `changes`, and the store's keys when they make it S3-compatible."""
    return stack_settings("dev", changes, STORAGE_KEYS if "storage" in changes else None)


def evaluation(variant: str, **network) -> Evaluation:
    stack, overrides, secrets = VARIANTS[variant]
    if network:
        overrides = {**(overrides or {}), "network": network}
    return evaluate_cached(stack, overrides, secrets)


def policy(ev: Evaluation, name: str) -> dict:
    [found] = [r.inputs for r in ev.of_type(NETWORK_POLICY) if r.inputs["metadata"]["name"] == name]
    return found["spec"]


def blocks(rule: dict) -> list[dict]:
    return [peer["ipBlock"] for peer in rule.get("to", []) if "ipBlock" in peer]


# --------------------------------------------------------------------------- rules from a URL's form


@pytest.mark.parametrize("endpoint, cidrs, port, peer", [
    (None, (), 443, "internet"),
    ("https://s3.eu-central-1.amazonaws.com", (), 443, "internet"),
    ("https://objects.example.com:8443", (), 8443, "internet"),
    ("http://minio.storage.svc:9000", (), 9000, "any pod"),
    ("http://minio:9000", (), 9000, "any pod"),
    ("http://10.1.2.3:9000", (), 9000, "10.1.2.3/32"),
    ("http://store.internal:9000", (), 9000, "private"),
    ("https://s3.example.com", ("203.0.113.0/24",), 443, "203.0.113.0/24"),
])
def test_the_store_rule_follows_the_endpoints_form(endpoint, cidrs, port, peer):
    rule = endpoint_egress(endpoint, cidrs)
    assert rule["ports"] == [{"protocol": "TCP", "port": port}]
    if peer == "internet":
        assert rule == to_internet([port])
    elif peer == "any pod":
        assert rule["to"] == [{"namespaceSelector": {}}]
    elif peer == "private":
        assert [b["cidr"] for b in blocks(rule)] == list(PRIVATE_RANGES)
    else:
        assert [b["cidr"] for b in blocks(rule)] == [peer]


def test_the_internet_is_public_addresses_only():
    [block] = blocks(to_internet([443]))
    assert block["cidr"] == "0.0.0.0/0" and set(block["except"]) == {*PRIVATE_RANGES, LINK_LOCAL}


def test_a_network_holding_the_link_local_range_leaves_it_out():
    assert blocks(to_networks(["0.0.0.0/0"])) == [{"cidr": "0.0.0.0/0", "except": [LINK_LOCAL]}]
    assert blocks(to_networks(["10.0.0.0/8"])) == [{"cidr": "10.0.0.0/8"}]
    assert "ports" not in to_networks(["10.0.0.0/8"])


# --------------------------------------------------------------------------- storage.presign


@pytest.mark.parametrize("storage, presign", [
    (None, True),  # dev: AWS S3
    (S3_COMPATIBLE, False),  # minio.storage.svc
    ({**S3_COMPATIBLE, "endpoint": "http://10.0.0.5:9000"}, False),
    ({**S3_COMPATIBLE, "endpoint": "https://objects.example.com", "egressCidrs": ["203.0.113.0/24"]}, True),
    ({**S3_COMPATIBLE, "presign": True}, True),
])
def test_presign_defaults_to_the_proxy_only_where_browsers_cannot_reach_the_store(storage, presign):
    assert settings_for({"storage": storage} if storage else {}).storage.presign is presign


def test_presign_can_be_turned_off_on_aws():
    assert settings_for({"storage.presign": False}).storage.presign is False


def test_allow_private_endpoint_is_ignored_with_a_warning():
    settings = settings_for({"storage": {**S3_COMPATIBLE, "allowPrivateEndpoint": True}})
    assert [w for w in settings.warnings if w.startswith("storage.allowPrivateEndpoint: deprecated and ignored")]


# --------------------------------------------------------------------------- the managed storages


def test_the_stack_hands_the_endpoint_to_label_studio_not_to_the_storages():
    state = json.loads(evaluation("s3-compatible").one("kubernetes:core/v1:ConfigMap").inputs["data"]["desired.json"])
    assert state["storage"]["endpointFromLabelStudio"] is True and state["storage"]["presign"] is False
    aws = json.loads(evaluation("dev").one("kubernetes:core/v1:ConfigMap").inputs["data"]["desired.json"])
    assert aws["storage"]["endpointFromLabelStudio"] is False and aws["storage"]["presign"] is True


@pytest.mark.parametrize("from_label_studio, sent", [(True, ""), (False, "http://minio.storage.svc:9000")])
def test_a_managed_storage_carries_an_endpoint_only_when_label_studio_has_none(from_label_studio, sent):
    storage = StorageSpec("b", "us-east-1", "http://minio.storage.svc:9000", False,
                          endpoint_from_label_studio=from_label_studio)
    state = DesiredState(storage=storage, export_prefix="label-studio/exports", sam_url=None, projects=(), members=())
    payload = _storage_payload(state, RunEnvironment(), "T", "images")
    assert payload["s3_endpoint"] == sent


# --------------------------------------------------------------------------- the declared policies


def test_the_app_reaches_sam_only_when_there_is_one():
    to_sam = {"to": [{"podSelector": {"matchLabels": SAM_LABELS}}], "ports": [{"protocol": "TCP", "port": SAM_PORT}]}
    assert to_sam in policy(evaluation("dev"), "label-studio-ls-app-egress")["egress"]
    assert to_sam not in policy(evaluation("no-sam"), "label-studio-ls-app-egress")["egress"]


def test_rds_means_its_subnets_on_5432():
    egress = policy(evaluation("rds"), "label-studio-ls-app-egress")["egress"]
    database = [rule for rule in egress if rule.get("ports") == [{"protocol": "TCP", "port": 5432}]]
    assert len(database) == 1
    cidrs = [b["cidr"] for b in blocks(database[0])]
    assert len(cidrs) == 2 and all(ipaddress.ip_network(c).is_private for c in cidrs)


def test_link_local_helpers_are_admitted_one_address_at_a_time_and_only_when_configured():
    plain = policy(evaluation("dev"), "label-studio-ls-app-egress")["egress"]
    assert not any(ipaddress.ip_network(b["cidr"]).is_link_local for rule in plain for b in blocks(rule))
    configured = evaluation("dev", nodeLocalDns="169.254.20.10", eksPodIdentity=True)
    for name in ("label-studio-ls-app-egress", "labeling-reconciler"):
        egress = policy(configured, name)["egress"]
        link_local = {b["cidr"] for rule in egress for b in blocks(rule) if ipaddress.ip_network(b["cidr"]).is_link_local}
        assert link_local == {"169.254.20.10/32", "169.254.170.23/32"}, name


def test_members_reach_exactly_the_networks_listed():
    egress = policy(evaluation("dev", memberEgressCidrs=["203.0.113.0/24"]), "label-studio-ls-app-egress")["egress"]
    assert {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]} in egress


def test_the_reconciler_reaches_the_api_server_where_it_is_said_to_be():
    egress = policy(evaluation("dev", apiServerCidrs=["172.20.0.1/32"]), "labeling-reconciler")["egress"]
    assert {"to": [{"ipBlock": {"cidr": "172.20.0.1/32"}}],
            "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]} in egress


def test_the_chart_s_postgresql_pods_reach_dns_and_nothing_else():
    """Only egress is fenced: who may connect to the database is the chart's ingress policy."""
    fence = policy(evaluation("dev"), "label-studio-postgresql-egress")
    assert fence["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "postgresql",
                                                    "app.kubernetes.io/instance": "label-studio"}}
    assert fence["policyTypes"] == ["Egress"]
    assert fence["egress"] == [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]


@pytest.mark.parametrize("variant", ["rds", "external-db"])
def test_a_database_outside_the_chart_has_no_postgresql_fence(variant):
    names = {r.inputs["metadata"]["name"] for r in evaluation(variant).of_type(NETWORK_POLICY)}
    assert "label-studio-ls-app-egress" in names and "label-studio-postgresql-egress" not in names


def test_the_subchart_s_own_policy_no_longer_opens_every_egress():
    """Policies add up: the bitnami subchart's default NetworkPolicy admits all egress unless told not to."""
    release = evaluation("dev").one("kubernetes:helm.sh/v3:Release")
    assert release.inputs["values"]["postgresql"]["primary"]["networkPolicy"] == {"allowExternalEgress": False}
