"""Exchange time, in one place: trading days, regular sessions, expiries and days to expiry.

    trading_day(ts, tz)          the exchange's calendar day of an instant
    Session                      one regular session: its open and close (early closes too)
    exchange_calendar(schedule)  the sessions where a venue publishes none: NYSE's (holidays
                                 and early closes, by rule: common/nyse.py), or plain weekdays
    parse_hours(text, zone)      IBKR's tradingHours / liquidHours strings -> TradingHours,
                                 whose ``session(day)`` a symbol's own session comes from
    parse_expiry, days_to_expiry, is_expired, expiry_close   an option's expiry date

Every trading-day decision goes through here, in the exchange's zone (America/New_York for
US options), never the machine's or the user's display zone: 21:30 in New York is already
tomorrow in UTC. No clock is read here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo

from common import nyse as rules
from common.config import ScheduleSettings

EXCHANGE_TZ = "America/New_York"  # US equities and options
CLOSE = time(16, 0)  # the regular close of US options, and of their expiry day


@lru_cache(maxsize=16)
def zone(name: str = EXCHANGE_TZ) -> ZoneInfo:
    return ZoneInfo(name)


def trading_day(ts: float, tz: str = EXCHANGE_TZ) -> date:
    """The exchange's calendar day of the instant ``ts`` (epoch seconds)."""
    return datetime.fromtimestamp(ts, zone(tz)).date()


# --- sessions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """One regular session of one trading day, in epoch seconds [open, close)."""

    day: date
    open_ts: float
    close_ts: float

    def contains(self, ts: float) -> bool:
        return self.open_ts <= ts < self.close_ts


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

    def lists(self, day: date) -> bool:
        return day in self.days

    def session(self, day: date) -> Session | None:
        """The day's session (first open to last close) if listed and not CLOSED, else None."""
        spans = [
            (a, b) for a, b in self.sessions if datetime.fromtimestamp(a, self.zone).date() == day
        ]
        if not spans:
            return None
        return Session(day, min(a for a, _ in spans), max(b for _, b in spans))


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


class ExchangeCalendar(Protocol):
    """Regular sessions where a venue publishes none (and for days it no longer lists)."""

    tz: str

    def session(self, day: date) -> Session | None:
        """The regular session of ``day``; None on a weekend or holiday."""
        ...


class WeekdayCalendar:
    """``schedule.open_time``-``close_time`` Monday to Friday in ``schedule.timezone``; no
    holidays (``schedule.calendar: weekdays``, for venues NYSE's calendar does not fit)."""

    def __init__(self, schedule: ScheduleSettings) -> None:
        self.tz = schedule.timezone
        self.opening, self.closing = _hm(schedule.open_time), _hm(schedule.close_time)

    def session(self, day: date) -> Session | None:
        if day.weekday() >= 5:
            return None
        tz = zone(self.tz)
        return Session(
            day,
            datetime.combine(day, self.opening, tz).timestamp(),
            datetime.combine(day, self.closing, tz).timestamp(),
        )


class NyseCalendar:
    """NYSE's sessions by its rules (common/nyse.py: holidays, early closes, days of mourning),
    in the exchange's zone; any year from 2015."""

    tz = EXCHANGE_TZ

    def session(self, day: date) -> Session | None:
        return _nyse_session(day)


@lru_cache(maxsize=4096)  # asked a dozen times a symbol-cycle (bars, sessions, expiries)
def _nyse_session(day: date) -> Session | None:
    if day.year < rules.FIRST_YEAR:
        raise ValueError(f"{day}: outside the NYSE calendar (from {rules.FIRST_YEAR})")
    times = rules.hours(day)
    if times is None:
        return None
    tz = zone(NyseCalendar.tz)
    return Session(
        day,
        datetime.combine(day, times[0], tz).timestamp(),
        datetime.combine(day, times[1], tz).timestamp(),
    )


@lru_cache(maxsize=1)
def nyse() -> NyseCalendar:
    return NyseCalendar()


