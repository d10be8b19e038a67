"""The platform's SAM server image (sam-server/Dockerfile), read with a real Dockerfile parser
(tests/image_definition.py): every base image pinned by digest; the environment installed from
sam-server/uv.lock through sam-server/install.sh and nothing else; Meta's checkpoints checked
against a pinned sum for every model the server knows; the user, ENV and port the SAM
Deployment counts on; and the start command the live tests run (tests/sam_server_process.py,
whose replicas are the Dockerfile's command with its ENV overridden by the Deployment's: the
live tests prove the lock installs and serves as the image would run it).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from components import PROJECT_ROOT
from components.sam_container import SAM_PORT, SAM_SERVER_UID
from components.settings import image_reference_problem
from components.settings.checks import placeholder_pattern
from tests import sam_server_process
from tests.conftest import evaluate_cached
from tests.image_definition import as_kubernetes_runs_it, read_image_definition
from tests.sam_live import container_environment
from tests.sam_server_process import IMAGE_VENV, LOCAL_VARIABLES, SERVER_DIR, SERVER_DOCKERFILE, server_image

SUMS_FILE = SERVER_DIR / "checkpoints.sha256"
DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"
INSTALL_SCRIPT = "sam-server/install.sh"


def server_config() -> ModuleType:
    """sam-server/sam_server/config.py by its path: it imports only the standard library, and
    torch, which the rest of the server needs, never enters this environment."""
    spec = importlib.util.spec_from_file_location("sam_server_config", SERVER_DIR / "sam_server" / "config.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def pinned_sums() -> dict[str, str]:
    lines = [line.split() for line in SUMS_FILE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {name: digest for digest, name in lines}


def install_run() -> list[str]:
    """The words of the one RUN that installs the server's environment."""
    [run] = [run for run in server_image().runs if INSTALL_SCRIPT.split("/")[-1] in run]
    return shlex.split(run)


def test_every_base_image_is_pinned_by_a_real_looking_digest():
    image = server_image()
    assert image.parent_images
    for parent in image.parent_images:
        assert "@sha256:" in parent, parent
        assert image_reference_problem(parent) == (None, False), parent
    # A `# syntax=` line would have BuildKit pull a Dockerfile frontend image by tag.
    assert not re.match(r"#\s*syntax\s*=", SERVER_DOCKERFILE.read_text())


def test_the_image_runs_as_the_deployments_numeric_non_root_user():
    user, _, group = server_image().user.partition(":")
    assert user.isdigit() and int(user) == SAM_SERVER_UID != 0
    assert group in ("", str(SAM_SERVER_UID))


def test_the_environment_is_the_lock_installed_by_install_sh_with_the_runtime_and_build_groups():
    words = install_run()
    assert words[words.index("bash") + 1].endswith(INSTALL_SCRIPT) and words[words.index("bash") + 2] == IMAGE_VENV
    groups = next(word for word in words if word.startswith("SAM_SERVER_GROUPS=")).partition("=")[2].split()
    declared = tomllib.loads((SERVER_DIR / "pyproject.toml").read_text())["dependency-groups"]
    assert groups[1::2] == sorted(set(declared) - {"test"}) and set(groups[::2]) == {"--group"}
    assert {"sam-server/uv.lock", "sam-server/pyproject.toml", INSTALL_SCRIPT} <= set(server_image().context_sources)
    # No other resolution: pip installs only uv, from its hash-pinned requirements file.
    for run in server_image().runs:
        assert not re.search(r"\buv\s+(pip|sync|add)\b", run), run
        if re.search(r"\bpip\s+install\b", run):
            assert "--require-hashes" in run and run.split()[-1].endswith("requirements-uv.txt"), run


def test_the_checkpoint_sums_cover_every_model_the_server_knows():
    sums = pinned_sums()
    assert set(sums) == {file for _, file in server_config().MODELS.values()}
    for file, digest in sums.items():
        assert re.fullmatch(r"[0-9a-f]{64}", digest) and placeholder_pattern(digest) is None, file


