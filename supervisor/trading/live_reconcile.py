"""The journal against the broker, at start (and on demand: ``python -m supervisor reconcile``).

    open orders   ours (orderRef = a journaled intent) whose row is "sending"/"unconfirmed"
                  (a crash or a lost answer between journal and send) -> adopted: the row
                  gets the broker's ids and is followed from now on; foreign -> reported,
                  never touched
    executions    today's, of ours, against the journal's fills (the desk books them into
                  fills and positions just before: live_positions.py)
    positions     every option the broker holds against the journal's open live positions:
                  one the journal does not know is reported (and counted by the caps)
    rows          "sending"/"unconfirmed" with nothing at the broker (no order, no fill) ->
                  "not_sent": the intent stays journaled, so it is never sent again

``adopt=False`` only compares (the reconcile command reads the journal, it does not own it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from supervisor.broker.base import Broker, OpenOrder
from supervisor.journal.store import Journal
from supervisor.trading.live_positions import intent_of

log = logging.getLogger("supervisor.trading.live_reconcile")

UNSURE = ("sending", "unconfirmed")  # journaled, fate unknown
ADOPTABLE = (*UNSURE, "rejected")  # ib_insync may call an order refused that IBKR works
FOLLOWED = ("submitted", "working")


@dataclass
class Reconciliation:
    ours: list[str] = field(default_factory=list)  # matched, one line each
    adopted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return ([f"ok: {line}" for line in self.ours]
                + [f"adopted: {line}" for line in self.adopted]
                + [f"PROBLEM: {line}" for line in self.problems])


def bracket_ids(orders: list[OpenOrder], parent: OpenOrder) -> dict[str, Any]:
    """(entry, take-profit, stop) ids of a bracket found at the broker."""
    children = [o for o in orders if o.parent_id == parent.order_id and o.perm_id
                and o.client_id == parent.client_id]
    tp = next((o for o in children if o.order_type == "LMT"), None)
    sl = next((o for o in children if o.order_type.startswith("STP")), None)
    if tp is None or sl is None:
        return {"order_ids": [parent.order_id], "perm_ids": [parent.perm_id]}
    return {"order_ids": [parent.order_id, tp.order_id, sl.order_id],
            "perm_ids": [parent.perm_id, tp.perm_id, sl.perm_id]}


def reconcile(broker: Broker, journal: Journal, now_ts: float, adopt: bool = True,
              complete: bool = True) -> Reconciliation:
    """``complete``: the broker's lists were refreshed; without that, nothing is concluded
    from an order's absence (no row becomes not_sent)."""
    found = Reconciliation()
    orders = broker.open_orders()
    _orders(orders, journal, now_ts, adopt, found)
    _unsure_rows(broker, journal, orders, now_ts, adopt, complete, found)
    _executions(broker, journal, found)
    _positions(broker, journal, found)
    for line in found.adopted:
        log.warning("reconcile adopted %s", line, extra={"event": "reconcile_adopted"})
    for line in found.problems:
        log.warning("reconcile: %s", line, extra={"event": "reconcile"})
    return found


def _orders(orders: list[OpenOrder], journal: Journal, now_ts: float, adopt: bool,
            found: Reconciliation) -> None:
    for order in orders:
        what = describe(order)
        if not order.order_ref or journal.load_intent(intent_of(order.order_ref)) is None:
            found.problems.append(f"open order not placed by this bot, left alone: {what}")
        elif not order.parent_id:  # a bracket's exits are followed with their entry
            outcome = follow_order(orders, order, journal, now_ts, adopt)
            (found.ours if outcome == "followed" else found.adopted).append(
                what if outcome == "followed" else f"{what} ({outcome})")


def describe(order: OpenOrder) -> str:
    return (f"{order.action} {order.remaining:g} {order.symbol} {order.expiry} "
            f"{order.strike:g}{order.right} {order.order_type} (order {order.order_id}, "
            f"permId {order.perm_id}, client {order.client_id}, ref {order.order_ref!r})")


