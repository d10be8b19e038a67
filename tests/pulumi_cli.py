"""`pulumi config set` and `pulumi config rm`, as the CLI stores their values, for tests.

Reproduces pulumi/pulumi sdk/go/common/resource/config (map.go `adjustObjectValue`,
`parseKeyPath`; resource.ParsePropertyPath): with `--path`, "true"/"false" become
booleans and integer text without a leading zero becomes a number; everything else, every
`--secret` value and every top-level key stays a string. Paths take `.key`, `[index]`
and `["key.with.dots"]`. The Pulumi CLI itself cannot run here; this is what a stack file
holds after the command, which is all the program ever sees.
"""

from __future__ import annotations

import copy
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tools.stack_eval import DELETE, PLACEHOLDER_PREFIX, stack_config

# What the files the docs redirect into `pulumi config set` hold, by name.
REDIRECTED_FILES = {
    "ca.pem": (Path(__file__).parent / "fixtures" / "store-ca.pem").read_text(),
    "dev-cluster.yaml": "apiVersion: v1\nkind: Config\n",
}

_PATH_PART = re.compile(r'\["((?:[^"\\]|\\.)*)"\]|\[(\d+)\]|\.?([^.\[\]]+)')


def stored_value(text: str, *, path: bool) -> Any:
    """What the CLI writes for `text` (adjustObjectValue)."""
    if not path:
        return text
    if text in ("true", "false"):
        return text == "true"
    if len(text) > 1 and text[0] == "0":
        return text
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    return text


def parse_path(path: str) -> list[Any]:
    parts: list[Any] = []
    position = 0
    while position < len(path):
        match = _PATH_PART.match(path, position)
        if not match or match.end() == position:
            raise ValueError(f"not a config path: {path!r}")
        quoted, index, plain = match.groups()
        parts.append(int(index) if index is not None else (quoted if quoted is not None else plain))
        position = match.end()
    return parts


@dataclass
class StackConfig:
    """One stack's configuration as the CLI keeps it: top-level key -> value, and which keys hold secrets."""

    stack: str
    values: dict[str, Any] = field(default_factory=dict)
    secret_keys: set[str] = field(default_factory=set)
    project: str = "labeling-platform"

    @classmethod
    def of(cls, stack: str) -> "StackConfig":
        project, config, secret_keys = stack_config(stack)
        prefix = f"{project}:"
        return cls(stack, {k[len(prefix):]: copy.deepcopy(v) for k, v in config.items() if k.startswith(prefix)},
                   {k[len(prefix):] for k in secret_keys}, project)

    def set(self, key: str, text: str, *, path: bool = False, secret: bool = False) -> None:
        parts = parse_path(key) if path else [key]
        value = f"{PLACEHOLDER_PREFIX}{key}" if secret else stored_value(text, path=path)
        top = parts[0]
        if secret:
            self.secret_keys.add(top)
        if len(parts) == 1:
            self.values[top] = value
            return
        node = self.values.setdefault(top, {} if isinstance(parts[1], str) else [])
        for part, following in zip(parts[1:-1], parts[2:]):
            empty: Any = {} if isinstance(following, str) else []
            if isinstance(part, int):
                if part == len(node):
                    node.append(empty)
                node = node[part]
            else:
                node = node.setdefault(part, empty)
        last = parts[-1]
        if isinstance(last, int) and last == len(node):
            node.append(value)
        else:
            node[last] = value

    def remove(self, key: str, *, path: bool = False) -> None:
        parts = parse_path(key) if path else [key]
        node = self.values
        for part in parts[:-1]:
            node = node[part]
        del node[parts[-1]]

    def run(self, command: str, stdin: Optional[str] = None) -> None:
        """One `pulumi config set|rm ...` line; a `< file` redirect or a prompt supplies the value."""
        words = shlex.split(command, comments=True)
        redirected = "<" in words
        if redirected:
            stdin = stdin if stdin is not None else REDIRECTED_FILES.get(Path(words[words.index("<") + 1]).name)
            words = words[:words.index("<")]
        assert words[:2] == ["pulumi", "config"] and words[2] in ("set", "rm"), command
        flags = {w for w in words[3:] if w.startswith("--")}
        arguments = [w for w in words[3:] if not w.startswith("--")]
        path, secret = "--path" in flags, "--secret" in flags
        if words[2] == "rm":
            self.remove(arguments[0], path=path)
            return
        if len(arguments) == 1:  # the value comes from the file or the prompt
            arguments.append(stdin if stdin is not None else "value typed at the prompt")
        self.set(arguments[0], arguments[1], path=path, secret=secret)

    def as_overrides(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(overrides, secrets) for tools.stack_eval.evaluate: every key as it stands now."""
        _, base, _ = stack_config(self.stack)
        prefix = f"{self.project}:"
        overrides: dict[str, Any] = {k[len(prefix):]: DELETE for k in base if k.startswith(prefix)}
        secrets: dict[str, Any] = {}
        for key, value in self.values.items():
            if key in self.secret_keys:
                overrides.pop(key, None)
                secrets[key] = value
            else:
                overrides[key] = value
        return overrides, secrets
