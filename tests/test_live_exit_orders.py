"""Orders the start's checks need, through the real IB client against the simulated gateway:
an exit of a bracket placed again on its own (supervisor/broker/ibkr/exits.py), and the
completed orders that still name an entry cancelled unfilled (completed.py)."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.broker.ibkr.broker import IBKRBroker
from tests.conftest_sim import make_scenario, next_client_id
from tests.sessions import TUESDAY_MORNING
from tests.test_ibkr_broker import ACCOUNT, wait_until, with_broker
from tests.test_live_orders import spy_intent
from tools.gateway_sim import ThreadedSim

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_a_lost_take_profit_is_placed_again_in_the_brackets_oca_group() -> None:
    # Given a working bracket whose take-profit was cancelled (nothing fills here)
    scenario = make_scenario(TUESDAY_MORNING, orders={"fill_mode": "never"})
    ref = f"{next_client_id():016x}"

    async def body(broker: IBKRBroker) -> Any:
        intent = await spy_intent(broker, ref)
        placed = await broker.place_bracket(intent, 2, ACCOUNT)
        await broker.cancel_order(placed.order_ids[1])
        await wait_until(
            lambda: placed.order_ids[1] not in {o.order_id for o in broker.open_orders()}
        )
        # When it is placed again, and a stop besides
        tp = await broker.place_exit(intent.contract, "LMT", 2, 9.0, ACCOUNT, ref, f"oca-{ref}")
        sl = await broker.place_exit(intent.contract, "STP", 2, 0.02, ACCOUNT, ref, f"oca-{ref}")
        await broker.refresh_orders()
        return tp, sl, [o for o in broker.open_orders() if o.order_ref == ref]

    with ThreadedSim(scenario) as sim:
        tp, sl, listed = with_broker(sim, body)
        received = sim.call(
            lambda: [o for o in sim.server.orders.received if o["order_id"] in (tp[0], sl[0])]
        )
    # Then IBKR acknowledged both (a permId each) and lists them with the bracket
    assert tp[1] and sl[1] and tp[1] != sl[1]
    by_id = {o.order_id: o for o in listed}
    assert by_id[tp[0]].perm_id == tp[1] and by_id[sl[0]].perm_id == sl[1]
    # as GTC SELLs in the bracket's OCA group (type 2: a fill reduces the other), no parent
    assert [
        (
            o["action"],
            o["orderType"],
            o["tif"],
            o["ocaGroup"],
            o["ocaType"],
            o["parentId"],
            o["account"],
        )
        for o in received
    ] == [
        ("SELL", "LMT", "GTC", f"oca-{ref}", 2, 0, ACCOUNT),
        ("SELL", "STP", "GTC", f"oca-{ref}", 2, 0, ACCOUNT),
    ]
    assert received[0]["lmtPrice"] == 9.0 and received[1]["auxPrice"] == 0.02


def test_a_cancelled_entry_stays_known_by_its_completed_order() -> None:
    scenario = make_scenario(TUESDAY_MORNING, orders={"fill_mode": "never"})
    ref = f"{next_client_id():016x}"

    async def body(broker: IBKRBroker) -> Any:
        placed = await broker.place_bracket(await spy_intent(broker, ref), 1, ACCOUNT)
        await broker.cancel_order(placed.order_ids[0])  # takes its exits with it
        await wait_until(lambda: not [o for o in broker.open_orders() if o.order_ref == ref])
        return await broker.completed_refs()

    with ThreadedSim(scenario) as sim:
        completed = with_broker(sim, body)
    assert completed.count(ref) == 3  # the entry and both exits, all cancelled
