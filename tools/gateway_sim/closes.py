"""Session closes: DAY orders die, expiring options are settled.

::

    CloseKeeper.run()  (one task per server)       OrderBook.match_pass()
      sleep until the next close in sim time          sweep(now) first, so nothing
      (at most POLL_S real seconds; a pinned          fills after its session ended
      clock at rate R sleeps (close - now) / R)
                 \\                                   /
                  +------- sweep(now): every close in (swept_until, now] -------+
                           1. options whose expiry close passed: settle each
                              position, cancel working orders on the contract
                           2. DAY orders whose session ended: Cancelled, with the
                              children of a cancelled parent

Settlement (OCC exercise by exception, which IBKR follows): at the close of the expiry day a
long option at least $0.01 in the money against the underlying's price at that close is
exercised, a short one assigned: the option position goes to 0 and the account gets
multiplier x quantity shares at the strike (long call +, long put -, short call -, short put
+); out of the money it expires worthless (0). The ledger books both (ledger.py): expiring
worthless realizes -avgCost x qty; an exercise moves no premium, only strike x shares of cash.
Clients see position / portfolio / account messages, no execDetails (exercises are not API
executions). Every cancel and settlement is stamped with the close instant itself, so a
completedTime reads "16:00:00" whatever the timer's lag.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from tools.gateway_sim.matching import expiry_date

if TYPE_CHECKING:
    from tools.gateway_sim.instruments import Instrument
    from tools.gateway_sim.orders import OrderBook, SimOrder

log = logging.getLogger("gateway_sim.closes")
POLL_S = 1.0  # longest real sleep: new orders and positions are seen within this
ITM_MIN = 0.01  # OCC exercises by exception at $0.01 in the money
WORKING = frozenset({"Submitted", "PreSubmitted"})


class CloseKeeper:
    def __init__(self, book: OrderBook) -> None:
        self.book = book
        self.swept_until = book.market.now()

    def _expiry_close(self, inst: Instrument) -> float:
        return self.book.market.clock.expiry_close(expiry_date(inst.expiry))

    # ---- the sweep --------------------------------------------------------------------------
    def sweep(self, ts: float) -> None:
        """Act on every close in (swept_until, ts]; idempotent for a ts already swept."""
        if ts <= self.swept_until:
            return
        self._settle_options(ts)
        self._cancel_orders_on_expired(ts)
        self._expire_day_orders(ts)
        self.swept_until = ts

    def _settle_options(self, ts: float) -> None:
        due = [
            (self._expiry_close(p.inst), p.inst)
            for p in self.book.positions.values()
            if p.inst.is_option and p.quantity
        ]
        for close_ts, inst in sorted(due, key=lambda d: d[0]):
            if self.swept_until < close_ts <= ts:
                self.settle(inst, close_ts)

    def settle(self, inst: Instrument, close_ts: float) -> None:
        """Exercise / assign / expire one option position at its expiry close."""
        qty = self.book.positions[inst.con_id].quantity
        spot = round(self.book.market.underlying(inst.symbol, close_ts), 2)
        intrinsic = spot - inst.strike if inst.right == "C" else inst.strike - spot
        ledger = self.book.ledger
        if intrinsic + 1e-9 < ITM_MIN:
            self.book.on_position(ledger.expire(inst, close_ts))
            self.book.stats.bump("options_expired")
            log.info("%s x%g expired worthless (underlying %.2f)", inst.local_symbol, qty, spot)
            return
        shares = qty * inst.multiplier * (1 if inst.right == "C" else -1)
        stock = self.book.market.book.stocks[inst.symbol]
        for pos in ledger.exercise(inst, stock, shares, close_ts):  # both moved, then told
            self.book.on_position(pos)
        self.book.stats.bump("options_exercised")
        log.info(
            "%s x%g %s at %.2f (underlying %.2f): %+g %s",
            inst.local_symbol,
            qty,
            "exercised" if qty > 0 else "assigned",
            inst.strike,
            spot,
            shares,
            inst.symbol,
        )

    def _cancel_orders_on_expired(self, ts: float) -> None:
        for order in self._working():
            if order.inst.is_option:
                close_ts = self._expiry_close(order.inst)
                if close_ts <= ts:  # also an order placed after the close: dead at once
                    self.book.cancel_at(order, max(close_ts, order.placed_ts))

    def _expire_day_orders(self, ts: float) -> None:
        due = [o for o in self._working() if o.day_deadline is not None and o.day_deadline <= ts]
        for order in sorted(due, key=lambda o: o.day_deadline or 0.0):
            if order.status in WORKING:  # a parent's cancel may have taken it already
                self.book.stats.bump("orders_expired")
                self.book.cancel_at(order, order.day_deadline or ts, with_children=True)

    def _working(self) -> list[SimOrder]:
        return [o for o in self.book.orders.values() if o.status in WORKING]

    # ---- the timer --------------------------------------------------------------------------
    def next_close(self, after_ts: float) -> float | None:
        """The next instant a sweep has work to do, if any is known now."""
        times = [o.day_deadline for o in self._working() if o.day_deadline is not None]
        times += [self._expiry_close(o.inst) for o in self._working() if o.inst.is_option]
        times += [
            self._expiry_close(p.inst)
            for p in self.book.positions.values()
            if p.inst.is_option and p.quantity
        ]
        later = [t for t in times if t > after_ts]
        return min(later) if later else None

    async def run(self) -> None:
        clock = self.book.market.time
        rate = clock.spec.rate if clock.pinned else 1.0
        while True:
            now = clock.now()
            self.sweep(now)
            upcoming = self.next_close(now)
            wait_s = POLL_S if upcoming is None else min(POLL_S, (upcoming - now) / rate)
            await asyncio.sleep(max(0.0, wait_s) + 0.001)
