"""The simulated gateway against the real ib_insync client: connect, data, orders, quirks.

Rules (100/101/162/322/326 ...) are in test_gateway_sim_rules.py, faults in
test_gateway_sim_faults.py, pure units (scenario, price paths, codec) in
test_gateway_sim_units.py.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest_sim import (
    ErrorLog,
    connect,
    day_after,
    make_scenario,
    next_client_id,
    run_client,
)
from tests.ibclient import IB, LimitOrder, Option, Stock
from tests.sessions import TUESDAY_MORNING
from tools.gateway_sim import ThreadedSim

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def sim() -> Iterator[ThreadedSim]:
    with ThreadedSim(make_scenario(TUESDAY_MORNING)) as server:
        yield server


async def _nearest_expiry(ib: IB) -> str:
    chains = await ib.reqSecDefOptParamsAsync("SPY", "", "STK", 756733)
    return chains[0].expirations[0]


def test_connect_gives_account_next_id_and_farm_notices(sim: ThreadedSim) -> None:
    async def scenario() -> tuple[list[str], int, list[int], float]:
        ib = IB()
        errors = ErrorLog(ib)
        started = time.monotonic()
        await ib.connectAsync("127.0.0.1", sim.port, clientId=11, timeout=5)
        took = time.monotonic() - started
        try:
            return ib.managedAccounts(), ib.client.getReqId(), errors.codes(), took
        finally:
            ib.disconnect()

    accounts, next_id, codes, took = run_client(scenario)
    assert accounts == ["DU1234567"]
    assert next_id >= 1
    assert {2104, 2106, 2158} <= set(codes)
    # every connect-time request got its End: a missing one costs the whole 5 s timeout
    assert took < 5.0


def test_current_time_is_the_pinned_session_not_the_wall_clock(sim: ThreadedSim) -> None:
    async def scenario() -> float:
        ib = await connect(sim.port)
        try:
            return (await ib.reqCurrentTimeAsync()).timestamp()
        finally:
            ib.disconnect()

    answered = run_client(scenario)
    assert abs(answered - sim.now()) < 2.0
    # the session started at the pinned instant; the test has run for seconds, not days
    assert 0 <= answered - TUESDAY_MORNING.timestamp() < 600


def test_stock_contract_details_with_hours_and_a_closed_holiday(sim: ThreadedSim) -> None:
    async def scenario() -> Any:
        ib = await connect(sim.port)
        try:
            return await ib.reqContractDetailsAsync(Stock("SPY", "SMART", "USD"))
        finally:
            ib.disconnect()

    details = run_client(scenario)
    assert len(details) == 1
    cd = details[0]
    assert cd.contract.conId == 756733 and cd.contract.primaryExchange == "ARCA"
    assert cd.minTick == 0.01 and cd.timeZoneId == "US/Eastern"
    assert f"{day_after(TUESDAY_MORNING)}:CLOSED" in cd.tradingHours
    now = sim.now()
    sessions = cd.tradingSessions()
    assert any(s.start.timestamp() <= now < s.end.timestamp() for s in sessions)
    assert cd.liquidSessions()


def test_option_contract_details_and_missing_strike(sim: ThreadedSim) -> None:
    async def scenario() -> Any:
        ib = await connect(sim.port)
        errors = ErrorLog(ib)
        try:
            chains = await ib.reqSecDefOptParamsAsync("SPY", "", "STK", 756733)
            first, late = chains[0].expirations[0], chains[0].expirations[-1]
            listed = await ib.reqContractDetailsAsync(Option("SPY", first, 681, "C", "SMART"))
            missing = await ib.reqContractDetailsAsync(Option("SPY", late, 681, "C", "SMART"))
            return listed, missing, errors.codes()
        finally:
            ib.disconnect()

    listed, missing, codes = run_client(scenario)
    assert len(listed) == 1
    c = listed[0].contract
    assert c.secType == "OPT" and c.multiplier == "100" and c.strike == 681.0 and c.right == "C"
    assert c.conId > 0 and listed[0].underConId == 756733
    assert listed[0].timeZoneId == "US/Eastern" and "CLOSED" in listed[0].tradingHours
    assert missing == [] and 200 in codes  # late expiries lose 1-wide strikes


def test_unknown_symbol_gets_error_200(sim: ThreadedSim) -> None:
    async def scenario() -> Any:
        ib = await connect(sim.port)
        errors = ErrorLog(ib)
        try:
            details = await ib.reqContractDetailsAsync(Stock("ZZZZ", "SMART", "USD"))
            return details, errors.codes()
        finally:
            ib.disconnect()

    details, codes = run_client(scenario)
    assert details == [] and 200 in codes


def test_chain_has_about_400_spy_strikes(sim: ThreadedSim) -> None:
    async def scenario() -> Any:
        ib = await connect(sim.port)
        try:
            return await ib.reqSecDefOptParamsAsync("SPY", "", "STK", 756733)
        finally:
            ib.disconnect()

    chains = run_client(scenario)
    assert [c.exchange for c in chains] == ["SMART", "CBOE", "AMEX"]
    strikes, expiries = chains[0].strikes, chains[0].expirations
    assert 350 <= len(strikes) <= 450
    assert {679.0, 680.0, 681.0} <= set(strikes)  # 1-wide near the money
    far = [k for k in strikes if k > 900]
    assert far and all(k % 5 == 0 for k in far)  # 5-wide far out
    assert len(expiries) >= 8 and expiries == sorted(expiries)
    assert chains[0].multiplier == "100" and chains[0].tradingClass == "SPY"


def test_one_minute_bars_and_newest_bars_only(sim: ThreadedSim) -> None:
    async def scenario() -> Any:
        ib = await connect(sim.port)
        spy = Stock("SPY", "SMART", "USD")
        try:
            full = await ib.reqHistoricalDataAsync(
                spy, "", "7200 S", "1 min", "TRADES", False, formatDate=2
            )
            newest = await ib.reqHistoricalDataAsync(
                spy, "", "180 S", "1 min", "TRADES", False, formatDate=2
            )
            hourly = await ib.reqHistoricalDataAsync(
                spy, "", "2 D", "1 hour", "TRADES", False, formatDate=1
            )
            return list(full), list(newest), list(hourly)
        finally:
            ib.disconnect()

    full, newest, hourly = run_client(scenario)
    assert len(full) == 120
    stamps = [b.date.timestamp() for b in full]
    assert all(b - a == 60 for a, b in zip(stamps, stamps[1:], strict=False))
    assert abs(stamps[-1] - sim.now()) < 120  # the last bar is the current minute
    assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in full)
    assert all(b.volume > 0 for b in full[:-1])
    assert len(newest) == 3 and newest[-1].date >= full[-1].date
    by_date = {b.date: b for b in full}
    overlap = [b for b in newest[:-1] if b.date in by_date]
    assert overlap and all(by_date[b.date].open == b.open for b in overlap)  # deterministic
    # two trading days of hourly bars, extended hours (04:00-20:00): all of Monday, and Tuesday
    # to the forming 10:00 bar
    assert len(hourly) == 16 + 7 and hourly[0].date.tzinfo is not None


def test_stock_snapshot_has_prices_sizes_volume(sim: ThreadedSim) -> None:
    async def scenario() -> Any:
        ib = await connect(sim.port)
        try:
            return (await ib.reqTickersAsync(Stock("SPY", "SMART", "USD")))[0]
        finally:
            ib.disconnect()

    t = run_client(scenario)
    assert 0 < t.bid < t.ask and t.ask - t.bid < 0.5
    assert t.bidSize > 0 and t.askSize > 0
    assert 500 < t.last < 900 and t.close > 0 and t.volume > 0
    assert t.marketDataType == 1 and t.minTick == 0.01


def test_option_snapshots_have_model_greeks_and_quirks() -> None:
    # Given the 20 listed strikes nearest the money on the same-day expiry (20 consecutive
    # 1-wide strikes always hold one of the every-17th strikes that quote -1), priced at one
    # market instant (a minute-step session: every snapshot of its first minute sees it)
    minute_steps = make_scenario(TUESDAY_MORNING, clock={"market_step_s": 60})

    async def scenario(port: int) -> Any:
        ib = await connect(port)
        try:
            chains = await ib.reqSecDefOptParamsAsync("SPY", "", "STK", 756733)
            spot = (await ib.reqTickersAsync(Stock("SPY", "SMART", "USD")))[0].last
            near = sorted(sorted(chains[0].strikes, key=lambda k: abs(k - spot))[:20])
            expiry = chains[0].expirations[0]
            opts = [Option("SPY", expiry, k, r, "SMART") for k in near for r in ("C", "P")]
            await ib.qualifyContractsAsync(*opts)
            return spot, await asyncio.wait_for(ib.reqTickersAsync(*opts), 10)
        finally:
            ib.disconnect()

    with ThreadedSim(minute_steps) as sim:
        spot, tickers = run_client(lambda: scenario(sim.port))
    assert len(tickers) == 40
    quoted = [t for t in tickers if t.bid > 0]
    no_quote = [t for t in tickers if t.bid == -1]
    assert quoted and no_quote
    assert all(t.askSize == 0 and t.bidSize == 0 for t in no_quote)
    assert all(math.isnan(t.midpoint()) for t in no_quote)
    assert all(t.ask >= t.bid and t.close >= 0 and t.last > 0 for t in quoted)
    # Then every contract carries model greeks, the quirk strikes too (only the quote is -1):
    # a call's delta in [0, 1], a put's in [-1, 0] (deep in the money on a 0-DTE it *is* -1),
    # both falling with the strike, and call minus put delta is 1 (no dividends in the model)
    delta: dict[tuple[str, float], float] = {}
    for t in tickers:
        g = t.modelGreeks
        assert g is not None and abs(g.undPrice - spot) / spot < 0.01 and g.impliedVol > 0
        assert (0 <= g.delta <= 1) if t.contract.right == "C" else (-1 <= g.delta <= 0)
        delta[(t.contract.right, t.contract.strike)] = g.delta
    strikes = sorted({k for _right, k in delta})
    for right in ("C", "P"):
        by_strike = [delta[(right, k)] for k in strikes]
        assert by_strike == sorted(by_strike, reverse=True)
    assert all(delta[("C", k)] - delta[("P", k)] == pytest.approx(1.0, abs=2e-6) for k in strikes)


def test_stock_quote_quirks_are_visible(sim: ThreadedSim) -> None:
    async def scenario() -> Any:
        ib = await connect(sim.port)
        try:
            stocks = [Stock(s, "SMART", "USD") for s in ("SYM05", "SYM06", "SYM08", "SYM09")]
            return await ib.reqTickersAsync(*stocks)
        finally:
            ib.disconnect()

    minus_one, missing, crossed, zero = run_client(scenario)
    assert minus_one.bid == -1 and minus_one.ask == -1 and minus_one.last > 0
    assert math.isnan(missing.bid) and math.isnan(missing.ask) and math.isnan(missing.last)
    assert crossed.bid > crossed.ask
    assert zero.bid == 0 and zero.ask == 0 and zero.last == 0


def test_what_if_order_returns_margin_and_commission(sim: ThreadedSim) -> None:
    async def scenario() -> Any:
        ib = await connect(sim.port)
        try:
            expiry = await _nearest_expiry(ib)
            opt = Option("SPY", expiry, 700, "C", "SMART")
            await ib.qualifyContractsAsync(opt)
            order = LimitOrder("BUY", 2, 1.25, orderRef="whatif-test", account="DU1234567")
            state = await asyncio.wait_for(ib.whatIfOrderAsync(opt, order), 5)
            return opt, state
        finally:
            ib.disconnect()

    opt, state = run_client(scenario)
    assert float(state.initMarginChange) == pytest.approx(1.25 * 2 * 100)
    assert float(state.maintMarginChange) > 0 and state.equityWithLoanChange
    assert state.commission == pytest.approx(1.30) and state.commissionCurrency == "USD"
    recorded = [o for o in sim.orders() if o["orderRef"] == "whatif-test"]
    assert len(recorded) == 1
    r = recorded[0]
    assert r["whatIf"] and r["action"] == "BUY" and r["totalQuantity"] == 2
    assert r["orderType"] == "LMT" and r["lmtPrice"] == 1.25 and r["account"] == "DU1234567"
    assert r["con_id"] == opt.conId and r["strike"] == 700


def test_paper_limit_order_fills_with_execution(sim: ThreadedSim) -> None:
    async def scenario() -> Any:
        ib = await connect(sim.port)
        try:
            spy = Stock("SPY", "SMART", "USD")
            await ib.qualifyContractsAsync(spy)
            ticker = (await ib.reqTickersAsync(spy))[0]
            trade = ib.placeOrder(
                spy, LimitOrder("BUY", 10, round(ticker.ask + 1, 2), orderRef="fill-test")
            )
            await asyncio.wait_for(trade.filledEvent, 5)
            await asyncio.sleep(0.1)  # the commission report follows the fill
            return trade, ib.positions()
        finally:
            ib.disconnect()

    trade, positions = run_client(scenario)
    assert trade.orderStatus.status == "Filled" and trade.orderStatus.filled == 10
    assert [e.status for e in trade.log][:2] == ["PendingSubmit", "Submitted"]
    fill = trade.fills[0]
    assert fill.execution.shares == 10 and fill.execution.side == "BOT"
    assert fill.execution.orderRef == "fill-test" and fill.execution.acctNumber == "DU1234567"
    assert fill.commissionReport.commission == pytest.approx(1.0)
    assert any(p.contract.symbol == "SPY" and p.position >= 10 for p in positions)


def test_resting_order_cancels(sim: ThreadedSim) -> None:
    async def scenario() -> Any:
        ib = await connect(sim.port)
        try:
            spy = Stock("SPY", "SMART", "USD")
            await ib.qualifyContractsAsync(spy)
            trade = ib.placeOrder(spy, LimitOrder("BUY", 1, 10.0))
            await asyncio.sleep(0.2)
            status_before = trade.orderStatus.status
            ib.cancelOrder(trade.order)
            await asyncio.wait_for(trade.cancelledEvent, 5)
            return status_before, trade.orderStatus.status
        finally:
            ib.disconnect()

    assert run_client(scenario) == ("Submitted", "Cancelled")


def test_modified_order_is_acknowledged_and_fills(sim: ThreadedSim) -> None:
    async def scenario() -> Any:
        ib = await connect(sim.port)
        try:
            spy = Stock("SPY", "SMART", "USD")
            await ib.qualifyContractsAsync(spy)
            order = LimitOrder("BUY", 1, 10.0, orderRef="modify-test")
            trade = ib.placeOrder(spy, order)
            await asyncio.sleep(0.2)
            order.lmtPrice = round((await ib.reqTickersAsync(spy))[0].ask + 1, 2)
            ib.placeOrder(spy, order)
            await asyncio.wait_for(trade.filledEvent, 5)
            return [e.message for e in trade.log], trade.orderStatus.avgFillPrice, order.lmtPrice
        finally:
            ib.disconnect()

    messages, price, limit = run_client(scenario)
    assert "Modify" in messages and 0 < price <= limit
    assert [o["lmtPrice"] for o in sim.orders() if o["orderRef"] == "modify-test"] == [10.0, limit]


def test_reconnect_sees_open_orders_completed_orders_and_executions(sim: ThreadedSim) -> None:
    client_id = next_client_id()

    async def first() -> Any:
        ib = await connect(sim.port, client_id)
        spy = Stock("SPY", "SMART", "USD")
        await ib.qualifyContractsAsync(spy)
        resting = ib.placeOrder(spy, LimitOrder("BUY", 1, 11.0, orderRef="resting"))
        ask = (await ib.reqTickersAsync(spy))[0].ask
        filled = ib.placeOrder(spy, LimitOrder("BUY", 2, round(ask + 1, 2), orderRef="filled"))
        await asyncio.wait_for(filled.filledEvent, 5)
        await asyncio.sleep(0.1)
        ib.disconnect()
        return resting.order.orderId, filled.fills[0].execution.execId

    async def second() -> Any:
        ib = await connect(sim.port, client_id)
        try:
            return (
                [t.order.orderId for t in ib.openTrades()],
                [(t.order.orderRef, t.orderStatus.status) for t in ib.trades()],
                [f.execution.execId for f in ib.fills()],
            )
        finally:
            ib.disconnect()

    resting_id, exec_id = run_client(first)
    open_ids, trades, exec_ids = run_client(second)
    assert resting_id in open_ids
    assert ("filled", "Filled") in trades
    assert exec_id in exec_ids


def test_bracket_children_are_recorded_and_work_after_the_parent_fills(sim: ThreadedSim) -> None:
    async def scenario() -> Any:
        ib = await connect(sim.port)
        try:
            spy = Stock("SPY", "SMART", "USD")
            await ib.qualifyContractsAsync(spy)
            ask = (await ib.reqTickersAsync(spy))[0].ask
            bracket = ib.bracketOrder(
                "BUY",
                5,
                round(ask + 1, 2),
                round(ask * 1.5, 2),
                round(ask * 0.5, 2),
                orderRef="bracket-test",
            )
            bracket.takeProfit.ocaGroup = bracket.stopLoss.ocaGroup = "oca-bracket-test"
            trades = [ib.placeOrder(spy, o) for o in bracket]
            await asyncio.wait_for(trades[0].filledEvent, 5)
            await asyncio.sleep(0.2)
            working = [t.orderStatus.status for t in trades]
            for child, trade in zip(bracket[1:], trades[1:], strict=True):
                ib.cancelOrder(child)
                await asyncio.wait_for(trade.cancelledEvent, 5)
            return bracket, working, [t.orderStatus.status for t in trades]
        finally:
            ib.disconnect()

    bracket, working, final = run_client(scenario)
    assert working == ["Filled", "Submitted", "Submitted"]
    assert final == ["Filled", "Cancelled", "Cancelled"]
    recorded = {o["order_id"]: o for o in sim.orders() if o["orderRef"] == "bracket-test"}
    parent, tp, sl = (recorded[o.orderId] for o in bracket)
    assert [parent["transmit"], tp["transmit"], sl["transmit"]] == [False, False, True]
    assert tp["parentId"] == sl["parentId"] == parent["order_id"] and parent["parentId"] == 0
    assert tp["ocaGroup"] == sl["ocaGroup"] == "oca-bracket-test"
    assert (tp["orderType"], sl["orderType"]) == ("LMT", "STP")
    assert tp["action"] == sl["action"] == "SELL" and sl["auxPrice"] == bracket.stopLoss.auxPrice


def test_bracket_take_profit_fill_cancels_the_stop(sim: ThreadedSim) -> None:
    async def scenario() -> Any:
        ib = await connect(sim.port)
        try:
            spy = Stock("SPY", "SMART", "USD")
            await ib.qualifyContractsAsync(spy)
            ask = (await ib.reqTickersAsync(spy))[0].ask
            # take-profit below the market: it fills as soon as it works
            bracket = ib.bracketOrder(
                "BUY", 1, round(ask + 1, 2), round(ask * 0.9, 2), round(ask * 0.5, 2)
            )
            trades = [ib.placeOrder(spy, o) for o in bracket]
            await asyncio.wait_for(trades[2].cancelledEvent, 5)
            return [t.orderStatus.status for t in trades], trades[1].fills
        finally:
            ib.disconnect()

    statuses, tp_fills = run_client(scenario)
    assert statuses == ["Filled", "Filled", "Cancelled"]
    assert tp_fills and tp_fills[0].execution.side == "SLD"


def test_account_values_summary_and_pnl() -> None:
    # a fresh account: the module's sim has traded, and its values now follow the fills
    # (tests/test_gateway_sim_account.py); untouched, they are the scenario's
    async def scenario(sim: ThreadedSim) -> Any:
        ib = await connect(sim.port)
        try:
            summary = await ib.accountSummaryAsync()
            pnl = ib.reqPnL("DU1234567")
            await asyncio.sleep(0.2)
            return ib.accountValues(), summary, pnl
        finally:
            ib.disconnect()

    with ThreadedSim(make_scenario(TUESDAY_MORNING)) as fresh:
        values, summary, pnl = run_client(lambda: scenario(fresh))
    by_tag = {v.tag: v.value for v in values if v.currency in ("USD", "")}
    assert by_tag["NetLiquidation"] == "100000.00" and by_tag["AvailableFunds"] == "95000.00"
    assert {v.tag for v in summary} >= {"NetLiquidation", "AvailableFunds", "BuyingPower"}
    assert pnl.dailyPnL == 0.0 and pnl.account == "DU1234567"


def test_streaming_market_data_until_cancelled(sim: ThreadedSim) -> None:
    async def scenario() -> Any:
        ib = await connect(sim.port)
        try:
            spy = Stock("SPY", "SMART", "USD")
            await ib.qualifyContractsAsync(spy)
            ticker = ib.reqMktData(spy)
            updates = 0

            def count(_t: object) -> None:
                nonlocal updates
                updates += 1

            ticker.updateEvent += count
            await asyncio.sleep(0.7)
            open_lines = sim.stats()["market_data_lines_open"]
            ib.cancelMktData(spy)
            await asyncio.sleep(0.2)
            return updates, open_lines, sim.stats()["market_data_lines_open"]
        finally:
            ib.disconnect()

    updates, open_during, open_after = run_client(scenario)
    assert updates >= 3  # first ticks + periodic updates every 0.2 s
    assert open_during >= 1 and open_after == 0


def test_thirty_symbol_snapshot_round_has_no_violations(sim: ThreadedSim) -> None:
    async def scenario() -> Any:
        ib = await connect(sim.port)
        try:
            stocks = [Stock(f"SYM{i:02d}", "SMART", "USD") for i in range(1, 31)]
            await ib.qualifyContractsAsync(*stocks)
            return await asyncio.wait_for(ib.reqTickersAsync(*stocks), 20)
        finally:
            ib.disconnect()

    before = sim.stats()["violations_total"]
    tickers = run_client(scenario)
    assert len(tickers) == 30
    assert sum(1 for t in tickers if t.last > 0) >= 25
    stats = sim.stats()
    assert stats["violations_total"] == before == 0
    assert stats["peak_messages_per_s"] <= 50
    assert stats["market_data_lines_open"] == 0
