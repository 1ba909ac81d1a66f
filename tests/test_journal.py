"""The SQLite journal: WAL, schema version, restarts, the duplicate guard, a SIGKILL mid-run."""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from common.messages import OptionContract, OrderIntent, Right, Signal
from supervisor.journal.order_status import OrderStatus
from supervisor.journal.records import DayState
from supervisor.journal.rows import JournalError
from supervisor.journal.schema import SCHEMA_VERSION
from supervisor.journal.store import Journal
from supervisor.trading.paper import open_from, step
from supervisor.trading.risk import RiskDecision
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(30)

DAY = "2026-01-08"
CALL = OptionContract("SPY", "20260109", 680.0, Right.CALL, 100, "SMART", "SPY")


def make_intent(intent_id: str = "abc123", cycle_id: int = 7) -> OrderIntent:
    return OrderIntent(
        intent_id,
        cycle_id,
        "SPY",
        CALL,
        Signal.BUY,
        entry_limit=2.05,
        take_profit=3.10,
        stop_loss=1.45,
        premium=2.04,
        confidence=0.75,
        reasons=("ema 8 > 21", "rsi 55 in band"),
        bid=2.00,
        ask=2.08,
        quote_ts=1767886200.5,
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "nested" / "journal.sqlite3"  # parents do not exist yet


def test_creates_parents_wal_and_schema_version(path: Path) -> None:
    Journal(path).close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {
        "cycles",
        "signals",
        "intents",
        "decisions",
        "orders",
        "whatifs",
        "fills",
        "positions",
        "day_state",
        "alerts",
        "shares",
        "stock_seen",
        "strategy_memory",
    } <= tables
    raw.close()


def test_a_newer_schema_is_refused(path: Path) -> None:
    Journal(path).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 9")
    raw.close()
    with pytest.raises(JournalError, match="schema version 9 is newer than this code's 8"):
        Journal(path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not sqlite, just some bytes long enough to fill a header" * 4)
    with pytest.raises(JournalError, match="cannot open"):
        Journal(junk)


def test_reopening_keeps_everything(path: Path) -> None:
    # Given a journal written by one supervisor run
    with Journal(path) as j:
        j.start_cycle(1, DAY, 100.0)
        j.end_cycle(1, 101.5, ok=2, failed=1, seconds=1.5)
        j.record_signal(1, DAY, "SPY", "BUY", 0.75, ("ema up",))
        j.record_signal(1, DAY, "AAPL", "HOLD", 0.0, (), error="Traceback: boom")
        assert j.record_intent(make_intent(), DAY)
        j.record_decision(
            RiskDecision(
                "abc123", True, 4, "ok", "4 contracts", (("equity", 48000.0), ("size", 4))
            ),
            DAY,
            101.0,
        )
        row_id = j.orders.record("abc123", "live", OrderStatus.SUBMITTED, 4, 101.0)
        j.save_position(open_from(make_intent(), 4, 101.0), DAY)
        j.save_day_state(DayState(DAY, 48000.0))
        j.record_alert_once(DAY, "kill_switch", "daily_loss", "halted", 102.0)
    # When the supervisor restarts
    with Journal(path) as j:
        # Then the day's state, the sent intents and the book are all back
        assert j.next_cycle_id() == 2
        assert j.sent_intents(DAY) == frozenset({"abc123"})
        assert j.orders_count(DAY) == 1
        assert j.load_intent("abc123") == make_intent()
        assert [p.intent_id for p in j.open_positions()] == ["abc123"]
        assert j.day_state(DAY) == DayState(DAY, 48000.0)
        assert not j.record_alert_once(DAY, "kill_switch", "daily_loss", "halted", 103.0)
        assert j.orders.update(row_id, OrderStatus.CANCELLED, 105.0)
        summary = j.day_summary(DAY)
    assert summary["cycles"]["count"] == 1
    assert summary["cycles"]["failed_symbols"] == {"AAPL": 1}
    assert summary["signals"]["by_kind"] == {"BUY": 1}
    assert summary["orders"] == [{"mode": "live", "status": "cancelled", "count": 1, "quantity": 4}]


def test_next_cycle_id_grows_across_reopen(path: Path) -> None:
    with Journal(path) as j:
        assert j.next_cycle_id() == 1
        j.start_cycle(1, DAY, 10.0)
        j.start_cycle(2, DAY, 20.0)
        assert j.next_cycle_id() == 3
    with Journal(path) as j:
        assert j.next_cycle_id() == 3
        j.start_cycle(3, "2026-01-09", 30.0)  # a new day does not restart the numbering
        assert j.next_cycle_id() == 4


def test_a_duplicate_intent_is_refused_across_reopen(path: Path) -> None:
    with Journal(path) as j:
        assert j.record_intent(make_intent(cycle_id=7), DAY) is True
        assert j.record_intent(make_intent(cycle_id=8), DAY) is False
    with Journal(path) as j:
        assert j.record_intent(make_intent(cycle_id=9), DAY) is False
        stored = j.load_intent("abc123")
        assert j.record_intent(make_intent("other"), DAY) is True
    assert stored is not None and stored.cycle_id == 7  # the first write is never overwritten


def test_an_intent_keeps_every_field_and_its_nans(path: Path) -> None:
    bare = OrderIntent(
        "bare",
        1,
        "QQQ",
        OptionContract("QQQ", "20260116", 610.5, Right.PUT),
        Signal.SELL,
        1.0,
        1.5,
        0.7,
        1.0,
        0.5,
        (),
    )
    with Journal(path) as j:
        j.record_intent(bare, DAY)
        back = j.load_intent("bare")
        assert j.load_intent("missing") is None
    assert back is not None
    assert back.contract == bare.contract and back.signal is Signal.SELL
    assert (back.entry_limit, back.take_profit, back.stop_loss, back.reasons) == (1.0, 1.5, 0.7, ())
    assert math.isnan(back.bid) and math.isnan(back.ask) and math.isnan(back.quote_ts)


def _record_then_hang(path: str, intent: OrderIntent, conn: Connection) -> None:
    journal = Journal(path)
    journal.record_intent(intent, DAY)
    conn.send("written")
    time.sleep(25)  # killed long before this ends; the journal is never closed


def test_an_intent_survives_a_sigkill_right_after_record_intent(path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_record_then_hang, args=(str(path), make_intent(), theirs))
    child.start()
    try:
        assert ours.poll(20), "the child never reported its write"
        assert ours.recv() == "written"
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(10)
    finally:
        if child.is_alive():
            child.kill()
            child.join(5)
    assert child.exitcode == -signal.SIGKILL
    # the commit sits in the WAL, never checkpointed: reopening must recover it from there
    assert Path(f"{path}-wal").stat().st_size > 0
    with Journal(path) as j:
        assert j.load_intent("abc123") == make_intent()
        assert j.record_intent(make_intent(), DAY) is False


def test_day_state_round_trip(path: Path) -> None:
    with Journal(path) as j:
        assert j.day_state(DAY) is None
        j.save_day_state(DayState(DAY, 50000.0))
        halted = DayState(DAY, 50000.0, True, "daily loss 3.20% >= limit 3%", 1234.5)
        j.save_day_state(halted)
        assert j.day_state(DAY) == halted
    with Journal(path) as j:
        assert j.day_state(DAY) == halted
        assert j.day_state("2026-01-09") is None


def test_alerts_once_per_day_kind_and_key(path: Path) -> None:
    with Journal(path) as j:
        assert j.record_alert_once(DAY, "kill_switch", "daily_loss", "halted", 1.0) is True
        assert j.record_alert_once(DAY, "kill_switch", "daily_loss", "again", 2.0) is False
        assert j.record_alert_once(DAY, "kill_switch", "other", "other key", 3.0) is True
        assert j.record_alert_once(DAY, "worker", "daily_loss", "other kind", 4.0) is True
        assert j.record_alert_once("2026-01-09", "kill_switch", "daily_loss", "next", 5.0)
        # plain alerts are never deduplicated
        assert j.record_alert(DAY, "info", "one", 6.0) and j.record_alert(DAY, "info", "one", 7.0)
    with Journal(path) as j:
        assert j.record_alert_once(DAY, "kill_switch", "daily_loss", "restart", 8.0) is False
        alerts = j.day_summary(DAY)["alerts"]
    assert [(a["kind"], a["key"], a["text"]) for a in alerts] == [
        ("kill_switch", "daily_loss", "halted"),
        ("kill_switch", "other", "other key"),
        ("worker", "daily_loss", "other kind"),
        ("info", None, "one"),
        ("info", None, "one"),
    ]


def test_sent_intents_and_orders_count_rebuild_the_risk_state(path: Path) -> None:
    with Journal(path) as j:
        j.record_decision(RiskDecision("a", True, 2, "ok", ""), DAY, 1.0)
        j.record_decision(RiskDecision("b", False, 0, "sizing", "too small"), DAY, 2.0)
        j.record_decision(RiskDecision("c", True, 1, "ok", ""), DAY, 3.0)
        j.record_decision(RiskDecision("d", True, 1, "ok", ""), "2026-01-07", 0.5)
        assert j.sent_intents(DAY) == frozenset({"a", "c"})
        assert j.orders_count(DAY) == 2
        assert j.orders_count("2026-01-09") == 0


def test_orders_update_by_row_or_broker_id_and_merge_details(path: Path) -> None:
    with Journal(path) as j:
        row = j.orders.record(
            "abc123", "live", OrderStatus.SENDING, 2, 10.0, details={"limit": 2.05}
        )
        assert j.orders.update(
            row, OrderStatus.SUBMITTED, 11.0, {"perm_id": 99}, broker_order_id=42
        )
        assert j.orders.update_by_broker_id(42, OrderStatus.DONE, 12.0, {"avg_price": 2.04})
        assert not j.orders.update(row + 100, OrderStatus.DONE, 12.0)
        assert not j.orders.update_by_broker_id(7, OrderStatus.DONE, 12.0)
        stored = (
            sqlite3.connect(path)
            .execute("SELECT status, broker_order_id, details, created_ts, updated_ts FROM orders")
            .fetchall()
        )
    assert stored == [("done", 42, '{"limit": 2.05, "perm_id": 99, "avg_price": 2.04}', 10.0, 12.0)]


def test_a_replayed_execution_is_recorded_once(path: Path) -> None:
    with Journal(path) as j:
        assert j.orders.record_fill("abc123", "BUY", 2, 2.04, 10.0, 1.3, exec_id="0001.01")
        assert not j.orders.record_fill("abc123", "BUY", 2, 2.04, 11.0, 1.3, exec_id="0001.01")
        # fills without an exec id (simulated) are never merged
        assert j.orders.record_fill("abc123", "SELL", 2, 3.10, 12.0)
        assert j.orders.record_fill("abc123", "SELL", 2, 3.10, 12.0)


def test_positions_by_day_and_the_closing_day_is_kept(path: Path) -> None:
    pending = open_from(make_intent(), 2, 100.0)
    with Journal(path) as j:
        j.save_position(pending, DAY)
        held = step(pending, None, 101.0, 60.0)  # still pending
        j.save_position(held, DAY)
        closed = step(held, None, 1000.0, 60.0)  # past the entry timeout: cancelled
        j.save_position(closed, "2026-01-09")
        j.save_position(closed, "2026-01-12")  # saved again later: still closed on the 9th
        assert j.open_positions() == []
        assert j.positions(DAY) == [closed]
        assert j.positions("2026-01-09") == [closed]
        assert j.positions("2026-01-12") == []


def test_a_past_days_report_lists_what_was_held_at_its_end(path: Path) -> None:
    # Given a position opened on DAY (the 8th) and closed on the 12th, a Monday
    held = replace(
        open_from(make_intent(), 2, 100.0), status="open", entry_price=2.0, filled_ts=101.0
    )
    closed = replace(
        held, status="closed", exit_reason="take_profit", exit_price=3.0, closed_ts=5000.0
    )
    with Journal(path) as j:
        j.save_position(held, DAY)
        j.save_position(closed, "2026-01-12")
        # Then the 9th, a day it neither opened nor closed on, still shows it held at its end
        assert j.positions("2026-01-09") == [closed]
        summary = j.day_summary("2026-01-09")
        (shown,) = summary["positions"]["open"]
        assert shown["closed_day"] == "2026-01-12" and summary["positions"]["closed"] == []
        assert summary["pnl"]["realized"] == 0  # its P&L is the 12th's
        assert j.day_summary("2026-01-12")["pnl"]["realized"] == pytest.approx(200.0)
        # and the day after it closed it is gone
        assert j.positions("2026-01-13") == []


def test_readonly_reads_while_refusing_writes(path: Path) -> None:
    with Journal(path) as j:
        j.start_cycle(1, DAY, 1.0)
        with Journal(path, readonly=True) as reader:
            assert reader.next_cycle_id() == 2
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                reader.start_cycle(5, DAY, 2.0)
    with pytest.raises(JournalError):
        Journal(path.parent / "missing.sqlite3", readonly=True)


# --- one bot per journal, one account per journal --------------------------------------------


def test_a_second_writer_is_refused_naming_the_holder_and_a_reader_is_not(path: Path) -> None:
    first = Journal(path)
    with pytest.raises(JournalError, match=rf"in use by another bot \(pid {os.getpid()} "):
        Journal(path)
    Journal(path, readonly=True).close()  # report reads while the bot writes
    first.close()
    Journal(path).close()  # released with the first: the next start takes it


def test_a_killed_holder_leaves_no_stale_lock(path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; sys.path.insert(0, sys.argv[1]);"
                "from supervisor.journal.store import Journal; j = Journal(sys.argv[2]);"
                "print('held', flush=True); time.sleep(60)"
            ),
            str(REPO_ROOT),
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(JournalError, match=f"pid {holder.pid}"):
        Journal(path)
    holder.kill()
    holder.wait(10)
    Journal(path).close()


def test_a_journal_belongs_to_one_broker_and_account(path: Path) -> None:
    with Journal(path) as journal:
        journal.claim("ibkr", "DU111")
        journal.claim("ibkr", "DU111")  # the same owner again: fine
    with (
        Journal(path) as journal,
        pytest.raises(JournalError, match="belongs to broker 'ibkr' account 'DU111', not 'stub'"),
    ):
        journal.claim("stub", "STUB0001")


def test_a_damaged_journal_is_refused_and_left_untouched(path: Path) -> None:
    with Journal(path) as journal:
        for n in range(300):  # enough rows for pages beyond the schema's
            journal.record_alert("2026-12-01", "test", f"alert {n} " + "x" * 200, float(n))
    raw = bytearray(path.read_bytes())
    page = 4096
    raw[3 * page : 3 * page + 512] = b"\xff" * 512  # a torn page; the header stays valid
    path.write_bytes(bytes(raw))
    before = path.read_bytes()
    with pytest.raises(JournalError, match="damaged"):
        Journal(path)
    with pytest.raises(JournalError, match="damaged"):
        Journal(path, readonly=True)
    assert path.read_bytes() == before


def test_an_index_out_of_step_with_its_table_is_found_at_open(path: Path) -> None:
    # quick_check passes such a file; the journal would then answer from a wrong index
    with Journal(path) as journal:
        for n in range(1, 50):
            journal.start_cycle(n, "2026-12-01", float(n))
    db = sqlite3.connect(path)
    index = db.execute(
        "SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master WHERE name = 'cycles_day'"
    ).fetchone()
    db.execute("PRAGMA writable_schema = ON")
    db.execute("DELETE FROM sqlite_master WHERE name = 'cycles_day'")  # the index hidden...
    db.commit()
    db.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE cycles SET day = '2099-01-01'")  # ...while its table changes
    db.execute("PRAGMA writable_schema = ON")
    db.execute("INSERT INTO sqlite_master VALUES (?, ?, ?, ?, ?)", index)
    db.commit()
    db.close()
    assert sqlite3.connect(path).execute("PRAGMA quick_check").fetchall() == [("ok",)]

    with pytest.raises(JournalError, match="damaged .*missing from index cycles_day"):
        Journal(path)


def test_only_what_sent_something_pays_an_fsync_and_the_cycle_end_covers_the_rest(
    path: Path,
) -> None:
    # Given a journal whose statements are traced
    with Journal(path) as j:
        statements: list[str] = []
        j._db.set_trace_callback(statements.append)

        def full_commits() -> int:
            return sum("synchronous=FULL" in s for s in statements)

        # When a cycle journals a signal and a refusal
        j.start_cycle(1, DAY, 1.0)
        statements.clear()
        j.record_signal(1, DAY, "SPY", "BUY", 0.5, ["r"])
        j.record_decision(RiskDecision("b", False, 0, "duplicate", "sent before"), DAY, 2.0)
        # Then neither waits for the disk
        assert full_commits() == 0
        # but an accepted decision does, and so does the cycle's end (covering the rest)
        j.record_decision(RiskDecision("a", True, 2, "ok", ""), DAY, 3.0)
        assert full_commits() == 1
        j.end_cycle(1, 4.0, 1, 0, 3.0)
        assert full_commits() == 2
    # and everything is there after a reopen
    with Journal(path) as j:
        assert j.sent_intents(DAY) == frozenset({"a"})
        assert j.next_cycle_id() == 2
