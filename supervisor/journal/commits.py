"""The journal's transactions, and the rows that wait to share one.

Part of ``Journal`` (supervisor/journal/store.py), which owns the connection. A transaction
commits on exit; a durable one is fsynced (synchronous=FULL), which also covers every commit
before it. Signals and refusals (a row per symbol, thousands a cycle, nothing sent for them)
are not a transaction each: they wait, at most ``PENDING_ROWS`` rows or ``PENDING_S``
seconds, and are committed together before any other write, before a summary reads them,
at the cycle's end (durable) and at close. A SIGKILL can so lose the last second of them,
whose events the JSON log holds too; never an intent, an order, a fill or a position.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger("supervisor.journal.store")

PENDING_ROWS = 64  # signals and refusals that wait for one commit together ...
PENDING_S = 1.0  # ... or for at most this long, counted from the oldest


class Commits:
    _db: sqlite3.Connection
    path: Path
    _pending: list[tuple[str, tuple[Any, ...]]]  # rows for the next commit, in order
    _pending_since: float

    def _later(self, sql: str, params: tuple[Any, ...]) -> None:
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
            with self._tx(False) as db:
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
    def _tx(self, durable: bool) -> Iterator[sqlite3.Connection]:
        """One transaction, committed on exit; ``durable`` fsyncs it (synchronous=FULL).
        Rows that wait are committed first, so the journal keeps the order things happened."""
        self.flush()
        if durable:
            self._db.execute("PRAGMA synchronous=FULL")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (a full disk does): the first error is
                # the one worth saying, never "cannot rollback"
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise
        finally:
            if durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
