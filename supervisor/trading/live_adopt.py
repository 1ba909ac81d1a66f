"""Orders of ours at IBKR get a followed journal row: at start (live_reconcile.py) and every
cycle (live.py).

    is_ours(ref)        the orderRef names a journaled intent, or is shaped like our intent
                        ids (broker_refs.py): a journal lost or replaced does not make our
                        orders someone else's
    adopt_bracket(...)  one bracket (entry, take-profit, stop by orderRef / parentId / OCA
                        group) -> its outcome:
        followed        a row follows it already (its missing order ids are filled in)
        revived         its row said it was over (a cancel that did not take, a refusal
                        ib_insync misread)
        adopted         a row without the broker's ids (sending, unconfirmed, refused)
        recorded        no row at all; the journal had no intent either (lost, replaced,
                        fresh): the intent is rebuilt from the broker's orders (contract,
                        quantity, prices), its decision journaled with rule "adopted" and
                        its position pending, so fills and exits follow it as any other
        recorded exits  the same for exits whose entry is no longer listed (it filled): the
                        row is done, the caller opens the pending position from today's
                        executions or the account's position (LivePositions.entry_gone)
        unacknowledged  a part IBKR has not given a permId yet: never called adopted until
                        IBKR lists it (looked for again at the next refresh)
        foreign         shaped like ours but no option: left alone

``adopt=False`` (the reconcile command) only tells the outcome. A row records the order ids
and permIds of all three parts (0 where one is not listed), so a sale is booked with the
exit reason of the part that sold (live_fills.py).
"""

from __future__ import annotations

import logging

from supervisor.broker.base import OpenOrder
from supervisor.journal.order_rows import OrderRow
from supervisor.journal.order_status import OrderStatus
from supervisor.journal.records import Position
from supervisor.journal.store import Journal
from supervisor.trading.broker_refs import ADOPTED, Parts, bracket_parts, intent_from, intent_ref
from supervisor.trading.live_exits import EXIT_SUFFIX
from supervisor.trading.live_positions import intent_of
from supervisor.trading.order_moves import move
from supervisor.trading.risk import RiskDecision

log = logging.getLogger("supervisor.trading.live_adopt")

UNSURE = (OrderStatus.SENDING, OrderStatus.UNCONFIRMED)  # journaled, fate unknown
ADOPTABLE = (*UNSURE, OrderStatus.REJECTED)  # ib_insync may call an order refused that IBKR works
FOLLOWED = (OrderStatus.SUBMITTED, OrderStatus.WORKING)


def is_ours(order_ref: str, journal: Journal) -> bool:
    return bool(order_ref) and (
        intent_ref(order_ref) is not None or journal.load_intent(intent_of(order_ref)) is not None
    )


def find(orders: list[OpenOrder], row: OrderRow) -> OpenOrder | None:
    """The broker's order behind a journal row: by permId, else (no permId known) by id."""
    if row.perm_id:
        return next((o for o in orders if o.perm_id == row.perm_id), None)
    return next((o for o in orders if o.order_id == row.broker_order_id), None)


def describe(order: OpenOrder) -> str:
    return (
        f"{order.action} {order.remaining:g} {order.symbol} {order.expiry} "
        f"{order.strike:g}{order.right} {order.order_type} (order {order.order_id}, "
        f"permId {order.perm_id}, client {order.client_id}, ref {order.order_ref!r})"
    )


