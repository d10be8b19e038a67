"""The `labelStudio.database` section: in-cluster PostgreSQL, an external server, or RDS."""

from __future__ import annotations

import ipaddress
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


def _check_cron(text: str) -> Optional[str]:
    fields = text.split()
    if len(fields) == 5 and all(re.match(r"^[\d*/,-]+$", f) for f in fields):
        return None
    return "is not a cron schedule; expected five fields like \"17 3 * * *\""


def _check_pg_identifier(text: str) -> Optional[str]:
    return None if re.match(r"^[a-z_][a-z0-9_]{0,62}$", text) else "is not a PostgreSQL identifier; expected lowercase letters, digits and '_'"


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


def _private_cidrs(section: Section, name: str, doc: str) -> tuple[str, ...]:
    cidrs = []
    for i, cidr in enumerate(section.items(name, doc, "list of CIDRs")):
        try:
            network = ipaddress.ip_network(cidr)
        except (TypeError, ValueError):
            section.problems.error(f"{section.key(name)}[{i}]", f"{show(cidr)} is not a CIDR like 10.0.0.0/16")
            continue
        if network.prefixlen == 0 or network.is_global:
            section.problems.error(f"{section.key(name)}[{i}]", f"{show(cidr)} is public; expected a private range of the cluster")
        else:
            cidrs.append(cidr)
    return tuple(cidrs)


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
    cidrs = _private_cidrs(section, "allowedCidrs", "CIDR ranges (the cluster's pod or node network) admitted on 5432.")
    snapshot = section.string(
        "snapshotIdentifier", "Create the instance from this snapshot: the restore path (docs/database.md).",
        kind="snapshot id",
        check=_pattern_check(r"^[A-Za-z][A-Za-z0-9:-]{0,254}$", "is not a snapshot identifier or ARN"))
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
        if max_allocated < allocated:
            section.error("maxAllocatedStorageGb", f"{max_allocated} is below allocatedStorageGb {allocated}")
    return RdsSettings(vpc_id, subnet_ids, instance_class or "db.t4g.medium", engine_version or "16", allocated,
                       max_allocated, multi_az, retention, groups, cidrs, snapshot)


def _backup(section: Section) -> BackupSettings:
    enabled = section.boolean("enabled", "Dump the in-cluster database to <storage.prefix>/backups/ on a schedule.", True)
    schedule = section.string("schedule", "Cron schedule of the dump (cluster time zone).", DEFAULT_BACKUP_SCHEDULE,
                              check=_check_cron, kind="cron schedule")
    retention = section.integer("retentionDays", "Days a dump is kept in the bucket.", 14, minimum=1, maximum=3650)
    section.finish()
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
    rds = _rds(section.section("rds", "The RDS PostgreSQL instance (mode rds)."), production, mode is DatabaseMode.RDS)
    backup = _backup(section.section("backup", "Scheduled dumps of the in-cluster database (mode inCluster)."))
    section.finish()
    if mode is not DatabaseMode.RDS and section.has("rds"):
        section.error("rds", "applies only to mode rds")
    if mode is not DatabaseMode.IN_CLUSTER and section.has("backup"):
        section.error("backup", "applies only to mode inCluster; RDS and external servers keep their own backups")
    if mode is DatabaseMode.EXTERNAL:
        if not host:
            section.error("host", "is required when mode is external; expected the server's host name")
        if password is None and not section.has("password"):
            section.error("password", "is required when mode is external; set it with `pulumi config set --secret`")
    else:
        for key in ("host", "password", "sslMode"):
            if section.has(key):
                section.error(key, "applies only to mode external; the stack configures this database itself")
    return DatabaseSettings(mode, host, port, name, user, password, storage_size, ssl_mode, rds, backup)
