"""Configuration namespaces: a key under a namespace nobody reads is a typo that loses config.

`pulumi config set labeling-platfrom:labeling ...` stores the value under a namespace that
neither this program nor any provider reads. The program would then run without it: an
empty `labeling` section, for instance, means no members, and the next run removes every
account the stack created. So every key must be this project's or a provider's.
"""

from __future__ import annotations

import difflib
from typing import Iterable

from components.settings.reader import PROJECT

# The providers this program uses, and the engine's own namespace (pulumi:tags, ...).
PROVIDER_NAMESPACES = ("aws", "kubernetes", "pulumi", "random")


def namespace_problems(keys: Iterable[str]) -> list[str]:
    """One line per configuration key whose namespace is neither the project's nor a provider's."""
    known = (PROJECT, *PROVIDER_NAMESPACES)
    problems = []
    for key in sorted(keys):
        namespace, separator, name = key.partition(":")
        if not separator or namespace in known:
            continue
        hint = difflib.get_close_matches(namespace, known, n=1, cutoff=0.6)
        suggestion = f"did you mean {hint[0]}:{name}? " if hint else ""
        problems.append(f"{key}: the namespace {namespace!r} is read by nothing here; {suggestion}"
                        f"(expected {PROJECT}:<key> or a provider's: {', '.join(PROVIDER_NAMESPACES)})")
    return problems
