"""`python -m sam_server.random_checkpoint <model> <path>`: a checkpoint of SAM 2.1 with random
weights, in the layout of Meta's files, for tests and benchmarks. The server loads it the way it
loads a real checkpoint: the masks mean nothing, but every tensor has its real shape, so the
work per image and per click is the real work."""

from __future__ import annotations

import sys

import torch
from sam2.build_sam import build_sam2

from sam_server.config import MODELS


def write(model: str, path: str) -> None:
    torch.manual_seed(0)
    torch.save({"model": build_sam2(MODELS[model][0], ckpt_path=None, device="cpu").state_dict()}, path)


if __name__ == "__main__":
    write(sys.argv[1], sys.argv[2])
