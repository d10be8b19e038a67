"""The platform's SAM server, live: SAM 2.1 tiny with random weights (tests/sam_server_process.py)
in the env the SAM Deployment declares, behind Label Studio 1.23.2 as the image serves it, with
moto holding images of 8 different sizes (tests/sam_live.py lists the harmless differences from
the cluster). The reconciler registers it and its deploy-time self-test passes; 8 simultaneous
clicks on 8 images each get their own image's mask; opening a task warms its image up, so the
first click is a cache hit; the embedding cache stays under its bound; with 2 replicas every
image is embedded once.
"""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from reconciler.client import LabelStudioClient
from reconciler.projects import PREDICTION_ON_OPEN
from tests.live_services import wait_until
from tests.sam_live import (
    SamProject, assert_simultaneous_clicks_each_get_their_own_mask, deployment_environment, document, run, sam_stack,
    self_test_line, self_test_passed,
)
from tests.sam_server_process import metric, running_sam_servers, server_python
from tools.stack_eval import evaluate

pytestmark = pytest.mark.slow

CORES = os.cpu_count() or 1
# The stack's own settings for the platform's server, on this machine's cores.
SERVER_SETTINGS = {"sam.model": "sam2.1-tiny", "sam.resources.requests.cpu": "1",
                   "sam.resources.limits.cpu": str(CORES)}
EMBEDDING_SECONDS = 120


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    server_python()
    with sam_stack(tmp_path_factory.mktemp("sam-server"), overrides=SERVER_SETTINGS) as started:
        yield started


@pytest.fixture(scope="module")
def api(stack) -> LabelStudioClient:
    return LabelStudioClient(stack.label_studio_url, stack.admin.token)


def server_env(stack, work_dir, **settings):
    return deployment_environment(stack, work_dir, evaluate("dev", {**SERVER_SETTINGS, **settings}) if settings else None)


@pytest.fixture(scope="module")
def server(stack, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("sam-server-process")
    with running_sam_servers(server_env(stack, work_dir), work_dir, stack.log_dir) as [url]:
        yield url


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def test_the_deployment_runs_the_platform_server_with_its_env(stack, tmp_path):
    environment = server_env(stack, tmp_path)
    assert environment["SAM_MODEL"] == "sam2.1-tiny" and environment["SAM_DEVICE"] == "cpu"
    assert environment["SAM_EMBEDDING_CACHE_MIB"] == "1024"
    assert environment["OMP_NUM_THREADS"] == str(CORES)


def test_the_self_test_passes_against_the_server(stack, api, server):
    title = "SAM server"
    lines, projects = run(api, document(stack, title, server))
    line = self_test_line(lines)
    assert self_test_passed(title).fullmatch(line), line
    # Label Studio asks the server as labelers open tasks, in the Data Manager and in the stream.
    settings = api.get(f"/api/projects/{projects[title]['id']}")
    assert {name: settings[name] for name in PREDICTION_ON_OPEN} == PREDICTION_ON_OPEN


def test_eight_simultaneous_clicks_on_eight_images_each_get_their_own_images_mask(stack, api, server):
    title = "SAM server, eight clicks"
    assert_simultaneous_clicks_each_get_their_own_mask(stack, api, server, title)


def test_opening_a_task_warms_its_image_up_once_and_the_first_click_is_a_cache_hit(stack, api, tmp_path):
    title = "SAM server, warm-up"
    with running_sam_servers(server_env(stack, tmp_path), tmp_path, stack.log_dir) as [url]:
        _, projects = run(api, document(stack, title, url))
        project = SamProject(stack, api, projects[title])
        # The self-test clicked the first two tasks: a task no one has opened or clicked.
        task = project.tasks[-1]
        embedded = metric(url, "sam_embedding_seconds_count")
        # What the labeling UI does as a labeler opens the task: Label Studio asks the server.
        api.get(f"/api/tasks/{task['id']}")
        assert metric(url, "sam_warmups_total", outcome="queued") == 1
        wait_until(lambda: metric(url, "sam_embedding_seconds_count") == embedded + 1, EMBEDDING_SECONDS,
                   "the warm-up's embedding")
        hits = metric(url, "sam_cache_lookups_total", result="hit")
        width, height = project.sizes[task["id"]]
        assert project.mask_pixels(project.click(task)) == width * height
        assert metric(url, "sam_cache_lookups_total", result="hit") == hits + 1
        assert metric(url, "sam_embedding_seconds_count") == embedded + 1
        # Label Studio stored the empty prediction: opening the task again asks nothing.
        api.get(f"/api/tasks/{task['id']}")
        assert metric(url, "sam_warmups_total", outcome="queued") == 1
        assert metric(url, "sam_warmups_total", outcome="ready") == 0


def test_the_embedding_cache_stays_under_its_bound(stack, api, tmp_path):
    title = "SAM server, small cache"
    environment = server_env(stack, tmp_path, **{"sam.embeddingCacheMiB": 64})
    with running_sam_servers(environment, tmp_path, stack.log_dir) as [url]:
        _, projects = run(api, document(stack, title, url))
        project = SamProject(stack, api, projects[title])
        for task in project.tasks:
            project.click(task)
        cache = get_json(f"{url}/health")["cache"]
    # Each image's features take 16 MiB: 4 of the 8 fit.
    assert cache["limit_bytes"] == 64 * 2**20
    assert cache["bytes"] <= cache["limit_bytes"] and cache["images"] == 4


def test_two_replicas_embed_each_image_once(stack, api, tmp_path):
    title = "SAM server, two replicas"
    with running_sam_servers(server_env(stack, tmp_path, **{"sam.replicas": 2}), tmp_path, stack.log_dir,
                             replicas=2) as urls:
        # Label Studio reaches one replica, as through the Service; it passes on what the other owns.
        _, projects = run(api, document(stack, title, urls[0]))
        project = SamProject(stack, api, projects[title])

        def embedded() -> list[float]:
            return [metric(url, "sam_embedding_seconds_count") for url in urls]

        # Opening the tasks the self-test did not click warms their images up at their owners.
        for task in project.tasks:
            api.get(f"/api/tasks/{task['id']}")
        wait_until(lambda: sum(embedded()) == len(project.tasks), EMBEDDING_SECONDS, "every image's warm-up")
        project.assert_each_mask_fits_its_own_image(project.click_all_at_once())
        project.assert_each_mask_fits_its_own_image(project.click_all_at_once())
        per_replica = embedded()
        forwarded = metric(urls[0], "sam_forwarded_total", outcome="answered")
    assert sum(per_replica) == len(project.tasks), per_replica
    assert all(count > 0 for count in per_replica) and forwarded > 0
