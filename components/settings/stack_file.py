"""The stack file as written: what the CLI's hand-over does not say, which values are encrypted.

Pulumi hands the program each top-level key with its value and marks the key secret when
any part of it is `secure:` (`Config.get_object` then returns the whole object as one
secret). So a `storage.secretAccessKey` typed in plain text beside an encrypted
`storage.accessKeyId` would look encrypted. The stack file says leaf by leaf which values
are ciphertext, so the program reads it to judge every secret field on its own.

Limit: a value that does not come from this file (an ESC `environment`, a value that only
Pulumi.yaml sets, `pulumi up --config-file` pointing elsewhere) is judged by its top-level
key alone, as before: secret when Pulumi says the key is.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any, Mapping

import yaml


class StackFileError(Exception):
    """The stack file is not YAML; the message is one line naming the file, line and column."""


def shown_path(path: Path) -> str:
    """The path as a person would type it from here: relative when under the working directory."""
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd().resolve()) else str(path)
    except ValueError:
        return str(path)


def load_yaml(path: Path) -> Any:
    """The document in `path`; a YAML error becomes one line: `<file>:<line>:<column>: <problem>`.

    A program run reads Pulumi.yaml and the stack file several times; parsed once per version
    of the file (a copy each time: callers may change what they get)."""
    status = path.stat()
    return copy.deepcopy(_parsed(path, status.st_mtime_ns, status.st_size))


@functools.lru_cache(maxsize=64)
def _parsed(path: Path, modified_ns: int, size: int) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{shown_path(path)}:{mark.line + 1}:{mark.column + 1}" if mark else shown_path(path)
        problem = " ".join(filter(None, (error.context, error.problem)))
        raise StackFileError(f"{where}: not valid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise StackFileError(f"{shown_path(path)}: not valid YAML: {' '.join(str(error).split())}") from None


def stack_file_path(project_dir: Path, stack: str) -> Path:
    """Where the CLI keeps the stack's file: beside Pulumi.yaml, or in its `stackConfigDir`."""
    project = load_yaml(project_dir / "Pulumi.yaml") or {}
    directory = project.get("stackConfigDir") if isinstance(project, Mapping) else None
    return project_dir / (directory or "") / f"Pulumi.{stack}.yaml"


def stack_file_config(path: Path) -> dict[str, Any]:
    """The `config` mapping of a stack file (empty when the file or the mapping is absent)."""
    if not path.is_file():
        return {}
    document = load_yaml(path) or {}
    config = document.get("config") if isinstance(document, Mapping) else None
    return dict(config) if isinstance(config, Mapping) else {}


def _plain_leaves(value: Any, path: str) -> set[str]:
    if isinstance(value, Mapping):
        if set(value) == {"secure"}:
            return set()
        return {leaf for key, item in value.items() for leaf in _plain_leaves(item, f"{path}.{key}")}
    if isinstance(value, list):
        return {leaf for i, item in enumerate(value) for leaf in _plain_leaves(item, f"{path}[{i}]")}
    return {path}


def plaintext_paths(config: Mapping[str, Any], project: str) -> frozenset[str]:
    """Dotted paths (without the project's namespace) of every value the stack file holds unencrypted."""
    prefix = f"{project}:"
    return frozenset(leaf for key, value in config.items() if isinstance(key, str) and key.startswith(prefix)
                     for leaf in _plain_leaves(value, key[len(prefix):]))
