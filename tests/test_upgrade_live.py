"""An upgrade between real Label Studio releases and its rollback, with the stack's own backup.

Label Studio 1.22.0 (the release before labelStudio.imageTag's, from PyPI in its own
environment: tools/label-studio-previous/) and 1.23.2 (the tests' environment) both run the
way the image runs them (tests/label_studio_server.py: `locked_migrate` as the chart's
`db-migrations` init container runs `label-studio-migrate`, `label-studio init`, uWSGI) on
one PostgreSQL, with the rendered app env, against moto:

1. 1.22.0 on an empty database; the reconciler makes the project, its storage and tasks and
   the members' accounts; annotations are submitted through the API;
2. the pre-upgrade backup: the containers of the Job the stack declares for 1.23.2
   (components/upgrade_backup.py), their scripts run for real with the env the manifest
   gives them, into moto;
3. 1.23.2 migrates the same database and serves it: every row still there, the reconciler
   a no-op;
4. the rollback docs/operations.md prescribes: the backup restored with pg_restore, 1.22.0
   again: every row as before the upgrade, the reconciler a no-op.

"Every row" is a read of the tables that hold the users' work (projects, tasks,
annotations, members, storages) straight from PostgreSQL, the columns both releases share.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Mapping

import pytest

from components import PROJECT_ROOT, backup
from components.settings.label_studio import DEFAULT_LABEL_STUDIO_IMAGE_TAG
from reconciler import contract
from reconciler.client import LabelStudioClient
from reconciler.contract import RunEnvironment, parse_desired_state
from reconciler.reconcile import reconcile
from tests.app_environment import LocalValues, app_environment, local_stack, secret_values
from tests.label_studio_server import serve_label_studio
from tests.live_services import (
    LOOPBACK,
    MOTO_ACCESS_KEY_ID,
    MOTO_SECRET_ACCESS_KEY,
    LabelStudioAdmin,
    free_port,
    postgres_program,
    running_postgres,
    s3_client,
    start_moto,
    upload_images,
)
from tests.prerequisites import MissingPrerequisite
from tests.test_reconciler_unit import FakeKubernetes
from tests.test_team_live import NO_OP_LINE
from tools.stack_eval import Evaluation

pytestmark = pytest.mark.slow

PREVIOUS_RELEASE = "1.22.0"
# The interpreter of tools/label-studio-previous/'s environment (`make test` syncs it).
PREVIOUS_PYTHON = PROJECT_ROOT / ".venv-label-studio-previous" / "bin" / "python"
BUCKET = "labeling-data"
PREFIX = "kagglecatsanddogs"
TITLE = "Cats and dogs"
IMAGES = 12
MEMBERS = ["ann@example.com", "bob@example.com"]
PASSWORDS = {email: f"generated-{index}-Xq7vT2pLm9rS4wZk" for index, email in enumerate(MEMBERS)}
ANNOTATED = 5

# What users made, as the database holds it, in the columns 1.22.0 and 1.23.2 share.
INVENTORY = {
    "projects": "SELECT id, title, label_config, created_by_id FROM project ORDER BY id",
    "tasks": "SELECT id, project_id, data::text FROM task ORDER BY id",
    "annotations": "SELECT id, task_id, result::text, completed_by_id, was_cancelled FROM task_completion ORDER BY id",
    "accounts": "SELECT id, email, password, is_active FROM htx_user ORDER BY id",
    "members": "SELECT user_id, organization_id, deleted_at FROM organizations_organizationmember ORDER BY user_id",
    "storages": "SELECT id, project_id, bucket, prefix, regex_filter FROM io_storages_s3importstorage ORDER BY id",
}
# The schema a release leaves: an upgrade changes it, a rollback must bring it back exactly
# (a table a later migration made and the rollback left would stop the next upgrade).
SCHEMA = {
    "tables": "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    "migrations": "SELECT app, name FROM django_migrations ORDER BY app, name",
}


def sql(libpq: Mapping[str, str], statement: str) -> str:
    return subprocess.run([postgres_program("psql"), "-At", "-v", "ON_ERROR_STOP=1", "-c", statement],
                          env={**os.environ, **libpq}, check=True, capture_output=True, text=True).stdout


def inventory(libpq: Mapping[str, str], queries: Mapping[str, str] = INVENTORY) -> dict[str, str]:
    return {what: sql(libpq, query) for what, query in queries.items()}


def desired_state(s3_endpoint: str) -> dict:
    return {
        "storage": {"bucket": BUCKET, "region": "us-east-1", "endpoint": s3_endpoint, "presign": True,
                    "endpointFromLabelStudio": True},
        "exportPrefix": "label-studio/exports",
        "samUrl": None,
        "projects": [{"title": TITLE, "prefix": PREFIX, "regexFilter": ".*\\.png$", "sam": False,
                      "labelConfig": (PROJECT_ROOT / "label_configs/image_classification.xml").read_text(),
                      "split": []}],
        "members": MEMBERS,
    }


class Reconciler:
    """The reconciler as the Job runs it, the team Secret in a stand-in for the Kubernetes API."""

    def __init__(self, work_dir: Path, s3_endpoint: str):
        self.state = desired_state(s3_endpoint)
        self.team_secret = FakeKubernetes()
        self.service_account = work_dir / "service-account"
        self.service_account.mkdir()
        (self.service_account / "token").write_text("service-account-jwt")
        (self.service_account / "namespace").write_text("labeling")
        passwords = work_dir / contract.MEMBER_PASSWORDS_KEY
        passwords.write_text(json.dumps(PASSWORDS))
        self.environment = RunEnvironment.from_environment({
            contract.ACCESS_KEY_ID: MOTO_ACCESS_KEY_ID, contract.SECRET_ACCESS_KEY: MOTO_SECRET_ACCESS_KEY,
            contract.TEAM_SECRET_NAME: "labeling-team", contract.TIMEOUT_SECONDS: "300",
            contract.MEMBER_PASSWORDS + contract.FILE_SUFFIX: str(passwords)})

    def run(self, api: LabelStudioClient) -> list[str]:
        lines: list[str] = []
        reconcile(parse_desired_state(self.state), api, self.environment, report=lines.append,
                  kubernetes_opener=self.team_secret, service_account_dir=self.service_account)
        return lines


def run_pod(pod: dict, env: Mapping[str, str], secrets: Mapping[tuple[str, str], str], work_dir: Path) -> list[str]:
    """Each container of a declared pod, init containers first, as `sh -c <its script>` here: its
    env from the manifest (Secret references resolved), then `env` for what is local (the
    database's address, the scratch volume's path). Returns what they printed."""
    printed = []
    path = os.pathsep.join([str(Path(postgres_program("pg_dump")).parent), str(Path(sys.executable).parent),
                            os.environ["PATH"]])
    for container in pod["initContainers"] + pod["containers"]:
        declared = {}
        for variable in container["env"]:
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            declared[variable["name"]] = secrets[(reference["name"], reference["key"])] if reference else variable["value"]
        shell, flag, script = container["command"]
        assert (shell, flag) == ("/bin/sh", "-c"), container["name"]
        result = subprocess.run([shell, flag, script], env={"PATH": path, **declared, **env}, cwd=work_dir,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{container['name']}: {result.stderr}"
        printed += result.stdout.splitlines()
    return printed


@contextlib.contextmanager
def serving(release: str, environment: Mapping[str, str], work_dir: Path, libpq: Mapping[str, str], port: int
            ) -> Iterator[LabelStudioClient]:
    python = str(PREVIOUS_PYTHON) if release == PREVIOUS_RELEASE else None
    with serve_label_studio(environment, work_dir / f"label-studio-{release}-{len(list(work_dir.glob('label-studio-*')))}",
                            database=libpq, port=port, python=python) as server:
        client = LabelStudioClient(server.url, environment["LABEL_STUDIO_USER_TOKEN"])
        assert client.get("/api/version")["release"] == release
        yield client


def annotate(api: LabelStudioClient, count: int) -> None:
    project = next(p["id"] for p in api.get_all_pages("/api/projects/") if p["title"] == TITLE)
    tasks = api.get(f"/api/tasks/?project={project}&page_size={count}")["tasks"]
    for index, task in enumerate(tasks):
        choice = "Cat" if index % 2 else "Dog"
        api.post(f"/api/tasks/{task['id']}/annotations/", {"result": [
            {"from_name": "choice", "to_name": "image", "type": "choices", "value": {"choices": [choice]}}]})


@pytest.fixture(scope="module")
def previous_release() -> str:
    if not PREVIOUS_PYTHON.exists():
        raise MissingPrerequisite(f"Label Studio {PREVIOUS_RELEASE}: {PREVIOUS_PYTHON} not found; make test installs "
                                  "it (tools/label-studio-previous/)")
    return PREVIOUS_RELEASE


def test_an_upgrade_and_its_rollback_lose_nothing(previous_release, tmp_path: Path):
    assert DEFAULT_LABEL_STUDIO_IMAGE_TAG != previous_release
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    moto, s3_endpoint = start_moto(log_dir)
    try:
        upload_images(s3_endpoint, BUCKET, PREFIX, IMAGES)
        admin = LabelStudioAdmin.generate()
        port = free_port()
        local = LocalValues(public_url=f"http://{LOOPBACK}:{port}", s3_endpoint=s3_endpoint, bucket=BUCKET,
                            admin_email=admin.email, admin_password=admin.password, admin_token=admin.token,
                            s3_access_key_id=MOTO_ACCESS_KEY_ID, s3_secret_access_key=MOTO_SECRET_ACCESS_KEY)
        # The stack as it deploys the release this environment serves, whatever dev's file pins.
        stack: Evaluation = local_stack(local, overrides={"labelStudio.imageTag": DEFAULT_LABEL_STUDIO_IMAGE_TAG})
        environment = app_environment(stack, local)
        reconciler = Reconciler(tmp_path, s3_endpoint)
        with running_postgres(log_dir) as libpq:
            # 1. The previous release, filled through the reconciler and the API.
            with serving(PREVIOUS_RELEASE, environment, tmp_path, libpq, port) as api:
                first = reconciler.run(api)
                assert "members: 2 created, 0 present, 0 removed" in first, first
                annotate(api, ANNOTATED)
            before, schema_before = inventory(libpq), inventory(libpq, SCHEMA)
            assert len(before["tasks"].splitlines()) == IMAGES
            assert len(before["annotations"].splitlines()) == ANNOTATED
            assert all(email in before["accounts"] for email in MEMBERS)

            # 2. The backup the stack runs before the release moves to imageTag.
            [job] = [r for r in stack.of_type("kubernetes:batch/v1:Job")
                     if r.inputs["metadata"]["name"].startswith("pre-upgrade-backup-")]
            scratch = tmp_path / "backup"
            scratch.mkdir()
            printed = run_pod(job.inputs["spec"]["template"]["spec"],
                              {**libpq, "DUMP_FILE": str(scratch / "labelstudio.dump"), "HOME": str(scratch)},
                              secret_values(stack, local), scratch)
            [uploaded] = [line for line in printed if line.startswith("uploaded ")]
            dump_key = uploaded.removeprefix(f"uploaded s3://{BUCKET}/")
            assert f"/backups/pre-upgrade/to-{DEFAULT_LABEL_STUDIO_IMAGE_TAG}-chart-" in dump_key, uploaded
            assert [o["Key"] for o in s3_client(s3_endpoint).list_objects_v2(
                Bucket=BUCKET, Prefix=dump_key.rsplit("/", 1)[0])["Contents"]] == [dump_key]

            # 3. The upgrade: migrated as the init container migrates, everything still there.
            with serving(DEFAULT_LABEL_STUDIO_IMAGE_TAG, environment, tmp_path, libpq, port) as api:
                assert inventory(libpq) == before
                again = reconciler.run(api)
                assert again and all(NO_OP_LINE.search(line) for line in again), again
                assert "members: 0 created, 2 present, 0 removed" in again
            assert inventory(libpq) == before
            assert inventory(libpq, SCHEMA)["migrations"] != schema_before["migrations"]  # it did migrate

            # 4. The rollback docs/operations.md prescribes: the schema emptied, the backup
            # restored, the previous release again.
            fetched = scratch / "restore.dump"
            fetched.write_bytes(s3_client(s3_endpoint).get_object(Bucket=BUCKET, Key=dump_key)["Body"].read())
            sql(libpq, backup.EMPTY_SCHEMA_SQL)
            subprocess.run([postgres_program("pg_restore"), *backup.RESTORE_COMMAND[1:],
                            f"--dbname={libpq['PGDATABASE']}", str(fetched)],
                           env={**os.environ, **libpq}, check=True, capture_output=True)
            assert inventory(libpq, SCHEMA) == schema_before
            with serving(PREVIOUS_RELEASE, environment, tmp_path, libpq, port) as api:
                assert inventory(libpq) == before
                back = reconciler.run(api)
                assert back and all(NO_OP_LINE.search(line) for line in back), back
            assert inventory(libpq) == before and inventory(libpq, SCHEMA) == schema_before
    finally:
        moto.stop()
