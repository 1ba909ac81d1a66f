"""Regular trading hours and the next open (supervisor/hours.py); the simulated clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from common.calendar import is_regular_hours, next_open
from common.config import ScheduleSettings
from supervisor.runtime.clock import SimClock, WallClock

pytestmark = pytest.mark.timeout(30)

# Offsets written by hand, so the module's own time-zone handling is what is tested
EST = timezone(timedelta(hours=-5))  # winter
EDT = timezone(timedelta(hours=-4))  # summer (from 2026-03-08)
SCHEDULE = ScheduleSettings()  # America/New_York, 09:30 - 16:00


def ts(year: int, month: int, day: int, hour: int, minute: int, tz: timezone = EST) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=tz).timestamp()


# --- is_regular_hours --------------------------------------------------------------------------


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
    assert is_regular_hours(when, SCHEDULE) is expected


def test_regular_hours_follow_daylight_saving_time() -> None:
    # Thursday 2026-07-09: New York is UTC-4, so 09:30 local is 13:30 UTC
    assert is_regular_hours(ts(2026, 7, 9, 10, 0, EDT), SCHEDULE)
    assert not is_regular_hours(ts(2026, 7, 9, 9, 29, EDT), SCHEDULE)
    assert is_regular_hours(datetime(2026, 7, 9, 13, 30, tzinfo=UTC).timestamp(), SCHEDULE)
    # 19:59 UTC is 15:59 EDT (open) in July; 21:00 UTC is 16:00 EST (closed) in January
    assert is_regular_hours(datetime(2026, 7, 9, 19, 59, tzinfo=UTC).timestamp(), SCHEDULE)
    assert not is_regular_hours(datetime(2026, 1, 8, 21, 0, tzinfo=UTC).timestamp(), SCHEDULE)


def test_configured_open_and_close_are_used() -> None:
    schedule = ScheduleSettings(open_time="10:00", close_time="12:00")
    assert not is_regular_hours(ts(2026, 1, 8, 9, 45), schedule)
    assert is_regular_hours(ts(2026, 1, 8, 11, 59), schedule)
    assert not is_regular_hours(ts(2026, 1, 8, 12, 0), schedule)


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
    assert next_open(now, SCHEDULE) == expected


def test_next_open_across_the_spring_clock_change() -> None:
    # Friday 2026-03-06 evening (EST); clocks go forward on Sunday 03-08, so Monday's
    # 09:30 is EDT: 13:30 UTC, not 14:30
    opening = next_open(ts(2026, 3, 6, 18, 0, EST), SCHEDULE)
    assert opening == datetime(2026, 3, 9, 13, 30, tzinfo=UTC).timestamp()


def test_next_open_is_always_in_regular_hours_and_after_now() -> None:
    start = ts(2026, 1, 5, 0, 0)  # a Monday midnight
    for hour in range(0, 7 * 24, 5):
        now = start + hour * 3600
        opening = next_open(now, SCHEDULE)
        assert opening > now
        assert is_regular_hours(opening, SCHEDULE)
        assert opening - now <= 3 * 86_400  # never more than a weekend away (no holidays)


# --- SimClock ----------------------------------------------------------------------------------


def test_sim_clock_starts_at_the_given_time() -> None:
    start = ts(2026, 1, 8, 10, 30)
    clock = SimClock(start)
    assert start <= clock.now() < start + 5  # only real time elapsed since, a tiny amount


def test_sim_clock_sleep_moves_now_forward_without_waiting() -> None:
    async def scenario() -> None:
        # Given a simulated clock and a wake event nobody sets
        clock = SimClock(ts(2026, 1, 8, 10, 30))
        wake = asyncio.Event()
        before = clock.now()

        # When it sleeps ten hours (the test's 30 s timeout proves it did not really wait)
        await clock.sleep(36_000, wake)

        # Then now() moved by those ten hours (plus the microseconds the call took)
        moved = clock.now() - before
        assert 36_000 <= moved < 36_000 + 5

    asyncio.run(scenario())


def test_sim_clock_sleeps_add_up() -> None:
    async def scenario() -> None:
        clock = SimClock(ts(2026, 1, 8, 9, 45))
        wake = asyncio.Event()
        before = clock.now()
        for _ in range(75):
            await clock.sleep(300, wake)
        assert 75 * 300 <= clock.now() - before < 75 * 300 + 5

    asyncio.run(scenario())


def test_sim_clock_does_not_advance_when_woken() -> None:
    async def scenario() -> None:
        # Given a wake event already set (a stop was asked for)
        clock = SimClock(ts(2026, 1, 8, 10, 30))
        wake = asyncio.Event()
        wake.set()
        before = clock.now()

        # When it is asked to sleep an hour
        await clock.sleep(3600, wake)

        # Then the simulated time did not jump
        assert clock.now() - before < 5

    asyncio.run(scenario())


@pytest.mark.parametrize("seconds", [0.0, -60.0])
def test_sim_clock_does_not_move_for_non_positive_sleeps(seconds: float) -> None:
    async def scenario() -> None:
        clock = SimClock(ts(2026, 1, 8, 10, 30))
        before = clock.now()
        await clock.sleep(seconds, asyncio.Event())
        after = clock.now()
        assert 0 <= after - before < 5  # never backwards

    asyncio.run(scenario())


def test_wall_clock_returns_at_once_when_woken() -> None:
    async def scenario() -> None:
        # A set wake event ends an hour-long wall-clock sleep at once (else the 30 s timeout)
        wake = asyncio.Event()
        wake.set()
        await WallClock().sleep(3600, wake)

    asyncio.run(scenario())
