"""The backup before a version change, as the program declares it (components/upgrade_backup.py):
a Job (in-cluster PostgreSQL) or an RDS snapshot the Helm release depends on, named by the
version pair. The Job's scripts run for real in tests/test_backup_live.py and
tests/test_upgrade_live.py."""

from __future__ import annotations

import json
import subprocess

import kubernetes_validate
import pulumi
import pytest
import yaml

from components import PROJECT_ROOT, backup, restore, upgrade_backup
from components.settings.label_studio import DEFAULT_LABEL_STUDIO_IMAGE_TAG
from tests.conftest import evaluate_cached, stack_settings
from tests.variants import VARIANTS
from components.label_studio import DEPLOYED_RELEASE_OUTPUT
from tools.stack_eval import NEVER_DEPLOYED, PROJECT_DIRS, Evaluation, evaluate

JOB = "kubernetes:batch/v1:Job"
RELEASE = "kubernetes:helm.sh/v3:Release"
SNAPSHOT = "aws:rds/snapshot:Snapshot"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
COMPONENT = "labeling:database:PreUpgradeBackup"
NEXT_IMAGE = {"labelStudio.imageTag": "1.24.0"}
# Dev on the tested release, whatever dev's file pins (dev moves first in a staged upgrade).
TESTED_IMAGE = {"labelStudio.imageTag": DEFAULT_LABEL_STUDIO_IMAGE_TAG}


def backup_jobs(evaluation: Evaluation) -> list:
    return [r for r in evaluation.of_type(JOB) if r.inputs["metadata"]["name"].startswith("pre-upgrade-backup-")]


def variant(name: str, **changes) -> Evaluation:
    stack, overrides, secrets = VARIANTS[name]
    return evaluate_cached(stack, {**(overrides or {}), **changes} or None, secrets)


def test_a_changed_image_tag_backs_up_before_the_release_changes():
    before, after = evaluate_cached("dev", TESTED_IMAGE), evaluate_cached("dev", NEXT_IMAGE)
    [old_job], [job] = backup_jobs(before), backup_jobs(after)
    assert job.inputs["metadata"]["name"] != old_job.inputs["metadata"]["name"]
    release = after.one(RELEASE)
    assert job.urn in release.dependencies
    # Registered first: the engine creates the Job, waits for it to complete, then updates the release.
    assert after.resources.index(job) < after.resources.index(release)
    assert "to-1.24.0-chart-2.0.5" in after.outputs["preUpgradeBackup"]


def test_a_changed_chart_version_backs_up_too():
    settings = stack_settings("dev")
    moved = stack_settings("dev", {"labelStudio.chartVersion": "2.0.6"})
    assert upgrade_backup.version_digest(moved.label_studio) != upgrade_backup.version_digest(settings.label_studio)


def test_the_same_versions_declare_the_same_job_so_a_second_up_runs_nothing():
    first, second = evaluate("dev"), evaluate("dev")
    [job], [again] = backup_jobs(first), backup_jobs(second)
    assert (job.name, job.inputs) == (again.name, again.inputs)
    # Another change of configuration (not of the versions) keeps the same backup.
    [unchanged] = backup_jobs(evaluate_cached("dev", {"labeling.members": ["annotator@example.com"]}))
    assert unchanged.inputs == job.inputs


