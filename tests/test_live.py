"""The live order lifecycle against a fake broker: statuses by permId, fills into positions,
timeouts, the kill switch, net short, and the start-up reconcile."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from common.messages import OptionContract, OrderIntent, Right, Signal
from supervisor.broker.base import BrokerError, BrokerPosition, Fill, OpenOrder
from supervisor.journal.order_status import OrderStatus
from supervisor.journal.records import Position
from supervisor.journal.store import Journal
from supervisor.trading.live import LiveBook
from supervisor.trading.live_positions import COMMISSION_WAIT_S, LivePositions
from supervisor.trading.live_reconcile import reconcile

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
        self.refresh_fails = False

    async def refresh_orders(self) -> None:
        if self.refresh_fails:
            raise BrokerError("timeout")

    def open_orders(self) -> list[OpenOrder]:
        return list(self.open)

    def fills(self) -> list[Fill]:
        return list(self.executions)

    def positions(self) -> list[BrokerPosition]:
        return list(self.held)

    async def cancel_order(self, order_id: int) -> None:
        self.cancelled.append(order_id)
        self.open = [o for o in self.open if o.order_id != order_id]


def order(
    order_id: int,
    ref: str,
    status: str = "Submitted",
    parent_id: int = 0,
    perm_id: int = 0,
    order_type: str = "LMT",
    client_id: int = 1,
) -> OpenOrder:
    return OpenOrder(
        order_id,
        ref,
        status,
        "BUY" if not parent_id else "SELL",
        5.0,
        order_type,
        symbol="SPY",
        sec_type="OPT",
        expiry="20260109",
        strike=680.0,
        right="C",
        perm_id=perm_id,
        parent_id=parent_id,
        client_id=client_id,
    )


class Events:
    def __init__(self) -> None:
        self.changes: list[Position] = []
        self.short: list[tuple[str, int]] = []


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def setup(tmp_path, events):
    journal = Journal(tmp_path / "j.sqlite")
    contract = OptionContract("SPY", "20260109", 680.0, Right.CALL)
    intent = OrderIntent("ours", 1, "SPY", contract, Signal.BUY, 2.0, 3.0, 1.4, 2.0, 0.5, ())
    journal.record_intent(intent, DAY)
    row = journal.orders.record("ours", "live", OrderStatus.SUBMITTED, 5, T0, broker_order_id=11)
    journal.orders.update(
        row,
        OrderStatus.SUBMITTED,
        T0,
        details={"order_ids": [11, 12, 13], "perm_ids": [911, 912, 913]},
    )
    broker = FakeLiveBroker()
    positions = LivePositions(
        broker,  # type: ignore[arg-type]
        journal,
        lambda ts: DAY,
        events.changes.append,
        lambda p, n: events.short.append((p.intent_id, n)),
    )
    positions.opened(intent, 5, T0)
    return LiveBook(broker, journal, 300, positions), broker, journal, row  # type: ignore[arg-type]


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
    book, broker, journal, _ = setup
    broker.open = [order(11, "ours"), order(40, "someone-else")]
    found = reconcile(broker, journal, T0)
    assert len(found.problems) == 1 and "40" in found.problems[0]
    assert "left alone" in found.problems[0]
    assert broker.cancelled == []


# --- orders followed by permId, across client ids --------------------------------------------


def test_an_order_is_followed_by_perm_id_after_a_reconnect_under_another_client_id(setup):
    book, broker, journal, row = setup
    journal.orders.update(row, OrderStatus.SUBMITTED, T0, perm_id=911)
    # the same order, now listed with the id another client id would see
    broker.open = [order(7, "ours", perm_id=911, client_id=2)]
    step(book, T0 + 10)
    assert statuses(journal) == ["working"]  # not mistaken for gone
    broker.open = [order(11, "someone", perm_id=4242)]  # an order id clash is no match
    step(book, T0 + 20)
    assert statuses(journal) == ["done"]


def test_nothing_is_marked_done_after_a_refresh_that_failed(setup):
    book, broker, journal, _ = setup
    broker.open = [order(11, "ours")]
    step(book, T0 + 10)
    broker.refresh_fails, broker.open = True, []
    step(book, T0 + 20)
    assert statuses(journal) == ["working"]


# --- fills drive positions -------------------------------------------------------------------


def fill(
    exec_id: str,
    side: str,
    shares: float,
    price: float,
    ts: float,
    commission: float | None = 1.0,
    order_id: int = 11,
    perm_id: int = 0,
) -> Fill:
    return Fill(exec_id, order_id, "ours", side, shares, price, ts, commission, perm_id)


def position(journal: Journal) -> Position:
    held = journal.position("ours")
    assert held is not None
    return held


def test_entry_and_exit_fills_open_reduce_and_close_the_position_net_of_commissions(setup, events):
    book, broker, journal, _ = setup
    broker.executions = [fill("e1", "BOT", 3, 2.00, T0 + 1), fill("e2", "BOT", 2, 2.10, T0 + 2)]
    step(book, T0 + 5)
    p = position(journal)
    assert (p.status, p.quantity, p.held) == ("open", 5, 5)
    assert p.entry_price == pytest.approx(2.04) and p.commission == 2.0
    # the take-profit (perm 912) fills in two parts
    broker.executions += [fill("e3", "SLD", 2, 3.00, T0 + 60, order_id=12, perm_id=912)]
    step(book, T0 + 61)
    p = position(journal)
    assert (p.status, p.held, p.exited) == ("open", 3, 2)
    # IBKR's way: the sale's commission, and the entry's 2.00 pro rata (2 of 5)
    assert p.realized_pnl == pytest.approx((3.00 - 2.04) * 2 * 100 - 1.0 - 2.0 * 2 / 5)
    broker.executions += [fill("e4", "SLD", 3, 3.00, T0 + 70, order_id=12, perm_id=912)]
    step(book, T0 + 71)
    p = position(journal)
    assert (p.status, p.exit_reason, p.held) == ("closed", "take_profit", 0)
    assert p.realized_pnl == pytest.approx((3.00 - 2.04) * 5 * 100 - 4.0)
    assert [c.status for c in events.changes] == ["open", "closed"]


def test_the_stop_is_told_apart_from_the_take_profit_by_its_order(setup):
    book, broker, journal, _ = setup
    broker.executions = [
        fill("e1", "BOT", 5, 2.00, T0 + 1),
        fill("e2", "SLD", 5, 1.40, T0 + 9, order_id=13),
    ]
    step(book, T0 + 10)
    assert position(journal).exit_reason == "stop_loss"


def test_selling_more_than_was_bought_is_reported_as_net_short(setup, events):
    book, broker, journal, _ = setup
    broker.executions = [
        fill("e1", "BOT", 5, 2.00, T0 + 1),
        fill("e2", "SLD", 5, 3.00, T0 + 9, order_id=12),
        fill("e3", "SLD", 5, 1.40, T0 + 9.5, order_id=13),
    ]  # both exits
    step(book, T0 + 10)
    assert events.short == [("ours:short", 5)]
    # the position closed on the 5 it held, its P&L theirs alone: (3.00 - 2.00) x 5 x 100
    # less the two fills' commissions (the stop's counts toward the short)
    p = position(journal)
    assert (p.status, p.exited, p.exit_price) == ("closed", 5, 3.00)
    assert p.realized_pnl == pytest.approx(500.0 - 2 * 1.0)
    # and the 5 sold beyond it are a short row of their own, open at the stop's price
    short = journal.position("ours:short")
    assert short is not None
    assert (short.status, short.quantity, short.entry_price) == ("short", 5, 1.40)
    assert short in journal.open_positions()


def test_a_short_row_closes_once_the_account_lists_the_contract_no_longer_short(setup):
    book, broker, journal, _ = setup
    broker.executions = [
        fill("e1", "BOT", 5, 2.00, T0 + 1),
        fill("e2", "SLD", 5, 3.00, T0 + 9, order_id=12),
        fill("e3", "SLD", 5, 1.40, T0 + 9.5, order_id=13),
    ]
    step(book, T0 + 10)
    c = position(journal).contract
    held = BrokerPosition("DU111", c.symbol, "OPT", -5, 140.0, 1, c.expiry, c.strike, c.right.value)
    # while the account lists it short (or has not listed it yet), the row stays short
    broker.held = [held]
    step(book, T0 + 20)
    assert journal.position("ours:short").status == "short"
    # bought back by hand: the client library drops a position gone to 0 from its list;
    # right after the fill that is not yet a sign (the update comes later), a minute on it is
    broker.held = []
    step(book, T0 + 30)
    assert journal.position("ours:short").status == "short"
    step(book, T0 + 80)
    closed = journal.position("ours:short")
    assert (closed.status, closed.closed_ts) == ("closed", T0 + 80)
    assert closed not in journal.open_positions()


def test_an_entry_and_its_exit_in_the_same_second_are_booked_entry_first(setup, events):
    # Given IBKR's execution times, whole seconds: the entry and its take-profit in one
    # second, the sale's exec id sorting first and, as a replay may list them, listed first
    book, broker, journal, _ = setup
    broker.executions = [
        fill("a-2", "SLD", 5, 3.00, T0 + 9, order_id=12, perm_id=912),
        fill("b-1", "BOT", 5, 2.00, T0 + 9),
    ]
    step(book, T0 + 10)
    # Then the purchase is booked before the sale it closes: closed, never net short
    p = position(journal)
    assert (p.status, p.exit_reason, p.held) == ("closed", "take_profit", 0)
    assert events.short == []


def test_a_fill_waits_for_its_commission_report_then_is_booked_once(setup):
    book, broker, journal, _ = setup
    broker.executions = [fill("e1", "BOT", 5, 2.00, T0 + 1, commission=None)]
    step(book, T0 + 2)
    assert position(journal).status == "pending"  # the report is on its way
    broker.executions = [fill("e1", "BOT", 5, 2.00, T0 + 1, commission=1.3)]
    step(book, T0 + 3)
    p = position(journal)
    assert (p.status, p.commission) == ("open", 1.3)
    broker.executions = [fill("e1", "BOT", 5, 2.00, T0 + 1, commission=1.3)]
    step(book, T0 + 4)
    assert position(journal).quantity == 5  # replayed, not booked twice


def test_without_a_commission_report_a_fill_is_booked_after_the_wait(setup):
    book, broker, journal, _ = setup
    broker.executions = [fill("e1", "BOT", 5, 2.00, T0 + 1, commission=None)]
    step(book, T0 + 2)  # first seen: the wait is timed on our clock, not the fill's stamp
    assert position(journal).status == "pending"
    step(book, T0 + 2 + COMMISSION_WAIT_S + 1)
    assert (position(journal).status, position(journal).commission) == ("open", 0.0)


def test_an_entry_gone_without_a_fill_cancels_its_position(setup):
    book, broker, journal, _ = setup
    broker.open = [order(11, "ours")]
    step(book, T0 + 5)
    broker.open = []  # cancelled at IBKR (a DAY order at the close, say)
    step(book, T0 + 10)
    p = position(journal)
    assert (p.status, p.exit_reason) == ("closed", "cancelled")


# --- the start-up reconcile adopts what a crash left behind ----------------------------------


def left_as(journal: Journal, row: int, status: str) -> None:
    """The row as a crash or a lost answer leaves it, written into the file directly (the
    journal allows no submitted row to go back to sending)."""
    journal._db.execute("UPDATE orders SET status = ? WHERE id = ?", (status, row))


def test_a_row_left_sending_by_a_crash_is_adopted_from_the_open_orders(setup):
    _book, broker, journal, row = setup
    left_as(journal, row, "sending")  # journaled, then killed before the answer
    broker.open = [
        order(21, "ours", perm_id=921),
        order(22, "ours", parent_id=21, perm_id=922),
        order(23, "ours", parent_id=21, perm_id=923, order_type="STP"),
    ]
    found = reconcile(broker, journal, T0 + 30)
    (adopted,) = journal.orders.live(("working",))
    assert (adopted.broker_order_id, adopted.perm_id) == (21, 921)
    assert len(found.adopted) == 1 and found.problems == []
    (details,) = [r.details for r in journal.orders.of_intent("ours")]
    assert details["order_ids"] == [21, 22, 23] and details["perm_ids"] == [921, 922, 923]


def test_a_row_left_sending_with_nothing_at_ibkr_is_marked_not_sent(setup):
    _book, broker, journal, row = setup
    left_as(journal, row, "unconfirmed")
    found = reconcile(broker, journal, T0 + 30)
    assert statuses(journal) == ["not_sent"]
    assert any("never sent" in p for p in found.problems)


def test_a_position_the_journal_does_not_know_is_reported(setup):
    _book, broker, journal, _ = setup
    broker.held = [BrokerPosition("DU111", "QQQ", "OPT", 2, 150.0, 1, "20260109", 600.0, "P")]
    found = reconcile(broker, journal, T0)
    assert any("QQQ" in p and "not in the journal" in p for p in found.problems)


def test_an_entry_cancelled_for_its_timeout_closes_its_position_once_gone(setup):
    book, broker, journal, _ = setup
    broker.open = [order(11, "ours")]
    step(book, T0 + 301)  # cancelled: the fake broker drops it from the open orders
    step(book, T0 + 302)
    p = position(journal)
    assert (broker.cancelled, p.status, p.exit_reason) == ([11], "closed", "cancelled")


def test_open_live_positions_are_marked_at_the_brokers_price(setup):
    book, broker, journal, _ = setup
    broker.executions = [fill("e1", "BOT", 5, 2.00, T0 + 1)]
    broker.held = [
        BrokerPosition(
            "DU111", "SPY", "OPT", 5, 200.2, 1, "20260109", 680.0, "C", market_price=2.30
        )
    ]
    step(book, T0 + 5)
    p = position(journal)
    assert p.mark == 2.30 and p.unrealized_pnl == pytest.approx(0.30 * 5 * 100)


# --- what the review found: IBKR's view wins over the journal's and ib_insync's ------------


def test_a_bracket_of_unknown_fate_is_followed_as_soon_as_ibkr_lists_it(setup):
    book, broker, journal, row = setup
    left_as(journal, row, "unconfirmed")  # the answer was lost
    broker.open = [order(31, "ours", perm_id=931)]
    step(book, T0 + 5, halted=True)  # the kill switch, at runtime (not only at the next start)
    assert broker.cancelled == [31]
    assert statuses(journal) == ["cancelled"]


def test_a_refused_bracket_that_ibkr_works_after_all_is_followed_again(setup):
    book, broker, journal, row = setup
    left_as(journal, row, "rejected")
    broker.open = [order(31, "ours", perm_id=931)]
    step(book, T0 + 5)
    (followed,) = journal.orders.live(("working",))
    assert (followed.id, followed.perm_id) == (row, 931)


def test_a_sale_waits_behind_its_entry_until_the_entry_is_booked(setup, events):
    book, broker, journal, _ = setup
    broker.executions = [
        fill("e1", "BOT", 5, 2.00, T0 + 1, commission=None),
        fill("e2", "SLD", 5, 3.00, T0 + 2, order_id=12),
    ]
    step(book, T0 + 3)
    assert position(journal).status == "pending" and events.short == []
    broker.executions[0] = fill("e1", "BOT", 5, 2.00, T0 + 1, commission=1.0)
    step(book, T0 + 4)
    assert (position(journal).status, events.short) == ("closed", [])


def test_an_entry_filled_unseen_opens_from_the_accounts_position(setup):
    # Given an entry that filled while the bot was down, restarted the next day: IBKR
    # replays only today's executions, so there is no fill, but the account holds it
    book, broker, journal, _ = setup
    broker.open = [order(11, "ours")]
    step(book, T0 + 5)
    broker.open = []
    broker.held = [BrokerPosition("DU111", "SPY", "OPT", 5, 201.3, 1, "20260109", 680.0, "C")]
    step(book, T0 + 86_400)
    p = position(journal)
    assert (p.status, p.held, p.entry_price) == ("open", 5, pytest.approx(2.013))
    assert journal.bought_contracts() == {"SPY 20260109 680C": "ours"}  # the expiry exit's


def test_an_incomplete_refresh_concludes_nothing_from_an_order_missing(setup):
    _book, broker, journal, row = setup
    left_as(journal, row, "unconfirmed")
    found = reconcile(broker, journal, T0 + 30, complete=False)
    assert statuses(journal) == ["unconfirmed"]  # not concluded "never sent"
    assert len(found.problems) == 1 and "looked for again" in found.problems[0]
