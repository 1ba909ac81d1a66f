"""The bot's clocks (supervisor/runtime/clock.py): the stub's simulated clock, the wall clock,
the clock file of a simulator started after the bot.

The pinned clock that follows the simulated gateway is tested in test_gateway_sim_clock.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from supervisor.runtime.clock import ClockFile, SimClock, WallClock, clock_jump

pytestmark = pytest.mark.timeout(30)

EST = timezone(timedelta(hours=-5))


def ts(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=EST).timestamp()


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


# --- ClockFile ---------------------------------------------------------------------------------


def test_a_clock_file_not_written_yet_is_followed_once_it_is(tmp_path) -> None:
    # Given a bot started before its simulator: the clock file is not there yet
    path = tmp_path / "sim.clock.json"
    clock = ClockFile(path)
    assert abs(clock.now() - time.time()) < 5 and clock.rate == 1.0  # the wall, meanwhile
    # When the simulator writes its session clock (start, rate, monotonic origin)
    start = ts(2026, 12, 1, 10, 30)
    path.write_text(
        json.dumps({"start_ts": start, "rate": 60.0, "origin_monotonic": time.monotonic() - 1.0})
    )
    # Then the bot's clock is the simulator's from then on
    assert start + 55 < clock.now() < start + 60 * 5 and clock.rate == 60.0
    path.unlink()
    assert clock.now() > start  # read once: the session does not vanish with the file


# --- wall-clock jumps are said -------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "step"),
    [
        ((1000.0, 50.0), (1010.0, 60.0), None),  # both moved 10 s: no jump
        ((1000.0, 50.0), (1011.5, 60.0), None),  # 1.5 s: within the tolerance
        ((1000.0, 50.0), (1070.0, 60.0), 60.0),  # NTP stepped a minute forward
        ((1000.0, 50.0), (940.0, 60.0), -70.0),  # set back by hand
        ((1000.0, 50.0), (4603.0, 3650.0), None),  # 3 s over an hour: slewing, not a jump
    ],
)
def test_a_clock_jump_is_the_wall_clock_moving_apart_from_the_monotonic_one(before, after, step):
    assert clock_jump(before, after) == step


class FakeTime:
    def __init__(self) -> None:
        self.wall, self.mono = 1_767_886_200.0, 100.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono


def test_the_wall_clock_logs_a_jump_once(monkeypatch, caplog) -> None:
    fake = FakeTime()
    monkeypatch.setattr("supervisor.runtime.clock.time", fake)
    clock = WallClock()
    clock.now()
    fake.wall += 5
    fake.mono += 5
    clock.now()
    assert clock.jumps == 0 and not caplog.records

    fake.wall -= 3600  # the clock set back an hour
    fake.mono += 1
    assert clock.now() == fake.wall
    fake.wall += 1
    fake.mono += 1
    clock.now()  # steady again: said once

    assert clock.jumps == 1
    [record] = caplog.records
    assert record.getMessage().startswith("the wall clock jumped -3601.0 s")
