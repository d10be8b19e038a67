"""One stack's configuration: read once from the Pulumi runtime, validated as a whole.

`parse_settings` reads every section, then applies the rules that span sections; all
problems come back together in one `ConfigError`. `describe_fields` walks the same
readers to list every key for docs/config.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Optional

import pulumi

from components import PROJECT_ROOT
from components.settings.cluster import check_namespace, read_kubernetes
from components.settings.ingress import read_ingress
from components.settings.label_studio import read_label_studio
from components.settings.labeling import read_labeling
from components.settings.model import DatabaseMode, Settings, StorageMode
from components.settings.monitoring import read_monitoring
from components.settings.namespaces import namespace_problems
from components.settings.network import read_network
from components.settings.reader import PROJECT, ConfigError, FieldDoc, Problems, Section
from components.settings.sam import read_sam
from components.settings.stack_file import StackFileError, plaintext_paths, stack_file_config, stack_file_path
from components.settings.storage import read_storage


def _cross_section_rules(settings: Settings, problems: Problems) -> None:
    if settings.protect and settings.storage.force_destroy:
        problems.error("storage.forceDestroy", "is true in a protected stack; expected false so data survives `pulumi destroy`")
    database = settings.label_studio.database
    if database.mode is DatabaseMode.RDS and settings.storage.mode is not StorageMode.AWS:
        problems.error("labelStudio.database.mode", "\"rds\" needs storage.mode aws (the stack's AWS account); "
                                                    "expected inCluster or external with s3Compatible storage")
    if settings.label_studio.replicas > 1 and database.mode is DatabaseMode.IN_CLUSTER:
        problems.warnings.append(
            "labelStudio.replicas: several app pods share one in-cluster PostgreSQL pod, which stays a single point of failure")


def _parse(values: Mapping[str, Any], stack: str, secret_keys: frozenset[str],
           plaintext_paths: frozenset[str] = frozenset()) -> tuple[Problems, Optional[Settings]]:
    problems = Problems(plaintext_paths)
    root = Section("", values, problems)
    namespace = root.string("namespace", "Kubernetes namespace of the platform (not default or kube-*).", "labeling",
                            check=check_namespace, kind="DNS label")
    protect = root.boolean("protect", "Production: protect and retain data (bucket, database, secrets) and apply stricter checks.", False)
    kubernetes = read_kubernetes(root.section("kubernetes", "Cluster connection."), secret_keys)
    ingress = read_ingress(root.section("ingress", "Public access to Label Studio."), protect)
    label_studio = read_label_studio(root.section("labelStudio", "The Label Studio Helm release."), ingress,
                                     secret_keys, protect)
    storage = read_storage(root.section("storage", "Object storage for images and Label Studio data."), secret_keys,
                           protect)
    sam = read_sam(root.section("sam", "The Segment Anything ML backend."), protect)
    labeling = read_labeling(root.section("labeling", "Projects, storages and team declared as code."), sam,
                             storage.prefix)
    network = read_network(root.section("network", "What the pods' egress NetworkPolicies may reach."))
    monitoring = read_monitoring(root.section("monitoring", "Alerts for the cluster's Prometheus Operator."), sam)
    root.finish()
    settings = Settings(stack, namespace, protect, kubernetes, label_studio, storage, ingress, sam, labeling, network,
                        monitoring)
    _cross_section_rules(settings, problems)
    if problems.errors:
        return problems, None
    return problems, replace(settings, warnings=tuple(problems.warnings))


def parse_settings(values: Mapping[str, Any], *, stack: str, secret_keys: frozenset[str] = frozenset(),
                   plaintext_paths: frozenset[str] = frozenset()) -> Settings:
    """Validate decoded configuration values (top-level key -> value) into `Settings`.

    `secret_keys` names the top-level keys Pulumi holds encrypted; a secret field under
    any other key was stored in plain text and is refused, and so is one the stack file
    holds unencrypted (`plaintext_paths`, from components/settings/stack_file.py).
    """
    problems, settings = _parse(values, stack, secret_keys, plaintext_paths)
    if settings is None:
        raise ConfigError(problems.errors)
    return settings


def describe_fields() -> list[FieldDoc]:
    """Every configuration key the reader knows, in reading order; list items appear as `[]`."""
    # One empty list item per list of objects walks the item readers too.
    sample = {"labeling": {"projects": [{}]}, "sam": {"tolerations": [{}], "activeHours": {"windows": [{}]}}}
    problems, _ = _parse(sample, "describe", frozenset())
    docs = {}
    for doc in problems.fields.values():
        path = re.sub(r"\[\d+\]", "[]", doc.path)
        docs.setdefault(path, replace(doc, path=path))
    return list(docs.values())


def load_settings(stack: Optional[str] = None) -> Settings:
    """Read this stack's configuration from the Pulumi runtime, once."""
    from pulumi.runtime import config as runtime_config

    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = PROJECT + ":"
    values = {key[len(prefix):]: _decode(value) for key, value in raw.items() if key.startswith(prefix)}
    secret_keys = frozenset(
        k[len(prefix):] for k in (*runtime_config.get_config_secret_keys_env(), *runtime_config._SECRET_KEYS.get())
        if k.startswith(prefix)
    )
    stack = stack or pulumi.get_stack()
    # The CLI runs the program in the project; the stack file there says which values are encrypted.
    project_dir = Path(pulumi.get_root_directory() or PROJECT_ROOT)
    try:
        plaintext = plaintext_paths(stack_file_config(stack_file_path(project_dir, stack)), PROJECT)
    except StackFileError as error:
        raise ConfigError([str(error)]) from None
    # A mistyped namespace hides its section from the reader: report it beside the rest.
    misplaced = namespace_problems(raw)
    try:
        settings = parse_settings(values, stack=stack, secret_keys=secret_keys, plaintext_paths=plaintext)
    except ConfigError as error:
        raise ConfigError([*misplaced, *error.problems]) from None
    if misplaced:
        raise ConfigError(misplaced)
    return settings


def _decode(value: Any) -> Any:
    """Pulumi hands structured values over as JSON text; scalars stay strings."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
