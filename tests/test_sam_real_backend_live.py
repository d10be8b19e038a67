"""Opt-in: the real `segment_anything_model` example server (tests/sam_real_backend.py) with a
random MobileSAM checkpoint, in the env the SAM Deployment declares, registered by the
reconciler against Label Studio 1.23.2 and moto (tests/sam_live.py). The deploy-time
self-test passes against it, and 8 simultaneous clicks on 8 images of different sizes each get
a mask of their own image's size. It listens on the loopback address only.

Runs only with LABEL_STUDIO_ML_BACKEND_DIR set (`make env-sam-backend` prints what to export):
torch is not part of the default test environment.

The stack's CPU limit is set to this machine's cores, so OMP_NUM_THREADS comes out as a pod
with that limit gets it (the dev stack's 8-CPU limit would start 4 torch threads per worker
on 2 cores: slower, not different).
"""

from __future__ import annotations

import os
import urllib.parse

import pytest

from reconciler.client import LabelStudioClient
from tests.live_services import SAM_STUB_ADDRESS, listening_addresses
from tests.sam_live import (
    assert_simultaneous_clicks_each_get_their_own_mask, deployment_environment, document, run, sam_stack,
    self_test_line, self_test_passed,
)
from tests.variants import UPSTREAM_MOBILE_SAM
from tests.sam_real_backend import (
    ML_BACKEND_DIR_VARIABLE, SETUP_COMMAND, IncompleteSetup, real_backend_from_environment, running_real_backend,
)

pytestmark = pytest.mark.slow

if not os.environ.get(ML_BACKEND_DIR_VARIABLE):
    pytest.skip(f"opt-in: set {ML_BACKEND_DIR_VARIABLE} to run the real SAM backend ({SETUP_COMMAND})",
                allow_module_level=True)

CORES = os.cpu_count() or 1


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # The upstream example, as a stack that chooses it runs it.
    overrides = {**UPSTREAM_MOBILE_SAM, "sam.resources.requests.cpu": "1", "sam.resources.limits.cpu": str(CORES)}
    with sam_stack(tmp_path_factory.mktemp("sam-real"), overrides=overrides) as started:
        yield started


@pytest.fixture(scope="module")
def api(stack) -> LabelStudioClient:
    return LabelStudioClient(stack.label_studio_url, stack.admin.token)


@pytest.fixture(scope="module")
def backend_url(stack, tmp_path_factory):
    try:
        backend = real_backend_from_environment()
    except IncompleteSetup as incomplete:
        pytest.fail(str(incomplete), pytrace=False)
    work_dir = tmp_path_factory.mktemp("sam-real-backend")
    environment = deployment_environment(stack, work_dir)
    assert environment["SAM_CHOICE"] == "MobileSAM"
    with running_real_backend(backend, environment, work_dir, stack.log_dir) as url:
        yield url


def test_the_backend_listens_on_the_loopback_address_only(backend_url):
    assert listening_addresses(urllib.parse.urlsplit(backend_url).port) == {SAM_STUB_ADDRESS}


def test_the_self_test_passes_against_the_real_backend(stack, api, backend_url):
    title = "SAM, the real backend"
    lines, _ = run(api, document(stack, title, backend_url))
    line = self_test_line(lines)
    assert self_test_passed(title).fullmatch(line), line
    print(line)


def test_eight_simultaneous_clicks_on_eight_images_each_get_their_own_images_mask(stack, api, backend_url):
    title = "SAM, the real backend, eight clicks"
    assert_simultaneous_clicks_each_get_their_own_mask(stack, api, backend_url, title)
