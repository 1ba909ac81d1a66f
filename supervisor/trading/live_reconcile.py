"""The journal against the broker, at start (and on demand: ``python -m supervisor reconcile``).

    open orders   ours (orderRef = a journaled intent, or shaped like our intent ids: the
                  journal may be lost, replaced or fresh, the broker still remembers) ->
                  followed, or adopted: the row gets the broker's ids, the intent is
                  journaled from the broker's orders when the journal had none
                  (live_adopt.py); a part without a permId is not adopted until IBKR lists
                  it; foreign -> reported, never touched
    executions    today's, of ours, against the journal's fills (the desk books them into
                  fills and positions just before: live_positions.py); one of an intent
                  the journal does not know is reported (it still blocks that intent)
    positions     every option the broker holds against the journal's open live positions:
                  one the journal does not know is reported (and counted by the caps)
    rows          "sending"/"unconfirmed" with nothing at the broker (no order, no fill) ->
                  "not_sent": the intent stays journaled, so it is never sent again;
                  "submitted"/"working" that IBKR no longer lists and never executed ->
                  reported (cancelled or expired unseen; the next cycle marks it done)

``adopt=False`` only compares (the reconcile command reads the journal, it does not own it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from supervisor.broker.base import Broker, OpenOrder
from supervisor.journal.order_status import OrderStatus
from supervisor.journal.shares import SHARES_SUFFIX
from supervisor.journal.store import Journal
from supervisor.trading.broker_refs import intent_ref
from supervisor.trading.live_adopt import (
    FOLLOWED,
    UNSURE,
    adopt_bracket,
    describe,
    find,
    is_ours,
)
from supervisor.trading.live_positions import intent_of
from supervisor.trading.order_moves import move

log = logging.getLogger("supervisor.trading.live_reconcile")


@dataclass
class Reconciliation:
    ours: list[str] = field(default_factory=list)  # matched, one line each
    adopted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # those of the problems that are orders and positions the bot did not make (the trader's
    # own, another program's): left alone and counted, a problem only to a strict reconcile
    not_ours: list[str] = field(default_factory=list)

    def foreign(self, line: str) -> None:
        self.problems.append(line)
        self.not_ours.append(line)

    def real_problems(self) -> list[str]:
        return [line for line in self.problems if line not in self.not_ours]

    def lines(self, strict: bool = False) -> list[str]:
        """One line per finding; ``strict``: what is not ours is a PROBLEM too."""
        foreign = "PROBLEM: not ours" if strict else "not ours"
        return (
            [f"ok: {line}" for line in self.ours]
            + [f"adopted: {line}" for line in self.adopted]
            + [f"{foreign}: {line}" for line in self.not_ours]
            + [f"PROBLEM: {line}" for line in self.real_problems()]
        )


def reconcile(
    broker: Broker,
    journal: Journal,
    now_ts: float,
    adopt: bool = True,
    complete: bool = True,
    day: str = "",
) -> Reconciliation:
    """``complete``: the broker's lists were refreshed; without that, nothing is concluded
    from an order's absence (no row becomes not_sent). ``day``: today, for what is adopted
    into the journal."""
    found = Reconciliation()
    orders = broker.open_orders()
    _orders(orders, journal, now_ts, adopt, day, found)
    _unsure_rows(broker, journal, orders, now_ts, adopt, complete, found)
    if complete:
        _gone_rows(broker, journal, orders, found)
    _executions(broker, journal, found)
    _positions(broker, journal, found)
    for line in found.adopted:
        log.warning("reconcile adopted %s", line, extra={"event": "reconcile_adopted"})
    for line in found.problems:
        log.warning("reconcile: %s", line, extra={"event": "reconcile"})
    return found


def _orders(
    orders: list[OpenOrder],
    journal: Journal,
    now_ts: float,
    adopt: bool,
    day: str,
    found: Reconciliation,
) -> None:
    refs: dict[str, OpenOrder] = {}  # a bracket at a time, by its entry if listed
    for order in orders:
        if order.order_ref.endswith(SHARES_SUFFIX) and is_ours(
            order.order_ref.removesuffix(SHARES_SUFFIX), journal
        ):
            found.ours.append(
                f"{describe(order)}: closes shares an exercise delivered "
                "(followed by the shares book, live_shares.py)"
            )
        elif is_ours(order.order_ref, journal):
            if order.action == "BUY" or order.order_ref not in refs:
                refs[order.order_ref] = order
        else:
            found.foreign(f"open order not placed by this bot, left alone: {describe(order)}")
    for ref, first in refs.items():
        outcome = adopt_bracket(orders, ref, journal, now_ts, day, adopt)
        what = (
            describe(first)
            if first.action == "BUY" or ref != intent_ref(ref)
            else (f"exits of {ref} ({describe(first)})")
        )
        if outcome == "followed":
            found.ours.append(what)
        elif outcome == "unacknowledged":
            found.problems.append(
                f"{what}: a part has no permId yet (IBKR has not "
                "acknowledged it): not adopted, looked for again"
            )
        elif outcome == "foreign":
            found.foreign(f"open order not placed by this bot, left alone: {what}")
        else:
            found.adopted.append(f"{what} ({outcome})")


def _unsure_rows(
    broker: Broker,
    journal: Journal,
    orders: list[OpenOrder],
    now_ts: float,
    adopt: bool,
    complete: bool,
    found: Reconciliation,
) -> None:
    refs = {o.order_ref for o in orders} | {f.order_ref for f in broker.fills()}
    for row in journal.orders.live(UNSURE):
        if row.intent_id in refs:
            if adopt:  # filled already: its executions tell the rest
                move(journal, row.id, OrderStatus.DONE, now_ts, details={"adopted_ts": now_ts})
            found.adopted.append(
                f"{row.intent_id}: {row.status} row, found at IBKR "
                "(an open order or an execution carries its orderRef)"
            )
            continue
        if not complete:
            found.problems.append(
                f"{row.intent_id}: journaled as {row.status}; IBKR's "
                "orders could not be listed, so it is looked for again"
            )
            continue
        if adopt:
            move(
                journal,
                row.id,
                OrderStatus.NOT_SENT,
                now_ts,
                details={"reconcile": "nothing at IBKR carries its orderRef"},
            )
        found.problems.append(
            f"{row.intent_id}: journaled as {row.status} but IBKR has "
            "no order or execution with its orderRef: never sent (and never "
            "sent again)"
        )


def _gone_rows(
    broker: Broker, journal: Journal, orders: list[OpenOrder], found: Reconciliation
) -> None:
    """Rows the journal still follows that IBKR no longer lists: filled (an execution
    says so) is fine; otherwise it was cancelled or expired while nobody watched."""
    executed = {f.order_ref for f in broker.fills()}
    for row in journal.orders.live(FOLLOWED):
        if find(orders, row) is not None:
            continue
        what = (
            f"{row.intent_id}: journaled as {row.status} (order "
            f"{row.broker_order_id}, permId {row.perm_id or 0})"
        )
        if row.intent_id in executed:
            found.ours.append(
                f"{what}, executed and no longer working (marked done at the next cycle)"
            )
        else:
            found.problems.append(
                f"{what} but IBKR no longer lists it and has no execution "
                "of it today: cancelled or expired unseen (the next cycle "
                "marks it done)"
            )


def _executions(broker: Broker, journal: Journal, found: Reconciliation) -> None:
    """Today's executions of ours the journal has not booked (the bot books them as soon
    as it runs: at start, before this, so these show only when it is not running)."""
    booked = journal.orders.fill_ids()
    for fill in broker.fills():
        what = (
            f"execution {fill.exec_id} {fill.side} {fill.shares:g} @ {fill.price:g} "
            f"(ref {fill.order_ref})"
        )
        if journal.load_intent(intent_of(fill.order_ref)) is None:
            if intent_ref(fill.order_ref) is not None:
                found.problems.append(
                    f"{what}: an intent of ours the journal does not "
                    "know (lost?): refused as a duplicate today, its "
                    "position not followed"
                )
            continue
        if fill.exec_id in booked:
            found.ours.append(what)
        else:
            found.adopted.append(f"{what}: not booked yet")


def _positions(broker: Broker, journal: Journal, found: Reconciliation) -> None:
    ours = {
        (p.contract.symbol, p.contract.expiry, p.contract.strike, p.contract.right.value): p
        for p in journal.open_positions()
        if p.exited is not None
    }
    for held in broker.positions():
        if held.sec_type != "OPT" or not held.quantity:
            continue
        key = (held.symbol, held.expiry, held.strike, held.right)
        p = ours.pop(key, None)
        what = f"{held.quantity:g} x {held.symbol} {held.expiry} {held.strike:g}{held.right}"
        if p is None:
            found.foreign(
                f"position {what} is not in the journal: counted in the "
                "caps, never traded by this bot"
            )
        elif p.held != held.quantity:
            found.problems.append(f"position {what}: the journal holds {p.held} ({p.intent_id})")
        else:
            found.ours.append(f"position {what} ({p.intent_id})")
    for p in ours.values():
        found.problems.append(
            f"journal position {p.intent_id} holds {p.held} x {p.contract.key}; IBKR holds none"
        )
