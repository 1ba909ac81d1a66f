"""What the broker says this bot already sent: orderRefs that carry one of our intent ids.

    intent id     16 hex characters (workers/intents.py), a re-entry ``<id>.2`` (desk.py)
    orderRef      the intent id on each part of its bracket; ``<id>:expiry`` on the sale
                  before expiry (live_exits.py)
    sent_at(...)  the intent ids named by the account's open orders and today's executions:
                  the risk step's duplicate rule refuses them whatever the journal holds (a
                  journal deleted, replaced or started afresh forgets what IBKR remembers)
    intent_from   an intent rebuilt from its bracket at the broker (contract, prices), for
                  orders of ours the journal has no row for: journaled as adopted

A ref of another shape (the user's own orders, another program's) is never ours. Pure: no
broker, no journal.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from common.messages import OptionContract, OrderIntent, Right, Signal
from supervisor.broker.base import Fill, OpenOrder
from supervisor.trading.live_exits import EXIT_SUFFIX

INTENT_ID = re.compile(r"[0-9a-f]{16}(?:\.[1-9][0-9]*)?")
ADOPTED = "adopted from IBKR: its orders carry this intent id and the journal had no row"


def intent_ref(order_ref: str) -> str | None:
    """The intent id an orderRef of this bot carries, or None (not a ref this bot makes)."""
    base = order_ref.removesuffix(EXIT_SUFFIX)
    return base if INTENT_ID.fullmatch(base) else None


def sent_at(
    orders: Iterable[OpenOrder], fills: Iterable[Fill], account: str = ""
) -> frozenset[str]:
    """Intent ids with an open order (of ``account``, when orders say theirs) or an
    execution today at the broker."""
    refs = [o.order_ref for o in orders if not account or o.account in ("", account)]
    refs += [f.order_ref for f in fills]
    return frozenset(i for ref in refs if (i := intent_ref(ref)) is not None)


@dataclass(frozen=True)
class Parts:
    """A bracket of ours as the broker lists it; None where a part is not listed."""

    intent_id: str
    entry: OpenOrder | None
    take_profit: OpenOrder | None
    stop: OpenOrder | None

    @property
    def listed(self) -> list[OpenOrder]:
        return [o for o in (self.entry, self.take_profit, self.stop) if o is not None]

    def ids(self) -> dict[str, list[int]]:
        """(entry, take-profit, stop) order ids and permIds, 0 where not known: the exit
        reason of a sale is told by its position in these lists (live_fills.py)."""
        entry_id = (
            self.entry.order_id
            if self.entry
            else next((o.parent_id for o in self.listed if o.parent_id), 0)
        )
        parts = (self.take_profit, self.stop)
        return {
            "order_ids": [entry_id, *(o.order_id if o else 0 for o in parts)],
            "perm_ids": [
                self.entry.perm_id if self.entry else 0,
                *(o.perm_id if o else 0 for o in parts),
            ],
        }


def bracket_parts(orders: Sequence[OpenOrder], intent_id: str) -> Parts:
    """The parts of ``intent_id``'s bracket: matched by orderRef, the exits also by their
    parentId (the entry's id, same client) or the bracket's OCA group (``oca-<id>``)."""
    ours = [o for o in orders if o.order_ref == intent_id]
    entry = next((o for o in ours if o.action == "BUY" and not o.parent_id), None)

    def belongs(o: OpenOrder) -> bool:
        if o.oca_group == f"oca-{intent_id}":
            return True
        return entry is None or (o.parent_id == entry.order_id and o.client_id == entry.client_id)

    exits = [o for o in ours if o.action == "SELL" and belongs(o)]
    tp = next((o for o in exits if o.order_type == "LMT"), None)
    sl = next((o for o in exits if o.order_type.startswith("STP")), None)
    return Parts(intent_id, entry, tp, sl)


def intent_from(parts: Parts) -> OrderIntent | None:
    """The intent a bracket of ours at the broker was sent for (a call bought on a BUY
    signal, a put on a SELL): what the journal can know of it; None for what is no option."""
    first = parts.listed[0] if parts.listed else None
    if first is None or first.sec_type != "OPT" or first.right not in ("C", "P"):
        return None
    right = Right(first.right)
    contract = OptionContract(
        first.symbol, first.expiry, first.strike, right, first.multiplier or 100
    )
    entry = parts.entry.limit if parts.entry else math.nan
    tp = parts.take_profit.limit if parts.take_profit else math.nan
    sl = parts.stop.aux if parts.stop else math.nan
    signal = Signal.BUY if right is Right.CALL else Signal.SELL
    return OrderIntent(
        parts.intent_id,
        0,
        first.symbol,
        contract,
        signal,
        entry,
        tp,
        sl,
        entry,
        math.nan,
        (ADOPTED,),
    )
