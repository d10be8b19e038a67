"""Docs stay true: the config reference matches the settings module key for key."""

from __future__ import annotations

import re

from components.settings import describe_fields
from tests.conftest import PROJECT_ROOT
from tools import config_reference


def test_config_reference_is_generated_from_settings():
    assert config_reference.REFERENCE.read_text() == config_reference.render(), \
        "docs/config.md is stale: run python -m tools.config_reference"


def test_every_documented_key_exists_and_every_key_is_documented():
    documented = set(re.findall(r"^\| `([^`]+)` \|", config_reference.REFERENCE.read_text(), flags=re.M))
    known = {field.path for field in describe_fields()}
    assert documented - known == set(), "documented keys that settings.py does not read"
    assert known - documented == set(), "settings keys missing from docs/config.md"


def test_readme_and_docs_name_only_real_config_keys():
    """Any `pulumi config set --path <key>` in the docs must name a real key (or an entry of a map key)."""
    fields = describe_fields()
    exact = {field.path for field in fields}
    maps = tuple(field.path + "." for field in fields if field.kind.startswith("map of"))
    for doc in [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]:
        if not doc.is_file():
            continue
        for key in re.findall(r"config set (?:--secret )?--path ([A-Za-z0-9.\\/-]+)", doc.read_text()):
            key = key.replace("\\.", ".")
            assert key in exact or key.startswith(maps), f"{doc.name} sets unknown key {key}"
