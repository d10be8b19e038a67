"""The SAM contract, live: Label Studio 1.23.2 as the image serves it, moto holding images whose
keys have spaces (tests/sam_live.py, which also lists the harmless differences from the
cluster), and a SAM stand-in (tests/sam_contract_backend.py) that downloads each task image the
way the real backend does: label-studio-sdk's `get_local_path` with exactly the env the SAM
Deployment declares. The deploy-time self-test runs against it (it passes, presign on and off)
and against stand-ins broken each way (it fails with one line naming the cause); against the
racy one, which shows its race only when simultaneous clicks meet in one worker, its rounds
catch the race in every run.

The stand-in computes no mask: it answers a box over the downloaded image's size, encoded by the
SDK's converter as the example does; the size is what the contract is about.
tests/test_sam_real_backend_live.py (opt-in) runs the same against the real example server.
"""

from __future__ import annotations

import contextlib
import re

import pytest

from reconciler.client import LabelStudioClient
from reconciler.errors import ReconcileError
from reconciler.sam_selftest import SIMULTANEOUS_ROUNDS, SHARED_PREDICTOR
from tests.live_stack import job_environment, run_job
from tests.sam_live import (
    assert_simultaneous_clicks_each_get_their_own_mask, document, rounds_until_caught, run, sam_stack, self_test_line,
    self_test_passed, stand_in,
)
from tests.variants import UPSTREAM_MOBILE_SAM

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # The stand-in takes the upstream example's download path (get_local_path, its image cache
    # under XDG_CACHE_HOME): the env of a stack running the example.
    with sam_stack(tmp_path_factory.mktemp("sam-contract"), overrides=UPSTREAM_MOBILE_SAM) as started:
        yield started


@pytest.fixture(scope="module")
def api(stack) -> LabelStudioClient:
    return LabelStudioClient(stack.label_studio_url, stack.admin.token)


@pytest.mark.parametrize("presign", [False, True], ids=["streamed", "presigned"])
def test_the_self_test_passes_through_the_real_download_path(stack, api, tmp_path, presign):
    title = f"SAM contract, presign {presign}"
    with stand_in(stack, tmp_path) as url:
        lines, _ = run(api, document(stack, title, url, presign))
    line = self_test_line(lines)
    assert self_test_passed(title).fullmatch(line), line
    # get_local_path kept each image it fetched, under its key's name, in the Deployment's cache dir.
    cached = [path.name.split("__", 1)[1] for path in (tmp_path / "xdg_cache_home" / "label-studio").iterdir()]
    assert len(cached) == 2 and all(re.fullmatch(r"fruit \d\.png", name) for name in cached), cached


def test_eight_simultaneous_clicks_on_eight_images_each_get_their_own_images_mask(stack, api, tmp_path):
    title = "SAM contract, eight clicks"
    with stand_in(stack, tmp_path) as url:
        assert_simultaneous_clicks_each_get_their_own_mask(stack, api, url, title)


BROKEN = [
    ("wrong-token", "serial", {"LABEL_STUDIO_API_KEY": "not-the-token-of-anyone", "LABEL_STUDIO_ACCESS_TOKEN": "x"},
     "the backend's image download got 401 Unauthorized from {ls}/tasks/"),
    ("download-failing", "serial", {"LABEL_STUDIO_URL": "{ls}/elsewhere", "LABEL_STUDIO_HOST": "{ls}/elsewhere"},
     "the backend's image download got 404 Not Found from {ls}/elsewhere/tasks/"),
    ("old-build", "no-task-id", {},
     "the backend image predates label-studio-ml-backend's task-aware downloads (April 2024)"),
    ("racy", "racy", {}, SHARED_PREDICTOR),
]


@pytest.mark.parametrize(("case", "mode", "replacements", "cause"), BROKEN, ids=[case for case, *_ in BROKEN])
def test_a_broken_backend_fails_the_self_test_with_one_line_naming_the_cause(stack, api, tmp_path, case, mode,
                                                                             replacements, cause):
    replacements = {name: value.format(ls=stack.label_studio_url) for name, value in replacements.items()}
    with stand_in(stack, tmp_path, mode, **replacements) as url:
        with pytest.raises(ReconcileError) as failed:
            run(api, document(stack, f"SAM contract, {case}", url))
    message = str(failed.value)
    assert message.startswith(f'project "SAM contract, {case}": SAM self-test failed: '), message
    assert cause.format(ls=stack.label_studio_url) in message, message
    assert "\n" not in message


def test_the_rounds_catch_a_racy_backend_in_every_run(stack, api, tmp_path):
    """The racy stand-in hands each click to one of its 2 workers as gunicorn does: one round of
    simultaneous clicks reaches a single worker, and shows the race, about half the time."""
    title = "SAM contract, racy, detection"
    runs = 12
    with stand_in(stack, tmp_path, "racy") as url:
        _, projects = run(api, {**document(stack, title, url), "samSelfTest": "warn"})
        caught = rounds_until_caught(api, projects[title], url, runs)
    within_one_round = sum(1 for found in caught if found is not None and found <= 1)
    print(f"racy stand-in: caught in {runs - caught.count(None)} of {runs} runs of {SIMULTANEOUS_ROUNDS} rounds "
          f"({within_one_round} of {runs} within the first round); rounds: {caught}")
    assert None not in caught, caught


def test_a_backend_gone_after_it_was_connected_is_named_unreachable(stack, api, tmp_path):
    with contextlib.ExitStack() as running:
        url = running.enter_context(stand_in(stack, tmp_path))

        def stop_once_connected(line: str) -> None:
            if ": ml backend " in line and ": created" in line:
                running.close()

        with pytest.raises(ReconcileError) as failed:
            run(api, document(stack, "SAM contract, gone", url), report=stop_once_connected)
    assert f"SAM self-test failed: backend unreachable from Label Studio at {url} (" in str(failed.value)


def test_the_job_prints_the_cause_as_its_one_line(stack, tmp_path):
    with stand_in(stack, tmp_path / "backend", LABEL_STUDIO_API_KEY="not-the-token-of-anyone",
                  LABEL_STUDIO_ACCESS_TOKEN="x") as url:
        result = run_job(tmp_path / "job", document(stack, "SAM contract, as the Job", url),
                         job_environment(stack.label_studio_url, stack.admin.token))
    assert result.returncode == 1
    assert result.stderr.startswith('reconcile failed: project "SAM contract, as the Job": SAM self-test failed: '
                                    "the backend's image download got 401 Unauthorized"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
