"""The restore Job's two scripts, run for real as tools/restore_job.py writes them: a real
PostgreSQL, the AWS CLI against moto, the environment the generated manifest gives each
container. The dump and its upload are the nightly backup's own scripts.

From the manifest's environment only what differs on 127.0.0.1 is replaced, each harmless:
- PGHOST (the chart's PostgreSQL Service) and PGPORT: the test's server on loopback. Its
  user and database keep the manifest's names; PGPASSWORD (a secretKeyRef) is left out
  because the test server trusts loopback connections.
- AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (secretKeyRefs): the keys moto accepts.
- S3_ENDPOINT of an S3-compatible store: moto's address, the same kind of endpoint.
- AWS_CA_BUNDLE (the ConfigMap mounted at STORE_CA_FILE): the test CA's file, the same
  PEM at another path, read by the same CLI.
- DUMP_FILE and HOME (emptyDirs in the pod): directories of the test.
In aws mode there is no S3_ENDPOINT: on AWS the CLI's default endpoint for the region is
the real S3. Here AWS_ENDPOINT_URL (the CLI's own variable, set by the test only) sends
those same commands to moto.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from components import backup
from components.restore import DOWNLOAD_SCRIPT, RESTORE_SCRIPT
from tests.conftest import evaluate_cached
from tests.live_services import (
    LOOPBACK,
    MOTO_ACCESS_KEY_ID,
    MOTO_SECRET_ACCESS_KEY,
    postgres_program,
    running_postgres,
    s3_client,
    start_moto,
)
from tests.private_ca import issue
from tests.variants import VARIANTS
from tools.restore_job import restore_job

pytestmark = pytest.mark.slow

# The store modes: S3-compatible over http, S3-compatible behind a private CA, AWS.
STORES = {"s3-compatible": VARIANTS["s3-compatible"], "private-ca": VARIANTS["on-premises-https"],
          "aws": VARIANTS["dev"]}
TASKS = 250


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """PostgreSQL, moto over http, and moto over https with a certificate of a CA made now."""
    work = tmp_path_factory.mktemp("restore-live")
    certificate = issue(tmp_path_factory.mktemp("private-ca"))
    with ExitStack() as stack:
        libpq = stack.enter_context(running_postgres(work))
        moto, endpoint = start_moto(work)
        stack.callback(moto.stop)
        moto_tls, tls_endpoint = start_moto(
            work, tls=(certificate.ca_file, certificate.cert_file, certificate.key_file))
        stack.callback(moto_tls.stop)
        yield {"libpq": libpq, "http": endpoint, "https": tls_endpoint, "ca_file": str(certificate.ca_file)}


class Pod:
    """One generated restore Job, its containers' environments made runnable on loopback."""

    def __init__(self, store: str, services: dict, scratch: Path, dump_key=None, empty_schema=False):
        job = restore_job(evaluate_cached(*STORES[store]), dump_key, empty_schema)
        spec = job["spec"]["template"]["spec"]
        self.download_env = self._runnable(spec["initContainers"][0], services, scratch)
        self.restore_env = self._runnable(spec["containers"][0], services, scratch)
        self.endpoint = self.download_env.get("S3_ENDPOINT") or self.download_env["AWS_ENDPOINT_URL"]
        self.ca_file = self.download_env.get("AWS_CA_BUNDLE")

    @staticmethod
    def _runnable(container: dict, services: dict, scratch: Path) -> dict[str, str]:
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        by_reference = {e["name"] for e in container["env"] if "valueFrom" in e}
        assert by_reference <= {"PGPASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        if "PGHOST" in env:
            libpq = services["libpq"]
            assert (env["PGUSER"], env["PGDATABASE"]) == (libpq["PGUSER"], libpq["PGDATABASE"])
            env.update(PGHOST=libpq["PGHOST"], PGPORT=libpq["PGPORT"])
        if "BUCKET" in env:
            env.update(AWS_ACCESS_KEY_ID=MOTO_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=MOTO_SECRET_ACCESS_KEY)
            if "AWS_CA_BUNDLE" in env:
                env.update(S3_ENDPOINT=services["https"], AWS_CA_BUNDLE=services["ca_file"])
            elif "S3_ENDPOINT" in env:
                env["S3_ENDPOINT"] = services["http"]
            else:
                env["AWS_ENDPOINT_URL"] = services["http"]
        pg_bin = Path(postgres_program("pg_restore")).parent
        return {**env, "DUMP_FILE": str(scratch / "labelstudio.dump"), "HOME": str(scratch),
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), str(pg_bin), os.environ["PATH"]])}

    def s3(self):
        return s3_client(self.endpoint, region=self.download_env["AWS_DEFAULT_REGION"], verify=self.ca_file)

    def create_bucket(self) -> None:
        region = self.download_env["AWS_DEFAULT_REGION"]
        location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        existing = {b["Name"] for b in self.s3().list_buckets()["Buckets"]}
        if self.download_env["BUCKET"] not in existing:
            self.s3().create_bucket(Bucket=self.download_env["BUCKET"], **location)

    def backup(self, under: str = "") -> str:
        """The nightly backup's dump and upload (into `under` below the backups prefix); the key uploaded."""
        run(backup.DUMP_SCRIPT, self.restore_env)
        prefix = "/".join(filter(None, [self.download_env["BACKUP_PREFIX"], under]))
        uploaded = run(backup.UPLOAD_SCRIPT, {**self.download_env, "BACKUP_PREFIX": prefix})
        return uploaded.stdout.splitlines()[-1].removeprefix(f"uploaded s3://{self.download_env['BUCKET']}/")

    def restore(self) -> subprocess.CompletedProcess:
        """The Job: the init container's download, then the restore."""
        downloaded = run(DOWNLOAD_SCRIPT, self.download_env)
        restored = run(RESTORE_SCRIPT, self.restore_env)
        return subprocess.CompletedProcess([], 0, downloaded.stdout + restored.stdout, "")


