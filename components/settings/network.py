"""The `network` section: what the pods' egress NetworkPolicies may reach beyond the
platform's own peers (Label Studio, SAM, the database, the object store)."""

from __future__ import annotations

import ipaddress
from typing import Optional

from components.settings.checks import check_dns_label
from components.settings.model import NetworkSettings
from components.settings.reader import Section

# NodeLocal DNSCache's usual address; EKS Pod Identity's agent. Both are link-local, next to
# the metadata service: admitted only when a key says the cluster runs them.
EKS_POD_IDENTITY_ADDRESS = "169.254.170.23"
METADATA_ADDRESS = "169.254.169.254"


def _check_node_local_dns(text: str) -> Optional[str]:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return "is not an IP address; expected NodeLocal DNSCache's, e.g. 169.254.20.10"
    if str(address) == METADATA_ADDRESS:
        return "is the cloud metadata service; expected NodeLocal DNSCache's address, e.g. 169.254.20.10"
    return None


def read_network(section: Section) -> NetworkSettings:
    dns_namespace = section.string("dnsNamespace", "Namespace of the cluster's DNS pods (egress on port 53).",
                                   "kube-system", check=check_dns_label, kind="DNS label")
    node_local_dns = section.string("nodeLocalDns", "Address of NodeLocal DNSCache, when the cluster runs it.",
                                    check=_check_node_local_dns, kind="IP address")
    eks_pod_identity = section.boolean(
        "eksPodIdentity", f"Let pods reach the EKS Pod Identity agent ({EKS_POD_IDENTITY_ADDRESS}).", False)
    api_server = section.cidrs("apiServerCidrs", "Where the Kubernetes API is, for the reconciler Job (default: any "
                                                 "address, on ports 443 and 6443).")
    member_egress = section.cidrs(
        "memberEgressCidrs", "Networks Label Studio may reach for storages, webhooks and ML backends that members add "
                             "themselves (default: none, only the platform's own store and SAM).")
    section.finish()
    return NetworkSettings(dns_namespace or "kube-system", node_local_dns, bool(eks_pod_identity), api_server,
                           member_egress)
