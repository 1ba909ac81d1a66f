"""Whole brackets or none, at start (supervisor/trading/live_brackets.py), against a fake broker:
an exit that never reached IBKR, or was cancelled, is placed again or the position closed."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from common.calendar import nyse
from common.messages import OptionContract, OptionQuote, OrderIntent, Right, Signal
from supervisor.broker.base import BrokerError, BrokerPosition, Fill, OpenOrder
from supervisor.journal.order_status import OrderStatus
from supervisor.journal.store import Journal
from supervisor.trading.live_brackets import BracketCheck
from supervisor.trading.live_exits import ExpiryExits
from supervisor.trading.live_positions import LivePositions
from supervisor.trading.sessions import SessionBook
from tests.sessions import TUESDAY_MORNING

pytestmark = pytest.mark.timeout(30)

ID = "0123456789abcdef"
T0 = TUESDAY_MORNING.timestamp()
DAY = "2026-12-01"
PUT = OptionContract("QQQ", "20261204", 606.0, Right.PUT)


def part(
    order_id: int,
    action: str,
    order_type: str,
    limit: float = math.nan,
    aux: float = math.nan,
    perm_id: int | None = None,
    filled: float = 0.0,
    ref: str = ID,
) -> OpenOrder:
    return OpenOrder(
        order_id,
        ref,
        "Submitted",
        action,
        4.0,
        order_type,
        "QQQ",
        "OPT",
        PUT.expiry,
        PUT.strike,
        "P",
        limit,
        aux,
        900 + order_id if perm_id is None else perm_id,
        filled=filled,
        parent_id=0 if action == "BUY" else 1,
        oca_group=f"oca-{ID}",
        account="DU1",
        client_id=7,
    )


ENTRY = part(1, "BUY", "LMT", limit=0.50)
TP = part(2, "SELL", "LMT", limit=0.75)
STOP = part(3, "SELL", "STP", aux=0.35)


class FakeBroker:
    def __init__(self) -> None:
        self.working: list[OpenOrder] = []
        self.held: list[BrokerPosition] = []
        self.executions: list[Fill] = []
        self.cancelled: list[int] = []
        self.exits: list[tuple[str, str, int, float, str, str]] = []
        self.sold: list[tuple[str, int, float, str]] = []
        self.refuse_cancel = False

    def open_orders(self) -> list[OpenOrder]:
        return list(self.working)

    def positions(self) -> list[BrokerPosition]:
        return list(self.held)

    def fills(self) -> list[Fill]:
        return list(self.executions)

    async def cancel_order(self, order_id: int) -> None:
        if self.refuse_cancel:
            raise BrokerError(f"order {order_id} was placed by client id 7")
        self.cancelled.append(order_id)
        self.working = [o for o in self.working if o.order_id != order_id]

    async def place_exit(
        self,
        contract: OptionContract,
        order_type: str,
        quantity: int,
        price: float,
        account: str,
        order_ref: str,
        oca_group: str,
    ) -> tuple[int, int]:
        self.exits.append((contract.key, order_type, quantity, price, order_ref, oca_group))
        return 50, 950

    async def place_order(
        self,
        contract: OptionContract,
        action: str,
        quantity: int,
        limit: float,
        account: str,
        order_ref: str,
    ) -> int:
        self.sold.append((action, quantity, limit, order_ref))
        return 60

    async def option_quotes(self, contracts: Sequence[OptionContract]):
        return tuple(OptionQuote(c, bid=0.40, ask=0.45) for c in contracts)

    async def regular_hours(self, symbol: str):
        return None


@pytest.fixture
def desk(tmp_path: Path):
    """A journal that sent ID's bracket (4 puts, take-profit 0.75, stop 0.35), a broker."""
    journal = Journal(tmp_path / "j.sqlite")
    journal.record_intent(
        OrderIntent(ID, 1, "QQQ", PUT, Signal.SELL, 0.50, 0.75, 0.35, 0.50, 0.5, ()), DAY
    )
    row = journal.orders.record(ID, "live", OrderStatus.SUBMITTED, 4, T0, broker_order_id=1)
    journal.orders.update(
        row,
        OrderStatus.SUBMITTED,
        T0,
        perm_id=901,
        details={"order_ids": [1, 2, 3], "perm_ids": [901, 902, 903]},
    )
    broker = FakeBroker()
    positions = LivePositions(
        broker,  # type: ignore[arg-type]
        journal,
        lambda ts: DAY,
        lambda p: None,
        lambda p, n: None,
    )
    positions.opened(journal.load_intent(ID), 4, T0)  # type: ignore[arg-type]
    exits = ExpiryExits(
        broker,  # type: ignore[arg-type]
        journal,
        SessionBook(broker, nyse()),  # type: ignore[arg-type]
        exit_before_expiry_min=15,
        account="DU1",
    )
    return journal, broker, positions, exits


