"""The `labelStudio.database` section: in-cluster PostgreSQL, an external server, or RDS."""

from __future__ import annotations

import re
from typing import Optional

from components.settings.checks import check_host_or_ip
from components.settings.model import BackupSettings, DatabaseMode, DatabaseSettings, RdsSettings
from components.settings.reader import Section, show

DEFAULT_BACKUP_SCHEDULE = "17 3 * * *"


def _check_postgres_version(text: str) -> Optional[str]:
    if re.match(r"^\d+(\.\d+)?$", text) and int(text.split(".")[0]) >= 14:
        return None
    return "is not a supported PostgreSQL version; expected 14 or newer, e.g. 16 or 16.4"


# What Kubernetes' CronJob parser (robfig/cron, standard) accepts: five fields or a macro.
CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_CRON_FIELDS = (  # (low, high, names)
    (0, 59, ()), (0, 23, ()), (1, 31, ()),
    (1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    (0, 6, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)


def _cron_value(text: str, low: int, names: tuple[str, ...]) -> Optional[int]:
    if text.isdigit():
        return int(text)
    return names.index(text.lower()) + low if text.lower() in names else None


def _cron_field_ok(field: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    for item in field.split(","):
        span, _, step = item.partition("/")
        if step and not (step.isdigit() and int(step) > 0):
            return False
        if span in ("*", "?"):
            continue
        start_text, dash, end_text = span.partition("-")
        start = _cron_value(start_text, low, names)
        end = _cron_value(end_text, low, names) if dash else start
        if start is None or end is None or not low <= start <= end <= high:
            return False
    return True


def check_cron(text: str) -> Optional[str]:
    fields = text.split()
    if text in CRON_MACROS or (len(fields) == 5 and all(
            _cron_field_ok(field, *limits) for field, limits in zip(fields, _CRON_FIELDS))):
        return None
    return ("is not a cron schedule; expected five fields like \"17 3 * * *\" or \"0 6 * * MON-FRI\", "
            "or a macro like @daily")


def _check_pg_identifier(text: str) -> Optional[str]:
    if not re.match(r"^[a-z_][a-z0-9_]{0,62}$", text):
        return "is not a PostgreSQL identifier; expected lowercase letters, digits and '_'"
    if text.startswith("pg_") or text == "rdsadmin":
        return "is reserved by PostgreSQL or RDS (pg_* and rdsadmin); expected another name, e.g. labelstudio"
    return None


def _check_snapshot(text: str) -> Optional[str]:
    # A snapshot of this account by identifier, or a shared one by ARN.
    if text.startswith("arn:") or (re.match(r"^[A-Za-z][A-Za-z0-9-]{0,254}$", text)
                                   and "--" not in text and not text.endswith("-")):
        return None
    return "is not a snapshot identifier or ARN; expected a letter, then letters, digits and single '-' inside"


def _pattern_check(pattern: str, problem: str):
    return lambda value: None if re.match(pattern, value) else problem


def _id_list(section: Section, name: str, doc: str, pattern: str, example: str) -> tuple[str, ...]:
    values = []
    for i, value in enumerate(section.items(name, doc, f"list of {example}-style ids")):
        if isinstance(value, str) and re.match(pattern, value):
            values.append(value)
        else:
            section.problems.error(f"{section.key(name)}[{i}]", f"{show(value)} is not an id like {example}")
    return tuple(values)


def _rds(section: Section, production: bool, active: bool) -> RdsSettings:
    vpc_id = section.string("vpcId", "VPC of the database and the cluster.", kind="VPC id",
                            check=_pattern_check(r"^vpc-[0-9a-f]{8,17}$", "is not a VPC id like vpc-0abc1234"))
    subnet_ids = _id_list(section, "subnetIds", "Private subnets (two or more zones) of the DB subnet group.",
                          r"^subnet-[0-9a-f]{8,17}$", "subnet-0abc1234")
    instance_class = section.string(
        "instanceClass", "RDS instance class.", "db.t4g.medium", kind="instance class",
        check=_pattern_check(r"^db\.[a-z0-9]+\.[a-z0-9]+$", "is not an instance class like db.t4g.medium"))
    engine_version = section.string("engineVersion", "PostgreSQL major version (Label Studio needs 14 or newer).", "16",
                                    check=_check_postgres_version, kind="major version")
    allocated = section.integer("allocatedStorageGb", "Initial storage in GiB.", 20, minimum=20, maximum=65536)
    max_allocated = section.integer("maxAllocatedStorageGb", "Storage autoscaling ceiling in GiB.", 100, minimum=20, maximum=65536)
    multi_az = section.boolean("multiAz", "Standby in a second availability zone.", False)
    retention = section.integer("backupRetentionDays", "Days of automated backups (7 or more in a protected stack).", 7,
                                minimum=1, maximum=35)
    groups = _id_list(section, "allowedSecurityGroupIds", "Security groups (the cluster nodes') admitted on 5432.",
                      r"^sg-[0-9a-f]{8,17}$", "sg-0abc1234")
    cidrs = section.cidrs("allowedCidrs", "CIDR ranges (the cluster's pod or node network) admitted on 5432.",
                          private_only=True)
    snapshot = section.string(
        "snapshotIdentifier", "Create the instance from this snapshot: the restore path (docs/database.md).",
        kind="snapshot id", check=_check_snapshot)
    section.finish()
    if active:
        if not vpc_id and not section.has("vpcId"):
            section.error("vpcId", "is required when mode is rds")
        listed = section.raw.get("subnetIds")
        if len(subnet_ids) < 2 and (not isinstance(listed, list) or len(listed) == len(subnet_ids)):
            section.error("subnetIds", "needs at least two subnets in different zones when mode is rds")
        if not groups and not cidrs and not section.raw.get("allowedCidrs"):
            section.error("allowedSecurityGroupIds", "or allowedCidrs must admit the cluster when mode is rds; expected at least one")
        if production and retention < 7:
            section.error("backupRetentionDays", f"{retention} is too short for a protected stack; expected 7 or more")
        # RDS refuses a storage autoscaling ceiling less than 10% above the allocated storage.
        if max_allocated * 10 < allocated * 11:
            section.error("maxAllocatedStorageGb", f"{max_allocated} is not 10% above allocatedStorageGb {allocated}; "
                                                   f"expected {-(-allocated * 11 // 10)} or more")
    return RdsSettings(vpc_id, subnet_ids, instance_class or "db.t4g.medium", engine_version or "16", allocated,
                       max_allocated, multi_az, retention, groups, cidrs, snapshot)


def _backup(section: Section) -> BackupSettings:
    enabled = section.boolean("enabled", "Dump the in-cluster database to <storage.prefix>/backups/ on a schedule.", True)
    schedule = section.string("schedule", "Cron schedule of the dump (cluster time zone).", DEFAULT_BACKUP_SCHEDULE,
                              check=check_cron, kind="cron schedule")
    retention = section.integer("retentionDays", "Days a dump is kept in the bucket.", 14, minimum=1, maximum=3650)
    section.finish()
    if not enabled:
        section.inapplicable(("schedule", "retentionDays"), "while backups are disabled")
    return BackupSettings(enabled, schedule or DEFAULT_BACKUP_SCHEDULE, retention)


def read_database(section: Section, secret_keys: frozenset[str], production: bool) -> DatabaseSettings:
    mode = section.choice(
        "mode", "Where PostgreSQL runs: the chart's in-cluster StatefulSet, an external server, or RDS made by the stack.",
        [m.value for m in DatabaseMode], DatabaseMode.IN_CLUSTER.value)
    mode = DatabaseMode(mode or DatabaseMode.IN_CLUSTER)
    host = section.string("host", "External PostgreSQL host name (mode external).", check=check_host_or_ip)
    port = section.integer("port", "External PostgreSQL port.", 5432, minimum=1, maximum=65535)
    name = section.string("name", "Database name.", "labelstudio", check=_check_pg_identifier)
    user = section.string("user", "Database user.", "labelstudio", check=_check_pg_identifier)
    password = section.secret("password", "External database password (mode external; generated for inCluster).",
                              secret_keys=secret_keys, top_key="labelStudio")
    storage_size = section.quantity("storageSize", "Volume size of the in-cluster PostgreSQL.", "10Gi")
    ssl_mode = section.choice("sslMode", "libpq sslmode toward an external server.",
                              ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"), None)
    egress_cidrs = section.cidrs("egressCidrs", "Where an external server lives, for Label Studio's egress "
                                                "(default: any address, on the server's port only).")
    rds = _rds(section.section("rds", "The RDS PostgreSQL instance (mode rds)."), production, mode is DatabaseMode.RDS)
    backup = _backup(section.section("backup", "Scheduled dumps of the in-cluster database (mode inCluster)."))
    section.finish()
    # Changing the mode is one key: what belongs to the other modes is ignored, not refused.
    because = f"while labelStudio.database.mode is {mode.value}"
    if mode is not DatabaseMode.RDS:
        section.inapplicable(("rds",), because)
        if production and section.has("rds"):
            section.problems.warnings.append(
                f"{section.key('mode')}: {mode.value} in a protected stack that still holds an rds section: an RDS "
                "instance this stack created is protected, so `pulumi up` stops before dropping it; restore its "
                "data first (docs/database.md)")
    if mode is not DatabaseMode.IN_CLUSTER:
        section.inapplicable(("backup", "storageSize"), because + "; RDS and external servers keep their own backups")
    if mode is DatabaseMode.EXTERNAL:
        if not host:
            section.error("host", "is required when mode is external; expected the server's host name")
        if password is None and not section.has("password"):
            section.error("password", "is required when mode is external; set it with `pulumi config set --secret`")
        return DatabaseSettings(mode, host, port, name, user, password, storage_size, ssl_mode, rds, backup,
                                egress_cidrs)
    section.inapplicable(("host", "port", "password", "sslMode", "egressCidrs"),
                         because + ": the stack configures this database itself")
    return DatabaseSettings(mode, None, 5432, name, user, None, storage_size, None, rds, backup)
