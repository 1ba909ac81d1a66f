"""Whole brackets or none, at start: every bracket of ours is checked against the broker.

    each intent with an order of ours at IBKR or a live position in the journal:
      parts      entry (BUY, no parent), take-profit (SELL LMT), stop (SELL STP), matched by
                 orderRef, parentId and OCA group (broker_refs.bracket_parts); a part without
                 a permId is not judged until IBKR lists it
      entry working, an exit missing:
          unfilled        the entry is cancelled (IBKR takes its remaining exit with it):
                          nothing was bought, and the intent stays journaled (not sent again)
          partly filled   reported: a human decides
      entry gone, contracts held (the journal's position, at most what the account holds):
          both exits      whole
          an exit missing execution.incomplete_bracket:
              replace     the missing exit placed again for what is held, at the take-profit
                          limit or stop trigger of the journal's intent, GTC, in the
                          bracket's OCA group; its ids take the lost one's place in the row,
                          so its fill is booked with the right exit reason
              close       the remaining exit cancelled, then what is held sold at the bid
                          (the expiry exit's way: live_exits.py ``close_now``, journaled,
                          so a restart finishes it; exit reason "closed")
      exits working with nothing held: reported (they would sell what is not there)

A price the journal does not know (an intent adopted from the broker without that exit) is
reported, not guessed; so is an order that cannot be placed or cancelled.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from supervisor.broker.base import Broker, BrokerError
from supervisor.journal.order_status import OrderStatus
from supervisor.journal.records import Position
from supervisor.journal.store import Journal
from supervisor.trading.broker_refs import Parts, bracket_parts
from supervisor.trading.live_adopt import FOLLOWED, find
from supervisor.trading.live_exits import EXIT_SUFFIX, ExpiryExits
from supervisor.trading.live_positions import LivePositions
from supervisor.trading.order_moves import move

log = logging.getLogger("supervisor.trading.live_brackets")

EXITS = (("take-profit", "LMT", 1), ("stop", "STP", 2))  # name, order type, place in the row


@dataclass
class Checked:
    repaired: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class BracketCheck:
    def __init__(
        self,
        broker: Broker,
        journal: Journal,
        positions: LivePositions,
        exits: ExpiryExits,
        how: str,
        account: str,
    ) -> None:
        self.broker = broker
        self.journal = journal
        self.positions = positions
        self.exits = exits
        self.how = how  # execution.incomplete_bracket: replace | close
        self.account = account

    async def run(self, now_ts: float) -> Checked:
        found = Checked()
        orders = self.broker.open_orders()
        ours = {o.order_ref for o in orders if self.journal.load_intent(o.order_ref)}
        ours |= {
            p.intent_id
            for p in self.journal.open_positions()
            if self.journal.orders.of_intent(p.intent_id)
        }  # live positions (an order row)
        for intent_id in sorted(ours):
            parts = bracket_parts(orders, intent_id)
            if any(not o.perm_id for o in parts.listed):
                found.problems.append(
                    f"{intent_id}: a part of its bracket has no permId yet "
                    "(IBKR has not acknowledged it): not checked"
                )
            elif parts.entry is not None:
                if parts.take_profit is None or parts.stop is None:
                    await self._entry_alone(parts, now_ts, found)
            else:
                await self._held(parts, now_ts, found)
        for line in found.repaired:
            log.warning("bracket repaired: %s", line, extra={"event": "bracket_repaired"})
        for line in found.problems:
            log.error("bracket: %s", line, extra={"event": "bracket_problem"})
        return found

    async def _entry_alone(self, parts: Parts, now_ts: float, found: Checked) -> None:
        entry, missing = parts.entry, _missing(parts)
        assert entry is not None
        what = f"{parts.intent_id}: its entry works at IBKR without its {missing}"
        if entry.filled:
            found.problems.append(
                f"{what}, {entry.filled:g} of {entry.quantity:g} filled: "
                "left as it is, a human must decide"
            )
            return
        try:
            await self.broker.cancel_order(entry.order_id)
        except BrokerError as exc:
            found.problems.append(f"{what} and cannot be cancelled: {exc}")
            return
        for row in self.journal.orders.live(FOLLOWED):
            if row.intent_id == parts.intent_id and find([entry], row) is not None:
                move(
                    self.journal,
                    row.id,
                    OrderStatus.CANCELLED,
                    now_ts,
                    details={"cancel": f"bracket without its {missing}"},
                )
        found.repaired.append(
            f"{what}: the entry is cancelled (nothing was bought; the intent is not sent again)"
        )

    async def _held(self, parts: Parts, now_ts: float, found: Checked) -> None:
        p = self.journal.position(parts.intent_id)
        if p is not None and p.status == "pending":  # its entry left the list: it filled
            self.positions.entry_gone(parts.intent_id, now_ts)  # ... or never did
            p = self.journal.position(parts.intent_id)
        held = self._held_now(p)
        missing = _missing(parts)
        if held <= 0:
            if parts.listed:
                found.problems.append(
                    f"{parts.intent_id}: its exits work at IBKR with "
                    "nothing of it held: left working, check them"
                )
            return
        assert p is not None
        if not missing or await self._expiring(p, now_ts):
            return
        what = f"{parts.intent_id}: {held} x {p.contract.key} held without its {missing}"
        if self.how == "close":
            self.exits.close(parts.intent_id, "closed", self.positions.day_of(now_ts), now_ts)
            found.repaired.append(
                f"{what}: closed (its other exit cancelled, then sold at "
                "the bid; execution.incomplete_bracket: close)"
            )
            return
        for name, order_type, place in EXITS:
            if name in missing:
                await self._replace(p, held, name, order_type, place, now_ts, what, found)

    async def _expiring(self, p: Position, now_ts: float) -> bool:
        """Its expiry exit has the position (it cancels the bracket's exits on purpose)."""
        ref = f"{p.intent_id}{EXIT_SUFFIX}"
        return (
            any(o.order_ref == ref for o in self.broker.open_orders())
            or p.intent_id in self.exits.close_now
            or await self.exits.due(p.symbol, p.contract.expiry, now_ts)
        )

    def _held_now(self, p: Position | None) -> int:
        """What this bot holds of the contract: the journal's, at most the account's."""
        if p is None or p.status != "open":
            return 0
        c = p.contract
        at_broker = sum(
            b.quantity
            for b in self.broker.positions()
            if b.sec_type == "OPT"
            and b.account in ("", self.account)
            and (b.symbol, b.expiry, b.strike, b.right)
            == (c.symbol, c.expiry, c.strike, c.right.value)
        )
        return int(min(p.held, at_broker))

    async def _replace(
        self,
        p: Position,
        held: int,
        name: str,
        order_type: str,
        place: int,
        now_ts: float,
        what: str,
        found: Checked,
    ) -> None:
        price = p.take_profit if name == "take-profit" else p.stop_loss
        intent = self.journal.load_intent(p.intent_id)
        if intent is not None:
            price = intent.take_profit if name == "take-profit" else intent.stop_loss
        if not (math.isfinite(price) and price > 0):
            found.problems.append(
                f"{what}: the {name}'s price is not in the journal, so it "
                "is not placed again: a human must decide"
            )
            return
        try:
            order_id, perm_id = await self.broker.place_exit(
                p.contract, order_type, held, price, self.account, p.intent_id, f"oca-{p.intent_id}"
            )
        except BrokerError as exc:
            found.problems.append(f"{what}: placing the {name} again failed: {exc}")
            return
        self._record(p.intent_id, place, order_id, perm_id, now_ts)
        found.repaired.append(
            f"{what}: the {name} placed again ({order_type} {held} @ "
            f"{price:g}, order {order_id}, permId {perm_id})"
        )

    def _record(
        self, intent_id: str, place: int, order_id: int, perm_id: int, now_ts: float
    ) -> None:
        """The new exit's ids in the bracket's row, where the lost one's were."""
        rows = self.journal.orders.of_intent(intent_id)
        if not rows:
            self.journal.orders.record(intent_id, "live", OrderStatus.DONE, 0, now_ts)
            rows = self.journal.orders.of_intent(intent_id)
        row = next((r for r in rows if r.part_ids("order_ids")), rows[0])
        ids: dict[str, list[int]] = {}
        for name, new in (("order_ids", order_id), ("perm_ids", perm_id)):
            known = row.part_ids(name)
            known += [0] * (3 - len(known))
            known[place] = new
            ids[name] = known[:3]
        move(self.journal, row.id, row.status, now_ts, details={**ids, "replaced_ts": now_ts})


def _missing(parts: Parts) -> str:
    """The exits a bracket lacks, as words ("" when it has both)."""
    return " and ".join(
        name
        for name, part in (("take-profit", parts.take_profit), ("stop", parts.stop))
        if part is None
    )
