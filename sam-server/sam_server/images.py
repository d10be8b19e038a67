"""Task images, downloaded the way every Label Studio ML backend downloads them, and not kept.

label-studio-sdk's `get_local_path(url, task_id=...)` asks Label Studio for the task's image
(`/tasks/<id>/presign/` for cloud storage, following a redirect to a presigned URL) with the
backend's token. It caches every file it fetches and never evicts one; here each download goes
to a directory of its own that is removed once the image is decoded: what is worth keeping of
an image is its features, which the embedding cache bounds.
"""

from __future__ import annotations

import tempfile
from typing import Optional

import numpy as np
from label_studio_sdk._extensions.label_studio_tools.core.utils.io import get_local_path
from PIL import Image

from sam_server.config import ServerConfig


class NoToken(Exception):
    pass


def download_rgb(config: ServerConfig, url: str, task_id: Optional[int], scratch: Optional[str] = None) -> np.ndarray:
    """The task image as RGB (height, width, 3) uint8."""
    if not config.label_studio_token:
        raise NoToken("no Label Studio token: set LABEL_STUDIO_API_KEY (or LABEL_STUDIO_ACCESS_TOKEN)")
    with tempfile.TemporaryDirectory(prefix="sam-image-", dir=scratch) as directory:
        path = get_local_path(url, cache_dir=directory, hostname=config.label_studio_url,
                              access_token=config.label_studio_token, task_id=task_id)
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
