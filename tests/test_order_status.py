"""The order-status machine: the journal refuses a change of status the lifecycle never makes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from supervisor.journal.order_rows import ORDER_MODES
from supervisor.journal.order_status import (
    INITIAL,
    TRANSITIONS,
    IllegalTransition,
    OrderStatus,
    check_initial,
    check_transition,
)
from supervisor.journal.store import Journal

pytestmark = pytest.mark.timeout(30)

S = OrderStatus


def test_every_mode_has_its_statuses_written_down() -> None:
    assert set(TRANSITIONS) == set(INITIAL) == set(ORDER_MODES)
    for mode, table in TRANSITIONS.items():
        for old, new in table.items():
            assert old not in new, (mode, old)  # keeping one's status is always allowed


# every change of status supervisor/trading/*.py makes, by mode (grep OrderStatus there):
# the table must allow each (execution.py, live.py, live_adopt.py, live_reconcile.py,
# live_brackets.py, live_exits.py, live_shares.py)
MADE = {
    "live": [
        (S.SENDING, S.NOT_SENT),  # execution._place: a stop came first
        (S.SENDING, S.REJECTED),  # ... the gateway refused it
        (S.SENDING, S.UNCONFIRMED),  # ... no answer
        (S.SENDING, S.SUBMITTED),  # ... taken
        (S.SENDING, S.DONE),  # live_reconcile: found at IBKR (filled)
        (S.UNCONFIRMED, S.DONE),
        (S.SENDING, S.NOT_SENT),  # live_reconcile: nothing at IBKR carries it
        (S.UNCONFIRMED, S.NOT_SENT),
        (S.SENDING, S.WORKING),  # live_adopt: adopted
        (S.UNCONFIRMED, S.WORKING),
        (S.REJECTED, S.WORKING),
        (S.DONE, S.WORKING),  # live_adopt: revived
        (S.CANCELLED, S.WORKING),
        (S.SUBMITTED, S.WORKING),  # live.step
        (S.SUBMITTED, S.DONE),
        (S.WORKING, S.DONE),
        (S.SUBMITTED, S.CANCELLED),  # live.step's stale entries; live_brackets
        (S.WORKING, S.CANCELLED),
    ],
    "shares": [
        (S.SUBMITTED, S.ERROR),  # live_shares._place: the send failed
        (S.SUBMITTED, S.DONE),  # live_shares._unresolved
        (S.CANCELLING, S.DONE),
        (S.CANCELLING, S.CANCELLED),
        (S.SUBMITTED, S.EXPIRED),
        (S.SUBMITTED, S.CANCELLING),  # live_shares._cancel
    ],
}
STARTED = {
    "dry_run": [S.SIMULATED, S.ERROR],
    "whatif": [S.CHECKED, S.ERROR],
    "live": [S.SENDING, S.SUBMITTED, S.WORKING, S.DONE],
    "shares": [S.SUBMITTED],
}


def test_the_table_allows_every_change_the_code_makes() -> None:
    for mode, changes in MADE.items():
        for old, new in changes:
            check_transition(mode, old, new, "row 1")
    for mode, statuses in STARTED.items():
        for status in statuses:
            check_initial(mode, status, "row 1")


@pytest.mark.parametrize(
    "mode, old, new",
    [
        ("live", S.SUBMITTED, S.EXPIRED),  # share orders' changes only
        ("live", S.SUBMITTED, S.ERROR),
        ("live", S.SUBMITTED, S.CANCELLING),
        ("shares", S.SUBMITTED, S.WORKING),  # a share order is never followed as working
        ("shares", S.SUBMITTED, S.CANCELLED),  # a cancel is asked first (cancelling)
        ("shares", S.DONE, S.WORKING),
    ],
)
def test_a_change_of_another_mode_is_refused(mode: str, old: OrderStatus, new: OrderStatus) -> None:
    with pytest.raises(IllegalTransition, match=f"for a {mode} order"):
        check_transition(mode, old, new, "row 1")


@pytest.mark.parametrize(
    "mode, status",
    [("live", S.CHECKED), ("live", S.ERROR), ("dry_run", S.SENDING), ("shares", S.WORKING)],
)
def test_a_row_starts_only_as_its_mode_does(tmp_path: Path, mode: str, status: OrderStatus) -> None:
    with Journal(tmp_path / "j.sqlite") as j, pytest.raises(IllegalTransition, match=mode):
        j.orders.record("i1", mode, status, 1, 1.0)  # type: ignore[arg-type]


def test_a_share_rows_change_is_checked_as_a_share_orders(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:
        row = j.orders.record("i1:shares", "shares", S.SUBMITTED, 100, 1.0)
        with pytest.raises(IllegalTransition, match="'submitted' cannot change to 'working'"):
            j.orders.update(row, S.WORKING, 2.0)
        assert j.orders.update(row, S.EXPIRED, 3.0)


def test_the_values_are_the_strings_journals_store() -> None:
    # files written before the enum read as before
    assert OrderStatus("sending") is OrderStatus.SENDING
    assert {s.value for s in OrderStatus} >= {"submitted", "working", "done", "not_sent"}


def test_a_live_entry_goes_through_its_lifecycle(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:
        row = j.orders.record("i1", "live", OrderStatus.SENDING, 2, 1.0)
        for status in (OrderStatus.SUBMITTED, OrderStatus.WORKING, OrderStatus.WORKING):
            assert j.orders.update(row, status, 2.0)
        assert j.orders.update(row, OrderStatus.DONE, 3.0)
        assert j.orders.update(row, OrderStatus.WORKING, 4.0)  # listed again: revived


def test_an_illegal_transition_names_both_states_and_the_row(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        row = j.orders.record("i1", "live", OrderStatus.SENDING, 2, 1.0)
        j.orders.update(row, OrderStatus.SUBMITTED, 2.0)
        with pytest.raises(IllegalTransition) as caught:
            j.orders.update(row, OrderStatus.SENDING, 3.0)
    text = str(caught.value)
    assert "'submitted'" in text and "'sending'" in text and "i1" in text
    (stored,) = sqlite3.connect(path).execute("SELECT status FROM orders").fetchone()
    assert stored == "submitted"  # nothing written


def test_a_row_never_sent_never_changes() -> None:
    for old in (OrderStatus.NOT_SENT, OrderStatus.SIMULATED, OrderStatus.ERROR):
        with pytest.raises(IllegalTransition, match=f"'{old.value}' cannot change"):
            check_transition("live", old, OrderStatus.WORKING, "row 1")
        check_transition("live", old, old, "row 1")  # its details may still change


def test_a_row_cannot_start_half_way(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j, pytest.raises(IllegalTransition, match="cancelled"):
        j.orders.record("i1", "live", OrderStatus.CANCELLED, 2, 1.0)