def run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def sql(services: dict, statement: str) -> str:
    return subprocess.run([postgres_program("psql"), "-At", "-v", "ON_ERROR_STOP=1", "-c", statement],
                          env={**os.environ, **services["libpq"]}, check=True, capture_output=True,
                          text=True).stdout.strip()


def fresh_tasks(services: dict) -> None:
    sql(services, "DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    sql(services, "CREATE TABLE task (id integer PRIMARY KEY, image text NOT NULL)")
    sql(services, f"INSERT INTO task SELECT n, 'kagglecatsanddogs/' || n || '.jpg' FROM generate_series(1, {TASKS}) n")


@pytest.mark.parametrize("store", sorted(STORES))
def test_the_newest_nightly_dump_brings_back_what_was_lost(store, services, tmp_path):
    pod = Pod(store, services, tmp_path)
    pod.create_bucket()
    bucket, prefix = pod.download_env["BUCKET"], pod.download_env["BACKUP_PREFIX"]
    # Older than the nightly dump about to be taken, and one in a folder below the prefix,
    # newer by its name: the default takes neither.
    fresh_tasks(services)
    sql(services, "DELETE FROM task WHERE id > 1")
    older = pod.backup()
    pod.s3().copy_object(Bucket=bucket, CopySource={"Bucket": bucket, "Key": older},
                         Key=f"{prefix}/labelstudio-20000101T000000Z.dump")
    pod.s3().copy_object(Bucket=bucket, CopySource={"Bucket": bucket, "Key": older},
                         Key=f"{prefix}/pre-upgrade/to-9.9.9-chart-9.9.9/labelstudio-99991231T235959Z.dump")
    pod.s3().delete_object(Bucket=bucket, Key=older)
    fresh_tasks(services)
    newest = pod.backup()

    sql(services, "DELETE FROM task WHERE id > 10")  # the loss
    restored = pod.restore()

    assert sql(services, "SELECT count(*), max(image) FROM task") == f"{TASKS}|kagglecatsanddogs/99.jpg"
    assert f"downloaded s3://{bucket}/{newest}" in restored.stdout.splitlines()


def test_a_rollback_restores_a_pre_upgrade_dump_by_key_into_an_emptied_schema(services, tmp_path):
    """A table the newer release added after the dump is gone; `--clean` alone would leave it."""
    probe = Pod("s3-compatible", services, tmp_path)
    probe.create_bucket()
    fresh_tasks(services)
    uploaded = probe.backup(under="pre-upgrade/to-1.23.2-chart-2.0.5")
    key = uploaded.removeprefix(probe.download_env["BACKUP_PREFIX"] + "/")
    assert key.startswith("pre-upgrade/to-1.23.2-chart-2.0.5/labelstudio-")

    sql(services, "CREATE TABLE added_by_a_newer_release (id integer)")
    sql(services, "UPDATE task SET image = 'migrated'")
    without_emptying = Pod("s3-compatible", services, tmp_path, dump_key=key)
    without_emptying.restore()
    assert sql(services, "SELECT to_regclass('added_by_a_newer_release') IS NOT NULL") == "t"

    Pod("s3-compatible", services, tmp_path, dump_key=key, empty_schema=True).restore()
    assert sql(services, "SELECT to_regclass('added_by_a_newer_release') IS NULL") == "t"
    assert sql(services, "SELECT count(*), count(*) FILTER (WHERE image = 'migrated') FROM task") == f"{TASKS}|0"


def test_without_a_dump_the_download_fails_and_says_where_it_looked(services, tmp_path):
    pod = Pod("s3-compatible", services, tmp_path)
    env = {**pod.download_env, "BACKUP_PREFIX": "nothing-here/backups"}
    pod.create_bucket()
    result = subprocess.run(["/bin/sh", "-c", DOWNLOAD_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert f"no labelstudio-*.dump right under s3://{env['BUCKET']}/nothing-here/backups/" in result.stderr