def test_the_checkpoints_land_where_the_server_looks_for_them():
    config = server_config()
    image = server_image()
    assert image.env["SAM_CHECKPOINT_DIR"] == config.DEFAULT_CHECKPOINT_DIR
    [fetch] = [run for run in image.runs if "sam_server.checkpoints" in run]
    assert shlex.split(fetch)[shlex.split(fetch).index("sam_server.checkpoints") + 1] == config.DEFAULT_CHECKPOINT_DIR


def test_the_images_env_and_port_agree_with_the_deployment():
    image = server_image()
    evaluation = evaluate_cached("dev", {"sam.model": "sam2.1-tiny"})
    [container] = evaluation.one("kubernetes:apps/v1:Deployment", "labeling-sam-deployment").inputs["spec"][
        "template"]["spec"]["containers"]
    deployment = {variable["name"]: variable.get("value") for variable in container["env"]}
    for name in ("HOME", "SAM_PORT"):
        assert image.env[name] == deployment[name], name
    assert image.exposed == (str(SAM_PORT),) and deployment["SAM_PORT"] == str(SAM_PORT)


def test_the_start_command_is_the_one_the_tests_run():
    image = server_image()
    assert image.command == (f"{IMAGE_VENV}/bin/python", "-m", "sam_server")
    argv, _ = sam_server_process.server_process(image, {}, {})
    assert argv == [str(sam_server_process.SERVER_PYTHON), "-m", "sam_server"]
    # The working directory holds the package `python -m` finds, as sam-server/ does here.
    assert image.workdir == "/app" and "sam-server/sam_server" in image.context_sources
    assert "COPY sam-server/sam_server /app/sam_server" in SERVER_DOCKERFILE.read_text()


def test_the_live_tests_start_the_dockerfiles_command_with_the_deployments_env(monkeypatch, tmp_path):
    """What running_sam_servers hands the operating system, for two replicas of dev's server."""
    started = []

    class Started:
        def stop(self):
            pass

    def start_process(name, argv, log_dir, env, cwd):
        started.append((argv, env, cwd))
        return Started()

    monkeypatch.setattr(sam_server_process, "start_process", start_process)
    monkeypatch.setattr(sam_server_process, "wait_for_process_url", lambda *args, **kwargs: None)
    monkeypatch.setattr(sam_server_process, "server_python", lambda: sam_server_process.SERVER_PYTHON)
    monkeypatch.setattr(sam_server_process, "random_checkpoint", lambda model, directory: directory / f"{model}.pt")
    deployment_env = container_environment(evaluate_cached("dev", {"sam.model": "sam2.1-tiny"}),
                                           "http://127.0.0.1:8080", "token", tmp_path)
    with sam_server_process.running_sam_servers(deployment_env, tmp_path, tmp_path, replicas=2):
        pass
    image = read_image_definition(SERVER_DOCKERFILE.read_text())
    assert len(started) == 2
    for argv, env, cwd in started:
        assert argv == [str(sam_server_process.SERVER_PYTHON), "-m", "sam_server"]
        local = {name: value for name, value in env.items()
                 if as_kubernetes_runs_it(image.env, deployment_env).get(name) != value}
        assert set(local) <= LOCAL_VARIABLES, set(local) - LOCAL_VARIABLES
        assert env == {**image.env, **deployment_env, **local}
        assert Path(cwd) == SERVER_DIR
    # The image's ENV is there where the Deployment does not set it.
    assert all(started[0][1][name] == value for name, value in image.env.items() if name not in deployment_env)


@pytest.mark.parametrize("source", sorted(set(server_image().context_sources)))
def test_the_build_context_holds_what_the_image_copies(source):
    """.dockerignore lets through each file or directory a COPY takes from the context, and it exists."""
    allowed = [line[1:].rstrip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.startswith("!")]
    assert any(source.rstrip("/") == entry or source.startswith(entry + "/") for entry in allowed), source
    assert (PROJECT_ROOT / source).exists(), source
