"""The real SAM ML backend on this machine, for the opt-in live test and the latency benchmark:
the upstream `segment_anything_model` example of label-studio-ml-backend, from a checkout named
by LABEL_STUDIO_ML_BACKEND_DIR, with torch and the example's requirements in a virtual
environment of its own (SAM_BACKEND_VENV; `make env-sam-backend` makes both).

It starts the way its image starts it: the Dockerfile's CMD (gunicorn on _wsgi:app) run by a
shell in the example's directory, with the Dockerfile's ENV overridden by the env the SAM
Deployment declares, as Kubernetes overrides an image's env. Differences from the pod, each
harmless for what is tested:
- the checkpoint is MobileSAM (vit_t) with random weights, written at start where the image
  bakes the real one: the masks are garbage, but their size is the task image's and the work
  per image and per click is the same, since no operation depends on the weights' values;
- torch is the release on this machine's disk (tools/sam_backend_env.sh says which and why)
  instead of the image's 2.0.1, on Python 3.11 instead of 3.10;
- label-studio-sdk is PyPI's release where the image installs its git master;
- it listens on the loopback address Label Studio's SSRF protection lets through, and only
  there: the CMD's `--bind :PORT` would listen on every interface of this machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

from components.sam_container import BAKED_CHECKPOINT_DIR
from tests.image_definition import as_kubernetes_runs_it, read_image_definition
from tests.live_services import SAM_STUB_ADDRESS, free_port, start_process, wait_for_process_url

ML_BACKEND_DIR_VARIABLE = "LABEL_STUDIO_ML_BACKEND_DIR"
VENV_VARIABLE = "SAM_BACKEND_VENV"
SETUP_COMMAND = "make env-sam-backend"
EXAMPLE = Path("label_studio_ml/examples/segment_anything_model")
DEFAULT_VENV = (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                / "labeling-platform" / "sam-backend" / "venv")
# Loading MobileSAM takes seconds; on a busy 2-core machine both workers load at once.
LOAD_TIMEOUT_SECONDS = 300

# Run in the backend's environment: MobileSAM as mobile_sam builds it, initialised at random.
_RANDOM_CHECKPOINT = """
import sys
import torch
from mobile_sam import sam_model_registry
torch.manual_seed(0)
torch.save(sam_model_registry["vit_t"]().state_dict(), sys.argv[1])
"""


class IncompleteSetup(Exception):
    """LABEL_STUDIO_ML_BACKEND_DIR is set, but the checkout or its environment is missing."""


@dataclass(frozen=True)
class RealBackend:
    example_dir: Path
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def real_backend_from_environment() -> RealBackend | None:
    """The checkout and venv the environment names; None when LABEL_STUDIO_ML_BACKEND_DIR is unset."""
    checkout = os.environ.get(ML_BACKEND_DIR_VARIABLE)
    if not checkout:
        return None
    backend = RealBackend(Path(checkout) / EXAMPLE, Path(os.environ.get(VENV_VARIABLE) or DEFAULT_VENV))
    if not (backend.example_dir / "_wsgi.py").is_file():
        raise IncompleteSetup(f"{ML_BACKEND_DIR_VARIABLE}={checkout} has no {EXAMPLE}/_wsgi.py; run {SETUP_COMMAND}")
    if not backend.python.is_file():
        raise IncompleteSetup(f"no backend environment at {backend.venv} ({VENV_VARIABLE}); run {SETUP_COMMAND}")
    return backend


def image_definition(dockerfile: str) -> tuple[dict[str, str], str]:
    """(ENV, CMD) of the example's Dockerfile: its runtime env and its shell-form start command."""
    image = read_image_definition(dockerfile)
    if not isinstance(image.command, str) or not image.command.startswith("gunicorn "):
        raise ValueError(f"the example's image no longer starts gunicorn: CMD {image.command!r}")
    return dict(image.env), image.command


def loopback_command(command: str, address: str) -> str:
    """The image's gunicorn command listening on `address` only, on the port it names."""
    bound, binds = re.subn(r"--bind\s+[^\s:]*:(\S+)", lambda found: f"--bind {address}:{found.group(1)}", command)
    if binds != 1:
        raise ValueError(f"the example's start command has no one `--bind HOST:PORT` to move to {address}: {command!r}")
    return bound


def random_checkpoint(backend: RealBackend, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(backend.python), "-c", _RANDOM_CHECKPOINT, str(path)], check=True, capture_output=True,
                   timeout=300)
    return path


def process_environment(backend: RealBackend, dockerfile_env: Mapping[str, str], deployment_env: Mapping[str, str],
                        models_dir: Path, port: int) -> dict[str, str]:
    """The Dockerfile's ENV (checkpoint paths moved from the image's models directory to
    `models_dir`) overridden by the Deployment's, with the backend environment first on PATH."""
    image = {name: value.replace(BAKED_CHECKPOINT_DIR, str(models_dir)) for name, value in dockerfile_env.items()}
    environment = {**as_kubernetes_runs_it(image, deployment_env), "PORT": str(port)}
    environment["PATH"] = f"{backend.venv / 'bin'}:{environment.get('PATH', '/usr/bin:/bin')}"
    return environment


@contextlib.contextmanager
def running_real_backend(backend: RealBackend, deployment_env: Mapping[str, str], work_dir: Path,
                         log_dir: Path) -> Iterator[str]:
    """The example server with a random MobileSAM checkpoint, once /health answers; yields its URL."""
    dockerfile_env, image_command = image_definition((backend.example_dir / "Dockerfile").read_text())
    command = loopback_command(image_command, SAM_STUB_ADDRESS)
    port = free_port()
    environment = process_environment(backend, dockerfile_env, deployment_env, work_dir / "models", port)
    random_checkpoint(backend, Path(environment["MOBILESAM_CHECKPOINT"]))
    process = start_process(f"sam-real-{port}", ["/bin/sh", "-c", f"cd {shlex.quote(str(backend.example_dir))} "
                                                 f"&& exec {command}"], log_dir, environment)
    try:
        url = f"http://{SAM_STUB_ADDRESS}:{port}"
        wait_for_process_url(process, f"{url}/health", LOAD_TIMEOUT_SECONDS, expect_status=200)
        yield url
    finally:
        process.stop()
