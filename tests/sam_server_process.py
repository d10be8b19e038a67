"""The platform's SAM server (sam-server/) on this machine, for the live tests and the benchmark:
started as its image starts it (sam-server/Dockerfile: its command, from the environment
sam-server/install.sh installs from sam-server/uv.lock, here .venv-sam-server by
`make env-sam-server`; its ENV overridden by the env the SAM Deployment declares; its working
directory the one holding the sam_server package).

Differences from the pod, each harmless for what is tested (LOCAL_VARIABLES are the ones set here):
- the checkpoint is SAM 2.1 with random weights, written at test time in the layout of Meta's
  files and loaded the way the image's checkpoint is: the masks mean nothing, but their size is
  the task image's and every tensor has its real shape, so the work per image and per click is
  the real work;
- it runs on the CPU, with torch's threads as the Deployment's CPU limit sets them;
- its address is a loopback one (SAM_STUB_ADDRESS, which Label Studio's SSRF protection lets
  through) on a free port, and the replicas it routes between are listed by address instead of
  being found through the headless Service's DNS name (the same code path: a name resolves to
  the addresses it stands for);
- the image's venv (/app/venv) is .venv-sam-server, and HOME and TMPDIR are a scratch directory
  per replica instead of the pod's /tmp volume.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import urllib.request
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from components import PROJECT_ROOT
from tests.image_definition import ImageDefinition, as_kubernetes_runs_it, read_image_definition
from tests.live_services import SAM_STUB_ADDRESS, free_port, start_process, wait_for_process_url
from tests.prerequisites import require_path

SERVER_DIR = PROJECT_ROOT / "sam-server"
SERVER_DOCKERFILE = SERVER_DIR / "Dockerfile"
SERVER_VENV = PROJECT_ROOT / ".venv-sam-server"
SERVER_PYTHON = SERVER_VENV / "bin" / "python"
# Where the image's build puts the environment install.sh makes (the Dockerfile's RUN).
IMAGE_VENV = "/app/venv"
# What a replica on this machine sets beside the Deployment's env (the differences above).
LOCAL_VARIABLES = frozenset({"SAM_HOST", "SAM_PORT", "SAM_SELF_ADDRESS", "SAM_PEERS", "SAM_CHECKPOINT", "HOME",
                             "TMPDIR"})
SETUP_COMMAND = "make env-sam-server"
# Loading SAM 2.1 tiny takes a second or two; on a busy 2-core machine, more.
LOAD_TIMEOUT_SECONDS = 180


def server_python() -> Path:
    return require_path(SERVER_PYTHON, "the SAM server's environment", f"run {SETUP_COMMAND}")


def random_checkpoint(model: str, directory: Path) -> Path:
    """A SAM 2.1 checkpoint with random weights (made once per directory and model)."""
    path = directory / f"{model}-random.pt"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(server_python()), "-m", "sam_server.random_checkpoint", model, str(path)], cwd=SERVER_DIR,
                       check=True, capture_output=True, timeout=300)
    return path


def server_image() -> ImageDefinition:
    return read_image_definition(SERVER_DOCKERFILE.read_text())


def server_process(image: ImageDefinition, deployment_env: Mapping[str, str],
                   local_env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """(argv, env) of a replica: the image's command with this machine's venv for the image's,
    and the image's ENV overridden by the Deployment's env, then by what differs here."""
    unknown = set(local_env) - LOCAL_VARIABLES
    if unknown:
        raise ValueError(f"{sorted(unknown)} differ from the pod without being listed in LOCAL_VARIABLES")
    argv = [str(SERVER_VENV) + arg[len(IMAGE_VENV):] if arg.startswith(IMAGE_VENV + "/") else arg
            for arg in image.command]
    return argv, {**as_kubernetes_runs_it(image.env, deployment_env), **local_env}


@contextlib.contextmanager
def running_sam_servers(deployment_env: Mapping[str, str], work_dir: Path, log_dir: Path,
                        replicas: int = 1) -> Iterator[Sequence[str]]:
    """`replicas` servers with the Deployment's env, routing between each other as the pods do;
    yields their URLs once every one answers /health."""
    server_python()
    image = server_image()
    ports = [free_port() for _ in range(replicas)]
    addresses = [f"{SAM_STUB_ADDRESS}:{port}" for port in ports]
    checkpoint = random_checkpoint(deployment_env["SAM_MODEL"], work_dir / "checkpoints")
    processes = []
    try:
        for port, address in zip(ports, addresses):
            scratch = work_dir / f"replica-{port}"
            scratch.mkdir(parents=True, exist_ok=True)
            local = {"SAM_HOST": SAM_STUB_ADDRESS, "SAM_PORT": str(port), "SAM_SELF_ADDRESS": address,
                     "SAM_PEERS": ",".join(addresses), "SAM_CHECKPOINT": str(checkpoint), "HOME": str(scratch),
                     "TMPDIR": str(scratch)}
            argv, environment = server_process(image, deployment_env, local)
            # The image's WORKDIR holds the sam_server package, as sam-server/ does here.
            processes.append(start_process(f"sam-server-{port}", argv, log_dir, environment, cwd=SERVER_DIR))
        urls = [f"http://{address}" for address in addresses]
        for process, url in zip(processes, urls):
            wait_for_process_url(process, f"{url}/health", LOAD_TIMEOUT_SECONDS, expect_status=200)
        yield urls
    finally:
        for process in processes:
            process.stop()


def metric(url: str, name: str, **labels: str) -> float:
    """One series' value from /metrics (0 when it has not been written yet)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    selector = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = re.escape(name + (f"{{{selector}}}" if selector else "")) + r" (\S+)"
    found = re.search(rf"^{pattern}$", text, flags=re.M)
    return float(found.group(1)) if found else 0.0
