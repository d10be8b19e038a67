"""The team's labeling windows (sam.activeHours): when the SAM backend runs, and when it may not.

Pure functions of a schedule and an injected clock, standard library only: the stack imports
them to validate the settings, write the scalers' cron schedules and count the weekly GPU hours;
the reconciler and the scaler pods import them (from the ConfigMap the reconciler travels in) to
decide, at the moment they run, whether SAM should be up.

A window is a set of week days with a start and an end on the same day, in the team's time
zone ("24:00" ends at midnight). SAM is up from `lead` before a window opens until it closes,
and during the late-night override: the `KEEP_UP_SPAN` before `keep_up_until`. Times are wall
clock times in the zone, so a window follows daylight saving time.

The time zone comes from the tz database: the python:*-slim images install Debian's `tzdata`
package (docker-library/python's Dockerfile), and the stack refuses an unknown zone at plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Callable, Iterator, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DAY_RANGE_SEPARATOR = "-"
MINUTES_PER_DAY = 24 * 60
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
HOURS_PER_WEEK = 168
# How long before keepUpUntil the override keeps SAM up: one late night, never a standing exception.
KEEP_UP_SPAN = timedelta(hours=24)
_CLOCK_TIME = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


Clock = Callable[[], datetime]


def parse_clock_time(text: str) -> int:
    """"08:30" -> minutes after midnight; "24:00" is the end of the day."""
    match = _CLOCK_TIME.match(text.strip())
    minutes = int(match.group(1)) * 60 + int(match.group(2)) if match else -1
    if not 0 <= minutes <= MINUTES_PER_DAY:
        raise ValueError("is not a time of day; expected HH:MM from 00:00 to 24:00")
    return minutes


def parse_days(value: Any) -> tuple[int, ...]:
    """"Mon-Fri", "Mon,Wed" or ["Mon", "Tue"] -> week day numbers (0 = Monday), in week order."""
    parts = value if isinstance(value, list) else str(value).split(",")
    days: set[int] = set()
    for part in (str(p).strip() for p in parts):
        first, separator, last = part.partition(DAY_RANGE_SEPARATOR)
        ends = [_day(first), _day(last)] if separator else [_day(part)]
        if len(ends) == 2 and ends[1] < ends[0]:
            raise ValueError(f"{part!r} runs backwards; expected a range within Mon..Sun such as Mon-Fri")
        days.update(range(ends[0], ends[-1] + 1))
    if not days:
        raise ValueError("names no day; expected days such as Mon-Fri or [Mon, Tue]")
    return tuple(sorted(days))


def _day(name: str) -> int:
    for index, day in enumerate(DAYS):
        if name.strip().lower() == day.lower():
            return index
    raise UnknownDay(name.strip())


class UnknownDay(ValueError):
    """A day name that is not one of DAYS; the settings reader offers the closest one."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"{name!r} is not a day; expected {', '.join(DAYS)} or a range such as Mon-Fri")


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError naming it when the tz database does not know it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone of the tz database; expected an IANA name such as "
                         "Europe/Berlin or UTC") from None


def parse_local_time(text: str) -> datetime:
    """"2026-12-08T02:00" -> a naive wall clock time (the zone is the schedule's)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError("is not a local date and time; expected YYYY-MM-DDTHH:MM in sam.activeHours.timeZone") from None
    if moment.tzinfo is not None:
        raise ValueError("carries an offset; expected a local time YYYY-MM-DDTHH:MM in sam.activeHours.timeZone")
    return moment


def _clock_text(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class Window:
    days: tuple[int, ...]
    start: int  # minutes after midnight
    end: int    # minutes after midnight, after start; MINUTES_PER_DAY is midnight

    def describe(self) -> str:
        return f"{_days_text(self.days)} {_clock_text(self.start)}-{_clock_text(self.end)}"

    def overlaps(self, other: "Window") -> bool:
        return bool(set(self.days) & set(other.days)) and self.start < other.end and other.start < self.end


def _days_text(days: tuple[int, ...]) -> str:
    if len(days) > 2 and days == tuple(range(days[0], days[-1] + 1)):
        return f"{DAYS[days[0]]}-{DAYS[days[-1]]}"
    return ",".join(DAYS[d] for d in days)


@dataclass(frozen=True)
class CronTime:
    """One weekly moment as cron writes it, for CronJob `schedule` and KEDA's cron trigger."""

    minute: int
    hour: int
    days: tuple[int, ...]  # 0 = Monday

    def expression(self) -> str:
        # cron counts week days from 0 = Sunday.
        cron_days = ",".join(str((day + 1) % 7) for day in sorted(self.days))
        return f"{self.minute} {self.hour} * * {cron_days}"


