"""The stack's configuration contract: parsed once, validated, frozen.

Every key a user can set with `pulumi config set --path` is read here, through a
`_Section` reader that records what it reads (path, type, default, description).
That record is the single source for validation, for "did you mean" suggestions on
unknown keys, and for the generated config reference (docs/config.md).

Problems are collected across the whole stack and reported together, one line each,
as `<key path>: <what is wrong>; <what is allowed>`. `ConfigError` carries them;
`__main__.py` turns it into a clean Pulumi error before any resource is declared.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence
from urllib.parse import urlsplit

import pulumi

PROJECT = "labeling-platform"
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The chart and application versions this stack was built and verified against.
DEFAULT_CHART_VERSION = "2.0.5"
DEFAULT_LABEL_STUDIO_IMAGE_TAG = "1.23.2"

SAM_PORT = 9090
PORT_FORWARD_URL = "http://localhost:8080"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")
_QUANTITY = re.compile(r"^(\d+(\.\d+)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_NGINX_SIZE = re.compile(r"^\d+[kKmMgG]?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_S3_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()/-]*$")
_ARN = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{0,12}:.+$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_MOVING_TAG = re.compile(r"^(latest|main|master|edge|nightly|dev)$|-(latest|main|master)$")

_QUANTITY_SCALE = {
    None: Decimal(1), "m": Decimal("0.001"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}

_MISSING = object()


class ConfigError(Exception):
    """The stack's configuration is invalid; `problems` holds one line per mistake."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__(self.message())

    def message(self) -> str:
        count = len(self.problems)
        head = f"invalid configuration for {PROJECT} ({count} problem{'s' if count != 1 else ''}):"
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


def quantity_value(text: str) -> Decimal:
    """The numeric value of a Kubernetes quantity ("500m" -> 0.5, "1Gi" -> 1073741824)."""
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    return Decimal(match.group(1)) * _QUANTITY_SCALE[match.group(3)]


@dataclass(frozen=True)
class FieldDoc:
    """One configuration key as the reader saw it: the raw material of docs/config.md."""

    path: str
    kind: str
    default: Any
    description: str
    secret: bool = False


# --------------------------------------------------------------------------- reader


class _Problems:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.fields: dict[str, FieldDoc] = {}

    def error(self, path: str, text: str) -> None:
        self.errors.append(f"{path}: {text}")


def _show(value: Any) -> str:
    return json.dumps(value)


