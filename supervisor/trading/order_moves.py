"""A change of an order row's status that the broker drives, and what happens when the journal
refuses it.

    move(journal, row, status, ts, ...)  journal.orders.update; True if a row was updated
        IllegalTransition (order_status.py: a bug, nothing written)
            -> one ERROR naming the row and both states, and one journal alert
               (kind order_transition, key "<row id> -> <status>": once per row and day,
               across restarts), the row skipped: False. Later cycles that meet it again
               say it at DEBUG only.

The broker is the source of truth: a row the journal would not move is met again at the next
refresh, and the rest of the cycle goes on. Without this an illegal change ended the process
(exit 1, a crash loop under systemd) from whichever step met it first.
"""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

from common.calendar import EXCHANGE_TZ
from supervisor.journal.order_rows import Details
from supervisor.journal.order_status import IllegalTransition, OrderStatus
from supervisor.journal.store import Journal

log = logging.getLogger("supervisor.trading.order_moves")

_EXCHANGE = ZoneInfo(EXCHANGE_TZ)  # the alert's day: the trading day it happened on


def move(
    journal: Journal,
    row_id: int,
    status: OrderStatus,
    now_ts: float,
    details: Details | None = None,
    broker_order_id: int | None = None,
    perm_id: int | None = None,
) -> bool:
    """``journal.orders.update`` for a change the broker's state drives: an illegal one is said
    once and skipped (False), never raised."""
    try:
        return journal.orders.update(
            row_id,
            status,
            now_ts,
            details=details,
            broker_order_id=broker_order_id,
            perm_id=perm_id,
        )
    except IllegalTransition as exc:
        refused(journal, row_id, status, now_ts, exc)
        return False


def refused(
    journal: Journal, row_id: int, status: OrderStatus, now_ts: float, exc: IllegalTransition
) -> None:
    """Say an illegal change once per row and status (an ERROR and a journal alert)."""
    day = datetime.fromtimestamp(now_ts, _EXCHANGE).date().isoformat()
    text = f"{exc}: the row is left as it is (the broker's state is met again next refresh)"
    key = f"{row_id} -> {OrderStatus(status).value}"
    if journal.record_alert_once(day, "order_transition", key, text, now_ts):
        log.error(text, extra={"event": "order_transition", "row": row_id, "status": status})
    else:
        log.debug(text)


def move_keeping_ids(
    journal: Journal,
    intent_id: str,
    row_id: int,
    status: OrderStatus,
    now_ts: float,
    details: Details,
    broker_order_id: int,
    perm_id: int,
) -> None:
    """``move``, for an order the broker has taken: if the row may not change to ``status``
    (it moved while the order was sent), it keeps its status but gets the ids and details all
    the same, so the order is still found by its ids and followed, never lost."""
    if move(journal, row_id, status, now_ts, details, broker_order_id, perm_id):
        return
    row = next((r for r in journal.orders.of_intent(intent_id) if r.id == row_id), None)
    if row is not None:
        journal.orders.update(
            row_id, row.status, now_ts, details, broker_order_id=broker_order_id, perm_id=perm_id
        )
