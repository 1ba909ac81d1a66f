"""The position book of live mode: IBKR's orders, fills and positions, as the desk sees them.

Composes the live parts (H1's modules, each with its own docstring):

    orders    LiveBook (live.py): statuses and fills followed, stale entries cancelled
    followed  LivePositions (live_positions.py): fills booked into positions, exercises
    exits     ExpiryExits (live_exits.py): held positions sold at the bid before expiry
    brackets  BracketCheck (live_brackets.py): incomplete brackets repaired at start

    start      the journal reconciled with the broker (live_reconcile.py) before the
               first cycle; the intent ids IBKR knows of today are duplicates
    value      the account's net liquidation; IBKR's own P&L of the day journaled beside ours
    follow     orders and fills followed, entries cancelled when halted, a net short trips
               the kill switch, expiry exits placed
    held       the broker's positions and working BUYs for the account (ours or not) or the
               journal's, whichever is more per symbol, plus exercised shares
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterator, Mapping

from common.messages import OrderIntent
from supervisor.broker.base import AccountSnapshot
from supervisor.journal.records import Position
from supervisor.trading.execution import Execution
from supervisor.trading.live import WORKING, LiveBook, entry_key
from supervisor.trading.live_brackets import BracketCheck
from supervisor.trading.live_exercise import Exercises, with_shares
from supervisor.trading.live_exits import EXIT_SUFFIX, ExpiryExits, contract_key
from supervisor.trading.live_positions import LivePositions
from supervisor.trading.live_reconcile import Reconciliation, reconcile
from supervisor.trading.position_book import (
    Candidate,
    DeskSide,
    Valuation,
    count_held,
    transition,
)

log = logging.getLogger("supervisor.trading.live_book")

FLATTEN_CONFIRM_S = 5.0  # what a flatten waits for IBKR to confirm its cancels (real seconds)
CONFIRM_POLL_S = 0.25


class LivePositionBook:
    def __init__(self, desk: DeskSide) -> None:
        self.desk = desk
        broker, journal, sessions = desk.broker, desk.journal, desk.sessions
        settings = desk.settings
        self.account = settings.ibkr.account
        self.followed = LivePositions(
            broker,
            journal,
            self._day_of,
            lambda p: transition(p, desk.alerter, "live"),
            self._net_short,
            Exercises(broker, journal, sessions, settings, desk.alerter),
        )
        self.orders = LiveBook(broker, journal, settings.execution.entry_timeout_s, self.followed)
        self.exits = ExpiryExits(
            broker, journal, sessions, settings.risk.exit_before_expiry_min, self.account
        )
        self.confirm_s = FLATTEN_CONFIRM_S
        self.brackets = BracketCheck(
            broker,
            journal,
            self.followed,
            self.exits,
            settings.execution.incomplete_bracket,
            self.account,
        )

    @property
    def positions(self) -> Mapping[str, Position]:
        return {p.intent_id: p for p in self.desk.journal.open_positions()}

    def _day_of(self, ts: float) -> str:
        return self.desk.sessions.day_of(ts).isoformat()

    def _net_short(self, p: Position, short: int) -> None:
        why = (
            f"net short {short} x {p.contract.key} ({p.intent_id}): the bracket's exits "
            "sold more than was bought"
        )
        self.desk.trip(
            why, p.closed_ts or p.filled_ts or p.opened_ts, key=f"net_short {p.intent_id}"
        )

    # --- at start and each cycle ------------------------------------------------------------

    async def start(self, now_ts: float) -> Reconciliation | None:
        """The journal reconciled with the broker before the first cycle."""
        desk, journal = self.desk, self.desk.journal
        await desk.open_day(now_ts)  # a trip needs the day
        day = self._day_of(now_ts)
        complete = await self.orders.refresh_acknowledged()
        self.followed.follow(now_ts)
        found = reconcile(desk.broker, journal, now_ts, complete=complete, day=day)
        desk.add_at_broker(await self.orders.sent_before(self.account))
        self.followed.follow(now_ts)  # the fills of what was adopted just now
        repaired: list[str] = []
        if complete:  # whole brackets or none (an incomplete list proves nothing missing)
            checked = await self.brackets.run(now_ts)
            repaired, found.problems = checked.repaired, found.problems + checked.problems
            found.adopted += [f"repaired: {line}" for line in repaired]
        for problem in found.problems:
            journal.record_alert_once(day, "reconcile", problem[:120], problem, now_ts)
        if desk.alerter is not None and (found.problems or repaired):
            desk.alerter.send("reconcile", "; ".join([*found.problems, *repaired])[:1500])
        return found

    def new_day(self, day: str) -> None:
        return None  # positions are the journal's and the broker's: nothing kept in memory

    async def value(self, account: AccountSnapshot, now_ts: float, day: str) -> Valuation:
        """The account's P&L today as the broker reports it, journaled beside ours."""
        self.desk.journal.record_broker_pnl(
            day,
            now_ts,
            account.daily_pnl,
            account.realized_pnl,
            account.unrealized_pnl,
            account.net_liquidation,
        )
        pnl = account.daily_pnl if math.isfinite(account.daily_pnl) else None
        return Valuation(account.net_liquidation, pnl)

    async def follow(self, now_ts: float, halted: bool) -> None:
        await self.orders.step(now_ts, halted)
        for short in self.followed.shorts():
            self.desk.trip(f"net short at IBKR: {short}", now_ts, key=f"short {short}")
        await self.exits.step(now_ts)
        self.desk.add_at_broker(self.orders.sent(self.account))

    # --- what the risk rules see ------------------------------------------------------------

    def entry_id(self, intent: OrderIntent, sent: frozenset[str]) -> OrderIntent:
        return intent  # a re-entry waits for fills to be followed into positions

    def positioned(self) -> frozenset[tuple[str, str]]:
        journal = self.desk.journal
        held = {(p.symbol, p.contract.right.value) for p in journal.open_positions()}
        held |= {
            (p.symbol, p.right)
            for p in self.desk.broker.positions()
            if p.sec_type == "OPT" and p.quantity > 0
        }
        held |= {(i.symbol, i.contract.right.value) for i in journal.working_intents()}
        return frozenset(held)

    def held(self, now_ts: float, day: str) -> tuple[dict[str, int], float]:
        """The broker's for the account (not only this run's) or the journal's, whichever is
        more per symbol (a fill can leave the open orders before the position update)."""
        journal = self.desk.journal
        live = [
            p for p in journal.open_positions() if p.exited is not None or p.status == "pending"
        ]
        journal_held, journal_notional = count_held(
            (
                p.symbol,
                p.held if p.status == "open" else p.quantity,
                (p.entry_price or p.entry_limit) * p.multiplier,
            )
            for p in live
        )
        broker_held, broker_notional = count_held(self._at_broker(now_ts, day))
        symbols = set(journal_held) | set(broker_held)
        held = {s: max(journal_held.get(s, 0), broker_held.get(s, 0)) for s in symbols}
        # exercised shares of ours: 100 a contract (rounded up), shares x price (live_shares)
        return with_shares(held, max(journal_notional, broker_notional), journal.shares.held())

    def _at_broker(self, now_ts: float, day: str) -> Iterator[tuple[str, int, float]]:
        """(symbol, contracts, premium per contract) of the account's option positions and
        working option BUYs, ours or not; a position the journal does not know is reported."""
        journal, broker, account = self.desk.journal, self.desk.broker, self.account
        # ours: bought (a booked fill) or still followed (a fill not booked yet)
        known = set(journal.bought_contracts()) | {p.contract.key for p in journal.open_positions()}
        for p in broker.positions():
            if p.sec_type == "OPT" and p.quantity > 0 and p.account in ("", account):
                key = f"{p.symbol} {p.expiry} {p.strike:g}{p.right}"
                if contract_key(p) not in known:
                    self._report_unknown(key, p.quantity, now_ts, day)
                yield p.symbol, int(p.quantity), p.avg_cost  # IBKR's avgCost has the multiplier
        for o in broker.open_orders():
            if o.sec_type == "OPT" and o.action == "BUY" and o.account in ("", account):
                limit = o.limit if math.isfinite(o.limit) else 0.0
                yield o.symbol, int(o.remaining), limit * o.multiplier

    def _report_unknown(self, key: str, quantity: float, now_ts: float, day: str) -> None:
        text = (
            f"the account holds {quantity:g} x {key}, which this bot did not buy: "
            "counted in the caps, never traded"
        )
        if self.desk.journal.record_alert_once(day, "unknown_position", key, text, now_ts):
            log.warning(text, extra={"event": "unknown_position", "contract": key})

    def opened(self, intent: OrderIntent, done: Execution, now_ts: float, day: str) -> None:
        if done.status == "submitted":
            self.followed.opened(intent, done.quantity, now_ts)

    # --- the expiry guard -------------------------------------------------------------------

    async def exit_candidates(self, now_ts: float) -> list[Candidate]:
        """The account's option positions this bot bought, and its entries still working."""
        journal, broker = self.desk.journal, self.desk.broker
        # fills since the cycle began booked first: an entry filled during a cycle is held,
        # and ours to close, before the next cycle would book it
        self.followed.follow(now_ts)
        ours = journal.bought_contracts()
        found = [
            Candidate(p.symbol, p.expiry, key)
            for p in broker.positions()
            if p.sec_type == "OPT" and p.quantity > 0 and (key := contract_key(p)) in ours
        ]
        # and our entries still working: one filling in the window would be held into the
        # expiry (the guard cancels them)
        return found + [
            Candidate(o.symbol, o.expiry, entry_key(o))
            for o in broker.open_orders()
            if o.sec_type == "OPT"
            and o.action == "BUY"
            and o.order_ref
            and ":" not in o.order_ref
            and journal.load_intent(o.order_ref) is not None
        ]

    async def run_exits(self, now_ts: float, due: set[str], halted: bool) -> bool:
        # fills first: sell only what is held; and only with every open order in sight
        # (an exit placed under another client id must not be sold over a second time)
        if await self.orders.step(now_ts, halted):
            await self.orders.cancel_entries_in(due, now_ts)
            await self.exits.step(now_ts)
        else:
            log.warning(
                "expiry guard: the account's orders could not be refreshed: no "
                "exit sent this time, tried again in 30 s",
                extra={"event": "expiry_guard_failed"},
            )
        return False  # an exit order may be working for what is left: live_exits says

    async def flatten(self, now_ts: float) -> str:
        """The trader's flatten: our working entries cancelled, and every option position this
        bot bought sold with a DAY limit at the bid, exit reason "flatten" (live_exits.py's
        sale, ``close_now``). Every live position the journal has active, pending entries
        included (one may fill while its cancel is on its way; one the broker's positions do
        not list yet, after a reconnect, is sold once they do), is journaled to close first (a
        restart finishes the flatten), their brackets' exits cancelled (kept with no bid to
        sell at), and the sale placed in this same call once IBKR's open orders no longer list
        them (waited for ``confirm_s``; else the next cycle or expiry guard run sells: never a
        sale beside a working stop), after the fills of the meanwhile are booked (a stop that
        filled is not listed either). Exercised shares are not sold."""
        self._to_close(now_ts)
        await self.orders.step(now_ts, halted=True, why="flatten")
        self._to_close(now_ts)  # what was adopted or filled meanwhile
        await self.exits.step(now_ts)  # the exits cancelled (or, with none, the sale placed)
        waiting = await self._cancels_confirmed(self.confirm_s)
        if waiting:
            log.warning(
                "flatten: %d bracket exit(s) still listed after %.0f s: the sale waits for "
                "their cancels (the next cycle places it)",
                waiting,
                self.confirm_s,
                extra={"event": "flatten_waiting", "orders": waiting},
            )
        else:
            self.followed.follow(now_ts)  # a stop that filled instead is booked first
            await self.exits.step(now_ts)  # the sale, now that no exit of theirs works
        return self._flattened()

    def _to_close(self, now_ts: float) -> None:
        """A closing row for every live position of ours still active (not a short row)."""
        journal, day = self.desk.journal, self._day_of(now_ts)
        for p in journal.open_positions():
            live = (p.status == "open" and p.exited is not None) or (
                p.status == "pending"
                and any(r.mode == "live" for r in journal.orders.of_intent(p.intent_id))
            )
            if live:
                self.exits.close(p.intent_id, "flatten", day, now_ts)

    def _flattened(self) -> str:
        """The flatten's answer: what is being sold, and what is not yet and why."""
        journal, exits = self.desk.journal, self.exits
        closing = exits.close_now
        held = [p.intent_id for p in journal.open_positions() if p.intent_id in closing]
        held = [i for i in held if (p := journal.position(i)) is not None and p.held > 0]
        sold = [i for i in held if exits.selling(i)]
        kept = [i for i in held if i not in sold and exits.no_bid.get(i) is True]
        bare = [i for i in held if i not in sold and exits.no_bid.get(i) is False]
        later = len(held) - len(sold) - len(kept) - len(bare)
        said = f"entries cancelled, {len(held)} position(s) closing with limit orders at the bid"
        notes = []
        if kept:
            notes.append(f"{len(kept)} kept its stop: no bid ({', '.join(kept)})")
        if bare:
            notes.append(f"{len(bare)} with no stop and no bid ({', '.join(bare)})")
        if later:  # the cancels not confirmed in time, or not listed at IBKR yet
            notes.append(f"{later} not placed yet")
        if notes:
            said += f" ({'; '.join(notes)}: the next cycle places them)"
        return said

    async def _cancels_confirmed(self, within_s: float) -> int:
        """Refresh the open orders until no bracket exit of a position being closed is listed,
        for ``within_s`` at most; how many are still listed."""
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            waiting = len(self.exits.cancels_pending())
            if not waiting or asyncio.get_running_loop().time() >= deadline:
                return waiting
            await asyncio.sleep(CONFIRM_POLL_S)
            await self.orders.refresh()

    # --- at exit ----------------------------------------------------------------------------

    async def close_out(self, now_ts: float) -> None:
        """Working entries cancelled (``execution.cancel_entries_on_stop``; exits protecting
        what is held stay), the last fills booked, and what stays working at IBKR said."""
        if not self.desk.broker.is_connected():
            return
        if self.desk.settings.execution.cancel_entries_on_stop:
            await self.orders.step(now_ts, halted=True, why="stop")
        await self._book_last_fills(now_ts)
        self._left_working(now_ts)
        self._left_unprotected(now_ts)

    async def _book_last_fills(self, now_ts: float) -> None:
        """Executions that came in since the last cycle reach the journal before exit, with
        their commission reports (waited for, briefly; then booked without)."""
        if not await self.orders.refresh():
            return
        for _ in range(25):
            if not self.followed.waiting():
                break
            await asyncio.sleep(0.2)
        self.followed.follow(now_ts, wait_s=0.0)

    def _left_working(self, now_ts: float) -> None:
        """What stays working after we are gone, in the log and the journal (a bracket's
        exits are meant to; an entry is worth a look)."""
        left = self.orders.ours_working()
        for order in left:
            text = (
                f"left working at IBKR: {order.action} {order.remaining:g} x "
                f"{order.symbol} {order.expiry} {order.strike:g}{order.right} "
                f"{order.order_type} (order {order.order_id}, ref {order.order_ref})"
            )
            log.warning(text, extra={"event": "left_working", "order_ref": order.order_ref})
            self.desk.journal.record_alert(self._day_of(now_ts), "left_working", text, now_ts)
        if not left:
            return
        log.warning(
            "%d order(s) of ours left working at IBKR (exits protect what is "
            "held; entries may still fill)",
            len(left),
            extra={"event": "left_working_total", "count": len(left)},
        )
        if self.desk.alerter is not None:
            self.desk.alerter.send(
                "left_working",
                f"stopped with {len(left)} order(s) of ours working at IBKR: "
                + "; ".join(
                    f"{o.action} {o.remaining:g} x {o.symbol} {o.expiry} "
                    f"{o.strike:g}{o.right} {o.order_type}"
                    for o in left
                ),
            )

    def _left_unprotected(self, now_ts: float) -> None:
        """A position being closed (flatten, repair) that stays held with no SELL of ours
        working, neither its stop nor its sale (its exits cancelled, no bid to sell at): held
        at IBKR with nothing to limit the loss while the bot is down. Said to the trader."""
        journal, broker = self.desk.journal, self.desk.broker
        held = {contract_key(p): p.quantity for p in broker.positions() if p.sec_type == "OPT"}
        selling = {
            (o.order_ref.removesuffix(EXIT_SUFFIX), entry_key(o))
            for o in broker.open_orders()
            if o.action == "SELL" and o.status in WORKING  # a cancel asked: not protecting
        }
        for intent_id, reason in journal.closing.pending().items():
            p = journal.position(intent_id)
            if p is None or not p.active or p.status == "short":
                continue
            key = p.contract.key
            if (p.held <= 0 and held.get(key, 0) <= 0) or (intent_id, key) in selling:
                continue
            text = (
                f"{key} ({intent_id}) held with no stop and no sale: close it by hand "
                f"(the bot stopped while closing it for {reason})"
            )
            log.error(text, extra={"event": "left_unprotected", "intent_id": intent_id})
            journal.record_alert(self._day_of(now_ts), "left_unprotected", text, now_ts)
            if self.desk.alerter is not None:
                self.desk.alerter.send("left_unprotected", text, {"intent_id": intent_id})
