"""Stacks as users add them: written only with the commands the docs give, into a copy of
the project, so the suite checks them the way it checks the committed example stacks.

A user's stack file differs from the examples in what the suite must not assume: its
secrets are `secure:` ciphertext (`pulumi config set --secret` writes them so), it pins
no chart version (the default applies), its store may be an existing S3-compatible one,
and it may have no ingress. The commands are read from the documents themselves, so a
recipe that stops working breaks these stacks too.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from components import PROJECT_ROOT
from tests.pulumi_cli import StackConfig
from tools.stack_eval import PLACEHOLDER_PREFIX, PROJECT_DIRS, stack_names

FENCED = re.compile(r"```(?:sh|bash|shell)\n(.*?)```", re.S)
# Values only the operator knows, as the docs write them, and what the user typed instead.
# A digest as a registry prints one (random hex): the config check refuses made-up patterns.
TYPED = {"<digest>": hashlib.sha256(b"a verified build").hexdigest(), "<owner>": "example-org",
         "<repo>": "labeling-platform", "<version>": "1.0.0"}


def documented_commands(document: str, first: str) -> list[str]:
    """The `pulumi config` lines of the code block in `document` that holds `first`."""
    for block in FENCED.findall((PROJECT_ROOT / document).read_text()):
        lines = [line.strip() for line in block.splitlines() if re.match(r"\s*pulumi config (set|rm) ", line)]
        if any(first in line for line in lines):
            commands = []
            for line in lines:
                for placeholder, value in TYPED.items():
                    line = line.replace(placeholder, value)
                commands.append(line)
            return commands
    raise AssertionError(f"{document} has no pulumi config block with {first!r}")


# The suite's own stacks carry this prefix, so a user's stack file of any other name is never
# shadowed by one of them (stack_eval.PROJECT_DIRS maps a name to one directory); a
# repository stack file that takes a suite name anyway is an error naming both files.
SUITE_STACK_PREFIX = "suite-"
# A Label Studio release no example stack runs: the user's stack moves to it alone, as the
# commit of a staged upgrade would.
NEXT_LABEL_STUDIO_RELEASE = "1.24.0"
# The documented commands a user runs after `pulumi stack init onprem`: an existing
# S3-compatible store and a kubeconfig set --secret (README), the platform's SAM image by
# digest (docs/sam-image.md), then the staged upgrade. One stack covers what user stacks differ
# in (ciphertext secrets, no chart version pinned, another store mode and release); what
# each setting does is proven on the example stacks and variants.
NEW_STACK_COMMANDS: dict[str, list[str]] = {
    "onprem": [
        *documented_commands("docs/operations.md", "labelStudio.adminEmail"),
        *documented_commands("README.md", "storage.mode s3Compatible"),
        *documented_commands("README.md", "kubernetes.kubeconfig"),
        *documented_commands("docs/sam-image.md", "sam.image"),
        f"pulumi config set --path labelStudio.imageTag {NEXT_LABEL_STUDIO_RELEASE}",
    ],
}


def _ciphertext(path: str) -> dict[str, str]:
    """What `pulumi config set --secret` writes: opaque, passphrase-provider shaped ciphertext."""
    return {"secure": "v1:" + base64.b64encode(f"ciphertext of {path}".encode()).decode()}


def _as_written(value: Any, path: str) -> Any:
    if isinstance(value, str) and value.startswith(PLACEHOLDER_PREFIX):
        return _ciphertext(path)
    if isinstance(value, dict):
        return {k: _as_written(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_as_written(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def stack_file_text(commands: list[str], project: str = "labeling-platform") -> str:
    """The stack file the CLI leaves after `commands`, run on a new stack."""
    config = StackConfig("new", project=project)
    for command in commands:
        config.run(command)
    written = {f"{project}:{key}": _as_written(value, key) for key, value in config.values.items()}
    return yaml.safe_dump({"encryptionsalt": "v1:c2FsdA==:v1:bm9uY2U=:Y2hlY2s=", "config": written}, sort_keys=False)


def write_user_stacks(directory: Path, repository: Path = PROJECT_ROOT) -> tuple[str, ...]:
    """A copy of the project's Pulumi.yaml with each user stack beside it, registered for
    evaluation under its suite name; refused when `repository` has a stack file of that name."""
    files = {f"{SUITE_STACK_PREFIX}{name}": stack_file_text(commands) for name, commands in NEW_STACK_COMMANDS.items()}
    taken = stack_names(repository)
    clashes = [f"{repository / f'Pulumi.{name}.yaml'} and the suite's stack {name} (tests/user_stacks.py)"
               for name in files if name in taken]
    if clashes:
        raise ValueError(f"stack name taken twice: {'; '.join(clashes)}; rename the stack file")
    shutil.copy(repository / "Pulumi.yaml", directory / "Pulumi.yaml")
    for name, text in files.items():
        (directory / f"Pulumi.{name}.yaml").write_text(text)
        PROJECT_DIRS[name] = directory
    return tuple(files)


def user_stack_directory() -> Path:
    return Path(tempfile.mkdtemp(prefix="labeling-user-stacks-"))
