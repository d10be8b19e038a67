"""The SAM container: its environment, volumes and security, by the server that runs in it.

The platform's server (sam-server/, the sam2.1-* models) reads sam-server/sam_server/config.py's
variables and runs as its image's own user on a read-only root filesystem; the upstream
label-studio-ml-backend examples read theirs and need a writable root filesystem.
"""

from __future__ import annotations

import math

import pulumi

from components.conventions import HARDENED_CONTAINER, UNPRIVILEGED_CONTAINER, SecretKeyRef
from components.settings import SamModel, SamSettings
from components.settings.checks import quantity_value
from reconciler.contract import SAM_SERVICE_NAME

# label_studio_ml's gunicorn and the platform's server listen here.
SAM_PORT = 9090
SAM_PORT_NAME = "http"
# The platform's server finds its fellow replicas by this headless Service's addresses.
SAM_PEERS_NAME = f"{SAM_SERVICE_NAME}-peers"
# The user the platform's server image runs as (sam-server/Dockerfile).
SAM_SERVER_UID = 10001

# The image bakes its checkpoints into /app/models; MODEL_DIR (the backend's sqlite
# cache of label configs and model versions) must be writable, so it gets its own
# directory and the baked checkpoints stay visible.
BAKED_CHECKPOINT_DIR = "/app/models"
MODEL_CACHE_DIR = "/model-cache"

# label-studio-sdk's get_local_path caches every downloaded task image under
# $XDG_CACHE_HOME/label-studio and never evicts one: the cache gets a sized emptyDir of its
# own instead of growing on the container's writable layer.
IMAGE_CACHE_DIR = "/image-cache"
# The example keeps one predictor per process and gunicorn's THREADS=8 default lets
# concurrent clicks on different images overwrite each other's image in it (masks come back
# shaped like another image). One thread per worker: a worker answers one request at a time.
THREADS_PER_WORKER = 1

# The backend accepts either spelling; the upstream docker-compose and the seed's image
# use the older one, current releases document the newer one. Setting both keeps every
# image version working (without them it fails with "no access_token provided").
LABEL_STUDIO_URL_VARIABLES = ("LABEL_STUDIO_URL", "LABEL_STUDIO_HOST")
LABEL_STUDIO_TOKEN_VARIABLES = ("LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ACCESS_TOKEN")


def compute_threads(settings: SamSettings) -> int:
    """Threads each worker's torch may use: its share of the CPU limit, at least one. Without
    it torch starts one thread per core of the node, far more than the limit grants."""
    cpu_limit = settings.resources.limits.get("cpu")
    if not cpu_limit:
        return 1
    return max(1, math.floor(quantity_value(cpu_limit) / settings.workers))


def _thread_environment(settings: SamSettings) -> list[dict]:
    # torch sizes its intra-op pool from OMP_NUM_THREADS; MKL and OpenBLAS read their own.
    threads = str(compute_threads(settings))
    return [{"name": name, "value": threads} for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")]


def peers_address(namespace: pulumi.Input[str]) -> pulumi.Input[str]:
    """host:port of every replica of the platform's server: the headless Service's name."""
    def address(ns: str) -> str:
        return f"{SAM_PEERS_NAME}.{ns}.svc.cluster.local:{SAM_PORT}"
    return address(namespace) if isinstance(namespace, str) else pulumi.Output.from_input(namespace).apply(address)


def _server_environment(settings: SamSettings, namespace: pulumi.Input[str], label_studio_url: pulumi.Input[str],
                        api_token: SecretKeyRef) -> list[dict]:
    """What sam-server/sam_server/config.py reads."""
    return [
        {"name": "SAM_MODEL", "value": settings.model.value},
        {"name": "SAM_DEVICE", "value": "cuda" if settings.gpus > 0 else "cpu"},
        {"name": "SAM_EMBEDDING_CACHE_MIB", "value": str(settings.embedding_cache_mib)},
        {"name": "SAM_PORT", "value": str(SAM_PORT)},
        {"name": "LABEL_STUDIO_URL", "value": label_studio_url},
        api_token.env("LABEL_STUDIO_API_KEY"),
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "SAM_SELF_ADDRESS", "value": f"$(POD_IP):{SAM_PORT}"},
        {"name": "SAM_PEERS", "value": peers_address(namespace)},
        {"name": "LOG_LEVEL", "value": "INFO"},
        # The root filesystem is read-only: torch's and hydra's caches go to the /tmp volume.
        {"name": "HOME", "value": "/tmp"},
        *_thread_environment(settings),
    ]


