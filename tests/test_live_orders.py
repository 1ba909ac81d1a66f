"""Live orders against the simulated gateway: what IBKR accepts, refuses, and says about it."""

from __future__ import annotations

from typing import Any

import pytest

from common.messages import OrderIntent, Signal
from supervisor.broker.base import ConnectionLost, OrderRejected
from supervisor.broker.ibkr.broker import IBKRBroker
from tests.conftest_sim import make_scenario, next_client_id
from tests.sessions import TUESDAY_MORNING
from tests.test_ibkr_broker import ACCOUNT, spy_options, wait_until, with_broker
from tools.gateway_sim import ThreadedSim

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

MARGIN = "YOUR ORDER IS NOT ACCEPTED. INSUFFICIENT MARGIN"


async def spy_intent(broker: IBKRBroker, intent_id: str) -> OrderIntent:
    chain = await broker.chain("SPY")
    spot = (await broker.quote("SPY")).last
    (contract,) = spy_options(chain.strikes, chain.expirations[1], spot, 1)
    return OrderIntent(
        intent_id,
        1,
        "SPY",
        contract,
        Signal.BUY,
        entry_limit=0.05,
        take_profit=9.0,
        stop_loss=0.01,
        premium=0.05,
        confidence=0.5,
        reasons=(),
    )


def test_a_refused_bracket_raises_with_ibkrs_code_and_leaves_nothing_working() -> None:
    # Given a gateway that refuses every option BUY for margin (error 201)
    scenario = make_scenario(
        TUESDAY_MORNING,
        orders={"rejects": [{"sec_type": "OPT", "action": "BUY", "reason": MARGIN}]},
    )
    intent_id = f"refused-{next_client_id()}"

    async def body(broker: IBKRBroker) -> Any:
        intent = await spy_intent(broker, intent_id)
        with pytest.raises(OrderRejected) as info:
            await broker.place_bracket(intent, 2, ACCOUNT)
        return info.value, broker.open_orders()

    with ThreadedSim(scenario) as sim:
        rejected, still_open = with_broker(sim, body)
        accepted = sim.call(
            lambda: [
                o
                for o in sim.server.orders.orders.values()
                if o.fields.get("orderRef") == intent_id
            ]
        )
    # Then the code and IBKR's reason reach the bot, and no part of the bracket works
    assert rejected.code == 201 and "INSUFFICIENT MARGIN" in str(rejected)
    assert len(rejected.order_ids) == 3
    assert [o for o in still_open if o.order_ref == intent_id] == []
    assert accepted == []  # the gateway holds none of the three


def test_an_accepted_bracket_carries_its_perm_ids_which_the_open_orders_repeat() -> None:
    scenario = make_scenario(TUESDAY_MORNING, orders={"fill_mode": "never"})
    intent_id = f"accepted-{next_client_id()}"

    async def body(broker: IBKRBroker) -> Any:
        placed = await broker.place_bracket(await spy_intent(broker, intent_id), 1, ACCOUNT)
        await wait_until(
            lambda: len([o for o in broker.open_orders() if o.order_ref == intent_id]) == 3
        )
        return placed, [o for o in broker.open_orders() if o.order_ref == intent_id]

    with ThreadedSim(scenario) as sim:
        placed, ours = with_broker(sim, body)
    assert {o.order_id: o.perm_id for o in ours} == dict(
        zip(placed.order_ids, placed.perm_ids, strict=True)
    )


def test_an_entry_whose_exits_are_refused_is_cancelled_never_left_working_alone() -> None:
    # Given a gateway that takes the entry but refuses both exits (no SELLs)
    scenario = make_scenario(
        TUESDAY_MORNING,
        orders={
            "fill_mode": "never",
            "rejects": [{"sec_type": "OPT", "action": "SELL", "reason": "CLOSING ONLY"}],
        },
    )
    intent_id = f"naked-{next_client_id()}"

    async def body(broker: IBKRBroker) -> Any:
        with pytest.raises(OrderRejected) as info:
            await broker.place_bracket(await spy_intent(broker, intent_id), 1, ACCOUNT)
        await wait_until(lambda: not [o for o in broker.open_orders() if o.order_ref == intent_id])
        return info.value

    with ThreadedSim(scenario) as sim:
        rejected = with_broker(sim, body)
        live = sim.call(
            lambda: [
                o.status
                for o in sim.server.orders.orders.values()
                if o.fields.get("orderRef") == intent_id
            ]
        )
    assert rejected.code == 201 and "CLOSING ONLY" in str(rejected)
    assert all(status not in ("PreSubmitted", "Submitted") for status in live), live


def test_a_socket_dropped_while_the_account_is_listed_is_a_lost_connection() -> None:
    # Given a connected broker whose library loses the socket under each listing (what
    # ib_insync raises when the gateway drops mid-request: a bare ConnectionError)
    async def dropped(*_args: Any, **_kwargs: Any) -> Any:
        raise ConnectionError("Socket disconnect")

    async def body(broker: IBKRBroker) -> Any:
        ib = broker._link.ib
        seen = []
        for name, listing in (
            ("reqAllOpenOrdersAsync", broker.refresh_orders),
            ("reqCompletedOrdersAsync", broker.completed_refs),
        ):
            setattr(ib, name, dropped)
            with pytest.raises(ConnectionLost) as info:
                await listing()
            seen.append(str(info.value))
        return seen

    with ThreadedSim(make_scenario(TUESDAY_MORNING)) as sim:
        seen = with_broker(sim, body)
    # Then each is the bot's own lost connection (a cycle skips it; a bare ConnectionError
    # escaped the loop and stopped a live bot in a chaos run)
    assert seen == ["open orders: connection lost", "completed orders: connection lost"]
