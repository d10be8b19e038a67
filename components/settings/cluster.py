"""The `kubernetes` section: which cluster the stack deploys into."""

from __future__ import annotations

from components.settings.model import KubernetesSettings
from components.settings.reader import Section


def read_kubernetes(section: Section, secret_keys: frozenset[str]) -> KubernetesSettings:
    context = section.string("context", "kubeconfig context to deploy into (default: the kubeconfig's current context).")
    kubeconfig = section.secret(
        "kubeconfig", "Kubeconfig contents for the cluster (default: the ambient KUBECONFIG).",
        secret_keys=secret_keys, top_key="kubernetes",
    )
    section.finish()
    return KubernetesSettings(context, kubeconfig)
