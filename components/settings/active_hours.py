"""The `sam.activeHours` section: the team's labeling windows, outside which SAM runs no pod."""

from __future__ import annotations

import difflib
import math
import zoneinfo
from typing import Any, Optional

from components.settings.model import SamActiveHoursSettings, SamScaler
from components.settings.reader import Problems, Section, as_text, show
from reconciler.active_hours import (
    DAYS, ActiveHours, UnknownDay, Window, parse_clock_time, parse_days, parse_local_time, zone,
)

DEFAULT_TIME_ZONE = "UTC"
# A GPU node pool scaled to zero first has to start a node when SAM is scaled up: a cloud VM
# with the GPU driver and device plugin ready takes a few minutes (usually 3-8 on EKS and GKE
# with the cluster autoscaler or Karpenter); ten covers the usual case.
GPU_NODE_PROVISIONING_SECONDS = 600
LEAD_ROUNDING_MINUTES = 5
MAX_LEAD_MINUTES = 240


def default_lead_minutes(rollout_seconds: int) -> int:
    """A new GPU node, then the rollout budget (the image pull and the model's load), rounded up
    to five minutes: SAM answers by the time the window opens."""
    minutes = math.ceil((GPU_NODE_PROVISIONING_SECONDS + rollout_seconds) / 60)
    return min(MAX_LEAD_MINUTES, LEAD_ROUNDING_MINUTES * math.ceil(minutes / LEAD_ROUNDING_MINUTES))


def _time_zone(section: Section) -> Optional[str]:
    name = section.string("timeZone", "IANA time zone the windows and keepUpUntil are in (Europe/Berlin).",
                          DEFAULT_TIME_ZONE, kind="IANA time zone")
    if name is None:
        return None
    try:
        zone(name)
    except ValueError:
        hint = difflib.get_close_matches(name, sorted(zoneinfo.available_timezones()), n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        section.error("timeZone", f"{show(name)} is not a time zone of the tz database{suggestion}; "
                                  "expected an IANA name such as Europe/Berlin or UTC")
        return None
    return name


def _days(item: Section) -> Optional[tuple[int, ...]]:
    raw = item.take("days", "days", None, "Week days of the window: Mon-Fri, Mon,Wed or a list [Mon, Tue].",
                    accepts=f"a day range, or a list of {', '.join(DAYS)}")
    if raw is None or raw == []:
        item.error("days", f"is required; expected week days such as Mon-Fri or [Mon, Tue] ({', '.join(DAYS)})")
        return None
    try:
        return parse_days(raw)
    except UnknownDay as unknown:
        hint = difflib.get_close_matches(unknown.name.title(), DAYS, n=1, cutoff=0.5)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        item.error("days", f"{show(unknown.name)} is not a day{suggestion}; expected {', '.join(DAYS)} "
                           "or a range such as Mon-Fri")
    except ValueError as error:
        item.error("days", f"{show(raw)} {error}")
    return None


def _clock_time(item: Section, name: str, doc: str) -> Optional[int]:
    text = item.string(name, doc, required=True, kind="time HH:MM")
    if text is None:
        return None
    try:
        return parse_clock_time(text)
    except ValueError as error:
        item.error(name, f"{show(text)} {error}")
        return None


def _window(path: str, raw: Any, problems: Problems) -> Optional[Window]:
    item = Section(path, raw, problems)
    days = _days(item)
    start = _clock_time(item, "start", "When the window opens, HH:MM in the time zone.")
    end = _clock_time(item, "end", "When the window closes, HH:MM after start on the same day (24:00: midnight).")
    item.finish()
    if start is not None and end is not None and end <= start:
        item.error("end", f"{show(as_text(item.raw['end']))} is not after start {show(as_text(item.raw['start']))}; "
                          "expected an end later the same day (24:00 at the latest; split a night into two windows)")
        return None
    return Window(days, start, end) if days and start is not None and end is not None else None


def _windows(section: Section) -> tuple[Window, ...]:
    raw_windows = section.items("windows", "The labeling windows: SAM is up inside them (and the lead before each).",
                                "list of {days, start, end}")
    windows: list[tuple[int, Window]] = []
    for index, raw in enumerate(raw_windows):
        window = _window(section.key(f"windows[{index}]"), raw, section.problems)
        if window is None:
            continue
        for other_index, other in windows:
            if window.overlaps(other):
                section.error(f"windows[{index}]", f"{window.describe()} overlaps windows[{other_index}] "
                                                   f"({other.describe()}); expected windows that do not overlap")
                break
        else:
            windows.append((index, window))
    if section.has("windows") and not raw_windows:
        section.error("windows", "is empty; expected at least one {days, start, end}")
    return tuple(window for _, window in windows)


def _keep_up_until(section: Section) -> Any:
    text = section.string("keepUpUntil", "Late-night override: SAM stays up during the 24 hours before this local "
                          "time, YYYY-MM-DDTHH:MM in the time zone (2026-12-08T02:00).", kind="local date and time")
    if text is None:
        return None
    try:
        return parse_local_time(text)
    except ValueError as error:
        section.error("keepUpUntil", f"{show(text)} {error}")
        return None


def read_active_hours(section: Section, rollout_seconds: int) -> Optional[SamActiveHoursSettings]:
    """None while switched off; every other key then waits, unread, with one warning."""
    switch = section.boolean("enabled", "Scale SAM to 0 replicas outside the windows (default: on once windows "
                             "are set).", None)
    enabled = section.has("windows") if switch is None else switch
    if not enabled:
        section.inapplicable(("timeZone", "windows", "leadMinutes", "scaler", "keepUpUntil"),
                             "while sam.activeHours.enabled is false")
        section = Section(section.path, section.raw, section.problems.recording_only())
    time_zone = _time_zone(section)
    windows = _windows(section)
    lead = section.integer("leadMinutes", "Minutes before each opening SAM is started, so its model has loaded "
                           f"when the window opens (default: a GPU node's provisioning, "
                           f"{GPU_NODE_PROVISIONING_SECONDS // 60} min, plus sam.startupTimeoutSeconds and the image "
                           "pull allowance, rounded up to 5 min).", None, minimum=0, maximum=MAX_LEAD_MINUTES)
    scaler = section.choice("scaler", "What scales the Deployment: CronJobs with a scale-only service account, "
                            "or KEDA's cron scaler (KEDA must be installed).", [s.value for s in SamScaler],
                            SamScaler.CRONJOB.value)
    keep_up_until = _keep_up_until(section)
    section.finish()
    if not enabled:
        return None
    if not section.has("windows"):
        section.error("windows", "is required when sam.activeHours.enabled is true; expected a list of "
                                 "{days, start, end}")
    if time_zone is None or not windows or len(windows) != len(section.raw.get("windows") or ()):
        return None
    return SamActiveHoursSettings(
        ActiveHours(time_zone, windows, default_lead_minutes(rollout_seconds) if lead is None else lead, keep_up_until),
        SamScaler(scaler or SamScaler.CRONJOB.value))

