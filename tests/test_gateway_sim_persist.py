"""``--state-file``: the account's orders, executions and cash outlive a simulator restart.

IBKR keeps them server-side: after an IB Gateway restart reqAllOpenOrders, reqExecutions
(today's) and reqCompletedOrders list what they listed before, and the bot's last guard
against a re-sent bracket (an orderRef seen there) depends on it. The restart here is a
second simulator on the same state file while the first still runs: nothing is written at
shutdown, as after a SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest_sim import connect, make_scenario, run_client
from tests.ibclient import LimitOrder, Stock
from tests.sessions import THURSDAY_1100, TUESDAY_MORNING
from tests.test_gateway_sim_orders import NEXT_WEEK, make_desk
from tools.gateway_sim import ThreadedSim
from tools.gateway_sim.persist import StateFile, restore, snapshot

pytestmark = pytest.mark.timeout(60)
Listing = dict[str, Any]


async def until(done: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """A state, not an event: the children's cancels can arrive in one read."""

    async def poll() -> None:
        while not done():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout_s)


async def _trade(port: int) -> None:
    """A filled buy (an execution), a bracket whose entry is cancelled (3 completed orders),
    a resting order (open)."""
    ib = await connect(port)
    try:
        spy = Stock("SPY", "SMART", "USD")
        await ib.qualifyContractsAsync(spy)
        ask = (await ib.reqTickersAsync(spy))[0].ask
        bought = ib.placeOrder(spy, LimitOrder("BUY", 2, round(ask + 1, 2), orderRef="filled"))
        await asyncio.wait_for(bought.filledEvent, 10)
        bracket = ib.bracketOrder("BUY", 1, 1.0, round(ask * 1.5, 2), 0.5, orderRef="brk")
        trades = [ib.placeOrder(spy, o) for o in bracket]
        ib.placeOrder(spy, LimitOrder("BUY", 1, 1.0, orderRef="resting"))
        await asyncio.sleep(0.2)
        ib.cancelOrder(bracket.parent)  # its children go with it
        await until(lambda: all(t.orderStatus.status == "Cancelled" for t in trades))
    finally:
        ib.disconnect()


async def _listing(port: int, place_one: bool = False) -> Listing:
    ib = await connect(port)
    try:
        opened = await ib.reqAllOpenOrdersAsync()
        done = await ib.reqCompletedOrdersAsync(apiOnly=False)
        fills = await ib.reqExecutionsAsync()
        listing: Listing = {
            "open": sorted((t.order.permId, t.order.orderRef, t.order.orderId) for t in opened),
            "completed": sorted(
                (t.order.permId, t.order.orderRef, t.orderStatus.status) for t in done
            ),
            "executions": sorted(
                (f.execution.permId, f.execution.orderRef, f.execution.shares) for f in fills
            ),
        }
        if place_one:
            spy = Stock("SPY", "SMART", "USD")
            await ib.qualifyContractsAsync(spy)
            fresh = ib.placeOrder(spy, LimitOrder("BUY", 1, 1.0, orderRef="fresh"))
            await asyncio.wait_for(fresh.statusEvent, 10)
            listing["fresh"] = (fresh.order.orderId, fresh.orderStatus.permId)
        return listing
    finally:
        ib.disconnect()


@pytest.mark.integration
def test_a_restarted_simulator_lists_the_same_orders_executions_and_cash(tmp_path: Path) -> None:
    # Given a sim with a state file that has filled, cancelled (a bracket) and resting orders
    state = tmp_path / "sim.state.json"
    scenario = make_scenario(TUESDAY_MORNING)
    with ThreadedSim(scenario, state_file=state) as first:
        run_client(lambda: _trade(first.port))
        before = run_client(lambda: _listing(first.port))
        cash_before = first.account()["cash"]
        # When a second sim starts on the file while the first still runs (no shutdown save)
        with ThreadedSim(scenario, state_file=state) as second:
            after = run_client(lambda: _listing(second.port, place_one=True))
            cash_after = second.account()["cash"]
    # Then it lists the same orders, executions and cash, and a new order is new
    assert {r for _p, r, _s in before["completed"]} == {"brk"} | {"filled"}
    assert len(before["completed"]) == 4 and [r for _p, r, _i in before["open"]] == ["resting"]
    assert [r for _p, r, _s in before["executions"]] == ["filled"]
    assert {k: after[k] for k in before} == before
    assert (
        cash_after == pytest.approx(cash_before)
        and cash_before != scenario.account.values["TotalCashValue"]
    )
    used_perms = {p for key in before for p, _r, _x in before[key]}
    used_ids = {i for _p, _r, i in before["open"]}
    order_id, perm_id = after["fresh"]
    assert perm_id not in used_perms and perm_id > max(used_perms)
    assert order_id not in used_ids


def test_without_a_state_file_nothing_is_written_and_a_missing_file_is_a_first_start(
    tmp_path: Path,
) -> None:
    scenario = make_scenario(TUESDAY_MORNING)
    with ThreadedSim(scenario) as sim:
        assert sim.server.state is None
        sim.call(sim.server.save_state)
    assert list(tmp_path.iterdir()) == []
    with ThreadedSim(scenario) as sim:
        assert not StateFile(tmp_path / "none.json").load(sim.server.orders, sim.now())


@pytest.mark.parametrize(
    ("later", "executions_kept"), [(TUESDAY_MORNING + timedelta(hours=2), 1), (THURSDAY_1100, 0)]
)
def test_a_restore_keeps_orders_and_positions_and_only_todays_executions(
    later: datetime, executions_kept: int
) -> None:
    # Given a book with a filled call, a resting GTC order and a what-if id
    desk = make_desk(TUESDAY_MORNING)
    call = desk.option(NEXT_WEEK, 680.0)
    desk.place(1, call, "BUY", 2, desk.marketable(call, "BUY", 1), orderRef="f")
    desk.place(2, desk.spy(), "BUY", 1, 1.0, tif="GTC", orderRef="r")
    desk.book.what_if_ids.add((1, 7))
    desk.passes(1)
    saved = json.loads(json.dumps(snapshot(desk.book)))  # plain JSON both ways
    # When a fresh book restores it at a later instant
    fresh = make_desk(TUESDAY_MORNING).book
    restore(fresh, saved, later.timestamp())
    # Then orders, positions, cash and counters are back; executions only of that day
    assert snapshot(fresh)["orders"] == saved["orders"]
    assert {k: (o.status, o.perm_id) for k, o in fresh.orders.items()} == {
        k: (o.status, o.perm_id) for k, o in desk.book.orders.items()
    }
    assert fresh.positions[call.con_id].quantity == 2
    assert fresh.ledger.cash == desk.book.ledger.cash != fresh.ledger.opening_cash
    assert fresh.next_perm_id == desk.book.next_perm_id and (1, 7) in fresh.what_if_ids
    assert len(fresh.executions) == executions_kept
    if executions_kept:
        assert fresh.executions[0].order is fresh.orders[(1, 1)]
