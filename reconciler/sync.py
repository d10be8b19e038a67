"""Storage syncs that converge through requests the server cuts short.

Open-source Label Studio 1.23.2 has no job queue (`REDIS_ENABLED = False`): a sync runs
inside the POST that starts it. The image serves Label Studio with uWSGI, which kills a
request running longer than its harakiri (120 s): the client sees the connection close,
or a 502/504 from a proxy on the way, and the storage stays `in_progress` with part of the
work done. Label Studio lets such a storage go only when a *list* request runs its health
check, 5 x STORAGE_IN_PROGRESS_TIMER (25 s) after the last progress ping; until then a
POST answers 200 `in_progress` and does nothing. Every sync that does run goes on where
the last one stopped: objects already imported are skipped.

So a sync here is a loop: POST; if the request was cut short, or found the storage held,
poll the list endpoint until the storage is released (or finished by whoever held it);
POST again; until a POST reports completion and the count of what it makes stops growing,
or the deadline passes. It works the same when a job queue is present: the POST then
answers `queued` and the list shows the storage finish.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass
from typing import Callable

from reconciler.client import Deadline, LabelStudioClient, one_line
from reconciler.errors import ApiError, ReconcileError

POLL_SECONDS = 1
PROGRESS_EVERY_SECONDS = 10
# Answers of a proxy whose upstream worker was killed or did not answer in time.
CUT_SHORT_STATUSES = {502, 503, 504}
COMPLETED = {"completed", "completed_with_errors"}
HELD = {"in_progress", "queued"}
# Requests in a row that were cut short without adding anything: the server's request
# limit is shorter than one pass over the storage, and another request will not help.
MAX_STALLED_REQUESTS = 3


@dataclass(frozen=True)
class SyncTarget:
    """One storage to sync. `collection` is its list path (e.g. /api/storages/s3/); `count`
    counts what a sync makes (the project's tasks, say), the measure of progress."""

    label: str
    collection: str
    storage_id: int
    project_id: int
    count: Callable[[], int]

    @property
    def detail(self) -> str:
        return f"{self.collection.rstrip('/')}/{self.storage_id}"


@dataclass(frozen=True)
class SyncResult:
    storage: dict
    created: int
    requests: int
    cut_short: int
    seconds: float


def cut_short(error: BaseException) -> bool:
    """A request the server (or a proxy in front of it) ended before answering."""
    if isinstance(error, ApiError):
        return error.status in CUT_SHORT_STATUSES
    return isinstance(error, (OSError, http.client.HTTPException))


def cut_reason(error: BaseException) -> str:
    if isinstance(error, ApiError):
        return f"answered {error.status}"
    return one_line(str(getattr(error, "reason", error)) or type(error).__name__)


class _Sync:
    def __init__(self, client: LabelStudioClient, target: SyncTarget, deadline: Deadline,
                 report: Callable[[str], None], sleep: Callable[[float], None], clock: Callable[[], float]):
        self.client, self.target, self.deadline, self.report = client, target, deadline, report
        self.sleep, self.clock = sleep, clock
        self.started = clock()
        self.last_progress = self.started
        self.initial = target.count()
        # New before the request under way began; it reports its own count in its pings.
        self.before_request = 0

    def elapsed(self) -> float:
        return self.clock() - self.started

    def progress(self) -> None:
        """Every 10 s a line. The storage's own record is read, not the count: it is a single row,
        while counting a large project's tasks would slow the very sync it reports on."""
        if self.clock() - self.last_progress >= PROGRESS_EVERY_SECONDS:
            self.last_progress = self.clock()
            try:
                running = int(self.client.get(self.target.detail).get("last_sync_count") or 0)
            except (ReconcileError, OSError, http.client.HTTPException):
                running = 0  # the line is informative only
            self.report(f"{self.target.label}: syncing, {self.before_request + running} new so far "
                        f"({self.elapsed():.0f} s)")

    def check_deadline(self, doing: str) -> None:
        if self.deadline.expired():
            raise ReconcileError(f"{self.target.label}: sync did not finish before the deadline ({doing})")

    def post(self) -> tuple[dict | None, BaseException | None]:
        """One sync request, run beside the progress report; (answer, error)."""
        outcome: dict[str, object] = {}

        def send() -> None:
            try:
                outcome["answer"] = self.client.post(f"{self.target.detail}/sync",
                                                     timeout=max(self.deadline.remaining(), 1.0))
            except (ReconcileError, OSError, http.client.HTTPException) as error:
                outcome["error"] = error

        worker = threading.Thread(target=send, daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(timeout=POLL_SECONDS)
            self.progress()
            self.check_deadline("a sync request is still running")
        return outcome.get("answer"), outcome.get("error")

    def released(self) -> dict:
        """Poll the list endpoint, whose health check releases a storage a dead sync left held,
        until the storage is not held any more; a list that cannot be had yet is polled again."""
        while True:
            try:
                listed = self.client.get(f"{self.target.collection}?project={self.target.project_id}")
                storage = next(item for item in listed if item.get("id") == self.target.storage_id)
                if storage.get("status") not in HELD:
                    return storage
            except (ApiError, OSError, http.client.HTTPException) as error:
                if isinstance(error, ApiError) and not cut_short(error):
                    raise
            self.progress()
            self.check_deadline("waiting for Label Studio to release the storage")
            self.sleep(POLL_SECONDS)

    def settled_count(self) -> int:
        """The count once it stops growing (a queued sync may still be writing)."""
        count = self.target.count()
        while True:
            self.sleep(POLL_SECONDS)
            again = self.target.count()
            if again == count:
                return count
            count = again
            self.check_deadline("the count is still growing")


def sync_until_complete(client: LabelStudioClient, target: SyncTarget, deadline: Deadline,
                        report: Callable[[str], None], sleep: Callable[[float], None] = time.sleep,
                        clock: Callable[[], float] = time.monotonic) -> SyncResult:
    """Sync `target` to completion through cut-short requests and held storages (see above)."""
    sync = _Sync(client, target, deadline, report, sleep, clock)
    requests = cut = stalled = 0
    while True:
        before = target.count()
        sync.before_request = before - sync.initial
        requests += 1
        sent_at = clock()
        answer, error = sync.post()
        if error is not None and not cut_short(error):
            raise ReconcileError(f"{target.label}: sync request failed: {error}")
        if answer is not None and answer.get("status") in COMPLETED:
            # The sync ran inside this request and is over: the count is final.
            return SyncResult(answer, target.count() - sync.initial, requests, cut, sync.elapsed())
        if answer is not None and answer.get("status") == "failed":
            reason = (answer.get("traceback") or "no traceback").strip().splitlines()[-1]
            raise ReconcileError(f"{target.label}: sync failed: {one_line(reason)}")
        if error is not None:
            cut += 1
            gained = target.count() - before
            stalled = 0 if gained else stalled + 1
            report(f"{target.label}: sync request {requests} cut short after {clock() - sent_at:.0f} s "
                   f"({cut_reason(error)}), {target.count() - sync.initial} new so far; waiting for Label Studio "
                   "to release the storage")
            if stalled >= MAX_STALLED_REQUESTS:
                raise ReconcileError(
                    f"{target.label}: sync makes no progress: {stalled} requests in a row were cut short after "
                    f"about {clock() - sent_at:.0f} s without adding anything; the server's request limit (uWSGI "
                    "harakiri) is shorter than one pass over the storage")
        else:
            report(f"{target.label}: the storage is busy with an earlier sync; waiting for Label Studio to "
                   "release it")
        storage = sync.released()
        if storage.get("status") in COMPLETED:
            # Finished by a sync this run did not wait on (queued, or another request's).
            return SyncResult(storage, sync.settled_count() - sync.initial, requests, cut, sync.elapsed())
        sync.check_deadline("the storage was released unfinished")
