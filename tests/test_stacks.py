"""Whole-program properties of each stack, evaluated under mocks."""

from __future__ import annotations

import json

from tests.conftest import evaluate_cached
from tools.stack_eval import PLACEHOLDER_PREFIX, stack_config

COMPONENT_TYPES = {
    "labeling:index:LabelingPlatform", "labeling:storage:ObjectStorage", "labeling:app:LabelStudio",
    "labeling:network:LabelStudioIngress", "labeling:ml:SamBackend", "labeling:ml:SamActiveHours", "labeling:app:LabelingConfiguration",
    "labeling:database:ManagedDatabase", "labeling:database:DatabaseBackup", "labeling:database:PreUpgradeBackup",
    "labeling:monitoring:Alerts",
}

# Every operator-supplied secret the contract has, set at once.
ALL_CONFIGURED_SECRETS = {
    "kubernetes.kubeconfig": "apiVersion: v1\nkind: Config\n# configured-kubeconfig-secret",
    "labelStudio.database.password": "configured-database-password",
    "storage.accessKeyId": "AKIACONFIGUREDKEYID",
    "storage.secretAccessKey": "configured-secret-access-key",
}
EXTERNAL_DB_AND_S3_COMPATIBLE = {
    "labelStudio.database": {"mode": "external", "host": "db.example.com"},
    "storage": {"mode": "s3Compatible", "bucketName": "seed-bucket", "endpoint": "https://s3.example.com",
                "egressCidrs": ["10.20.0.0/16"]},
}


def test_every_resource_belongs_to_a_component(stack_eval):
    by_urn = {r.urn: r for r in stack_eval.resources}
    [root] = [r for r in stack_eval.resources if r.parent not in by_urn]
    assert root.type == "labeling:index:LabelingPlatform"
    for resource in stack_eval.resources:
        if resource is not root:
            assert by_urn[resource.parent].type in COMPONENT_TYPES, resource.name
    assert {r.type for r in stack_eval.resources if not r.custom} <= COMPONENT_TYPES


def test_kubernetes_objects_use_the_stack_provider_and_namespace(stack_eval):
    [provider] = stack_eval.of_type("pulumi:providers:kubernetes")
    namespace = stack_eval.one("kubernetes:core/v1:Namespace").inputs["metadata"]["name"]
    assert provider.inputs["namespace"] == namespace
    for resource in stack_eval.resources:
        if resource.type.startswith("kubernetes:") and resource.custom:
            assert resource.provider.startswith(provider.urn), resource.name
            manifest = resource.kubernetes_manifest
            if manifest and manifest["kind"] != "Namespace":
                assert manifest["metadata"]["namespace"] == namespace, resource.name
            if resource.type == "kubernetes:helm.sh/v3:Release":
                assert resource.inputs["namespace"] == namespace


def test_namespace_survives_destroy_only_in_protected_stacks():
    assert evaluate_cached("prod").one("kubernetes:core/v1:Namespace").protect
    assert evaluate_cached("prod").one("kubernetes:core/v1:Namespace").retain_on_delete
    assert not evaluate_cached("dev").one("kubernetes:core/v1:Namespace").protect


def test_configured_secrets_never_reach_a_resource_or_output_unwrapped():
    evaluation = evaluate_cached("dev", overrides=EXTERNAL_DB_AND_S3_COMPATIBLE, secrets=ALL_CONFIGURED_SECRETS)
    needles = [v.splitlines()[-1] for v in ALL_CONFIGURED_SECRETS.values()]
    reached = set()
    for resource in evaluation.resources:
        plain = json.dumps(resource.masked_inputs())
        everything = json.dumps(resource.inputs)
        for needle in needles:
            assert needle not in plain, f"{resource.type} {resource.name} holds {needle!r} outside a secret"
            if needle in everything:
                reached.add(needle)
    assert reached == set(needles), "each configured secret is used somewhere (as a secret)"
    for name, value in evaluation.outputs.items():
        if name not in evaluation.secret_outputs:
            assert not any(n in json.dumps(value) for n in needles), name


def test_secure_values_in_stack_files_become_secret_placeholders(tmp_path, monkeypatch):
    """The harness treats `secure:` ciphertext as a secret, like the CLI after decryption."""
    import tools.stack_eval as stack_eval_module

    (tmp_path / "Pulumi.yaml").write_text((stack_eval_module.PROJECT_ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "Pulumi.enc.yaml").write_text(
        "config:\n  labeling-platform:kubernetes:\n    kubeconfig:\n      secure: AAABAJx0\n")
    monkeypatch.setattr(stack_eval_module, "PROJECT_ROOT", tmp_path)
    _, config, secret_keys = stack_config("enc")
    assert config["labeling-platform:kubernetes"]["kubeconfig"] == f"{PLACEHOLDER_PREFIX}labeling-platform:kubernetes.kubeconfig"
    assert secret_keys == {"labeling-platform:kubernetes"}


def test_sensitive_outputs_are_secret(stack_eval):
    assert {"adminPassword", "adminApiToken"} <= stack_eval.secret_outputs
    assert {"url", "adminEmail", "bucketName"}.isdisjoint(stack_eval.secret_outputs)
    assert set(stack_eval.outputs) >= {"url", "adminEmail", "adminPassword", "adminApiToken", "bucketName",
                                       "samBackendUrl", "kubectlLogs"}
