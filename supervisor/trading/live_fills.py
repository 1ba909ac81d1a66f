"""How one execution at the broker changes a live position (pure: no broker, no journal).

    BOT  -> contracts bought grow, entry price is their average; pending becomes open
    SLD  -> contracts sold grow, exit price is their average; all sold: closed, with the
            reason of the order that sold the last of them
    more sold than bought: the position is net short (both exits of a bracket filled, say);
    ``net_short`` says so, and the desk trips the kill switch

Which order sold is told by ``exit_reason_of``: the bracket's take-profit or stop (by order id
or permId, so a reconnect under another client id does not lose it), the expiry exit
(``<intent>:expiry``), otherwise "closed".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from supervisor.journal.records import ExitReason, Position
from supervisor.trading.live_exits import EXIT_SUFFIX


def apply_fill(p: Position, side: str, quantity: int, price: float, commission: float,
               ts: float, reason: ExitReason) -> Position:
    if side == "BOT":
        bought = 0 if p.filled_ts is None else p.quantity
        total = bought + quantity
        entry = ((p.entry_price or 0.0) * bought + price * quantity) / total
        return replace(p, quantity=total, entry_price=entry, status="open",
                       filled_ts=p.filled_ts if p.filled_ts is not None else ts,
                       commission=p.commission + commission, exited=p.exited or 0,
                       closed_ts=None, exit_reason=None)
    sold = (p.exited or 0) + quantity
    exit_price = ((p.exit_price or 0.0) * (p.exited or 0) + price * quantity) / sold
    done = p.filled_ts is not None and sold >= p.quantity
    return replace(p, exited=sold, exit_price=exit_price,
                   commission=p.commission + commission,
                   exit_commission=p.exit_commission + commission,
                   status="closed" if done else p.status,
                   closed_ts=ts if done else None, exit_reason=reason if done else None)


def net_short(p: Position) -> int:
    """Contracts sold beyond those bought (0 when not short)."""
    bought = 0 if p.filled_ts is None else p.quantity
    return max((p.exited or 0) - bought, 0)


def exit_reason_of(order_ref: str, order_id: int, perm_id: int,
                   bracket: Mapping[str, Any]) -> ExitReason:
    """The exit a sale came from, given the bracket's journaled ``order_ids``/``perm_ids``
    (entry, take-profit, stop)."""
    if order_ref.endswith(EXIT_SUFFIX):
        return "expiry"
    for name, key in (("perm_ids", perm_id), ("order_ids", order_id)):
        ids: list[int] = list(bracket.get(name) or ())
        if len(ids) == 3 and key:
            if key == ids[1]:
                return "take_profit"
            if key == ids[2]:
                return "stop_loss"
    return "closed"
