"""The order-status machine: the journal refuses a change of status the lifecycle never makes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from supervisor.journal.order_status import (
    INITIAL,
    TRANSITIONS,
    IllegalTransition,
    OrderStatus,
    check_transition,
)
from supervisor.journal.store import Journal

pytestmark = pytest.mark.timeout(30)


def test_every_status_has_its_transitions_written_down() -> None:
    assert set(TRANSITIONS) == set(OrderStatus)
    assert set(OrderStatus) >= INITIAL


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
            check_transition(old, OrderStatus.WORKING, "row 1")
        check_transition(old, old, "row 1")  # its details may still change


def test_a_row_cannot_start_half_way(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j, pytest.raises(IllegalTransition, match="cancelled"):
        j.orders.record("i1", "live", OrderStatus.CANCELLED, 2, 1.0)
