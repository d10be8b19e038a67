"""The restore Job tools/restore_job.py writes: the stack's own names, the nightly backup's
store and database settings, valid and hardened like the backup pods, references to Secrets
only; a one-line answer for the databases it does not restore; the documented commands run."""

from __future__ import annotations

import io
import re
import shlex

import pytest
import yaml

from components import PROJECT_ROOT
from components.backup import BACKUP_NAME, LABELS
from components.restore import RESTORE_NAME
from components.storage import STORE_CA_FILE
from tests.conftest import evaluate_cached
from tests.variants import CONFIGURED_SECRETS, OIDC_PROVIDER, VARIANTS, Variant
from tools.object_validation import object_problem
from tools.restore_job import dump_key_problem, main, restore_job

# The stack's in-cluster variants: the store on AWS with keys, S3-compatible, behind a private CA, IRSA.
IN_CLUSTER = {"dev": VARIANTS["dev"], "s3-compatible": VARIANTS["s3-compatible"],
              "on-premises-https": VARIANTS["on-premises-https"],
              "irsa": Variant("dev", {"storage.oidcProviderArn": OIDC_PROVIDER})}
PRE_UPGRADE_DUMP = "pre-upgrade/to-1.23.2-chart-2.0.5/labelstudio-20250101T020000Z.dump"


