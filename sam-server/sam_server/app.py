"""The HTTP server: Label Studio's ML backend routes, /metrics, and what ties the parts together.

/health answers from counters while the model works (Label Studio gives it one second).
/predict without a click is Label Studio asking as a labeler opens a task: the image's
embedding is queued in the background and the answer is an empty prediction at once. Label
Studio stores it, so a task warms up once instead of on every open (an empty `results` would
be logged as an error and asked again each time); a labeler who comes back to a task after its
features left the cache pays the embedding on the first click. With a click, the image's
features come from the cache, or from the one embedding queued for it, and the mask from one
decoder pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sam_server import VERSION
from sam_server.cache import EmbeddingCache
from sam_server.config import ServerConfig
from sam_server.images import download_rgb
from sam_server.lane import CLICK, WARMUP, EmbeddingLane
from sam_server.metrics import Metrics
from sam_server.model import Features
from sam_server.protocol import BadRequest, answer, click, mask_result, prompt, tags
from sam_server.routing import Replicas

log = logging.getLogger("sam_server")
# Set on a request passed to its image's owner: the owner answers it, whatever its own view.
FORWARDED_HEADER = "x-sam-forwarded"
FORWARD_TIMEOUT_SECONDS = 120


class Server:
    def __init__(self, config: ServerConfig, model, scratch: Optional[str] = None):
        self.config = config
        self.model = model
        self.scratch = scratch
        self.model_version = f"sam-server-{VERSION}-{config.model}"
        self.metrics = Metrics(CollectorRegistry())
        self.cache: EmbeddingCache[Features] = EmbeddingCache(config.cache_bytes(model.device))
        self.metrics.cache_limit_bytes.set(self.cache.limit_bytes)
        self.lane = EmbeddingLane(on_queue_change=self._queue_changed)
        # Decoder passes take milliseconds: a lane of their own, never behind an embedding.
        self.decoder = ThreadPoolExecutor(1, thread_name_prefix="decode-lane")
        self.downloads = ThreadPoolExecutor(config.downloads, thread_name_prefix="download")
        self.replicas = Replicas(config.self_address, config.peers) if config.peers else None
        self._loading: dict[str, asyncio.Future] = {}
        self._priority: dict[str, int] = {}
        # Warm-ups being downloaded or embedded.
        self.warming: set[asyncio.Future] = set()
        self._client: Optional[httpx.AsyncClient] = None
        # Warm-ups handed to their image's owner, held until answered.
        self._passing_on: set[asyncio.Future] = set()

    def _queue_changed(self, clicks: int, warmups: int) -> None:
        self.metrics.queue_depth.labels("click").set(clicks)
        self.metrics.queue_depth.labels("warmup").set(warmups)

    # ------------------------------------------------------------ features of an image

    async def features(self, url: str, task_id: Optional[int], priority: int) -> Features:
        """The features of the image at `url` (the cache's key), from the cache or from the one
        download and embedding of it under way."""
        if priority == CLICK:
            cached = self.cache.get(url)
            self.metrics.cache_lookups.labels("hit" if cached else "miss").inc()
        else:
            cached = self.cache.peek(url)
        if cached is not None:
            return cached
        loading = self._loading.get(url)
        if loading is None:
            self._priority[url] = priority
            loading = self._loading[url] = asyncio.ensure_future(self._load(url, task_id))
            loading.add_done_callback(lambda _: (self._loading.pop(url, None), self._priority.pop(url, None)))
        elif priority < self._priority.get(url, priority):
            self._priority[url] = priority
            self.lane.lift(url, priority)
        return await asyncio.shield(loading)

    async def _load(self, url: str, task_id: Optional[int]) -> Features:
        started = time.monotonic()
        image = await asyncio.get_running_loop().run_in_executor(
            self.downloads, download_rgb, self.config, url, task_id, self.scratch)
        self.metrics.download_seconds.observe(time.monotonic() - started)
        return await asyncio.wrap_future(self.lane.submit(url, lambda: self._embed(url, image), self._priority[url]))

    def _embed(self, key: str, image) -> Features:
        cached = self.cache.peek(key)
        if cached is not None:
            return cached
        started = time.monotonic()
        features = self.model.embed(image)
        self.metrics.embedding_seconds.observe(time.monotonic() - started)
        self.cache.put(key, features, features.nbytes)
        stats = self.cache.stats()
        self.metrics.cache_bytes.set(stats.bytes)
        self.metrics.cache_images.set(stats.images)
        return features

    # ------------------------------------------------------------ /predict

    async def predict(self, body: dict, passed_on: bool = False) -> tuple[int, dict]:
        """(status, answer). `passed_on`: another replica sent it here as the image's owner."""
        tasks = body.get("tasks") or []
        if not tasks:
            raise BadRequest("no tasks to predict")
        found = tags(body.get("label_config"))
        clicked = click((body.get("params") or {}).get("context"))
        if clicked is None:
            for task in tasks:
                url = _image_url(task, found)
                owner = None if passed_on else await self._other_owner(url)
                if owner:
                    self._pass_on_in_background(owner, {**body, "tasks": [task]})
                else:
                    self._warm_up(url, task.get("id"))
            return 200, {"results": [answer([], self.model_version)["results"][0] for _ in tasks]}
        task = tasks[0]
        url = _image_url(task, found)
        owner = None if passed_on else await self._other_owner(url)
        if owner:
            reply = await self._pass_on(owner, body)
            if reply is not None:
                return reply
        started = time.monotonic()
        cached = self.cache.peek(url) is not None
        features = await self.features(url, task.get("id"), CLICK)
        mask = await asyncio.get_running_loop().run_in_executor(
            self.decoder, self.model.decode, features, prompt(clicked, features.width, features.height))
        self.metrics.click_seconds.labels("hit" if cached else "miss").observe(time.monotonic() - started)
        return 200, answer([mask_result(mask, found, clicked.label)], self.model_version)

    def _warm_up(self, url: str, task_id: Optional[int]) -> None:
        if self.cache.peek(url) is not None or url in self._loading:
            self.metrics.warmups.labels("ready").inc()
            return
        if len(self.warming) >= self.config.warmup_queue:
            # A Data Manager page can ask for every task on it at once.
            self.metrics.warmups.labels("dropped").inc()
            return
        self.metrics.warmups.labels("queued").inc()
        warming = asyncio.ensure_future(self.features(url, task_id, WARMUP))
        self.warming.add(warming)
        warming.add_done_callback(self._warmed_up)

    def _warmed_up(self, warming: asyncio.Future) -> None:
        self.warming.discard(warming)
        if not warming.cancelled() and warming.exception() is not None:
            log.warning("warm-up failed: %s", _one_line(warming.exception()))

    # ------------------------------------------------------------ replicas

    async def _other_owner(self, url: str) -> Optional[str]:
        """The replica owning `url`'s image when that is another one."""
        if self.replicas is None:
            return None
        owner = await asyncio.to_thread(self.replicas.owner, url)
        return None if owner == self.replicas.self_address else owner

    async def _pass_on(self, owner: str, body: dict) -> Optional[tuple[int, dict]]:
        """The owner's answer; None when it cannot be reached (then this replica answers)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=FORWARD_TIMEOUT_SECONDS)
        try:
            reply = await self._client.post(f"http://{owner}/predict", json=body, headers={FORWARDED_HEADER: "1"})
            document = reply.json()
        except (httpx.HTTPError, ValueError) as error:
            log.warning("replica %s unreachable, answering here: %s", owner, _one_line(error))
            self.metrics.forwarded.labels("unreachable").inc()
            return None
        self.metrics.forwarded.labels("answered").inc()
        return reply.status_code, document

    def _pass_on_in_background(self, owner: str, body: dict) -> None:
        passing = asyncio.ensure_future(self._pass_on(owner, body))
        self._passing_on.add(passing)
        passing.add_done_callback(self._passing_on.discard)

    # ------------------------------------------------------------ routes

    def health(self) -> dict:
        stats = self.cache.stats()
        clicks, warmups = self.lane.depth()
        return {"status": "UP", "model_class": "SegmentAnything2.1", "model": self.config.model,
                "model_version": self.model_version, "device": self.model.device,
                "cache": {"images": stats.images, "bytes": stats.bytes, "limit_bytes": stats.limit_bytes,
                          "hits": stats.hits, "misses": stats.misses},
                "queue": {"clicks": clicks, "warmups": warmups},
                "replicas": len(self.replicas.all()) if self.replicas else 1}

    def app(self) -> Starlette:
        async def health(_: Request) -> JSONResponse:
            return JSONResponse(self.health())

        async def setup(_: Request) -> JSONResponse:
            return JSONResponse({"model_version": self.model_version})

        async def predict(request: Request) -> Response:
            try:
                body = await request.json()
                status, document = await self.predict(body, passed_on=bool(request.headers.get(FORWARDED_HEADER)))
                return JSONResponse(document, status)
            except BadRequest as error:
                self.metrics.errors.inc()
                return JSONResponse({"status": 400, "detail": f"BadRequest: {error}"}, 400)
            except Exception as error:  # noqa: BLE001 - one line for Label Studio and the self-test
                self.metrics.errors.inc()
                log.warning("predict failed: %s", _one_line(error))
                return JSONResponse({"status": 500, "detail": f"{type(error).__name__}: {_one_line(error)}"}, 500)

        async def metrics(_: Request) -> Response:
            return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

        async def webhook(_: Request) -> JSONResponse:
            return JSONResponse({})

        return Starlette(routes=[
            Route("/", health), Route("/health", health), Route("/setup", setup, methods=["POST"]),
            Route("/predict", predict, methods=["POST"]), Route("/metrics", metrics),
            Route("/webhook", webhook, methods=["POST"]),
        ])


def _image_url(task: dict, found) -> str:
    url = (task.get("data") or {}).get(found.image_key)
    if not isinstance(url, str) or not url:
        raise BadRequest(f"task {task.get('id')} has no data.{found.image_key} to segment")
    return url


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
