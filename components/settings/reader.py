"""The reader every section is parsed with: it records each key it is asked for.

That record is the single source for "did you mean" hints on unknown keys and for the
generated reference (docs/config.md). Problems are collected, not raised, so one run
reports every mistake of a stack, one line each: `<key path>: <what is wrong>; <what is allowed>`.

Values arrive as the Pulumi CLI stores them. `pulumi config set --path` stores `true` and
`false` as booleans and integers without a leading zero as numbers; everything else, and
every top-level key, is a string. So a text field takes a number or a boolean as the text
that was typed, an integer field takes integer text, a boolean field takes "true"/"false".
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import pulumi

from components.settings.checks import check_quantity, is_quantity, quantity_value
from components.settings.model import Resources

PROJECT = "labeling-platform"

MISSING = object()

# A check takes the value and answers None when it is fine, else what is wrong with it.
Check = Callable[[str], Optional[str]]

# What each kind of field accepts, as docs/config.md lists it.
ACCEPTS_TEXT = "text; a number or true/false is read as the text typed"
ACCEPTS_INTEGER = "an integer, or integer text"
ACCEPTS_BOOLEAN = "true or false, or that text"
ACCEPTS_SECRET = "text, set with --secret"
SHOWN_LENGTH = 60
_INTEGER_TEXT = re.compile(r"^[+-]?\d+$")
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


class ConfigError(Exception):
    """The stack's configuration is invalid; `problems` holds one line per mistake."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__(self.message())

    def message(self) -> str:
        count = len(self.problems)
        head = f"invalid configuration for {PROJECT} ({count} problem{'s' if count != 1 else ''}):"
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


@dataclass(frozen=True)
class FieldDoc:
    """One configuration key as the reader saw it: the raw material of docs/config.md."""

    path: str
    kind: str
    default: Any
    description: str
    secret: bool = False
    accepts: str = ""
    # Always an error when missing (a key required only in some mode says so in its description).
    required: bool = False


class Problems:
    def __init__(self, plaintext_paths: frozenset[str] = frozenset()) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.fields: dict[str, FieldDoc] = {}
        # Paths the stack file holds unencrypted (components/settings/stack_file.py).
        self.plaintext_paths = plaintext_paths

    def error(self, path: str, text: str) -> None:
        self.errors.append(f"{path}: {text}")

    def recording_only(self) -> "Problems":
        """Problems that share this key record and drop their mistakes: for keys a switch made
        inapplicable, read for the reference while their values wait for the switch."""
        scratch = Problems(self.plaintext_paths)
        scratch.fields = self.fields
        return scratch


def mask_credentials(text: str) -> str:
    """`https://user:secret@host` -> `https://***@host`: never repeat a credential in a message."""
    return _URL_CREDENTIALS.sub("***@", text)


def show(value: Any) -> str:
    """A value as an error line quotes it: credentials masked, long values shortened."""
    text = json.dumps(mask_credentials(value) if isinstance(value, str) else value)
    return text if len(text) <= SHOWN_LENGTH else text[:SHOWN_LENGTH - 4] + "...\""


