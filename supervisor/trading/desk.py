"""The trading desk: from a cycle's symbol results to journaled risk decisions and executions.

    begin_cycle: the journal file still the one opened (deleted or replaced: no new entry,
                 rule journal_lost, until a restart; one ERROR, one alert); a new day
                 restores start equity, kill switch, sent intents from the journal; the
                 position book values the account (driving its positions to now first:
                 exits always run, kill switch or not) -> RiskState; then the book follows
                 what the broker holds and has working, and the intent ids it says were
                 sent today are duplicates whatever the journal holds
    act_on:      each intent -> its entry id (the book's: a re-entry after a close gets a
                 new one) -> risk.evaluate with the symbol's own session and the book's
                 holdings -> Executor -> journal; the book follows each accepted execution

The desk holds one position book (``position_book.PositionBook``), chosen once from what
the execution gate says (``books.book_for``): the gate is the only part that knows whether
orders reach IBKR.

The kill switch trips when the daily loss limit is breached: no new entries for the rest of
the trading day (also after a restart, through the journal), one ERROR log and one alert.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from common.config import Settings
from common.messages import OrderIntent, SymbolResult
from supervisor.broker.base import Broker
from supervisor.journal.records import DayState
from supervisor.journal.store import Journal
from supervisor.observe.alerts import Alerter
from supervisor.trading.books import book_for
from supervisor.trading.execution import Execution, Executor
from supervisor.trading.journal_watch import JournalWatch
from supervisor.trading.live_reconcile import Reconciliation
from supervisor.trading.position_book import DeskSide, PositionBook, traded
from supervisor.trading.refusal_alerts import refusal_alerts_for
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
        book: Callable[[DeskSide], PositionBook] = book_for,
    ) -> None:
        """``book``: what makes the position book from the desk (tests give a fake)."""
        self.settings = settings
        self.broker = broker
        self.journal = journal
        self.executor = executor
        self.sessions = sessions
        self.alerter = alerter
        self.state: RiskState | None = None
        self.lock = asyncio.Lock()  # acting on a result and the expiry guard: one at a time
        self.journal_watch = JournalWatch(journal, alerter)
        # refusals alerted the first of a rule at once, then counted (refusal_alerts.py)
        self.refusals = refusal_alerts_for(alerter, settings.alerts.refusal_every_min, executor)
        self.book = book(self)
        # the trader's pause (trading/controls.py): journaled, so it holds across a restart
        self.paused = journal.controls.paused()

    def day_of(self, ts: float) -> str:
        return self.sessions.day_of(ts).isoformat()

    # --- at start ---------------------------------------------------------------------------

    async def start_live(self, now_ts: float) -> Reconciliation | None:
        """Before the first cycle, the book's start: live, the journal reconciled with the
        broker (None: nothing to reconcile)."""
        return await self.book.start(now_ts)

    async def open_day(self, now_ts: float) -> None:
        account = await self.broker.account()
        self.state = self._restore_day(self.day_of(now_ts), account.net_liquidation)

    def add_at_broker(self, intent_ids: frozenset[str]) -> None:
        assert self.state is not None
        self.state = replace(self.state, at_broker=self.state.at_broker | intent_ids)

    # --- before the cycle -------------------------------------------------------------------

    async def begin_cycle(self, now_ts: float) -> RiskState:
        lost = self.journal_watch.check()  # deleted or replaced: no entry until a restart
        self.refusals.tick(now_ts)  # refusals held back in a window now over: said
        day = self.day_of(now_ts)
        account = await self.broker.account()
        if self.state is None or self.state.day != day:
            self.book.new_day(day)
            self.state = self._restore_day(day, account.net_liquidation)
        valued = await self.book.value(account, now_ts, day)
        self.state = replace(
            self.state,
            equity=valued.equity,
            journal_lost=lost,
            daily_pnl=valued.daily_pnl,
            paused=self.paused,
        )
        breached, why, _ = daily_loss(self.state, self.settings.risk)
        if breached and not self.state.halted:
            self.trip(why, now_ts)
        await self.book.follow(now_ts, self.state.halted)
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
        return RiskState(
            day,
            saved.start_equity,
            equity,
            self.journal.orders_count(day),
            self.journal.sent_intents(day),
            saved.halted,
            paused=self.paused,
        )

    def trip(self, why: str, ts: float, key: str = "daily_loss") -> None:
        assert self.state is not None
        self.state = replace(self.state, halted=True)
        saved = self.journal.day_state(self.state.day) or DayState(
            self.state.day, self.state.start_equity
        )
        if not saved.halted:  # the first trip's reason and time stand (a second kill says no more)
            self.journal.save_day_state(
                replace(saved, halted=True, halted_reason=why, halted_ts=ts)
            )
        if self.journal.record_alert_once(self.state.day, "kill_switch", key, why, ts):
            log.error(
                "KILL SWITCH: %s; no new entries for the rest of %s",
                why,
                self.state.day,
                extra={"event": "kill_switch", "reason": why, "day": self.state.day},
            )
            if self.alerter is not None:
                self.alerter.send("kill_switch", f"Kill switch tripped: {why}")

    def pause(self, paused: bool) -> None:
        """The trader's pause or resume: the risk step reads it from the next intent on."""
        self.paused = paused
        if self.state is not None:
            self.state = replace(self.state, paused=paused)

    async def flatten(self, now_ts: float) -> str:
        """Working entries cancelled and every position closed (the caller holds ``lock``)."""
        return await self.book.flatten(now_ts)

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
                intent = self.book.entry_id(proposed, self.state.sent_today)
                ctx = await self._context(intent, now_ts, [*prior, *executions])
                decision = evaluate(
                    intent, self.state, self.settings.risk, self.settings.options, ctx=ctx
                )
                if decision.rule == "daily_loss_limit":
                    self.trip(decision.reason, now_ts)
                done = await self.executor.execute(
                    intent, decision, self.state.day, now_ts, stopping()
                )
                self.state = record(self.state, done.decision)
                executions.append(done)
                self._after(intent, done, now_ts)
        return executions

    def _after(self, intent: OrderIntent, done: Execution, now_ts: float) -> None:
        assert self.state is not None
        self.book.opened(intent, done, now_ts, self.state.day)
        if done.status in ("simulated", "checked", "submitted") and self.alerter:
            self.alerter.send("trade", traded(intent, done))
        self.refusals.after(intent, done, now_ts)

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
            positioned=self.book.positioned(),
            tz=self.sessions.calendar.tz,
        )

    def _held(self, now_ts: float) -> tuple[dict[str, int], float]:
        """Contracts held or working in entries, by underlying, and their premium (the
        book's count: the caps and the notional limit read it)."""
        assert self.state is not None
        return self.book.held(now_ts, self.state.day)

    # --- at exit ---------------------------------------------------------------------------

    async def close_out(self, now_ts: float) -> None:
        """At exit, what the book must do before the process goes (live: working entries
        cancelled if ``execution.cancel_entries_on_stop``, the last fills booked, what stays
        working at IBKR said)."""
        await self.book.close_out(now_ts)
