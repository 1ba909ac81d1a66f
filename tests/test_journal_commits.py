"""Signals and refusals wait to share one commit; nothing else waits, and order is kept."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from supervisor.journal import commits
from supervisor.journal.store import Journal
from supervisor.trading.risk import RiskDecision

pytestmark = pytest.mark.timeout(30)

DAY = "2026-01-08"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(commits.time, "monotonic", fake)
    return fake


def on_disk(path: Path, table: str) -> list[tuple]:
    """What another process (a report, a restart) would read now."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return db.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
    finally:
        db.close()


def signal(j: Journal, symbol: str) -> None:
    j.record_signal(1, DAY, symbol, "HOLD", 0.0, ())


def test_signals_wait_until_a_commit_is_due_then_go_together_in_order(tmp_path, clock):
    path = tmp_path / "j.sqlite3"
    with Journal(path) as j:
        j.start_cycle(1, DAY, 1.0)
        # Given fewer signals than a commit waits for, within a second
        for i in range(commits.PENDING_ROWS - 1):
            signal(j, f"S{i:02d}")
        # Then none is on disk yet
        assert on_disk(path, "signals") == []
        # When one more comes
        signal(j, "LAST")
        # Then all of them are, in the order they came
        symbols = [row[3] for row in on_disk(path, "signals")]
        assert symbols == [f"S{i:02d}" for i in range(commits.PENDING_ROWS - 1)] + ["LAST"]


def test_a_signal_waits_at_most_a_second(tmp_path, clock):
    path = tmp_path / "j.sqlite3"
    with Journal(path) as j:
        signal(j, "OLD")
        clock.t += commits.PENDING_S - 0.01
        signal(j, "YOUNG")
        assert on_disk(path, "signals") == []
        clock.t += 0.02  # the first is now a second old
        signal(j, "THIRD")
        assert [row[3] for row in on_disk(path, "signals")] == ["OLD", "YOUNG", "THIRD"]


def test_an_accepted_decision_never_waits_and_writes_the_refusals_before_it(tmp_path, clock):
    path = tmp_path / "j.sqlite3"
    with Journal(path) as j:
        # Given a refusal waiting
        j.record_decision(RiskDecision("r1", False, 0, "max_orders", "cap"), DAY, 1.0)
        assert on_disk(path, "decisions") == []
        # When an accepted decision is journaled
        j.record_decision(RiskDecision("a1", True, 2, "ok", ""), DAY, 2.0)
        # Then both are on disk, the refusal first
        assert [(row[1], row[4]) for row in on_disk(path, "decisions")] == [("r1", 0), ("a1", 1)]


def test_the_cycle_end_close_and_a_summary_write_what_waits(tmp_path, clock):
    path = tmp_path / "j.sqlite3"
    with Journal(path) as j:
        j.start_cycle(1, DAY, 1.0)
        signal(j, "A")
        j.end_cycle(1, 2.0, 1, 0, 1.0)
        assert len(on_disk(path, "signals")) == 1
        signal(j, "B")
        assert j.day_summary(DAY)["signals"]["by_kind"] == {"HOLD": 2}
        signal(j, "C")
    assert [row[3] for row in on_disk(path, "signals")] == ["A", "B", "C"]


def test_rows_that_cannot_be_written_are_said_lost_and_do_not_block_later_writes(
    tmp_path, clock, caplog
):
    path = tmp_path / "j.sqlite3"
    with Journal(path) as j:
        # Given a waiting row that the database refuses (its table is gone)
        j.record_signal(1, DAY, "GOOD", "HOLD", 0.0, ())
        j.store.later("INSERT INTO no_such_table VALUES (?)", (1,))
        # When the next write comes
        with caplog.at_level(logging.ERROR), pytest.raises(sqlite3.OperationalError):
            j.record_decision(RiskDecision("a1", True, 2, "ok", ""), DAY, 2.0)
        # Then the loss is said, with its count
        assert "2 signal and refusal rows could not be written" in caplog.text
        # and the journal still takes the writes after it
        j.record_decision(RiskDecision("a2", True, 2, "ok", ""), DAY, 3.0)
    assert [row[1] for row in on_disk(path, "decisions")] == ["a2"]
