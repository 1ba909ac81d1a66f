"""How one execution at the broker changes a live position (pure: no broker, no journal).

    BOT  -> contracts bought grow, entry price is their average; pending becomes open
    SLD  -> contracts sold grow, exit price is their average; all sold: closed, with the
            reason of the order that sold the last of them
    more sold than bought: the position closes on what was held (its realized P&L counts
    only that), and ``sold_beyond`` is net short (both exits of a bracket filled, say): it
    opens (or grows) a short row of its own (``short_row``) and the desk trips the kill switch

Which order sold is told by ``exit_reason_of``: the bracket's take-profit or stop (by order id
or permId, so a reconnect under another client id does not lose it), a sale of live_exits.py
(``<intent>:expiry``: the reason its order row journaled, "expiry", "flatten" or "closed"),
otherwise "closed".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from supervisor.journal.order_rows import OrderRow
from supervisor.journal.records import EXIT_REASONS, ExitReason, Position
from supervisor.trading.live_exits import EXIT_SUFFIX

SHORT_SUFFIX = ":short"


def apply_fill(
    p: Position,
    side: str,
    quantity: int,
    price: float,
    commission: float,
    ts: float,
    reason: ExitReason,
) -> Position:
    if side == "BOT":
        bought = 0 if p.filled_ts is None else p.quantity
        total = bought + quantity
        entry = ((p.entry_price or 0.0) * bought + price * quantity) / total
        return replace(
            p,
            quantity=total,
            entry_price=entry,
            status="open",
            filled_ts=p.filled_ts if p.filled_ts is not None else ts,
            commission=p.commission + commission,
            exited=p.exited or 0,
            closed_ts=None,
            exit_reason=None,
        )
    beyond = sold_beyond(p, side, quantity)
    closing = quantity - beyond
    if closing <= 0:
        return p  # nothing held to sell: the whole sale is short (short_row)
    commission = commission * closing / quantity  # the rest is the short's
    sold = (p.exited or 0) + closing
    exit_price = ((p.exit_price or 0.0) * (p.exited or 0) + price * closing) / sold
    done = p.filled_ts is not None and sold >= p.quantity
    return replace(
        p,
        exited=sold,
        exit_price=exit_price,
        commission=p.commission + commission,
        exit_commission=p.exit_commission + commission,
        status="closed" if done else p.status,
        closed_ts=ts if done else None,
        exit_reason=reason if done else None,
    )


def sold_beyond(p: Position, side: str, quantity: int) -> int:
    """Of a sale of ``quantity``, the contracts beyond what ``p`` still holds (0 for a
    purchase, or a sale within what is held)."""
    if side == "BOT":
        return 0
    bought = 0 if p.filled_ts is None else p.quantity
    return max(quantity - max(bought - (p.exited or 0), 0), 0)


def short_id(intent_id: str) -> str:
    return f"{intent_id}{SHORT_SUFFIX}"


def short_row(
    short: Position | None,
    long: Position,
    quantity: int,
    price: float,
    commission: float,
    ts: float,
) -> Position:
    """The short row after ``quantity`` more contracts were sold beyond what ``long`` held:
    opened at the sale's price, growing at the average."""
    if short is None:
        return replace(
            long,
            intent_id=short_id(long.intent_id),
            quantity=quantity,
            status="short",
            opened_ts=ts,
            entry_price=price,
            filled_ts=ts,
            mark=None,
            exit_price=None,
            closed_ts=None,
            exit_reason=None,
            commission=commission,
            exited=None,
            exit_commission=0.0,
        )
    total = short.quantity + quantity
    entry = ((short.entry_price or 0.0) * short.quantity + price * quantity) / total
    return replace(
        short, quantity=total, entry_price=entry, commission=short.commission + commission
    )


def exit_reason_of(
    order_ref: str,
    order_id: int,
    perm_id: int,
    bracket: OrderRow | None,
    sales: Sequence[OrderRow] = (),
) -> ExitReason:
    """The exit a sale came from, given the bracket's row and its journaled
    ``order_ids``/``perm_ids`` (entry, take-profit, stop), and the rows of the sales at the
    bid (``sales``: the orderRef's rows)."""
    if order_ref.endswith(EXIT_SUFFIX):
        return sale_reason(sales, order_id, perm_id)
    for name, key in (("perm_ids", perm_id), ("order_ids", order_id)):
        ids = bracket.part_ids(name) if bracket is not None else []
        if len(ids) == 3 and key:
            if key == ids[1]:
                return "take_profit"
            if key == ids[2]:
                return "stop_loss"
    return "closed"


def sale_reason(sales: Sequence[OrderRow], order_id: int, perm_id: int) -> ExitReason:
    """The reason journaled on the sale that filled (matched by permId or order id; else the
    latest sale's): "expiry" when none says (a row of older code, an adopted one)."""
    matched = [
        r
        for r in sales
        if (perm_id and r.perm_id == perm_id) or (order_id and r.broker_order_id == order_id)
    ]
    rows = matched or list(sales)
    said = rows[-1].details.get("exit") if rows else None
    return next((r for r in EXIT_REASONS if r == said), "expiry")
