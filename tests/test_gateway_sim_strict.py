"""Where the sim was softer than IBKR, now as hard as IBKR, seen through the bot's IB client.

- every placeOrder the gateway has read is placed, even if its client is gone by then (a
  bracket sent just before a disconnect keeps all three legs), under that client id;
- one connection's messages are handled in order: a cancel sent while its order still waits
  out the order latency finds and cancels it (no 10147);
- a cancelled order's orderStatus Cancelled is followed by error 202 "Order Canceled -
  reason:" on its order id (a warning for ib_insync, a late error for ib_async's done trade:
  neither changes the trade);
- options' tradingHours and liquidHours are both the regular session (early closes too);
- account values carry two decimals ("100000.00");
- SPY / QQQ are stockType ETF, AAPL COMMON.

The official ``ibapi`` client decodes the same: tests/test_gateway_sim_ibapi.py.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from tests.conftest_sim import ErrorLog, connect, make_scenario, next_client_id, run_client
from tests.ibclient import IB, LimitOrder, Option, Stock, Trade
from tests.sessions import EARLY_CLOSE_DAY, TUESDAY_MORNING
from tests.test_gateway_sim_orders import NEXT_WEEK, make_desk, until
from tools.gateway_sim import ThreadedSim, scenario_from_dict
from tools.gateway_sim.feeds import value_text
from tools.gateway_sim.scenario import SymbolSpec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
TWO_DECIMALS = re.compile(r"^-?\d+\.\d\d$")
SPY_CALL = ("SPY", "20261211", 680.0, "C")  # listed from TUESDAY_MORNING and EARLY_CLOSE_DAY


def _book(sim: ThreadedSim) -> dict[int, tuple[int, str, int]]:
    """order id -> (client id, status, permId), read on the sim's loop."""
    return sim.call(
        lambda: {
            o.order_id: (o.client_id, o.status, o.perm_id)
            for o in sim.server.orders.orders.values()
        }
    )


# ---- 1. what the gateway has read, it keeps ------------------------------------------------------
@pytest.mark.parametrize("close_after_s", [0.0, 0.03])
def test_a_bracket_sent_just_before_a_disconnect_is_placed_whole(close_after_s: float) -> None:
    # Given an order latency of 50 ms per order (three legs: 150 ms in the queue) and a
    # client that sends a bracket and closes its socket right after (0 or 30 ms later)
    scenario = make_scenario(
        TUESDAY_MORNING, latency={"order_s": 0.05}, orders={"fill_mode": "never"}
    )
    owner = next_client_id()

    async def send_and_leave(sim: ThreadedSim) -> list[int]:
        ib = await connect(sim.port, owner)
        spy = Stock("SPY", "SMART", "USD")
        await ib.qualifyContractsAsync(spy)
        bracket = ib.bracketOrder("BUY", 1, 1.00, 2.00, 0.50)
        ids = [ib.placeOrder(spy, order).order.orderId for order in bracket]
        if close_after_s:
            await asyncio.sleep(close_after_s)  # the client's own pause, part of the scenario
        ib.disconnect()
        return ids

    async def look(sim: ThreadedSim) -> dict[str, Any]:
        other = await connect(sim.port)  # another client id: every client's working orders
        try:
            every = await other.reqAllOpenOrdersAsync()
            seen_all = {(t.order.orderId, t.order.clientId, t.orderStatus.status) for t in every}
        finally:
            other.disconnect()
        again = await connect(sim.port, owner)  # the owner back: its own, through connect
        try:
            own = {(t.order.orderId, t.orderStatus.status) for t in again.openTrades()}
        finally:
            again.disconnect()
        return {"all": seen_all, "own": own}

    with ThreadedSim(scenario) as sim:
        ids = run_client(lambda: send_and_leave(sim))
        # When the queue drains with the client gone
        run_client(lambda: until(lambda: set(ids) <= set(_book(sim)), 10))
        book = _book(sim)
        seen = run_client(lambda: look(sim))
    # Then all three legs are placed under the owner's client id: the parent working, its
    # children waiting for it, and a later connection sees them
    parent, take_profit, stop = ids
    assert {i: book[i][:2] for i in ids} == {
        parent: (owner, "Submitted"),
        take_profit: (owner, "PreSubmitted"),
        stop: (owner, "PreSubmitted"),
    }
    assert {
        (parent, owner, "Submitted"),
        (take_profit, owner, "PreSubmitted"),
        (stop, owner, "PreSubmitted"),
    } <= seen["all"]
    assert seen["own"] == {
        (parent, "Submitted"),
        (take_profit, "PreSubmitted"),
        (stop, "PreSubmitted"),
    }