def as_text(value: Any) -> Optional[str]:
    """The text a scalar stands for (`2` -> "2", `true` -> "true"); None for lists and maps."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return None


class Section:
    """Reads one mapping of the configuration, recording each key it is asked for."""

    def __init__(self, path: str, raw: Any, problems: Problems):
        self.path = path
        self.problems = problems
        self.read: set[str] = set()
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            problems.error(path, f"{show(raw)} is not an object; expected a mapping of keys")
            raw = {}
        self.raw: Mapping[str, Any] = raw

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return name in self.raw

    def error(self, name: str, text: str) -> None:
        self.problems.error(self.key(name), text)

    def _take(self, name: str, kind: str, default: Any, doc: str, secret: bool = False, accepts: str = "",
              required: bool = False) -> Any:
        self.read.add(name)
        self.problems.fields.setdefault(
            self.key(name),
            FieldDoc(self.key(name), kind, None if default is MISSING else default, doc, secret, accepts, required))
        return self.raw.get(name, MISSING)

    def take(self, name: str, kind: str, default: Any, doc: str, accepts: str) -> Any:
        """A value of a shape no typed reader covers (true or a list, say), documented; the caller checks it."""
        return self._take(name, kind, default, doc, accepts=accepts)

    def string(self, name: str, doc: str, default: Any = None, *, required: bool = False,
               check: Optional[Check] = None, kind: str = "string",
               normalise: Callable[[str], str] = str.strip) -> Any:
        """Text, as typed; surrounding whitespace dropped (or `normalise`d), then checked."""
        value = self._take(name, kind, default, doc, accepts=ACCEPTS_TEXT, required=required)
        if value is MISSING or value is None:
            if required:
                self.error(name, "is required; " + doc[0].lower() + doc[1:].rstrip("."))
            return default
        text = as_text(value)
        if text is None:
            self.error(name, f"{show(value)} is not text; expected {kind}")
            return default
        problem = check(normalise(text)) if check else None
        if problem:
            self.error(name, f"{show(text)} {problem}")
            return default
        return normalise(text)

    def secret(self, name: str, doc: str, *, secret_keys: frozenset[str], top_key: str) -> Optional[pulumi.Output]:
        """A secret is stored by `pulumi config set --secret`, always as text, and never shown."""
        value = self._take(name, "string (secret)", None, doc, secret=True, accepts=ACCEPTS_SECRET)
        if value is MISSING or value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.error(name, "is not a non-empty text; expected the secret as set with `pulumi config set --secret`")
            return None
        # Pulumi marks a whole top-level key secret when any part of it is: the stack file
        # tells whether this very field is encrypted.
        if top_key not in secret_keys or self.key(name) in self.problems.plaintext_paths:
            self.error(name, f"is stored in plain text; set it with `pulumi config set --secret --path {self.key(name)} ...`")
        return pulumi.Output.secret(value)

    def integer(self, name: str, doc: str, default: int, *, minimum: int, maximum: int) -> int:
        value = self._take(name, f"integer {minimum}..{maximum}", default, doc, accepts=ACCEPTS_INTEGER)
        if value is MISSING or value is None:
            return default
        if isinstance(value, str) and _INTEGER_TEXT.match(value.strip()):
            value = int(value)
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(name, f"{show(value)} is not an integer; expected an integer from {minimum} to {maximum}")
            return default
        if not minimum <= value <= maximum:
            self.error(name, f"{value} is out of range; expected an integer from {minimum} to {maximum}")
            return default
        return value

    def boolean(self, name: str, doc: str, default: Optional[bool]) -> Optional[bool]:
        value = self._take(name, "boolean", default, doc, accepts=ACCEPTS_BOOLEAN)
        if value is MISSING or value is None:
            return default
        # Top-level keys arrive from the CLI as the strings "true"/"false".
        if isinstance(value, str) and value.strip() in ("true", "false"):
            return value.strip() == "true"
        if not isinstance(value, bool):
            self.error(name, f"{show(value)} is not a boolean; expected true or false")
            return default
        return value

    def choice(self, name: str, doc: str, choices: Sequence[str], default: Any = None, *, required: bool = False) -> Any:
        allowed = " | ".join(choices)
        value = self._take(name, f"one of {allowed}", default, doc, accepts="one of the listed texts",
                           required=required)
        if value is MISSING or value is None:
            if required:
                self.error(name, f"is required; expected one of {allowed}")
            return default
        if isinstance(value, str):
            value = value.strip()
        if value not in choices:
            hint = difflib.get_close_matches(str(value), choices, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            self.error(name, f"{show(value)} is not allowed{suggestion}; expected one of {allowed}")
            return default
        return value

    def quantity(self, name: str, doc: str, default: Optional[str]) -> Optional[str]:
        return self.string(name, doc, default, kind="Kubernetes quantity", check=check_quantity)

    def string_map(self, name: str, doc: str, *, key_check: Check, value_check: Optional[Check] = None) -> dict[str, str]:
        value = self._take(name, "map of string to string", {}, doc, accepts=f"a map; values: {ACCEPTS_TEXT}")
        if value is MISSING or value is None:
            return {}
        if not isinstance(value, Mapping):
            self.error(name, f"{show(value)} is not an object; expected a map of string to string")
            return {}
        result: dict[str, str] = {}
        for k, v in value.items():
            problem = key_check(k)
            text = as_text(v)
            if problem:
                self.problems.error(f"{self.key(name)}.{k}", problem)
            elif text is None:
                self.problems.error(f"{self.key(name)}.{k}", f"{show(v)} is not text; expected a text value")
            elif (problem := value_check(text.strip()) if value_check else None):
                self.problems.error(f"{self.key(name)}.{k}", f"{show(text)} {problem}")
            else:
                result[k] = text.strip()
        return result

    def items(self, name: str, doc: str, kind: str) -> list[Any]:
        value = self._take(name, kind, [], doc, accepts="a list")
        if value is MISSING or value is None:
            return []
        if not isinstance(value, list):
            self.error(name, f"{show(value)} is not a list; expected {kind}")
            return []
        return value

    def cidrs(self, name: str, doc: str, *, private_only: bool = False) -> tuple[str, ...]:
        """A list of IPv4/IPv6 networks; link-local ones (the cloud metadata service) are refused."""
        networks = []
        for i, item in enumerate(self.items(name, doc, "list of CIDRs")):
            path = f"{self.key(name)}[{i}]"
            try:
                network = ipaddress.ip_network(str(item).strip(), strict=False)
            except ValueError:
                self.problems.error(path, f"{show(item)} is not a CIDR like 10.0.0.0/16")
                continue
            if network.is_link_local:
                self.problems.error(path, f"{show(item)} is link-local (the cloud metadata service lives there); "
                                          "expected a network of the cluster or the store")
            elif private_only and (network.prefixlen == 0 or network.is_global):
                self.problems.error(path, f"{show(item)} is public; expected a private range of the cluster")
            else:
                networks.append(str(network))
        return tuple(networks)

    def section(self, name: str, doc: str) -> "Section":
        value = self._take(name, "object", None, doc, accepts="a map of the keys below")
        return Section(self.key(name), None if value is MISSING else value, self.problems)

    def inapplicable(self, names: Sequence[str], reason: str) -> None:
        """Keys that are set but do not apply (a feature switched off, another mode): one warning."""
        present = [self.key(name) for name in names if self.has(name)]
        if present:
            self.problems.warnings.append(f"{', '.join(present)}: ignored {reason}")

    def finish(self) -> None:
        """Report keys nobody asked for, with the closest known key as a hint."""
        for unknown in sorted(set(self.raw) - self.read, key=str):
            hint = difflib.get_close_matches(str(unknown), sorted(self.read), n=1, cutoff=0.6)
            suggestion = f"; did you mean {self.key(hint[0])!r}?" if hint else ""
            known = ", ".join(sorted(self.read))
            self.problems.error(self.key(str(unknown)), f"is not a known key{suggestion} (known keys here: {known})")


_RESOURCE_DOCS = {"cpu": "CPU", "memory": "memory", "ephemeral-storage": "ephemeral storage"}


def read_resources(section: Section, defaults: Resources, names: Sequence[str]) -> Resources:
    """requests/limits of the given resource names; a request above its limit is refused."""
    parts = {}
    for part in ("requests", "limits"):
        sub = section.section(part, f"Resource {part} of each container.")
        values = {}
        for resource in names:
            value = sub.quantity(resource, f"{_RESOURCE_DOCS[resource]} {part[:-1]}", getattr(defaults, part).get(resource))
            if value is not None:
                values[resource] = value
        sub.finish()
        parts[part] = values
    section.finish()
    for resource, request in parts["requests"].items():
        limit = parts["limits"].get(resource)
        if limit and is_quantity(request) and is_quantity(limit) and quantity_value(request) > quantity_value(limit):
            section.error(f"requests.{resource}", f"{show(request)} is above the limit {show(limit)}; expected requests <= limits")
    return Resources(parts["requests"], parts["limits"])
