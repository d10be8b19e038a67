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
  racy        concurrent requests around one shared "predictor", like THREADS=8: each request
              sets the shared image, waits until another request has set its own, then predicts
              on whatever image is set, so simultaneous clicks get another image's mask
  no-task-id  downloads without the task id, as builds from before April 2024 did
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import threading
from pathlib import Path

import numpy as np
from label_studio_sdk._extensions.label_studio_tools.core.utils.io import get_local_path
from label_studio_sdk.converter import brush
from PIL import Image

if __name__ == "__main__":  # run as a script: the project's tests package is importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.live_services import SamBackendStub  # noqa: E402 - after the path above

MODEL_VERSION = "sam-contract-stand-in"
# The racy predictor waits at most this long for a second request to overwrite its image.
RACE_WAIT_SECONDS = 3


class SharedPredictor:
    """The example's global predictor: the image last set is the one predicted on."""

    def __init__(self, racy: bool):
        self.racy = racy
        self.size: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._second_request = threading.Barrier(2, timeout=RACE_WAIT_SECONDS)

    def predict(self, path: str) -> tuple[int, int]:
        with Image.open(path) as image:
            size = image.size
        if not self.racy:
            return size
        with self._lock:
            self.size = size
        try:
            self._second_request.wait()
        except threading.BrokenBarrierError:
            self._second_request.reset()
        with self._lock:
            return self.size


def image_key(label_config: str) -> str:
    match = re.search(r'<Image[^>]*\svalue="\$([^"]+)"', label_config or "")
    if not match:
        raise ValueError("the label config has no <Image value=\"$...\">")
    return match.group(1)


def predict(body: dict, predictor: SharedPredictor, with_task_id: bool = True, **download: str) -> dict:
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


def answer_predict(body: dict, predictor: SharedPredictor, with_task_id: bool = True, **download: str) -> tuple[int, dict]:
    """(status, document) as label_studio_ml's server answers /predict."""
    try:
        return 200, predict(body, predictor, with_task_id, **download)
    except Exception as error:  # noqa: BLE001 - answered as label_studio_ml answers it
        return 500, {"status": 500, "detail": f"{type(error).__name__}: {error}"}


def serve(port: int, mode: str) -> None:
    """label_studio_ml's routes (tests/live_services.py's stand-in) with this module's /predict."""
    predict_here = functools.partial(answer_predict, predictor=SharedPredictor(racy=mode == "racy"),
                                     with_task_id=mode != "no-task-id")
    SamBackendStub(predict=predict_here, port=port, one_at_a_time=mode != "racy").start()
    threading.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=("serial", "racy", "no-task-id"), default="serial")
    arguments = parser.parse_args()
    serve(arguments.port, arguments.mode)