def _model_environment(settings: SamSettings) -> list[dict]:
    if settings.model is SamModel.SAM2:
        # segment_anything_2_image reads these three; its checkpoints sit under the image's checkpoints/.
        return [{"name": "DEVICE", "value": "cuda"}, {"name": "MODEL_CONFIG", "value": settings.model_config},
                {"name": "MODEL_CHECKPOINT", "value": settings.model_checkpoint}]
    return [{"name": "SAM_CHOICE", "value": settings.model.value}]


def _example_environment(settings: SamSettings, label_studio_url: pulumi.Input[str],
                         api_token: SecretKeyRef) -> list[dict]:
    """What the upstream label-studio-ml-backend examples read."""
    return [
        *_model_environment(settings),
        *({"name": name, "value": label_studio_url} for name in LABEL_STUDIO_URL_VARIABLES),
        *(api_token.env(name) for name in LABEL_STUDIO_TOKEN_VARIABLES),
        {"name": "MODEL_DIR", "value": MODEL_CACHE_DIR},
        {"name": "LOG_LEVEL", "value": "INFO"},
        # Read by the image's start command (gunicorn --workers $WORKERS --threads $THREADS).
        {"name": "WORKERS", "value": str(settings.workers)},
        {"name": "THREADS", "value": str(THREADS_PER_WORKER)},
        *_thread_environment(settings),
        {"name": "XDG_CACHE_HOME", "value": IMAGE_CACHE_DIR},
    ]


def container_security(settings: SamSettings) -> dict:
    if settings.model.platform_server:
        # The platform's image runs as its own user and writes only to its volumes.
        return {**HARDENED_CONTAINER, "runAsNonRoot": True, "runAsUser": SAM_SERVER_UID, "runAsGroup": SAM_SERVER_UID}
    # The upstream image has no USER and writes caches (torch, matplotlib, the model's sqlite)
    # under root's home and its working directory, so runAsNonRoot and readOnlyRootFilesystem
    # would break it. What can be taken away is: no privilege escalation, no Linux
    # capabilities, no privileged mode.
    return dict(UNPRIVILEGED_CONTAINER)


def volumes_and_mounts(settings: SamSettings) -> tuple[list[dict], list[dict]]:
    """(volumes, mounts) of the SAM container."""
    # PyTorch exchanges tensors through shared memory; the runtime's default 64 MiB /dev/shm is too small.
    volumes = [("dshm", "/dev/shm", {"emptyDir": {"medium": "Memory", "sizeLimit": settings.shm_size}}),
               ("tmp", "/tmp", {"emptyDir": {}})]
    if not settings.model.platform_server:
        volumes += [("model-cache", MODEL_CACHE_DIR, {"emptyDir": {}}),
                    ("image-cache", IMAGE_CACHE_DIR, {"emptyDir": {"sizeLimit": settings.image_cache_size}})]
    return ([{"name": name, **source} for name, _, source in volumes],
            [{"name": name, "mountPath": path} for name, path, _ in volumes])


def environment(settings: SamSettings, namespace: pulumi.Input[str], label_studio_url: pulumi.Input[str],
                api_token: SecretKeyRef) -> list[dict]:
    if settings.model.platform_server:
        return _server_environment(settings, namespace, label_studio_url, api_token)
    return _example_environment(settings, label_studio_url, api_token)
