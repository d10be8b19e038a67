"""What the SAM benchmarks share: the machine they ran on, and the upstream example's server
when it is wanted (--upstream, or LABEL_STUDIO_ML_BACKEND_DIR set; `make env-sam-backend`)."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Optional

from tests.sam_real_backend import (
    ML_BACKEND_DIR_VARIABLE, SETUP_COMMAND, IncompleteSetup, RealBackend, real_backend_from_environment,
)


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> str:
    return (f"{datetime.date.today().isoformat()}, {cpu_model()}, {os.cpu_count()} cores, "
            f"load average {os.getloadavg()[0]:.1f} at the start")


def torch_version(python: Path) -> str:
    return subprocess.run([str(python), "-c", "import torch; print(torch.__version__)"],
                          capture_output=True, text=True, check=True).stdout.strip()


def upstream_backend(asked: bool) -> Optional[RealBackend]:
    """The upstream example's checkout and environment; None when not asked for and not set up."""
    try:
        backend = real_backend_from_environment()
    except IncompleteSetup as incomplete:
        sys.exit(str(incomplete))
    if asked and backend is None:
        sys.exit(f"--upstream: set {ML_BACKEND_DIR_VARIABLE} to a label-studio-ml-backend checkout ({SETUP_COMMAND})")
    return backend


def describe_upstream(backend: RealBackend) -> str:
    commit = subprocess.run(["git", "-C", str(backend.example_dir), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "of unknown commit"
    return (f"label-studio-ml-backend {commit}'s segment_anything_model example with MobileSAM, "
            f"torch {torch_version(backend.python)}")
