"""The Job that restores a stack's in-cluster database from a dump in its bucket, as YAML.

    python -m tools.restore_job dev > restore.yaml
    python -m tools.restore_job dev --dump pre-upgrade/to-1.23.2-chart-2.0.5/labelstudio-20250101T020000Z.dump --empty-schema

Evaluates the stack offline like tools/plan.py, so the Job carries the stack's own names:
namespace, database host and user, the platform Secret holding the password, bucket,
prefix, endpoint, credentials Secret or IRSA service account, the store's CA. Only
references to Secrets are written, never a value. docs/database.md says how to run it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, TextIO

import pulumi
import yaml
from pulumi.runtime.sync_await import _sync_await

from components.restore import restore_job_manifest
from components.settings import DatabaseMode
from components.settings.stack_file import StackFileError, stack_file_path
from tools.stack_eval import Evaluation, evaluate, project_dir

# What restores a database the stack does not run itself.
ELSEWHERE = {
    DatabaseMode.RDS: "restore RDS from a snapshot with labelStudio.database.rds.snapshotIdentifier "
                      "(docs/database.md, Restore: RDS from a snapshot)",
    DatabaseMode.EXTERNAL: "restore the server with its operator's own tooling "
                           "(docs/database.md, Restore: external server)",
}


def dump_key_problem(key: str) -> Optional[str]:
    """Why `key` cannot name a dump under the backups prefix, if it cannot."""
    if key.startswith(("s3://", "/")) or "/backups/" in f"/{key}":
        return (f"--dump {key}: give the key under <storage.prefix>/backups/, e.g. "
                "pre-upgrade/to-1.23.2-chart-2.0.5/labelstudio-20250101T020000Z.dump")
    if not key.endswith(".dump"):
        return f"--dump {key}: not a dump (labelstudio-<UTC timestamp>.dump)"
    return None


def restore_job(evaluation: Evaluation, dump_key: Optional[str] = None, empty_schema: bool = False) -> dict:
    """The Job's manifest for an evaluated stack, every value resolved, or a ValueError saying
    in one line what restores this stack's database instead."""
    settings, platform = evaluation.program["settings"], evaluation.program["platform"]
    mode = settings.label_studio.database.mode
    if mode is not DatabaseMode.IN_CLUSTER:
        raise ValueError(f"labelStudio.database.mode is {mode.value}: {ELSEWHERE[mode]}; "
                         "this Job restores the chart's in-cluster PostgreSQL only")
    # The same handles the nightly backup gets (components/platform.py).
    manifest = pulumi.Output.from_input(restore_job_manifest(
        settings.namespace, platform.label_studio.database, platform.storage.access, dump_key, empty_schema))
    if _sync_await(manifest.is_secret()):
        raise AssertionError("the restore Job would carry a secret value; it takes Secrets by reference only")
    return _sync_await(manifest.future())


class _ScriptsAsBlocks(yaml.SafeDumper):
    """Multi-line strings (the containers' scripts) as YAML block literals, readable as shell."""


_ScriptsAsBlocks.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def describe(job: dict, dump_key: Optional[str], empty_schema: bool) -> str:
    """YAML comments heading the manifest: what it does, to what."""
    env = {e["name"]: e.get("value") for pod in [job["spec"]["template"]["spec"]]
           for container in (*pod["initContainers"], *pod["containers"]) for e in container["env"]}
    where = f"s3://{env['BUCKET']}/{env['BACKUP_PREFIX']}/"
    dump = f"{where}{dump_key}" if dump_key else f"the newest labelstudio-*.dump right under {where}"
    emptied = ", after emptying its schema public" if empty_schema else ""
    return (f"# Restores {dump} into database {env['PGDATABASE']} on {env['PGHOST']}{emptied}.\n"
            f"# Job {job['metadata']['name']} in namespace {job['metadata']['namespace']}: docs/database.md.\n")


def main(argv: Optional[list[str]] = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", help="stack name: Pulumi.<stack>.yaml")
    parser.add_argument("--dump", metavar="KEY", help="the dump's key under <storage.prefix>/backups/ "
                                                      "(default: the newest nightly dump)")
    parser.add_argument("--empty-schema", action="store_true",
                        help="drop the schema first: a rollback to an older Label Studio")
    args = parser.parse_args(argv)
    if not stack_file_path(project_dir(args.stack), args.stack).is_file():
        print(f"error: no stack file Pulumi.{args.stack}.yaml in {project_dir(args.stack)}", file=sys.stderr)
        return 2
    if args.dump and (problem := dump_key_problem(args.dump)):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        job = restore_job(evaluate(args.stack), args.dump, args.empty_schema)
    except (pulumi.RunError, StackFileError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    out.write(describe(job, args.dump, args.empty_schema) + yaml.dump(job, Dumper=_ScriptsAsBlocks, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