def pod(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


def containers(job_or_cronjob: dict) -> dict[str, dict]:
    spec = job_or_cronjob["spec"]
    pod_spec = spec["jobTemplate"]["spec"]["template"]["spec"] if "jobTemplate" in spec else spec["template"]["spec"]
    return {c["name"]: c for c in (*pod_spec["initContainers"], *pod_spec["containers"])}


def env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


@pytest.fixture(scope="module", params=sorted(IN_CLUSTER))
def variant(request) -> tuple:
    evaluation = evaluate_cached(*IN_CLUSTER[request.param])
    return request.param, evaluation, restore_job(evaluation)


def test_the_job_names_come_from_the_stack(variant):
    _, evaluation, job = variant
    settings = evaluation.program["settings"]
    download, restore = containers(job)["download"], containers(job)["restore"]
    platform_secret = next(r for r in evaluation.of_type("kubernetes:core/v1:Secret")
                           if r.name.endswith("-platform-secrets"))
    assert job["metadata"] == {"name": RESTORE_NAME, "namespace": settings.namespace, "labels": LABELS}
    assert env(restore)["PGHOST"]["value"] == evaluation.outputs["databaseHost"]
    assert env(restore)["PGDATABASE"]["value"] == evaluation.outputs["databaseName"]
    password = env(restore)["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password["name"] == platform_secret.inputs["metadata"]["name"]
    assert password["key"] in platform_secret.inputs["stringData"]
    assert env(download)["BUCKET"]["value"] == evaluation.outputs["bucketName"]
    assert env(download)["BACKUP_PREFIX"]["value"] == f"{settings.storage.prefix}/backups"
    assert "DUMP_KEY" not in env(download) and "EMPTY_SCHEMA" not in env(restore)


def test_the_job_reaches_store_and_database_as_the_nightly_backup_does(variant):
    """The download has the upload's environment (less the retention), the restore the dump's:
    one endpoint, region, keys, CA, password reference, service account."""
    _, evaluation, job = variant
    nightly = evaluation.one("kubernetes:batch/v1:CronJob", "labeling-backup-cronjob").inputs
    backup = containers(nightly)
    upload_env = {k: v for k, v in env(backup["upload"]).items() if k != "RETENTION_DAYS"}
    assert env(containers(job)["download"]) == upload_env
    assert env(containers(job)["restore"]) == env(backup["dump"])
    backup_pod = nightly["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    for key in ("serviceAccountName", "automountServiceAccountToken", "securityContext", "volumes"):
        assert pod(job).get(key) == backup_pod.get(key), key
    for name, backup_name in (("download", "upload"), ("restore", "dump")):
        restore_container, backup_container = containers(job)[name], backup[backup_name]
        assert restore_container["image"] == backup_container["image"]
        assert restore_container["securityContext"] == backup_container["securityContext"]
        assert restore_container["volumeMounts"] == backup_container["volumeMounts"]


def test_the_backup_network_policy_admits_the_restore_pods(variant):
    _, evaluation, job = variant
    [policy] = [r.inputs for r in evaluation.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
                if r.inputs["metadata"]["name"] == BACKUP_NAME]
    selected = policy["spec"]["podSelector"]["matchLabels"]
    assert selected.items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert policy["spec"]["egress"]


def test_the_job_is_valid_kubernetes_and_carries_no_secret_value(variant):
    _, _, job = variant
    assert object_problem(job) is None
    text = yaml.safe_dump(job)
    assert "mock-" not in text and "secret-placeholder" not in text
    assert not any(secret in text for secret in CONFIGURED_SECRETS.values())
    assert all("value" not in e for c in containers(job).values() for e in c["env"]
               if e["name"] in ("PGPASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))


def test_only_the_aws_cli_trusts_the_stores_private_ca():
    job = restore_job(evaluate_cached(*IN_CLUSTER["on-premises-https"]))
    assert env(containers(job)["download"])["AWS_CA_BUNDLE"]["value"] == STORE_CA_FILE
    assert "AWS_CA_BUNDLE" not in env(containers(job)["restore"])
    assert env(containers(job)["download"])["S3_ENDPOINT"]["value"] == "https://ceph.corp.example.com"


def test_with_irsa_the_job_runs_as_the_trusted_account_without_keys():
    evaluation = evaluate_cached(*IN_CLUSTER["irsa"])
    job = restore_job(evaluation)
    assert pod(job)["serviceAccountName"] == evaluation.program["settings"].label_studio.app_service_name
    assert pod(job)["automountServiceAccountToken"] is True
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & env(containers(job)["download"]).keys()


def test_a_named_dump_and_an_emptied_schema_are_passed_to_the_scripts():
    job = restore_job(evaluate_cached("dev"), PRE_UPGRADE_DUMP, empty_schema=True)
    assert env(containers(job)["download"])["DUMP_KEY"]["value"] == PRE_UPGRADE_DUMP
    assert env(containers(job)["restore"])["EMPTY_SCHEMA"]["value"] == "true"


@pytest.mark.parametrize("variant_name, words", [("rds", "snapshotIdentifier"), ("external-db", "own tooling")])
def test_databases_outside_the_cluster_are_told_what_restores_them(variant_name, words):
    with pytest.raises(ValueError) as refused:
        restore_job(evaluate_cached(*VARIANTS[variant_name]))
    message = str(refused.value)
    assert "\n" not in message and words in message and "docs/database.md" in message


def test_the_cli_refuses_an_rds_stack_in_one_line(capsys):
    assert main(["prod"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "labelStudio.database.mode is rds" in captured.err


@pytest.mark.parametrize("key, problem", [
    (f"s3://bucket/label-studio/backups/{PRE_UPGRADE_DUMP}", "the key under <storage.prefix>/backups/"),
    (f"label-studio/backups/{PRE_UPGRADE_DUMP}", "the key under <storage.prefix>/backups/"),
    ("pre-upgrade/to-1.23.2-chart-2.0.5/", "not a dump"),
    (PRE_UPGRADE_DUMP, None),
    ("labelstudio-20250101T020000Z.dump", None),
])
def test_a_dump_is_named_by_its_key_under_the_backups_prefix(key, problem):
    found = dump_key_problem(key)
    assert (found is None) if problem is None else (problem in found)


def documented_commands() -> list[list[str]]:
    """Every `python -m tools.restore_job` line in the docs' fenced blocks, as argv."""
    commands = []
    for path in sorted((PROJECT_ROOT / "docs").glob("*.md")):
        for block in re.findall(r"```[a-z]*\n(.*?)```", path.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                if "python -m tools.restore_job" in line:
                    words = shlex.split(line.split("python -m tools.restore_job", 1)[1].split(">", 1)[0])
                    commands.append(words)
    return commands


def test_the_docs_show_the_restore_commands():
    assert ["dev"] in documented_commands()
    assert any("--empty-schema" in argv and "--dump" in argv for argv in documented_commands())


@pytest.mark.parametrize("argv", documented_commands(), ids=" ".join)
def test_each_documented_restore_command_writes_the_job(argv):
    out = io.StringIO()
    assert main(argv, out=out) == 0
    text = out.getvalue()
    [job] = list(yaml.safe_load_all(text))
    assert job["kind"] == "Job" and object_problem(job) is None
    assert text.startswith("# Restores ")
