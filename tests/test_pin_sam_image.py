"""tools/pin_sam_image.py, which the sam-image workflow runs to propose its build to the stack
files (and an operator runs to roll back): only sam.image changes, by digest, every comment
stays, the reason for a tag without a digest goes, and upstream examples are left alone."""

from __future__ import annotations

import hashlib

import pytest
import yaml

from components import PROJECT_ROOT
from components.settings import parse_settings
from tools.pin_sam_image import SECTION, STACK_FILES, PinError, main, pinned

REFERENCE = ("ghcr.io/example-org/labeling-platform/sam-server:1.0.0@sha256:"
             + hashlib.sha256(b"the build the workflow pushed").hexdigest())


def committed(name: str) -> str:
    return (PROJECT_ROOT / name).read_text()


def comments(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


@pytest.mark.parametrize("name", STACK_FILES)
def test_a_stack_file_gets_the_build_by_digest_and_nothing_else_changes(name):
    before = committed(name)
    after = pinned(before, REFERENCE)
    config = yaml.safe_load(after)["config"]
    assert config[SECTION]["image"] == REFERENCE and "unpinnedImageReason" not in config[SECTION]
    original = yaml.safe_load(before)["config"]
    assert {k: v for k, v in config.items() if k != SECTION} == {k: v for k, v in original.items() if k != SECTION}
    assert comments(after) == comments(before)
    assert pinned(after, REFERENCE) == after
    # The protected stack needs no reason any more: the contract takes the digest without a word.
    stack = name.split(".")[1]
    settings = parse_settings({key.split(":", 1)[1]: value for key, value in config.items()}, stack=stack)
    assert settings.sam.image == REFERENCE
    assert not [warning for warning in settings.warnings if warning.startswith("sam.image")]


def test_a_reason_folded_over_several_lines_goes_with_its_key():
    text = (f"config:\n  {SECTION}:\n    model: sam2.1-large\n    image: registry.example.com/sam:1\n"
            "    unpinnedImageReason: >-\n      no digest\n      yet\n    gpus: 1\n")
    assert pinned(text, REFERENCE) == f"config:\n  {SECTION}:\n    model: sam2.1-large\n    image: {REFERENCE}\n    gpus: 1\n"


def test_a_stack_running_an_upstream_example_is_left_alone():
    text = f"config:\n  {SECTION}:\n    model: MobileSAM\n    image: heartexlabs/label-studio-ml-backend:sam-master\n"
    assert pinned(text, REFERENCE) is None


@pytest.mark.parametrize(("reference", "words"), [
    ("ghcr.io/example-org/labeling-platform/sam-server:1.0.0", "has no digest"),
    ("ghcr.io/example-org/labeling-platform/sam-server:1.0.0@sha256:" + "ab" * 32, "looks made up"),
])
def test_only_a_reference_by_digest_is_pinned(reference, words):
    with pytest.raises(PinError) as refused:
        pinned(committed("Pulumi.dev.yaml"), reference)
    assert words in str(refused.value) and "expected repository:tag@sha256:<digest>" in str(refused.value)


def test_the_command_rewrites_the_files_it_is_given(tmp_path, capsys):
    files = []
    for name in STACK_FILES:
        files.append(tmp_path / name)
        files[-1].write_text(committed(name))
    assert main([REFERENCE, *map(str, files)]) == 0
    assert all(yaml.safe_load(path.read_text())["config"][SECTION]["image"] == REFERENCE for path in files)
    assert capsys.readouterr().out.splitlines() == [f"{path}: sam.image {REFERENCE}" for path in files]
    assert main(["registry.example.com/sam:1", str(files[0])]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"pin_sam_image: {files[0]}: 'registry.example.com/sam:1' has no digest")
