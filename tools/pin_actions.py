"""The workflows' action pins: list them, or move one action to another release on purpose.

    python -m tools.pin_actions                                  # list every pin
    python -m tools.pin_actions actions/checkout v7.0.2          # resolve the tag, rewrite
    python -m tools.pin_actions actions/checkout v7.0.2 --commit <40-hex>   # no lookup

Every `uses:` in .github/workflows/ names a full commit SHA with its release in a comment
(`actions/checkout@<sha> # v7.0.1`), because a tag can be moved by the action's owner and
a commit cannot. Moving a pin: read the action's release notes and the diff between the
two commits, then run this, which asks GitHub (`git ls-remote`) for the commit the tag
names now and rewrites every pin of that action; commit the change in a pull request.
tests/test_workflows.py checks every pin's shape.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

from components import PROJECT_ROOT as ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
PIN = re.compile(r"(?P<prefix>uses:\s*)(?P<action>[\w.-]+/[\w./-]+)@(?P<commit>[0-9a-f]{40})\s+#\s+(?P<release>\S+)")
COMMIT = re.compile(r"^[0-9a-f]{40}$")


def pins(text: str) -> list[tuple[str, str, str]]:
    """(action, commit, release) of every pinned `uses:` in a workflow's text."""
    return [(m["action"], m["commit"], m["release"]) for m in PIN.finditer(text)]


def repin(text: str, action: str, commit: str, release: str) -> str:
    """`text` with every pin of `action` (any path inside its repository) moved to `commit` # `release`."""
    if not COMMIT.match(commit):
        raise ValueError(f"{commit!r} is not a full 40-hex commit SHA")

    def moved(match: re.Match[str]) -> str:
        if match["action"].lower().split("/")[:2] != action.lower().split("/")[:2]:
            return match[0]
        return f"{match['prefix']}{match['action']}@{commit} # {release}"

    return PIN.sub(moved, text)


def resolve(action: str, release: str) -> str:
    """The commit `release` names in the action's repository (an annotated tag's target)."""
    repository = "/".join(action.split("/")[:2])
    listing = subprocess.run(
        ["git", "ls-remote", f"https://github.com/{repository}", f"refs/tags/{release}", f"refs/tags/{release}^{{}}"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split("\n")
    refs = dict(reversed(line.split("\t")) for line in listing if "\t" in line)
    commit = refs.get(f"refs/tags/{release}^{{}}") or refs.get(f"refs/tags/{release}")
    if not commit:
        raise SystemExit(f"{repository} has no tag {release}")
    return commit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", nargs="?", help="owner/repo of the action to move")
    parser.add_argument("release", nargs="?", help="the release tag to move it to, e.g. v7.0.2")
    parser.add_argument("--commit", help="the tag's commit, when it is known already")
    args = parser.parse_args(argv)
    files = sorted(WORKFLOWS.glob("*.yml"))
    if args.action is None:
        for path in files:
            for action, commit, release in pins(path.read_text()):
                print(f"{path.relative_to(ROOT)}: {action} {release} {commit}")
        return 0
    if args.release is None:
        parser.error("name the release to move to")
    commit = args.commit or resolve(args.action, args.release)
    changed = 0
    for path in files:
        text = path.read_text()
        new = repin(text, args.action, commit, args.release)
        if new != text:
            path.write_text(new)
            changed += 1
    print(f"{args.action} -> {args.release} ({commit}) in {changed} workflow file(s)")
    return 0 if changed else 1


if __name__ == "__main__":
    sys.exit(main())
