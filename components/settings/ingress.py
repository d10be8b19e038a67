"""The `ingress` section: how people reach Label Studio from outside the cluster."""

from __future__ import annotations

import re
from typing import Optional

from components.settings.checks import check_dns_subdomain, check_hostname
from components.settings.model import IngressSettings, TlsSettings
from components.settings.reader import Section

DEFAULT_MAX_BODY_SIZE = "100m"
_NGINX_SIZE = re.compile(r"^\d+[kKmMgG]?$")


def _check_nginx_size(text: str) -> Optional[str]:
    return None if _NGINX_SIZE.match(text) else "is not an nginx size; expected a number with optional k, m or g, e.g. 100m"


def _check_plain_http(section: Section, production: bool, reason: Optional[str]) -> None:
    """Without TLS, member passwords and the invite link cross the network in the clear: said
    in dev, refused in a protected stack unless a reason says where TLS ends instead."""
    if reason:
        return
    problem = ("serves Label Studio over plain HTTP, so passwords and the invite link travel unencrypted; "
               "expected ingress.tls.clusterIssuer or ingress.tls.secretName, or ingress.plainHttpReason saying "
               "where TLS ends instead (e.g. at a load balancer)")
    if production:
        section.error("tls", f"is not set: the Ingress {problem}")
    else:
        section.problems.warnings.append(f"{section.key('tls')}: not set: the Ingress {problem}")


def read_ingress(section: Section, production: bool) -> IngressSettings:
    enabled = section.boolean("enabled", "Expose Label Studio through an Ingress.", False)
    host = section.string("host", "Public host name of Label Studio.", check=check_hostname, kind="DNS name")
    class_name = section.string("className", "IngressClass to use.", "nginx", check=check_dns_subdomain,
                                kind="object name")
    tls_section = section.section("tls", "TLS: set exactly one of clusterIssuer or secretName.")
    issuer = tls_section.string("clusterIssuer", "cert-manager ClusterIssuer that issues the certificate.",
                                check=check_dns_subdomain, kind="object name")
    secret_name = tls_section.string("secretName", "Existing TLS Secret in the platform namespace.",
                                     check=check_dns_subdomain, kind="object name")
    tls_section.finish()
    max_body = section.string("maxBodySize", "Largest upload through ingress-nginx (proxy-body-size; 0: no limit).",
                              DEFAULT_MAX_BODY_SIZE, check=_check_nginx_size, kind="nginx size")
    plain_http_reason = section.string("plainHttpReason", "Why the Ingress has no TLS, e.g. TLS ends at a load "
                                       "balancer in front of it; without it no TLS is a warning, and an error in a "
                                       "protected stack.")
    section.finish()
    if not enabled:
        # Switching the ingress off is one key: whatever else is set waits for it to come back.
        section.inapplicable(("host", "className", "tls", "maxBodySize", "plainHttpReason"),
                             "while ingress.enabled is false")
        return IngressSettings(False, None, class_name or "nginx", None, max_body or DEFAULT_MAX_BODY_SIZE)
    tls = None
    if issuer and secret_name:
        section.problems.error(tls_section.path, "sets both clusterIssuer and secretName; expected exactly one")
    elif issuer or secret_name:
        tls = TlsSettings(issuer, secret_name)
        section.inapplicable(("plainHttpReason",), "while ingress.tls is set")
    else:
        _check_plain_http(section, production, plain_http_reason)
    if not host and not section.has("host"):
        section.error("host", "is required when the ingress is enabled; expected a DNS name")
    return IngressSettings(enabled, host, class_name or "nginx", tls, max_body or DEFAULT_MAX_BODY_SIZE)
