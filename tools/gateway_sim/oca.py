"""What an execution does to the other orders of its OCA group or bracket (IBKR's rules).

``ocaType`` (TWS API Order; TWS guide "One Cancels Other"):

    1  cancel all remaining orders, with block      -> siblings cancelled at the first
                                                       execution, partial or not
    2  remaining orders proportionately reduced,    -> siblings shrink by the same share of
       with block                                      their size (equal sizes: by the
    3  ... reduced, no block                           filled quantity); one at 0 is cancelled
    0  unset with a group name                      -> treated as 1 (the sim's behaviour
                                                       before ocaType; IBKR names no default)

"Block" (one order routed at a time) is a routing rule: see matching.py. The group is the
name across the whole account (every client), as IBKR keys OCA groups.

Reduction keeps one number per group: the executed share, the sum over executions of
qty / the executing order's original size. Every working member then has
``remaining = floor(original size x (1 - executed share))``: A 10 and B 10, A fills 4 ->
B 6; B then fills 3 -> A 3 left (total 7). Rounding is down, whole units (IBKR does not say
how it rounds; down never lets the reduction itself overfill).

Bracket children with a parentId and no group: IBKR "only one of them can be triggered, and
if it does, the other is immediately cancelled" -> the first execution of one child cancels
its siblings (the same as whole fills did before partial fills existed).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tools.gateway_sim.orders import SimOrder

WORKING = frozenset({"Submitted", "PreSubmitted"})


@dataclass(frozen=True)
class Consequence:
    """Cancel ``order`` (new_total None) or shrink it to ``new_total``."""

    order: SimOrder
    new_total: float | None


@dataclass
class OcaBook:
    executed_share: dict[str, float] = field(default_factory=dict)  # group -> share

    def after_execution(
        self, order: SimOrder, qty: float, orders: Iterable[SimOrder]
    ) -> list[Consequence]:
        everyone = list(orders)
        if not order.oca_group:
            return _bracket_siblings(order, everyone)
        group = order.oca_group
        members = [o for o in everyone if o.oca_group == group and o.status in WORKING]
        if order.oca_type in (0, 1):
            return [Consequence(o, None) for o in members if o is not order]
        base = order.base_qty or qty
        share = self.executed_share.get(group, 0.0) + qty / base
        self.executed_share[group] = share
        return [c for o in members if (c := _rebalanced(o, share)) is not None]


def _rebalanced(order: SimOrder, share: float) -> Consequence | None:
    left = max(0.0, math.floor(order.base_qty * (1.0 - share) + 1e-9))
    new_total = min(order.quantity, order.filled + left)
    if new_total >= order.quantity:
        return None
    if new_total <= order.filled:
        return Consequence(order, None)
    return Consequence(order, new_total)


def _bracket_siblings(order: SimOrder, everyone: list[SimOrder]) -> list[Consequence]:
    if not order.parent_id:
        return []
    return [
        Consequence(o, None)
        for o in everyone
        if o is not order
        and o.client_id == order.client_id
        and o.parent_id == order.parent_id
        and not o.oca_group
        and o.status in WORKING
    ]
