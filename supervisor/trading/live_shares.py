"""Shares an exercise of one of our options delivered, followed until they are closed (live).

opened(...)   the row "<intent id>:shares" (journal/shares.py): + shares for a call, -
              for a put, at the underlying's close; said once (log, journal, alert)
step(now)     every cycle:
  fills       executions whose orderRef is a row's id close it, in part or whole (realized
              P&L: (price - cost) x shares x side, less commissions), once per exec id
  marks       the broker's price for the stock (the notional limit counts it)
  gone        the account no longer holds them (sold by hand) and nothing of ours works:
              closed, exit reason "gone", no price
  close       execution.close_exercised_shares (default): at the first step inside a
              regular session after the exercise, a DAY limit order at the bid (a sale) or
              the ask (a buy-back), orderRef "<intent id>:shares", journaled (orders,
              mode "shares") before it is sent; repriced (cancelled, placed again once gone)
              while the market moves away from it; never a second one while one of ours
              works or one of today's left unseen (a refusal waits for the next session)
  held        close_exercised_shares false: held, counted, said once a day
with_shares   the caps' view: 100 shares count as one contract (rounded up), their value
              (shares x price) counts in the notional limit
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import replace

from common.config import Settings
from common.quotes import clean
from supervisor.broker.base import Broker, BrokerError, Fill, OpenOrder
from supervisor.journal.order_status import OrderStatus
from supervisor.journal.records import Position
from supervisor.journal.shares import Shares, shares_id
from supervisor.journal.store import Journal
from supervisor.observe.alerts import Alerter
from supervisor.trading.order_moves import move
from supervisor.trading.sessions import SessionBook

log = logging.getLogger("supervisor.trading.live_shares")

COMMISSION_WAIT_S = 30.0  # as live_positions.py: a fill waits this long for its commission


def with_shares(
    held: dict[str, int], notional: float, shares: Iterable[Shares]
) -> tuple[dict[str, int], float]:
    """The caps' count (contracts by underlying) and notional with the shares added."""
    out = dict(held)
    for s in shares:
        out[s.symbol] = out.get(s.symbol, 0) + s.contracts
        notional += s.notional
    return out, notional


