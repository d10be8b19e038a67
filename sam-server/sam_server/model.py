"""SAM 2.1's image model: an image's features once, then a mask per click from them.

Each thread that calls in gets a predictor of its own over the one shared model (the weights
are only read), and a decode hands its image's features to that thread's predictor just before
predicting: no request sees another request's image, whatever the threads do.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from sam2.build_sam import build_sam2
from sam2.sam2_image_predictor import SAM2ImagePredictor

from sam_server.config import ServerConfig


@dataclass(frozen=True)
class Features:
    """What SAM 2.1 keeps of one image: its embedding, two high-resolution maps and its size."""

    tensors: dict
    height: int
    width: int

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in (self.tensors["image_embed"], *self.tensors["high_res_feats"]))


@dataclass(frozen=True)
class Prompt:
    points: Sequence[tuple[float, float]]   # pixels
    point_labels: Sequence[int]             # 1 positive, 0 negative
    box: Optional[tuple[float, float, float, float]] = None  # x0, y0, x1, y1 in pixels


def pick_device(asked: str) -> str:
    if asked == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if asked == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("SAM_DEVICE='cuda' but torch sees no CUDA device (no GPU in the pod, or a driver "
                           "older than this torch's CUDA); expected a GPU node or SAM_DEVICE=cpu")
    return asked


class SegmentAnything:
    def __init__(self, config: ServerConfig):
        self.device = pick_device(config.device)
        if not config.checkpoint.is_file():
            raise RuntimeError(f"SAM checkpoint {config.checkpoint} is missing; expected the image's "
                               f"checkpoints or SAM_CHECKPOINT naming the {config.model} file")
        self.model = build_sam2(config.model_config, ckpt_path=str(config.checkpoint), device=self.device)
        self._local = threading.local()

    def _predictor(self) -> SAM2ImagePredictor:
        predictor = getattr(self._local, "predictor", None)
        if predictor is None:
            predictor = self._local.predictor = SAM2ImagePredictor(self.model)
        return predictor

    @torch.inference_mode()
    def embed(self, image: np.ndarray) -> Features:
        """An RGB image (height, width, 3, uint8) -> its features."""
        predictor = self._predictor()
        predictor.set_image(image)
        features = Features(predictor._features, *image.shape[:2])
        predictor.reset_predictor()
        return features

    @torch.inference_mode()
    def decode(self, features: Features, prompt: Prompt) -> np.ndarray:
        """The best mask for `prompt`, (height, width) bool."""
        predictor = self._predictor()
        predictor._features = features.tensors
        predictor._orig_hw = [(features.height, features.width)]
        predictor._is_image_set = True
        predictor._is_batch = False
        try:
            masks, scores, _ = predictor.predict(
                point_coords=np.array(prompt.points, dtype=np.float32) if prompt.points else None,
                point_labels=np.array(prompt.point_labels, dtype=np.int32) if prompt.points else None,
                box=np.array(prompt.box, dtype=np.float32) if prompt.box else None,
                multimask_output=False)
        finally:
            predictor.reset_predictor()
        return masks[int(np.argmax(scores))] > 0
