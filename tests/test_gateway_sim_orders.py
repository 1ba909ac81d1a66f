"""The sim's order book: partial fills, OCA groups (ocaType 1/2/3) and bracket children.

Most tests drive an ``OrderBook`` with no sockets and no tasks (``Desk``): the test names the
sim instant of every matcher pass, so nothing depends on real time. The last ones go through
the real ib_insync client to show what a bot sees on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pytest

from tests.conftest_sim import connect, make_scenario, run_client
from tests.ibclient import LimitOrder, Stock, Trade
from tests.sessions import TUESDAY_MORNING
from tools.gateway_sim import ScenarioError, ThreadedSim
from tools.gateway_sim.codec import FieldValue
from tools.gateway_sim.hours import SessionClock
from tools.gateway_sim.instruments import Instrument
from tools.gateway_sim.market import Market
from tools.gateway_sim.orders import OrderBook, SimOrder
from tools.gateway_sim.stats import Stats

pytestmark = pytest.mark.timeout(60)
OPEN_ORDER_QTY = 14  # openOrder: 5, orderId, 11 contract fields, action, totalQuantity
EXEC_SHARES, EXEC_PRICE, EXEC_CUM, EXEC_AVG = 19, 20, 24, 25


def number(value: FieldValue) -> float:
    """A numeric field as sent (a None or a flag there is the sim's bug, not a zero)."""
    assert isinstance(value, int | float | str) and not isinstance(value, bool), value
    return float(value)


# ---- a book with no sockets: the test is the clock ---------------------------------------------
@dataclass
class Desk:
    book: OrderBook
    at: datetime
    sent: list[tuple[int, list[FieldValue]]] = field(default_factory=list)
    positions: list[tuple[str, float]] = field(default_factory=list)

    @property
    def market(self) -> Market:
        return self.book.market

    def ts(self, seconds: float = 0.0) -> float:
        return self.at.timestamp() + seconds

    def spy(self) -> Instrument:
        return self.market.book.stocks["SPY"]

    def option(self, expiry: date, strike: float, right: str = "C") -> Instrument:
        return self.market.book.option("SPY", expiry, strike, right, 0)

    def place(
        self, order_id: int, inst: Instrument, action: str, qty: float, limit: float, **extra: str
    ) -> SimOrder:
        fields = {
            "action": action,
            "totalQuantity": f"{qty:g}",
            "orderType": "LMT",
            "lmtPrice": f"{limit:g}",
            "auxPrice": "",
            "tif": "DAY",
            "ocaGroup": "",
            "ocaType": "0",
            "parentId": "",
            "transmit": "1",
            "outsideRth": "0",
            **extra,
        }
        assert self.book.place(1, order_id, inst, fields) == ""
        return self.book.orders[(1, order_id)]

    def marketable(self, inst: Instrument, action: str, seconds: float = 0.0) -> float:
        quote = self.market.quote(inst, self.ts(seconds))
        assert quote.ask is not None and quote.bid is not None
        return round(quote.ask * 1.01, 2) if action == "BUY" else round(quote.bid * 0.99, 2)

    def passes(self, count: int, start_s: float = 1.0) -> None:
        for i in range(count):
            self.book.match_pass(self.ts(start_s + i))

    def messages(self, msg_id: int, order_id: int) -> list[list[FieldValue]]:
        return [
            f for _c, f in self.sent if f[0] == msg_id and f[1 if msg_id != 11 else 2] == order_id
        ]

    def statuses(self, order_id: int) -> list[tuple[Any, ...]]:
        return [(f[2], f[3], f[4]) for f in self.messages(3, order_id)]

    def totals(self, order_id: int) -> list[Any]:
        return [f[OPEN_ORDER_QTY] for f in self.messages(5, order_id)]

    def executions(self, order_id: int) -> list[list[FieldValue]]:
        return self.messages(11, order_id)

    def commissions(self, order_id: int) -> list[float]:
        ids = {f[14] for f in self.executions(order_id)}
        return [number(f[3]) for _c, f in self.sent if f[0] == 59 and f[2] in ids]


def make_desk(at: datetime, **overrides: Any) -> Desk:
    scenario = make_scenario(at, **overrides)
    market = Market(scenario, SessionClock(scenario.session))
    sent: list[tuple[int, list[FieldValue]]] = []
    seen: list[tuple[str, float]] = []
    book = OrderBook(
        scenario,
        market,
        Stats(),
        lambda c, f: sent.append((c, list(f))),
        lambda p: seen.append((p.inst.local_symbol, p.quantity)),
        run_tasks=False,
    )
    return Desk(book, at, sent, seen)


NEXT_WEEK = date(2026, 12, 11)  # a Friday expiry listed from TUESDAY_MORNING


async def until(done: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for a state, not an event: several events can arrive in one read, before an
    ``await`` on the second of them is even set up."""

    async def poll() -> None:
        while not done():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout_s)


# ---- partial fills ------------------------------------------------------------------------------
def test_a_partial_fill_reports_every_part_with_its_commission() -> None:
    # Given at most 2 contracts per pass and a marketable order for 5 SPY calls
    desk = make_desk(TUESDAY_MORNING, orders={"max_fill_per_match": 2})
    call = desk.option(NEXT_WEEK, 680.0)
    order = desk.place(1, call, "BUY", 5, desk.marketable(call, "BUY", 3))
    # When the matcher passes three times
    desk.passes(3)
    # Then three executions of 2, 2, 1 with the running totals, and statuses to match
    parts = desk.executions(1)
    assert [f[EXEC_SHARES] for f in parts] == [2, 2, 1]
    assert [f[EXEC_CUM] for f in parts] == [2, 4, 5]
    assert desk.statuses(1)[-3:] == [("Submitted", 2, 3), ("Submitted", 4, 1), ("Filled", 5, 0)]
    weighted = sum(number(f[EXEC_SHARES]) * number(f[EXEC_PRICE]) for f in parts) / 5
    assert order.avg_price == pytest.approx(weighted) and parts[-1][EXEC_AVG] == order.avg_price
    # the minimum is per order: the parts add up to one order's 5 x 0.65
    assert desk.commissions(1) == pytest.approx([1.30, 1.30, 0.65])
    assert desk.positions[-3:] == [
        (call.local_symbol, 2),
        (call.local_symbol, 4),
        (call.local_symbol, 5),
    ]


def test_by_default_an_order_fills_whole_in_one_execution() -> None:
    desk = make_desk(TUESDAY_MORNING)
    call = desk.option(NEXT_WEEK, 680.0)
    desk.place(1, call, "BUY", 5, desk.marketable(call, "BUY", 1))
    desk.passes(1)
    assert [f[EXEC_SHARES] for f in desk.executions(1)] == [5]
    assert desk.statuses(1)[-1] == ("Filled", 5, 0) and desk.commissions(1) == [3.25]


def test_the_first_part_of_a_small_stock_order_carries_the_minimum() -> None:
    desk = make_desk(TUESDAY_MORNING, orders={"max_fill_per_match": 2})
    desk.place(1, desk.spy(), "BUY", 4, desk.marketable(desk.spy(), "BUY", 2))
    desk.passes(2)
    assert desk.commissions(1) == [1.0, 0.0]  # 4 x 0.005 never reaches the 1.00 minimum


# ---- OCA groups ----------------------------------------------------------------------------------
def _oca(kind: int) -> dict[str, str]:
    return {"ocaGroup": f"g{kind}", "ocaType": str(kind)}


def test_oca_type_1_cancels_the_rest_at_the_first_execution() -> None:
    desk = make_desk(TUESDAY_MORNING, orders={"max_fill_per_match": 1})
    spy = desk.spy()
    desk.place(1, spy, "BUY", 3, desk.marketable(spy, "BUY", 3), **_oca(1))
    desk.place(2, spy, "BUY", 3, 1.0, **_oca(1))
    desk.passes(1)
    assert desk.statuses(2)[-1] == ("Cancelled", 0, 3)  # after a partial fill of 1, not 3
    desk.passes(2, start_s=2.0)
    assert desk.statuses(1)[-1] == ("Filled", 3, 0)


def test_oca_type_2_shrinks_a_sibling_by_the_same_share_and_cancels_it_at_zero() -> None:
    # Given A (4, marketable) and B (8, resting) reduce-with-block, one share per pass
    desk = make_desk(TUESDAY_MORNING, orders={"max_fill_per_match": 1})
    spy = desk.spy()
    desk.place(1, spy, "BUY", 4, desk.marketable(spy, "BUY", 4), **_oca(2))
    desk.place(2, spy, "BUY", 8, 1.0, **_oca(2))
    # When A fills one share at a time
    desk.passes(4)
    # Then each quarter of A takes a quarter of B: 6, 4, 2, and at 0 B is cancelled
    assert desk.totals(2) == ["8", "6", "4", "2"]
    assert [s for s in desk.statuses(2) if s[0] == "Submitted"][-1] == ("Submitted", 0, 2)
    assert desk.statuses(2)[-1][0] == "Cancelled"
    assert desk.statuses(1)[-1] == ("Filled", 4, 0)


def test_oca_reduction_rounds_down_to_whole_units() -> None:
    desk = make_desk(TUESDAY_MORNING, orders={"max_fill_per_match": 1})
    spy = desk.spy()
    desk.place(1, spy, "BUY", 3, desk.marketable(spy, "BUY", 3), **_oca(3))
    desk.place(2, spy, "BUY", 5, 1.0, **_oca(3))
    desk.passes(3)
    # B keeps 5 x 2/3 = 3.33 -> 3, then 5 x 1/3 = 1.67 -> 1, then nothing
    assert desk.totals(2) == ["5", "3", "1"] and desk.statuses(2)[-1][0] == "Cancelled"


@pytest.mark.parametrize(("kind", "bought"), [(2, 4), (3, 8)], ids=["type2-block", "type3"])
def test_without_block_two_marketable_members_can_overfill(kind: int, bought: float) -> None:
    # Given two marketable orders of 4 in one group, filled whole
    desk = make_desk(TUESDAY_MORNING)
    spy = desk.spy()
    for order_id in (1, 2):
        desk.place(order_id, spy, "BUY", 4, desk.marketable(spy, "BUY", 1), **_oca(kind))
    # When one pass sees both
    desk.passes(1)
    # Then with block only one is routed and the other cancelled; without, both fill (IBKR:
    # "will likely result in multiple orders being routed ... an overfill")
    assert desk.book.positions[spy.con_id].quantity == bought
    statuses = [desk.statuses(i)[-1][0] for i in (1, 2)]
    assert statuses == (["Filled", "Cancelled"] if kind == 2 else ["Filled", "Filled"])


def test_an_oca_group_spans_every_client_of_the_account() -> None:
    desk = make_desk(TUESDAY_MORNING)
    spy = desk.spy()
    desk.place(1, spy, "BUY", 2, desk.marketable(spy, "BUY", 1), **_oca(1))
    other = {
        "action": "BUY",
        "totalQuantity": "2",
        "orderType": "LMT",
        "lmtPrice": "1",
        "transmit": "1",
        **_oca(1),
    }
    desk.book.place(7, 1, spy, other)  # client 7, the same order id
    desk.passes(1)
    assert desk.book.orders[(7, 1)].status == "Cancelled"


# ---- brackets ------------------------------------------------------------------------------------
def test_a_bracket_child_cancels_its_sibling_at_its_first_partial_fill() -> None:
    # Given a bracket of 3 (no OCA group) whose take-profit is marketable once it works
    desk = make_desk(TUESDAY_MORNING, orders={"max_fill_per_match": 1})
    spy = desk.spy()
    desk.place(1, spy, "BUY", 3, desk.marketable(spy, "BUY", 6), transmit="0")
    desk.place(2, spy, "SELL", 3, desk.marketable(spy, "SELL", 6), parentId="1", transmit="0")
    desk.place(3, spy, "SELL", 3, 1.0, parentId="1", orderType="STP", auxPrice="1.0")
    # When the parent fills in three parts, then the take-profit once
    desk.passes(4)
    # Then the children waited for the whole parent, and the stop died at the first part
    assert desk.statuses(2)[:2] == [("PreSubmitted", 0, 3), ("Submitted", 0, 3)]
    assert desk.statuses(3)[-1] == ("Cancelled", 0, 3)
    desk.passes(2, start_s=5.0)
    assert desk.statuses(2)[-1] == ("Filled", 3, 0)
    assert desk.book.positions[spy.con_id].quantity == 0


# ---- on the wire ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim() -> Iterator[ThreadedSim]:
    with ThreadedSim(make_scenario(TUESDAY_MORNING, orders={"max_fill_per_match": 2})) as s:
        yield s


@pytest.mark.integration
def test_the_client_sees_each_part_of_a_partial_fill(sim: ThreadedSim) -> None:
    async def scenario() -> tuple[Trade, list[tuple[float, float]]]:
        ib = await connect(sim.port)
        try:
            spy = Stock("SPY", "SMART", "USD")
            await ib.qualifyContractsAsync(spy)
            ask = (await ib.reqTickersAsync(spy))[0].ask
            trade = ib.placeOrder(spy, LimitOrder("BUY", 5, round(ask + 1, 2)))
            seen: list[tuple[float, float]] = []
            trade.statusEvent += lambda t: seen.append(
                (t.orderStatus.filled, t.orderStatus.remaining)
            )
            await asyncio.wait_for(trade.filledEvent, 10)
            await asyncio.sleep(0.1)  # the last commission report
            return trade, seen
        finally:
            ib.disconnect()

    trade, seen = run_client(scenario)
    assert [f.execution.shares for f in trade.fills] == [2, 2, 1]
    assert [f.execution.cumQty for f in trade.fills] == [2, 4, 5]
    assert (2, 3) in seen and (4, 1) in seen and seen[-1] == (5, 0)
    weighted = sum(f.execution.shares * f.execution.price for f in trade.fills) / 5
    assert trade.orderStatus.avgFillPrice == pytest.approx(weighted)
    assert sum(f.commissionReport.commission for f in trade.fills) == pytest.approx(1.0)


@pytest.mark.integration
def test_the_client_sees_an_oca_sibling_shrink_then_cancel(sim: ThreadedSim) -> None:
    async def scenario() -> tuple[Trade, Trade, list[float]]:
        ib = await connect(sim.port)
        try:
            spy = Stock("SPY", "SMART", "USD")
            await ib.qualifyContractsAsync(spy)
            ask = (await ib.reqTickersAsync(spy))[0].ask
            group = {"ocaGroup": f"wire-{id(ib)}", "ocaType": 2}
            rest = ib.placeOrder(spy, LimitOrder("BUY", 8, 1.0, **group))
            sizes: list[float] = []

            def resized(trade: Trade) -> None:
                if trade is rest:
                    sizes.append(trade.order.totalQuantity)

            ib.openOrderEvent += resized
            await asyncio.sleep(0.2)
            take = ib.placeOrder(spy, LimitOrder("BUY", 4, round(ask + 1, 2), **group))
            await until(lambda: take.isDone() and rest.isDone())
            return take, rest, sizes
        finally:
            ib.disconnect()

    take, rest, sizes = run_client(scenario)
    # 2 of 4 filled per pass: the sibling of 8 keeps half, then nothing
    assert [f.execution.shares for f in take.fills] == [2, 2]
    assert 4 in sizes and rest.order.totalQuantity == 4
    assert rest.orderStatus.status == "Cancelled" and rest.orderStatus.filled == 0


def test_the_partial_fill_key_is_validated_and_off_by_default() -> None:
    with pytest.raises(ScenarioError, match=r"orders\.max_fill_per_match"):
        make_scenario(TUESDAY_MORNING, orders={"max_fill_per_match": -1})
    assert make_scenario(TUESDAY_MORNING).orders.max_fill_per_match == 0