def follow_order(orders: list[OpenOrder], order: OpenOrder, journal: Journal, now_ts: float,
                 adopt: bool) -> str:
    """Make sure an entry of ours that works at IBKR has a followed journal row: "followed"
    (it had one), "revived" (its row said it was over: a cancel that did not take, a refusal
    ib_insync misread), "adopted" (a row without the broker's ids: sending, unconfirmed,
    refused) or "recorded" (no row at all)."""
    rows = journal.orders_for(order.order_ref)
    same = [r for r in rows if r["perm_id"] == order.perm_id
            or (not r["perm_id"] and r["broker_order_id"] == order.order_id)]
    if any(r["status"] in FOLLOWED for r in same):
        return "followed"
    details = {**bracket_ids(orders, order), "adopted_ts": now_ts}
    if same:
        outcome, row_id = "revived", same[0]["id"]
    elif unsure := [r for r in rows if r["status"] in ADOPTABLE and not r["perm_id"]]:
        outcome, row_id = "adopted", unsure[0]["id"]
    else:
        outcome, row_id = "recorded", 0
    if adopt:
        if not row_id:
            row_id = journal.record_order(order.order_ref, "live", "working",
                                          int(order.quantity), now_ts, details=details)
        journal.update_order(row_id, "working", now_ts, details=details,
                             broker_order_id=order.order_id, perm_id=order.perm_id)
        log.warning("%s at IBKR and %s: followed from now on", describe(order), outcome,
                    extra={"event": "order_adopted", "intent_id": order.order_ref,
                           "outcome": outcome})
    return outcome


def _unsure_rows(broker: Broker, journal: Journal, orders: list[OpenOrder], now_ts: float,
                 adopt: bool, complete: bool, found: Reconciliation) -> None:
    refs = {o.order_ref for o in orders} | {f.order_ref for f in broker.fills()}
    for row in journal.live_orders(UNSURE):
        if row["intent_id"] in refs:
            if adopt:  # filled already: its executions tell the rest
                journal.update_order(row["id"], "done", now_ts, details={"adopted_ts": now_ts})
            found.adopted.append(f"{row['intent_id']}: {row['status']} row, found at IBKR "
                                 "(an open order or an execution carries its orderRef)")
            continue
        if not complete:
            found.problems.append(f"{row['intent_id']}: journaled as {row['status']}; IBKR's "
                                  "orders could not be listed, so it is looked for again")
            continue
        if adopt:
            journal.update_order(row["id"], "not_sent", now_ts,
                                 details={"reconcile": "nothing at IBKR carries its orderRef"})
        found.problems.append(f"{row['intent_id']}: journaled as {row['status']} but IBKR has "
                              "no order or execution with its orderRef: never sent (and never "
                              "sent again)")


def _executions(broker: Broker, journal: Journal, found: Reconciliation) -> None:
    """Today's executions of ours the journal has not booked (the bot books them as soon
    as it runs: at start, before this, so these show only when it is not running)."""
    booked = journal.fill_ids()
    for fill in broker.fills():
        if journal.load_intent(intent_of(fill.order_ref)) is None:
            continue
        what = (f"execution {fill.exec_id} {fill.side} {fill.shares:g} @ {fill.price:g} "
                f"(ref {fill.order_ref})")
        if fill.exec_id in booked:
            found.ours.append(what)
        else:
            found.adopted.append(f"{what}: not booked yet")


def _positions(broker: Broker, journal: Journal, found: Reconciliation) -> None:
    ours = {(p.contract.symbol, p.contract.expiry, p.contract.strike, p.contract.right.value):
            p for p in journal.open_positions() if p.exited is not None}
    for held in broker.positions():
        if held.sec_type != "OPT" or not held.quantity:
            continue
        key = (held.symbol, held.expiry, held.strike, held.right)
        p = ours.pop(key, None)
        what = f"{held.quantity:g} x {held.symbol} {held.expiry} {held.strike:g}{held.right}"
        if p is None:
            found.problems.append(f"position {what} is not in the journal: counted in the "
                                  "caps, never traded by this bot")
        elif p.held != held.quantity:
            found.problems.append(f"position {what}: the journal holds {p.held} "
                                  f"({p.intent_id})")
        else:
            found.ours.append(f"position {what} ({p.intent_id})")
    for p in ours.values():
        found.problems.append(f"journal position {p.intent_id} holds {p.held} x "
                              f"{p.contract.key}; IBKR holds none")