class _Section:
    """Reads one mapping of the configuration, recording each key it is asked for."""

    def __init__(self, path: str, raw: Any, problems: _Problems):
        self.path = path
        self.problems = problems
        self.read: set[str] = set()
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            problems.error(path, f"{_show(raw)} is not an object; expected a mapping of keys")
            raw = {}
        self.raw: Mapping[str, Any] = raw

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return name in self.raw

    def _take(self, name: str, kind: str, default: Any, doc: str, secret: bool = False) -> Any:
        self.read.add(name)
        self.problems.fields.setdefault(
            self.key(name), FieldDoc(self.key(name), kind, None if default is _MISSING else default, doc, secret)
        )
        value = self.raw.get(name, _MISSING)
        return value

    def string(self, name: str, doc: str, default: Any = None, *, required: bool = False,
               check: Optional[Callable[[str], Optional[str]]] = None, secret: bool = False,
               kind: str = "string") -> Any:
        value = self._take(name, kind, default, doc, secret)
        if value is _MISSING or value is None:
            if required:
                self.problems.error(self.key(name), "is required; " + doc[0].lower() + doc[1:].rstrip("."))
            return default
        if not isinstance(value, str):
            self.problems.error(self.key(name), f"{_show(value)} is not a string; expected {kind}")
            return default
        if check:
            problem = check(value)
            if problem:
                shown = "[secret]" if secret else _show(value)
                self.problems.error(self.key(name), f"{shown} {problem}")
                return default
        return value

    def secret(self, name: str, doc: str, *, secret_keys: frozenset[str], top_key: str) -> Optional[pulumi.Output]:
        value = self.string(name, doc, secret=True, kind="string (secret)")
        if value is None:
            return None
        if top_key not in secret_keys:
            self.problems.error(
                self.key(name),
                f"is stored in plain text; set it with `pulumi config set --secret --path {self.key(name)} ...`",
            )
        return pulumi.Output.secret(value)

    def integer(self, name: str, doc: str, default: int, *, minimum: int, maximum: int) -> int:
        value = self._take(name, f"integer {minimum}..{maximum}", default, doc)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problems.error(self.key(name), f"{_show(value)} is not an integer; expected an integer from {minimum} to {maximum}")
            return default
        if not minimum <= value <= maximum:
            self.problems.error(self.key(name), f"{value} is out of range; expected an integer from {minimum} to {maximum}")
            return default
        return value

    def boolean(self, name: str, doc: str, default: bool) -> bool:
        value = self._take(name, "boolean", default, doc)
        if value is _MISSING or value is None:
            return default
        # Top-level keys arrive from the CLI as the strings "true"/"false".
        if isinstance(value, str) and value in ("true", "false"):
            return value == "true"
        if not isinstance(value, bool):
            self.problems.error(self.key(name), f"{_show(value)} is not a boolean; expected true or false")
            return default
        return value

    def choice(self, name: str, doc: str, choices: Sequence[str], default: Any = None, *, required: bool = False) -> Any:
        allowed = " | ".join(choices)
        value = self._take(name, f"one of {allowed}", default, doc)
        if value is _MISSING or value is None:
            if required:
                self.problems.error(self.key(name), f"is required; expected one of {allowed}")
            return default
        if value not in choices:
            hint = difflib.get_close_matches(str(value), choices, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            self.problems.error(self.key(name), f"{_show(value)} is not allowed{suggestion}; expected one of {allowed}")
            return default
        return value

    def quantity(self, name: str, doc: str, default: Optional[str]) -> Optional[str]:
        return self.string(name, doc, default, kind="Kubernetes quantity", check=_check_quantity)

    def string_map(self, name: str, doc: str, *, key_check: Callable[[str], Optional[str]]) -> dict[str, str]:
        value = self._take(name, "map of string to string", {}, doc)
        if value is _MISSING or value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problems.error(self.key(name), f"{_show(value)} is not an object; expected a map of string to string")
            return {}
        result: dict[str, str] = {}
        for k, v in value.items():
            problem = key_check(k)
            if problem:
                self.problems.error(f"{self.key(name)}.{k}", problem)
            elif not isinstance(v, str):
                self.problems.error(f"{self.key(name)}.{k}", f"{_show(v)} is not a string; expected a string value")
            else:
                result[k] = v
        return result

    def items(self, name: str, doc: str, kind: str) -> list[Any]:
        value = self._take(name, kind, [], doc)
        if value is _MISSING or value is None:
            return []
        if not isinstance(value, list):
            self.problems.error(self.key(name), f"{_show(value)} is not a list; expected {kind}")
            return []
        return value

    def section(self, name: str, doc: str) -> "_Section":
        value = self._take(name, "object", None, doc)
        return _Section(self.key(name), None if value is _MISSING else value, self.problems)

    def finish(self) -> None:
        """Report keys nobody asked for, with the closest known key as a hint."""
        for unknown in sorted(set(self.raw) - self.read, key=str):
            hint = difflib.get_close_matches(str(unknown), sorted(self.read), n=1, cutoff=0.6)
            suggestion = f"; did you mean {self.key(hint[0])!r}?" if hint else ""
            known = ", ".join(sorted(self.read))
            self.problems.error(self.key(str(unknown)), f"is not a known key{suggestion} (known keys here: {known})")


# --------------------------------------------------------------------------- checks


def _check_quantity(text: str) -> Optional[str]:
    return None if _QUANTITY.match(text) else "is not a Kubernetes quantity; expected e.g. 500m, 2, 1Gi, 512Mi"


def _check_dns_label(text: str) -> Optional[str]:
    if len(text) <= 63 and _DNS_LABEL.match(text):
        return None
    return "is not a DNS label; expected at most 63 lowercase letters, digits and '-', starting and ending alphanumeric"


def _check_hostname(text: str) -> Optional[str]:
    labels = text.split(".")
    if len(text) <= 253 and len(labels) >= 2 and all(len(l) <= 63 and _DNS_LABEL.match(l) for l in labels):
        return None
    return "is not a DNS host name; expected lowercase labels joined by dots, e.g. label.example.com"


def _check_semver(text: str) -> Optional[str]:
    return None if _SEMVER.match(text) else "is not a pinned version; expected an exact version like 2.0.5"


def _check_image_tag(text: str) -> Optional[str]:
    if text == "latest" or not _SEMVER.match(text):
        return "is not a pinned release; expected an exact version like 1.23.2 (never latest)"
    return None


def _check_email(text: str) -> Optional[str]:
    return None if _EMAIL.match(text) else "is not an email address; expected e.g. admin@example.com"


def _check_http_origin(text: str) -> Optional[str]:
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.hostname and parts.path in ("",) and not parts.query:
        return None
    return "is not an origin; expected scheme and host only, e.g. https://label.example.com"


def _check_endpoint(text: str) -> Optional[str]:
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.hostname and parts.path in ("", "/"):
        return None
    return "is not an endpoint URL; expected e.g. https://s3.example.com or http://minio.storage.svc:9000"


def _check_bucket(text: str) -> Optional[str]:
    if _BUCKET.match(text) and ".." not in text and not _is_ip(text):
        return None
    return "is not a valid S3 bucket name; expected 3-63 lowercase letters, digits, '.' and '-'"


def _check_prefix(text: str) -> Optional[str]:
    if _S3_PREFIX.match(text) and not text.startswith("/") and not text.endswith("/") and "//" not in text:
        return None
    return "is not a key prefix; expected path segments like label-studio or images/cats, without leading or trailing '/'"


def _check_arn(text: str) -> Optional[str]:
    return None if _ARN.match(text) else "is not an ARN; expected arn:aws:<service>:<region>:<account>:<resource>"


def _check_nginx_size(text: str) -> Optional[str]:
    return None if _NGINX_SIZE.match(text) else "is not an nginx size; expected a number with optional k, m or g, e.g. 100m"


def _check_label_key(text: str) -> Optional[str]:
    return None if _LABEL_KEY.match(text) and len(text) <= 253 else "is not a Kubernetes label key"


def _check_regex(text: str) -> Optional[str]:
    try:
        re.compile(text)
    except re.error as exc:
        return f"is not a regular expression ({exc})"
    return None


def _check_region(text: str) -> Optional[str]:
    return None if re.match(r"^[a-z]{2}(-[a-z]+)+-\d$", text) else "is not a region; expected e.g. us-east-1"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def image_reference_problem(image: str) -> tuple[Optional[str], bool]:
    """(hard problem, moving) for a container image reference.

    A missing tag or `latest` is always wrong; a tag that upstream moves (`main`,
    `sam-master`) is only safe with a digest beside it.
    """
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2] if ":" in last else ""
    if digest and not re.match(r"^sha256:[0-9a-f]{64}$", digest):
        return "has a malformed digest; expected @sha256:<64 hex digits>", False
    if not tag and not digest:
        return "has no tag; expected repository:tag, pinned to a release", False
    if tag == "latest":
        return "uses the tag latest; expected a pinned tag", False
    return None, bool(_MOVING_TAG.search(tag)) and not digest


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Resources:
    requests: Mapping[str, str]
    limits: Mapping[str, str]

    def as_dict(self) -> dict[str, dict[str, str]]:
        return {"requests": dict(self.requests), "limits": dict(self.limits)}


