"""The server's settings, read once from the environment the SAM Deployment declares.

A bad value stops the server at start with one line naming the variable, the value and what
is allowed: the pod's log and its crash-loop status then say why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

# SAM 2.1's image models: (the sam2 package's config, Meta's checkpoint file name).
MODELS = {
    "sam2.1-tiny": ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt"),
    "sam2.1-small": ("configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt"),
    "sam2.1-base-plus": ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt"),
    "sam2.1-large": ("configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt"),
}
DEVICES = ("auto", "cpu", "cuda")
# One image's features take 16 MiB whatever the model size (SAM 2.1 embeds at 1024x1024):
# 64 images on a CPU pod, 128 on a GPU.
DEFAULT_CACHE_MIB = {"cpu": 1024, "cuda": 2048}
DEFAULT_WARMUP_QUEUE = 8
DEFAULT_DOWNLOADS = 4
DEFAULT_PORT = 9090
DEFAULT_CHECKPOINT_DIR = "/app/checkpoints"
TOKEN_VARIABLES = ("LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ACCESS_TOKEN")
URL_VARIABLES = ("LABEL_STUDIO_URL", "LABEL_STUDIO_HOST")


class ConfigError(Exception):
    """One line: the variable, its value, what is allowed."""


@dataclass(frozen=True)
class ServerConfig:
    model: str
    checkpoint: Path
    device: str                 # auto | cpu | cuda, as asked
    cache_mib: Optional[int]    # None: DEFAULT_CACHE_MIB of the device in use
    warmup_queue: int
    downloads: int
    label_studio_url: Optional[str]
    label_studio_token: Optional[str]
    host: str
    port: int
    # This replica's address and every replica's (host:port; a name may resolve to several):
    # with more than one, each image's clicks go to the replica that owns it.
    self_address: Optional[str]
    peers: tuple[str, ...]

    @property
    def model_config(self) -> str:
        return MODELS[self.model][0]

    def cache_bytes(self, device: str) -> int:
        return (self.cache_mib or DEFAULT_CACHE_MIB[device]) * 1024 * 1024


def _integer(environ: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number; expected {minimum}..{maximum}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}={raw!r} is out of range; expected {minimum}..{maximum}")
    return value


def _first(environ: Mapping[str, str], names: tuple[str, ...]) -> Optional[str]:
    return next((environ[name] for name in names if environ.get(name)), None)


def read_config(environ: Mapping[str, str] = os.environ) -> ServerConfig:
    model = environ.get("SAM_MODEL", "sam2.1-tiny")
    if model not in MODELS:
        raise ConfigError(f"SAM_MODEL={model!r} is not a SAM 2.1 model; expected one of {', '.join(MODELS)}")
    device = environ.get("SAM_DEVICE", "auto")
    if device not in DEVICES:
        raise ConfigError(f"SAM_DEVICE={device!r} is not a device; expected one of {', '.join(DEVICES)}")
    checkpoint = Path(environ.get("SAM_CHECKPOINT") or Path(environ.get("SAM_CHECKPOINT_DIR", DEFAULT_CHECKPOINT_DIR))
                      / MODELS[model][1])
    cache_mib = _integer(environ, "SAM_EMBEDDING_CACHE_MIB", 0, 0, 1024 * 1024) or None
    peers = tuple(peer.strip() for peer in environ.get("SAM_PEERS", "").split(",") if peer.strip())
    self_address = environ.get("SAM_SELF_ADDRESS") or None
    if peers and not self_address:
        raise ConfigError(f"SAM_PEERS={environ['SAM_PEERS']!r} is set without SAM_SELF_ADDRESS; "
                          "expected this replica's host:port beside it")
    return ServerConfig(
        model=model, checkpoint=checkpoint, device=device, cache_mib=cache_mib,
        warmup_queue=_integer(environ, "SAM_WARMUP_QUEUE", DEFAULT_WARMUP_QUEUE, 0, 1000),
        downloads=_integer(environ, "SAM_DOWNLOADS", DEFAULT_DOWNLOADS, 1, 64),
        label_studio_url=_first(environ, URL_VARIABLES), label_studio_token=_first(environ, TOKEN_VARIABLES),
        host=environ.get("SAM_HOST", "0.0.0.0"), port=_integer(environ, "SAM_PORT", DEFAULT_PORT, 1, 65535),
        self_address=self_address, peers=peers)
