"""Scenario faults seen through the real ib_insync client: disconnects, 1100/1101/1102,
farm notices, no market data (354 / 10197), no security definition (200), delayed data
(10167), a snapshot that never ends and historical data that never answers.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest_sim import ErrorLog, connect, make_scenario, run_client
from tests.ibclient import Stock
from tests.sessions import TUESDAY_MORNING
from tools.gateway_sim import ThreadedSim

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

DISCONNECT_CLIENT, OUTAGE_CLIENT, LOST_CLIENT, COUNT_CLIENT = 901, 902, 903, 904
FAULTS = [
    {"kind": "no_market_data", "symbol": "SYM10", "code": 354, "every_connection": True},
    {"kind": "no_market_data", "symbol": "SYM11", "code": 10197, "every_connection": True},
    {"kind": "no_security_definition", "symbol": "SYM12", "every_connection": True},
    {"kind": "snapshot_never_ends", "symbol": "SYM13", "every_connection": True},
    {"kind": "historical_never_answers", "symbol": "SYM14", "every_connection": True},
    {"kind": "disconnect", "at_s": 0.3, "client_id": DISCONNECT_CLIENT},
    {"kind": "error", "code": 2103, "at_s": 0.1, "client_id": OUTAGE_CLIENT},
    {"kind": "error", "code": 1100, "at_s": 0.2, "client_id": OUTAGE_CLIENT},
    {"kind": "error", "code": 1102, "at_s": 0.8, "client_id": OUTAGE_CLIENT},
    {"kind": "error", "code": 1100, "at_s": 0.5, "client_id": LOST_CLIENT},
    {"kind": "error", "code": 1101, "at_s": 0.6, "client_id": LOST_CLIENT},
    {"kind": "disconnect", "after_mktdata_requests": 3, "client_id": COUNT_CLIENT},
]


@pytest.fixture(scope="module")
def sim() -> Iterator[ThreadedSim]:
    scenario = make_scenario(
        TUESDAY_MORNING,
        faults=FAULTS,
        quirks=[],
        symbols=[
            {"symbol": "SPY", "price": 680, "con_id": 756733},
            {"symbol": "DLYD", "price": 50, "live_data": False},
        ],
    )
    with ThreadedSim(scenario) as server:
        yield server


def test_disconnect_fault_drops_the_client(sim: ThreadedSim) -> None:
    async def scenario() -> tuple[float, bool]:
        ib = await connect(sim.port, DISCONNECT_CLIENT)
        started = time.monotonic()
        gone = asyncio.Event()
        ib.disconnectedEvent += gone.set
        await asyncio.wait_for(gone.wait(), 5)
        return time.monotonic() - started, ib.isConnected()

    after_s, connected = run_client(scenario)
    assert after_s > 0.1 and not connected  # dropped by the timed fault, not at connect


def test_a_reconnect_is_not_hit_by_a_one_shot_fault(sim: ThreadedSim) -> None:
    async def scenario() -> bool:
        ib = await connect(sim.port, DISCONNECT_CLIENT)  # the fault fired for the first session
        await asyncio.sleep(0.6)
        alive = ib.isConnected()
        ib.disconnect()
        return alive

    deadline = time.monotonic() + 5
    while DISCONNECT_CLIENT in sim.stats()["clients_connected"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run_client(scenario)


def test_disconnect_after_n_market_data_requests(sim: ThreadedSim) -> None:
    async def scenario() -> bool:
        ib = await connect(sim.port, COUNT_CLIENT)
        gone = asyncio.Event()
        ib.disconnectedEvent += gone.set
        for i in range(3):
            ib.reqMktData(Stock(f"SYM{i + 1:02d}", "SMART", "USD"), snapshot=True)
        await asyncio.wait_for(gone.wait(), 5)
        return ib.isConnected()

    assert run_client(scenario) is False


def test_connectivity_lost_holds_data_until_restored(sim: ThreadedSim) -> None:
    async def scenario() -> tuple[list[int], float, float]:
        ib = await connect(sim.port, OUTAGE_CLIENT)
        errors = ErrorLog(ib)
        await errors.wait_code(1100)
        asked = time.monotonic()
        ticker = (await asyncio.wait_for(ib.reqTickersAsync(Stock("SPY", "SMART", "USD")), 5))[0]
        waited = time.monotonic() - asked
        await asyncio.sleep(0.2)  # ib_insync asks for the account summary after 1102
        ib.disconnect()
        return errors.codes(), waited, ticker.last

    codes, waited, last = run_client(scenario)
    assert codes.index(2103) < codes.index(1100) < codes.index(1102)
    assert waited > 0.3 and last > 0  # answered only after 1102
    assert sim.stats()["messages_by_type"].get("62", 0) >= 1


def test_data_lost_drops_streaming_lines(sim: ThreadedSim) -> None:
    async def scenario() -> tuple[int, int]:
        ib = await connect(sim.port, LOST_CLIENT)
        errors = ErrorLog(ib)
        ib.reqMktData(Stock("SPY", "SMART", "USD"))
        await asyncio.sleep(0.2)
        during = sim.stats()["market_data_lines_open"]
        await errors.wait_code(1101)
        await asyncio.sleep(0.1)
        after = sim.stats()["market_data_lines_open"]
        ib.disconnect()
        return during, after

    during, after = run_client(scenario)
    assert during >= 1 and after == during - 1  # the client must resubscribe after 1101


def test_no_market_data_codes_end_the_snapshot(sim: ThreadedSim) -> None:
    async def scenario() -> Any:
        ib = await connect(sim.port)
        errors = ErrorLog(ib)
        stocks = [Stock("SYM10", "SMART", "USD"), Stock("SYM11", "SMART", "USD")]
        tickers = await asyncio.wait_for(ib.reqTickersAsync(*stocks), 5)
        ib.disconnect()
        return tickers, errors.codes()

    (t354, t10197), codes = run_client(scenario)
    assert 354 in codes and 10197 in codes
    assert math.isnan(t354.bid) and math.isnan(t10197.last)


def test_no_security_definition_fault_gives_200(sim: ThreadedSim) -> None:
    async def scenario() -> Any:
        ib = await connect(sim.port)
        errors = ErrorLog(ib)
        details = await ib.reqContractDetailsAsync(Stock("SYM12", "SMART", "USD"))
        tickers = await asyncio.wait_for(ib.reqTickersAsync(Stock("SYM12", "SMART", "USD")), 5)
        ib.disconnect()
        return details, tickers, errors.codes()

    details, tickers, codes = run_client(scenario)
    assert details == [] and codes.count(200) == 2 and math.isnan(tickers[0].bid)


def test_snapshot_that_never_ends_holds_its_line_until_cancelled(sim: ThreadedSim) -> None:
    async def scenario() -> tuple[float, int, int]:
        ib = await connect(sim.port)
        stuck = Stock("SYM13", "SMART", "USD")
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ib.reqTickersAsync(stuck), 0.5)  # the bot must bound waits
        waited = time.monotonic() - started
        held = sim.stats()["market_data_lines_open"]
        ticker = next(t for t in ib.wrapper.ticker2ReqId["snapshot"] if t.contract is stuck)
        ib.client.cancelMktData(ib.wrapper.ticker2ReqId["snapshot"][ticker])
        await asyncio.sleep(0.2)
        released = sim.stats()["market_data_lines_open"]
        ib.disconnect()
        return waited, held, released

    waited, held, released = run_client(scenario)
    assert waited >= 0.5 and held >= 1 and released == held - 1


def test_historical_data_that_never_answers(sim: ThreadedSim) -> None:
    async def scenario() -> int:
        ib = await connect(sim.port)
        bars = await ib.reqHistoricalDataAsync(
            Stock("SYM14", "SMART", "USD"), "", "600 S", "1 min", "TRADES", False, timeout=0.5
        )
        await asyncio.sleep(0.1)
        ib.disconnect()
        return len(bars)

    assert run_client(scenario) == 0
    assert sim.stats()["messages_by_type"].get("25", 0) >= 1  # ib_insync cancelled it


def test_delayed_data_without_a_live_subscription(sim: ThreadedSim) -> None:
    async def scenario() -> Any:
        ib = await connect(sim.port)
        errors = ErrorLog(ib)
        stock = Stock("DLYD", "SMART", "USD")
        live = (await asyncio.wait_for(ib.reqTickersAsync(stock), 5))[0]
        live_codes = errors.codes()
        ib.reqMarketDataType(3)
        delayed = (await asyncio.wait_for(ib.reqTickersAsync(Stock("DLYD", "SMART", "USD")), 5))[0]
        ib.disconnect()
        return live, live_codes, delayed, errors.codes()

    live, live_codes, delayed, codes = run_client(scenario)
    assert 354 in live_codes and math.isnan(live.bid)
    assert 10167 in codes and delayed.marketDataType == 3 and delayed.bid > 0
