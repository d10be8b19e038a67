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


def read_ingress(section: Section) -> IngressSettings:
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
    section.finish()
    if not enabled:
        # Switching the ingress off is one key: whatever else is set waits for it to come back.
        section.inapplicable(("host", "className", "tls", "maxBodySize"), "while ingress.enabled is false")
        return IngressSettings(False, None, class_name or "nginx", None, max_body or DEFAULT_MAX_BODY_SIZE)
    tls = None
    if issuer and secret_name:
        section.problems.error(tls_section.path, "sets both clusterIssuer and secretName; expected exactly one")
    elif issuer or secret_name:
        tls = TlsSettings(issuer, secret_name)
    if not host and not section.has("host"):
        section.error("host", "is required when the ingress is enabled; expected a DNS name")
    return IngressSettings(enabled, host, class_name or "nginx", tls, max_body or DEFAULT_MAX_BODY_SIZE)
