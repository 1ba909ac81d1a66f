"""The broker's executions, followed into the journal's live positions.

    broker.fills() --once per exec id, with its commission--> journal fills
                   --apply_fill (live_fills.py)-------------> journal positions (open, reduce,
                                                              close, realized P&L net of
                                                              commissions, exit reason)
    net short (more sold than bought) -> ``on_net_short``: the desk trips the kill switch

An execution is taken once IBKR's commission report for it has arrived (it follows the
execution within moments), or after ``COMMISSION_WAIT_S`` without one (then booked with no
commission and a warning): a fill is never booked twice, so it waits for the full figures.
Only executions whose orderRef names one of our intents are followed; the rest are the
user's own and left alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace

from common.calendar import is_expired
from common.messages import OptionContract, OrderIntent, Right
from supervisor.broker.base import Broker, Fill
from supervisor.journal.records import Position
from supervisor.journal.store import Journal
from supervisor.trading.live_exercise import Exercises, Settled
from supervisor.trading.live_exits import EXIT_SUFFIX
from supervisor.trading.live_fills import (
    apply_fill,
    exit_reason_of,
    short_id,
    short_row,
    sold_beyond,
)

log = logging.getLogger("supervisor.trading.live_positions")

COMMISSION_WAIT_S = 30.0
SHORT_GRACE_S = 60.0  # a short row's contract may be unlisted this long after its fill


def intent_of(order_ref: str) -> str:
    """The intent id an orderRef belongs to (an expiry exit is ``<intent>:expiry``)."""
    return order_ref.removesuffix(EXIT_SUFFIX)


class LivePositions:
    def __init__(
        self,
        broker: Broker,
        journal: Journal,
        day_of: Callable[[float], str],
        on_change: Callable[[Position], None],
        on_net_short: Callable[[Position, int], None],
        exercises: Exercises | None = None,
    ) -> None:
        self.broker = broker
        self.journal = journal
        self.day_of = day_of
        self.on_change = on_change
        self.on_net_short = on_net_short
        self.exercises = exercises  # None: an expired option gone is booked at 0, now
        # when each execution was first seen: its own time is TWS's clock, maybe in another
        # zone than ours; the wait for its commission report is timed on ours
        self._first_seen: dict[str, float] = {}

    def opened(self, intent: OrderIntent, quantity: int, ts: float) -> None:
        """A bracket was accepted: its position waits (pending) for the entry's fills."""
        if self.journal.position(intent.intent_id) is None:
            self.journal.save_position(
                Position(
                    intent.intent_id,
                    intent.symbol,
                    intent.contract,
                    quantity,
                    intent.entry_limit,
                    intent.take_profit,
                    intent.stop_loss,
                    "pending",
                    ts,
                ),
                self.day_of(ts),
            )

    def follow(self, now_ts: float, wait_s: float = COMMISSION_WAIT_S) -> int:
        """Book every new execution of ours, in time order per intent; returns how many.
        An intent whose next execution still waits for its commission waits whole: a sale
        booked before the purchase it closes would look like a net short."""
        booked, waiting = 0, set()
        seen = self.journal.orders.fill_ids()
        # IBKR stamps an execution to the second: within one, a purchase goes before the
        # sales (an exit cannot fill before its entry), else the broker's order (arrival)
        for fill in sorted(self.broker.fills(), key=lambda f: (f.ts, f.side != "BOT")):
            intent = self.journal.load_intent(intent_of(fill.order_ref))
            if intent is None or fill.exec_id in seen:
                continue  # not ours (another client's, a manual trade), or booked before
            if intent.intent_id in waiting:
                continue
            seen_at = self._first_seen.setdefault(fill.exec_id, now_ts)
            if fill.commission is None and now_ts - seen_at < wait_s:
                waiting.add(intent.intent_id)  # the report is on its way: next cycle
                continue
            if self._book(intent, fill):
                booked += 1
            self._first_seen.pop(fill.exec_id, None)
        return booked

    def waiting(self) -> int:
        """Executions of ours still without their commission report."""
        seen = self.journal.orders.fill_ids()
        return sum(
            1
            for f in self.broker.fills()
            if f.commission is None
            and f.exec_id not in seen
            and self.journal.load_intent(intent_of(f.order_ref)) is not None
        )

    def _book(self, intent: OrderIntent, fill: Fill) -> bool:
        commission = fill.commission if fill.commission is not None else 0.0
        if not math.isfinite(commission):
            commission = 0.0
        held = self.journal.position(intent.intent_id) or Position(
            intent.intent_id,
            intent.symbol,
            intent.contract,
            int(fill.shares),
            intent.entry_limit,
            intent.take_profit,
            intent.stop_loss,
            "pending",
            fill.ts,
        )
        rows = self.journal.orders.of_intent(intent.intent_id)
        bracket = next((r for r in rows if r.part_ids("order_ids")), None)
        selling = fill.order_ref.endswith(EXIT_SUFFIX)  # a sale at the bid: its row's reason
        sales = self.journal.orders.of_intent(fill.order_ref) if selling else []
        reason = exit_reason_of(fill.order_ref, fill.order_id, fill.perm_id, bracket, sales)
        after = apply_fill(
            held, fill.side, int(fill.shares), fill.price, commission, fill.ts, reason
        )
        short = self._short_after(held, fill, commission)
        if not self.journal.book_fill(
            fill.order_ref,
            fill.side,
            int(fill.shares),
            fill.price,
            fill.ts,
            commission,
            fill.exec_id,
            after,
            self.day_of(fill.ts),
            also=() if short is None else (short,),
        ):
            return False  # booked meanwhile
        _say_booked(intent, fill, commission, after)
        if after.status != held.status:
            self.on_change(after)
        if short is not None:
            self.on_net_short(short, short.quantity)
        return True

    def _short_after(self, held: Position, fill: Fill, commission: float) -> Position | None:
        """The short row a sale beyond what is held opens or grows (None: no such sale)."""
        beyond = sold_beyond(held, fill.side, int(fill.shares))
        if not beyond:
            return None
        log.error(
            "fill %s sells %d x %s beyond what was held: net short",
            fill.exec_id,
            beyond,
            held.contract.key,
            extra={"event": "net_short", "intent_id": held.intent_id, "short": beyond},
        )
        return short_row(
            self.journal.position(short_id(held.intent_id)),
            held,
            beyond,
            fill.price,
            commission * beyond / fill.shares,
            fill.ts,
        )

    def settle_shorts(self, now_ts: float) -> None:
        """A short row whose contract the account no longer holds short was bought back (by
        hand: the bot never does): closed, the buy-back price not known to it. The client
        library drops a position that went to 0, so not listed counts too, once the row is
        older than ``SHORT_GRACE_S`` (a position update comes after the executions)."""
        listed = {
            OptionContract(b.symbol, b.expiry, b.strike, Right(b.right)).key: b.quantity
            for b in self.broker.positions()
            if b.sec_type == "OPT"
        }
        for p in self.journal.open_positions():
            settled = now_ts - p.opened_ts > SHORT_GRACE_S
            if p.status == "short" and listed.get(p.contract.key, 0 if settled else -1) >= 0:
                after = replace(p, status="closed", exit_reason="closed", closed_ts=now_ts)
                self.journal.save_position(after, self.day_of(now_ts))
                log.warning(
                    "%s is no longer held short at IBKR: its short row closed",
                    p.contract.key,
                    extra={"event": "position", "status": "closed", "intent_id": p.intent_id},
                )

    def entry_gone(self, intent_id: str, now_ts: float) -> None:
        """The entry no longer works at the broker. Never filled: its position is cancelled.
        Filled with its executions in sight: they have opened it. Filled while nobody watched
        (today's executions are all IBKR replays; a restart the next day sees none): the
        account's position in the contract says so, and the position opens at its avgCost."""
        bought = any(f.order_ref == intent_id and f.side == "BOT" for f in self.broker.fills())
        p = self.journal.position(intent_id)
        if p is None or p.status != "pending" or bought:
            return
        c = p.contract
        held = next(
            (
                b
                for b in self.broker.positions()
                if b.sec_type == "OPT"
                and (b.symbol, b.expiry, b.strike, b.right)
                == (c.symbol, c.expiry, c.strike, c.right.value)
                and b.quantity > 0
            ),
            None,
        )
        if held is not None:
            quantity = min(int(held.quantity), p.quantity)
            price = held.avg_cost / p.multiplier  # IBKR's avgCost, commission included
            after = apply_fill(p, "BOT", quantity, price, 0.0, now_ts, "closed")
            self.journal.book_fill(
                intent_id,
                "BOT",
                quantity,
                price,
                now_ts,
                0.0,
                f"position:{intent_id}",
                after,
                self.day_of(now_ts),
            )
            log.warning(
                "%s: its entry filled unseen; IBKR holds %g x %s at %.2f: opened from "
                "the account's position",
                intent_id,
                held.quantity,
                c.key,
                price,
                extra={"event": "position_adopted", "intent_id": intent_id},
            )
        else:
            after = replace(p, status="closed", closed_ts=now_ts, exit_reason="cancelled")
            self.journal.save_position(after, self.day_of(now_ts))
        self.on_change(after)

    def shorts(self) -> list[str]:
        """Options this bot bought that the account now holds short (both exits filled, or a
        sale by hand on top of an exit): the bot never sells to open."""
        ours = set(self.journal.bought_contracts()) | {
            p.contract.key for p in self.journal.open_positions()
        }
        found = []
        for b in self.broker.positions():
            if b.sec_type == "OPT" and b.quantity < 0:
                key = OptionContract(b.symbol, b.expiry, b.strike, Right(b.right)).key
                if key in ours:
                    found.append(f"IBKR holds {b.quantity:g} x {key}")
        return found

    def mark(self, now_ts: float) -> None:
        """Open live positions marked at the broker's price for them (unrealized P&L)."""
        prices = {
            (p.symbol, p.expiry, p.strike, p.right): p.market_price
            for p in self.broker.positions()
            if p.sec_type == "OPT"
        }
        for p in self.journal.open_positions():
            c = p.contract
            price = prices.get((c.symbol, c.expiry, c.strike, c.right.value))
            if (
                p.exited is not None
                and p.status == "open"
                and price is not None
                and math.isfinite(price)
                and price != p.mark
            ):
                self.journal.save_position(replace(p, mark=price), self.day_of(now_ts))

    async def settle_expired(self, now_ts: float) -> None:
        """A live position whose option expired and that the broker no longer holds (the
        expiry exit should have sold it; no bid, say, or the bot was down): exercised into
        shares, booked at intrinsic value, or expired worthless, at 0, as of the expiry's
        close (live_exercise.py); then the shares exercises left are followed."""
        held = {
            (p.symbol, p.expiry, p.strike, p.right)
            for p in self.broker.positions()
            if p.sec_type == "OPT" and p.quantity
        }
        live = [
            p for p in self.journal.open_positions() if p.exited is not None and p.status == "open"
        ]
        gone = [
            p
            for p in live
            if is_expired(p.contract.expiry, now_ts)
            and (p.symbol, p.contract.expiry, p.contract.strike, p.contract.right.value) not in held
        ]
        if self.exercises is None:
            settled = [Settled(p, "expired", 0.0, now_ts) for p in gone]
        else:
            settled = await self.exercises.settle(gone, now_ts)
        for s in settled:
            self._settle(s)
        if self.exercises is not None:
            await self.exercises.follow([p for p in live if p not in gone], now_ts)

    def _settle(self, s: Settled) -> None:
        p, left = s.position, s.position.held
        after = apply_fill(p, "SLD", left, s.price, 0.0, s.ts, s.reason)
        self.journal.save_position(after, self.day_of(s.ts))
        log.warning(
            "%s %s with %d held: booked at %.2f%s",
            p.contract.key,
            s.reason,
            left,
            s.price,
            f" ({p.symbol} closed at {s.close:.2f})" if s.close else "",
            extra={
                "event": "position",
                "intent_id": p.intent_id,
                "status": after.status,
                "exit_reason": s.reason,
                "realized_pnl": after.realized_pnl,
            },
        )
        self.on_change(after)


def _say_booked(intent: OrderIntent, fill: Fill, commission: float, after: Position) -> None:
    if fill.commission is None:
        log.warning(
            "fill %s of %s booked without its commission report", fill.exec_id, fill.order_ref
        )
    log.info(
        "fill %s %s %d @ %.2f: %s",
        fill.order_ref,
        fill.side,
        fill.shares,
        fill.price,
        _state(after),
        extra={
            "event": "fill",
            "intent_id": intent.intent_id,
            "side": fill.side,
            "quantity": fill.shares,
            "price": fill.price,
            "commission": commission,
            "exec_id": fill.exec_id,
        },
    )


def _state(p: Position) -> str:
    bought = 0 if p.filled_ts is None else p.quantity
    text = f"bought {bought} sold {p.exited or 0}"
    if p.status == "closed":
        text += f", closed ({p.exit_reason}) P&L {p.realized_pnl:.2f}"
    return text
