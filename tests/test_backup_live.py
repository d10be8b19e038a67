"""The backup upload script, run for real against an S3 endpoint (moto) with the AWS CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from components import backup
from tests.live_services import MOTO_ACCESS_KEY_ID, MOTO_SECRET_ACCESS_KEY, s3_client, start_moto

BUCKET = "backups-live"
PREFIX = "label-studio/backups"
RETENTION_DAYS = 14


def dump_key(taken: datetime) -> str:
    return f"{PREFIX}/labelstudio-{taken:%Y%m%dT%H%M%SZ}.dump"


@pytest.mark.slow
def test_upload_script_uploads_and_enforces_retention(tmp_path: Path):
    moto, endpoint = start_moto(tmp_path)
    try:
        s3 = s3_client(endpoint)
        s3.create_bucket(Bucket=BUCKET)
        now = datetime.now(timezone.utc)
        expired = dump_key(now - timedelta(days=RETENTION_DAYS + 1))
        kept = dump_key(now - timedelta(days=RETENTION_DAYS - 1))
        for key in (expired, kept):
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"old dump")
        dump = tmp_path / "labelstudio.dump"
        dump.write_bytes(b"PGDMP fresh dump")

        environment = {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "BUCKET": BUCKET, "BACKUP_PREFIX": PREFIX, "RETENTION_DAYS": str(RETENTION_DAYS),
            "AWS_DEFAULT_REGION": "us-east-1", "S3_ENDPOINT": endpoint, "DUMP_FILE": str(dump),
            "AWS_ACCESS_KEY_ID": MOTO_ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": MOTO_SECRET_ACCESS_KEY,
        }
        result = subprocess.run(["/bin/sh", "-c", backup.UPLOAD_SCRIPT], env=environment,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr

        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)["Contents"])
        assert expired not in keys
        assert kept in keys
        [fresh] = [k for k in keys if k not in (kept,)]
        assert s3.get_object(Bucket=BUCKET, Key=fresh)["Body"].read() == b"PGDMP fresh dump"
        assert "uploaded labelstudio-" in result.stdout
    finally:
        moto.stop()
