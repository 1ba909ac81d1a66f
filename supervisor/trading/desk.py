"""The trading desk: from a cycle's symbol results to journaled risk decisions and executions.

    begin_cycle: the journal file still the one opened (deleted or replaced: no new entry,
                 rule journal_lost, until a restart; one ERROR, one alert); account equity
                 (+ the paper book's P&L outside live mode) -> RiskState;
                 a new day restores start equity, kill switch, sent intents from the journal;
                 the paper book is settled, marked and driven to its exits first (exits always
                 run, kill switch or not); in live mode the live book follows the broker, and
                 the intent ids its open orders and today's executions carry are duplicates
                 whatever the journal holds
    act_on:      each intent -> its entry id (a re-entry after a close gets a new one) ->
                 risk.evaluate with the symbol's own session -> Executor -> journal; accepted
                 entries open a paper position outside live mode

The kill switch trips when the daily loss limit is breached: no new entries for the rest of
the trading day (also after a restart, through the journal), one ERROR log and one alert.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace

from common.config import Settings
from common.messages import OptionContract, OrderIntent, Right, SymbolResult
from supervisor.broker.base import AccountSnapshot, Broker, BrokerPosition
from supervisor.journal.records import DayState, Position
from supervisor.journal.store import Journal
from supervisor.observe.alerts import Alerter
from supervisor.trading.book import PaperBook
from supervisor.trading.execution import Execution, Executor, describe
from supervisor.trading.journal_watch import JournalWatch
from supervisor.trading.live import LiveBook
from supervisor.trading.live_brackets import BracketCheck
from supervisor.trading.live_exercise import Exercises, with_shares
from supervisor.trading.live_exits import ExpiryExits
from supervisor.trading.live_positions import LivePositions
from supervisor.trading.live_reconcile import Reconciliation, reconcile
from supervisor.trading.paper import book_pnl
from supervisor.trading.risk import RiskContext, RiskState, daily_loss, evaluate, record
from supervisor.trading.sessions import SessionBook

log = logging.getLogger("supervisor.trading.desk")


class Desk:
    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        journal: Journal,
        executor: Executor,
        sessions: SessionBook,
        alerter: Alerter | None = None,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.journal = journal
        self.executor = executor
        self.sessions = sessions
        self.alerter = alerter
        self.state: RiskState | None = None
        self.lock = asyncio.Lock()  # acting on a result and the expiry guard: one at a time
        risk = settings.risk
        self.book = PaperBook(
            broker,
            journal,
            sessions,
            settings.execution.entry_timeout_s,
            risk.exit_before_expiry_min,
            self._log_transition,
        )
        self.live_positions = (
            LivePositions(
                broker,
                journal,
                self.day_of,
                self._log_transition,
                self._net_short,
                Exercises(broker, journal, sessions, settings, alerter),
            )
            if executor.mode == "live"
            else None
        )
        self.live = (
            LiveBook(broker, journal, settings.execution.entry_timeout_s, self.live_positions)
            if self.live_positions is not None
            else None
        )
        self.live_exits = ExpiryExits(
            broker, journal, sessions, risk.exit_before_expiry_min, settings.ibkr.account
        )
        self.brackets = (
            BracketCheck(
                broker,
                journal,
                self.live_positions,
                self.live_exits,
                settings.execution.incomplete_bracket,
                settings.ibkr.account,
            )
            if self.live_positions is not None
            else None
        )
        self.journal_watch = JournalWatch(journal, alerter)

    @property
    def simulated(self) -> bool:
        return self.executor.mode != "live"

    def day_of(self, ts: float) -> str:
        return self.sessions.day_of(ts).isoformat()

    # --- at start ---------------------------------------------------------------------------

    async def start_live(self, now_ts: float) -> Reconciliation | None:
        """Live: the journal reconciled with the broker before the first cycle."""
        if self.live is None or self.live_positions is None or self.brackets is None:
            return None
        account = await self.broker.account()
        day = self.day_of(now_ts)
        self.state = self._restore_day(day, account.net_liquidation)  # a trip needs the day
        complete = await self.live.refresh_acknowledged()
        self.live_positions.follow(now_ts)
        found = reconcile(self.broker, self.journal, now_ts, complete=complete, day=day)
        self.state = replace(
            self.state, at_broker=await self.live.sent_before(self.settings.ibkr.account)
        )
        self.live_positions.follow(now_ts)  # the fills of what was adopted just now
        repaired: list[str] = []
        if complete:  # whole brackets or none (an incomplete list proves nothing missing)
            checked = await self.brackets.run(now_ts)
            repaired, found.problems = checked.repaired, found.problems + checked.problems
            found.adopted += [f"repaired: {line}" for line in repaired]
        for problem in found.problems:
            self.journal.record_alert_once(day, "reconcile", problem[:120], problem, now_ts)
        if self.alerter is not None and (found.problems or repaired):
            self.alerter.send("reconcile", "; ".join([*found.problems, *repaired])[:1500])
        return found

    # --- before the cycle -------------------------------------------------------------------

    async def begin_cycle(self, now_ts: float) -> RiskState:
        lost = self.journal_watch.check()  # deleted or replaced: no entry until a restart
        day = self.day_of(now_ts)
        account = await self.broker.account()
        if self.state is None or self.state.day != day:
            # positions closed on earlier days live on in the journal only
            self.book.keep(self._today(day))
            self.state = self._restore_day(day, account.net_liquidation)
        if self.simulated:
            await self.book.drive(now_ts, day)
        equity = account.net_liquidation
        if self.simulated:
            realized, unrealized = book_pnl(self._today(day))
            equity += realized + unrealized
        self.state = replace(
            self.state,
            equity=equity,
            journal_lost=lost,
            daily_pnl=self._broker_pnl(account, day, now_ts),
        )
        breached, why, _ = daily_loss(self.state, self.settings.risk)
        if breached and not self.state.halted:
            self._trip(why, now_ts)
        if self.live is not None and self.live_positions is not None:
            await self.live.step(now_ts, self.state.halted)
            for short in self.live_positions.shorts():
                self._trip(f"net short at IBKR: {short}", now_ts, key=f"short {short}")
            await self.live_exits.step(now_ts)
            self.state = replace(
                self.state,
                at_broker=self.state.at_broker | self.live.sent(self.settings.ibkr.account),
            )
        return self.state

    def _restore_day(self, day: str, equity: float) -> RiskState:
        saved = self.journal.day_state(day)
        if saved is None:
            saved = DayState(day, equity)
            self.journal.save_day_state(saved)
            log.info(
                "new trading day %s, start equity %.2f",
                day,
                equity,
                extra={"event": "day_start", "day": day, "equity": equity},
            )
        else:
            log.info(
                "restored trading day %s from the journal (start equity %.2f, halted %s)",
                day,
                saved.start_equity,
                saved.halted,
                extra={"event": "day_restored", "day": day, "halted": saved.halted},
            )
        for p in self.journal.positions(day):
            self.book.positions.setdefault(p.intent_id, p)
        return RiskState(
            day,
            saved.start_equity,
            equity,
            self.journal.orders_count(day),
            self.journal.sent_intents(day),
            saved.halted,
        )

    def _broker_pnl(self, account: AccountSnapshot, day: str, now_ts: float) -> float | None:
        """Live: the account's P&L today as the broker reports it (journaled beside ours)."""
        if self.simulated:
            return None
        self.journal.record_broker_pnl(
            day,
            now_ts,
            account.daily_pnl,
            account.realized_pnl,
            account.unrealized_pnl,
            account.net_liquidation,
        )
        return account.daily_pnl if math.isfinite(account.daily_pnl) else None

    def _net_short(self, p: Position, short: int) -> None:
        why = (
            f"net short {short} x {p.contract.key} ({p.intent_id}): the bracket's exits "
            "sold more than was bought"
        )
        self._trip(why, p.closed_ts or p.filled_ts or p.opened_ts, key=f"net_short {p.intent_id}")

    def _log_transition(self, p: Position) -> None:
        log.info(
            "position %s %s: %s%s",
            p.contract.key,
            p.status,
            p.exit_reason or "filled",
            f" P&L {p.realized_pnl:.2f}" if not p.active else "",
            extra={
                "event": "position",
                "intent_id": p.intent_id,
                "status": p.status,
                "exit_reason": p.exit_reason,
                "realized_pnl": p.realized_pnl,
            },
        )
        if (
            p.exit_reason in ("take_profit", "stop_loss", "expiry", "expired", "exercised")
            and self.alerter
        ):
            self.alerter.send(
                "trade",
                f"SELL {p.quantity} x {p.contract.key} closed "
                f"({p.exit_reason}) at {p.exit_price}: P&L {p.realized_pnl:.2f}",
            )

    def _today(self, day: str) -> list[Position]:
        return [
            p
            for p in self.book.positions.values()
            if p.active or (p.closed_ts is not None and self.day_of(p.closed_ts) == day)
        ]

    def _trip(self, why: str, ts: float, key: str = "daily_loss") -> None:
        assert self.state is not None
        self.state = replace(self.state, halted=True)
        saved = self.journal.day_state(self.state.day) or DayState(
            self.state.day, self.state.start_equity
        )
        self.journal.save_day_state(replace(saved, halted=True, halted_reason=why, halted_ts=ts))
        if self.journal.record_alert_once(self.state.day, "kill_switch", key, why, ts):
            log.error(
                "KILL SWITCH: %s; no new entries for the rest of %s",
                why,
                self.state.day,
                extra={"event": "kill_switch", "reason": why, "day": self.state.day},
            )
            if self.alerter is not None:
                self.alerter.send("kill_switch", f"Kill switch tripped: {why}")

    # --- after the cycle --------------------------------------------------------------------

    async def act_on(
        self,
        results: Sequence[SymbolResult],
        now_ts: float,
        stopping: Callable[[], bool] = lambda: False,
        prior: Sequence[Execution] = (),
    ) -> list[Execution]:
        """``stopping``: whether a stop has been asked for, asked before each intent (a
        bracket may wait seconds for IBKR's answer); from then on decisions are journaled,
        no new order is sent. ``prior``: this cycle's executions so far (results are acted
        on as they arrive, so the per-cycle caps count across calls)."""
        assert self.state is not None
        executions: list[Execution] = []
        for result in results:
            for proposed in result.intents:
                intent = self._entry_id(proposed)
                ctx = await self._context(intent, now_ts, [*prior, *executions])
                decision = evaluate(
                    intent, self.state, self.settings.risk, self.settings.options, ctx=ctx
                )
                if decision.rule == "daily_loss_limit":
                    self._trip(decision.reason, now_ts)
                done = await self.executor.execute(
                    intent, decision, self.state.day, now_ts, stopping()
                )
                self.state = record(self.state, done.decision)
                executions.append(done)
                self._after(intent, done, now_ts)
        return executions

    def _after(self, intent: OrderIntent, done: Execution, now_ts: float) -> None:
        assert self.state is not None
        if done.status in ("simulated", "checked"):
            self.book.open(intent, done.quantity, now_ts, self.state.day)
        if done.status == "submitted" and self.live_positions is not None:
            self.live_positions.opened(intent, done.quantity, now_ts)
        if done.status in ("simulated", "checked", "submitted") and self.alerter:
            self.alerter.send("trade", f"{self.executor.mode} {describe(intent, done.quantity)}")
        if done.status == "rejected" and self.alerter:
            self.alerter.send(
                "order_rejected",
                f"IBKR refused the {intent.action} bracket "
                f"for {intent.contract.key} ({intent.intent_id}): "
                f"{done.decision.reason}",
            )

    async def _context(
        self, intent: OrderIntent, now_ts: float, executions: Sequence[Execution]
    ) -> RiskContext:
        held, notional = self._held(now_ts)
        return RiskContext(
            orders_this_cycle=sum(1 for e in executions if e.decision.accepted),
            now_ts=now_ts,
            open_contracts=held,
            held_notional=notional,
            check_hours=True,
            session=await self.sessions.today(intent.symbol, now_ts),
            expiry_close_ts=await self.sessions.expiry_close(
                intent.symbol, intent.contract.expiry, now_ts
            ),
            positioned=self._positioned(),
            tz=self.sessions.calendar.tz,
        )

    def _entry_id(self, intent: OrderIntent) -> OrderIntent:
        """The id the intent is journaled and sent under. The same contract the same day has
        the same id (a duplicate is refused); once its paper position has closed, a re-entry
        gets the next id, ``<id>.2``, ``<id>.3`` ... (live re-entries wait for fills to be
        followed into positions)."""
        assert self.state is not None
        sent = self.state.sent_today
        if not (self.settings.risk.reenter_after_close and self.simulated):
            return intent
        base, n, entry_id = intent.intent_id, 1, intent.intent_id
        while entry_id in sent:
            held = self.book.positions.get(entry_id)
            if held is None or held.active:
                break  # still working (or not ours to judge): the duplicate rule refuses it
            n += 1
            entry_id = f"{base}.{n}"
        return intent if entry_id == base else replace(intent, intent_id=entry_id)

    def _positioned(self) -> frozenset[tuple[str, str]]:
        """(symbol, right) of every position held or entry working, for the re-entry rule."""
        held = {(p.symbol, p.contract.right.value) for p in self.book.active()}
        if not self.simulated:
            held |= {
                (p.symbol, p.right)
                for p in self.broker.positions()
                if p.sec_type == "OPT" and p.quantity > 0
            }
            held |= {(i.symbol, i.contract.right.value) for i in self.journal.working_intents()}
        return frozenset(held)

    def _held(self, now_ts: float) -> tuple[dict[str, int], float]:
        """Contracts held or working in entries, by underlying, and their premium: the paper
        book's; live, the broker's for the account (not only this run's) or the journal's,
        whichever is more per symbol (a fill can leave the open orders before the position
        update arrives)."""
        journal_held, journal_notional = _count(
            (
                p.symbol,
                p.held if p.status == "open" else p.quantity,
                (p.entry_price if p.status == "open" and p.entry_price else p.entry_limit)
                * p.multiplier,
            )
            for p in self.book.active()
        )
        if self.simulated:
            return journal_held, journal_notional
        live = [
            p
            for p in self.journal.open_positions()
            if p.exited is not None or p.status == "pending"
        ]
        journal_held, journal_notional = _count(
            (
                p.symbol,
                p.held if p.status == "open" else p.quantity,
                (p.entry_price or p.entry_limit) * p.multiplier,
            )
            for p in live
        )
        broker_held, broker_notional = _count(self._at_broker(now_ts))
        symbols = set(journal_held) | set(broker_held)
        held = {s: max(journal_held.get(s, 0), broker_held.get(s, 0)) for s in symbols}
        # exercised shares of ours: 100 a contract (rounded up), shares x price (live_shares)
        return with_shares(held, max(journal_notional, broker_notional), self.journal.held_shares())

    def _at_broker(self, now_ts: float) -> Iterator[tuple[str, int, float]]:
        """(symbol, contracts, premium per contract) of the account's option positions and
        working option BUYs, ours or not; a position the journal does not know is reported."""
        account = self.settings.ibkr.account
        # ours: bought (a booked fill) or still followed (a fill not booked yet)
        known = set(self.journal.bought_contracts()) | {
            p.contract.key for p in self.journal.open_positions()
        }
        for p in self.broker.positions():
            if p.sec_type == "OPT" and p.quantity > 0 and p.account in ("", account):
                key = f"{p.symbol} {p.expiry} {p.strike:g}{p.right}"
                if self.contract_key(p) not in known and self.state is not None:
                    self._report_unknown(key, p.quantity, now_ts)
                yield p.symbol, int(p.quantity), p.avg_cost  # IBKR's avgCost has the multiplier
        for o in self.broker.open_orders():
            if o.sec_type == "OPT" and o.action == "BUY" and o.account in ("", account):
                limit = o.limit if math.isfinite(o.limit) else 0.0
                yield o.symbol, int(o.remaining), limit * o.multiplier

    @staticmethod
    def contract_key(p: BrokerPosition) -> str:
        return OptionContract(p.symbol, p.expiry, p.strike, Right(p.right)).key

    def _report_unknown(self, key: str, quantity: float, now_ts: float) -> None:
        assert self.state is not None
        text = (
            f"the account holds {quantity:g} x {key}, which this bot did not buy: "
            "counted in the caps, never traded"
        )
        if self.journal.record_alert_once(self.state.day, "unknown_position", key, text, now_ts):
            log.warning(text, extra={"event": "unknown_position", "contract": key})

    # --- at exit ----------------------------------------------------------------------------

    async def close_out(self, now_ts: float) -> None:
        """Live, at exit: working entries cancelled (``execution.cancel_entries_on_stop``;
        exits protecting what is held stay), the last fills booked, and what stays working
        at IBKR said."""
        if self.live is None or self.live_positions is None or not self.broker.is_connected():
            return
        if self.settings.execution.cancel_entries_on_stop:
            await self.live.step(now_ts, halted=True, why="stop")
        await self._book_last_fills(now_ts)
        self._left_working(now_ts)

    async def _book_last_fills(self, now_ts: float) -> None:
        """Executions that came in since the last cycle reach the journal before exit, with
        their commission reports (waited for, briefly; then booked without)."""
        assert self.live is not None and self.live_positions is not None
        if not await self.live.refresh():
            return
        for _ in range(25):
            if not self.live_positions.waiting():
                break
            await asyncio.sleep(0.2)
        self.live_positions.follow(now_ts, wait_s=0.0)

    def _left_working(self, now_ts: float) -> None:
        """What stays working after we are gone, in the log and the journal (a bracket's
        exits are meant to; an entry is worth a look)."""
        assert self.live is not None
        left = self.live.ours_working()
        for order in left:
            text = (
                f"left working at IBKR: {order.action} {order.remaining:g} x "
                f"{order.symbol} {order.expiry} {order.strike:g}{order.right} "
                f"{order.order_type} (order {order.order_id}, ref {order.order_ref})"
            )
            log.warning(text, extra={"event": "left_working", "order_ref": order.order_ref})
            self.journal.record_alert(self.day_of(now_ts), "left_working", text, now_ts)
        if left:
            log.warning(
                "%d order(s) of ours left working at IBKR (exits protect what is "
                "held; entries may still fill)",
                len(left),
                extra={"event": "left_working_total", "count": len(left)},
            )
            if self.alerter is not None:
                self.alerter.send(
                    "left_working",
                    f"stopped with {len(left)} order(s) of ours "
                    "working at IBKR: "
                    + "; ".join(
                        f"{o.action} {o.remaining:g} x {o.symbol} {o.expiry} "
                        f"{o.strike:g}{o.right} {o.order_type}"
                        for o in left
                    ),
                )


def _count(items: Iterable[tuple[str, int, float]]) -> tuple[dict[str, int], float]:
    held: dict[str, int] = {}
    notional = 0.0
    for symbol, contracts, premium in items:
        held[symbol] = held.get(symbol, 0) + contracts
        if math.isfinite(premium):
            notional += premium * contracts
    return held, notional
