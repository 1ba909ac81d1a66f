"""The journal's control rows: the trader's pause, resume, flatten and kill, one row each.

    a control acted on -> controls (day, ts, action, source, peer, result): who asked (the
                          CLI or HTTP), from where (the peer's address), what came of it
    start              -> ``paused()``: the latest pause (or flatten) or resume, whatever its
                          day (a pause holds until a resume, across restarts and days)
    report             -> ``day(day)``: the day's controls, a line each

A part of ``Journal`` (supervisor/journal/store.py) as ``journal.controls``, given its store
(the connection and the transactions), as the other parts are.
"""

from __future__ import annotations

from typing import TypedDict

from supervisor.journal.commits import Store


class ControlRow(TypedDict):
    ts: float
    action: str
    source: str
    peer: str
    result: str


class ControlRows:
    def __init__(self, store: Store) -> None:
        self.store = store  # its connection is read at each call: it follows a moved file

    def record(self, day: str, ts: float, action: str, source: str, peer: str, result: str) -> int:
        """A control acted on (or about to be: a flatten's row is written first, it pauses);
        durable at once (a pause must survive a crash right after). Its row id."""
        with self.store.tx(True) as db:
            cur = db.execute(
                "INSERT INTO controls (day, ts, action, source, peer, result) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (day, ts, action, source, peer, result),
            )
            return int(cur.lastrowid or 0)

    def finish(self, row_id: int, result: str) -> None:
        """What came of a control whose row was written before it acted."""
        with self.store.tx(True) as db:
            db.execute("UPDATE controls SET result = ? WHERE id = ?", (result, row_id))

    def paused(self) -> bool:
        """Whether the latest pause, flatten (which pauses) or resume was not a resume (none:
        not paused)."""
        row = self.store.db.execute(
            "SELECT action FROM controls WHERE action IN ('pause', 'resume', 'flatten') "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return row is not None and row[0] != "resume"

    def day(self, day: str) -> list[ControlRow]:
        rows = self.store.db.execute(
            "SELECT ts, action, source, peer, result FROM controls WHERE day = ? ORDER BY ts, id",
            (day,),
        )
        return [
            {"ts": ts, "action": action, "source": source, "peer": peer, "result": result}
            for ts, action, source, peer, result in rows
        ]
