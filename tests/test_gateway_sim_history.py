"""The simulator's historical-data limits, as IBKR documents them: BID_ASK counts twice, the
two-second rule is per contract, exchange and tick type, and at most 50 requests are open."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest_sim import ErrorLog, connect, make_scenario, run_client
from tests.ibclient import Stock
from tests.sessions import TUESDAY_MORNING
from tools.gateway_sim import ThreadedSim
from tools.gateway_sim.rules import HistoricalPacing
from tools.gateway_sim.scenario import RulesSpec


def test_a_bid_ask_request_counts_twice_in_the_ten_minute_window() -> None:
    pacing = HistoricalPacing(RulesSpec(historical_pacing=True, hist_max_requests=3))
    assert pacing.check("a", "SPY", now=0.0, weight=2) == ""  # BID_ASK: 2 of 3
    assert pacing.check("b", "QQQ", now=10.0) == ""  # 3 of 3
    assert pacing.check("c", "IWM", now=20.0) == "more than 3 requests in 600 s"
    # A TRADES-only run would have had room for the third
    plain = HistoricalPacing(RulesSpec(historical_pacing=True, hist_max_requests=3))
    assert [plain.check(k, k, now=t) for k, t in (("a", 0.0), ("b", 10.0), ("c", 20.0))] == [""] * 3


def test_the_two_second_rule_counts_one_contract_exchange_and_tick_type() -> None:
    pacing = HistoricalPacing(RulesSpec(historical_pacing=True))
    smart = (1, "SPY", "STK", "SMART", "TRADES")
    for i in range(5):
        assert pacing.check(f"r{i}", smart, now=i * 0.1) == ""
    assert pacing.check("r5", smart, now=0.6) == "more than 5 requests for one contract in 2 s"
    assert pacing.check("m", (1, "SPY", "STK", "SMART", "MIDPOINT"), now=0.7) == ""
    assert pacing.check("r6", smart, now=2.05) == ""  # the first has left the 2 s window


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_request_beyond_the_open_limit_gets_322() -> None:
    # Given a gateway that answers bars slowly and allows 2 open historical requests
    rules = {"historical_pacing": True, "hist_max_open": 2}
    scenario = make_scenario(TUESDAY_MORNING, rules=rules, latency={"historical_s": 1.0})
    with ThreadedSim(scenario) as sim:

        async def body() -> tuple[list[int], list[int]]:
            ib = await connect(sim.port)
            errors = ErrorLog(ib)
            asks = [
                ib.reqHistoricalDataAsync(
                    Stock(sym, "SMART", "USD"), "", "600 S", "1 min", "TRADES", False
                )
                for sym in ("SPY", "QQQ", "AAPL")
            ]
            # When three are sent at once
            got = await asyncio.gather(*asks)
            codes = errors.codes()
            ib.disconnect()
            return [len(bars) for bars in got], codes

        sizes, codes = run_client(body)
        violations = sim.stats()["violations"]
    # Then the third is refused with 322 and the two open ones are answered
    assert sizes == [10, 10, 0] and codes == [322]
    assert violations == {"322": 1}
