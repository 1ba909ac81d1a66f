"""One matcher pass: which working orders execute now, how many, at what price.

A pass looks at every working (Submitted) order in the order it was placed, against the
market of one instant ``ts``:

    tradable?    the instrument's session is open (options: regular hours, and not past
                 their expiry close; stocks: regular hours, or extended with outsideRth)
    marketable?  the quote touches the limit / the stop has triggered (fill_mode market),
                 or at once at the limit (fill_mode immediate)
    routed?      an OCA group "with block" (ocaType 1 or 2) and a bracket's children route
                 one order at a time: only the first marketable member executes in a pass;
                 ocaType 3 has no block, so two marketable members may both execute before
                 either's reduction reaches the other (IBKR warns that this can overfill)
    how many?    the whole remaining quantity, or at most ``max_fill_per_match`` (partial
                 fills, one execution per pass)

Planning first and executing after keeps that race honest: every size is decided on the
quantities the pass started with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from tools.gateway_sim.market import Market
from tools.gateway_sim.order_codec import number

if TYPE_CHECKING:
    from tools.gateway_sim.orders import SimOrder

BLOCKING_OCA_TYPES = frozenset({0, 1, 2})  # 0: unset; treated as 1, the sim's old behaviour


@dataclass(frozen=True)
class Planned:
    order: SimOrder
    qty: float
    price: float


def expiry_date(expiry: str) -> date:
    return date(int(expiry[:4]), int(expiry[4:6]), int(expiry[6:]))


def tradable(order: SimOrder, market: Market, ts: float) -> bool:
    """Whether the order's market is open at ``ts`` (always-open days: always, but an
    option still stops at its expiry close)."""
    clock = market.clock
    if order.inst.is_option:
        if ts >= clock.expiry_close(expiry_date(order.inst.expiry)):
            return False
        return clock.is_open(ts, rth=True)
    return clock.is_open(ts, rth=not order.outside_rth)


def fill_price(order: SimOrder, market: Market, fill_mode: str, ts: float) -> float | None:
    """The execution price at ``ts``, or None if the order is not marketable."""
    buy = order.action == "BUY"
    limit = number(order.fields, "lmtPrice")
    kind = order.fields.get("orderType", "").upper()
    if fill_mode == "immediate":
        return limit if limit is not None else round(market.mark(order.inst, ts), 4)
    quote = market.quote(order.inst, ts)
    touch = quote.ask if buy else quote.bid
    if touch is None or touch <= 0 or math.isnan(touch):
        return None
    if kind in ("STP", "STP LMT"):
        stop = number(order.fields, "auxPrice")
        last = market.mark(order.inst, ts)
        if stop is None or (last < stop if buy else last > stop):
            return None
        if kind == "STP":
            return touch
    if kind == "MKT":
        return touch
    if limit is None:
        return None
    if buy and touch <= limit:
        return min(limit, touch)
    if not buy and touch >= limit:
        return max(limit, touch)
    return None


def block_key(order: SimOrder) -> tuple[str, ...] | None:
    """Orders sharing a key are routed one at a time (None: no block)."""
    if order.oca_group:
        if order.oca_type in BLOCKING_OCA_TYPES:
            return ("oca", order.oca_group)
        return None
    if order.parent_id:  # a bracket's children: only one of them can execute
        return ("bracket", str(order.client_id), str(order.parent_id))
    return None


def plan_pass(
    working: list[SimOrder], market: Market, fill_mode: str, max_fill: int, ts: float
) -> list[Planned]:
    """The executions of one pass, decided on the state the pass started with."""
    plan: list[Planned] = []
    routed: set[tuple[str, ...]] = set()
    for order in working:  # placement order: the first placed is the first routed
        if order.status != "Submitted" or order.remaining <= 0:
            continue
        if not tradable(order, market, ts):
            continue
        key = block_key(order)
        if key is not None and key in routed:
            continue
        price = fill_price(order, market, fill_mode, ts)
        if price is None:
            continue
        if key is not None:
            routed.add(key)
        qty = order.remaining if max_fill <= 0 else min(order.remaining, float(max_fill))
        plan.append(Planned(order, qty, price))
    return plan
