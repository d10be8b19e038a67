"""sam.verifySignature: a Kyverno ClusterPolicy admitting the SAM pods only with the image the
sam-image workflow signed on main (keyless, GitHub's OIDC issuer), off by default, valid against
Kyverno's types (tools/custom_resources.py), and refused where it could only block the pods."""

from __future__ import annotations

import pytest
import yaml

from components import PROJECT_ROOT
from components.sam_backend import SAM_LABELS
from components.sam_image_policy import (
    CLUSTER_POLICY_TYPE, GITHUB_OIDC_ISSUER, SIGNING_REF, SIGNING_WORKFLOW, signer_identity,
)
from components.settings import ConfigError
from tests.conftest import evaluate_cached, stack_settings
from tests.variants import SIGNED_SAM_SERVER, SIGNING_REPOSITORY, UPSTREAM_SAM_ON_GPU, VARIANTS
from tools.object_validation import object_problem

WORKFLOW = PROJECT_ROOT / SIGNING_WORKFLOW


def signed() -> dict:
    evaluation = evaluate_cached(*VARIANTS["sam-signed-image"])
    [policy] = evaluation.of_type(CLUSTER_POLICY_TYPE)
    return policy.inputs


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_off_by_default(stack):
    assert evaluate_cached(stack).of_type(CLUSTER_POLICY_TYPE) == []
    assert stack_settings(stack).sam.image_signature is None


def test_the_policy_is_a_valid_kyverno_cluster_policy_over_the_sam_pods_alone():
    policy = signed()
    assert object_problem(policy) is None
    [rule] = policy["spec"]["rules"]
    [match] = rule["match"]["any"]
    namespace = stack_settings("prod").namespace
    assert match["resources"] == {"kinds": ["Pod"], "namespaces": [namespace], "selector": {"matchLabels": SAM_LABELS}}
    assert policy["metadata"]["name"] == f"{namespace}-sam-image-signature" and "namespace" not in policy["metadata"]


def test_every_image_of_a_sam_pod_needs_the_workflows_keyless_signature_on_main():
    [rule] = signed()["spec"]["rules"]
    [verify] = rule["verifyImages"]
    assert verify["imageReferences"] == ["*"] and verify["failureAction"] == "Enforce" and verify["required"]
    # cosign 3 (the workflow's) attaches a Sigstore bundle through the OCI referrers, not a .sig tag.
    assert verify["type"] == "SigstoreBundle"
    [attestor] = verify["attestors"]
    [entry] = attestor["entries"]
    assert entry["keyless"]["subject"] == (
        f"https://github.com/{SIGNING_REPOSITORY}/.github/workflows/sam-image.yml@refs/heads/main")
    assert entry["keyless"]["issuer"] == GITHUB_OIDC_ISSUER == "https://token.actions.githubusercontent.com"


def test_the_identity_is_the_one_the_workflow_signs_with():
    """The signing workflow exists at that path, builds only on main, and tells reviewers the same identity."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["jobs"]["build"]["if"] == f"github.ref == '{SIGNING_REF}'"
    assert "cosign sign" in WORKFLOW.read_text() and f"/{SIGNING_WORKFLOW}@${{{{ github.ref }}}}" in WORKFLOW.read_text()
    assert signer_identity("o/r").endswith(f"/{SIGNING_WORKFLOW}@{SIGNING_REF}")


@pytest.mark.parametrize(("changes", "key", "words"), [
    ({"sam.verifySignature": {"enabled": True}}, "sam.verifySignature.repository", "is required when"),
    ({"sam.verifySignature": {"enabled": True, "repository": "not a repository"}}, "sam.verifySignature.repository",
     "is not a GitHub repository; expected owner/name"),
    ({**UPSTREAM_SAM_ON_GPU, "sam.verifySignature": SIGNED_SAM_SERVER["sam.verifySignature"]},
     "sam.verifySignature.enabled", "runs an upstream example's image; expected a sam2.1-* model or false"),
    ({"sam.image": "ghcr.io/example-org/labeling-platform/sam-server:1.0.0",
      "sam.verifySignature": SIGNED_SAM_SERVER["sam.verifySignature"]},
     "sam.verifySignature.enabled", "needs sam.image by digest"),
])
def test_a_policy_that_could_only_block_the_pods_is_one_line_naming_the_key(changes, key, words):
    with pytest.raises(ConfigError) as refused:
        stack_settings("prod", changes)
    [problem] = [p for p in refused.value.problems if p.startswith(f"{key}: ")]
    assert words in problem and "\n" not in problem


def test_a_repository_without_the_switch_is_named_as_ignored():
    settings = stack_settings("prod", {"sam.verifySignature": {"repository": SIGNING_REPOSITORY}})
    assert "sam.verifySignature.repository: ignored while sam.verifySignature.enabled is false" in settings.warnings
