"""Live exits before expiry (supervisor/trading/live_exits.py) against a fake broker."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from common.calendar import nyse
from common.messages import OptionContract, OptionQuote, OrderIntent, Right, Signal
from supervisor.broker.base import BrokerPosition, Fill, OpenOrder
from supervisor.journal.records import Position
from supervisor.journal.store import Journal
from supervisor.trading.live_exits import ExpiryExits
from supervisor.trading.sessions import SessionBook
from tests.sessions import FRIDAY_1550, TUESDAY_MORNING

pytestmark = pytest.mark.timeout(30)

CALL = OptionContract("SPY", "20261204", 680.0, Right.CALL)


def position(contract: OptionContract = CALL, quantity: float = 10) -> BrokerPosition:
    return BrokerPosition(
        "DU1",
        contract.symbol,
        "OPT",
        quantity,
        250.0,
        1,
        contract.expiry,
        contract.strike,
        contract.right.value,
    )


def order(
    order_id: int,
    ref: str,
    action: str = "SELL",
    limit: float = 3.0,
    contract: OptionContract = CALL,
) -> OpenOrder:
    return OpenOrder(
        order_id,
        ref,
        "Submitted",
        action,
        10,
        "LMT",
        contract.symbol,
        "OPT",
        contract.expiry,
        contract.strike,
        contract.right.value,
        limit=limit,
    )


class FakeBroker:
    def __init__(self) -> None:
        self.held: list[BrokerPosition] = []
        self.working: list[OpenOrder] = []
        self.bid = 2.40
        self.cancelled: list[int] = []
        self.placed: list[tuple[str, str, int, float, str]] = []

    def positions(self) -> list[BrokerPosition]:
        return list(self.held)

    def open_orders(self) -> list[OpenOrder]:
        return list(self.working)

    def fills(self) -> list[Fill]:
        return []  # the bracket's exits never filled

    async def option_quotes(self, contracts: Sequence[OptionContract]):
        return tuple(OptionQuote(c, bid=self.bid, ask=self.bid + 0.1) for c in contracts)

    async def cancel_order(self, order_id: int) -> None:
        self.cancelled.append(order_id)
        self.working = [o for o in self.working if o.order_id != order_id]

    async def place_order(
        self,
        contract: OptionContract,
        action: str,
        quantity: int,
        limit: float,
        account: str,
        order_ref: str,
    ) -> int:
        self.placed.append((contract.key, action, quantity, limit, order_ref))
        new = order(100 + len(self.placed), order_ref, limit=limit)
        self.working.append(new)
        return new.order_id

    async def regular_hours(self, symbol: str):
        return None


@pytest.fixture
def setup(tmp_path: Path):
    journal = Journal(tmp_path / "j.sqlite")
    intent = OrderIntent("ours", 1, "SPY", CALL, Signal.BUY, 2.0, 3.0, 1.4, 2.0, 0.5, ())
    journal.record_intent(intent, "2026-12-01")
    bought = TUESDAY_MORNING.timestamp()
    journal.orders.record_fill("ours", "BOT", 10, 2.0, bought, 6.5, "e1")
    held = Position("ours", "SPY", CALL, 10, 2.0, 3.0, 1.4, "open", bought, 2.0, bought, exited=0)
    journal.save_position(held, "2026-12-01")  # what a booked BOT fill leaves
    broker = FakeBroker()
    exits = ExpiryExits(
        broker,  # type: ignore[arg-type]
        journal,
        SessionBook(broker, nyse()),  # type: ignore[arg-type]
        exit_before_expiry_min=15,
        account="DU1",
    )
    return exits, broker, journal


def step(exits: ExpiryExits, ts: float) -> None:
    asyncio.run(exits.step(ts))


def test_before_the_exit_time_nothing_happens(setup):
    exits, broker, _ = setup
    broker.held = [position()]
    broker.working = [order(2, "ours"), order(3, "ours", limit=1.4)]
    step(exits, FRIDAY_1550.timestamp() - 6 * 60)  # 15:44
    assert broker.placed == [] and broker.cancelled == []


def test_at_the_exit_time_the_brackets_exits_give_way_to_a_sale_at_the_bid(setup):
    exits, broker, journal = setup
    broker.held = [position()]
    broker.working = [
        order(2, "ours"),
        order(3, "ours", limit=1.4),
        order(9, "manual-order"),
    ]  # not ours: stays
    step(exits, FRIDAY_1550.timestamp())
    assert broker.cancelled == [2, 3]
    assert broker.placed == []  # not while they may still fill: both would sell
    step(exits, FRIDAY_1550.timestamp() + 30)  # they are gone now
    assert broker.placed == [(CALL.key, "SELL", 10, 2.40, "ours:expiry")]
    row = journal._db.execute(
        "SELECT intent_id, status, broker_order_id, details FROM orders"
    ).fetchone()
    assert (row["intent_id"], row["status"], row["broker_order_id"]) == (
        "ours:expiry",
        "submitted",
        101,
    )
    # a second cycle while it works places nothing more
    step(exits, FRIDAY_1550.timestamp() + 60)
    assert len(broker.placed) == 1


def test_a_falling_bid_reprices_the_exit(setup):
    exits, broker, _ = setup
    broker.held = [position()]
    step(exits, FRIDAY_1550.timestamp())
    broker.bid = 2.10
    step(exits, FRIDAY_1550.timestamp() + 60)
    assert broker.cancelled == [101]
    assert [p[3] for p in broker.placed] == [2.40]  # the cancel first ...
    step(exits, FRIDAY_1550.timestamp() + 90)
    assert [p[3] for p in broker.placed] == [2.40, 2.10]  # ... then the new price


def test_positions_not_bought_by_the_bot_are_never_touched(setup):
    exits, broker, _ = setup
    other = OptionContract("SPY", "20261204", 700.0, Right.CALL)
    broker.held = [position(other)]
    broker.working = [order(5, "manual", contract=other)]
    step(exits, FRIDAY_1550.timestamp())
    assert broker.placed == [] and broker.cancelled == []


def test_no_bid_waits_for_the_next_cycle(setup):
    exits, broker, _ = setup
    broker.held = [position()]
    broker.bid = math.nan
    step(exits, FRIDAY_1550.timestamp())
    assert broker.placed == []


def test_a_cancel_only_another_client_id_may_make_is_an_error_once(setup, caplog):
    # Given the bracket's exits placed under another client id (a restart that landed there)
    exits, broker, _ = setup
    broker.held = [position()]
    broker.working = [order(2, "ours")]

    async def refuse(order_id: int) -> None:
        from supervisor.broker.base import BrokerError

        raise BrokerError(f"order {order_id} was placed by client id 1")

    broker.cancel_order = refuse
    with caplog.at_level("INFO", logger="supervisor.trading.live_exits"):
        for n in range(3):  # the guard tries every 30 s inside the window
            step(exits, FRIDAY_1550.timestamp() + 30 * n)
    failed = [r.levelname for r in caplog.records if "failed" in r.getMessage()]
    assert failed == ["ERROR", "INFO", "INFO"]
