"""Exchange time (common/calendar.py): trading days, IBKR's hours strings, the configured
regular hours and the next open, expiry dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from common import nyse as nyse_rules
from common.calendar import (
    NyseCalendar,
    WeekdayCalendar,
    days_to_expiry,
    exchange_calendar,
    expiry_close,
    is_expired,
    is_open,
    next_open,
    nyse,
    parse_expiry,
    parse_hours,
    sessions_before,
    trading_day,
)
from common.config import ScheduleSettings
from tests.conftest import REPO_ROOT
from tests.sessions import (
    AFTER_FALL_BACK,
    AFTER_SPRING_FORWARD,
    CHRISTMAS,
    EARLY_CLOSE_DAY,
    FRIDAY_1558,
    MONDAY_0931,
    SATURDAY_NOON,
    TUESDAY_MORNING,
)

pytestmark = pytest.mark.timeout(30)

# Offsets written by hand, so the module's own time-zone handling is what is tested
EST = timezone(timedelta(hours=-5))  # winter
EDT = timezone(timedelta(hours=-4))  # summer (from 2026-03-08)
SCHEDULE = ScheduleSettings(calendar="weekdays")  # America/New_York, 09:30 - 16:00
WEEKDAYS = WeekdayCalendar(SCHEDULE)


def ts(year: int, month: int, day: int, hour: int, minute: int, tz: timezone = EST) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=tz).timestamp()


# --- the weekday calendar (schedule.calendar: weekdays) -------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (ts(2026, 1, 8, 10, 0), True),  # Thursday 10:00
        (ts(2026, 1, 8, 9, 29), False),  # a minute before the open
        (ts(2026, 1, 8, 9, 30), True),  # the open itself
        (ts(2026, 1, 8, 15, 59), True),  # the last minute
        (ts(2026, 1, 8, 16, 0), False),  # the close is outside
        (ts(2026, 1, 10, 10, 0), False),  # Saturday
        (ts(2026, 1, 11, 12, 0), False),  # Sunday
        (ts(2026, 1, 12, 9, 30), True),  # Monday's open
    ],
)
def test_regular_hours_in_winter(when: float, expected: bool) -> None:
    assert is_open(WEEKDAYS, when) is expected


def test_regular_hours_follow_daylight_saving_time() -> None:
    # Thursday 2026-07-09: New York is UTC-4, so 09:30 local is 13:30 UTC
    assert is_open(WEEKDAYS, ts(2026, 7, 9, 10, 0, EDT))
    assert not is_open(WEEKDAYS, ts(2026, 7, 9, 9, 29, EDT))
    assert is_open(WEEKDAYS, datetime(2026, 7, 9, 13, 30, tzinfo=UTC).timestamp())
    # 19:59 UTC is 15:59 EDT (open) in July; 21:00 UTC is 16:00 EST (closed) in January
    assert is_open(WEEKDAYS, datetime(2026, 7, 9, 19, 59, tzinfo=UTC).timestamp())
    assert not is_open(WEEKDAYS, datetime(2026, 1, 8, 21, 0, tzinfo=UTC).timestamp())


def test_configured_open_and_close_are_used() -> None:
    schedule = ScheduleSettings(open_time="10:00", close_time="12:00")
    assert not is_open(WeekdayCalendar(schedule), ts(2026, 1, 8, 9, 45))
    assert is_open(WeekdayCalendar(schedule), ts(2026, 1, 8, 11, 59))
    assert not is_open(WeekdayCalendar(schedule), ts(2026, 1, 8, 12, 0))


# --- next_open ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (ts(2026, 1, 9, 18, 0), ts(2026, 1, 12, 9, 30)),  # Friday evening -> Monday
        (ts(2026, 1, 9, 16, 0), ts(2026, 1, 12, 9, 30)),  # Friday's close -> Monday
        (ts(2026, 1, 10, 12, 0), ts(2026, 1, 12, 9, 30)),  # Saturday -> Monday
        (ts(2026, 1, 12, 8, 0), ts(2026, 1, 12, 9, 30)),  # Monday early -> the same day
        (ts(2026, 1, 8, 10, 0), ts(2026, 1, 9, 9, 30)),  # Thursday in hours -> Friday
        (ts(2026, 1, 8, 9, 30), ts(2026, 1, 9, 9, 30)),  # at the open: the next one
    ],
)
def test_next_open(now: float, expected: float) -> None:
    assert next_open(WEEKDAYS, now) == expected


def test_next_open_across_the_spring_clock_change() -> None:
    # Friday 2026-03-06 evening (EST); clocks go forward on Sunday 03-08, so Monday's
    # 09:30 is EDT: 13:30 UTC, not 14:30
    opening = next_open(WEEKDAYS, ts(2026, 3, 6, 18, 0, EST))
    assert opening == datetime(2026, 3, 9, 13, 30, tzinfo=UTC).timestamp()


def test_next_open_is_always_in_regular_hours_and_after_now() -> None:
    start = ts(2026, 1, 5, 0, 0)  # a Monday midnight
    for hour in range(0, 7 * 24, 5):
        now = start + hour * 3600
        opening = next_open(WEEKDAYS, now)
        assert opening > now
        assert is_open(WEEKDAYS, opening)
        assert opening - now <= 3 * 86_400  # never more than a weekend away (no holidays)


# --- NYSE's calendar (the default) ----------------------------------------------------------


def _ny(moment: datetime) -> str:
    return datetime.fromtimestamp(moment.timestamp(), ZoneInfo("America/New_York")).strftime(
        "%Y-%m-%d %H:%M"
    )


def test_nyse_knows_holidays_weekends_and_early_closes() -> None:
    calendar = nyse()
    assert calendar.session(CHRISTMAS.date()) is None  # a holiday
    assert calendar.session(SATURDAY_NOON.date()) is None
    early = calendar.session(EARLY_CLOSE_DAY.date())  # the day after Thanksgiving
    assert early is not None
    assert _ny(datetime.fromtimestamp(early.close_ts, UTC)) == "2026-11-27 13:00"
    friday = calendar.session(FRIDAY_1558.date())
    assert friday is not None and friday.contains(FRIDAY_1558.timestamp())
    assert _ny(datetime.fromtimestamp(friday.open_ts, UTC)) == "2026-12-04 09:30"


def test_nyse_sessions_follow_the_clock_changes() -> None:
    calendar = nyse()
    after_fall = calendar.session(AFTER_FALL_BACK.date())
    after_spring = calendar.session(AFTER_SPRING_FORWARD.date())
    assert after_fall is not None and after_spring is not None
    # 09:30 New York: 14:30 UTC in winter, 13:30 UTC in summer
    assert datetime.fromtimestamp(after_fall.open_ts, UTC).hour == 14
    assert datetime.fromtimestamp(after_spring.open_ts, UTC).hour == 13
    assert is_open(calendar, AFTER_FALL_BACK.timestamp())


def test_the_next_open_skips_weekends_and_holidays() -> None:
    calendar = nyse()
    assert (
        next_open(calendar, FRIDAY_1558.timestamp()) == MONDAY_0931.replace(minute=30).timestamp()
    )
    christmas_eve_evening = datetime(2026, 12, 24, 18, 0, tzinfo=EST).timestamp()
    monday = datetime(2026, 12, 28, 9, 30, tzinfo=EST).timestamp()  # Friday 25th: closed
    assert next_open(calendar, christmas_eve_evening) == monday
    assert not is_open(calendar, CHRISTMAS.timestamp())


def test_sessions_before_walks_back_over_the_weekend() -> None:
    days = [s.day for s in sessions_before(nyse(), MONDAY_0931.date(), 3)]
    assert days == [date(2026, 12, 7), date(2026, 12, 4), date(2026, 12, 3)]
    with pytest.raises(ValueError, match="outside the NYSE calendar"):
        nyse().session(date(2014, 1, 3))
    assert nyse().session(date(2040, 1, 3)) is not None  # rules, not a table: no end date


def test_the_schedule_names_the_calendar() -> None:
    assert isinstance(exchange_calendar(ScheduleSettings()), NyseCalendar)
    assert isinstance(exchange_calendar(SCHEDULE), WeekdayCalendar)


# --- trading day, expiries ---------------------------------------------------------------------

NY = ZoneInfo("America/New_York")


def test_the_trading_day_is_the_exchanges_not_utcs() -> None:
    # 21:30 in New York on Tuesday is already Wednesday in UTC
    evening = datetime(2026, 12, 1, 21, 30, tzinfo=NY).timestamp()
    assert trading_day(evening) == date(2026, 12, 1)
    assert trading_day(evening, "UTC") == date(2026, 12, 2)
    assert trading_day(TUESDAY_MORNING.timestamp()) == date(2026, 12, 1)


def test_expiry_dates_and_days_to_expiry() -> None:
    assert parse_expiry("20261204") == date(2026, 12, 4)
    assert parse_expiry(" 20261204 ") == date(2026, 12, 4)
    assert parse_expiry("2026-12-04") is None and parse_expiry("") is None
    assert days_to_expiry("20261204", date(2026, 12, 1)) == 3
    assert days_to_expiry("20261204", date(2026, 12, 4)) == 0
    assert days_to_expiry("bad", date(2026, 12, 4)) is None


def test_an_option_expires_after_its_expiry_day_in_new_york() -> None:
    friday = FRIDAY_1558.timestamp()
    assert not is_expired("20261204", friday)  # 15:58 on the expiry day: still listed
    assert is_expired("20261204", datetime(2026, 12, 5, 0, 1, tzinfo=NY).timestamp())
    # 20:00 New York is Saturday in UTC, but the exchange's day is still Friday
    assert not is_expired("20261204", datetime(2026, 12, 4, 20, 0, tzinfo=NY).timestamp())
    assert not is_expired("garbage", friday)


def test_the_expiry_close_follows_daylight_saving() -> None:
    assert expiry_close("20261204") == datetime(2026, 12, 4, 21, 0, tzinfo=UTC).timestamp()
    assert expiry_close("20270716") == datetime(2027, 7, 16, 20, 0, tzinfo=UTC).timestamp()
    assert expiry_close("soon") is None
    # the first sessions after each clock change close at 16:00 local
    assert expiry_close("20261102") == AFTER_FALL_BACK.replace(hour=16, minute=0).timestamp()
    spring = AFTER_SPRING_FORWARD.replace(hour=16, minute=0).timestamp()
    assert expiry_close("20270315") == spring


# --- IBKR's hours strings --------------------------------------------------------------------


def ny(text: str) -> float:
    return datetime.strptime(text, "%Y%m%d %H:%M").replace(tzinfo=NY).timestamp()


def test_hours_in_the_current_format_with_a_closed_day() -> None:
    hours = parse_hours(
        "20260108:0930-20260108:1600;20260109:CLOSED;20260112:0930-20260112:1600", NY
    )
    assert hours.is_open(ny("20260108 09:30")) is True
    assert hours.is_open(ny("20260108 15:59")) is True
    assert hours.is_open(ny("20260108 16:00")) is False  # the end is exclusive
    assert hours.is_open(ny("20260108 08:00")) is False
    assert hours.is_open(ny("20260109 12:00")) is False  # CLOSED (a holiday)
    assert hours.is_open(ny("20260110 12:00")) is None  # not listed: unknown
    assert hours.is_open(ny("20260112 10:00")) is True


def test_hours_in_the_old_format_and_overnight_sessions() -> None:
    old = parse_hours("20090507:0700-1830,1830-2330;20090508:CLOSED", NY)
    assert old.is_open(ny("20090507 07:00")) and old.is_open(ny("20090507 20:00"))
    assert old.is_open(ny("20090507 23:45")) is False
    overnight = parse_hours("20260108:2000-20260109:0350;20260109:0400-20260109:2000", NY)
    assert overnight.is_open(ny("20260109 01:00")) is True
    assert overnight.is_open(ny("20260109 03:55")) is False
    assert parse_hours("", NY).is_open(TUESDAY_MORNING.timestamp()) is None
    with pytest.raises(ValueError):
        parse_hours("garbage:0930-1600", NY)


def test_the_nyse_rules_agree_with_exchange_calendars_on_every_weekday_2015_to_2035() -> None:
    # Given the XNYS sessions that are not 09:30-16:00, written once from exchange_calendars
    golden: dict[date, str] = {}
    for line in (REPO_ROOT / "tests" / "data" / "xnys_2015_2035.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            iso_day, hours = line.split()
            golden[date.fromisoformat(iso_day)] = hours
    assert len(golden) > 200 and "2025-01-09" in {d.isoformat() for d in golden}
    # Then every weekday of the range gets the same hours from our rules
    day, wrong = date(2015, 1, 1), []
    while day <= date(2035, 12, 31):
        got = nyse_rules.hours(day)
        mine = "closed" if got is None else f"{got[0]:%H:%M}-{got[1]:%H:%M}"
        expected = golden.get(day, "09:30-16:00") if day.weekday() < 5 else "closed"
        if mine != expected:
            wrong.append((day, mine, expected))
        day += timedelta(days=1)
    assert wrong == []


@pytest.mark.parametrize(
    ("day", "name"),
    [
        (date(2027, 12, 31), None),  # New Year's 2028 is a Saturday: not kept on the Friday
        (date(2026, 7, 3), "Independence Day"),  # the 4th is a Saturday
        (date(2027, 6, 18), "Juneteenth"),  # the 19th is a Saturday
        (date(2026, 4, 3), "Good Friday"),
    ],
)
def test_observed_holidays(day: date, name: str | None) -> None:
    assert nyse_rules.holidays(day.year).get(day) == name