def _weekly_moment(days: tuple[int, ...], minutes: int) -> CronTime:
    """`minutes` after midnight of each of `days`, moved onto the day it falls on (the lead may
    reach into the day before, a close at 24:00 is the next day's 00:00)."""
    shift, minute_of_day = divmod(minutes, MINUTES_PER_DAY)
    return CronTime(minute_of_day % 60, minute_of_day // 60, tuple(sorted((d + shift) % 7 for d in days)))


@dataclass(frozen=True)
class ActiveHours:
    """The windows in one time zone, the lead before each opening, and the late-night override."""

    time_zone: str
    windows: tuple[Window, ...]
    lead_minutes: int
    keep_up_until: Optional[datetime] = None  # naive, in time_zone

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.time_zone)

    # ----------------------------------------------------------------- the clock

    def _occurrences(self, now: datetime) -> Iterator[tuple[datetime, datetime]]:
        """(opening, closing) of every window occurrence from the day before `now` to a week after."""
        local_today = now.astimezone(self.zone).date()
        for offset in range(-1, 8):
            day = local_today + timedelta(days=offset)
            for window in self.windows:
                if day.weekday() in window.days:
                    yield self._at(day, window.start), self._at(day, window.end)

    def _at(self, day: date, minutes: int) -> datetime:
        # 24:00 is the next day's midnight; a wall clock time in a DST gap resolves as zoneinfo does.
        extra, minutes = divmod(minutes, MINUTES_PER_DAY)
        return datetime.combine(day + timedelta(days=extra), time(minutes // 60, minutes % 60), self.zone)

    def keep_up_bounds(self) -> Optional[tuple[datetime, datetime]]:
        """The override's span as wall clock times in the zone (for cron schedules)."""
        if self.keep_up_until is None:
            return None
        return self.keep_up_until - KEEP_UP_SPAN, self.keep_up_until

    def kept_up(self, now: datetime) -> bool:
        """Inside the late-night override's span."""
        bounds = self.keep_up_bounds()
        return bounds is not None and bounds[0].replace(tzinfo=self.zone) <= now < bounds[1].replace(tzinfo=self.zone)

    def inside(self, now: datetime) -> bool:
        """Labelers' time: inside a window, or kept up by the override."""
        return self.kept_up(now) or any(opening <= now < closing for opening, closing in self._occurrences(now))

    def up(self, now: datetime) -> bool:
        """SAM should run: inside, or within the lead before an opening (loading its model)."""
        lead = timedelta(minutes=self.lead_minutes)
        return self.kept_up(now) or any(opening - lead <= now < closing for opening, closing in self._occurrences(now))

    def next_opening(self, now: datetime) -> datetime:
        """The next window opening after `now`, in the team's zone."""
        return min(opening for opening, _ in self._occurrences(now) if opening > now)

    def replicas_at(self, now: datetime, configured: int) -> int:
        return configured if self.up(now) else 0

    # ----------------------------------------------------------------- the week

    def up_spans(self) -> tuple[tuple[CronTime, CronTime], ...]:
        """(start, stop) of SAM for each window: its opening minus the lead, its closing."""
        return tuple((_weekly_moment(w.days, w.start - self.lead_minutes), _weekly_moment(w.days, w.end))
                     for w in self.windows)

    def scale_up_times(self) -> tuple[CronTime, ...]:
        """When a scaler starts SAM."""
        return _distinct(start for start, _ in self.up_spans())

    def scale_down_times(self) -> tuple[CronTime, ...]:
        """When a scaler stops SAM (unless the override or another window holds it)."""
        return _distinct(stop for _, stop in self.up_spans())

    def held_minutes(self) -> int:
        """Minutes a week SAM runs: the windows with their leads, overlaps counted once."""
        held = [False] * MINUTES_PER_WEEK
        for window in self.windows:
            for day in window.days:
                for minute in range(day * MINUTES_PER_DAY + window.start - self.lead_minutes,
                                    day * MINUTES_PER_DAY + window.end):
                    held[minute % MINUTES_PER_WEEK] = True
        return sum(held)

    def describe(self) -> str:
        """"Mon-Fri 08:00-18:00 (Europe/Berlin), up 45 min before each opening: 53.8 h of 168 h"."""
        hours = self.held_minutes() / 60
        held = f"{hours:.0f}" if hours.is_integer() else f"{hours:.1f}"
        return (f"{'; '.join(w.describe() for w in self.windows)} ({self.time_zone}), up {self.lead_minutes} min "
                f"before each opening: {held} h of {HOURS_PER_WEEK} h a week on the GPU")

    # ----------------------------------------------------------------- the document

    def to_document(self) -> dict:
        return {"timeZone": self.time_zone, "leadMinutes": self.lead_minutes,
                "windows": [{"days": [DAYS[d] for d in w.days], "start": _clock_text(w.start),
                             "end": _clock_text(w.end)} for w in self.windows],
                "keepUpUntil": self.keep_up_until.isoformat(timespec="minutes") if self.keep_up_until else None}

    @classmethod
    def from_document(cls, document: dict) -> "ActiveHours":
        """What `to_document` wrote (the stack validated it: a ValueError here is a broken ConfigMap)."""
        zone(document["timeZone"])
        keep_up = document.get("keepUpUntil")
        return cls(document["timeZone"],
                   tuple(Window(parse_days(w["days"]), parse_clock_time(w["start"]), parse_clock_time(w["end"]))
                         for w in document["windows"]),
                   int(document["leadMinutes"]), parse_local_time(keep_up) if keep_up else None)


def _distinct(times: Iterator[CronTime]) -> tuple[CronTime, ...]:
    return tuple(dict.fromkeys(times))


def date_expression(moment: datetime) -> str:
    """A cron expression firing at `moment`'s minute on its day of the year: the override's bounds.
    It fires again a year later, when the override is long over and a run follows the windows."""
    return f"{moment.minute} {moment.hour} {moment.day} {moment.month} *"