def bought(broker: FakeBroker, positions: LivePositions) -> None:
    """The entry filled: 4 held, its execution booked."""
    broker.executions = [Fill("e1", 1, ID, "BOT", 4, 0.50, T0 + 5, 1.0, 901)]
    broker.held = [BrokerPosition("DU1", "QQQ", "OPT", 4, 51.0, 1, PUT.expiry, PUT.strike, "P")]
    positions.follow(T0 + 6)


def check(desk, how: str = "replace"):
    journal, broker, positions, exits = desk
    found = asyncio.run(
        BracketCheck(
            broker,
            journal,
            positions,
            exits,
            how,
            "DU1",
        ).run(T0 + 60)
    )
    return found


def test_a_held_position_without_its_take_profit_gets_it_placed_again(desk):
    journal, broker, positions, _exits = desk
    # Given the entry filled and only the stop at IBKR (the take-profit never arrived)
    bought(broker, positions)
    broker.working = [STOP]
    found = check(desk)
    # Then the take-profit is placed again, for what is held, at the journal's price, GTC in
    # the bracket's OCA group, and the row names it where the lost one was
    assert broker.exits == [("QQQ 20261204 606P", "LMT", 4, 0.75, ID, f"oca-{ID}")]
    assert found.problems == [] and "take-profit placed again" in found.repaired[0]
    (row,) = journal.orders.of_intent(ID)
    assert row.details["order_ids"] == [1, 50, 3]
    assert row.details["perm_ids"] == [901, 950, 903]
    # and its fill is booked as the take-profit it is
    broker.executions.append(Fill("e2", 50, ID, "SLD", 4, 0.75, T0 + 90, 1.0, 950))
    positions.follow(T0 + 91)
    p = journal.position(ID)
    assert p is not None and (p.status, p.exit_reason) == ("closed", "take_profit")


def test_with_close_the_position_is_sold_instead(desk):
    journal, broker, positions, exits = desk
    bought(broker, positions)
    broker.working = [TP]  # the stop was cancelled
    found = check(desk, "close")
    assert broker.exits == [] and ID in exits.close_now and "closed" in found.repaired[0]
    # Then the expiry exit's way: the other exit cancelled first, then a sale at the bid
    asyncio.run(exits.step(T0 + 61))
    assert broker.cancelled == [2] and broker.sold == []
    asyncio.run(exits.step(T0 + 62))
    assert broker.sold == [("SELL", 4, 0.40, f"{ID}:expiry")]


def test_an_unfilled_entry_without_both_exits_is_cancelled(desk):
    journal, broker, _positions, _exits = desk
    broker.working = [ENTRY, STOP]
    found = check(desk)
    assert broker.cancelled == [1] and broker.exits == []
    assert "entry is cancelled" in found.repaired[0]
    assert [r.status for r in journal.orders.of_intent(ID)] == ["cancelled"]


@pytest.mark.parametrize(
    "working, refuse, words",
    [
        ([replace(ENTRY, filled=2.0), STOP], False, "2 of 4 filled"),  # a human decides
        ([ENTRY, STOP], True, "cannot be cancelled"),  # another client id's entry
        ([ENTRY, replace(TP, perm_id=0), STOP], False, "no permId"),  # not acknowledged yet
    ],
)
def test_what_cannot_be_made_whole_is_a_problem_and_nothing_is_sent(desk, working, refuse, words):
    _journal, broker, _positions, _exits = desk
    broker.working, broker.refuse_cancel = working, refuse
    found = check(desk)
    assert len(found.problems) == 1 and words in found.problems[0], found.problems
    assert broker.exits == [] and found.repaired == []


def test_a_missing_exit_whose_price_the_journal_lacks_is_not_guessed(tmp_path, desk):
    journal, broker, positions, _exits = desk
    # Given an intent adopted from the broker without its stop: its price is unknown
    journal._db.execute("UPDATE intents SET stop_loss = NULL WHERE intent_id = ?", (ID,))
    journal._db.execute("UPDATE positions SET stop_loss = NULL WHERE intent_id = ?", (ID,))
    bought(broker, positions)
    broker.working = [TP]
    found = check(desk)
    assert broker.exits == [] and "not in the journal" in found.problems[0]


def test_a_whole_bracket_and_a_position_sold_out_are_left_alone(desk):
    _journal, broker, positions, _exits = desk
    broker.working = [ENTRY, TP, STOP]
    assert check(desk).problems == [] and broker.cancelled == []
    bought(broker, positions)
    broker.working, broker.held = [], []  # sold by hand: nothing held, no exits needed
    found = check(desk)
    assert (found.problems, found.repaired, broker.exits) == ([], [], [])