@dataclass(frozen=True)
class KubernetesSettings:
    context: Optional[str]
    kubeconfig: Optional[pulumi.Output]


@dataclass(frozen=True)
class RdsSettings:
    vpc_id: Optional[str]
    subnet_ids: tuple[str, ...]
    instance_class: str
    engine_version: str
    allocated_storage_gb: int
    max_allocated_storage_gb: int
    multi_az: bool
    backup_retention_days: int
    allowed_security_group_ids: tuple[str, ...]
    allowed_cidrs: tuple[str, ...]
    snapshot_identifier: Optional[str]


@dataclass(frozen=True)
class BackupSettings:
    """Nightly dumps of the in-cluster database into the bucket."""

    enabled: bool
    schedule: str
    retention_days: int


@dataclass(frozen=True)
class DatabaseSettings:
    mode: str
    host: Optional[str]
    port: int
    name: str
    user: str
    password: Optional[pulumi.Output]
    storage_size: str
    ssl_mode: Optional[str]
    rds: RdsSettings
    backup: BackupSettings


@dataclass(frozen=True)
class LabelStudioSettings:
    release_name: str
    chart_version: str
    image_tag: str
    replicas: int
    resources: Resources
    admin_email: str
    public_url: str
    database: DatabaseSettings

    @property
    def app_service_name(self) -> str:
        """The chart's app Service/Deployment name, `<release>-ls-app` (see _helpers.tpl)."""
        return self.release_name if "ls-app" in self.release_name else f"{self.release_name}-ls-app"


@dataclass(frozen=True)
class StorageSettings:
    mode: str
    bucket_name: str
    region: str
    endpoint: Optional[str]
    prefix: str
    force_destroy: bool
    access_key_id: Optional[pulumi.Output]
    secret_access_key: Optional[pulumi.Output]
    kms_key_arn: Optional[str]
    oidc_provider_arn: Optional[str]
    allow_private_endpoint: bool


@dataclass(frozen=True)
class TlsSettings:
    cluster_issuer: Optional[str]
    secret_name: Optional[str]


@dataclass(frozen=True)
class IngressSettings:
    enabled: bool
    host: Optional[str]
    class_name: str
    tls: Optional[TlsSettings]
    max_body_size: str


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: str
    value: Optional[str]
    effect: Optional[str]

    def as_dict(self) -> dict[str, str]:
        out = {"key": self.key, "operator": self.operator}
        if self.value is not None:
            out["value"] = self.value
        if self.effect is not None:
            out["effect"] = self.effect
        return out


@dataclass(frozen=True)
class SamSettings:
    enabled: bool
    model: str
    image: Optional[str]
    gpus: int
    node_selector: Mapping[str, str]
    tolerations: tuple[Toleration, ...]
    resources: Resources
    shm_size: str
    startup_timeout_seconds: int


@dataclass(frozen=True)
class LabelingProject:
    title: str
    label_config_path: str
    label_config: str
    prefix: str
    regex_filter: str
    sam: bool


@dataclass(frozen=True)
class LabelingSettings:
    projects: tuple[LabelingProject, ...]
    members: tuple[str, ...]


@dataclass(frozen=True)
class Settings:
    stack: str
    namespace: str
    protect: bool
    kubernetes: KubernetesSettings
    label_studio: LabelStudioSettings
    storage: StorageSettings
    ingress: IngressSettings
    sam: SamSettings
    labeling: LabelingSettings
    warnings: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- parsing


_RESOURCE_DOCS = {"cpu": "CPU", "memory": "memory", "ephemeral-storage": "ephemeral storage"}


