"""Orders of ours at IBKR are adopted whatever the journal holds (supervisor/trading/
live_adopt.py, live_reconcile.py, live.py): a journal lost, replaced or fresh does not make
them someone else's, and an adopted row names all three parts of its bracket."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from common.messages import OptionContract, OrderIntent, Right, Signal
from supervisor.broker.base import BrokerError, BrokerPosition, Fill, OpenOrder
from supervisor.journal.store import Journal
from supervisor.trading.broker_refs import ADOPTED
from supervisor.trading.live import LiveBook
from supervisor.trading.live_positions import LivePositions
from supervisor.trading.live_reconcile import reconcile
from tests.test_live import FakeLiveBroker

pytestmark = pytest.mark.timeout(30)

T0 = 1_767_886_200.0
DAY = "2026-01-08"
ID = "0123456789abcdef"
CALL = OptionContract("SPY", "20260109", 680.0, Right.CALL)


def part(
    order_id: int,
    action: str,
    order_type: str,
    perm_id: int | None = None,
    parent_id: int = 0,
    limit: float = 2.0,
    aux: float = 0.0,
    ref: str = ID,
    client_id: int = 1,
) -> OpenOrder:
    return OpenOrder(
        order_id,
        ref,
        "Submitted",
        action,
        5.0,
        order_type,
        "SPY",
        "OPT",
        "20260109",
        680.0,
        "C",
        limit,
        aux,
        900 + order_id if perm_id is None else perm_id,
        parent_id=parent_id,
        oca_group=f"oca-{ref}",
        client_id=client_id,
    )


BRACKET = [
    part(21, "BUY", "LMT", limit=2.0),
    part(22, "SELL", "LMT", parent_id=21, limit=3.0),
    part(23, "SELL", "STP", parent_id=21, aux=1.4),
]


@pytest.fixture
def book(tmp_path: Path):
    journal = Journal(tmp_path / "j.sqlite")
    broker = FakeLiveBroker()
    positions = LivePositions(
        broker,  # type: ignore[arg-type]
        journal,
        lambda ts: DAY,
        lambda p: None,
        lambda p, n: None,
    )
    return LiveBook(broker, journal, 300, positions), broker, journal  # type: ignore[arg-type]


def test_a_bracket_of_ours_the_journal_does_not_know_is_adopted_not_left_alone(book):
    # Given a fresh journal (the old one deleted) and IBKR working a bracket of ours
    _book, broker, journal = book
    broker.open = list(BRACKET)
    found = reconcile(broker, journal, T0, day=DAY)
    # Then it is adopted, not "left alone": the intent journaled from the broker's orders,
    # its decision "adopted", a followed row with all three parts, a pending position
    assert found.problems == [] and len(found.adopted) == 1
    intent = journal.load_intent(ID)
    assert intent is not None and intent.reasons == (ADOPTED,)
    assert (intent.contract.key, intent.entry_limit, intent.take_profit, intent.stop_loss) == (
        "SPY 20260109 680C",
        2.0,
        3.0,
        1.4,
    )
    assert journal.sent_intents(DAY) == {ID}
    rule = journal._db.execute("SELECT rule FROM decisions").fetchone()[0]
    assert rule == "adopted"
    (row,) = journal.orders.live(("working",))
    assert (row.broker_order_id, row.perm_id) == (21, 921)
    (details,) = [r.details for r in journal.orders.of_intent(ID)]
    assert details["order_ids"] == [21, 22, 23] and details["perm_ids"] == [921, 922, 923]
    p = journal.position(ID)
    assert p is not None and (p.status, p.quantity) == ("pending", 5)
    # and the next start finds it followed
    assert reconcile(broker, journal, T0 + 60, day=DAY).adopted == []


def test_the_users_own_orders_are_still_left_alone(book):
    _book, broker, journal = book
    broker.open = [part(40, "BUY", "LMT", ref="hedge-spy")]
    found = reconcile(broker, journal, T0, day=DAY)
    assert "left alone" in found.problems[0] and journal.load_intent("hedge-spy") is None


def test_an_order_without_a_perm_id_is_not_adopted_until_ibkr_lists_it(book):
    lb, broker, journal = book
    broker.open = [part(21, "BUY", "LMT", perm_id=0), *BRACKET[1:]]
    found = reconcile(broker, journal, T0, day=DAY)
    assert "no permId" in found.problems[0] and journal.load_intent(ID) is None
    broker.open = list(BRACKET)  # acknowledged: the next cycle's refresh lists it
    asyncio.run(lb.step(T0 + 5, False))
    assert journal.load_intent(ID) is not None and journal.orders.live(("working",))


def test_exits_whose_entry_filled_unseen_are_adopted_with_their_position(book):
    # Given a fresh journal, the entry filled today (its execution listed) and its exits
    # working: the bracket's parent is no longer among the open orders
    lb, broker, journal = book
    broker.open = list(BRACKET[1:])
    broker.executions = [Fill("e1", 21, ID, "BOT", 5, 2.0, T0 - 30, 1.0, 921)]
    asyncio.run(lb.step(T0, False))
    # Then the intent and its row are journaled, the purchase booked
    p = journal.position(ID)
    assert p is not None and (p.status, p.held) == ("open", 5)
    (row,) = journal.orders.of_intent(ID)
    assert row.details["order_ids"] == [21, 22, 23]
    # and a stop-out is booked as one
    broker.executions.append(Fill("e2", 23, ID, "SLD", 5, 1.4, T0 + 30, 1.0, 923))
    asyncio.run(lb.step(T0 + 31, False))
    assert journal.position(ID).exit_reason == "stop_loss"


def test_a_row_left_sending_whose_entry_filled_gets_all_three_ids(book):
    # Given a row left "sending" by a crash, the entry filled meanwhile: only its exits are
    # listed (the trial that booked a stop-out as "closed": the row had no order ids)
    lb, broker, journal = book
    journal.record_intent(
        OrderIntent(ID, 1, "SPY", CALL, Signal.BUY, 2.0, 3.0, 1.4, 2.0, 0.5, ()), DAY
    )
    journal.orders.record(ID, "live", "sending", 5, T0)
    broker.open = list(BRACKET[1:])
    broker.executions = [
        Fill("e1", 21, ID, "BOT", 5, 2.0, T0 + 1, 1.0, 921),
        Fill("e2", 23, ID, "SLD", 5, 1.4, T0 + 9, 1.0, 923),
    ]
    reconcile(broker, journal, T0 + 10, day=DAY)
    lb.positions.follow(T0 + 11)
    (row,) = journal.orders.of_intent(ID)
    assert row.details["perm_ids"] == [0, 922, 923]
    assert journal.position(ID).exit_reason == "stop_loss"


def test_a_followed_row_no_longer_listed_and_never_executed_is_a_problem(book):
    _lb, broker, journal = book
    journal.record_intent(
        OrderIntent(ID, 1, "SPY", CALL, Signal.BUY, 2.0, 3.0, 1.4, 2.0, 0.5, ()), DAY
    )
    row = journal.orders.record(ID, "live", "submitted", 5, T0, broker_order_id=21)
    journal.orders.update(row, "working", T0, perm_id=921)
    found = reconcile(broker, journal, T0 + 60, adopt=False, day=DAY)
    assert any("no longer lists it" in p for p in found.problems)
    # executed (filled): not a problem
    broker.executions = [Fill("e1", 21, ID, "BOT", 5, 2.0, T0 + 1, 1.0, 921)]
    assert reconcile(broker, journal, T0 + 60, adopt=False, day=DAY).problems == []


def test_an_entry_another_client_id_placed_is_said_once_at_error(book, caplog):
    # Given an entry past its timeout that IBKR lets only its placing client id cancel
    lb, broker, journal = book
    journal.record_intent(
        OrderIntent(ID, 1, "SPY", CALL, Signal.BUY, 2.0, 3.0, 1.4, 2.0, 0.5, ()), DAY
    )
    row = journal.orders.record(ID, "live", "submitted", 5, T0, broker_order_id=21)
    journal.orders.update(row, "submitted", T0, perm_id=921)
    broker.open = list(BRACKET)

    async def refuse(order_id: int) -> None:
        raise BrokerError(f"order {order_id} was placed by client id 1")

    broker.cancel_order = refuse
    with caplog.at_level(logging.INFO, logger="supervisor.trading.live"):
        for n in range(3):
            asyncio.run(lb.step(T0 + 400 + n, False))
    failed = [r for r in caplog.records if "failed" in r.getMessage()]
    assert [r.levelno for r in failed] == [logging.ERROR, logging.INFO, logging.INFO]


def test_a_position_held_by_hand_stays_unknown(book):
    _lb, broker, journal = book
    broker.held = [BrokerPosition("DU1", "SPY", "OPT", 3, 200.0, 1, "20260109", 680.0, "C")]
    found = reconcile(broker, journal, T0, day=DAY)
    assert any("not in the journal" in p for p in found.problems)


def test_an_order_closing_exercised_shares_is_ours_and_never_adopted_as_a_bracket(book):
    # Given the sale of shares an exercise of intent ID delivered (the shares book's order)
    lb, broker, journal = book
    journal.record_intent(
        OrderIntent(ID, 1, "SPY", CALL, Signal.BUY, 2.0, 3.0, 1.4, 2.0, 0.5, ()), DAY
    )
    broker.open = [
        OpenOrder(50, f"{ID}:shares", "Submitted", "SELL", 500, "LMT", "SPY", "STK", perm_id=950)
    ]
    found = reconcile(broker, journal, T0, day=DAY)
    assert found.problems == [] and "shares" in found.ours[0]
    asyncio.run(lb.step(T0 + 400, False))  # past the entry timeout: nothing cancels it
    assert journal.orders.of_intent(f"{ID}:shares") == [] and broker.cancelled == []