def test_a_place_and_its_cancel_sent_before_a_disconnect_both_happen() -> None:
    # Given a client that places an order, cancels it and leaves, all inside the order latency
    scenario = make_scenario(
        TUESDAY_MORNING, latency={"order_s": 0.1}, orders={"fill_mode": "never"}
    )
    owner = next_client_id()

    async def send_and_leave(sim: ThreadedSim) -> int:
        ib = await connect(sim.port, owner)
        spy = Stock("SPY", "SMART", "USD")
        await ib.qualifyContractsAsync(spy)
        trade = ib.placeOrder(spy, LimitOrder("BUY", 1, 1.00))
        ib.cancelOrder(trade.order)
        ib.disconnect()
        return trade.order.orderId

    async def completed(sim: ThreadedSim) -> set[tuple[int, str]]:
        ib = await connect(sim.port)
        try:
            done = await ib.reqCompletedOrdersAsync(apiOnly=True)
            return {(t.order.permId, t.orderStatus.status) for t in done}
        finally:
            ib.disconnect()

    with ThreadedSim(scenario) as sim:
        order_id = run_client(lambda: send_and_leave(sim))
        run_client(lambda: until(lambda: _book(sim).get(order_id, (0, ""))[1] == "Cancelled", 10))
        client_id, _status, perm_id = _book(sim)[order_id]
        seen = run_client(lambda: completed(sim))
    # Then the order was placed under the owner's client id, then cancelled (the cancel
    # found it), and a later client sees it cancelled (completedOrder carries no client id)
    assert client_id == owner and (perm_id, "Cancelled") in seen


# ---- 2 and 3. one connection's messages in order; 202 after the Cancelled status ---------------
def test_a_cancel_sent_while_its_order_waits_out_the_latency_cancels_it_then_202() -> None:
    # Given an order latency of 300 ms and a cancel sent right after the place
    scenario = make_scenario(
        TUESDAY_MORNING, latency={"order_s": 0.3}, orders={"fill_mode": "never"}
    )

    async def place_and_cancel(sim: ThreadedSim) -> dict[str, Any]:
        ib = await connect(sim.port)
        try:
            errors = ErrorLog(ib)
            heard: list[tuple[str, int, Any]] = []
            ib.orderStatusEvent += lambda t: heard.append(
                ("status", t.order.orderId, t.orderStatus.status)
            )
            ib.errorEvent += lambda req_id, code, *_: heard.append(("error", req_id, code))
            spy = Stock("SPY", "SMART", "USD")
            await ib.qualifyContractsAsync(spy)
            trade = ib.placeOrder(spy, LimitOrder("BUY", 1, 1.00))
            ib.cancelOrder(trade.order)
            await until(trade.isDone, 10)
            await errors.wait_code(202, 10)
            return {"trade": trade, "errors": errors.items, "heard": heard}
        finally:
            ib.disconnect()

    with ThreadedSim(scenario) as sim:
        seen = run_client(lambda: place_and_cancel(sim))
    trade: Trade = seen["trade"]
    order_id = trade.order.orderId
    # Then the order is cancelled, no "not found" (10147), and 202 names the order
    assert trade.orderStatus.status == "Cancelled"
    assert [c for r, c, _m in seen["errors"] if r == order_id] == [202]
    (message,) = [m for r, c, m in seen["errors"] if c == 202]
    assert message.startswith("Order Canceled - reason:")
    # And the 202 comes after the gateway's Cancelled status, so the trade stays as it was
    heard = [h for h in seen["heard"] if h[1] == order_id]
    cancelled = heard.index(("status", order_id, "Cancelled"))
    assert heard.index(("error", order_id, 202)) > cancelled
    assert trade.orderStatus.status == "Cancelled" and trade.isDone()


