"""A stand-in for the SAM ML backend that takes the real backend's download path.

Run as `python tests/sam_contract_backend.py --port P [--mode MODE]` with the environment the
SAM Deployment gives its container. It answers like label_studio_ml's server (GET /health,
POST /setup, POST /predict; an exception becomes a 500 whose `detail` is
"<ExceptionType>: <text>", as label_studio_ml.exceptions.exception_handler words it). /predict
downloads the task image with label-studio-sdk's own `get_local_path(url, task_id=...)`, the
function the example's model calls, reading LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY from the
environment, and answers with a brush RLE made by the SDK's converter (`brush.mask2rle`, as the
example does) over the downloaded image's size. What differs from the example: no model; the
mask is a fixed box instead of SAM's output, which has the same shape.

Modes:
  serial      one request at a time, like gunicorn with THREADS=1 (the Deployment's setting)
  racy        the example's image with its default THREADS=8 and 2 workers (the stack's CPU
              default): gunicorn workers, each with one predictor behind a one-image cache
              (ExamplePredictor); gunicorn hands a request to whichever worker accepts it first,
              here a seeded random choice (--seed). Simultaneous clicks that reach the same worker
              get another image's mask or the example's "An image must be set" error.
  no-task-id  downloads without the task id, as builds from before April 2024 did
"""

from __future__ import annotations

import argparse
import functools
import random
import re
import sys
import threading
import time
from pathlib import Path
from typing import Protocol

import numpy as np
from label_studio_sdk._extensions.label_studio_tools.core.utils.io import get_local_path
from label_studio_sdk.converter import brush
from PIL import Image

if __name__ == "__main__":  # run as a script: the project's tests package is importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.live_services import SamBackendStub  # noqa: E402 - after the path above

MODEL_VERSION = "sam-contract-stand-in"
# The example's costs, shortened: long enough that clicks Label Studio passes on at once overlap.
EMBEDDING_SECONDS = 0.5
DECODE_SECONDS = 0.2
RACY_WORKERS = 2


class Predictor(Protocol):
    def predict(self, path: str) -> tuple[int, int]:
        """The size of the mask predicted for the image at `path`."""


class OwnPredictor:
    """A predictor per request (THREADS=1): every mask is its own image's."""

    def predict(self, path: str) -> tuple[int, int]:
        with Image.open(path) as image:
            return image.size


class ExamplePredictor:
    """One worker's predictor as the example's sam_predictor.py drives segment_anything's
    SamPredictor: an image missing from its one-image cache is set, which resets the predictor
    and records the image's size at once and holds the features only after the embedding; a
    cached image is predicted on at once, with whatever the predictor then holds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: str | None = None
        self._size: tuple[int, int] | None = None
        self._image_set = False

    def predict(self, path: str) -> tuple[int, int]:
        with Image.open(path) as image:
            size = image.size
        with self._lock:
            missing = self._cached != path
            if missing:
                self._image_set, self._size = False, size
        time.sleep(EMBEDDING_SECONDS if missing else DECODE_SECONDS)
        with self._lock:
            if missing:
                self._image_set, self._cached = True, path
            if not self._image_set:
                raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
            return self._size


class AcceptingWorkers:
    """gunicorn's workers: each request goes to whichever accepts it first (a seeded random choice)."""

    def __init__(self, workers: int, seed: int):
        self._predictors = [ExamplePredictor() for _ in range(workers)]
        self._choice = random.Random(seed)
        self._lock = threading.Lock()

    def predict(self, path: str) -> tuple[int, int]:
        with self._lock:
            predictor = self._choice.choice(self._predictors)
        return predictor.predict(path)


def image_key(label_config: str) -> str:
    match = re.search(r'<Image[^>]*\svalue="\$([^"]+)"', label_config or "")
    if not match:
        raise ValueError("the label config has no <Image value=\"$...\">")
    return match.group(1)


def predict(body: dict, predictor: Predictor, with_task_id: bool = True, **download: str) -> dict:
    """The example's /predict, download included; `download` passes get_local_path's hostname,
    access_token and cache_dir where the environment does not hold them."""
    context = (body.get("params") or {}).get("context") or {}
    if not context.get("result"):
        return {"results": []}
    task = body["tasks"][0]
    url = task["data"][image_key(body.get("label_config"))]
    path = get_local_path(url, task_id=task["id"], **download) if with_task_id else get_local_path(url, **download)
    width, height = predictor.predict(path)
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 4: 3 * height // 4 + 1, width // 4: 3 * width // 4 + 1] = 1
    click = context["result"][0]
    label = click["value"][click["type"]][0]
    result = {"from_name": "tag", "to_name": click["to_name"], "type": "brushlabels",
              "original_width": click["original_width"], "original_height": click["original_height"],
              "image_rotation": 0, "value": {"format": "rle", "rle": brush.mask2rle(mask * 255), "brushlabels": [label]},
              "score": 0.9, "readonly": False}
    return {"results": [{"result": [result], "model_version": MODEL_VERSION, "score": 0.9}]}


def answer_predict(body: dict, predictor: Predictor, with_task_id: bool = True, **download: str) -> tuple[int, dict]:
    """(status, document) as label_studio_ml's server answers /predict."""
    try:
        return 200, predict(body, predictor, with_task_id, **download)
    except Exception as error:  # noqa: BLE001 - answered as label_studio_ml answers it
        return 500, {"status": 500, "detail": f"{type(error).__name__}: {error}"}


def serve(port: int, mode: str, seed: int) -> None:
    """label_studio_ml's routes (tests/live_services.py's stand-in) with this module's /predict."""
    predictor = AcceptingWorkers(RACY_WORKERS, seed) if mode == "racy" else OwnPredictor()
    predict_here = functools.partial(answer_predict, predictor=predictor, with_task_id=mode != "no-task-id")
    SamBackendStub(predict=predict_here, port=port, one_at_a_time=mode != "racy").start()
    threading.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=("serial", "racy", "no-task-id"), default="serial")
    parser.add_argument("--seed", type=int, default=0, help="racy: which worker takes each request")
    arguments = parser.parse_args()
    serve(arguments.port, arguments.mode, arguments.seed)
