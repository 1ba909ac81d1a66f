"""The journal's order rows: live orders from "sending" to their fate, what-ifs and fills.

A part of ``Journal`` (supervisor/journal/store.py) as ``journal.orders``, given its store
(the connection and the transactions). An order row is written before the order is sent and
updated after (status, the broker's order id and permId): a crash in between leaves a row
the start-up reconcile resolves. Each change of status is checked against the allowed
transitions (order_status.py). Rows are read back as ``OrderRow``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from supervisor.journal.commits import Store
from supervisor.journal.order_status import OrderStatus, check_initial, check_transition
from supervisor.journal.rows import JournalError, JsonObject, from_json, json_object, to_json

# dry_run, whatif, live: the execution mode that wrote it; shares: a closing order of shares
# an exercise delivered (live_shares.py), never followed as an entry
OrderMode = Literal["dry_run", "whatif", "live", "shares"]
ORDER_MODES: tuple[OrderMode, ...] = ("dry_run", "whatif", "live", "shares")
Details = Mapping[str, object]  # what the caller adds to a row's details (JSON-ready)

COLUMNS = "id, intent_id, mode, status, quantity, broker_order_id, perm_id, created_ts, details"


@dataclass(frozen=True)
class OrderRow:
    """One order row as journaled."""

    id: int
    intent_id: str  # the orderRef: an intent id, "<intent id>:expiry" or ":shares"
    mode: OrderMode
    status: OrderStatus
    quantity: int
    broker_order_id: int | None
    perm_id: int | None
    created_ts: float
    details: JsonObject  # decoded; a bracket's "order_ids"/"perm_ids": entry, take-profit, stop

    def part_ids(self, name: str) -> list[int]:
        """A bracket's ``order_ids`` or ``perm_ids`` as journaled (0 where one is not known),
        [] when the row has none."""
        ids = self.details.get(name)
        if not isinstance(ids, list):
            return []
        return [i if isinstance(i, int) and not isinstance(i, bool) else 0 for i in ids]


def order_mode(value: str) -> OrderMode:
    for mode in ORDER_MODES:
        if mode == value:
            return mode
    raise JournalError(f"order row: unknown mode {value!r}")


class OrderRows:
    def __init__(self, store: Store) -> None:
        self._store = store

    def record(
        self,
        intent_id: str,
        mode: OrderMode,
        status: OrderStatus,
        quantity: int,
        ts: float,
        broker_order_id: int | None = None,
        details: Details | None = None,
    ) -> int:
        """A new order row (dry-run, what-if, live or shares); returns its row id."""
        status = OrderStatus(status)
        check_initial(mode, status, f"order of {intent_id}")
        with self._store.tx(True) as db:
            cur = db.execute(
                "INSERT INTO orders (intent_id, mode, status, quantity, "
                "broker_order_id, details, created_ts, updated_ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    intent_id,
                    mode,
                    status,
                    quantity,
                    broker_order_id,
                    to_json(details or {}),
                    ts,
                    ts,
                ),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def update(
        self,
        row_id: int,
        status: OrderStatus,
        ts: float,
        details: Details | None = None,
        broker_order_id: int | None = None,
        perm_id: int | None = None,
    ) -> bool:
        """New status; ``details`` merged into the stored ones; False if no such row.
        ``IllegalTransition`` (nothing written) if the row's status may not change so."""
        updated = self._update("id = ?", row_id, status, ts, details, broker_order_id)
        if updated and perm_id:
            with self._store.tx(True) as db:
                db.execute("UPDATE orders SET perm_id = ? WHERE id = ?", (perm_id, row_id))
        return updated

    def update_by_broker_id(
        self, broker_order_id: int, status: OrderStatus, ts: float, details: Details | None = None
    ) -> bool:
        """As update, for the order IBKR knows as ``broker_order_id`` (latest row)."""
        return self._update("broker_order_id = ?", broker_order_id, status, ts, details, None)

    def _update(
        self,
        where: str,
        key: int,
        status: OrderStatus,
        ts: float,
        details: Details | None,
        broker_order_id: int | None,
    ) -> bool:
        with self._store.tx(True) as db:
            row = db.execute(
                f"SELECT id, intent_id, mode, status, details, broker_order_id FROM orders "
                f"WHERE {where} ORDER BY id DESC LIMIT 1",
                (key,),
            ).fetchone()
            if row is None:
                return False
            check_transition(
                row["mode"],
                OrderStatus(row["status"]),
                OrderStatus(status),
                f"order row {row['id']} ({row['intent_id']})",
            )
            merged = {**from_json(row["details"]), **json_object(details or {})}
            db.execute(
                "UPDATE orders SET status = ?, updated_ts = ?, details = ?, "
                "broker_order_id = ? WHERE id = ?",
                (
                    status,
                    ts,
                    to_json(merged),
                    row["broker_order_id"] if broker_order_id is None else broker_order_id,
                    row["id"],
                ),
            )
            return True

    def live(
        self, statuses: Sequence[OrderStatus] = (OrderStatus.SUBMITTED, OrderStatus.WORKING)
    ) -> list[OrderRow]:
        """Live orders still in one of ``statuses``: what the live lifecycle watches."""
        marks = ", ".join("?" for _ in statuses)
        return self._rows(
            f"SELECT {COLUMNS} FROM orders WHERE mode = 'live' AND status IN ({marks}) ORDER BY id",
            tuple(statuses),
        )

    def of_intent(self, intent_id: str, mode: OrderMode = "live") -> list[OrderRow]:
        """Every order row of one intent (live: its bracket, its expiry exit; shares: the
        closing orders of a share row, by its share id), oldest first."""
        return self._rows(
            f"SELECT {COLUMNS} FROM orders WHERE mode = ? AND intent_id = ? ORDER BY id",
            (mode, intent_id),
        )

    def _rows(self, sql: str, params: tuple[str, ...]) -> list[OrderRow]:
        return [
            OrderRow(
                r["id"],
                r["intent_id"],
                order_mode(r["mode"]),
                OrderStatus(r["status"]),
                r["quantity"],
                r["broker_order_id"],
                r["perm_id"],
                r["created_ts"],
                from_json(r["details"]),
            )
            for r in self._store.db.execute(sql, params)
        ]

    def record_whatif(
        self,
        intent_id: str,
        init_margin_change: float,
        maint_margin_change: float,
        commission: float,
        ts: float,
    ) -> None:
        with self._store.tx(True) as db:
            db.execute(
                "INSERT INTO whatifs (intent_id, init_margin_change, maint_margin_change,"
                " commission, ts) VALUES (?, ?, ?, ?, ?)",
                (intent_id, init_margin_change, maint_margin_change, commission, ts),
            )

    def fill_ids(self) -> frozenset[str]:
        """Exec ids of every journaled fill."""
        rows = self._store.db.execute("SELECT exec_id FROM fills WHERE exec_id IS NOT NULL")
        return frozenset(str(r[0]) for r in rows)

    def record_fill(
        self,
        intent_id: str,
        side: str,
        quantity: int,
        price: float,
        ts: float,
        commission: float | None = None,
        exec_id: str | None = None,
    ) -> bool:
        """False when ``exec_id`` is already journaled (IBKR replays executions on reconnect)."""
        with self._store.tx(True) as db:
            cur = db.execute(
                "INSERT INTO fills (intent_id, side, quantity, price, commission, "
                "exec_id, ts) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (exec_id) DO NOTHING",
                (intent_id, side, quantity, price, commission, exec_id, ts),
            )
            return cur.rowcount == 1
