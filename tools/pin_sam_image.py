"""Point the stack files' sam.image at one build of the platform's SAM server image, by digest.

    python -m tools.pin_sam_image ghcr.io/<owner>/<repo>/sam-server:<version>@sha256:<digest>
    python -m tools.pin_sam_image <reference> Pulumi.dev.yaml      # only these stack files

.github/workflows/sam-image.yml runs it with the build it pushed and signed, and proposes the
result as a pull request; rolling back is running it with an earlier build's reference
(docs/sam-image.md). It rewrites the `image:` line of each stack file's `labeling-platform:sam`
section, keeping every comment and every other line, and removes `unpinnedImageReason`, which
only a tag without a digest needs. A stack file running an upstream example (sam.model
MobileSAM, SAM or SAM2) is left alone: the platform's image serves only the sam2.1-* models.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Optional

import yaml

from components import PROJECT_ROOT as ROOT
from components.settings import PROJECT, SamModel, image_reference_problem

STACK_FILES = ("Pulumi.dev.yaml", "Pulumi.prod.yaml")
SECTION = f"{PROJECT}:sam"
# The key a reference with a digest makes moot.
UNPINNED_REASON = "unpinnedImageReason"
_KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[\w.-]+):(?P<rest>.*)$")


class PinError(Exception):
    """One line: the file or reference, and what was expected."""


def check_reference(reference: str) -> None:
    problem, moving = image_reference_problem(reference)
    if problem or moving:
        raise PinError(f"{reference!r} {problem or 'has no digest'}; expected repository:tag@sha256:<digest>, "
                       "as the sam-image workflow prints it")


def _section_lines(lines: list[str]) -> tuple[int, int, int]:
    """(first line, end, indent of its keys) of the sam section's body."""
    starts = [index for index, line in enumerate(lines) if line.strip() == f"{SECTION}:"]
    if len(starts) != 1:
        raise PinError(f"expected one `{SECTION}:` section, found {len(starts)}")
    start = starts[0] + 1
    own_indent = len(lines[starts[0]]) - len(lines[starts[0]].lstrip())
    end = start
    while end < len(lines) and (not lines[end].strip() or lines[end].lstrip().startswith("#")
                                or len(lines[end]) - len(lines[end].lstrip()) > own_indent):
        end += 1
    keys = [line for line in lines[start:end] if _KEY_LINE.match(line) and not line.lstrip().startswith("#")]
    if not keys:
        raise PinError(f"`{SECTION}:` has no keys")
    return start, end, len(keys[0]) - len(keys[0].lstrip())


def pinned(text: str, reference: str) -> Optional[str]:
    """`text` (a stack file) with sam.image set to `reference` and no unpinnedImageReason; None
    when the stack runs an upstream example, which the platform's image does not serve."""
    check_reference(reference)
    before = yaml.safe_load(text)
    sam = before["config"][SECTION]
    if not SamModel(sam.get("model", SamModel.SAM2_1_TINY.value)).platform_server:
        return None
    lines = text.splitlines(keepends=True)
    start, end, indent = _section_lines(lines)
    kept, replaced, index = [], False, start
    while index < end:
        match = _KEY_LINE.match(lines[index])
        direct = match and len(match["indent"]) == indent
        if direct and match["key"] == UNPINNED_REASON:
            index += 1
            # A value folded over several lines goes with its key.
            while index < end and len(lines[index]) - len(lines[index].lstrip()) > indent:
                index += 1
            continue
        if direct and match["key"] == "image":
            kept.append(f"{match['indent']}image: {reference}\n")
            replaced = True
        else:
            kept.append(lines[index])
        index += 1
    if not replaced:
        raise PinError(f"`{SECTION}` sets no image; expected an `image:` line to pin")
    result = "".join(lines[:start] + kept + lines[end:])
    after = yaml.safe_load(result)
    expected = {**sam, "image": reference}
    expected.pop(UNPINNED_REASON, None)
    if after["config"][SECTION] != expected or {k: v for k, v in after["config"].items() if k != SECTION} != {
            k: v for k, v in before["config"].items() if k != SECTION}:
        raise PinError("the rewritten file says more than sam.image changed; expected a plain `image:` line")
    return result


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", help="repository:tag@sha256:<digest>")
    parser.add_argument("stack_files", nargs="*", default=STACK_FILES, help="default: " + " ".join(STACK_FILES))
    args = parser.parse_args(argv)
    try:
        for name in args.stack_files:
            path = ROOT / name
            try:
                new = pinned(path.read_text(), args.reference)
            except PinError as error:
                raise PinError(f"{name}: {error}") from None
            if new is None:
                print(f"{name}: runs an upstream SAM example; left alone")
            elif new != path.read_text():
                path.write_text(new)
                print(f"{name}: sam.image {args.reference}")
            else:
                print(f"{name}: already {args.reference}")
    except PinError as error:
        print(f"pin_sam_image: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