def test_every_cancel_reports_202_after_its_cancelled_status() -> None:
    # Given a bracket whose parent is cancelled (its children go with it) and an IOC order
    # that does not fill (units: no sockets, the test names the sim instants)
    desk = make_desk(TUESDAY_MORNING)
    call = desk.option(NEXT_WEEK, 680.0)
    desk.place(1, call, "BUY", 1, 0.05)
    desk.place(2, call, "SELL", 1, 50.0, parentId="1")
    desk.place(3, call, "BUY", 1, 0.05, tif="IOC")
    # When the client cancels the parent and the IOC's first pass ends
    assert desk.book.cancel(1, 1) == ""
    desk.passes(1)
    # Then each cancelled order's status Cancelled is followed by its 202
    for order_id in (1, 2, 3):
        about = [
            f
            for _c, f in desk.sent
            if (f[0] == 3 and f[1] == order_id) or (f[0] == 4 and f[2] == order_id)
        ]
        assert [(f[0], f[2] if f[0] == 3 else f[3]) for f in about][-2:] == [
            (3, "Cancelled"),
            (4, 202),
        ], order_id


# ---- 4, 5, 6. contract details and account values ----------------------------------------------
def _details(at: Any) -> dict[str, Any]:
    async def ask(sim: ThreadedSim) -> dict[str, Any]:
        ib = await connect(sim.port)
        try:
            found = {}
            for name, contract in (
                ("SPY", Stock("SPY", "SMART", "USD")),
                ("QQQ", Stock("QQQ", "SMART", "USD")),
                ("AAPL", Stock("AAPL", "SMART", "USD")),
                ("call", Option(*SPY_CALL, "SMART")),
            ):
                (details,) = await ib.reqContractDetailsAsync(contract)
                found[name] = details
            return found
        finally:
            ib.disconnect()

    with ThreadedSim(make_scenario(at)) as sim:
        return run_client(lambda: ask(sim))


def test_options_trade_in_the_regular_session_and_etfs_are_etfs() -> None:
    found = _details(TUESDAY_MORNING)
    spy, call = found["SPY"], found["call"]
    # a stock trades in the extended session, its liquid hours are the regular one
    assert "20261201:0400-20261201:2000" in spy.tradingHours
    assert "20261201:0930-20261201:1600" in spy.liquidHours
    # an option trades only in the regular session: both strings say so
    assert call.tradingHours == call.liquidHours == spy.liquidHours
    assert "0400" not in call.tradingHours and "2000" not in call.tradingHours
    # ETFs are ETFs, a company is COMMON
    assert (spy.stockType, found["QQQ"].stockType, found["AAPL"].stockType) == (
        "ETF",
        "ETF",
        "COMMON",
    )


def test_an_option_on_a_half_day_trades_until_13_00() -> None:
    found = _details(EARLY_CLOSE_DAY)
    call, spy = found["call"], found["SPY"]
    assert "20261127:0930-20261127:1300" in call.tradingHours
    assert call.tradingHours == call.liquidHours
    assert "20261127:0400-20261127:1700" in spy.tradingHours  # the stock's extended session


def test_a_symbols_stock_type_is_its_own_or_known() -> None:
    assert SymbolSpec(symbol="IWM", price=200).listed_stock_type == "ETF"
    assert SymbolSpec(symbol="MSFT", price=400).listed_stock_type == "COMMON"
    assert SymbolSpec(symbol="TSM", price=150, stock_type="ADR").listed_stock_type == "ADR"
    scenario = scenario_from_dict({"symbols": [{"symbol": "SPY", "price": 680}]})
    assert scenario.all_symbols()[0].listed_stock_type == "ETF"


def test_account_values_and_summary_carry_two_decimals() -> None:
    async def read(sim: ThreadedSim) -> tuple[list[Any], list[Any]]:
        ib: IB = await connect(sim.port)
        try:
            summary = await ib.accountSummaryAsync()
            return ib.accountValues(), summary
        finally:
            ib.disconnect()

    with ThreadedSim(make_scenario(TUESDAY_MORNING)) as sim:
        values, summary = run_client(lambda: read(sim))
    money = {v.tag: v.value for v in values if v.currency == "USD" and v.tag != "Currency"}
    assert money["NetLiquidation"] == "100000.00" and money["AvailableFunds"] == "95000.00"
    assert money["Cushion"] == "0.96"
    assert all(TWO_DECIMALS.match(text) for text in money.values()), money
    told = {v.tag: v.value for v in summary if v.currency == "USD"}
    assert told["NetLiquidation"] == "100000.00"
    assert all(TWO_DECIMALS.match(text) for text in told.values()), told


def test_an_account_value_is_money_with_two_decimals_or_a_count() -> None:
    assert value_text("NetLiquidation", 100_000.0) == "100000.00"
    assert value_text("UnrealizedPnL", -12.5) == "-12.50"
    assert value_text("Cushion", 0.96) == "0.96"
    assert value_text("DayTradesRemaining", -1.0) == "-1"
