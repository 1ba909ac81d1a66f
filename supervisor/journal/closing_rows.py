"""The journal's closing rows: live positions being closed now, whatever the time.

    a flatten, or an incomplete bracket -> closing (intent id, reason, day, ts): written
        (``execution.incomplete_bracket: close``)   before any exit is cancelled, durable at once
    each cycle (live_exits.py)          -> ``pending()``: the bracket's exits cancelled, then
                                           the sale at the bid placed once they are gone
    the position closed                 -> ``done(intent id)``: the row goes

Kept in the journal, not in memory: a restart between the cancels and the sale would otherwise
leave the position held with no stop at IBKR and nobody selling it. A part of ``Journal``
(supervisor/journal/store.py) as ``journal.closing``, as the other parts are.
"""

from __future__ import annotations

from supervisor.journal.commits import Store


class ClosingRows:
    def __init__(self, store: Store) -> None:
        self.store = store  # its connection is read at each call: it follows a moved file

    def add(self, intent_id: str, reason: str, day: str, ts: float) -> bool:
        """``intent_id``'s position to be closed for ``reason`` ("flatten", "closed"); True
        when it was not already. Durable at once: the cancels that follow must not outlive
        it."""
        with self.store.tx(True) as db:
            cur = db.execute(
                "INSERT INTO closing (intent_id, reason, day, ts) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (intent_id) DO NOTHING",
                (intent_id, reason, day, ts),
            )
            return cur.rowcount == 1

    def pending(self) -> dict[str, str]:
        """Intent id -> reason of every position still to close."""
        rows = self.store.db.execute("SELECT intent_id, reason FROM closing ORDER BY ts")
        return {str(intent_id): str(reason) for intent_id, reason in rows}

    def done(self, intent_id: str) -> None:
        with self.store.tx(True) as db:
            db.execute("DELETE FROM closing WHERE intent_id = ?", (intent_id,))
