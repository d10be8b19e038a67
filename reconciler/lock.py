"""One run at a time: the Job (after `pulumi up`) and the scheduled reconcile share a lock.

Two runs side by side would both create a missing project (Label Studio allows equal titles,
so that makes two), both sign a new member up (the second sees "exists" and reports the
account as unrecoverable) and both sync the same storages. The lock is a key of the team
Secret, written with the resourceVersion it was read at, so of two runs taking it at the same
moment the API server lets exactly one write succeed; it needs no permission beyond the `get`
and `patch` the run has on that Secret already. It names its holder (the pod) and expires with
the run's deadline, so a pod killed before it could release it does not block the next run
for longer than one run could have lasted.
"""

from __future__ import annotations

import json
import time
from typing import Callable, Optional

from reconciler.contract import RUN_LOCK_KEY
from reconciler.errors import ReconcileError
from reconciler.team import TeamSecret

WAIT_SECONDS = 10


class RunLock:
    def __init__(self, secret: TeamSecret, holder: str, seconds: float, clock: Callable[[], float] = time.time):
        self._secret, self.holder, self._seconds, self._clock = secret, holder, seconds, clock

    def try_acquire(self) -> Optional[str]:
        """None once this run holds the lock, else who holds it."""
        data, version = self._secret.read_versioned()
        held = _parse(data.get(RUN_LOCK_KEY))
        if held and held["until"] > self._clock() and held["holder"] != self.holder:
            return held["holder"]
        taken = json.dumps({"holder": self.holder, "until": self._clock() + self._seconds})
        if self._secret.write_if_unchanged(RUN_LOCK_KEY, taken, version):
            return None
        return "a run that took it at the same moment"

    def acquire(self, remaining: Callable[[], float], report: Callable[[str], None],
                sleep: Callable[[float], None] = time.sleep) -> None:
        """Wait for the lock until the deadline (the Job must apply a new state, so it waits)."""
        announced = None
        while (holder := self.try_acquire()) is not None:
            if remaining() <= 0:
                raise ReconcileError(f"another run ({holder}) held the lock until the deadline")
            if holder != announced:
                report(f"run lock: held by {holder}; waiting")
                announced = holder
            sleep(min(WAIT_SECONDS, remaining()))
        report(f"run lock: taken by {self.holder}")

    def release(self) -> None:
        data, version = self._secret.read_versioned()
        held = _parse(data.get(RUN_LOCK_KEY))
        if held and held["holder"] == self.holder:
            self._secret.write_if_unchanged(RUN_LOCK_KEY, None, version)


def _parse(text: Optional[str]) -> Optional[dict]:
    try:
        held = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(held, dict) or not isinstance(held.get("until"), (int, float)):
        return None
    return {"holder": str(held.get("holder") or "?"), "until": float(held["until"])}
