"""`python -m sam_server`: load the model, then serve (the port opens once the model is loaded,
so the pod's startup probe covers loading)."""

from __future__ import annotations

import logging
import os
import sys

import torch
import uvicorn

from sam_server.app import Server
from sam_server.config import ConfigError, read_config


def main() -> int:
    # sam2 logs every embedding at INFO on the root logger: the server's own lines only.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("sam_server").setLevel(os.environ.get("LOG_LEVEL", "INFO"))
    try:
        config = read_config()
    except ConfigError as error:
        print(f"sam-server: {error}", file=sys.stderr)
        return 2
    from sam_server.model import SegmentAnything
    try:
        model = SegmentAnything(config)
    except RuntimeError as error:
        print(f"sam-server: {error}", file=sys.stderr)
        return 1
    logging.getLogger("sam_server").info("serving %s on %s with %d torch threads", config.model, model.device,
                                         torch.get_num_threads())
    server = Server(config, model)
    uvicorn.run(server.app(), host=config.host, port=config.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