def adopt_bracket(
    orders: list[OpenOrder], ref: str, journal: Journal, now_ts: float, day: str, adopt: bool = True
) -> str:
    """Make sure the bracket (or expiry sale) ``ref`` names at the broker is followed; its
    outcome (module docstring)."""
    if ref.endswith(EXIT_SUFFIX):  # the sale before expiry: one order, its own row
        sale = next(o for o in orders if o.order_ref == ref)
        return _follow(sale, {}, journal, now_ts, adopt, bool(sale.perm_id))
    parts = bracket_parts(orders, ref)
    if not parts.listed:
        return "followed"  # nothing of it listed: only our SELLs of another group
    acknowledged = all(o.perm_id for o in parts.listed)
    if journal.load_intent(ref) is None:
        if intent_from(parts) is None:
            return "foreign"  # shaped like ours, but no option bought: not this bot's
        if not acknowledged or not adopt:
            return "recorded" if acknowledged else "unacknowledged"
        _record_intent(parts, journal, now_ts, day)
    if parts.entry is not None:
        return _follow(parts.entry, parts.ids(), journal, now_ts, adopt, acknowledged)
    rows = journal.orders.of_intent(ref)
    if rows:  # the entry filled and left the list: the exits belong to its row
        if adopt:
            _complete_ids(journal, rows[0], parts.ids(), now_ts)
        return "followed"
    if not acknowledged:
        return "unacknowledged"
    if adopt:  # the entry is over ("done"); what it bought opens the pending position
        row_id = journal.orders.record(
            ref,
            "live",
            OrderStatus.DONE,
            int(parts.listed[0].quantity),
            now_ts,
            broker_order_id=parts.ids()["order_ids"][0],
            details={**parts.ids(), "adopted_ts": now_ts},
        )
        log.warning(
            "exits of %s at IBKR without their entry (filled earlier) and without a "
            "journal row: recorded (row %d)",
            ref,
            row_id,
            extra={"event": "order_adopted", "intent_id": ref, "outcome": "recorded"},
        )
    return "recorded exits"


def _record_intent(parts: Parts, journal: Journal, now_ts: float, day: str) -> None:
    """The journal lost this intent: what the broker's orders tell of it is journaled, so
    it is never sent again and its fills and exits are followed."""
    intent = intent_from(parts)
    assert intent is not None, "an option's bracket"
    journal.record_intent(intent, day)
    quantity = int(max(o.quantity for o in parts.listed))
    if parts.entry is not None:  # an entry works only on its own day: today's decision
        journal.record_decision(
            RiskDecision(intent.intent_id, True, quantity, "adopted", ADOPTED), day, now_ts
        )
    if journal.position(intent.intent_id) is None:
        journal.save_position(
            Position(
                intent.intent_id,
                intent.symbol,
                intent.contract,
                quantity,
                intent.entry_limit,
                intent.take_profit,
                intent.stop_loss,
                "pending",
                now_ts,
            ),
            day,
        )
    log.warning(
        "intent %s (%s) is not in the journal but IBKR works its orders: journaled as adopted",
        intent.intent_id,
        intent.contract.key,
        extra={"event": "intent_adopted", "intent_id": intent.intent_id},
    )


def _follow(
    order: OpenOrder,
    ids: dict[str, list[int]],
    journal: Journal,
    now_ts: float,
    adopt: bool,
    acknowledged: bool,
) -> str:
    rows = journal.orders.of_intent(order.order_ref)
    same = [
        r
        for r in rows
        if order.perm_id
        and r.perm_id == order.perm_id
        or (not r.perm_id and r.broker_order_id == order.order_id)
    ]
    followed = [r for r in same if r.status in FOLLOWED]
    if followed:
        if adopt and ids:
            _complete_ids(journal, followed[0], ids, now_ts)
        return "followed"
    if not acknowledged:
        return "unacknowledged"
    details = {**ids, "adopted_ts": now_ts}
    if same:
        outcome, row_id = "revived", same[0].id
    elif unsure := [r for r in rows if r.status in ADOPTABLE and not r.perm_id]:
        outcome, row_id = "adopted", unsure[0].id
    else:
        outcome, row_id = "recorded", 0
    if adopt:
        if not row_id:
            row_id = journal.orders.record(
                order.order_ref,
                "live",
                OrderStatus.WORKING,
                int(order.quantity),
                now_ts,
                details=details,
            )
        move(
            journal,
            row_id,
            OrderStatus.WORKING,
            now_ts,
            details=details,
            broker_order_id=order.order_id,
            perm_id=order.perm_id,
        )
        log.warning(
            "%s at IBKR and %s: followed from now on",
            describe(order),
            outcome,
            extra={"event": "order_adopted", "intent_id": order.order_ref, "outcome": outcome},
        )
    return outcome


def _complete_ids(
    journal: Journal, row: OrderRow, ids: dict[str, list[int]], now_ts: float
) -> None:
    """Fill in the part ids a row lacks (0 or missing) from what the broker lists now."""
    merged: dict[str, list[int]] = {}
    for name, new in ids.items():
        known = row.part_ids(name)
        old = known + [0] * (3 - len(known))
        both = [a or b for a, b in zip(old[:3], new, strict=True)]
        if both != known:
            merged[name] = both
    if merged:
        move(journal, row.id, row.status, now_ts, details=merged)
