"""Exchange time, in one place: trading days, session hours, expiries and days to expiry.

    trading_day(ts, tz)        the exchange's calendar day of an instant
    parse_hours(text, zone)    IBKR's tradingHours / liquidHours strings -> TradingHours
    is_regular_hours, next_open  the configured weekday hours, where a venue publishes none
    parse_expiry, days_to_expiry, is_expired, expiry_close   an option's expiry date

Every trading-day decision goes through here, in the exchange's zone (``schedule.timezone``,
America/New_York by default), never the machine's: 21:30 in New York is already tomorrow in
UTC. Pure functions of their arguments; no clock is read here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from common.config import ScheduleSettings

EXCHANGE_TZ = "America/New_York"  # US equities and options
CLOSE = time(16, 0)  # the regular close of US options, and of their expiry day


@lru_cache(maxsize=16)
def zone(name: str = EXCHANGE_TZ) -> ZoneInfo:
    return ZoneInfo(name)


def trading_day(ts: float, tz: str = EXCHANGE_TZ) -> date:
    """The exchange's calendar day of the instant ``ts`` (epoch seconds)."""
    return datetime.fromtimestamp(ts, zone(tz)).date()


# --- session hours ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TradingHours:
    """Sessions parsed from IBKR's ``20260108:0930-20260108:1600;20260109:CLOSED``."""

    sessions: tuple[tuple[float, float], ...]  # epoch seconds [start, end)
    days: frozenset[date]  # every day the string lists, open or CLOSED
    zone: ZoneInfo

    def is_open(self, ts: float) -> bool | None:
        """True inside a session, False on a listed day outside one, None if not listed."""
        if any(start <= ts < end for start, end in self.sessions):
            return True
        day = datetime.fromtimestamp(ts, self.zone).date()
        return False if day in self.days else None


def parse_hours(text: str, tz: ZoneInfo) -> TradingHours:
    """Both formats IBKR has used: ``D:HHMM-D:HHMM`` and ``D:HHMM-HHMM[,HHMM-HHMM]``."""
    sessions: list[tuple[float, float]] = []
    days: set[date] = set()
    for part in filter(None, (p.strip() for p in text.split(";"))):
        day_text, _, rest = part.partition(":")
        day = datetime.strptime(day_text, "%Y%m%d").date()
        days.add(day)
        if rest.strip().upper() == "CLOSED":
            continue
        for span in filter(None, rest.split(",")):
            start_text, _, end_text = span.partition("-")
            start, end = (_hours_stamp(t, day, tz) for t in (start_text, end_text))
            if end <= start:  # "2000-0350" without dates: ends the next day
                end += 86_400
            sessions.append((start, end))
    return TradingHours(tuple(sessions), frozenset(days), tz)


def _hours_stamp(text: str, day: date, tz: ZoneInfo) -> float:
    text = text.strip()
    if ":" in text:
        moment = datetime.strptime(text, "%Y%m%d:%H%M")
    else:
        moment = datetime.combine(day, datetime.strptime(text, "%H%M").time())
    return moment.replace(tzinfo=tz).timestamp()


def _hm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def is_regular_hours(now_ts: float, schedule: ScheduleSettings) -> bool:
    """Monday to Friday between open and close, in the exchange's time zone."""
    local = datetime.fromtimestamp(now_ts, zone(schedule.timezone))
    if local.weekday() >= 5:
        return False
    return _hm(schedule.open_time) <= local.time() < _hm(schedule.close_time)


def next_open(now_ts: float, schedule: ScheduleSettings) -> float:
    """Epoch seconds of the next regular open after ``now_ts`` (holidays unknown here)."""
    tz = zone(schedule.timezone)
    opening = _hm(schedule.open_time)
    day = datetime.fromtimestamp(now_ts, tz).date()
    for _ in range(8):
        candidate = datetime.combine(day, opening, tzinfo=tz)
        if candidate.weekday() < 5 and candidate.timestamp() > now_ts:
            return candidate.timestamp()
        day += timedelta(days=1)
    raise AssertionError("a weekday opens within eight days")


# --- expiries -----------------------------------------------------------------------------------


def parse_expiry(text: str) -> date | None:
    """An expiry as IBKR writes it (YYYYMMDD), or None when it is not one."""
    try:
        return datetime.strptime(text.strip(), "%Y%m%d").date()
    except (ValueError, AttributeError):
        return None


def days_to_expiry(expiry: str, today: date) -> int | None:
    """Calendar days from ``today`` to the expiry date (0 on the day); None if malformed."""
    day = parse_expiry(expiry)
    return None if day is None else (day - today).days


def is_expired(expiry: str, ts: float, tz: str = EXCHANGE_TZ) -> bool:
    """True from the exchange day after the expiry date (a malformed expiry never expires)."""
    day = parse_expiry(expiry)
    return day is not None and day < trading_day(ts, tz)


def expiry_close(expiry: str, tz: str = EXCHANGE_TZ) -> float | None:
    """Epoch seconds of the regular close on the expiry date; None if malformed."""
    day = parse_expiry(expiry)
    return None if day is None else datetime.combine(day, CLOSE, zone(tz)).timestamp()
