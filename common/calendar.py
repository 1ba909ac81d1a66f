"""Regular trading hours from the settings, for venues that do not publish their own."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from common.config import ScheduleSettings


def _hm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def is_regular_hours(now_ts: float, schedule: ScheduleSettings) -> bool:
    """Monday to Friday between open and close, in the exchange's time zone."""
    local = datetime.fromtimestamp(now_ts, ZoneInfo(schedule.timezone))
    if local.weekday() >= 5:
        return False
    return _hm(schedule.open_time) <= local.time() < _hm(schedule.close_time)


def next_open(now_ts: float, schedule: ScheduleSettings) -> float:
    """Epoch seconds of the next regular open after ``now_ts`` (holidays unknown here)."""
    zone = ZoneInfo(schedule.timezone)
    local = datetime.fromtimestamp(now_ts, zone)
    opening = _hm(schedule.open_time)
    day = local.date()
    for _ in range(8):
        candidate = datetime.combine(day, opening, tzinfo=zone)
        if candidate.weekday() < 5 and candidate.timestamp() > now_ts:
            return candidate.timestamp()
        day += timedelta(days=1)
    raise AssertionError("a weekday opens within eight days")
