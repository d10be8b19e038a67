"""The stack's configuration contract: parsed once, validated, frozen.

    model.py         the settings dataclasses and modes
    reader.py        the recording reader every section is parsed with
    checks.py        checks of single values that several sections share
    <section>.py     one module per top-level section, its checks beside its keys
    stack.py         the whole stack: cross-section rules, the Pulumi runtime, the key list
"""

from components.settings.checks import image_reference_problem, quantity_value
from components.settings.model import (
    BackupSettings, DatabaseMode, DatabaseSettings, IngressSettings, KubernetesSettings, LabelingProject,
    LabelingSettings, LabelStudioSettings, MonitoringSettings, NetworkSettings, RdsSettings, Resources, SamModel, SamSettings, Settings,
    StorageMode, StorageSettings, TlsSettings, Toleration,
)
from components.settings.reader import PROJECT, ConfigError, FieldDoc
from components.settings.stack import describe_fields, load_settings, parse_settings

__all__ = [
    "BackupSettings", "ConfigError", "DatabaseMode", "DatabaseSettings", "FieldDoc", "IngressSettings",
    "KubernetesSettings", "LabelingProject", "LabelingSettings", "LabelStudioSettings", "MonitoringSettings",
    "NetworkSettings", "PROJECT",
    "RdsSettings", "Resources", "SamModel", "SamSettings", "Settings", "StorageMode", "StorageSettings", "TlsSettings",
    "Toleration",
    "describe_fields", "image_reference_problem", "load_settings", "parse_settings", "quantity_value",
]
