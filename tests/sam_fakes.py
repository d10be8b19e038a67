"""The SAM corner of the in-memory Label Studio of the fast tests: tasks whose images live in
S3, the presign download, and interactive predictions answered as Label Studio 1.23.2 relays
them (`{"data": ...}` or `{"errors": [...]}`), including how each kind of broken backend shows
there. The strings are those requests and the example server produce; the live contract test
(tests/test_sam_contract_live.py) checks the self-test against the real ones."""

from __future__ import annotations

import base64
import json
import threading

import numpy as np
from label_studio_sdk.converter import brush

from components import PROJECT_ROOT
from reconciler.sam_selftest import CONCURRENT_PREDICTIONS
from tests.live_services import png_bytes

SAM_CONFIG = (PROJECT_ROOT / "label_configs" / "sam_segmentation.xml").read_text()
SAM_URL = "http://sam:9090"

# How Label Studio words a backend it could not reach, one that hung, and one that failed.
UNREACHABLE = ("HTTPConnectionPool(host='sam', port=9090): Max retries exceeded with url: /predict (Caused by "
               "NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f00>: Failed to establish a new "
               "connection: [Errno 111] Connection refused'))")
TIMED_OUT = "HTTPConnectionPool(host='sam', port=9090): Read timed out. (read timeout=100.0)"
FAILED = f"500 Server Error: INTERNAL SERVER ERROR for url: {SAM_URL}/predict"
# What the example's predictor raises when a simultaneous request reset its image mid-click.
LOST_IMAGE = "RuntimeError: An image must be set with .set_image(...) before mask prediction."


def image_side(task_id: int) -> int:
    """Every task's image has its own size, so a mask of the wrong image shows."""
    return 8 + task_id % 7


def storage_uri(task_id: int) -> str:
    return f"s3://b/fruit/{task_id}.png"


def resolve_url(task_id: int) -> str:
    encoded = base64.urlsafe_b64encode(storage_uri(task_id).encode()).decode()
    return f"http://label-studio:80/tasks/{task_id}/resolve/?fileuri={encoded}"


def brush_rle(width: int, height: int) -> list[int]:
    """A mask covering the middle of a width x height image, encoded by the SDK's converter as
    the example backend does (brush.mask2rle of mask * 255)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 255
    return brush.mask2rle(mask)


class FakeSam:
    """What Label Studio answers for an interactive prediction, by `behaviour`: works, empty,
    unreachable, timeout, fails (the backend's /predict answers 500 with `detail`); and, from
    round `racy_from_round` of the self-test's simultaneous clicks on (each task alone works):
    racy (the mask of another image), fails-together (500, while the backend asked directly
    answers with `detail`, or a mask when that is empty). Each click moves the fake's clock
    on by `click_seconds`."""

    def __init__(self, behaviour: str = "works", detail: str = "", download_status: int = 200,
                 racy_from_round: int = 1, click_seconds: float = 0.0):
        self.behaviour = behaviour
        self.detail = detail
        # What Label Studio answers for a task's image (its presign URL).
        self.download_status = download_status
        self.racy_from_round = racy_from_round
        self.click_seconds = click_seconds
        self.now = 0.0
        self.contexts: list[dict] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def _in_racy_round(self) -> bool:
        """Whether the click just recorded came in a round of simultaneous clicks that goes wrong."""
        clicks_alone = CONCURRENT_PREDICTIONS
        round_number = (len(self.contexts) - 1 - clicks_alone) // CONCURRENT_PREDICTIONS + 1
        return len(self.contexts) > clicks_alone and round_number >= self.racy_from_round

    def interactive(self, task_id: int, context: dict) -> dict:
        with self._lock:
            self.contexts.append(context)
            self.now += self.click_seconds
            racy = self._in_racy_round()
        side = image_side(task_id)
        if self.behaviour == "fails-together":
            return {"errors": [FAILED]} if racy else self._mask(side, side)
        if self.behaviour in ("works", "racy"):
            return self._mask(side, side + 1 if self.behaviour == "racy" and racy else side)
        if self.behaviour == "empty":
            return {"data": {"result": [], "score": 0, "model_version": "fake"}}
        return {"errors": [{"unreachable": UNREACHABLE, "timeout": TIMED_OUT, "fails": FAILED}[self.behaviour]]}

    @staticmethod
    def _mask(side: int, other: int) -> dict:
        """Label Studio's relay of a mask of an `other` x `other` image for a `side` x `side` one."""
        result = {"from_name": "tag", "to_name": "image", "type": "brushlabels", "original_width": side,
                  "original_height": side, "value": {"format": "rle", "rle": brush_rle(other, other),
                                                     "brushlabels": ["Banana"]}}
        return {"data": {"result": [result], "score": 0.9, "model_version": "fake"}}

    def backend(self, request, timeout: float) -> tuple[int, bytes]:
        """The backend's own /predict, when the self-test asks it directly."""
        if self.behaviour not in ("fails", "fails-together") or not self.detail:
            return 200, json.dumps({"results": []}).encode()
        return 500, json.dumps({"status": 500, "detail": self.detail, "result": {"traceback": "..."}}).encode()

    @staticmethod
    def image(task_id: int) -> bytes:
        return png_bytes(task_id, side=image_side(task_id))
