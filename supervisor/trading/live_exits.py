"""Live positions closed before their expiry's close: nothing of ours is held into an expiry.

    each cycle, for every option position the broker holds that this bot bought (a journaled
    BOT fill of one of our intents), once the expiry's close less risk.exit_before_expiry_min
    has come:
      1. cancel its bracket's exits (take-profit and stop, by our orderRef)
      2. once they are gone (a later cycle: a cancel is not a fill's guarantee, and both
         working could sell twice), sell what is held with a DAY limit at the bid, orderRef
         "<intent id>:expiry", journaled before it is sent; repriced while the bid falls
         below it (cancelled, then placed again once the cancel has taken)

The same sale closes, at any time, a position whose bracket lost an exit when
``execution.incomplete_bracket: close`` (``close_now``, set by live_brackets.py at start; the
sale's orderRef is ``<intent id>:expiry`` too, so its fill is booked with exit reason
"expiry"). A cancel IBKR refuses (another client id's order) is an ERROR once per order.

A position the user holds by hand is never touched. An in-the-money option left at the close
is exercised by IBKR: 10 calls become 1,000 shares, which is what this module exists to stop.
"""

from __future__ import annotations

import logging

from common.messages import OptionContract, Right
from common.quotes import clean
from supervisor.broker.base import Broker, BrokerError, BrokerPosition, OpenOrder
from supervisor.journal.order_status import OrderStatus
from supervisor.journal.store import Journal
from supervisor.trading.order_moves import move
from supervisor.trading.sessions import SessionBook

log = logging.getLogger("supervisor.trading.live_exits")

EXIT_SUFFIX = ":expiry"


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
        self.close_now: set[str] = set()  # intent ids sold at the bid whatever the time
        self._cancel_refused: set[int] = set()

    async def step(self, now_ts: float) -> None:
        ours = self.journal.bought_contracts()  # contract key -> intent id
        for position in self.broker.positions():
            if position.sec_type != "OPT" or position.quantity <= 0:
                continue
            contract = OptionContract(
                position.symbol, position.expiry, position.strike, Right(position.right)
            )
            intent_id = ours.get(contract.key)
            if intent_id is None:
                continue  # not bought by this bot: the user's own
            if intent_id in self.close_now or await self.due(
                position.symbol, position.expiry, now_ts
            ):
                await self._exit(position, contract, intent_id, now_ts)

    async def due(self, symbol: str, expiry: str, now_ts: float) -> bool:
        """Whether a position in this expiry is inside its exit window (or past it)."""
        close = await self.sessions.expiry_close(symbol, expiry, now_ts)
        return close is not None and now_ts >= close - self.exit_before_s

    async def _exit(
        self, position: BrokerPosition, contract: OptionContract, intent_id: str, now_ts: float
    ) -> None:
        working = [o for o in self.broker.open_orders() if _same(o, position)]
        exits = [o for o in working if o.order_ref.endswith(EXIT_SUFFIX)]
        bracket = [
            o for o in working if o not in exits and o.action == "SELL" and o.order_ref == intent_id
        ]
        for order in bracket:
            await self._cancel(order, "expiry exit replaces the bracket's exits")
        if bracket:
            return  # sell once they are gone (next cycle): both working could oversell
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
            await self._cancel(order, f"the bid fell to {bid:.2f}: repriced next cycle")
        if exits:
            return  # working at the bid, or cancelled to be placed again once it is gone
        ref = f"{intent_id}{EXIT_SUFFIX}"
        quantity = int(position.quantity)
        row = self.journal.orders.record(
            ref,
            "live",
            OrderStatus.SUBMITTED,
            quantity,
            now_ts,
            details={"exit": "expiry", "limit": bid},
        )
        order_id = await self.broker.place_order(contract, "SELL", quantity, bid, self.account, ref)
        move(self.journal, row, OrderStatus.SUBMITTED, now_ts, broker_order_id=order_id)
        log.warning(
            "SELL %d x %s @ %.2f before its expiry (exit reason expiry)",
            quantity,
            contract.key,
            bid,
            extra={"event": "expiry_exit", "intent_id": intent_id},
        )

    async def _bid(self, contract: OptionContract) -> float | None:
        try:
            (quote,) = await self.broker.option_quotes((contract,))
        except BrokerError as exc:
            log.warning("quote for the expiry exit of %s: %s", contract.key, exc)
            return None
        return clean(quote.bid)

    async def _cancel(self, order: OpenOrder, why: str) -> None:
        try:
            await self.broker.cancel_order(order.order_id)
        except BrokerError as exc:
            key = order.perm_id or order.order_id
            level = logging.INFO if key in self._cancel_refused else logging.ERROR
            self._cancel_refused.add(key)
            log.log(level, "cancelling %s (%s) failed: %s", order.order_id, order.order_ref, exc)
            return
        log.info("order %s (%s) cancelled: %s", order.order_id, order.order_ref, why)