class ExercisedShares:
    def __init__(
        self,
        broker: Broker,
        journal: Journal,
        sessions: SessionBook,
        settings: Settings,
        alerter: Alerter | None = None,
    ) -> None:
        self.broker = broker
        self.journal = journal
        self.sessions = sessions
        self.close = settings.execution.close_exercised_shares
        self.account = settings.ibkr.account
        self.alerter = alerter
        self._first_seen: dict[str, float] = {}
        self._said: set[tuple[str, str]] = set()  # (share id, day) warnings said once

    def day_of(self, ts: float) -> str:
        return self.sessions.day_of(ts).isoformat()

    def stock(self) -> dict[str, float]:
        """The account's stock positions by symbol (every one, ours or not)."""
        held: dict[str, float] = {}
        for p in self.broker.positions():
            if p.sec_type == "STK" and p.account in ("", self.account):
                held[p.symbol] = held.get(p.symbol, 0.0) + p.quantity
        return held

    # --- an exercise ------------------------------------------------------------------------

    def opened(
        self, p: Position, shares: int, close: float, close_ts: float, now_ts: float
    ) -> None:
        """The shares an exercise of ``p`` delivered at ``close_ts``, at ``close``."""
        row = Shares(
            shares_id(p.intent_id),
            p.intent_id,
            p.symbol,
            shares,
            close,
            "held",
            close_ts,
            mark=close,
        )
        if not self.journal.shares.open(row, self.day_of(close_ts)):
            return  # journaled before (a crash before the option was booked)
        what = (
            "closed at the next regular session (execution.close_exercised_shares)"
            if self.close
            else "held (execution.close_exercised_shares: false) and said "
            "every day until you close them"
        )
        text = (
            f"{p.contract.key} x{p.held} was exercised at its expiry's close ({p.symbol} "
            f"closed at {close:.2f}): the account got {shares:+d} {p.symbol}; they count "
            f"in the caps as {row.contracts} contract(s) and {row.notional:,.0f} of "
            f"notional, and are {what}"
        )
        log.warning(
            text,
            extra={
                "event": "exercised",
                "intent_id": p.intent_id,
                "symbol": p.symbol,
                "shares": shares,
                "close": close,
            },
        )
        if (
            self.journal.record_alert_once(
                self.day_of(now_ts), "exercised", row.share_id, text, now_ts
            )
            and self.alerter is not None
        ):
            self.alerter.send("exercised", text)

    # --- every step -------------------------------------------------------------------------

    async def step(self, now_ts: float) -> None:
        self._book_fills(now_ts)
        stock = self.stock()
        marks = {
            p.symbol: p.market_price
            for p in self.broker.positions()
            if p.sec_type == "STK" and p.account in ("", self.account)
        }
        left = dict(stock)  # what the account holds, shared out among our rows in order
        for s in self.journal.shares.held():
            s = self._mark(s, marks.get(s.symbol), now_ts)
            held = max(int(left.get(s.symbol, 0.0) * s.side), 0)
            mine = min(held, s.remaining)
            left[s.symbol] = left.get(s.symbol, 0.0) - mine * s.side
            if not mine:
                self._gone(s, now_ts)
            elif not self.close:
                self._say_held(s, now_ts)
            elif await self._in_a_later_session(s, now_ts):
                await self._close(s, mine, now_ts)

    def _mark(self, s: Shares, price: float | None, now_ts: float) -> Shares:
        if price is None or not math.isfinite(price) or price == s.mark:
            return s
        marked = replace(s, mark=price)
        self.journal.shares.save(marked, self.day_of(now_ts))
        return marked

    def _ours(self, s: Shares) -> list[OpenOrder]:
        return [o for o in self.broker.open_orders() if o.order_ref == s.share_id]

    def _gone(self, s: Shares, now_ts: float) -> None:
        """The account holds none of them: sold (bought back) by hand, unless an order or an
        execution of ours still has to say so."""
        pending = [
            f
            for f in self.broker.fills()
            if f.order_ref == s.share_id and f.exec_id not in self.journal.orders.fill_ids()
        ]
        if self._ours(s) or pending:
            return
        after = replace(s, status="closed", exit_reason="gone", closed_ts=now_ts)
        self.journal.shares.save(after, self.day_of(now_ts))
        log.warning(
            "%s: the account no longer holds the %d %s exercised from %s: closed "
            "(by hand: no price, no P&L booked for them)",
            s.share_id,
            s.remaining,
            s.symbol,
            s.intent_id,
            extra={"event": "shares_gone", "share_id": s.share_id},
        )

    def _say_held(self, s: Shares, now_ts: float) -> None:
        day = self.day_of(now_ts)
        text = (
            f"held: {s.quantity - s.side * s.closed:+d} {s.symbol} exercised from "
            f"{s.intent_id} at {s.cost:.2f} (last {s.mark if s.mark else s.cost:.2f}, "
            f"unrealized {s.unrealized_pnl:+.2f}); counted in the caps as {s.contracts} "
            "contract(s); execution.close_exercised_shares is false: close them by hand"
        )
        if self.journal.record_alert_once(day, "shares_held", s.share_id, text, now_ts):
            log.warning(text, extra={"event": "shares_held", "share_id": s.share_id})
            if self.alerter is not None:
                self.alerter.send("shares_held", text)

    async def _in_a_later_session(self, s: Shares, now_ts: float) -> bool:
        session = await self.sessions.today(s.symbol, now_ts)
        return session is not None and session.contains(now_ts) and session.open_ts > s.opened_ts

    # --- closing them -----------------------------------------------------------------------

    async def _close(self, s: Shares, quantity: int, now_ts: float) -> None:
        action = "SELL" if s.side > 0 else "BUY"
        price = await self._price(s.symbol, action)
        working = self._ours(s)
        if working:
            for order in working:
                if price is not None and (
                    order.limit > price if action == "SELL" else order.limit < price
                ):
                    await self._cancel(s, order, f"the market moved to {price:.2f}", now_ts)
            return
        if self._unresolved(s, now_ts):
            return
        if price is None:
            self._once(
                s,
                now_ts,
                f"{s.share_id}: no {'bid' if action == 'SELL' else 'ask'} "
                f"for {s.symbol} to close {quantity} shares at; tried again next cycle",
            )
            return
        await self._place(s, action, quantity, price, now_ts)

    async def _place(
        self, s: Shares, action: str, quantity: int, price: float, now_ts: float
    ) -> None:
        """The closing order, journaled before it is sent."""
        row = self.journal.orders.record(
            s.share_id,
            "shares",
            OrderStatus.SUBMITTED,
            quantity,
            now_ts,
            details={"action": action, "limit": price},
        )
        try:
            order_id = await self.broker.place_stock_order(
                s.symbol, action, quantity, price, self.account, s.share_id
            )
        except BrokerError as exc:
            move(self.journal, row, OrderStatus.ERROR, now_ts, details={"error": str(exc)})
            log.error(
                "%s %d %s for %s failed: %s",
                action,
                quantity,
                s.symbol,
                s.share_id,
                exc,
                extra={"event": "shares_order_failed", "share_id": s.share_id},
            )
            return
        move(self.journal, row, OrderStatus.SUBMITTED, now_ts, broker_order_id=order_id)
        log.warning(
            "%s %d %s @ %.2f: closing the shares exercised from %s",
            action,
            quantity,
            s.symbol,
            price,
            s.intent_id,
            extra={
                "event": "shares_close",
                "share_id": s.share_id,
                "quantity": quantity,
                "limit": price,
            },
        )

    def _unresolved(self, s: Shares, now_ts: float) -> bool:
        """An order of ours sent today that IBKR no longer lists: done when its executions
        cover it, cancelled when we cancelled it; otherwise its fate is not known (a fill not
        seen yet, a refusal): no second order today (sold twice would be short). One of an
        earlier day is over (DAY)."""
        day = self.day_of(now_ts)
        executed: dict[int, float] = {}
        for f in self.broker.fills():
            if f.order_ref == s.share_id:
                executed[f.order_id] = executed.get(f.order_id, 0.0) + f.shares
        blocked = False
        for row in self.journal.orders.of_intent(s.share_id, "shares"):
            if row.status not in (OrderStatus.SUBMITTED, OrderStatus.CANCELLING):
                continue
            done = (
                executed.get(row.broker_order_id, 0.0) if row.broker_order_id is not None else 0.0
            )
            if done >= row.quantity:
                move(self.journal, row.id, OrderStatus.DONE, now_ts)
            elif row.status == OrderStatus.CANCELLING:
                move(self.journal, row.id, OrderStatus.CANCELLED, now_ts)
            elif self.day_of(row.created_ts) == day:
                blocked = True
                self._once(
                    s,
                    now_ts,
                    f"{s.share_id}: order {row.broker_order_id} is no "
                    "longer listed and has not filled whole: no new order today",
                )
            else:  # a DAY order of an earlier session: over (its fills were booked then)
                move(self.journal, row.id, OrderStatus.EXPIRED, now_ts)
        return blocked

    async def _cancel(self, s: Shares, order: OpenOrder, why: str, now_ts: float) -> None:
        try:
            await self.broker.cancel_order(order.order_id)
        except BrokerError as exc:
            log.error("cancelling %s (%s) failed: %s", order.order_id, s.share_id, exc)
            return
        for row in self.journal.orders.of_intent(s.share_id, "shares"):
            if row.broker_order_id == order.order_id and row.status == OrderStatus.SUBMITTED:
                move(self.journal, row.id, OrderStatus.CANCELLING, now_ts)
        log.info(
            "order %s (%s) cancelled: %s; placed again once gone", order.order_id, s.share_id, why
        )

    async def _price(self, symbol: str, action: str) -> float | None:
        try:
            quote = await self.broker.quote(symbol)
        except BrokerError as exc:
            log.warning("quote of %s to close exercised shares: %s", symbol, exc)
            return None
        return clean(quote.bid if action == "SELL" else quote.ask)

    def _once(self, s: Shares, now_ts: float, text: str) -> None:
        key = (text, self.day_of(now_ts))
        if key not in self._said:
            self._said.add(key)
            log.warning(text, extra={"event": "shares_waiting", "share_id": s.share_id})

    # --- their fills ------------------------------------------------------------------------

    def _book_fills(self, now_ts: float) -> None:
        rows = {s.share_id: s for s in self.journal.shares.held()}
        booked = self.journal.orders.fill_ids()
        for fill in sorted(self.broker.fills(), key=lambda f: f.ts):
            s = rows.get(fill.order_ref)
            if s is None or fill.exec_id in booked:
                continue
            seen_at = self._first_seen.setdefault(fill.exec_id, now_ts)
            if fill.commission is None and now_ts - seen_at < COMMISSION_WAIT_S:
                continue  # its report is on its way
            rows[s.share_id] = self._book(s, fill)
            self._first_seen.pop(fill.exec_id, None)

    def _book(self, s: Shares, fill: Fill) -> Shares:
        commission = (
            fill.commission
            if fill.commission is not None and math.isfinite(fill.commission)
            else 0.0
        )
        quantity = min(int(fill.shares), s.remaining)
        closed = s.closed + quantity
        price = (
            ((s.exit_price or 0.0) * s.closed + fill.price * quantity) / closed
            if closed
            else fill.price
        )
        done = closed >= abs(s.quantity)
        after = replace(
            s,
            closed=closed,
            exit_price=price,
            commission=s.commission + commission,
            status="closed" if done else "held",
            exit_reason="closed" if done else None,
            closed_ts=fill.ts if done else None,
        )
        if not self.journal.shares.book_fill(
            after,
            fill.side,
            int(fill.shares),
            fill.price,
            fill.ts,
            commission,
            fill.exec_id,
            self.day_of(fill.ts),
        ):
            return s
        log.warning(
            "fill %s %s %g %s @ %.2f: %d of %d closed%s",
            s.share_id,
            fill.side,
            fill.shares,
            s.symbol,
            fill.price,
            closed,
            abs(s.quantity),
            f", P&L {after.realized_pnl:+.2f}" if done else "",
            extra={
                "event": "shares_fill",
                "share_id": s.share_id,
                "realized_pnl": after.realized_pnl,
                "closed": done,
            },
        )
        if done and self.alerter is not None:
            self.alerter.send(
                "trade",
                f"LIVE {fill.side} {closed} {s.symbol} exercised from "
                f"{s.intent_id}: closed at {price:.2f} (cost {s.cost:.2f}), "
                f"P&L {after.realized_pnl:+.2f}",
            )
        return after
