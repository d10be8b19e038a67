"""The embedding lane: one embedding at a time per device, a queue in front of it.

Clicks go ahead of warm-ups; a request for an image already queued or being embedded waits
for that one embedding instead of starting another, and a click lifts a queued warm-up of its
image to a click's place.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Generic, Optional, TypeVar

Result = TypeVar("Result")
CLICK = 0
WARMUP = 1


@dataclass(order=True)
class _Job(Generic[Result]):
    priority: int
    sequence: int
    key: str = field(compare=False)
    work: Callable[[], Result] = field(compare=False)
    future: Future = field(compare=False, default_factory=Future)
    cancelled: bool = field(compare=False, default=False)


class EmbeddingLane(Generic[Result]):
    def __init__(self, name: str = "embedding-lane", on_queue_change: Optional[Callable[[int, int], None]] = None):
        self._heap: list[_Job] = []
        self._pending: dict[str, _Job] = {}   # queued or running, by image key
        self._warmups: list[_Job] = []        # queued warm-ups, oldest first
        self._sequence = itertools.count()
        self._condition = threading.Condition()
        self._on_queue_change = on_queue_change
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, key: str, work: Callable[[], Result], priority: int = CLICK) -> Future:
        """The future of `key`'s embedding."""
        with self._condition:
            pending = self._pending.get(key)
            if pending is not None:
                if priority < pending.priority and pending in self._warmups:
                    self._requeue(pending, priority)
                return pending.future
            job = _Job(priority, next(self._sequence), key, work)
            heapq.heappush(self._heap, job)
            self._pending[key] = job
            if priority == WARMUP:
                self._warmups.append(job)
            self._changed()
            self._condition.notify()
            return job.future

    def lift(self, key: str, priority: int) -> None:
        """A queued embedding of `key` takes `priority` when that is ahead of its own."""
        with self._condition:
            pending = self._pending.get(key)
            if pending is not None and priority < pending.priority and pending in self._warmups:
                self._requeue(pending, priority)

    def depth(self) -> tuple[int, int]:
        """(queued clicks, queued warm-ups), the running embedding not counted."""
        with self._condition:
            return self._depth()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()

    def _depth(self) -> tuple[int, int]:
        warmups = len(self._warmups)
        return sum(1 for job in self._heap if not job.cancelled) - warmups, warmups

    def _changed(self) -> None:
        if self._on_queue_change:
            self._on_queue_change(*self._depth())

    def _requeue(self, job: _Job, priority: int) -> None:
        self._warmups.remove(job)
        job.cancelled = True
        lifted = _Job(priority, next(self._sequence), job.key, job.work, job.future)
        heapq.heappush(self._heap, lifted)
        self._pending[job.key] = lifted
        self._changed()

    def _next(self) -> Optional[_Job]:
        with self._condition:
            while True:
                while self._heap and self._heap[0].cancelled:
                    heapq.heappop(self._heap)
                if self._heap:
                    job = heapq.heappop(self._heap)
                    if job in self._warmups:
                        self._warmups.remove(job)
                    self._changed()
                    return job
                if self._closed:
                    return None
                self._condition.wait()

    def _run(self) -> None:
        while (job := self._next()) is not None:
            try:
                job.future.set_result(job.work())
            except BaseException as error:  # noqa: BLE001 - handed to whoever waits for it
                job.future.set_exception(error)
            finally:
                with self._condition:
                    if self._pending.get(job.key) is job:
                        del self._pending[job.key]
