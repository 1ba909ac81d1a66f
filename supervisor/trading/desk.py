"""The trading desk: from a cycle's symbol results to journaled risk decisions and executions.

    begin_cycle: account equity (+ the simulated book's P&L outside live mode) -> RiskState;
                 a new day restores start equity, kill switch, sent intents from the journal;
                 the position book is marked and driven to its exits first (exits always run)
    act_on:      each intent -> risk.evaluate -> Executor -> journal; accepted entries open
                 a simulated position outside live mode

The kill switch trips when the daily loss limit is breached: no new entries for the rest of
the trading day (also after a restart, through the journal), one ERROR log and one alert.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from common.calendar import trading_day
from common.config import Settings
from common.messages import SymbolResult
from supervisor.broker.base import Broker, BrokerError
from supervisor.journal.records import DayState, Position
from supervisor.journal.store import Journal
from supervisor.observe.alerts import Alerter
from supervisor.trading.execution import Execution, Executor
from supervisor.trading.live import LiveBook
from supervisor.trading.paper import book_pnl, open_from, step
from supervisor.trading.risk import RiskContext, RiskState, daily_loss, evaluate, record

log = logging.getLogger("supervisor.trading.desk")


class Desk:
    def __init__(self, settings: Settings, broker: Broker, journal: Journal, executor: Executor,
                 alerter: Alerter | None = None) -> None:
        self.settings = settings
        self.broker = broker
        self.journal = journal
        self.executor = executor
        self.alerter = alerter
        self.state: RiskState | None = None
        self.book: dict[str, Position] = {p.intent_id: p for p in journal.open_positions()}
        self.live = (LiveBook(broker, journal, settings.execution.entry_timeout_s)
                     if executor.mode == "live" else None)

    @property
    def simulated(self) -> bool:
        return self.executor.mode != "live"

    def day_of(self, ts: float) -> str:
        return trading_day(ts, self.settings.schedule.timezone).isoformat()

    # --- before the cycle -------------------------------------------------------------------

    async def begin_cycle(self, now_ts: float) -> RiskState:
        day = self.day_of(now_ts)
        account = await self.broker.account()
        if self.state is None or self.state.day != day:
            # positions closed on earlier days live on in the journal only
            self.book = {p.intent_id: p for p in self._today(day)}
            self.state = self._restore_day(day, account.net_liquidation)
        await self._drive_book(now_ts, day)
        equity = account.net_liquidation
        if self.simulated:
            realized, unrealized = book_pnl(self._today(day))
            equity += realized + unrealized
        self.state = replace(self.state, equity=equity)
        breached, why, _ = daily_loss(self.state, self.settings.risk)
        if breached and not self.state.halted:
            self._trip(why, now_ts)
        if self.live is not None:
            await self.live.step(now_ts, self.state.halted)
        return self.state

    def _restore_day(self, day: str, equity: float) -> RiskState:
        saved = self.journal.day_state(day)
        if saved is None:
            saved = DayState(day, equity)
            self.journal.save_day_state(saved)
            log.info("new trading day %s, start equity %.2f", day, equity,
                     extra={"event": "day_start", "day": day, "equity": equity})
        else:
            log.info("restored trading day %s from the journal (start equity %.2f, halted %s)",
                     day, saved.start_equity, saved.halted,
                     extra={"event": "day_restored", "day": day, "halted": saved.halted})
        for p in self.journal.positions(day):
            self.book.setdefault(p.intent_id, p)
        return RiskState(day, saved.start_equity, equity, self.journal.orders_count(day),
                         self.journal.sent_intents(day), saved.halted)

    async def _drive_book(self, now_ts: float, day: str) -> None:
        """Mark active simulated positions and close those at take-profit or stop-loss."""
        active = [p for p in self.book.values() if p.active]
        if not active or not self.simulated:
            return
        try:
            quotes = await self.broker.option_quotes(tuple({p.contract for p in active}))
        except BrokerError as exc:
            log.warning("could not mark %d positions: %s", len(active), exc)
            return
        by_key = {q.contract.key: q for q in quotes}
        for p in active:
            moved = step(p, by_key.get(p.contract.key), now_ts,
                         self.settings.execution.entry_timeout_s,
                         tz=self.settings.schedule.timezone)
            if moved != p:
                self.book[p.intent_id] = moved
                self.journal.save_position(moved, day)
                if moved.status != p.status:
                    self._log_transition(moved)

    def _log_transition(self, p: Position) -> None:
        log.info("position %s %s: %s%s", p.contract.key, p.status, p.exit_reason or "filled",
                 f" P&L {p.realized_pnl:.2f}" if not p.active else "",
                 extra={"event": "position", "intent_id": p.intent_id, "status": p.status,
                        "exit_reason": p.exit_reason, "realized_pnl": p.realized_pnl})
        if p.exit_reason in ("take_profit", "stop_loss") and self.alerter is not None:
            self.alerter.send("trade", f"{p.contract.key} closed at {p.exit_reason}: "
                              f"P&L {p.realized_pnl:.2f}")

    def _today(self, day: str) -> list[Position]:
        return [p for p in self.book.values()
                if p.active or (p.closed_ts is not None and self.day_of(p.closed_ts) == day)]

    def _trip(self, why: str, ts: float) -> None:
        assert self.state is not None
        self.state = replace(self.state, halted=True)
        saved = self.journal.day_state(self.state.day) or DayState(self.state.day,
                                                                   self.state.start_equity)
        self.journal.save_day_state(replace(saved, halted=True, halted_reason=why, halted_ts=ts))
        if self.journal.record_alert_once(self.state.day, "kill_switch", "daily_loss", why, ts):
            log.error("KILL SWITCH: %s; no new entries for the rest of %s", why, self.state.day,
                      extra={"event": "kill_switch", "reason": why, "day": self.state.day})
            if self.alerter is not None:
                self.alerter.send("kill_switch", f"Kill switch tripped: {why}")

    # --- after the cycle --------------------------------------------------------------------

    async def act_on(self, results: Sequence[SymbolResult], now_ts: float) -> list[Execution]:
        assert self.state is not None
        executions: list[Execution] = []
        for result in results:
            for intent in result.intents:
                ctx = RiskContext(orders_this_cycle=sum(1 for e in executions
                                                        if e.decision.accepted),
                                  now_ts=now_ts, open_contracts=self._open_contracts())
                decision = evaluate(intent, self.state, self.settings.risk,
                                    self.settings.options, ctx=ctx)
                if decision.rule == "daily_loss_limit":
                    self._trip(decision.reason, now_ts)
                done = await self.executor.execute(intent, decision, self.state.day, now_ts)
                self.state = record(self.state, done.decision)
                executions.append(done)
                if done.status in ("simulated", "checked"):
                    position = open_from(intent, done.quantity, now_ts)
                    self.book[intent.intent_id] = position
                    self.journal.save_position(position, self.state.day)
                if done.status in ("simulated", "checked", "submitted") and self.alerter:
                    self.alerter.send("trade", f"{self.executor.mode} {intent.signal.value} "
                                      f"{done.quantity} x {intent.contract.key} "
                                      f"@ {intent.entry_limit:.2f}")
        return executions

    def _open_contracts(self) -> dict[str, int]:
        held: dict[str, int] = {}
        for p in self.book.values():
            if p.active:
                held[p.symbol] = held.get(p.symbol, 0) + p.quantity
        return held
