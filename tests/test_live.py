"""The live order lifecycle against a fake broker: statuses, fills, timeouts, kill switch."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from common.messages import OptionContract, OrderIntent, Right, Signal
from supervisor.broker.base import BrokerPosition, Fill, OpenOrder
from supervisor.journal.store import Journal
from supervisor.trading.live import LiveBook

pytestmark = pytest.mark.timeout(30)

T0 = 1_767_886_200.0
DAY = "2026-01-08"


class FakeLiveBroker:
    """The order side of the Broker boundary, answered from lists a test fills in."""

    def __init__(self) -> None:
        self.open: list[OpenOrder] = []
        self.executions: list[Fill] = []
        self.cancelled: list[int] = []
        self.held: list[BrokerPosition] = []

    def open_orders(self) -> list[OpenOrder]:
        return list(self.open)

    def fills(self) -> list[Fill]:
        return list(self.executions)

    def positions(self) -> list[BrokerPosition]:
        return list(self.held)

    async def cancel_order(self, order_id: int) -> None:
        self.cancelled.append(order_id)
        self.open = [o for o in self.open if o.order_id != order_id]


def order(order_id: int, ref: str, status: str = "Submitted", parent_id: int = 0) -> OpenOrder:
    return OpenOrder(order_id, ref, status, "BUY" if not parent_id else "SELL", 5.0, "LMT",
                     parent_id=parent_id)


@pytest.fixture
def setup(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    contract = OptionContract("SPY", "20260109", 680.0, Right.CALL)
    intent = OrderIntent("ours", 1, "SPY", contract, Signal.BUY, 2.0, 3.0, 1.4, 2.0, 0.5, ())
    journal.record_intent(intent, DAY)
    row = journal.record_order("ours", "live", "submitted", 5, T0, broker_order_id=11)
    broker = FakeLiveBroker()
    return LiveBook(broker, journal, entry_timeout_s=300), broker, journal, row


def step(book: LiveBook, ts: float, halted: bool = False) -> None:
    asyncio.run(book.step(ts, halted))


def statuses(journal: Journal) -> list[str]:
    return [r["status"] for r in journal._db.execute("SELECT status FROM orders ORDER BY id")]


def test_status_follows_the_broker_then_done_when_gone(setup):
    book, broker, journal, _ = setup
    broker.open = [order(11, "ours"), order(12, "ours", parent_id=11)]
    step(book, T0 + 10)
    assert statuses(journal) == ["working"]
    broker.open = [order(12, "ours", parent_id=11)]  # the entry filled: only the exits remain
    step(book, T0 + 20)
    assert statuses(journal) == ["done"]
    assert broker.cancelled == []


@pytest.mark.parametrize("age_s, cancelled", [(299.0, []), (301.0, [11])])
def test_an_unfilled_entry_is_cancelled_after_the_timeout(setup, age_s, cancelled):
    book, broker, journal, _ = setup
    broker.open = [order(11, "ours")]
    step(book, T0 + age_s)
    assert broker.cancelled == cancelled
    assert statuses(journal) == (["cancelled"] if cancelled else ["working"])


def test_the_kill_switch_cancels_open_entries_at_once(setup):
    book, broker, journal, _ = setup
    broker.open = [order(11, "ours"), order(12, "ours", parent_id=11)]
    step(book, T0 + 5, halted=True)
    assert broker.cancelled == [11]  # the entry only: never a child exit
    assert statuses(journal) == ["cancelled"]


def test_fills_are_journaled_once_and_foreign_ones_ignored(setup):
    book, broker, journal, _ = setup
    fill = Fill("e1", 11, "ours", "BOT", 5.0, 1.98, T0 + 3, 3.25)
    foreign = replace(fill, exec_id="e2", order_ref="manual")
    broker.executions = [fill, foreign]
    step(book, T0 + 5)
    step(book, T0 + 6)  # IBKR replays executions: still one row
    rows = journal._db.execute("SELECT intent_id, quantity, price, commission FROM fills")
    assert [tuple(r) for r in rows] == [("ours", 5, 1.98, 3.25)]


def test_reconcile_reports_orders_the_journal_does_not_know_and_leaves_them(setup):
    book, broker, _, _ = setup
    broker.open = [order(11, "ours"), order(40, "someone-else")]
    problems = book.reconcile(T0)
    assert len(problems) == 1 and "40" in problems[0] and "left alone" in problems[0]
    assert broker.cancelled == []
