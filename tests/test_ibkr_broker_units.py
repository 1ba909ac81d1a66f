"""Pure pieces of the IBKR broker: trading-hours parsing, durations, error classes; and
SimProcess, which runs the simulated gateway as a child process for ``run --sim``."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from supervisor.broker.ibkr import errors
from supervisor.broker.ibkr.broker import IBKRBroker, ib_duration, parse_hours
from supervisor.runtime.clock import PinnedClock
from supervisor.runtime.simproc import SimProcess, SimStartError
from tests.conftest import REPO_ROOT
from tests.conftest_sim import run_client
from tests.sessions import TUESDAY_MORNING
from tests.test_ibkr_broker import settings

NY = ZoneInfo("America/New_York")


def ts(text: str) -> float:
    return datetime.strptime(text, "%Y%m%d %H:%M").replace(tzinfo=NY).timestamp()


def test_hours_in_the_current_format_with_a_closed_day() -> None:
    hours = parse_hours("20260108:0930-20260108:1600;20260109:CLOSED;"
                        "20260112:0930-20260112:1600", NY)
    assert hours.is_open(ts("20260108 09:30")) is True
    assert hours.is_open(ts("20260108 15:59")) is True
    assert hours.is_open(ts("20260108 16:00")) is False  # the end is exclusive
    assert hours.is_open(ts("20260108 08:00")) is False
    assert hours.is_open(ts("20260109 12:00")) is False  # CLOSED (a holiday)
    assert hours.is_open(ts("20260110 12:00")) is None  # not listed: unknown
    assert hours.is_open(ts("20260112 10:00")) is True


def test_hours_in_the_old_format_and_overnight_sessions() -> None:
    old = parse_hours("20090507:0700-1830,1830-2330;20090508:CLOSED", NY)
    assert old.is_open(ts("20090507 07:00")) and old.is_open(ts("20090507 20:00"))
    assert old.is_open(ts("20090507 23:45")) is False
    overnight = parse_hours("20260108:2000-20260109:0350;20260109:0400-20260109:2000", NY)
    assert overnight.is_open(ts("20260109 01:00")) is True
    assert overnight.is_open(ts("20260109 03:55")) is False
    assert parse_hours("", NY).is_open(TUESDAY_MORNING.timestamp()) is None
    with pytest.raises(ValueError):
        parse_hours("garbage:0930-1600", NY)


def test_durations_in_seconds_up_to_a_day_then_days() -> None:
    assert ib_duration(7260) == "7260 S"
    assert ib_duration(0.5) == "60 S"  # never below a minute
    assert ib_duration(86_400) == "86400 S"
    assert ib_duration(86_401) == "2 D"


@pytest.mark.parametrize(("code", "kind", "key"), [
    (2104, errors.Kind.NOTICE, "warnings.2104"),
    (10167, errors.Kind.WARNING, "warnings.10167"),
    (354, errors.Kind.SYMBOL, "errors.354"),
    (200, errors.Kind.SYMBOL, "errors.200"),
    (162, errors.Kind.SYMBOL, "errors.162"),
    (1100, errors.Kind.CONNECTION, "errors.1100"),
    (326, errors.Kind.CONNECTION, "errors.326"),
    (201, errors.Kind.ORDER, "errors.201"),
    (9999, errors.Kind.OTHER, "errors.9999"),
])
def test_error_codes_are_sorted_into_kinds(code: int, kind: errors.Kind, key: str) -> None:
    assert errors.classify(code) is kind and errors.stats_key(code) == key


def test_error_log_levels() -> None:
    assert errors.log_level(2104, ours=False) == logging.DEBUG
    assert errors.log_level(354, ours=True) == logging.DEBUG  # the caller gets the exception
    assert errors.log_level(354, ours=False) == logging.WARNING
    assert errors.log_level(100, ours=False) == logging.ERROR
    text = errors.describe(200, "  No security\n definition ")
    assert text == "error 200: No security definition"


def test_a_fresh_broker_is_disconnected_and_reports_stats() -> None:
    async def main() -> Any:
        broker = IBKRBroker(settings(1))
        stats = broker.stats()
        assert broker.ib.client.MaxRequests == 0  # one governor: ib_insync's throttle is off
        with pytest.raises(Exception, match="not connected"):
            await broker.quote("SPY")
        assert await broker.market_open("SPY", TUESDAY_MORNING.timestamp()) is None
        await broker.disconnect()
        return stats

    stats = run_client(main)
    assert stats["connected"] == 0 and stats["live_tickers"] == 0
    assert all(k.endswith("_total") or k in {"connected", "live_tickers", "pending_requests",
               "lines_in_use", "background_tasks", "circuit_state", "bars_cached",
                   "recv_buffer_bytes", "wrapper_results"}
               for k in stats)


# --- SimProcess -----------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_sim_process_serves_a_broker_and_stops_cleanly(tmp_path: Path) -> None:
    scenario = REPO_ROOT / "configs" / "scenarios" / "default.yaml"
    stats_path = tmp_path / "sim-stats.json"
    with SimProcess(scenario, stats_path) as sim:
        assert sim.running() and sim.port > 0
        clock = sim.clock()  # the child's session clock, followed from its clock file

        async def main() -> Any:
            broker = IBKRBroker(settings(sim.port), now=clock.now)
            await broker.connect()
            try:
                gateway_now = (await broker.ib.reqCurrentTimeAsync()).timestamp()
                return gateway_now, clock.now(), await broker.quote("SPY")
            finally:
                await broker.disconnect()

        gateway_now, bot_now, quote = run_client(main)
        assert math.isfinite(quote.last)
    # the default scenario is pinned: both sides are in its session, not at the wall's "now"
    assert isinstance(clock, PinnedClock) and clock.start_ts == TUESDAY_MORNING.timestamp()
    assert 0 <= bot_now - TUESDAY_MORNING.timestamp() < 60
    assert abs(gateway_now - bot_now) < 2  # reqCurrentTime has whole seconds
    assert abs(quote.ts - bot_now) < 5
    assert sim.proc is not None and sim.proc.returncode == 0  # SIGTERM: stats, exit 0
    stats = sim.stats()
    assert stats["connections_total"] >= 1 and stats["snapshots"] >= 1
    assert stats["violations_total"] == 0


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_sim_process_async_start_and_a_bad_scenario(tmp_path: Path) -> None:
    async def main() -> Any:
        async with SimProcess(REPO_ROOT / "configs" / "scenarios" / "default.yaml",
                              tmp_path / "stats.json") as sim:
            port = sim.port
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
        return port, sim.running()

    port, running = asyncio.run(main())
    assert port > 0 and not running
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nno_such_key: 1\n")
    started = time.monotonic()
    with pytest.raises(SimStartError, match="exited with code 2"):
        SimProcess(bad, tmp_path / "bad-stats.json").start()
    assert time.monotonic() - started < 15
