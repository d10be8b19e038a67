"""The server with SAM 2.1 tiny (random weights: every tensor has its real shape, so the work is
the real work) behind its HTTP app, with task images served over HTTP the way Label Studio
streams them. The live tests in the project's tests/ run it as a process behind Label Studio."""

from __future__ import annotations

import asyncio
import functools
import http.server
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from sam_server.app import Server
from sam_server.config import read_config
from sam_server.model import SegmentAnything
from sam_server.random_checkpoint import write

pytestmark = pytest.mark.slow

CONFIG = """<View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image"><Label value="Fruit"/>
</BrushLabels><KeyPointLabels name="point" toName="image" smart="true"><Label value="Fruit"/></KeyPointLabels></View>"""
SIZES = [(64 + 8 * index, 48 + 4 * index) for index in range(8)]
CLICK = {"result": [{"type": "keypointlabels", "is_positive": True,
                     "value": {"x": 50, "y": 50, "keypointlabels": ["Fruit"]}}]}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """An HTTP server on 127.0.0.1 holding one PNG per size; yields its URL."""
    directory = tmp_path_factory.mktemp("images")
    for index, (width, height) in enumerate(SIZES):
        pixels = np.random.default_rng(index).integers(0, 255, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(directory / f"{index}.png")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def model(tmp_path_factory, images):
    checkpoint = tmp_path_factory.mktemp("checkpoint") / "tiny.pt"
    write("sam2.1-tiny", str(checkpoint))
    return SegmentAnything(read_config({"SAM_CHECKPOINT": str(checkpoint), "SAM_DEVICE": "cpu",
                                        "LABEL_STUDIO_URL": images, "LABEL_STUDIO_API_KEY": "token"}))


def make_server(model, images, **env) -> Server:
    config = read_config({"SAM_DEVICE": "cpu", "LABEL_STUDIO_URL": images, "LABEL_STUDIO_API_KEY": "token", **env})
    return Server(config, model)


def body(images: str, index: int, context=CLICK) -> dict:
    return {"tasks": [{"id": index + 1, "data": {"image": f"{images}/{index}.png"}}], "label_config": CONFIG,
            "params": {"context": context}}


def mask_size(answer: dict) -> tuple[int, int]:
    [result] = answer["results"][0]["result"]
    return result["original_width"], result["original_height"]


def test_simultaneous_clicks_on_eight_images_each_get_their_own_images_mask(model, images):
    server = make_server(model, images)

    async def clicks():
        replies = await asyncio.gather(*(server.predict(body(images, index)) for index in range(len(SIZES))))
        assert {status for status, _ in replies} == {200}
        return [answer for _, answer in replies]

    answers = asyncio.run(clicks())
    assert [mask_size(answer) for answer in answers] == SIZES
    assert server.cache.stats().images == len(SIZES)


def test_the_cache_keeps_to_its_bound(model, images):
    server = make_server(model, images, SAM_EMBEDDING_CACHE_MIB="40")

    async def clicks():
        for index in range(4):
            await server.predict(body(images, index))

    asyncio.run(clicks())
    stats = server.cache.stats()
    assert stats.bytes <= 40 * 2**20 and stats.images == 2


def test_health_answers_within_milliseconds_while_the_model_embeds(model, images):
    server = make_server(model, images)
    transport = httpx.ASGITransport(app=server.app())

    async def scenario():
        async with httpx.AsyncClient(transport=transport, base_url="http://sam") as client:
            click = asyncio.ensure_future(client.post("/predict", json=body(images, 0)))
            waits = []
            while not click.done():
                started = time.monotonic()
                assert (await client.get("/health")).json()["status"] == "UP"
                waits.append(time.monotonic() - started)
                await asyncio.sleep(0.05)
            return (await click).json(), waits

    answer, waits = asyncio.run(scenario())
    assert mask_size(answer) == SIZES[0]
    assert len(waits) > 3 and max(waits) < 0.5, waits


def test_a_task_opened_without_a_click_is_answered_at_once_and_its_image_embedded_behind_it(model, images):
    server = make_server(model, images)

    async def scenario():
        _, answer = await server.predict(body(images, 3, context=None))
        assert server.cache.peek(f"{images}/3.png") is None
        await asyncio.gather(*server.warming)
        return answer

    answer = asyncio.run(scenario())
    assert answer["results"] == [{"result": [], "score": 0.0, "model_version": server.model_version}]
    assert server.cache.peek(f"{images}/3.png") is not None


def test_warm_ups_beyond_the_bound_are_dropped(model, images):
    server = make_server(model, images, SAM_WARMUP_QUEUE="2")
    tasks = [{"id": index + 1, "data": {"image": f"{images}/{index}.png"}} for index in range(5)]

    async def scenario():
        _, answer = await server.predict({"tasks": tasks, "label_config": CONFIG, "params": {}})
        await asyncio.gather(*server.warming)
        return answer

    answer = asyncio.run(scenario())
    assert len(answer["results"]) == 5
    assert server.cache.stats().images == 2


def test_a_failed_download_is_one_line_naming_the_status_and_url(model, images):
    transport = httpx.ASGITransport(app=make_server(model, images).app())

    async def scenario():
        async with httpx.AsyncClient(transport=transport, base_url="http://sam") as client:
            return await client.post("/predict", json={**body(images, 0), "tasks": [
                {"id": 1, "data": {"image": f"{images}/missing.png"}}]})

    reply = asyncio.run(scenario())
    assert reply.status_code == 500
    assert reply.json()["detail"] == f"HTTPError: 404 Client Error: File not found for url: {images}/missing.png"
