"""The simulator's session clock (tools/gateway_sim/simclock.py) and the bot following it.

A pinned session is a function of the seed and sim time only: two sims of one scenario,
started at different moments (or on different days), answer the same requests identically.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from supervisor.runtime.clock import PinnedClock, WallClock
from tests.conftest_sim import connect, make_scenario, run_client
from tests.ibclient import Option, Stock
from tests.sessions import CHRISTMAS, FRIDAY_1555, MONDAY_0931, TUESDAY_MORNING
from tools.gateway_sim import ScenarioError, ThreadedSim, scenario_from_dict
from tools.gateway_sim.__main__ import parse_args, with_clock
from tools.gateway_sim.scenario import ClockSpec
from tools.gateway_sim.simclock import ScenarioClock

pytestmark = pytest.mark.timeout(60)


def test_a_pinned_clock_is_start_plus_elapsed_times_rate() -> None:
    # Given a session pinned at Friday 15:55 that started 10 real seconds ago at 6x
    origin = time.monotonic() - 10.0
    clock = ScenarioClock(ClockSpec(start=FRIDAY_1555, rate=6.0), origin_monotonic=origin)
    # Then it reads 15:56 (10 s x 6), whatever the wall clock says
    assert clock.now() == pytest.approx(FRIDAY_1555.timestamp() + 60.0, abs=0.5)
    assert clock.pinned and clock.market_instant(1234.5) == 1234.5  # no market steps


def test_a_pinned_clock_ignores_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ScenarioClock(ClockSpec(start=TUESDAY_MORNING))
    before = clock.now()
    # When the machine's wall clock reads another year entirely
    monkeypatch.setattr(time, "time", lambda: CHRISTMAS.timestamp() + 86_400 * 365)
    # Then the session is where it was (only real elapsed time moved it)
    assert 0 <= clock.now() - before < 1.0
    assert clock.now() - TUESDAY_MORNING.timestamp() < 5.0


def test_the_wall_clock_mode_follows_the_wall() -> None:
    clock = ScenarioClock(ClockSpec())
    assert not clock.pinned and abs(clock.now() - time.time()) < 1.0
    assert clock.describe()["start_ts"] is None
    assert isinstance(PinnedClock.follow(clock.describe()), WallClock)


def test_market_steps_floor_prices_to_whole_steps_while_time_flows() -> None:
    start = TUESDAY_MORNING.timestamp()
    clock = ScenarioClock(
        ClockSpec(start=TUESDAY_MORNING, market_step_s=60), origin_monotonic=time.monotonic() - 75.0
    )
    assert clock.now() == pytest.approx(start + 75.0, abs=0.5)  # time is not stepped
    assert clock.market_instant(start + 59.9) == start
    assert clock.market_instant(start + 60.0) == start + 60.0
    assert clock.market_instant(start + 75.0) == start + 60.0


def test_the_bot_follows_the_described_clock_exactly() -> None:
    sim_clock = ScenarioClock(
        ClockSpec(start=FRIDAY_1555, rate=2.0), origin_monotonic=time.monotonic() - 3.0
    )
    bot_clock = PinnedClock.follow(sim_clock.describe())
    assert isinstance(bot_clock, PinnedClock) and bot_clock.rate == 2.0
    assert abs(bot_clock.now() - sim_clock.now()) < 0.01


def test_the_bot_clock_sleeps_market_seconds() -> None:
    async def scenario() -> float:
        # At 100x, one market minute is 0.6 real seconds
        clock = PinnedClock(TUESDAY_MORNING.timestamp(), rate=100.0)
        started = time.monotonic()
        await clock.sleep(60.0, asyncio.Event())
        real = time.monotonic() - started
        assert clock.now() - TUESDAY_MORNING.timestamp() >= 60.0
        return real

    assert asyncio.run(scenario()) >= 0.59
    with pytest.raises(ValueError, match="rate"):
        PinnedClock(0.0, rate=0.0)


@pytest.mark.parametrize(
    ("clock", "message"),
    [
        ({"start": "2026-12-01T10:30:00"}, "needs a UTC offset"),
        ({"rate": 60}, "rate needs a pinned start"),
        ({"start": "2026-12-01T10:30:00-05:00", "rate": 0}, "clock.rate"),
        ({"start": "2026-12-01T10:30:00-05:00", "market_step_s": -1}, "clock.market_step_s"),
        ({"start": "yesterday"}, "clock.start"),
    ],
)
def test_bad_clocks_are_named(clock: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        scenario_from_dict({"clock": clock})


def test_command_line_clock_overrides() -> None:
    pinned = make_scenario(TUESDAY_MORNING)
    moved = with_clock(pinned, parse_args(["--start", FRIDAY_1555.isoformat(), "--rate", "60"]))
    assert moved.clock.start == FRIDAY_1555 and moved.clock.rate == 60
    wall = with_clock(moved, parse_args(["--start", "wall"]))
    assert wall.clock.start is None and wall.clock.rate == 1.0
    assert with_clock(pinned, parse_args([])).clock == pinned.clock
    with pytest.raises(ScenarioError, match="clock options: start"):
        with_clock(pinned, parse_args(["--start", "soon"]))


# --- replay: two sims, one session ------------------------------------------------------------


async def _observe(port: int) -> dict[str, Any]:
    """Everything a cycle asks for: hours, chain, bars, stock and option snapshots."""
    ib = await connect(port)
    try:
        spy = Stock("SPY", "SMART", "USD")
        (details,) = await ib.reqContractDetailsAsync(spy)
        chains = await ib.reqSecDefOptParamsAsync("SPY", "", "STK", 756733)
        bars = await ib.reqHistoricalDataAsync(
            spy, "", "3600 S", "1 min", "TRADES", False, formatDate=2
        )
        hourly = await ib.reqHistoricalDataAsync(
            spy, "", "2 D", "1 hour", "TRADES", False, formatDate=2
        )
        expiry = chains[0].expirations[1]
        options = [Option("SPY", expiry, k, r, "SMART") for k in (670, 672, 675) for r in "CP"]
        await ib.qualifyContractsAsync(*options)
        tickers = await asyncio.wait_for(ib.reqTickersAsync(spy, *options), 10)
        quotes = [
            (t.contract.conId, t.bid, t.ask, t.last, t.close, t.volume, t.bidSize, t.modelGreeks)
            for t in tickers
        ]
        return {
            "hours": (details.tradingHours, details.liquidHours),
            "chain": [(c.exchange, c.expirations, c.strikes) for c in chains],
            "bars": list(bars),
            "hourly": list(hourly),
            "quotes": quotes,
            "expiry": expiry,
        }
    finally:
        ib.disconnect()


def _session_of(start: datetime) -> Callable[[], dict[str, Any]]:
    def observe() -> dict[str, Any]:
        scenario = make_scenario(start, clock={"market_step_s": 60})
        with ThreadedSim(scenario) as sim:
            return run_client(lambda: _observe(sim.port))

    return observe


def test_two_sims_of_one_pinned_session_answer_identically() -> None:
    # Given two simulators of the same seed and session, the second started later
    first = _session_of(TUESDAY_MORNING)()
    time.sleep(1.1)
    second = _session_of(TUESDAY_MORNING)()
    # Then hours, chains, bars and quotes (prices, sizes, greeks) are identical
    assert first == second
    # (the market stands at 10:30:00 sharp for the minute: an hour back has 59 complete bars
    # and no forming one)
    assert len(first["bars"]) == 59 and first["quotes"][0][1] > 0
    # And a session pinned elsewhere (the Friday close) is a different market
    other = _session_of(FRIDAY_1555)()
    assert other["bars"] != first["bars"] and other["expiry"] != first["expiry"]
    assert other["bars"][-1].date - first["bars"][-1].date > timedelta(days=3)


def test_a_jump_leaps_the_weekend_and_the_bot_follows_it() -> None:
    # Given a session from Friday 15:55 at 60x that leaps from 16:05 to Monday 09:31
    friday_1605 = FRIDAY_1555 + timedelta(minutes=10)
    spec = ClockSpec(start=FRIDAY_1555, rate=60.0, jumps=({"at": friday_1605, "to": MONDAY_0931},))
    # When 9 real seconds have passed (16:04), then 11 (16:06 before the leap)
    for elapsed, expected in (
        (9.0, FRIDAY_1555.timestamp() + 540),
        (11.0, MONDAY_0931.timestamp() + 60),
    ):
        clock = ScenarioClock(spec, origin_monotonic=time.monotonic() - elapsed)
        # Then the sim reads Friday before the jump and Monday after it, and a bot following
        # its clock file reads the same instant
        assert clock.now() == pytest.approx(expected, abs=1.0)
        assert PinnedClock.follow(clock.describe()).now() == pytest.approx(clock.now(), abs=1.0)


@pytest.mark.parametrize(
    "jumps, why",
    [
        ([{"at": "2026-12-04T16:05:00-05:00", "to": "2026-12-04T16:00:00-05:00"}], "forward"),
        ([{"at": "2026-12-04T15:00:00-05:00", "to": "2026-12-07T09:30:00-05:00"}], "after the"),
        ([{"at": "2026-12-04T16:05:00", "to": "2026-12-07T09:30:00-05:00"}], "UTC offset"),
    ],
)
def test_a_jump_must_leap_forward_after_the_start(jumps: list[dict[str, str]], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        ClockSpec.model_validate({"start": FRIDAY_1555.isoformat(), "jumps": jumps})
