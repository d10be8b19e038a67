"""The one line a run ends with: how many objects became tasks, how many things it had to
create, change or remove to match the state, and how many already matched.

Every action line names its subject and then its outcome (`<subject>: <outcome> ...`), so the
counts are taken from the lines the run prints: nothing can be counted that was not reported.
"""

from __future__ import annotations

import re
from typing import Callable

# The outcomes the reconciler's modules report, and what each means for the summary.
REPAIRED = ("created", "label config updated", "updated", "reconnected", "removed", "invite link stored")
UNCHANGED = ("unchanged", "present")
_OUTCOME = re.compile(r": (" + "|".join(re.escape(word) for word in REPAIRED + UNCHANGED) + r")\b")
_IMPORTED = re.compile(r": synced (\d+) tasks\b")
# Titles, e-mails and tab names are quoted in the lines and may hold any word: they are skipped.
_QUOTED = re.compile(r'"[^"]*"')


class RunSummary:
    """Passes each line on to `report` and counts its outcome."""

    def __init__(self, report: Callable[[str], None]):
        self._report = report
        self.imported = self.repaired = self.unchanged = 0

    def __call__(self, line: str) -> None:
        self._report(line)
        line = _QUOTED.sub('""', line)
        imported = _IMPORTED.search(line)
        if imported:
            self.imported += int(imported[1])
            return
        outcome = _OUTCOME.search(line)
        if outcome is None:
            return
        if outcome[1] in UNCHANGED:
            self.unchanged += 1
        else:
            self.repaired += 1

    def line(self) -> str:
        return f"reconcile: {self.imported} imported, {self.repaired} repaired, {self.unchanged} unchanged"
