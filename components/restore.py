"""The restore of the chart's in-cluster PostgreSQL from a dump in the bucket, as a Job.

Not part of the stack: `python -m tools.restore_job <stack>` writes this Job from the
stack's own names, and the operator applies it when a restore is due (docs/database.md).
It is the nightly backup's pod run backwards: aws-cli downloads a dump in the init
container, with the same store settings, keys and CA the upload uses; the chart's
PostgreSQL image restores it with the same connection the dump uses.
"""

from __future__ import annotations

from typing import Optional

import pulumi

from components.backup import (DUMP_IMAGE, EMPTY_SCHEMA_SQL, LABELS, LIST_DUMPS_SCRIPT, RESTORE_COMMAND,
                               STORE_ENDPOINT_SCRIPT, UPLOAD_IMAGE, database_env, one_shot_container,
                               one_shot_job, one_shot_pod_spec, store_client, store_env)
from components.database import DatabaseAccess
from components.storage import StorageAccess

RESTORE_NAME = "database-restore"
# Long enough to restore a large database; a hung restore does not hold the app down forever.
DEADLINE_SECONDS = 3600

# Downloads DUMP_KEY (a key under BACKUP_PREFIX), or else the newest nightly dump right
# under BACKUP_PREFIX: their UTC timestamps sort as strings.
DOWNLOAD_SCRIPT = f"""\
set -eu
{STORE_ENDPOINT_SCRIPT}if [ -z "${{DUMP_KEY:-}}" ]; then
  DUMP_KEY=$({LIST_DUMPS_SCRIPT} | sort | tail -n 1)
  if [ -z "$DUMP_KEY" ]; then
    echo "no labelstudio-*.dump right under s3://${{BUCKET}}/${{BACKUP_PREFIX}}/" >&2
    exit 1
  fi
fi
aws $endpoint s3 cp --no-progress "s3://${{BUCKET}}/${{BACKUP_PREFIX}}/${{DUMP_KEY}}" "${{DUMP_FILE}}"
echo "downloaded s3://${{BUCKET}}/${{BACKUP_PREFIX}}/${{DUMP_KEY}}"
"""

# With EMPTY_SCHEMA set (a rollback to an older Label Studio) the schema is dropped first:
# tables a newer release added are not in the older dump, and `--clean` would leave them.
RESTORE_SCRIPT = f"""\
set -eu
if [ -n "${{EMPTY_SCHEMA:-}}" ]; then
  psql --no-psqlrc --set ON_ERROR_STOP=1 --command "{EMPTY_SCHEMA_SQL}"
fi
{" ".join(RESTORE_COMMAND)} --dbname="${{PGDATABASE}}" "${{DUMP_FILE}}"
echo "restored the dump into ${{PGDATABASE}} on ${{PGHOST}}"
"""


def restore_job_manifest(namespace: pulumi.Input[str], database: DatabaseAccess, storage: StorageAccess,
                         dump_key: Optional[str] = None, empty_schema: bool = False) -> dict:
    """The Job restoring `dump_key` (under `<storage.prefix>/backups/`; default: the newest
    nightly dump) into the database. Credentials only by secretKeyRef (or the IRSA service account)."""
    download_env = store_env(storage, storage.under_prefix("backups"))
    if dump_key:
        download_env.append({"name": "DUMP_KEY", "value": dump_key})
    restore_env = database_env(database)
    if empty_schema:
        restore_env.append({"name": "EMPTY_SCHEMA", "value": "true"})
    pod_spec = one_shot_pod_spec(
        storage, store_client(storage, one_shot_container("download", UPLOAD_IMAGE, DOWNLOAD_SCRIPT, download_env)),
        one_shot_container("restore", DUMP_IMAGE, RESTORE_SCRIPT, restore_env))
    # The nightly backup's labels: its NetworkPolicy lets these pods reach DNS, the database
    # and the store, and nothing else. Not retried: a failed restore is for a person to read,
    # not to run again over a half-restored database.
    return one_shot_job(RESTORE_NAME, namespace, LABELS, pod_spec, backoff_limit=0,
                        deadline_seconds=DEADLINE_SECONDS)
