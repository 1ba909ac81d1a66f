"""The journal's order rows: live orders from "sending" to their fate, what-ifs and fills.

Part of ``Journal`` (supervisor/journal/store.py), which owns the connection and transactions;
kept apart so each file stays one screenful of concerns. An order row is written before the
order is sent and updated after (status, the broker's order id and permId): a crash in
between leaves a row the start-up reconcile resolves.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from supervisor.journal.order_status import OrderStatus, check_initial, check_transition
from supervisor.journal.rows import json_ready, to_json


class OrderRows:
    _db: sqlite3.Connection

    def _tx(self, durable: bool) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError  # the Journal's

    def record_order(
        self,
        intent_id: str,
        mode: str,
        status: OrderStatus,
        quantity: int,
        ts: float,
        broker_order_id: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """A new order row (dry-run, what-if or live); returns its row id for update_order."""
        status = OrderStatus(status)
        check_initial(status, f"order of {intent_id}")
        with self._tx(True) as db:
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

    def update_order(
        self,
        row_id: int,
        status: OrderStatus,
        ts: float,
        details: Mapping[str, Any] | None = None,
        broker_order_id: int | None = None,
        perm_id: int | None = None,
    ) -> bool:
        """New status; ``details`` merged into the stored ones; False if no such row."""
        updated = self._update_order("id = ?", row_id, status, ts, details, broker_order_id)
        if updated and perm_id:
            with self._tx(True) as db:
                db.execute("UPDATE orders SET perm_id = ? WHERE id = ?", (perm_id, row_id))
        return updated

    def reject_decision(
        self, intent_id: str, day: str, reason: str, rule: str = "rejected"
    ) -> None:
        """What risk accepted was not sent after all: the gateway refused it (``rejected``),
        or a stop came before it left (``stopping``)."""
        with self._tx(True) as db:
            db.execute(
                "UPDATE decisions SET accepted = 0, quantity = 0, rule = ?, "
                "reason = ? WHERE id = (SELECT MAX(id) FROM decisions WHERE "
                "intent_id = ? AND day = ?)",
                (rule, reason, intent_id, day),
            )

    def update_order_by_broker_id(
        self,
        broker_order_id: int,
        status: OrderStatus,
        ts: float,
        details: Mapping[str, Any] | None = None,
    ) -> bool:
        """As update_order, for the order IBKR knows as ``broker_order_id`` (latest row)."""
        return self._update_order("broker_order_id = ?", broker_order_id, status, ts, details, None)

    def _update_order(
        self,
        where: str,
        key: int,
        status: OrderStatus,
        ts: float,
        details: Mapping[str, Any] | None,
        broker_order_id: int | None,
    ) -> bool:
        with self._tx(True) as db:
            row = db.execute(
                f"SELECT id, intent_id, status, details, broker_order_id FROM orders "
                f"WHERE {where} ORDER BY id DESC LIMIT 1",
                (key,),
            ).fetchone()
            if row is None:
                return False
            check_transition(
                OrderStatus(row["status"]),
                OrderStatus(status),
                f"order row {row['id']} ({row['intent_id']})",
            )
            merged = {**json.loads(row["details"]), **json_ready(details or {})}
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

    def live_orders(
        self, statuses: Sequence[OrderStatus] = (OrderStatus.SUBMITTED, OrderStatus.WORKING)
    ) -> list[dict[str, Any]]:
        """Live orders still in one of ``statuses``: what the live lifecycle watches."""
        marks = ", ".join("?" for _ in statuses)
        rows = self._db.execute(
            f"SELECT id, intent_id, status, quantity, broker_order_id, perm_id, created_ts, "
            "details FROM orders "
            f"WHERE mode = 'live' AND status IN ({marks}) ORDER BY id",
            tuple(statuses),
        )
        return [dict(row) for row in rows]

    def orders_for(self, intent_id: str) -> list[dict[str, Any]]:
        """Every live order row of one intent (its bracket, its expiry exit), oldest first;
        ``details`` decoded."""
        rows = self._db.execute(
            "SELECT id, intent_id, status, quantity, broker_order_id, perm_id, created_ts, "
            "details FROM orders WHERE mode = 'live' AND intent_id = ? ORDER BY id",
            (intent_id,),
        )
        return [{**dict(r), "details": json.loads(r["details"] or "{}")} for r in rows]

    def record_whatif(
        self,
        intent_id: str,
        init_margin_change: float,
        maint_margin_change: float,
        commission: float,
        ts: float,
    ) -> None:
        with self._tx(True) as db:
            db.execute(
                "INSERT INTO whatifs (intent_id, init_margin_change, maint_margin_change,"
                " commission, ts) VALUES (?, ?, ?, ?, ?)",
                (intent_id, init_margin_change, maint_margin_change, commission, ts),
            )

    def fill_ids(self) -> frozenset[str]:
        """Exec ids of every journaled fill."""
        rows = self._db.execute("SELECT exec_id FROM fills WHERE exec_id IS NOT NULL")
        return frozenset(r[0] for r in rows)

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
        with self._tx(True) as db:
            cur = db.execute(
                "INSERT INTO fills (intent_id, side, quantity, price, commission, "
                "exec_id, ts) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (exec_id) DO NOTHING",
                (intent_id, side, quantity, price, commission, exec_id, ts),
            )
            return cur.rowcount == 1
