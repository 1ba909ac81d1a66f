"""A full round through one IBKRBroker: 33 symbols' quotes and bars at once, then 60 option
snapshots, against a gateway that enforces 50 msg/s and (here) 22 market-data lines. The
governor must keep both with zero violations, and nothing may be left behind."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import pytest

from common.messages import Bars, Quote, Right
from supervisor.broker.ibkr.broker import IBKRBroker
from tests.conftest_sim import make_scenario
from tests.sessions import TUESDAY_MORNING
from tests.test_ibkr_broker import assert_nothing_left, spy_options, with_broker
from tools.gateway_sim import ThreadedSim

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
SYMBOLS = [f"SYM{i:02d}" for i in range(1, 31)] + ["SPY", "QQQ", "AAPL"]


@pytest.fixture(scope="module")
def round_sim() -> Iterator[ThreadedSim]:
    scenario = make_scenario(
        TUESDAY_MORNING,
        rules={"max_market_data_lines": 22},
        latency={"snapshot_end_s": 0.5, "historical_s": 0.05},
    )
    with ThreadedSim(scenario) as server:
        yield server


def test_thirty_symbol_round_has_no_pacing_or_line_violations(round_sim: ThreadedSim) -> None:
    async def body(broker: IBKRBroker) -> Any:
        # When: quotes and 2 hours of bars for every symbol, all at once
        results = await asyncio.gather(
            *(broker.quote(s) for s in SYMBOLS), *(broker.bars(s, 120) for s in SYMBOLS)
        )
        await assert_nothing_left(broker)
        round_stats = broker.stats()
        # and then 60 option snapshots at once (more than the 20 lines allowed)
        chain = await broker.chain("SPY")
        contracts = [
            c
            for expiry in chain.expirations[:2]
            for right in Right
            for c in spy_options(chain.strikes, expiry, 680.0, 15, right)
        ]
        options = await broker.option_quotes(contracts)
        await assert_nothing_left(broker)
        return results, round_stats, options, broker.stats()

    # the answers' timeouts are not what this round is about (the shared 1 s ones are for the
    # fault tests): generous, so that a loaded machine's slow answer is not a failed symbol
    results, round_stats, options, stats = with_broker(
        round_sim,
        body,
        timeout_s=60,
        ibkr={"historical_timeout_s": 30, "snapshot_timeout_s": 30, "request_timeout_s": 30},
        pacing={"max_market_data_lines": 20},
    )
    quotes = [r for r in results if isinstance(r, Quote)]
    bars = [r for r in results if isinstance(r, Bars)]
    assert len(quotes) == len(bars) == len(SYMBOLS)
    assert all(math.isfinite(q.last) for q in quotes if q.symbol != "SYM06")  # quirk: NaN
    assert all(len(b) == 120 for b in bars)
    assert len(options) == 60 and sum(math.isfinite(q.delta) for q in options) >= 55
    sim = round_sim.stats()
    # Then: the gateway saw no violation (100 pacing, 101 lines, 322 duplicate id ...)
    assert sim["violations"] == {} and sim["violations_total"] == 0
    assert sim["peak_messages_per_s"] <= 49  # the default: 49 in any second
    assert sim["market_data_lines_peak"] <= 20
    # the governor did the work: it made requests wait, and lines too
    assert round_stats["pacing_waits_total"] > 0
    assert stats["line_waits_total"] > 0
    assert stats["snapshots_total"] == len(SYMBOLS) + 60
    assert stats["live_tickers"] == 0 and stats["pending_requests"] == 0
    assert stats["messages_sent_total"] >= stats["paced_messages_total"] > 200