def calendar_tz(schedule: ScheduleSettings) -> str:
    """The zone trading days are counted in, without loading a calendar."""
    return NyseCalendar.tz if schedule.calendar == "XNYS" else schedule.timezone


def exchange_calendar(schedule: ScheduleSettings) -> ExchangeCalendar:
    """The calendar ``schedule.calendar`` names."""
    return nyse() if schedule.calendar == "XNYS" else WeekdayCalendar(schedule)


def sessions_before(calendar: ExchangeCalendar, day: date, count: int) -> Iterator[Session]:
    """Up to ``count`` sessions from ``day`` backwards (``day`` itself included)."""
    found = 0
    for back in range(count * 3 + 14):  # weekends and holidays: never more than this
        session = calendar.session(day - timedelta(days=back))
        if session is not None:
            yield session
            found += 1
            if found == count:
                return


PRE_MARKET_S = 5.5 * 3600  # 04:00 to the 09:30 open
POST_MARKET_S = 4 * 3600  # the 16:00 close to 20:00


def bars_start(
    calendar: ExchangeCalendar, now_ts: float, count: int, bar_s: int, rth: bool = True
) -> float:
    """How far back a bar request must reach for ``count`` completed bars of ``bar_s`` seconds
    inside sessions (regular ones, or with pre- and post-market): over a weekend or a holiday
    the same count means more clock time. Bars are aligned to multiples of ``bar_s``, so an
    hourly bar that holds 09:30-10:00 counts as one."""
    day = trading_day(now_ts, calendar.tz)
    start = now_ts
    for session in sessions_before(calendar, day, count + 1):
        opens, closes = session.open_ts, session.close_ts
        if not rth:
            opens, closes = opens - PRE_MARKET_S, closes + POST_MARKET_S
        end = min(closes, now_ts)
        if end <= opens:
            continue  # today's session has not begun
        first = (opens // bar_s) * bar_s
        count -= int((end // bar_s) * bar_s - first) // bar_s
        start = first
        if count <= 0:
            break
    return start


def is_open(calendar: ExchangeCalendar, ts: float) -> bool:
    session = calendar.session(trading_day(ts, calendar.tz))
    return session is not None and session.contains(ts)


def next_open(calendar: ExchangeCalendar, ts: float) -> float:
    """Epoch seconds of the next regular open after ``ts``."""
    day = trading_day(ts, calendar.tz)
    for ahead in range(15):
        session = calendar.session(day + timedelta(days=ahead))
        if session is not None and session.open_ts > ts:
            return session.open_ts
    raise ValueError(f"no session opens within 15 days of {day}")


# --- expiries -----------------------------------------------------------------------------------


def parse_expiry(text: str) -> date | None:
    """An expiry as IBKR writes it (YYYYMMDD), or None when it is not one."""
    return _parse_expiry(text) if isinstance(text, str) else None


@lru_cache(maxsize=4096)  # a few dozen expiries, parsed for every contract of every cycle
def _parse_expiry(text: str) -> date | None:
    try:
        return datetime.strptime(text.strip(), "%Y%m%d").date()
    except ValueError:
        return None


def days_to_expiry(expiry: str, today: date) -> int | None:
    """Calendar days from ``today`` to the expiry date (0 on the day); None if malformed."""
    day = parse_expiry(expiry)
    return None if day is None else (day - today).days


def is_expired(expiry: str, ts: float, tz: str = EXCHANGE_TZ) -> bool:
    """True from the exchange day after the expiry date (a malformed expiry never expires)."""
    day = parse_expiry(expiry)
    return day is not None and day < trading_day(ts, tz)


@lru_cache(maxsize=4096)
def expiry_close(expiry: str, tz: str = EXCHANGE_TZ) -> float | None:
    """Epoch seconds of the regular close on the expiry date; None if malformed."""
    day = parse_expiry(expiry)
    return None if day is None else datetime.combine(day, CLOSE, zone(tz)).timestamp()
