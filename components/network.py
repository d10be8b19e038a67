"""NetworkPolicies of the platform's pods: who may call them, and where they may connect.

Every pod the stack runs gets an egress policy: DNS, and then only the peers it needs (the
database, the object store, Label Studio, SAM, the Kubernetes API). NetworkPolicies name
pods and addresses, never hosts, so a peer outside the cluster is a network: AWS S3 and STS
mean port 443 anywhere on the internet (every address but the private ranges and the
link-local one, where the cloud metadata service 169.254.169.254 hands out node
credentials). No rule built here ever admits the metadata address; the link-local
addresses a cluster may need (NodeLocal DNSCache, the EKS Pod Identity agent) are admitted
one by one, only when configured. Enforcement needs a CNI that implements NetworkPolicy.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Mapping, Optional, Sequence
from urllib.parse import urlsplit

import pulumi

from components.settings import NetworkSettings
from components.settings.network import EKS_POD_IDENTITY_ADDRESS

DNS_PORT = 53
KUBERNETES_API_PORTS = (443, 6443)
HTTPS_PORT = 443
# EKS Pod Identity's agent listens on port 80.
POD_IDENTITY_PORT = 80
ANYWHERE = "0.0.0.0/0"
LINK_LOCAL = "169.254.0.0/16"
# Private and shared address space: inside the VPC or the cluster, never the internet.
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
# Names that only resolve inside the cluster.
IN_CLUSTER_SUFFIXES = (".svc", ".svc.cluster.local", ".cluster.local")
# The label Kubernetes puts on every namespace: its name.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

Rule = dict
# Who a rule admits or reaches: a `from` or `to` entry.
Peer = dict


def _ports(ports: Iterable[int], protocols: Sequence[str] = ("TCP",)) -> list[dict]:
    return [{"protocol": protocol, "port": port} for port in ports for protocol in protocols]


def to_pods(pod_labels: Mapping[str, str], ports: Iterable[int], namespace_labels: Optional[Mapping[str, str]] = None,
            ) -> Rule:
    """Pods with these labels: in the policy's own namespace, or in the namespaces labelled so
    (an empty mapping: every namespace)."""
    peer: dict = {"podSelector": {"matchLabels": dict(pod_labels)}}
    if namespace_labels is not None:
        peer["namespaceSelector"] = {"matchLabels": dict(namespace_labels)}
    return {"to": [peer], "ports": _ports(ports)}


def pods_in(namespace: str, pod_labels: Mapping[str, str]) -> Peer:
    """Pods with these labels in the named namespace, and no other pod."""
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}},
            "podSelector": {"matchLabels": dict(pod_labels)}}


def to_any_pod(ports: Iterable[int]) -> Rule:
    """Any pod of the cluster (never an address outside it) on these ports."""
    return {"to": [{"namespaceSelector": {}}], "ports": _ports(ports)}


def _block(cidr: str) -> dict:
    """An ipBlock; one that contains link-local addresses leaves them out."""
    network = ipaddress.ip_network(cidr, strict=False)
    link_local = ipaddress.ip_network(LINK_LOCAL)
    block: dict = {"cidr": str(network)}
    if network.version == 4 and network.supernet_of(link_local):
        block["except"] = [LINK_LOCAL]
    return {"ipBlock": block}


def to_networks(cidrs: Iterable[str], ports: Iterable[int] = ()) -> Rule:
    """These networks (without their link-local part) on these ports (none: every port)."""
    rule: Rule = {"to": [_block(cidr) for cidr in cidrs]}
    ports = list(ports)
    if ports:
        rule["ports"] = _ports(ports)
    return rule


def to_internet(ports: Iterable[int]) -> Rule:
    """Public addresses only: what a host name outside the cluster and the VPC can be."""
    return {"to": [{"ipBlock": {"cidr": ANYWHERE, "except": [*PRIVATE_RANGES, LINK_LOCAL]}}], "ports": _ports(ports)}


def dns(network: NetworkSettings) -> list[Rule]:
    """The cluster's DNS pods, and NodeLocal DNSCache when configured."""
    rules = [{"to": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: network.dns_namespace}}}],
              "ports": _ports([DNS_PORT], ("UDP", "TCP"))}]
    if network.node_local_dns:
        rules.append({"to": [{"ipBlock": {"cidr": f"{network.node_local_dns}/32"}}],
                      "ports": _ports([DNS_PORT], ("UDP", "TCP"))})
    return rules


def pod_identity(network: NetworkSettings) -> list[Rule]:
    if not network.eks_pod_identity:
        return []
    return [to_networks([EKS_POD_IDENTITY_ADDRESS], [POD_IDENTITY_PORT])]


def kubernetes_api(network: NetworkSettings) -> Rule:
    return to_networks(network.api_server_cidrs or (ANYWHERE,), KUBERNETES_API_PORTS)


def endpoint_egress(endpoint: Optional[str], cidrs: Sequence[str] = ()) -> Rule:
    """Where an HTTP(S) endpoint may be, from its URL's form (never a DNS lookup): AWS's public
    endpoints for none; the configured networks; the address itself; any pod of the cluster
    for a Service name; the private ranges for another private name; else the internet."""
    if not endpoint:
        return to_internet([HTTPS_PORT])
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    if cidrs:
        return to_networks(cidrs, [port])
    try:
        return to_networks([str(ipaddress.ip_address(host))], [port])
    except ValueError:
        pass
    if host.endswith(IN_CLUSTER_SUFFIXES) or "." not in host:
        return to_any_pod([port])
    if host.endswith((".local", ".internal")):
        return to_networks(PRIVATE_RANGES, [port])
    return to_internet([port])


def network_policy(name: str, namespace: pulumi.Input[str], pod_labels: Mapping[str, str], *,
                   egress: Sequence[Rule], ingress: Optional[Sequence[Rule]] = None,
                   labels: Optional[Mapping[str, str]] = None) -> dict:
    """Egress limited to `egress`; ingress limited to `ingress` when given ([] denies all)."""
    spec: dict = {"podSelector": {"matchLabels": dict(pod_labels)}, "policyTypes": ["Egress"], "egress": list(egress)}
    if ingress is not None:
        spec["policyTypes"] = ["Ingress", "Egress"]
        spec["ingress"] = list(ingress)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or pod_labels)},
        "spec": spec,
    }
