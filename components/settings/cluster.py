"""The `kubernetes` section: which cluster the stack deploys into."""

from __future__ import annotations

from typing import Optional

from components.settings.checks import check_dns_label
from components.settings.model import KubernetesSettings
from components.settings.reader import Section

# Namespaces the cluster itself owns: the platform would label them, and a stack without
# `protect` would delete them on `pulumi destroy`.
SYSTEM_NAMESPACE_PREFIX = "kube-"


def check_namespace(text: str) -> Optional[str]:
    problem = check_dns_label(text)
    if problem:
        return problem
    if text == "default" or text.startswith(SYSTEM_NAMESPACE_PREFIX):
        return "is shared by the whole cluster; expected a namespace of the platform's own, e.g. labeling"
    return None


def _check_context(text: str) -> Optional[str]:
    # An empty context silently means "whatever context is current" on the machine running `pulumi up`.
    return None if text else "is empty; expected a context name from the kubeconfig, or no key for its current context"


def read_kubernetes(section: Section, secret_keys: frozenset[str]) -> KubernetesSettings:
    context = section.string("context", "kubeconfig context to deploy into (default: the kubeconfig's current context).",
                             check=_check_context)
    kubeconfig = section.secret(
        "kubeconfig", "Kubeconfig contents for the cluster (default: the ambient KUBECONFIG).",
        secret_keys=secret_keys, top_key="kubernetes",
    )
    section.finish()
    return KubernetesSettings(context, kubeconfig)
