"""The live order lifecycle, run once per cycle in live mode.

    broker.refresh_orders()   every open order of the account (any client id) and today's
                              executions: what a reconnect under another client id still sees
    journal (live orders sending/submitted/working) <-> broker open orders, by permId (IBKR's
                              id across client ids and reconnects), else by order id
      - statuses follow the broker's (Submitted, PreSubmitted -> working; gone -> done)
      - executions become journal fills and positions (live_positions.py)
      - an entry still unfilled after execution.entry_timeout_s is cancelled
      - the kill switch cancels every open entry of ours; exits (bracket children) stay

Only orders whose orderRef is one of our intent ids are ever cancelled. An order is marked
done only after a refresh that succeeded: an incomplete list must not look like a fill. A
cancel IBKR refuses (an order placed under another client id: only that one may cancel it)
is an ERROR once per order, then said at INFO each time it is tried again.
"""

from __future__ import annotations

import asyncio
import logging

from supervisor.broker.base import Broker, BrokerError, OpenOrder
from supervisor.journal.order_rows import OrderRow
from supervisor.journal.order_status import OrderStatus
from supervisor.journal.store import Journal
from supervisor.trading.broker_refs import intent_ref, sent_at
from supervisor.trading.live_adopt import FOLLOWED, adopt_bracket, find, is_ours
from supervisor.trading.live_exits import EXIT_SUFFIX
from supervisor.trading.live_positions import LivePositions
from supervisor.trading.order_moves import move

log = logging.getLogger("supervisor.trading.live")

WORKING = ("Submitted", "PreSubmitted", "PendingSubmit", "ApiPending")


class LiveBook:
    def __init__(
        self, broker: Broker, journal: Journal, entry_timeout_s: float, positions: LivePositions
    ) -> None:
        self.broker = broker
        self.journal = journal
        self.entry_timeout_s = entry_timeout_s
        self.positions = positions
        self._cancel_refused: set[int] = set()  # permIds (else order ids) said at ERROR

    async def refresh(self) -> bool:
        try:
            await self.broker.refresh_orders()
            return True
        except (BrokerError, TimeoutError) as exc:
            log.warning(
                "could not refresh the account's orders: %s (statuses kept as they "
                "were this cycle)",
                exc,
            )
            return False

    async def refresh_acknowledged(self, attempts: int = 3, pause_s: float = 0.5) -> bool:
        """Refresh, then again while an order of ours has no permId (IBKR has not
        acknowledged it yet), a few times; whether the last refresh succeeded."""
        complete = await self.refresh()
        for _ in range(attempts):
            if all(
                o.perm_id or not is_ours(o.order_ref, self.journal)
                for o in self.broker.open_orders()
            ):
                break
            await asyncio.sleep(pause_s)
            complete = await self.refresh()
        return complete

    def sent(self, account: str) -> frozenset[str]:
        """Intent ids the account's open orders and today's executions carry."""
        return sent_at(self.broker.open_orders(), self.broker.fills(), account)

    async def sent_before(self, account: str) -> frozenset[str]:
        """``sent``, and the completed orders' (filled or cancelled: an entry cancelled
        unfilled is in no other list), asked once at start: what a lost journal forgot."""
        try:
            completed = await self.broker.completed_refs()
        except (BrokerError, TimeoutError) as exc:
            log.warning(
                "IBKR's completed orders could not be listed: %s (an entry cancelled "
                "unfilled today is not known as sent unless the journal says so)",
                exc,
            )
            completed = []
        return self.sent(account) | {i for r in completed if (i := intent_ref(r)) is not None}

    async def step(self, now_ts: float, halted: bool, why: str = "kill switch") -> bool:
        """Follow statuses and fills, cancel stale entries (all entries when halted, for
        ``why``: the kill switch, or a stop). True if the account's orders were refreshed
        (else what another client id left working is not in sight)."""
        complete = await self.refresh()
        orders = self.broker.open_orders()
        if complete:
            self._adopt(orders, now_ts)
        self.positions.follow(now_ts)
        for row in self.journal.orders.live(FOLLOWED):
            order = find(orders, row)
            if order is None:
                if complete:
                    move(self.journal, row.id, OrderStatus.DONE, now_ts)
                    self.positions.entry_gone(row.intent_id, now_ts)
                continue
            if order.status in WORKING and row.status != OrderStatus.WORKING:
                move(
                    self.journal,
                    row.id,
                    OrderStatus.WORKING,
                    now_ts,
                    details={"broker_status": order.status},
                )
            if row.intent_id.endswith(EXIT_SUFFIX):
                continue  # a closing order before expiry is an exit: never cancelled here
            stale = now_ts - row.created_ts > self.entry_timeout_s
            if halted or stale:
                await self._cancel(row, order, now_ts, why if halted else "entry timeout")
        for row in self.journal.orders.live((OrderStatus.CANCELLED,)):
            if not any(o.order_ref == row.intent_id for o in orders):
                self.positions.entry_gone(row.intent_id, now_ts)
        self.positions.mark(now_ts)
        await self.positions.settle_expired(now_ts)
        self.positions.settle_shorts(now_ts)
        return complete

    def _adopt(self, orders: list[OpenOrder], now_ts: float) -> None:
        """Every bracket of ours working at IBKR gets a followed row, even one whose row says
        refused, cancelled or of unknown fate, or whose intent the journal does not have
        (lost, replaced): what works at the broker is what counts (live_adopt.py)."""
        day = self.positions.day_of(now_ts)
        for ref in dict.fromkeys(o.order_ref for o in orders):
            if not is_ours(ref, self.journal):
                continue
            if adopt_bracket(orders, ref, self.journal, now_ts, day) == "recorded exits":
                self.positions.entry_gone(ref, now_ts)  # what it bought opens its position

    async def _cancel(self, row: OrderRow, order: OpenOrder, now_ts: float, why: str) -> None:
        try:
            await self.broker.cancel_order(order.order_id)
        except BrokerError as exc:
            key = order.perm_id or order.order_id
            level = logging.INFO if key in self._cancel_refused else logging.ERROR
            self._cancel_refused.add(key)
            log.log(
                level,
                "cancelling entry %s (%s) for its %s failed: %s",
                order.order_id,
                row.intent_id,
                why,
                exc,
                extra={"event": "cancel_failed", "intent_id": row.intent_id},
            )
            return
        move(self.journal, row.id, OrderStatus.CANCELLED, now_ts, details={"cancel": why})
        log.warning(
            "entry %s (%s) cancelled: %s",
            order.order_id,
            row.intent_id,
            why,
            extra={"event": "order_cancelled", "intent_id": row.intent_id, "reason": why},
        )

    async def cancel_entries_in(self, keys: set[str], now_ts: float) -> None:
        """Our entries still working in these contracts, whose expiry's exit time has come:
        cancelled (a resting limit filling at 15:59 would be held into the expiry)."""
        orders = self.broker.open_orders()
        for row in self.journal.orders.live(FOLLOWED):
            order = find(orders, row)
            if (
                order is not None
                and order.action == "BUY"
                and ":" not in row.intent_id
                and entry_key(order) in keys
            ):
                await self._cancel(row, order, now_ts, "its expiry's exit time")

    def ours_working(self) -> list[OpenOrder]:
        """The open orders at the broker that carry one of our intent ids."""
        return [
            o
            for o in self.broker.open_orders()
            if self.journal.load_intent(o.order_ref.removesuffix(EXIT_SUFFIX))
        ]


def entry_key(order: OpenOrder) -> str:
    """The contract of an option order, as OptionContract.key writes it."""
    return f"{order.symbol} {order.expiry} {order.strike:g}{order.right}"
