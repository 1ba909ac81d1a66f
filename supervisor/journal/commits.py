"""The journal's store: its one connection, its transactions, and the rows that wait for one.

``Journal`` (supervisor/journal/store.py) owns one ``Store``; each table's writer is a part
given that store (orders: order_rows.py, shares: shares.py), never a connection of its own.
The connection may be replaced under the parts when the file moves (follow.py): they read
``store.db`` at each call and never keep it.

A transaction commits on exit; a durable one is fsynced (synchronous=FULL), which also
covers every commit before it. Signals and refusals (a row per symbol, thousands a cycle,
nothing sent for them) are not a transaction each: they wait, at most ``PENDING_ROWS`` rows
or ``PENDING_S`` seconds, and are committed together before any other write, before a
summary reads them, at the cycle's end (durable) and at close. A SIGKILL can so lose the
last second of them, whose events the JSON log holds too; never an intent, an order, a fill
or a position.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from supervisor.journal.rows import JournalError
from supervisor.journal.schema import MIGRATIONS, READABLE_FROM, SCHEMA_VERSION, as_temporary

log = logging.getLogger("supervisor.journal.store")

PENDING_ROWS = 64  # signals and refusals that wait for one commit together ...
PENDING_S = 1.0  # ... or for at most this long, counted from the oldest

SqlValue = int | float | str | bytes | None
Params = Sequence[SqlValue]


class Store:
    """The connection every part of the journal writes through. Not thread-safe."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.path = path
        self.db = db  # replaced when the file the bot writes moves (follow.py)
        self._pending: list[tuple[str, Params]] = []  # rows for the next commit, in order
        self._pending_since = 0.0
        # False: no commit is fsynced (an offline run's journal: a replay or a backtest
        # that a crash interrupts is run again, and a cycle's fsync was half its time)
        self.fsync = True

    def prepare(self, readonly: bool) -> None:
        """Check the file, then migrate it (read-write): refused when damaged, written by
        newer code, or (read-only) older than ``READABLE_FROM`` (schema.py); read-only, the
        tables of the migrations it lacks are read as empty and the file is not touched."""
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version:
            # a damaged file with a valid header would be read, and written into, as if whole;
            # integrity_check, not quick_check: it also finds an index out of step with its
            # table (a year of cycles: 0.6 s at 3 symbols, 4.2 s at 20;
            # tools/bench_journal_check.py)
            problems = [r[0] for r in self.db.execute("PRAGMA integrity_check(5)")]
            if problems != ["ok"]:
                raise JournalError(
                    f"{self.path}: the journal is damaged ({'; '.join(problems)})"
                    "; it is left as it is: restore a copy, or move it aside "
                    "and start a new one"
                )
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"{self.path}: schema version {version} is newer than this "
                f"code's {SCHEMA_VERSION}; upgrade the bot or use another path"
            )
        if readonly:
            # an older file whose later migrations only add tables is read as it is, those
            # tables empty: report and reconcile work on it before run has migrated it
            if version == 0:  # the bot migrates a file it creates in the same transaction
                raise JournalError(
                    f"{self.path}: not a bot journal (schema version 0, no meta or owner "
                    "tables); it is left as it is: give the path of a journal the bot wrote"
                )
            if version < READABLE_FROM:
                raise JournalError(
                    f"{self.path}: schema version {version}, expected "
                    f"{READABLE_FROM} to {SCHEMA_VERSION}; open it read-write once "
                    "(start the bot) to migrate"
                )
            for number in range(version + 1, SCHEMA_VERSION + 1):
                self.db.executescript(as_temporary(number))
            return
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            # user_version lives in the file header, so it commits atomically with the script
            try:
                self.db.executescript(
                    f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
                )
            except sqlite3.Error:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise

    def one(self, sql: str, params: Params = ()) -> SqlValue:
        """The first column of the first row."""
        value: SqlValue = self.db.execute(sql, params).fetchone()[0]
        return value

    def later(self, sql: str, params: Params) -> None:
        """A row nothing waits on (a signal, a refusal): written with others by one commit,
        soon (see PENDING_ROWS), instead of a transaction of its own."""
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append((sql, params))
        if (
            len(self._pending) >= PENDING_ROWS
            or time.monotonic() - self._pending_since >= PENDING_S
        ):
            self.flush()

    def flush(self) -> None:
        """Commit the rows that wait, in the order they came. If that fails they are lost
        (said in the log, and their events are in the JSON log): a row that cannot be
        written must not make every later write fail with it."""
        rows, self._pending = self._pending, []
        if not rows:
            return
        try:
            with self.tx(False) as db:
                for sql, params in rows:
                    db.execute(sql, params)
        except sqlite3.Error as exc:
            log.error(
                "journal %s: %d signal and refusal rows could not be written: %s",
                self.path,
                len(rows),
                exc,
            )
            raise

    @contextmanager
    def tx(self, durable: bool) -> Iterator[sqlite3.Connection]:
        """One transaction, committed on exit; ``durable`` fsyncs it (synchronous=FULL).
        Rows that wait are committed first, so the journal keeps the order things happened."""
        self.flush()
        db = self.db
        durable = durable and self.fsync
        if durable:
            db.execute("PRAGMA synchronous=FULL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (a full disk does): the first error is
                # the one worth saying, never "cannot rollback"
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
        finally:
            if durable:
                db.execute("PRAGMA synchronous=NORMAL")