def test_the_job_runs_the_nightly_dump_and_upload_into_the_pre_upgrade_prefix():
    dev = evaluate_cached("dev", TESTED_IMAGE)
    [job] = backup_jobs(dev)
    manifest = job.kubernetes_manifest
    kubernetes_validate.validate(manifest, "1.33", strict=True)
    pod = manifest["spec"]["template"]["spec"]
    [dump], [upload] = pod["initContainers"], pod["containers"]
    assert dump["command"] == ["/bin/sh", "-c", backup.DUMP_SCRIPT]
    assert upload["command"] == ["/bin/sh", "-c", backup.UPLOAD_SCRIPT]
    nightly = dev.one("kubernetes:batch/v1:CronJob", "labeling-backup-cronjob").inputs["spec"]["jobTemplate"]["spec"][
        "template"]["spec"]
    assert [c["command"] for c in nightly["initContainers"] + nightly["containers"]] == [dump["command"],
                                                                                         upload["command"]]
    dump_env = {e["name"]: e for e in dump["env"]}
    assert dump_env["NOTHING_WITHOUT_DATABASE"]["value"] == "true"
    assert dump_env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "label-studio-platform-secrets",
                                                                    "key": "database-password"}
    upload_env = {e["name"]: e for e in upload["env"]}
    assert upload_env["BACKUP_PREFIX"]["value"] == \
        f"label-studio/backups/pre-upgrade/to-{DEFAULT_LABEL_STUDIO_IMAGE_TAG}-chart-2.0.5"
    assert "RETENTION_DAYS" not in upload_env  # kept until someone deletes them
    assert manifest["spec"]["backoffLimit"] >= 1 and manifest["spec"]["activeDeadlineSeconds"] > 0
    assert job.protect is False


