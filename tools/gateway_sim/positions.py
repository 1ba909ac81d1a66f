"""Positions of the simulated account and how a trade changes them (fills and expirations).

IBKR reports ``avgCost`` per contract including the multiplier (an option bought at 2.50 has
avgCost 250), averaged while a position grows, unchanged while it shrinks, and restarted
at the trade price when a trade flips its sign; the sim does the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from tools.gateway_sim.instruments import Instrument


@dataclass
class Position:
    inst: Instrument
    quantity: float = 0.0
    avg_cost: float = 0.0  # per contract/share including the multiplier, like IB


def apply_trade(pos: Position, signed_qty: float, price: float) -> None:
    """Book ``signed_qty`` (+ bought, - sold) at ``price`` per share/contract unit."""
    cost = price * pos.inst.multiplier
    new_qty = pos.quantity + signed_qty
    if pos.quantity == 0 or (pos.quantity > 0) == (signed_qty > 0):
        total = pos.avg_cost * abs(pos.quantity) + cost * abs(signed_qty)
        pos.avg_cost = total / abs(new_qty) if new_qty else 0.0
    elif new_qty == 0:
        pos.avg_cost = 0.0
    elif (new_qty > 0) != (pos.quantity > 0):
        pos.avg_cost = cost
    pos.quantity = new_qty
