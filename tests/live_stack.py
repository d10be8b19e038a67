"""The platform's services on 127.0.0.1, as the cluster runs them: moto holding the images,
Label Studio served by uWSGI on PostgreSQL with the env of the rendered app container
(tests/app_environment.py), and a stand-in for the SAM backend."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

from components.labeling import DESIRED_STATE_FILE, reconciler_modules
from reconciler import contract
from tests.app_environment import LocalValues, app_environment, local_stack
from tests.label_studio_server import LabelStudioServer, serve_label_studio
from tests.sam_contract_backend import OwnPredictor, answer_predict
from tests.live_services import (
    LOOPBACK,
    MOTO_ACCESS_KEY_ID,
    MOTO_SECRET_ACCESS_KEY,
    LabelStudioAdmin,
    SamBackendStub,
    free_port,
    start_moto,
    upload_images,
)
from tools.stack_eval import Evaluation

# The line of a passing SAM self-test: a run that changes nothing still prints it.
SAM_SELF_TEST_PASSED = r"SAM self-test: masks of each image's own size"
# The release's uwsgi.ini: requests running longer are killed.
RELEASE_HARAKIRI_SECONDS = 120


@dataclass
class LiveStack:
    label_studio_url: str
    admin: LabelStudioAdmin
    s3_endpoint: str
    bucket: str
    image_keys: dict[str, list[str]]
    sam: SamBackendStub
    log_dir: Path
    server: LabelStudioServer
    environment: dict[str, str]
    # The stack as evaluated for these services (its ConfigMap holds the desired state).
    evaluation: Evaluation


@contextlib.contextmanager
def moto_holding(work_dir: Path, bucket: str, images_per_prefix: Mapping[str, int]
                 ) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """moto with `bucket` holding generated images; (endpoint, keys per prefix)."""
    log_dir = work_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    moto, s3_endpoint = start_moto(log_dir)
    try:
        yield s3_endpoint, {prefix: upload_images(s3_endpoint, bucket, prefix, count)
                            for prefix, count in images_per_prefix.items()}
    finally:
        moto.stop()


@contextlib.contextmanager
def label_studio_stack(work_dir: Path, s3_endpoint: str, bucket: str, image_keys: dict[str, list[str]], *,
                       harakiri_seconds: int = RELEASE_HARAKIRI_SECONDS, extra_env: Optional[Mapping[str, str]] = None,
                       overrides: Optional[Mapping[str, Any]] = None) -> Iterator[LiveStack]:
    """Label Studio as the image serves it, on a fresh PostgreSQL, for the store at `s3_endpoint`,
    and the SAM stand-in. `extra_env` adds to the rendered env (it shows up in the test that
    sets it); `overrides` change the stack's configuration before it is rendered."""
    log_dir = work_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    admin = LabelStudioAdmin.generate()
    port = free_port()
    (work_dir / "sam-image-cache").mkdir(parents=True, exist_ok=True)
    # It downloads each task image from Label Studio as the backend does and answers with a
    # mask of the image's size (tests/sam_contract_backend.py), so the self-test passes.
    sam = SamBackendStub(predict=functools.partial(
        answer_predict, predictor=OwnPredictor(), hostname=f"http://{LOOPBACK}:{port}",
        access_token=admin.token, cache_dir=str(work_dir / "sam-image-cache")))
    local = LocalValues(public_url=f"http://{LOOPBACK}:{port}", s3_endpoint=s3_endpoint, bucket=bucket,
                        admin_email=admin.email, admin_password=admin.password, admin_token=admin.token,
                        s3_access_key_id=MOTO_ACCESS_KEY_ID, s3_secret_access_key=MOTO_SECRET_ACCESS_KEY,
                        extra=dict(extra_env or {}))
    evaluation = local_stack(local, overrides=overrides)
    environment = app_environment(evaluation, local)
    with serve_label_studio(environment, work_dir / "label-studio", harakiri_seconds=harakiri_seconds,
                            port=port) as server:
        sam.start()
        try:
            yield LiveStack(server.url, admin, s3_endpoint, bucket, image_keys, sam, log_dir, server, environment,
                            evaluation)
        finally:
            sam.stop()


@contextlib.contextmanager
def live_stack(work_dir: Path, bucket: str, images_per_prefix: Mapping[str, int], **options) -> Iterator[LiveStack]:
    """moto holding the images, and Label Studio with the SAM stand-in (`label_studio_stack`'s options)."""
    with moto_holding(work_dir, bucket, images_per_prefix) as (s3_endpoint, image_keys):
        with label_studio_stack(work_dir, s3_endpoint, bucket, image_keys, **options) as stack:
            yield stack


def job_environment(label_studio_url: str, token: str, timeout_seconds: int = 120) -> dict[str, str]:
    """What the Kubernetes Job gets: no PYTHONPATH, nothing from the test's venv but the interpreter."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), contract.LABEL_STUDIO_URL: label_studio_url,
            contract.API_TOKEN: token, contract.ACCESS_KEY_ID: MOTO_ACCESS_KEY_ID,
            contract.SECRET_ACCESS_KEY: MOTO_SECRET_ACCESS_KEY, contract.TIMEOUT_SECONDS: str(timeout_seconds)}


def run_job(work_dir: Path, document: dict, env: Mapping[str, str], timeout: float = 300,
            argv: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """The Job's command (`argv` before the state file: the CronJob's --export-resync) in a
    directory laid out as its ConfigMap mount: the package and the state."""
    package = work_dir / "reconciler"
    package.mkdir(parents=True, exist_ok=True)
    for name, text in reconciler_modules().items():
        (package / name).write_text(text)
    state_file = work_dir / DESIRED_STATE_FILE
    state_file.write_text(json.dumps(document))
    # -S: no site-packages at all, so only the standard library is importable, as in
    # python:3.12-slim; -E: no PYTHON* variables from the test's environment.
    return subprocess.run([sys.executable, "-E", "-S", "-m", "reconciler", *argv, str(state_file)], env=dict(env),
                          cwd=work_dir, capture_output=True, text=True, timeout=timeout)
