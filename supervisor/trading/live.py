"""The live order lifecycle, run once per cycle in live mode (and at start, to reconcile).

    journal (live orders submitted/working) <-> broker (open orders, fills)
      - statuses follow the broker's (Submitted, PreSubmitted -> working; gone -> done)
      - fills are journaled once each (exec id), with side, price and commission
      - an entry still unfilled after execution.entry_timeout_s is cancelled
      - the kill switch cancels every open entry of ours; exits (bracket children) stay
      - orders carrying an orderRef the journal does not know are reported, never touched

Only orders whose orderRef is one of our intent ids are ever cancelled.
"""

from __future__ import annotations

import logging
from typing import Any

from supervisor.broker.base import Broker, BrokerError
from supervisor.journal.store import Journal
from supervisor.trading.live_exits import EXIT_SUFFIX

log = logging.getLogger("supervisor.trading.live")

WORKING = ("Submitted", "PreSubmitted", "PendingSubmit", "ApiPending")


class LiveBook:
    def __init__(self, broker: Broker, journal: Journal, entry_timeout_s: float) -> None:
        self.broker = broker
        self.journal = journal
        self.entry_timeout_s = entry_timeout_s

    async def step(self, now_ts: float, halted: bool) -> None:
        """Follow statuses, journal fills, cancel stale entries (all entries when halted)."""
        open_by_id = {o.order_id: o for o in self.broker.open_orders()}
        self._journal_fills(now_ts)
        for row in self.journal.live_orders():
            parent = open_by_id.get(row["broker_order_id"])
            if parent is None:
                self.journal.update_order(row["id"], "done", now_ts)
                continue
            if parent.status in WORKING and row["status"] != "working":
                self.journal.update_order(row["id"], "working", now_ts,
                                          details={"broker_status": parent.status})
            if row["intent_id"].endswith(EXIT_SUFFIX):
                continue  # a closing order before expiry is an exit: never cancelled here
            stale = now_ts - row["created_ts"] > self.entry_timeout_s
            if halted or stale:
                await self._cancel(row, now_ts, "kill switch" if halted else "entry timeout")

    async def _cancel(self, row: dict[str, Any], now_ts: float, why: str) -> None:
        try:
            await self.broker.cancel_order(row["broker_order_id"])
        except BrokerError as exc:
            log.error("cancelling entry %s failed: %s", row["broker_order_id"], exc)
            return
        self.journal.update_order(row["id"], "cancelled", now_ts, details={"cancel": why})
        log.warning("entry %s (%s) cancelled: %s", row["broker_order_id"], row["intent_id"],
                    why, extra={"event": "order_cancelled", "intent_id": row["intent_id"],
                                "reason": why})

    def _journal_fills(self, now_ts: float) -> None:
        for fill in self.broker.fills():
            ref = fill.order_ref
            if self.journal.load_intent(ref) is None:
                continue  # not ours: another client or a manual trade
            if self.journal.record_fill(ref, fill.side, int(fill.shares), fill.price, fill.ts,
                                        fill.commission, fill.exec_id):
                log.info("fill %s %s %d @ %.2f", ref, fill.side, fill.shares, fill.price,
                         extra={"event": "fill", "intent_id": ref})

    def reconcile(self, now_ts: float) -> list[str]:
        """At start: the broker's open orders and positions against the journal. Returns the
        discrepancies it logged (orders of ours the journal lacks, journal orders gone)."""
        problems: list[str] = []
        for order in self.broker.open_orders():
            if self.journal.load_intent(order.order_ref) is None:
                problems.append(f"open order {order.order_id} (ref {order.order_ref!r}) is not "
                                "in the journal: left alone")
        for position in self.broker.positions():
            log.info("broker position %s %s %s%s x %g", position.symbol, position.expiry,
                     position.strike, position.right, position.quantity,
                     extra={"event": "broker_position"})
        self._journal_fills(now_ts)
        for problem in problems:
            log.warning("reconcile: %s", problem, extra={"event": "reconcile"})
        return problems