def test_the_job_is_fenced_to_dns_the_database_and_the_store():
    dev = evaluate_cached("dev")
    [job] = backup_jobs(dev)
    [fence] = [r.inputs["spec"] for r in dev.of_type(NETWORK_POLICY)
               if r.inputs["metadata"]["name"] == upgrade_backup.PRE_UPGRADE_NAME]
    pod_labels = job.inputs["spec"]["template"]["metadata"]["labels"]
    assert fence["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert fence["ingress"] == []
    nightly = [r.inputs["spec"] for r in dev.of_type(NETWORK_POLICY)
               if r.inputs["metadata"]["name"] == backup.BACKUP_NAME]
    assert [fence["egress"]] == [n["egress"] for n in nightly]


def test_it_runs_without_the_nightly_backup():
    assert backup_jobs(evaluate_cached("dev", {"labelStudio.database.backup.enabled": False}))


def test_rds_takes_a_retained_snapshot_named_per_version_pair():
    rds, moved = variant("rds", **TESTED_IMAGE), variant("rds", **NEXT_IMAGE)
    assert backup_jobs(rds) == []
    snapshot, next_snapshot = rds.one(SNAPSHOT), moved.one(SNAPSHOT)
    instance = rds.one("aws:rds/instance:Instance")
    assert snapshot.inputs["dbInstanceIdentifier"] == instance.name  # the mock's identifier
    assert snapshot.inputs["dbSnapshotIdentifier"] == "labeling-platform-dev-pre-upgrade-" + \
        upgrade_backup.version_digest(stack_settings("dev", TESTED_IMAGE).label_studio)
    assert next_snapshot.inputs["dbSnapshotIdentifier"] != snapshot.inputs["dbSnapshotIdentifier"]
    assert next_snapshot.name != snapshot.name  # a new snapshot, the old one retained
    # Retained, never protected: the next version's snapshot replaces it in the program.
    assert (snapshot.retain_on_delete, snapshot.protect) == (True, False)
    assert snapshot.urn in rds.one(RELEASE).dependencies
    assert "RDS snapshot labeling-platform-dev-pre-upgrade-" in rds.outputs["preUpgradeBackup"]


def test_an_external_database_is_the_operator_s_to_back_up_and_the_plan_says_so():
    external = variant("external-db")
    assert backup_jobs(external) == [] and external.of_type(SNAPSHOT) == []
    assert external.one(COMPONENT)
    summary = external.outputs["preUpgradeBackup"]
    assert summary.startswith("No backup before Label Studio") and "Back it up yourself" in summary


@pytest.mark.parametrize("project, stack, expected", [
    ("labeling-platform", "prod", "labeling-platform-prod-pre-upgrade-"),
    ("labeling", "team_a.eu--1", "labeling-team-a-eu-1-pre-upgrade-"),
])
def test_snapshot_identifiers_are_what_rds_accepts(project, stack, expected):
    identifier = upgrade_backup.snapshot_identifier(project, stack, stack_settings("dev").label_studio)
    assert identifier.startswith(expected) and "--" not in identifier and identifier[0].isalpha()


def section(text: str, heading: str) -> str:
    """A Markdown section from its heading to the next heading of any level."""
    start = text.index(heading + "\n")
    following = [i for i in (text.find("\n#", start + len(heading)),) if i != -1]
    return text[start:min(following, default=len(text))]


def test_the_upgrade_runbook_leaves_no_backup_to_a_person():
    operations = (PROJECT_ROOT / "docs" / "operations.md").read_text()
    for heading in ("### Upgrading: a pull request, not `helm upgrade`", "## Chart and Label Studio upgrades"):
        text = section(operations, heading)
        assert "pg_dump -U" not in text and "Back up the database before" not in text, heading
        assert "kubectl -n $NS exec" not in text, heading
    assert "pre-upgrade-backup-<digest>" in section(operations, "## Chart and Label Studio upgrades")


def test_the_documented_rollback_is_the_tested_one():
    """tests/test_upgrade_live.py rolls back with EMPTY_SCHEMA_SQL and RESTORE_COMMAND; the docs run
    them through the restore Job with --empty-schema, whose script holds both (tests/test_restore_live.py)."""
    rollback = section((PROJECT_ROOT / "docs" / "operations.md").read_text(), "### Rolling back a Label Studio version")
    assert "python -m tools.restore_job" in rollback and "--empty-schema" in rollback
    assert backup.EMPTY_SCHEMA_SQL in restore.RESTORE_SCRIPT
    assert " ".join(backup.RESTORE_COMMAND) + ' --dbname="${PGDATABASE}"' in restore.RESTORE_SCRIPT


def test_with_irsa_the_job_runs_as_its_own_account_which_the_role_trusts():
    """The chart makes Label Studio's service account: on a first install the Job runs before it exists."""
    oidc = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-central-1.amazonaws.com/id/EXAMPLE"
    irsa = evaluate_cached("dev", {"storage.oidcProviderArn": oidc})
    [job] = backup_jobs(irsa)
    pod = job.inputs["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == upgrade_backup.PRE_UPGRADE_NAME
    account = irsa.one("kubernetes:core/v1:ServiceAccount", "labeling-label-studio-pre-upgrade-backup-service-account")
    assert account.inputs["metadata"]["name"] == upgrade_backup.PRE_UPGRADE_NAME
    assert "eks.amazonaws.com/role-arn" in account.inputs["metadata"]["annotations"]
    assert account.urn in job.dependencies
    trust = json.loads(irsa.one("aws:iam/role:Role").inputs["assumeRolePolicy"])
    subjects = trust["Statement"][0]["Condition"]["StringEquals"]["oidc.eks.eu-central-1.amazonaws.com/id/EXAMPLE:sub"]
    assert subjects == ["system:serviceaccount:labeling-dev:label-studio-ls-app",
                        "system:serviceaccount:labeling-dev:pre-upgrade-backup"]
    # The nightly CronJob runs long after the chart made the app's account: it keeps that one.
    nightly = irsa.one("kubernetes:batch/v1:CronJob", "labeling-backup-cronjob")
    assert nightly.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"] == \
        "label-studio-ls-app"


# ------------------------------------------------------------------ downgrades

DEPLOYED = {"imageTag": "1.23.2", "chartVersion": "2.0.5"}
OLDER = {"labelStudio.imageTag": "1.22.0"}


def test_only_an_unconfirmed_move_to_an_older_release_is_refused():
    settings = stack_settings("dev", OLDER).label_studio
    confirmed = stack_settings("dev", {**OLDER, "labelStudio.confirmDowngradeFrom": "1.23.2"}).label_studio
    stale = stack_settings("dev", {**OLDER, "labelStudio.confirmDowngradeFrom": "1.22.5"}).label_studio
    refusal = upgrade_backup.downgrade_refusal(DEPLOYED, settings, "the dump under s3://b/p/")
    assert refusal == ("labelStudio.imageTag: 1.22.0 is older than the deployed 1.23.2, and Label Studio 1.22.0 "
                       "cannot run on the schema 1.23.2 migrated; restore the dump under s3://b/p/ first "
                       "(docs/operations.md, rolling back a Label Studio version), then set "
                       "labelStudio.confirmDowngradeFrom 1.23.2")
    assert upgrade_backup.downgrade_refusal(DEPLOYED, stale, "x") is not None
    assert upgrade_backup.downgrade_refusal(DEPLOYED, confirmed, "x") is None
    assert upgrade_backup.downgrade_refusal(None, settings, "x") is None  # a first deploy
    assert upgrade_backup.downgrade_refusal({}, settings, "x") is None
    for newer_or_same in ("1.22.0", "1.9.9", "1.22.0-rc1"):
        assert upgrade_backup.downgrade_refusal({"imageTag": newer_or_same}, settings, "x") is None
    assert upgrade_backup.downgrade_refusal({"imageTag": "1.22.10"}, settings, "x") is not None


@pytest.mark.parametrize("name, backup_named", [
    ("dev", "the dump under s3://labeling-dev-images-example/label-studio/backups/pre-upgrade/to-1.23.2-chart-2.0.5/"),
    ("prod", "the RDS snapshot labeling-platform-prod-pre-upgrade-"),
    ("external-db", "your own backup of the database from before Label Studio 1.23.2"),
])
def test_pulumi_up_refuses_a_downgrade_from_the_deployed_release_and_names_the_backup(name, backup_named):
    stack, overrides, secrets = VARIANTS[name]
    with pytest.raises(pulumi.RunError) as refused:
        evaluate(stack, {**(overrides or {}), **OLDER}, secrets, deployed_release=DEPLOYED)
    [line] = str(refused.value).splitlines()
    assert line.startswith("labelStudio.imageTag: 1.22.0 is older than the deployed 1.23.2")
    assert f"restore {backup_named}" in line


def test_a_confirmed_downgrade_and_a_first_deploy_of_an_older_release_go_ahead():
    confirmed = evaluate("dev", {**OLDER, "labelStudio.confirmDowngradeFrom": "1.23.2"}, deployed_release=DEPLOYED)
    assert confirmed.one(RELEASE).inputs["values"]["global"]["image"]["tag"] == "1.22.0"
    first = evaluate("dev", OLDER, deployed_release=NEVER_DEPLOYED)
    assert first.one(RELEASE).inputs["values"]["global"]["image"]["tag"] == "1.22.0"


def test_the_stack_reads_its_own_last_outputs_and_exports_what_the_next_update_reads():
    evaluation = evaluate_cached("prod")
    [reference] = [read for read in evaluation.reads if read.type == "pulumi:pulumi:StackReference"]
    assert reference.id == "organization/labeling-platform/prod"
    assert evaluation.one("labeling:app:LabelStudio").urn == reference.parent
    assert evaluation.outputs[DEPLOYED_RELEASE_OUTPUT] == {"imageTag": DEFAULT_LABEL_STUDIO_IMAGE_TAG,
                                                           "chartVersion": "2.0.5"}


def test_the_plan_refuses_a_downgrade_from_the_committed_stack_file(tmp_path, monkeypatch, capsys):
    from tools import plan

    (tmp_path / "Pulumi.yaml").write_text((PROJECT_ROOT / "Pulumi.yaml").read_text())
    stack_file = tmp_path / "Pulumi.team.yaml"
    stack_file.write_text((PROJECT_ROOT / "Pulumi.dev.yaml").read_text())
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "team stack"], check=True)
    monkeypatch.setitem(PROJECT_DIRS, "team", tmp_path)
    committed = yaml.safe_load(stack_file.read_text())
    committed["config"]["labeling-platform:labelStudio"]["imageTag"] = "1.22.0"
    stack_file.write_text(yaml.safe_dump(committed))

    assert plan.main(["team", "--out", str(tmp_path / "plan")]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: labelStudio.imageTag: 1.22.0 is older than the deployed "
                           f"{DEFAULT_LABEL_STUDIO_IMAGE_TAG}")
