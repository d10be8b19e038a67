"""Stack files as people edit them: every secret field judged on its own, and a file that is
not YAML stopped with one line naming the file, line and column."""

from __future__ import annotations

import shutil
from pathlib import Path

import pulumi
import pytest

from components import PROJECT_ROOT
from components.settings.stack_file import StackFileError, plaintext_paths
from tests.user_stacks import NEW_STACK_COMMANDS, SUITE_STACK_PREFIX, stack_file_text, write_user_stacks
from tools import stack_eval
from tools.stack_eval import evaluate, stack_config, stack_names

ENCRYPTED_ID_PLAIN_SECRET = NEW_STACK_COMMANDS["onprem"] + [
    # Typed without --secret: the CLI stores it as it was typed, beside the encrypted id.
    "pulumi config set --path storage.secretAccessKey wJalrXUtnFEMI-typed-in-plain-text",
]


@pytest.fixture
def project_copy(tmp_path: Path, monkeypatch) -> Path:
    """A copy of the project's Pulumi.yaml; stacks written beside it are evaluated from there."""
    shutil.copy(PROJECT_ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    monkeypatch.setattr(stack_eval, "PROJECT_DIRS", {**stack_eval.PROJECT_DIRS})
    return tmp_path


@pytest.fixture
def registrations():
    """stack_eval.PROJECT_DIRS as the session had it, restored after the test re-registers stacks."""
    saved = dict(stack_eval.PROJECT_DIRS)
    yield stack_eval.PROJECT_DIRS
    stack_eval.PROJECT_DIRS.clear()
    stack_eval.PROJECT_DIRS.update(saved)


def write_stack(directory: Path, name: str, text: str) -> None:
    (directory / f"Pulumi.{name}.yaml").write_text(text)
    stack_eval.PROJECT_DIRS[name] = directory


def test_a_plain_secret_beside_an_encrypted_one_stops_the_plan(project_copy):
    """Pulumi marks `storage` secret for the encrypted id alone; the stack file shows the key is not."""
    write_stack(project_copy, "mixed", stack_file_text(ENCRYPTED_ID_PLAIN_SECRET))
    _, _, secret_keys = stack_config("mixed")
    assert "labeling-platform:storage" in secret_keys  # what the CLI's hand-over says
    with pytest.raises(pulumi.RunError) as caught:
        evaluate("mixed")
    problems = [line.strip() for line in str(caught.value).splitlines()[1:]]
    assert problems == ["storage.secretAccessKey: is stored in plain text; set it with "
                        "`pulumi config set --secret --path storage.secretAccessKey ...`"]
    assert "wJalrXUtnFEMI" not in str(caught.value)


def test_secret_fields_set_with_secret_pass_on_their_own(project_copy):
    write_stack(project_copy, "encrypted", stack_file_text(NEW_STACK_COMMANDS["onprem"]))
    assert evaluate("encrypted").resources


def test_plaintext_paths_name_every_unencrypted_leaf():
    config = {"labeling-platform:storage": {"mode": "s3Compatible", "accessKeyId": {"secure": "v1:x"},
                                            "egressCidrs": ["10.0.0.0/8"]},
              "labeling-platform:namespace": "team", "aws:region": "eu-west-1"}
    assert plaintext_paths(config, "labeling-platform") == {
        "storage.mode", "storage.egressCidrs[0]", "namespace"}


def test_a_secret_from_outside_the_stack_file_is_judged_by_its_key(project_copy):
    """An ESC environment or a --config-file value is not in the file: Pulumi's word (the key is secret) stands."""
    write_stack(project_copy, "elsewhere", stack_file_text(
        [command for command in NEW_STACK_COMMANDS["onprem"] if "--secret" not in command]))
    secrets = {"storage.accessKeyId": "AKIAFROMESC", "storage.secretAccessKey": "secret-from-esc"}
    assert evaluate("elsewhere", secrets=secrets).resources


@pytest.mark.parametrize("text, where, problem", [
    ("config:\n  labeling-platform:namespace: team\n   labeling-platform:protect: true\n", ":3:29:",
     "mapping values are not allowed here"),
    ("config:\n  labeling-platform:storage:\n    mode: [aws\n", ":4:1:", "expected ',' or ']'"),
    ("config:\n\tlabeling-platform:namespace: team\n", ":2:1:", "found character '\\t'"),
])
def test_a_stack_file_that_is_not_yaml_stops_with_one_line(project_copy, text, where, problem):
    write_stack(project_copy, "broken", text)
    with pytest.raises(StackFileError) as caught:
        stack_config("broken")
    [line] = str(caught.value).splitlines()
    assert f"Pulumi.broken.yaml{where} not valid YAML: " in line and problem in line


def test_the_plan_prints_a_yaml_error_as_one_line(project_copy, capsys, tmp_path):
    from tools import plan

    write_stack(project_copy, "broken", "config:\n  labeling-platform:namespace: team\n   bad: [\n")
    assert plan.main(["broken", "--out", str(tmp_path / "out")]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and "Pulumi.broken.yaml:3:" in line and "Traceback" not in line


def test_a_user_stack_named_like_the_suites_own_is_tested_and_fails_on_a_bad_key(tmp_path, registrations):
    """A repository with its own `onprem`: the suite's stack of that kind is registered beside
    it under another name, so the user's file is the one evaluated, and its mistake shows."""
    repository, suite = tmp_path / "repository", tmp_path / "suite"
    repository.mkdir(), suite.mkdir()
    shutil.copy(PROJECT_ROOT / "Pulumi.yaml", repository / "Pulumi.yaml")
    user_file = stack_file_text(NEW_STACK_COMMANDS["onprem"] + ["pulumi config set --path sam.imageTag v1"])
    (repository / "Pulumi.onprem.yaml").write_text(user_file)

    suite_stacks = write_user_stacks(suite, repository)

    assert "onprem" in stack_names(repository) and "onprem" not in suite_stacks
    assert "onprem" not in registrations
    registrations["onprem"] = repository  # where the suite finds a repository stack file: beside Pulumi.yaml
    with pytest.raises(pulumi.RunError) as caught:
        evaluate("onprem")
    assert "sam.imageTag: is not a known key; did you mean 'sam.image'" in str(caught.value)
    for name in suite_stacks:
        assert evaluate(name).resources


def test_a_repository_stack_file_with_a_suite_stacks_name_is_an_error_naming_both(tmp_path, registrations):
    repository = tmp_path / "repository"
    repository.mkdir()
    shutil.copy(PROJECT_ROOT / "Pulumi.yaml", repository / "Pulumi.yaml")
    [name] = (f"{SUITE_STACK_PREFIX}{base}" for base in NEW_STACK_COMMANDS)
    (repository / f"Pulumi.{name}.yaml").write_text("config: {}\n")
    with pytest.raises(ValueError) as caught:
        write_user_stacks(tmp_path, repository)
    assert str(caught.value) == (f"stack name taken twice: {repository / f'Pulumi.{name}.yaml'} and the suite's "
                                 f"stack {name} (tests/user_stacks.py); rename the stack file")
