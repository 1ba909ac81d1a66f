"""Live positions closed before their expiry's close: nothing of ours is held into an expiry.

    each cycle, for every option position the broker holds that this bot bought (a journaled
    BOT fill of one of our intents), once the expiry's close less risk.exit_before_expiry_min
    has come:
      1. cancel its bracket's exits (take-profit and stop, by our orderRef)
      2. once they are gone (a later cycle: a cancel is not a fill's guarantee, and both
         working could sell twice), sell what is held with a DAY limit at the bid, orderRef
         "<intent id>:expiry", journaled before it is sent; repriced while the bid falls
         below it (cancelled, then placed again once the cancel has taken)

The same sale closes, at any time, a position in ``close_now``: the trader's flatten (reason
"flatten", live_book.py) or a bracket that lost an exit with ``execution.incomplete_bracket:
close`` (reason "closed", live_brackets.py at start). ``close_now`` is the journal's closing
rows (journal/closing_rows.py), written before the first cancel and dropped once the position
is closed: a restart between the cancels and the sale finishes it. The sale's orderRef is
``<intent id>:expiry`` whatever the reason (what IBKR lists and the adoption at start know);
its order row's details say the reason, and its fill is booked with it (live_fills.py).

Never two sales at once: none is placed while one of the position's is listed working at
IBKR, or journaled submitted or working and not yet seen gone by a complete refresh (an order
just placed may not be listed yet). A cancel IBKR refuses (another client id's order) is an
ERROR once per order.

A position the user holds by hand is never touched. An in-the-money option left at the close
is exercised by IBKR: 10 calls become 1,000 shares, which is what this module exists to stop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from common.messages import OptionContract, Right
from common.quotes import clean
from supervisor.broker.base import Broker, BrokerError, BrokerPosition, OpenOrder
from supervisor.journal.order_status import OrderStatus
from supervisor.journal.store import Journal
from supervisor.trading.order_moves import move
from supervisor.trading.sessions import SessionBook

log = logging.getLogger("supervisor.trading.live_exits")

EXIT_SUFFIX = ":expiry"
SELLING = (OrderStatus.SENDING, OrderStatus.SUBMITTED, OrderStatus.WORKING)  # a sale not gone


def contract_key(p: BrokerPosition) -> str:
    return OptionContract(p.symbol, p.expiry, p.strike, Right(p.right)).key


def _same(order: OpenOrder, position: BrokerPosition) -> bool:
    return (order.symbol, order.expiry, order.strike, order.right) == (
        position.symbol,
        position.expiry,
        position.strike,
        position.right,
    )


class ExpiryExits:
    def __init__(
        self,
        broker: Broker,
        journal: Journal,
        sessions: SessionBook,
        exit_before_expiry_min: float,
        account: str,
    ) -> None:
        self.broker = broker
        self.journal = journal
        self.sessions = sessions
        self.exit_before_s = exit_before_expiry_min * 60
        self.account = account
        self._cancel_refused: set[int] = set()

    @property
    def close_now(self) -> Mapping[str, str]:
        """Intent id -> reason of the positions sold at the bid whatever the time."""
        return self.journal.closing.pending()

    def close(self, intent_id: str, reason: str, day: str, now_ts: float) -> None:
        """``intent_id``'s position closed from now on (journaled first, durable)."""
        self.journal.closing.add(intent_id, reason, day, now_ts)

    def cancels_pending(self) -> list[OpenOrder]:
        """The bracket exits still listed for positions being closed now: the sale waits."""
        closing, ours = self.close_now, self.journal.bought_contracts()
        held = [
            (p, ours[key])
            for p in self.broker.positions()
            if p.sec_type == "OPT" and p.quantity > 0 and (key := contract_key(p)) in ours
        ]
        return [
            o
            for p, intent_id in held
            if intent_id in closing
            for o in self.broker.open_orders()
            if _same(o, p) and o.action == "SELL" and o.order_ref == intent_id
        ]

    async def step(self, now_ts: float) -> None:
        ours = self.journal.bought_contracts()  # contract key -> intent id
        closing = self.close_now
        self._forget_closed(closing)
        for position in self.broker.positions():
            if position.sec_type != "OPT" or position.quantity <= 0:
                continue
            contract = OptionContract(
                position.symbol, position.expiry, position.strike, Right(position.right)
            )
            intent_id = ours.get(contract.key)
            if intent_id is None:
                continue  # not bought by this bot: the user's own
            if intent_id in closing:
                await self._exit(position, contract, intent_id, now_ts, closing[intent_id])
            elif await self.due(position.symbol, position.expiry, now_ts):
                await self._exit(position, contract, intent_id, now_ts, "expiry")

    def _forget_closed(self, closing: Mapping[str, str]) -> None:
        """Closing rows whose position is closed (or was never booked) are done with."""
        for intent_id in closing:
            p = self.journal.position(intent_id)
            if p is None or not p.active:
                self.journal.closing.done(intent_id)

    async def due(self, symbol: str, expiry: str, now_ts: float) -> bool:
        """Whether a position in this expiry is inside its exit window (or past it)."""
        close = await self.sessions.expiry_close(symbol, expiry, now_ts)
        return close is not None and now_ts >= close - self.exit_before_s

    async def _exit(
        self,
        position: BrokerPosition,
        contract: OptionContract,
        intent_id: str,
        now_ts: float,
        reason: str,
    ) -> None:
        working = [o for o in self.broker.open_orders() if _same(o, position)]
        exits = [o for o in working if o.order_ref.endswith(EXIT_SUFFIX)]
        bracket = [
            o for o in working if o not in exits and o.action == "SELL" and o.order_ref == intent_id
        ]
        for order in bracket:
            await self._cancel(order, "expiry exit replaces the bracket's exits")
        if bracket:
            return  # sell once they are gone (a later call): both working could oversell
        bid = await self._bid(contract)
        if bid is None:
            log.warning(
                "%s: no bid to close %g before expiry; tried again next cycle",
                contract.key,
                position.quantity,
            )
            return
        stale = [o for o in exits if o.limit > bid]
        for order in stale:
            if await self._cancel(order, f"the bid fell to {bid:.2f}: repriced next cycle"):
                self._cancelled(order, now_ts)
        ref = f"{intent_id}{EXIT_SUFFIX}"
        if exits or self.selling(intent_id):
            return  # working at the bid, or cancelled to be placed again once it is gone
        quantity = int(position.quantity)
        row = self.journal.orders.record(
            ref,
            "live",
            OrderStatus.SUBMITTED,
            quantity,
            now_ts,
            details={"exit": reason, "limit": bid},
        )
        order_id = await self.broker.place_order(contract, "SELL", quantity, bid, self.account, ref)
        move(self.journal, row, OrderStatus.SUBMITTED, now_ts, broker_order_id=order_id)
        log.warning(
            "SELL %d x %s @ %.2f %s (exit reason %s)",
            quantity,
            contract.key,
            bid,
            "before its expiry" if reason == "expiry" else "at the bid",
            reason,
            extra={"event": f"{reason}_exit", "intent_id": intent_id},
        )

    def selling(self, intent_id: str) -> bool:
        """A sale of the position journaled and not yet seen gone (placed, perhaps not listed
        yet)."""
        ref = f"{intent_id}{EXIT_SUFFIX}"
        return any(r.status in SELLING for r in self.journal.orders.of_intent(ref))

    async def _bid(self, contract: OptionContract) -> float | None:
        try:
            (quote,) = await self.broker.option_quotes((contract,))
        except BrokerError as exc:
            log.warning("quote for the expiry exit of %s: %s", contract.key, exc)
            return None
        return clean(quote.bid)

    def _cancelled(self, order: OpenOrder, now_ts: float) -> None:
        """A sale of ours cancelled to be repriced: its row no longer counts as selling (the
        new one waits until IBKR stops listing the old one)."""
        for row in self.journal.orders.of_intent(order.order_ref):
            same = row.broker_order_id == order.order_id or (
                order.perm_id and row.perm_id == order.perm_id
            )
            if same and row.status in SELLING:
                move(self.journal, row.id, OrderStatus.CANCELLED, now_ts, {"cancel": "repriced"})

    async def _cancel(self, order: OpenOrder, why: str) -> bool:
        try:
            await self.broker.cancel_order(order.order_id)
        except BrokerError as exc:
            key = order.perm_id or order.order_id
            level = logging.INFO if key in self._cancel_refused else logging.ERROR
            self._cancel_refused.add(key)
            log.log(level, "cancelling %s (%s) failed: %s", order.order_id, order.order_ref, exc)
            return False
        log.info("order %s (%s) cancelled: %s", order.order_id, order.order_ref, why)
        return True