def _resources(section: _Section, defaults: Resources, names: Sequence[str]) -> Resources:
    parts = {}
    for part in ("requests", "limits"):
        sub = section.section(part, f"Resource {part} of each container.")
        values = {}
        for resource in names:
            doc = _RESOURCE_DOCS[resource]
            value = sub.quantity(resource, f"{doc} {part[:-1]}", getattr(defaults, part).get(resource))
            if value is not None:
                values[resource] = value
        sub.finish()
        parts[part] = values
    section.finish()
    for resource, request in parts["requests"].items():
        limit = parts["limits"].get(resource)
        if limit and _QUANTITY.match(request) and _QUANTITY.match(limit) and quantity_value(request) > quantity_value(limit):
            section.problems.error(
                section.key(f"requests.{resource}"),
                f"{_show(request)} is above the limit {_show(limit)}; expected requests <= limits",
            )
    return Resources(parts["requests"], parts["limits"])


def _kubernetes(section: _Section, secret_keys: frozenset[str]) -> KubernetesSettings:
    context = section.string("context", "kubeconfig context to deploy into (default: the kubeconfig's current context).")
    kubeconfig = section.secret(
        "kubeconfig", "Kubeconfig contents for the cluster (default: the ambient KUBECONFIG).",
        secret_keys=secret_keys, top_key="kubernetes",
    )
    section.finish()
    return KubernetesSettings(context, kubeconfig)


def _id_list(section: _Section, name: str, doc: str, pattern: str, example: str) -> tuple[str, ...]:
    values = []
    for i, value in enumerate(section.items(name, doc, f"list of {example}-style ids")):
        if isinstance(value, str) and re.match(pattern, value):
            values.append(value)
        else:
            section.problems.error(f"{section.key(name)}[{i}]", f"{_show(value)} is not an id like {example}")
    return tuple(values)


def _rds(section: _Section, production: bool, active: bool) -> RdsSettings:
    vpc_id = section.string("vpcId", "VPC of the database and the cluster.",
                            check=lambda v: None if re.match(r"^vpc-[0-9a-f]{8,17}$", v) else "is not a VPC id like vpc-0abc1234",
                            kind="VPC id")
    subnet_ids = _id_list(section, "subnetIds", "Private subnets (two or more zones) of the DB subnet group.",
                          r"^subnet-[0-9a-f]{8,17}$", "subnet-0abc1234")
    instance_class = section.string("instanceClass", "RDS instance class.", "db.t4g.medium",
                                    check=lambda v: None if re.match(r"^db\.[a-z0-9]+\.[a-z0-9]+$", v) else "is not an instance class like db.t4g.medium",
                                    kind="instance class")
    engine_version = section.string("engineVersion", "PostgreSQL major version (Label Studio needs 14 or newer).", "16",
                                    check=_check_postgres_version, kind="major version")
    allocated = section.integer("allocatedStorageGb", "Initial storage in GiB.", 20, minimum=20, maximum=65536)
    max_allocated = section.integer("maxAllocatedStorageGb", "Storage autoscaling ceiling in GiB.", 100, minimum=20, maximum=65536)
    multi_az = section.boolean("multiAz", "Standby in a second availability zone.", False)
    retention = section.integer("backupRetentionDays", "Days of automated backups (7 or more in a protected stack).", 7,
                                minimum=1, maximum=35)
    groups = _id_list(section, "allowedSecurityGroupIds", "Security groups (the cluster nodes') admitted on 5432.",
                      r"^sg-[0-9a-f]{8,17}$", "sg-0abc1234")
    cidrs = section.items("allowedCidrs", "CIDR ranges (the cluster's pod or node network) admitted on 5432.", "list of CIDRs")
    snapshot = section.string("snapshotIdentifier", "Create the instance from this snapshot: the restore path (docs/database.md).",
                              check=lambda v: None if re.match(r"^[A-Za-z][A-Za-z0-9:-]{0,254}$", v) else "is not a snapshot identifier or ARN",
                              kind="snapshot id")
    section.finish()
    for i, cidr in enumerate(cidrs):
        try:
            network = ipaddress.ip_network(cidr)
            if network.prefixlen == 0 or network.is_global:
                section.problems.error(f"{section.key('allowedCidrs')}[{i}]", f"{_show(cidr)} is public; expected a private range of the cluster")
        except (TypeError, ValueError):
            section.problems.error(f"{section.key('allowedCidrs')}[{i}]", f"{_show(cidr)} is not a CIDR like 10.0.0.0/16")
    if active:
        if not vpc_id and not section.has("vpcId"):
            section.problems.error(section.key("vpcId"), "is required when mode is rds")
        listed = section.raw.get("subnetIds")
        if len(subnet_ids) < 2 and (not isinstance(listed, list) or len(listed) == len(subnet_ids)):
            section.problems.error(section.key("subnetIds"), "needs at least two subnets in different zones when mode is rds")
        if not groups and not cidrs:
            section.problems.error(section.key("allowedSecurityGroupIds"),
                                   "or allowedCidrs must admit the cluster when mode is rds; expected at least one")
        if production and retention < 7:
            section.problems.error(section.key("backupRetentionDays"), f"{retention} is too short for a protected stack; expected 7 or more")
        if max_allocated < allocated:
            section.problems.error(section.key("maxAllocatedStorageGb"), f"{max_allocated} is below allocatedStorageGb {allocated}")
    return RdsSettings(vpc_id, subnet_ids, instance_class or "db.t4g.medium", engine_version or "16", allocated,
                       max_allocated, multi_az, retention, groups, tuple(c for c in cidrs if isinstance(c, str)), snapshot)


