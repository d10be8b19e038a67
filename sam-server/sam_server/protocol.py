"""Label Studio's ML backend protocol: what /predict receives and what it answers.

A click arrives as the labeling UI sends it through `/api/ml/<id>/interactive-annotating`: the
task, and a context whose results are smart keypoints (positive or negative) and rectangles in
percent of the image. The answer is a brush mask (Label Studio's RLE) of the image's own size.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Optional

import numpy as np
from label_studio_sdk.converter.brush import mask2rle

from sam_server.model import Prompt


class BadRequest(Exception):
    """The request cannot be answered as sent; one line."""


@dataclass(frozen=True)
class Tags:
    image_key: str   # task data key of the image
    image_name: str
    brush_name: str


def tags(label_config: Optional[str]) -> Tags:
    try:
        root = ElementTree.fromstring(label_config or "")
    except ElementTree.ParseError as error:
        raise BadRequest(f"the label config does not parse: {error}") from None
    image = next((tag for tag in root.iter("Image") if tag.get("value", "").startswith("$")), None)
    brush = next(root.iter("BrushLabels"), None)
    if image is None or brush is None:
        raise BadRequest('the label config has no <Image value="$..."> and <BrushLabels> for SAM to fill')
    return Tags(image.get("value")[1:], image.get("name", ""), brush.get("name", ""))


@dataclass(frozen=True)
class Click:
    prompt_percent: list[dict]   # the context's keypoints and rectangles
    label: str


def click(context: Optional[dict]) -> Optional[Click]:
    """The labeler's click, or None for a prediction asked without one (a task being opened)."""
    results = [r for r in ((context or {}).get("result") or []) if isinstance(r, dict)
               and r.get("type") in ("keypointlabels", "rectanglelabels")]
    if not results:
        return None
    last = results[-1]
    labels = (last.get("value") or {}).get(last["type"]) or [""]
    return Click(results, labels[0])


def prompt(clicked: Click, width: int, height: int) -> Prompt:
    """The click in the image's pixels: every keypoint, and the last rectangle as the box."""
    points, point_labels, box = [], [], None
    for result in clicked.prompt_percent:
        value = result.get("value") or {}
        try:
            x, y = float(value["x"]) * width / 100, float(value["y"]) * height / 100
            if result["type"] == "keypointlabels":
                points.append((x, y))
                point_labels.append(1 if result.get("is_positive", True) else 0)
            else:
                box = (x, y, x + float(value["width"]) * width / 100, y + float(value["height"]) * height / 100)
        except (KeyError, TypeError, ValueError):
            raise BadRequest(f"a {result['type']} in the context has no numeric x, y (and width, height)") from None
    return Prompt(points, point_labels, box)


def mask_result(mask: np.ndarray, found: Tags, label: str, score: float = 1.0) -> dict:
    height, width = mask.shape
    return {"from_name": found.brush_name, "to_name": found.image_name, "type": "brushlabels",
            "original_width": width, "original_height": height, "image_rotation": 0,
            "value": {"format": "rle", "rle": mask2rle(mask.astype(np.uint8) * 255), "brushlabels": [label]},
            "score": score, "readonly": False}


def answer(result: list[dict], model_version: str) -> dict:
    return {"results": [{"result": result, "score": 1.0 if result else 0.0, "model_version": model_version}]}
