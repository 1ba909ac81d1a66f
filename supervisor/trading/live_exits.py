"""Live positions closed before their expiry's close: nothing of ours is held into an expiry.

    each cycle, for every option position the broker holds that this bot bought (a journaled
    BOT fill of one of our intents), once the expiry's close less risk.exit_before_expiry_min
    has come:
      1. cancel its bracket's exits (take-profit and stop, by our orderRef)
      2. once they are gone (a later cycle: a cancel is not a fill's guarantee, and both
         working could sell twice), sell what is held with a DAY limit at the bid, orderRef
         "<intent id>:expiry", journaled before it is sent; repriced while the bid falls
         below it (cancelled, then placed again once the cancel has taken). What is sold is
         the broker's position but never more than the journal's (IBKR's position may lag a
         stop's fill), and nothing while an execution of the bracket's exits is not booked
         yet: an exit "gone" from the open orders may have filled, not been cancelled

The same sale closes, at any time, a position in ``close_now``: the trader's flatten (reason
"flatten", live_book.py) or a bracket that lost an exit with ``execution.incomplete_bracket:
close`` (reason "closed", live_brackets.py at start). Its bid is asked before the bracket's
exits are cancelled: with none (a quote outage) the stop is kept and the next cycle tries
again (``no_bid``, what the flatten answers). ``close_now`` is the journal's closing rows
(journal/closing_rows.py), written before the first cancel and dropped once the position is
closed: a restart between the cancels and the sale finishes it. The sale's orderRef is
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
        # intent id -> whether its bracket's exits were kept, for positions whose last sale
        # found no bid (cleared once one is found): what a flatten answers
        self.no_bid: dict[str, bool] = {}

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
        # a flatten's (or a repair's) sale may come at any time: its bid asked before the stop
        # goes, so a quote outage keeps the stop rather than leave the position with neither
        if bracket and reason != "expiry" and await self._bid(contract) is None:
            self._no_bid(intent_id, contract, position.quantity, reason, kept_stop=True)
            return
        for order in bracket:
            await self._cancel(order, f"the {reason} exit replaces the bracket's exits")
        if bracket:
            return  # sell once they are gone (a later call): both working could oversell
        if self._sold_unbooked(intent_id):
            return  # an exit of the bracket filled (not booked yet): what is left is unknown
        bid = await self._bid(contract)
        if bid is None:
            self._no_bid(intent_id, contract, position.quantity, reason, kept_stop=False)
            return
        self.no_bid.pop(intent_id, None)
        stale = [o for o in exits if o.limit > bid]
        for order in stale:
            if await self._cancel(order, f"the bid fell to {bid:.2f}: repriced next cycle"):
                self._cancelled(order, now_ts)
        if exits or self.selling(intent_id):
            return  # working at the bid, or cancelled to be placed again once it is gone
        quantity = self._to_sell(intent_id, position)
        if quantity > 0:
            await self._sell(contract, intent_id, quantity, bid, reason, now_ts)

    async def _sell(
        self,
        contract: OptionContract,
        intent_id: str,
        quantity: int,
        bid: float,
        reason: str,
        now_ts: float,
    ) -> None:
        """The sale at the bid: journaled, then sent."""
        ref = f"{intent_id}{EXIT_SUFFIX}"
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

    def _to_sell(self, intent_id: str, position: BrokerPosition) -> int:
        """What the broker holds, but never more than the journal's position holds: the
        broker's position may lag a stop's fill (IBKR sends it after the execution), and a
        sale of both would open a short."""
        p = self.journal.position(intent_id)
        held = p.held if p is not None else 0
        if held < position.quantity:
            log.log(
                logging.WARNING if held > 0 else logging.INFO,
                "%s: IBKR holds %g, the journal's %s %d: %d sold",
                contract_key(position),
                position.quantity,
                intent_id,
                held,
                max(held, 0),
                extra={"event": "exit_sized", "intent_id": intent_id},
            )
        return min(int(position.quantity), held)

    def _sold_unbooked(self, intent_id: str) -> bool:
        """An execution of the bracket's exits the journal has not booked yet (its commission
        report on its way): a stop that filled stops being listed as a cancelled one does,
        and the broker's position may not show the fill yet. The sale waits for the booking."""
        booked = self.journal.orders.fill_ids()
        sold = [
            f
            for f in self.broker.fills()
            if f.order_ref == intent_id and f.side == "SLD" and f.exec_id not in booked
        ]
        if sold:
            log.warning(
                "%s: an exit of its bracket filled (%s) and is not booked yet: the sale waits "
                "for it",
                intent_id,
                ", ".join(f.exec_id for f in sold),
                extra={"event": "exit_waits_for_fill", "intent_id": intent_id},
            )
        return bool(sold)

    def _no_bid(
        self,
        intent_id: str,
        contract: OptionContract,
        quantity: float,
        reason: str,
        kept_stop: bool,
    ) -> None:
        """No bid to sell at: tried again next cycle; said in the flatten's answer."""
        self.no_bid[intent_id] = kept_stop
        what = "before its expiry" if reason == "expiry" else f"for the {reason}"
        kept = "; its bracket's exits kept" if kept_stop else ""
        log.warning(
            "%s: no bid to close %g %s%s; tried again next cycle",
            contract.key,
            quantity,
            what,
            kept,
            extra={"event": "exit_no_bid", "intent_id": intent_id, "reason": reason},
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