def _check_postgres_version(text: str) -> Optional[str]:
    if re.match(r"^\d+(\.\d+)?$", text) and int(text.split(".")[0]) >= 14:
        return None
    return "is not a supported PostgreSQL version; expected 14 or newer, e.g. 16 or 16.4"


def _check_cron(text: str) -> Optional[str]:
    fields = text.split()
    if len(fields) == 5 and all(re.match(r"^[\d*/,-]+$", f) for f in fields):
        return None
    return "is not a cron schedule; expected five fields like \"17 3 * * *\""


def _backup(section: _Section) -> BackupSettings:
    enabled = section.boolean("enabled", "Dump the in-cluster database to <storage.prefix>/backups/ on a schedule.", True)
    schedule = section.string("schedule", "Cron schedule of the dump (cluster time zone).", "17 3 * * *",
                              check=_check_cron, kind="cron schedule")
    retention = section.integer("retentionDays", "Days a dump is kept in the bucket.", 14, minimum=1, maximum=3650)
    section.finish()
    return BackupSettings(enabled, schedule or "17 3 * * *", retention)


def _database(section: _Section, secret_keys: frozenset[str], production: bool) -> DatabaseSettings:
    mode = section.choice("mode", "Where PostgreSQL runs: the chart's in-cluster StatefulSet, an external server, or RDS made by the stack.",
                          ("inCluster", "external", "rds"), "inCluster")
    host = section.string("host", "External PostgreSQL host name (mode external).", check=_check_host_or_ip)
    port = section.integer("port", "External PostgreSQL port.", 5432, minimum=1, maximum=65535)
    name = section.string("name", "Database name.", "labelstudio", check=_check_pg_identifier)
    user = section.string("user", "Database user.", "labelstudio", check=_check_pg_identifier)
    password = section.secret("password", "External database password (mode external; generated for inCluster).",
                              secret_keys=secret_keys, top_key="labelStudio")
    storage_size = section.quantity("storageSize", "Volume size of the in-cluster PostgreSQL.", "10Gi")
    ssl_mode = section.choice("sslMode", "libpq sslmode toward an external server.",
                              ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"), None)
    rds = _rds(section.section("rds", "The RDS PostgreSQL instance (mode rds)."), production, mode == "rds")
    backup = _backup(section.section("backup", "Scheduled dumps of the in-cluster database (mode inCluster)."))
    section.finish()
    if mode != "rds" and section.has("rds"):
        section.problems.error(section.key("rds"), "applies only to mode rds")
    if mode != "inCluster" and section.has("backup"):
        section.problems.error(section.key("backup"), "applies only to mode inCluster; RDS and external servers keep their own backups")
    if mode == "external":
        if not host:
            section.problems.error(section.key("host"), "is required when mode is external; expected the server's host name")
        if password is None and not section.has("password"):
            section.problems.error(section.key("password"), "is required when mode is external; set it with `pulumi config set --secret`")
    else:
        for key in ("host", "password", "sslMode"):
            if section.has(key):
                section.problems.error(section.key(key), "applies only to mode external; the stack configures this database itself")
    return DatabaseSettings(mode, host, port, name, user, password, storage_size, ssl_mode, rds, backup)


def _check_host_or_ip(text: str) -> Optional[str]:
    if _is_ip(text) or _check_hostname(text) is None or _check_dns_label(text) is None:
        return None
    return "is not a host name or IP address"


def _check_pg_identifier(text: str) -> Optional[str]:
    return None if re.match(r"^[a-z_][a-z0-9_]{0,62}$", text) else "is not a PostgreSQL identifier; expected lowercase letters, digits and '_'"


def _check_release_name(text: str) -> Optional[str]:
    problem = _check_dns_label(text)
    if problem:
        return problem
    if len(text) > 40:
        return "is too long; expected at most 40 characters so the chart's object names stay within 63"
    if "postgresql" in text:
        return "contains 'postgresql'; the chart derives the database host from the release name and breaks on it"
    return None


def _label_studio(section: _Section, ingress: IngressSettings, secret_keys: frozenset[str],
                  production: bool) -> LabelStudioSettings:
    release = section.string("releaseName", "Helm release name; names every chart object (`<release>-ls-app`).",
                             "label-studio", check=_check_release_name, kind="DNS label")
    chart_version = section.string("chartVersion", "heartex/label-studio chart version, pinned.",
                                   DEFAULT_CHART_VERSION, check=_check_semver, kind="exact version")
    image_tag = section.string("imageTag", "heartexlabs/label-studio image tag, pinned.",
                               DEFAULT_LABEL_STUDIO_IMAGE_TAG, check=_check_image_tag, kind="exact version")
    replicas = section.integer("replicas", "Label Studio app pods.", 1, minimum=1, maximum=20)
    resources = _resources(
        section.section("resources", "Requests and limits of each Label Studio app pod."),
        Resources({"cpu": "1000m", "memory": "1Gi"}, {"cpu": "4000m", "memory": "6144Mi"}),
        # The chart's values.schema.json admits only these two under app.resources.
        ("cpu", "memory"),
    )
    admin_email = section.string("adminEmail", "Email of the first-boot administrator account.",
                                 required=True, check=_check_email, kind="email")
    public_url = section.string(
        "publicUrl",
        f"Address people open (default https://<ingress.host>, or {PORT_FORWARD_URL} through kubectl port-forward).",
        check=_check_http_origin, kind="URL origin",
    )
    database = _database(section.section("database", "Label Studio's PostgreSQL database."), secret_keys, production)
    section.finish()
    if public_url is None:
        if ingress.enabled and ingress.host:
            public_url = f"{'https' if ingress.tls else 'http'}://{ingress.host}"
        else:
            public_url = PORT_FORWARD_URL
    return LabelStudioSettings(release or "label-studio", chart_version, image_tag, replicas, resources,
                               admin_email or "", public_url, database)


def _storage(section: _Section, secret_keys: frozenset[str]) -> StorageSettings:
    mode = section.choice("mode", "aws: the stack creates and hardens an S3 bucket; s3Compatible: use an existing S3-compatible store.",
                          ("aws", "s3Compatible"), required=True)
    bucket = section.string("bucketName", "Bucket holding source images, uploads, exports and backups.",
                            required=True, check=_check_bucket, kind="S3 bucket name")
    region = section.string("region", "Bucket region (required for aws; s3Compatible defaults to us-east-1).",
                            check=_check_region, kind="region")
    endpoint = section.string("endpoint", "S3 API endpoint URL (s3Compatible only).", check=_check_endpoint, kind="URL")
    prefix = section.string("prefix", "Key prefix under which Label Studio writes uploads, exports and backups.",
                            "label-studio", check=_check_prefix, kind="key prefix")
    force_destroy = section.boolean("forceDestroy", "Let `pulumi destroy` delete a non-empty bucket (aws; never with protect).", False)
    access_key = section.secret("accessKeyId", "Access key id of the existing store (s3Compatible only).",
                                secret_keys=secret_keys, top_key="storage")
    secret_key = section.secret("secretAccessKey", "Secret access key of the existing store (s3Compatible only).",
                                secret_keys=secret_keys, top_key="storage")
    kms = section.string("kmsKeyArn", "KMS key for bucket encryption (aws; default AES256).", check=_check_arn, kind="ARN")
    oidc = section.string("oidcProviderArn", "EKS OIDC provider ARN: Label Studio gets an IAM role (IRSA) instead of keys (aws).",
                          check=_check_arn, kind="ARN")
    allow_private = section.boolean(
        "allowPrivateEndpoint",
        "Lift Label Studio's SSRF block for storage endpoints so a private-network endpoint works (s3Compatible).", False)
    section.finish()
    if mode == "aws":
        if not region and not section.has("region"):
            section.problems.error(section.key("region"), "is required when mode is aws; expected e.g. us-east-1")
        for key in ("endpoint", "accessKeyId", "secretAccessKey", "allowPrivateEndpoint"):
            if section.has(key):
                section.problems.error(section.key(key), "applies only to mode s3Compatible; aws mode creates its own bucket and keys")
    elif mode == "s3Compatible":
        region = region or "us-east-1"
        for key, value in (("endpoint", endpoint), ("accessKeyId", access_key), ("secretAccessKey", secret_key)):
            if value is None and not section.has(key):
                section.problems.error(section.key(key), "is required when mode is s3Compatible")
        for key in ("kmsKeyArn", "oidcProviderArn", "forceDestroy"):
            if section.has(key):
                section.problems.error(section.key(key), "applies only to mode aws; the stack does not manage an existing store")
        if not allow_private and endpoint and _resolves_private(endpoint):
            section.problems.warnings.append(
                f"{section.key('endpoint')}: {endpoint} is on a private address; Label Studio refuses it unless "
                f"{section.key('allowPrivateEndpoint')} is true"
            )
    return StorageSettings(mode or "aws", bucket or "", region or "", endpoint, prefix or "label-studio",
                           force_destroy, access_key, secret_key, kms, oidc, allow_private)


def _resolves_private(url: str) -> bool:
    """True for endpoints that are literally private or in-cluster names (no DNS lookup here)."""
    host = urlsplit(url).hostname or ""
    if _is_ip(host):
        return not ipaddress.ip_address(host).is_global
    return host == "localhost" or host.endswith((".svc", ".svc.cluster.local", ".local", ".internal")) or "." not in host


def _ingress(section: _Section) -> IngressSettings:
    enabled = section.boolean("enabled", "Expose Label Studio through an Ingress.", False)
    host = section.string("host", "Public host name of Label Studio.", check=_check_hostname, kind="DNS name")
    class_name = section.string("className", "IngressClass to use.", "nginx", check=_check_dns_label, kind="DNS label")
    tls_section = section.section("tls", "TLS: set exactly one of clusterIssuer or secretName.")
    issuer = tls_section.string("clusterIssuer", "cert-manager ClusterIssuer that issues the certificate.",
                                check=_check_dns_label, kind="DNS label")
    secret_name = tls_section.string("secretName", "Existing TLS Secret in the platform namespace.",
                                     check=_check_dns_label, kind="DNS label")
    tls_section.finish()
    max_body = section.string("maxBodySize", "Largest upload through ingress-nginx (proxy-body-size).", "100m",
                              check=_check_nginx_size, kind="nginx size")
    section.finish()
    tls = None
    if issuer and secret_name:
        section.problems.error(tls_section.path, "sets both clusterIssuer and secretName; expected exactly one")
    elif issuer or secret_name:
        tls = TlsSettings(issuer, secret_name)
    if enabled and not host and not section.has("host"):
        section.problems.error(section.key("host"), "is required when the ingress is enabled; expected a DNS name")
    if tls and not enabled:
        section.problems.error(tls_section.path, "is set but ingress.enabled is false; enable the ingress or remove tls")
    return IngressSettings(enabled, host, class_name or "nginx", tls, max_body or "100m")


def _toleration(path: str, raw: Any, problems: _Problems) -> Optional[Toleration]:
    item = _Section(path, raw, problems)
    key = item.string("key", "Taint key.", required=True, check=_check_label_key, kind="label key")
    operator = item.choice("operator", "How the value matches.", ("Exists", "Equal"), "Equal")
    value = item.string("value", "Taint value (operator Equal).")
    effect = item.choice("effect", "Taint effect.", ("NoSchedule", "PreferNoSchedule", "NoExecute"), None)
    item.finish()
    if operator == "Exists" and value is not None:
        problems.error(item.key("value"), "is set with operator Exists; expected no value or operator Equal")
    return Toleration(key, operator, value, effect) if key else None


def _sam(section: _Section, production: bool) -> SamSettings:
    enabled = section.boolean("enabled", "Deploy the SAM ML backend and connect it to SAM-assisted projects.", True)
    model = section.choice("model", "SAM_CHOICE: MobileSAM (CPU-friendly) or SAM (ViT-H, needs a GPU).",
                           ("MobileSAM", "SAM"), "MobileSAM")
    image = section.string("image", "SAM backend image, repository:tag[@sha256:digest]; set it in every stack file.",
                           kind="image reference")
    gpus = section.integer("gpus", "nvidia.com/gpu limit of the SAM pod (0: CPU).", 0, minimum=0, maximum=8)
    node_selector = section.string_map("nodeSelector", "Node labels the SAM pod must run on.", key_check=_check_label_key)
    tolerations_raw = section.items("tolerations", "Taints the SAM pod tolerates (default for gpus > 0: nvidia.com/gpu Exists).",
                                    "list of {key, operator, value, effect}")
    resources = _resources(
        section.section("resources", "Requests and limits of the SAM pod (GPUs come from sam.gpus)."),
        Resources({"cpu": "1", "memory": "4Gi"}, {"cpu": "4", "memory": "8Gi"}),
        ("cpu", "memory", "ephemeral-storage"),
    )
    shm_size = section.quantity("shmSize", "Size of the in-memory /dev/shm volume.", "2Gi")
    startup = section.integer("startupTimeoutSeconds", "How long the model may take to load before the pod is restarted.",
                              600, minimum=60, maximum=3600)
    section.finish()
    tolerations = tuple(
        t for i, raw in enumerate(tolerations_raw)
        if (t := _toleration(section.key(f"tolerations[{i}]"), raw, section.problems)) is not None
    )
    if enabled:
        if image is None and not section.has("image"):
            section.problems.error(section.key("image"), "is required when sam.enabled is true; expected repository:tag, pinned")
        elif image is not None:
            problem, moving = image_reference_problem(image)
            if problem:
                section.problems.error(section.key("image"), f"{_show(image)} {problem}")
            elif moving and production:
                section.problems.error(section.key("image"), f"{_show(image)} uses a moving tag without a digest; "
                                                              "expected repository:tag@sha256:<digest> in a protected stack")
            elif moving:
                section.problems.warnings.append(
                    f"{section.key('image')}: {image} uses a moving tag; pin a digest before production")
        if model == "SAM" and gpus == 0:
            section.problems.error(section.key("model"), "\"SAM\" needs a GPU but sam.gpus is 0; expected MobileSAM on CPU or gpus >= 1")
    if gpus > 0 and not tolerations_raw:
        tolerations = (Toleration("nvidia.com/gpu", "Exists", None, "NoSchedule"),)
    return SamSettings(enabled, model or "MobileSAM", image, gpus, node_selector, tolerations, resources,
                       shm_size or "2Gi", startup)


def _labeling(section: _Section, sam: SamSettings) -> LabelingSettings:
    projects_raw = section.items("projects", "Projects the stack creates and keeps in sync.",
                                 "list of {title, labelConfig, prefix, regexFilter, sam}")
    members_raw = section.items("members", "Emails of team members who get accounts.", "list of emails")
    section.finish()
    projects: list[LabelingProject] = []
    titles: set[str] = set()
    for i, raw in enumerate(projects_raw):
        item = _Section(section.key(f"projects[{i}]"), raw, section.problems)
        title = item.string("title", "Project title; projects are matched by it.", required=True,
                            check=lambda t: None if 1 <= len(t) <= 50 else "is not 1 to 50 characters")
        config_path = item.string("labelConfig", "Path of the labeling config XML in this repository.", required=True,
                                  check=_check_label_config_path, kind="path")
        prefix = item.string("prefix", "Bucket prefix holding the project's source images.", "",
                             check=_check_prefix, kind="key prefix")
        regex = item.string("regexFilter", "Regular expression selecting which objects become tasks.", r".*\.(jpe?g|png)$",
                            check=_check_regex, kind="regex")
        wants_sam = item.boolean("sam", "Connect the SAM backend for interactive pre-annotation.", False)
        item.finish()
        if title in titles:
            section.problems.error(item.key("title"), f"{_show(title)} is used twice; expected unique titles")
        if wants_sam and not sam.enabled:
            section.problems.error(item.key("sam"), "is true but sam.enabled is false; enable SAM or set sam false")
        if title and config_path:
            titles.add(title)
            projects.append(LabelingProject(title, config_path, (PROJECT_ROOT / config_path).read_text(),
                                            prefix or "", regex or "", wants_sam))
    members = []
    for i, email in enumerate(members_raw):
        problem = _check_email(email) if isinstance(email, str) else "is not a string"
        if problem:
            section.problems.error(section.key(f"members[{i}]"), f"{_show(email)} {problem}")
        else:
            members.append(email)
    return LabelingSettings(tuple(projects), tuple(members))


def _check_label_config_path(text: str) -> Optional[str]:
    path = (PROJECT_ROOT / text).resolve()
    if PROJECT_ROOT not in path.parents or not path.is_file():
        return "is not a file in this repository; expected a path like label_configs/classification.xml"
    try:
        root = ET.fromstring(path.read_text())
    except ET.ParseError as exc:
        return f"is not well-formed XML ({exc})"
    if root.tag != "View":
        return "is not a labeling config; expected a <View> root element"
    return None


def _parse(values: Mapping[str, Any], stack: str, secret_keys: frozenset[str]) -> tuple[_Problems, Optional[Settings]]:
    problems = _Problems()
    root = _Section("", values, problems)
    namespace = root.string("namespace", "Kubernetes namespace of the platform.", "labeling",
                            check=_check_dns_label, kind="DNS label")
    protect = root.boolean("protect", "Production: protect and retain data (bucket, database, secrets) and apply stricter checks.", False)
    kubernetes = _kubernetes(root.section("kubernetes", "Cluster connection."), secret_keys)
    ingress = _ingress(root.section("ingress", "Public access to Label Studio."))
    label_studio = _label_studio(root.section("labelStudio", "The Label Studio Helm release."), ingress, secret_keys,
                                 protect)
    storage = _storage(root.section("storage", "Object storage for images and Label Studio data."), secret_keys)
    sam = _sam(root.section("sam", "The Segment Anything ML backend."), protect)
    labeling = _labeling(root.section("labeling", "Projects, storages and team declared as code."), sam)
    root.finish()

    if namespace == "default":
        problems.error("namespace", "\"default\" is shared by everything in the cluster; expected a namespace of the platform's own")
    if protect and storage.force_destroy:
        problems.error("storage.forceDestroy", "is true in a protected stack; expected false so data survives `pulumi destroy`")
    if label_studio.database.mode == "rds" and storage.mode != "aws":
        problems.error("labelStudio.database.mode", "\"rds\" needs storage.mode aws (the stack's AWS account); "
                                                    "expected inCluster or external with s3Compatible storage")
    if label_studio.replicas > 1 and label_studio.database.mode == "inCluster":
        problems.warnings.append(
            "labelStudio.replicas: several app pods share one in-cluster PostgreSQL pod, which stays a single point of failure")
    if problems.errors:
        return problems, None
    return problems, Settings(stack, namespace, protect, kubernetes, label_studio, storage, ingress, sam, labeling,
                              tuple(problems.warnings))


def parse_settings(values: Mapping[str, Any], *, stack: str, secret_keys: frozenset[str] = frozenset()) -> Settings:
    """Validate decoded configuration values (top-level key -> value) into `Settings`.

    `secret_keys` names the top-level keys Pulumi holds encrypted; a secret field under
    any other key was stored in plain text and is refused.
    """
    problems, settings = _parse(values, stack, secret_keys)
    if settings is None:
        raise ConfigError(problems.errors)
    return settings


def describe_fields() -> list[FieldDoc]:
    """Every configuration key the reader knows, in reading order; list items appear as `[]`."""
    # One empty list item per list of objects walks the item readers too.
    sample = {"labeling": {"projects": [{}]}, "sam": {"tolerations": [{}]}}
    problems, _ = _parse(sample, "describe", frozenset())
    docs = {}
    for doc in problems.fields.values():
        path = re.sub(r"\[\d+\]", "[]", doc.path)
        docs.setdefault(path, FieldDoc(path, doc.kind, doc.default, doc.description, doc.secret))
    return list(docs.values())


def load_settings(stack: Optional[str] = None) -> Settings:
    """Read this stack's configuration from the Pulumi runtime, once."""
    from pulumi.runtime import config as runtime_config

    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = PROJECT + ":"
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith(prefix):
            values[key[len(prefix):]] = _decode(value)
    secret_keys = frozenset(
        k[len(prefix):] for k in (*runtime_config.get_config_secret_keys_env(), *runtime_config._SECRET_KEYS.get())
        if k.startswith(prefix)
    )
    return parse_settings(values, stack=stack or pulumi.get_stack(), secret_keys=secret_keys)


def _decode(value: Any) -> Any:
    """Pulumi hands structured values over as JSON text; scalars stay strings."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
