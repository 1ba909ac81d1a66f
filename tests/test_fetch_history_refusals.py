"""fetch-history and IBKR's error 162 answers other than pacing (issue 24 review).

162 is the historical-data service's code for several answers; only a pacing violation is
worth waiting out. A permissions refusal fails the whole symbol at once, anything else the
day at once (the old code waited 60+120+240+480 s per day before failing).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from common.calendar import nyse
from supervisor.broker.ibkr import errors
from supervisor.broker.ibkr.broker import IBKRBroker
from supervisor.broker.ibkr.history import HistoricalPacer, HistoricalRules
from supervisor.commands.fetch_history import fetch, sessions
from tests.conftest_sim import make_scenario, run_client
from tests.sessions import MONDAY_0931
from tests.test_ibkr_broker import settings as broker_settings
from tools.gateway_sim import ThreadedSim

TZ = "America/New_York"
DAYS = sessions(nyse(), date(2026, 11, 26), date(2026, 12, 1))  # 3 sessions
HMDS = "Historical Market Data Service error message:"


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("HMDS query returned no data: SPY@SMART Trades", errors.HMDS_NO_DATA),
        ("Historical data request pacing violation", errors.HMDS_PACING),
        ("No market data permissions for NYSE STK", errors.HMDS_PERMISSION),
        ("API historical data query cancelled: 7", errors.HMDS_OTHER),
        ("Trading TWS session is connected from a different IP address", errors.HMDS_OTHER),
    ],
)
def test_a_162s_text_says_which_answer_it_is(text: str, answer: str) -> None:
    assert errors.hmds_refusal(f"history SPY 20261127-18:00:00: error 162: {HMDS}{text}") == answer


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_no_permission_fails_the_symbol_and_other_refusals_the_day_without_waiting(
    tmp_path: Path,
) -> None:
    # Given a gateway without SPY's market-data permission and cancelling every QQQ query
    faults = [
        {"kind": "historical_refused", "symbol": "SPY", "every_connection": True},
        {
            "kind": "historical_refused",
            "symbol": "QQQ",
            "message": "API historical data query cancelled: 7",
            "every_connection": True,
        },
    ]
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    async def main() -> Any:
        broker = IBKRBroker(broker_settings(sim.port), now=sim.now)
        history = broker.history
        history.pacer = HistoricalPacer(
            HistoricalRules(max_requests=1000, identical_s=0, same_contract=100, margin_s=0)
        )
        history._sleep = sleep  # a refusal's wait, recorded instead of slept
        await broker.connect()
        try:
            return await fetch(
                history, ["SPY", "QQQ"], DAYS, tmp_path, now=sim.now(), tz=TZ, echo=print
            )
        finally:
            await broker.disconnect()

    with ThreadedSim(make_scenario(MONDAY_0931, faults=faults)) as sim:
        result = run_client(main, 50)
        asked = int(sim.stats()["messages_by_type"].get("20", 0))
    # Then nothing was waited out: SPY was asked once (its other days skipped, one failure
    # naming the subscription), QQQ once per day (each day failed)
    assert waits == [] and result.refusals == 0
    assert asked == 1 + 3
    spy = [f for f in result.failed if f.startswith("SPY")]
    assert len(spy) == 1 and spy[0].startswith("SPY: 3 days from 2026-11-27 not fetched")
    assert "No market data permissions" in spy[0] and "subscribe" in spy[0]
    qqq = [f for f in result.failed if f.startswith("QQQ")]
    assert [f.split(":")[0] for f in qqq] == [f"QQQ {s.day}" for s in DAYS]
    assert all("query cancelled" in f for f in qqq)
    assert result.days == {"SPY": 0, "QQQ": 0} and not (tmp_path / "SPY.csv").exists()
