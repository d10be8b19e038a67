"""The in-cluster database's backup and restore path, run for real: the CronJob's dump
command against PostgreSQL, its upload script with the AWS CLI against an S3 endpoint
(moto), and the restore command docs/database.md prescribes."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from components import backup
from tests.live_services import (
    LOOPBACK,
    MOTO_ACCESS_KEY_ID,
    MOTO_SECRET_ACCESS_KEY,
    free_port,
    postgres_program,
    running_postgres,
    s3_client,
    start_moto,
)

BUCKET = "backups-live"
PREFIX = "label-studio/backups"
RETENTION_DAYS = 14

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    moto, endpoint = start_moto(tmp_path_factory.mktemp("moto"))
    s3_client(endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    moto.stop()


def dump_key(taken: datetime) -> str:
    return f"{PREFIX}/labelstudio-{taken:%Y%m%dT%H%M%SZ}.dump"


def upload(dump: Path, endpoint: str, home: Path) -> subprocess.CompletedProcess:
    """The CronJob's upload container, with the environment its manifest gives it."""
    environment = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        "BUCKET": BUCKET, "BACKUP_PREFIX": PREFIX, "RETENTION_DAYS": str(RETENTION_DAYS),
        "AWS_DEFAULT_REGION": "us-east-1", "S3_ENDPOINT": endpoint, "DUMP_FILE": str(dump),
        "AWS_ACCESS_KEY_ID": MOTO_ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": MOTO_SECRET_ACCESS_KEY,
    }
    result = subprocess.run(["/bin/sh", "-c", backup.UPLOAD_SCRIPT], env=environment,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def test_upload_keeps_exactly_the_retention_window(s3_endpoint, tmp_path: Path):
    s3 = s3_client(s3_endpoint)
    now = datetime.now(timezone.utc)
    expired = dump_key(now - timedelta(days=RETENTION_DAYS + 1))
    kept = dump_key(now - timedelta(days=RETENTION_DAYS - 1))
    for key in (expired, kept):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"old dump")
    dump = tmp_path / "labelstudio.dump"
    dump.write_bytes(b"PGDMP fresh dump")

    result = upload(dump, s3_endpoint, tmp_path)

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)["Contents"]}
    assert expired not in keys and kept in keys
    fresh = max(keys)
    assert fresh > kept and s3.get_object(Bucket=BUCKET, Key=fresh)["Body"].read() == b"PGDMP fresh dump"
    assert "uploaded labelstudio-" in result.stdout


def test_pruning_leaves_the_pre_upgrade_dumps_alone(s3_endpoint, tmp_path: Path):
    """`aws s3 ls` shows the pre-upgrade folder as a line without a key; the nightly prune skips it."""
    s3 = s3_client(s3_endpoint)
    pre_upgrade = f"{PREFIX}/pre-upgrade/to-1.23.2-chart-2.0.5/labelstudio-20200101T000000Z.dump"
    s3.put_object(Bucket=BUCKET, Key=pre_upgrade, Body=b"dump before an upgrade")
    dump = tmp_path / "labelstudio.dump"
    dump.write_bytes(b"PGDMP nightly")

    upload(dump, s3_endpoint, tmp_path)

    assert s3.get_object(Bucket=BUCKET, Key=pre_upgrade)["Body"].read() == b"dump before an upgrade"


def test_a_first_install_has_nothing_to_back_up_and_says_so_in_one_line(s3_endpoint, tmp_path: Path):
    """The pre-upgrade Job before the chart made its PostgreSQL: the Service name does not
    resolve, the dump says so and the upload uploads nothing; both succeed."""
    dump = tmp_path / "labelstudio.dump"
    environment = {"PATH": os.environ["PATH"], "PGHOST": "label-studio-postgresql.labeling.svc.cluster.local",
                   "PGDATABASE": "labelstudio", "PGUSER": "labelstudio", "DUMP_FILE": str(dump),
                   "NOTHING_WITHOUT_DATABASE": "true"}
    dumped = subprocess.run(["/bin/sh", "-c", backup.DUMP_SCRIPT], env=environment, capture_output=True, text=True,
                            timeout=60)
    assert dumped.returncode == 0, dumped.stderr
    assert dumped.stdout.splitlines() == [
        "nothing to back up: label-studio-postgresql.labeling.svc.cluster.local does not resolve, "
        "the database is not installed yet"]
    before = s3_client(s3_endpoint).list_objects_v2(Bucket=BUCKET).get("KeyCount", 0)
    uploaded = upload(dump, s3_endpoint, tmp_path)
    assert uploaded.stdout == "" and s3_client(s3_endpoint).list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == before


