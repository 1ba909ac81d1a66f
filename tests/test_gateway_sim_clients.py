"""IBKR behaviours across the API clients of one account that the bot relies on.

- reqAllOpenOrders (16) lists the working orders of every client id, also of one that has
  disconnected (IBKR keeps them working), while reqOpenOrders (5) lists the caller's own;
- reqExecutions (7) gives any client today's executions with their commission reports;
- orderStatus goes PendingSubmit (client side) -> Submitted -> Filled, carrying the permId;
- a client id already connected gets 326: tests/test_gateway_sim_rules.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest_sim import connect, make_scenario, next_client_id, run_client
from tests.ibclient import LimitOrder, Option, Stock, Trade
from tests.sessions import TUESDAY_MORNING
from tests.test_gateway_sim_orders import until
from tools.gateway_sim import ThreadedSim

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
BEFORE_OPEN = TUESDAY_MORNING.replace(hour=9, minute=29)
OPEN_TS = TUESDAY_MORNING.replace(hour=9, minute=30).timestamp()


def _filled_perm_ids(sim: ThreadedSim) -> set[int]:
    return sim.call(
        lambda: {o.perm_id for o in sim.server.orders.done_for(None) if o.status == "Filled"}
    )


def test_orders_of_a_disconnected_client_keep_working_and_every_client_sees_them() -> None:
    # Given client A placing, before the 09:30 open (20x), a resting stock order and an option
    # order that becomes executable at the open, then disconnecting
    scenario = make_scenario(BEFORE_OPEN, clock={"rate": 20})
    owner = next_client_id()

    async def place(sim: ThreadedSim) -> tuple[int, int, float]:
        ib = await connect(sim.port, owner)
        spy = Stock("SPY", "SMART", "USD")
        call = Option("SPY", "20261211", 680, "C", "SMART")
        await ib.qualifyContractsAsync(spy, call)
        ask = (await ib.reqTickersAsync(call))[0].ask
        resting = ib.placeOrder(spy, LimitOrder("BUY", 1, 1.0))
        working = ib.placeOrder(call, LimitOrder("BUY", 2, round(ask * 2, 2)))
        await until(lambda: resting.orderStatus.status == working.orderStatus.status == "Submitted")
        left = sim.now()
        ib.disconnect()
        return resting.order.permId, working.order.permId, left

    async def look(sim: ThreadedSim) -> dict[str, Any]:
        ib = await connect(sim.port)  # another client id
        try:
            own = [t.order.permId for t in ib.openTrades()]
            every = [(t.order.permId, t.order.clientId) for t in await ib.reqAllOpenOrdersAsync()]
            return {"own": own, "all": every, "fills": ib.fills()}
        finally:
            ib.disconnect()

    with ThreadedSim(scenario) as sim:
        resting_id, working_id, left = run_client(lambda: place(sim))
        # When the open comes with A gone
        run_client(lambda: until(lambda: working_id in _filled_perm_ids(sim), 20))
        seen = run_client(lambda: look(sim))
        book = sim.call(
            lambda: [(e.order.perm_id, e.commission, e.ts) for e in sim.server.orders.executions]
        )
    assert left < OPEN_TS, "client A must leave before the open (slow machine?)"
    # Then A's option order filled after A left, and client B sees it all
    ((perm_id, commission, when),) = book
    assert perm_id == working_id and when >= OPEN_TS > left
    assert (resting_id, owner) in seen["all"] and working_id not in dict(seen["all"])
    assert resting_id not in seen["own"]  # reqOpenOrders: the caller's own orders only
    (fill,) = seen["fills"]
    assert (fill.execution.permId, fill.execution.clientId) == (working_id, owner)
    assert fill.commissionReport.commission == pytest.approx(commission) and commission > 0


def test_order_status_goes_pending_submit_submitted_filled_with_the_perm_id() -> None:
    scenario = make_scenario(TUESDAY_MORNING, orders={"fill_mode": "immediate"})

    async def run(sim: ThreadedSim) -> tuple[Trade, list[tuple[str, int]]]:
        ib = await connect(sim.port)
        try:
            spy = Stock("SPY", "SMART", "USD")
            await ib.qualifyContractsAsync(spy)
            trade = ib.placeOrder(spy, LimitOrder("BUY", 5, 600.0))
            seen: list[tuple[str, int]] = []
            trade.statusEvent += lambda t: seen.append((t.orderStatus.status, t.orderStatus.permId))
            await until(trade.isDone)
            return trade, seen
        finally:
            ib.disconnect()

    with ThreadedSim(scenario) as sim:
        trade, seen = run_client(lambda: run(sim))
        perm_ids = sim.call(lambda: [o.perm_id for o in sim.server.orders.orders.values()])
    statuses = [e.status for e in trade.log]
    in_order = [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]]
    assert in_order == ["PendingSubmit", "Submitted", "Filled"]
    assert trade.order.permId in perm_ids and trade.order.permId > 0
    assert [s for s, _p in seen][-1] == "Filled"
    assert {p for _s, p in seen} == {trade.order.permId}
