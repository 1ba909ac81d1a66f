"""The crash-safe journal: one SQLite file (stdlib sqlite3, WAL) written by the supervisor only.

    supervisor --record_*/save_*--> Journal --autocommit--> var/journal-<broker>.sqlite
    restart    <--next_cycle_id, day_state, sent_intents, orders_count, open_positions--
                                          (+ -wal; execution.journal_path, one per broker:
                                           stub, sim or ibkr)

Every call that matters is its own transaction and has committed when it returns: a SIGKILL
right after ``record_intent`` leaves the intent in the file. Durability against power loss
is paid for only where money is at stake: the connection runs ``synchronous=NORMAL`` (a
commit is safe from a process crash; the WAL is fsynced at checkpoints), and the writes that
must survive an OS crash too — intents, accepted risk decisions, orders, what-if results,
fills, positions, day state, alerts — switch to ``synchronous=FULL`` for their commit (one
WAL fsync, which also covers every NORMAL commit before it). Signals, refusals and cycles,
up to thousands per cycle (nothing was sent for them), skip the fsync so the event loop is
not blocked on the disk for each symbol; the cycle's end is durable, so a cycle's writes
reach the disk by one fsync. Signals and refusals are not even a transaction each: they
wait a moment and are committed together (supervisor/journal/commits.py), so a SIGKILL can
lose the last second of them, which the JSON log also holds; never an intent, an order or a
fill.

Times are epoch seconds (REAL); days are the exchange's 'YYYY-MM-DD', given by the caller.
Schema changes are appended to ``MIGRATIONS``, never edited; ``PRAGMA user_version`` says how
many were applied, and a file written by newer code is refused instead of misread.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from common.messages import OrderIntent
from supervisor.journal.closing_rows import ClosingRows
from supervisor.journal.commits import SqlValue, Store
from supervisor.journal.control_rows import ControlRows
from supervisor.journal.follow import Follow, connect, connect_readonly, drop_empty_wal
from supervisor.journal.lock import JournalLock
from supervisor.journal.order_rows import OrderRows
from supervisor.journal.outage_rows import OutageRows
from supervisor.journal.records import ACTIVE, DayState, DecisionRecord, Position
from supervisor.journal.rows import (
    JournalError,
    contract_from,
    contract_values,
    intent_from,
    position_from,
    save_position,
    to_json,
)
from supervisor.journal.schema import CONTRACT_COLUMNS
from supervisor.journal.shares import ShareRows
from supervisor.journal.strategy_rows import StrategyRows
from supervisor.journal.summary import day_summary
from supervisor.journal.summary_types import DaySummary
from supervisor.journal.wal import file_id, set_aside, wal_of

log = logging.getLogger(__name__)


class Journal:
    """The supervisor's journal. Not thread-safe: one writer, on the thread that opened it.

    One ``store`` (the connection, its transactions, the rows that wait) and the parts that
    write through it: ``orders`` (order_rows.py), ``shares`` (shares.py), ``strategy``
    (strategy_rows.py), ``controls`` (control_rows.py), ``closing`` (closing_rows.py),
    ``outages`` (outage_rows.py); cycles, signals, intents, decisions,
    positions, the day's state and alerts are written here."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self._lock = None if readonly else JournalLock(self.path)
        if self._lock is not None:
            self._lock.acquire()  # before anything is read or written
        try:
            db = connect_readonly(self.path) if readonly else self._connect()
        except (sqlite3.DatabaseError, OSError) as exc:
            self._release()
            raise JournalError(f"{self.path}: cannot open the journal: {exc}") from exc
        self.store = Store(self.path, db)
        self._follow = Follow(self.store, self._lock)
        self.orders = OrderRows(self.store)
        self.shares = ShareRows(self.store)
        self.strategy = StrategyRows(self.store)
        self.controls = ControlRows(self.store)
        self.closing = ClosingRows(self.store)
        self.outages = OutageRows(self.store)
        try:
            self.store.prepare(readonly)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise JournalError(f"{self.path}: cannot open the journal: {exc}") from exc
        except JournalError:
            self.close()
            raise
        if not readonly:
            self._follow.start()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        assert self._lock is not None
        set_aside(self.path, self._lock.previous)  # another file's WAL: never applied
        return connect(self.path)

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection as it is now (tests read and write the file through it)."""
        return self.store.db

    def lost(self) -> str | None:
        """What became of the journal's file or lock under the running bot (follow.py)."""
        return self._follow.lost()

    def flush(self) -> None:
        """Commit the signal and refusal rows that wait (commits.py)."""
        self.store.flush()

    def close(self) -> None:
        """Write what waits, close and let go of the lock; a failing close (a full disk)
        loses nothing committed, so it is said, not raised into the shutdown."""
        self._follow.follow()  # moved away since the last look: not left in the path's WAL
        with contextlib.suppress(sqlite3.Error):  # flush says what it lost
            self.store.flush()
        try:
            self.store.db.close()
        except sqlite3.Error as exc:
            log.error("closing the journal %s failed: %s (committed rows are kept)", self.path, exc)
        if self._lock is not None and file_id(wal_of(self.path)) is None:
            self._lock.note("")  # checkpointed and deleted: no WAL left to tell apart
        if self._lock is None:
            drop_empty_wal(self.path)
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def owner(self) -> tuple[str, str] | None:
        """(broker, account) the journal belongs to (its first run's), None before one."""
        owner = dict(
            self.store.db.execute(
                "SELECT key, value FROM meta WHERE key IN ('broker', 'account')"
            ).fetchall()
        )
        return (owner["broker"], owner.get("account", "")) if "broker" in owner else None

    def claim(self, broker: str, account: str) -> None:
        """This journal belongs to one broker and account: the first run writes them down,
        a later run with others is refused (the stub's days never mix with an account's)."""
        owner = self.owner()
        if owner and owner != (broker, account):
            raise JournalError(
                f"{self.path} belongs to broker {owner[0]!r} account {owner[1]!r}, not "
                f"{broker!r} account {account!r}: give this run its own execution.journal_path"
            )
        if not owner:
            with self.store.tx(True) as db:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("broker", broker), ("account", account)],
                )

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- cycles and signals ------------------------------------------------------------------

    def next_cycle_id(self) -> int:
        """One more than any cycle ever journaled: ids keep growing across restarts."""
        return _int(self.store.one("SELECT COALESCE(MAX(cycle_id), 0) + 1 FROM cycles"))

    def start_cycle(self, cycle_id: int, day: str, ts: float) -> None:
        with self.store.tx(False) as db:
            db.execute(
                "INSERT INTO cycles (cycle_id, day, started_ts) VALUES (?, ?, ?)",
                (cycle_id, day, ts),
            )

    def end_cycle(self, cycle_id: int, ts: float, ok: int, failed: int, seconds: float) -> None:
        with self.store.tx(True) as db:  # the fsync of the cycle's signals and refusals too
            db.execute(
                "UPDATE cycles SET ended_ts = ?, ok = ?, failed = ?, seconds = ? "
                "WHERE cycle_id = ?",
                (ts, ok, failed, seconds, cycle_id),
            )

    def record_signal(
        self,
        cycle_id: int,
        day: str,
        symbol: str,
        signal: str,
        confidence: float,
        reasons: Sequence[str],
        skipped: str | None = None,
        error: str | None = None,
    ) -> None:
        self.store.later(
            "INSERT INTO signals (cycle_id, day, symbol, signal, confidence, reasons,"
            " skipped, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cycle_id,
                day,
                symbol,
                str(signal),
                confidence,
                to_json(list(reasons)),
                skipped,
                error,
            ),
        )

    # --- intents, decisions, orders ------------------------------------------------------------

    def record_intent(self, intent: OrderIntent, day: str) -> bool:
        """Journal an intent before it is executed; False (nothing written) if already there."""
        i = intent
        with self.store.tx(True) as db:
            cur = db.execute(
                f"INSERT INTO intents (intent_id, day, cycle_id, symbol, {CONTRACT_COLUMNS}, "
                "signal, entry_limit, take_profit, stop_loss, premium, confidence, reasons, bid, "
                f"ask, quote_ts, action) VALUES ({', '.join('?' * 22)}) "
                "ON CONFLICT (intent_id) DO NOTHING",
                (
                    i.intent_id,
                    day,
                    i.cycle_id,
                    i.symbol,
                    *contract_values(i.contract),
                    i.signal.value,
                    i.entry_limit,
                    i.take_profit,
                    i.stop_loss,
                    i.premium,
                    i.confidence,
                    to_json(list(i.reasons)),
                    i.bid,
                    i.ask,
                    i.quote_ts,
                    i.action,
                ),
            )
            return cur.rowcount == 1

    def load_intent(self, intent_id: str) -> OrderIntent | None:
        row = self.store.db.execute(
            "SELECT * FROM intents WHERE intent_id = ?", (intent_id,)
        ).fetchone()
        return None if row is None else intent_from(row)

    def bought_contracts(self) -> dict[str, str]:
        """Contract key -> intent id of every intent with a journaled BOT fill (ours to exit)."""
        rows = self.store.db.execute(
            f"SELECT DISTINCT i.intent_id, {CONTRACT_COLUMNS} FROM intents i JOIN fills f "
            "USING (intent_id) WHERE f.side = 'BOT' ORDER BY i.intent_id"
        )
        return {contract_from(r).key: r["intent_id"] for r in rows}

    def working_intents(self) -> list[OrderIntent]:
        """Intents whose live order is still submitted or working at the broker."""
        loaded = (self.load_intent(row.intent_id) for row in self.orders.live())
        return [intent for intent in loaded if intent is not None]

    def record_decision(self, decision: DecisionRecord, day: str, ts: float) -> None:
        d = decision
        sql = (
            "INSERT INTO decisions (intent_id, day, ts, accepted, quantity, rule, reason, "
            "values_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        params = (
            d.intent_id,
            day,
            ts,
            int(d.accepted),
            d.quantity,
            d.rule,
            d.reason,
            to_json(dict(d.values)),
        )
        if not d.accepted:  # a refusal sent nothing: it waits, and the cycle's end fsyncs it
            self.store.later(sql, params)
            return
        with self.store.tx(True) as db:
            db.execute(sql, params)

    def reject_decision(
        self, intent_id: str, day: str, reason: str, rule: str = "rejected"
    ) -> None:
        """What risk accepted was not sent after all: the gateway refused it (``rejected``),
        or a stop came before it left (``stopping``)."""
        with self.store.tx(True) as db:
            db.execute(
                "UPDATE decisions SET accepted = 0, quantity = 0, rule = ?, "
                "reason = ? WHERE id = (SELECT MAX(id) FROM decisions WHERE "
                "intent_id = ? AND day = ?)",
                (rule, reason, intent_id, day),
            )

    def sent_intents(self, day: str) -> frozenset[str]:
        """Intent ids of ``day`` with an accepted decision: RiskState.sent_today."""
        rows = self.store.db.execute(
            "SELECT DISTINCT intent_id FROM decisions WHERE day = ? AND accepted = 1", (day,)
        )
        return frozenset(r[0] for r in rows)

    def orders_count(self, day: str) -> int:
        """Accepted decisions of ``day``: RiskState.orders_today."""
        return _int(
            self.store.one("SELECT COUNT(*) FROM decisions WHERE day = ? AND accepted = 1", (day,))
        )

    # --- positions and the day's state ---------------------------------------------------------

    def save_position(self, p: Position, day: str) -> None:
        """Insert or update by intent id; ``day`` (today) dates the opening and the closing."""
        with self.store.tx(True) as db:
            save_position(db, p, day)

    def book_fill(
        self,
        order_ref: str,
        side: str,
        quantity: int,
        price: float,
        ts: float,
        commission: float,
        exec_id: str,
        after: Position,
        day: str,
        also: Sequence[Position] = (),
    ) -> bool:
        """A live execution and the position(s) it leaves (``also``: a short row it opened),
        in one transaction: a crash cannot journal the one without the other. False (nothing
        written) if booked before."""
        with self.store.tx(True) as db:
            cur = db.execute(
                "INSERT INTO fills (intent_id, side, quantity, price, commission, "
                "exec_id, ts) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (exec_id) DO NOTHING",
                (order_ref, side, quantity, price, commission, exec_id, ts),
            )
            if cur.rowcount != 1:
                return False
            save_position(db, after, day)
            for other in also:
                save_position(db, other, day)
            return True

    def position(self, intent_id: str) -> Position | None:
        row = self.store.db.execute(
            "SELECT * FROM positions WHERE intent_id = ?", (intent_id,)
        ).fetchone()
        return None if row is None else position_from(row)

    def open_positions(self) -> list[Position]:
        """Every position not yet closed (pending entries included), oldest first."""
        marks = ", ".join("?" * len(ACTIVE))
        rows = self.store.db.execute(
            f"SELECT * FROM positions WHERE status IN ({marks}) ORDER BY opened_ts, intent_id",
            ACTIVE,
        )
        return [position_from(r) for r in rows]

    def positions(self, day: str) -> list[Position]:
        """Positions opened or closed on ``day``, and those open at its end: opened by then
        and still open, or closed on a later day (a past day's report lists what it held)."""
        return [p for p, _, _ in self._day_positions(day)]

    def _day_positions(self, day: str) -> list[tuple[Position, str, str | None]]:
        """(position, opened_day, closed_day) for ``positions``."""
        marks = ", ".join("?" * len(ACTIVE))
        rows = self.store.db.execute(
            "SELECT * FROM positions WHERE opened_day = ? OR closed_day = ? "
            f"OR (opened_day <= ? AND (status IN ({marks}) OR closed_day > ?)) "
            "ORDER BY opened_ts, intent_id",
            (day, day, day, *ACTIVE, day),
        )
        return [(position_from(r), r["opened_day"], r["closed_day"]) for r in rows]

    def record_broker_pnl(
        self,
        day: str,
        ts: float,
        daily: float,
        realized: float,
        unrealized: float,
        net_liquidation: float,
    ) -> None:
        """The broker's own figures for the account (live), the latest of the day kept; a
        missing one (NaN) is stored as NULL."""

        def value(x: float) -> float | None:
            return x if math.isfinite(x) else None

        with self.store.tx(False) as db:
            db.execute(
                "INSERT INTO broker_pnl (day, ts, daily, realized, unrealized, "
                "net_liquidation) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (day) DO UPDATE "
                "SET ts = excluded.ts, daily = excluded.daily, realized = "
                "excluded.realized, unrealized = excluded.unrealized, net_liquidation = "
                "excluded.net_liquidation",
                (day, ts, value(daily), value(realized), value(unrealized), value(net_liquidation)),
            )

    def day_state(self, day: str) -> DayState | None:
        row = self.store.db.execute("SELECT * FROM day_state WHERE day = ?", (day,)).fetchone()
        if row is None:
            return None
        return DayState(
            row["day"],
            row["start_equity"],
            bool(row["halted"]),
            row["halted_reason"],
            row["halted_ts"],
        )

    def save_day_state(self, state: DayState) -> None:
        s = state
        with self.store.tx(True) as db:
            db.execute(
                "INSERT INTO day_state (day, start_equity, halted, halted_reason, "
                "halted_ts) VALUES (?, ?, ?, ?, ?) ON CONFLICT (day) DO UPDATE SET "
                "start_equity = excluded.start_equity, halted = excluded.halted, "
                "halted_reason = excluded.halted_reason, halted_ts = excluded.halted_ts",
                (s.day, s.start_equity, int(s.halted), s.halted_reason, s.halted_ts),
            )

    # --- alerts --------------------------------------------------------------------------------

    def record_alert(self, day: str, kind: str, text: str, ts: float) -> bool:
        """Always journaled (no key: never deduplicated); True."""
        with self.store.tx(True) as db:
            db.execute(
                "INSERT INTO alerts (day, kind, key, text, ts) VALUES (?, ?, NULL, ?, ?)",
                (day, kind, text, ts),
            )
        return True

    def record_alert_once(self, day: str, kind: str, key: str, text: str, ts: float) -> bool:
        """True the first time (day, kind, key) is seen, across restarts; then False."""
        with self.store.tx(True) as db:
            cur = db.execute(
                "INSERT INTO alerts (day, kind, key, text, ts) VALUES "
                "(?, ?, ?, ?, ?) ON CONFLICT (day, kind, key) DO NOTHING",
                (day, kind, key, text, ts),
            )
            return cur.rowcount == 1

    # --- the day report's numbers --------------------------------------------------------------

    def latest_day(self) -> str | None:
        """The most recent day with a cycle, or None for an empty journal."""
        day = self.store.one("SELECT MAX(day) FROM cycles")
        return str(day) if day is not None else None

    def days_between(self, first: str, last: str) -> list[str]:
        """The days with a cycle from ``first`` to ``last`` (YYYY-MM-DD, both included)."""
        return [
            str(r[0])
            for r in self.store.db.execute(
                "SELECT DISTINCT day FROM cycles WHERE day BETWEEN ? AND ? ORDER BY day",
                (first, last),
            )
        ]

    def day_summary(self, day: str) -> DaySummary:
        """Everything the report renders for ``day`` (supervisor/journal/summary.py)."""
        self.store.flush()
        summary = day_summary(self.store.db, day, self._day_positions(day), self.day_state(day))
        summary["controls"] = self.controls.day(day)
        return summary


def _int(value: SqlValue) -> int:
    assert isinstance(value, int), value  # COUNT and COALESCE(MAX(...), 0): never NULL
    return value
