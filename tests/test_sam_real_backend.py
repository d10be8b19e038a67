"""Fast tests of how the real SAM backend is started for the opt-in test and the benchmark
(tests/sam_real_backend.py): on the loopback address only, and how that is checked."""

from __future__ import annotations

import socket

import pytest

from tests.live_services import SAM_STUB_ADDRESS, listening_addresses
from tests.sam_real_backend import image_definition, loopback_command

# The start of the example's Dockerfile at label-studio-ml-backend d02cedf (tools/sam_backend_env.sh).
DOCKERFILE = """FROM python:${PYTHON_VERSION}-slim AS python-base
ENV PYTHONUNBUFFERED=1 \\
    PORT=${PORT:-9090} \\
    WORKERS=1 \\
    THREADS=8 \\
    MOBILESAM_CHECKPOINT=/app/models/mobile_sam.pt
CMD gunicorn --bind :${PORT:-9090} --workers $WORKERS --threads $THREADS --timeout 0 _wsgi:app
"""


def test_the_images_command_listens_on_the_loopback_address_on_its_own_port():
    _, command = image_definition(DOCKERFILE)
    assert loopback_command(command, SAM_STUB_ADDRESS) == (
        "gunicorn --bind 127.0.0.2:${PORT:-9090} --workers $WORKERS --threads $THREADS --timeout 0 _wsgi:app")


def test_a_command_without_one_bind_is_refused():
    with pytest.raises(ValueError, match="no one `--bind HOST:PORT`"):
        loopback_command("gunicorn --workers 1 _wsgi:app", SAM_STUB_ADDRESS)


@pytest.mark.parametrize(("family", "address"), [(socket.AF_INET, SAM_STUB_ADDRESS), (socket.AF_INET, "0.0.0.0"),
                                                 (socket.AF_INET6, "::")])
def test_the_addresses_a_port_listens_on_are_read_from_the_kernel(family, address):
    with socket.socket(family, socket.SOCK_STREAM) as listening:
        try:
            listening.bind((address, 0))
        except OSError as unavailable:  # a machine without IPv6
            pytest.skip(f"cannot listen on {address}: {unavailable}")
        listening.listen()
        assert listening_addresses(listening.getsockname()[1]) == {address}
