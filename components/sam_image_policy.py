"""Admission of the SAM pods only with the image the platform's sam-image workflow signed
(sam.verifySignature, off by default): a Kyverno ClusterPolicy for clusters that verify image
signatures at admission.

The workflow signs each build keyless: Fulcio certifies the identity of the workflow run that
asked, from its GitHub OIDC token, and the signature is logged in Rekor. Its cosign is a 3.x
release (sigstore/cosign-installer v4.1.2 installs v3.0.6), which stores the signature as a
Sigstore bundle the image's OCI referrers point at, not as a `sha256-<digest>.sig` tag:
Kyverno reads those with `type: SigstoreBundle` (pkg/image/verifiers/cpol/cosign/sigstore.go
at v1.19.0, since 1.13), checking them against Sigstore's public trust root. The policy admits a
SAM pod only when every image in it carries such a signature by this repository's
.github/workflows/sam-image.yml on main: an image built elsewhere, from another branch, or
pushed by hand under the same name is refused, as is an upstream example's image. Only the SAM
pods are matched (by namespace and labels), so the cluster's other workloads are not touched.
"""

from __future__ import annotations

from typing import Mapping

import pulumi

from components.settings.model import ImageSignatureSettings

KYVERNO_API_VERSION = "kyverno.io/v1"
CLUSTER_POLICY_TYPE = f"kubernetes:{KYVERNO_API_VERSION}:ClusterPolicy"
# Where GitHub Actions' OIDC tokens come from: the issuer Fulcio writes into the certificate.
GITHUB_OIDC_ISSUER = "https://token.actions.githubusercontent.com"
SIGNING_WORKFLOW = ".github/workflows/sam-image.yml"
# The workflow builds and signs main only (its build job's condition).
SIGNING_REF = "refs/heads/main"


def signer_identity(repository: str) -> str:
    """The certificate's subject for a keyless signature by the workflow on main."""
    return f"https://github.com/{repository}/{SIGNING_WORKFLOW}@{SIGNING_REF}"


def policy_name(namespace: pulumi.Input[str]) -> pulumi.Input[str]:
    """Cluster-wide, so named after the stack's namespace: two stacks in one cluster keep theirs apart."""
    def name(ns: str) -> str:
        return f"{ns}-sam-image-signature"
    return name(namespace) if isinstance(namespace, str) else pulumi.Output.from_input(namespace).apply(name)


def image_signature_policy(settings: ImageSignatureSettings, namespace: pulumi.Input[str],
                           pod_labels: Mapping[str, str]) -> dict:
    """The ClusterPolicy over the pods labelled `pod_labels` in `namespace` (Kyverno 1.13 or
    later: the rule's own failureAction)."""
    return {
        "apiVersion": KYVERNO_API_VERSION,
        "kind": "ClusterPolicy",
        "metadata": {"name": policy_name(namespace), "labels": dict(pod_labels)},
        "spec": {
            # Signatures are checked as pods are admitted; existing pods are not re-judged.
            "background": False,
            "rules": [{
                "name": "sam-image-signed-by-its-workflow",
                "match": {"any": [{"resources": {"kinds": ["Pod"], "namespaces": [namespace],
                                                 "selector": {"matchLabels": dict(pod_labels)}}}]},
                "verifyImages": [{
                    "type": "SigstoreBundle",
                    # Every image of a SAM pod: an unsigned one cannot slip in under another name.
                    "imageReferences": ["*"],
                    "failureAction": "Enforce",
                    "attestors": [{"entries": [{"keyless": {
                        "subject": signer_identity(settings.repository), "issuer": GITHUB_OIDC_ISSUER}}]}],
                    # The stack names the image by digest (sam.verifySignature needs one): the
                    # signature is checked for that build, and nothing rewrites the pod.
                    "mutateDigest": False,
                    "verifyDigest": True,
                    "required": True,
                }],
            }],
        },
    }
