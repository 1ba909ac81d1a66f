"""Positions of the simulated account and how a trade changes them: avgCost and realized P&L.

IBKR's ``avgCost`` is per contract/share including the multiplier AND the commissions of the
opening trades (an option bought at 2.50 for 1.00 commission has avgCost 251.00; sold short
at 2.50 for 1.00 it is 249.00: the net credit). It is averaged while a position grows,
unchanged while it shrinks, and restarted at the opening part of a trade that flips the sign.
A reducing trade realizes::

    long closed by a SELL:  price x multiplier x closed - its commission - avgCost x closed
    short closed by a BUY:  avgCost x closed - price x multiplier x closed - its commission

A trade that flips the sign splits its commission by quantity between the closing and the
opening part. Expiring worthless is a close at price 0 with no commission (-avgCost x qty
for a long position).
"""

from __future__ import annotations

from dataclasses import dataclass

from tools.gateway_sim.instruments import Instrument


@dataclass
class Position:
    inst: Instrument
    quantity: float = 0.0
    avg_cost: float = 0.0  # per contract/share including the multiplier and commissions
    realized_pnl: float = 0.0  # since the sim started (the ledger keeps the day's share)


def apply_trade(
    pos: Position, signed_qty: float, price: float, commission: float = 0.0
) -> float | None:
    """Book ``signed_qty`` (+ bought, - sold) at ``price`` per share/contract unit; returns the
    realized P&L of the part that reduced the position, or None if the trade only opened or
    added (IBKR reports no realizedPNL for those)."""
    if signed_qty == 0:
        return None
    unit = price * pos.inst.multiplier
    held = pos.quantity
    closing = (
        0.0 if held == 0 or (held > 0) == (signed_qty > 0) else min(abs(held), abs(signed_qty))
    )
    opening = abs(signed_qty) - closing
    closing_fee = commission * closing / abs(signed_qty)
    side = 1.0 if signed_qty > 0 else -1.0
    realized = None
    if closing:
        # a SELL closes a long (+), a BUY closes a short (-): same formula, mirrored
        realized = -side * (unit - pos.avg_cost) * closing - closing_fee
        pos.realized_pnl += realized
    remaining = held + side * closing
    if opening:
        # the opening part's cost per unit: price plus (long) or minus (short) its commission
        cost = unit + side * (commission - closing_fee) / opening
        pos.avg_cost = (pos.avg_cost * abs(remaining) + cost * opening) / (abs(remaining) + opening)
    elif remaining == 0:
        pos.avg_cost = 0.0
    pos.quantity = held + signed_qty
    return realized