def test_without_the_first_install_switch_a_missing_database_fails(tmp_path: Path):
    """The nightly backup never takes a missing database for an empty one."""
    environment = {"PATH": f"{Path(postgres_program('pg_dump')).parent}{os.pathsep}{os.environ['PATH']}",
                   "PGHOST": "label-studio-postgresql.labeling.svc.cluster.local", "PGCONNECT_TIMEOUT": "5",
                   "PGDATABASE": "labelstudio", "PGUSER": "labelstudio", "DUMP_FILE": str(tmp_path / "x.dump")}
    dumped = subprocess.run(["/bin/sh", "-c", backup.DUMP_SCRIPT], env=environment, capture_output=True, text=True,
                            timeout=60)
    assert dumped.returncode != 0 and "could not translate host name" in dumped.stderr


def test_a_database_that_resolves_but_refuses_fails_the_pre_upgrade_backup(tmp_path: Path):
    """Only a name that does not resolve is a first install: a server that is down fails the Job,
    and so `pulumi up` before the release changes."""
    environment = {"PATH": f"{Path(postgres_program('pg_dump')).parent}{os.pathsep}{os.environ['PATH']}",
                   "PGHOST": LOOPBACK, "PGPORT": str(free_port()), "PGDATABASE": "labelstudio",
                   "PGUSER": "labelstudio", "DUMP_FILE": str(tmp_path / "x.dump"), "NOTHING_WITHOUT_DATABASE": "true"}
    dumped = subprocess.run(["/bin/sh", "-c", backup.DUMP_SCRIPT], env=environment, capture_output=True, text=True,
                            timeout=60)
    assert dumped.returncode != 0 and "nothing to back up" not in dumped.stdout
    assert "Connection refused" in dumped.stderr


def test_a_nightly_dump_restores_what_was_lost(s3_endpoint, tmp_path: Path):
    with running_postgres(tmp_path) as libpq:
        environment = {**os.environ, **libpq}

        def sql(statement: str) -> str:
            return subprocess.run([postgres_program("psql"), "-At", "-v", "ON_ERROR_STOP=1", "-c", statement],
                                  env=environment, check=True, capture_output=True, text=True).stdout.strip()

        sql("CREATE TABLE task (id integer PRIMARY KEY, image text NOT NULL)")
        sql("INSERT INTO task SELECT n, 'kagglecatsanddogs/' || n || '.jpg' FROM generate_series(1, 250) n")

        dump = tmp_path / "labelstudio.dump"
        pg_bin = Path(postgres_program("pg_dump")).parent
        subprocess.run(["/bin/sh", "-c", backup.DUMP_SCRIPT], check=True, capture_output=True,
                       env={**environment, "PATH": f"{pg_bin}{os.pathsep}{os.environ['PATH']}", "DUMP_FILE": str(dump)})
        upload(dump, s3_endpoint, tmp_path)

        sql("DELETE FROM task WHERE id > 10")  # the loss
        assert sql("SELECT count(*) FROM task") == "10"

        s3 = s3_client(s3_endpoint)
        dumps = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/labelstudio-")["Contents"]
        newest = max(o["Key"] for o in dumps)
        fetched = tmp_path / "restore.dump"
        fetched.write_bytes(s3.get_object(Bucket=BUCKET, Key=newest)["Body"].read())
        subprocess.run([postgres_program("pg_restore"), *backup.RESTORE_COMMAND[1:], "--dbname=labelstudio",
                        str(fetched)], env=environment, check=True, capture_output=True)

        assert sql("SELECT count(*), max(image) FROM task") == "250|kagglecatsanddogs/99.jpg"
