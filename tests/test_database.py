"""The database tiers: RDS (prod), backups of the in-cluster database, highly available app."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest

from components import backup, database, restore
from components.settings import ConfigError, parse_settings
from tests.conftest import PROJECT_ROOT, evaluate_cached
from tests.test_settings import apply_changes, stack_values
from tests.variants import VARIANTS

INSTANCE = "aws:rds/instance:Instance"
RELEASE = "kubernetes:helm.sh/v3:Release"
CRONJOB = "kubernetes:batch/v1:CronJob"
BACKUP = "labeling-backup-cronjob"
RDS_FOR_DEV = VARIANTS["rds"].overrides


@pytest.fixture(scope="module")
def prod():
    return evaluate_cached("prod")


def test_prod_runs_on_an_encrypted_private_multi_az_instance(prod):
    instance = prod.one(INSTANCE)
    inputs = instance.inputs
    assert inputs["engine"] == "postgres" and int(inputs["engineVersion"].split(".")[0]) >= 14
    assert inputs["storageEncrypted"] is True
    assert inputs["publiclyAccessible"] is False
    assert inputs["multiAz"] is True
    assert inputs["backupRetentionPeriod"] == 14
    assert inputs["allowMajorVersionUpgrade"] is False
    assert "password" in instance.secret_paths


def test_prod_instance_survives_a_mistaken_destroy(prod):
    instance = prod.one(INSTANCE)
    assert instance.protect and instance.retain_on_delete
    assert instance.inputs["deletionProtection"] is True
    assert instance.inputs["skipFinalSnapshot"] is False
    assert instance.inputs["finalSnapshotIdentifier"] == "labeling-platform-prod-final"
    assert instance.inputs["deleteAutomatedBackups"] is False
    assert prod.one("random:index/randomPassword:RandomPassword", "labeling-database-master-password").protect


def test_a_dev_instance_is_disposable():
    instance = evaluate_cached("dev", overrides=RDS_FOR_DEV).one(INSTANCE)
    assert not instance.protect and instance.inputs["deletionProtection"] is False
    assert instance.inputs["skipFinalSnapshot"] is True
    assert instance.inputs["backupRetentionPeriod"] == 3


def test_connections_must_use_tls(prod):
    group = prod.one("aws:rds/parameterGroup:ParameterGroup")
    assert {"name": "rds.force_ssl", "value": "1"} in group.inputs["parameters"]
    assert group.inputs["family"] == database.parameter_group_family(prod.one(INSTANCE).inputs["engineVersion"])
    assert prod.one(RELEASE).inputs["values"]["global"]["pgConfig"]["ssl"] == {"pgSslMode": "require"}


def test_only_the_cluster_reaches_port_5432(prod):
    rules = prod.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert [(r.inputs["fromPort"], r.inputs["toPort"], r.inputs.get("referencedSecurityGroupId")) for r in rules] == [
        (5432, 5432, "sg-0a1b2c3d4e5f60744")]
    assert prod.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule") == []
    cidr_rules = evaluate_cached("dev", overrides=RDS_FOR_DEV).of_type(
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert [r.inputs["cidrIpv4"] for r in cidr_rules] == ["10.20.0.0/16"]


def test_chart_reads_the_rds_password_only_through_the_secret(prod):
    values = prod.one(RELEASE).inputs["values"]
    pg_config = values["global"]["pgConfig"]
    secret = prod.one("kubernetes:core/v1:Secret", "labeling-label-studio-platform-secrets")
    assert values["postgresql"] == {"enabled": False}
    assert pg_config["host"].endswith(".rds.amazonaws.com")
    assert pg_config["password"] == {"secretName": secret.inputs["metadata"]["name"], "secretKey": "database-password"}
    assert secret.inputs["stringData"]["database-password"] == "mock-generated-labeling-database-master-password-value"
    assert "mock-generated-labeling-database-master-password-value" not in json.dumps(prod.one(RELEASE).masked_inputs())
    assert prod.outputs["databaseHost"] == pg_config["host"]
    assert (prod.outputs["databasePort"], prod.outputs["databaseName"]) == (5432, "labelstudio")
    assert "databaseHost" not in prod.secret_outputs


def test_prod_app_is_highly_available(prod):
    app = prod.one(RELEASE).inputs["values"]["app"]
    assert app["replicas"] >= 2
    assert app["pdb"] == {"create": True, "minAvailable": "1"}
    spread = {c["topologyKey"]: c for c in app["topologySpreadConstraints"]}
    assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert spread["kubernetes.io/hostname"]["labelSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "ls-app", "app.kubernetes.io/instance": "label-studio"}}
    assert "pdb" not in evaluate_cached("dev").one(RELEASE).inputs["values"]["app"]


def test_several_replicas_on_the_in_cluster_database_warn():
    evaluation = evaluate_cached("dev", overrides={"labelStudio.replicas": 2})
    assert any("single point of failure" in w for w in evaluation.warnings)
    assert not any("single point of failure" in w for w in evaluate_cached("prod").warnings)


@pytest.mark.parametrize("changes,key", [
    ({"labelStudio.database.mode": "rds"}, "labelStudio.database.rds.vpcId"),
    ({"labelStudio.database.rds.backupRetentionDays": 3}, "labelStudio.database.rds.backupRetentionDays"),
    ({"labelStudio.database.rds.engineVersion": "13"}, "labelStudio.database.rds.engineVersion"),
    ({"labelStudio.database.rds.allowedCidrs": ["0.0.0.0/0"]}, "labelStudio.database.rds.allowedCidrs[0]"),
    ({"labelStudio.database.rds.subnetIds": ["subnet-0a1b2c3d"]}, "labelStudio.database.rds.subnetIds"),
    # Checked even where it does not apply: a typo waits to break the switch back.
    ({"labelStudio.database.backup": {"schedule": "daily"}}, "labelStudio.database.backup.schedule"),
])
def test_rds_mistakes_are_config_errors(changes, key):
    stack = "dev" if changes.get("labelStudio.database.mode") == "rds" else "prod"
    with pytest.raises(ConfigError) as caught:
        parse_settings(apply_changes(stack_values(stack), changes), stack=stack)
    assert any(p.startswith(f"{key}: ") for p in caught.value.problems), caught.value.problems


def test_in_cluster_database_is_dumped_nightly_to_the_bucket():
    dev = evaluate_cached("dev")
    cronjob = dev.one(CRONJOB, BACKUP)
    manifest = cronjob.kubernetes_manifest
    kubernetes_validate.validate(manifest, "1.33", strict=True)
    spec = manifest["spec"]
    assert spec["schedule"] == "17 3 * * *" and spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    [dump] = pod["initContainers"]
    [upload] = pod["containers"]
    dump_env = {e["name"]: e for e in dump["env"]}
    assert dump_env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "label-studio-platform-secrets", "key": "database-password"}
    assert dump_env["PGHOST"]["value"] == "label-studio-postgresql.labeling-dev.svc.cluster.local"
    upload_env = {e["name"]: e for e in upload["env"]}
    assert upload_env["BUCKET"]["value"] == dev.outputs["bucketName"]
    assert upload_env["BACKUP_PREFIX"]["value"] == "label-studio/backups"
    assert upload_env["RETENTION_DAYS"]["value"] == "14"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert upload_env[key]["valueFrom"]["secretKeyRef"] == {"name": "object-storage-credentials", "key": key}
    assert all("value" not in e or not e["name"].startswith(("PGPASS", "AWS_SECRET")) for e in dump["env"] + upload["env"])
    for container in (dump, upload):
        assert ":" in container["image"] and not container["image"].endswith(":latest")
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_backup_follows_config_and_only_exists_for_the_in_cluster_database():
    custom = evaluate_cached("dev", overrides={"labelStudio.database.backup": {"schedule": "0 1 * * *", "retentionDays": 30}})
    spec = custom.one(CRONJOB, BACKUP).inputs["spec"]
    assert spec["schedule"] == "0 1 * * *"
    env = {e["name"]: e.get("value") for e in spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RETENTION_DAYS"] == "30"
    def backups(evaluation):
        return [r for r in evaluation.of_type(CRONJOB) if r.name == BACKUP]
    assert backups(evaluate_cached("prod")) == []
    assert backups(evaluate_cached("dev", overrides={"labelStudio.database.backup.enabled": False})) == []


def test_backup_runs_as_label_studio_service_account_with_irsa():
    oidc = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-central-1.amazonaws.com/id/ABC"
    pod = evaluate_cached("dev", overrides={"storage.oidcProviderArn": oidc}).one(CRONJOB, BACKUP).inputs[
        "spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "label-studio-ls-app"
    assert not any(e["name"].startswith("AWS_ACCESS") for e in pod["containers"][0]["env"])


def test_restore_creates_the_instance_from_a_snapshot():
    restored = evaluate_cached("dev", overrides={
        **RDS_FOR_DEV, "labelStudio.database.rds.snapshotIdentifier": "labeling-platform-prod-final"})
    assert restored.one(INSTANCE).inputs["snapshotIdentifier"] == "labeling-platform-prod-final"
    assert "snapshotIdentifier" not in evaluate_cached("prod").one(INSTANCE).inputs


def test_the_documented_restore_is_the_tested_one():
    """The docs restore with the Job tools/restore_job.py writes, whose script runs RESTORE_COMMAND
    (tests/test_restore_live.py runs it; tests/test_backup_live.py the command alone)."""
    text = (PROJECT_ROOT / "docs" / "database.md").read_text()
    assert "python -m tools.restore_job dev > restore.yaml" in text
    assert " ".join(backup.RESTORE_COMMAND) in restore.RESTORE_SCRIPT
