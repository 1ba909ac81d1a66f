"""The journal's outage rows: a spell without the gateway, one row from its start to its end.

    the gateway cannot be reached (at start, or lost  -> ``open(kind, ts, text)``: the open row
    mid-run)                                             of ``kind``, or a new one
    alerted                                           -> ``alerted(id)``: a restart during the
                                                         same outage does not alert it again
    a restart while it lasts                          -> ``restarted(id)``: counted
    connected again                                   -> ``close(kind, ts)``: the row ended; the
                                                         recovery is alerted once, by its caller

Times are the wall clock's (an outage is a real-world spell, whatever the session clock says).
A part of ``Journal`` (supervisor/journal/store.py) as ``journal.outages``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace

from supervisor.journal.commits import Store


@dataclass(frozen=True)
class Outage:
    id: int
    kind: str  # "gateway"
    started_ts: float
    text: str  # what the first failure said
    alerted: bool
    restarts: int  # starts of the bot during it, after the one that opened it
    ended_ts: float | None = None


COLUMNS = "id, kind, started_ts, text, alerted, restarts, ended_ts"


class OutageRows:
    def __init__(self, store: Store) -> None:
        self.store = store

    def current(self, kind: str) -> Outage | None:
        """The open outage of ``kind`` (None: none)."""
        row = self.store.db.execute(
            f"SELECT {COLUMNS} FROM outages WHERE kind = ? AND ended_ts IS NULL "
            "ORDER BY id DESC LIMIT 1",
            (kind,),
        ).fetchone()
        return _outage(row) if row is not None else None

    def open(self, kind: str, ts: float, text: str) -> Outage:
        """The open outage of ``kind``, or a new one from ``ts``."""
        found = self.current(kind)
        if found is not None:
            return found
        with self.store.tx(True) as db:
            cur = db.execute(
                "INSERT INTO outages (kind, started_ts, text) VALUES (?, ?, ?)", (kind, ts, text)
            )
            assert cur.lastrowid is not None
            return Outage(cur.lastrowid, kind, ts, text, False, 0)

    def alerted(self, outage_id: int) -> None:
        with self.store.tx(True) as db:
            db.execute("UPDATE outages SET alerted = 1 WHERE id = ?", (outage_id,))

    def restarted(self, outage_id: int) -> None:
        with self.store.tx(True) as db:
            db.execute("UPDATE outages SET restarts = restarts + 1 WHERE id = ?", (outage_id,))

    def close(self, kind: str, ts: float) -> Outage | None:
        """The open outage of ``kind`` ended at ``ts`` (None: there was none)."""
        found = self.current(kind)
        if found is None:
            return None
        with self.store.tx(True) as db:
            db.execute("UPDATE outages SET ended_ts = ? WHERE id = ?", (ts, found.id))
        return replace(found, ended_ts=ts)

    def since(self, ts: float) -> list[Outage]:
        """The outages that were open at or after ``ts`` (the end-of-day summary's health)."""
        rows = self.store.db.execute(
            f"SELECT {COLUMNS} FROM outages WHERE ended_ts IS NULL OR ended_ts >= ? ORDER BY id",
            (ts,),
        )
        return [_outage(r) for r in rows]


def _outage(row: sqlite3.Row) -> Outage:
    ended = row["ended_ts"]
    return Outage(
        int(row["id"]),
        str(row["kind"]),
        float(row["started_ts"]),
        str(row["text"]),
        bool(row["alerted"]),
        int(row["restarts"]),
        None if ended is None else float(ended),
    )
