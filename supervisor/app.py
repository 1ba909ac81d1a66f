"""The supervisor: owns the broker connection, the worker pool, the risk step and the executor.

    broker <-- DataService <-- Request ------- outbox <-- workers (spawned pool)
                    |                                        ^
                    +--> Reply ---------------- inbox[w] ----+
    scheduler --> CycleRun --> SymbolTask ----- inbox[w] ----+
    SymbolResult --> risk.evaluate --> Executor (dry run) --> log events

The main loop reads top to bottom: start workers, connect, then per cycle wait for the
market, run the cycle, act on its results, sleep; signal handlers only set the stop event.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from common.config import Settings
from common.messages import (
    BarsRequest,
    ChainRequest,
    OptionQuotesRequest,
    QuoteRequest,
    Request,
    SymbolResult,
    SymbolTask,
    WorkerReady,
)
from supervisor import exitcodes
from supervisor.broker.base import Broker, BrokerError
from supervisor.clock import Clock
from supervisor.cycle import CycleRun, CycleSummary
from supervisor.executor import Executor
from supervisor.hours import is_regular_hours, next_open
from supervisor.pool import BootFailure, WorkerHandle, WorkerPool
from supervisor.risk import RiskContext, RiskDecision, RiskState, evaluate, record
from supervisor.service import DataService

log = logging.getLogger("supervisor.app")

REQUESTS = (QuoteRequest, BarsRequest, ChainRequest, OptionQuotesRequest)


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        clock: Clock,
        log_queue: Any,
        echo: Callable[[str], None] = print,
        mp_context: str = "spawn",
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.clock = clock
        self.echo = echo
        self.executor = Executor(settings.execution.mode)
        self.service = DataService(broker, settings.ibkr.request_timeout_s)
        self.pool = WorkerPool(settings, log_queue, self._on_message, self._on_death, mp_context)
        self.stop = asyncio.Event()
        self.exit_code = exitcodes.OK
        self.cycle: CycleRun | None = None
        self.cycles_run = 0
        self.summaries: list[CycleSummary] = []
        self.risk_state: RiskState | None = None
        self.whale_last: dict[str, float] = {}
        self._serving: set[asyncio.Task[None]] = set()

    # --- the main loop -------------------------------------------------------------------------

    async def run(self) -> int:
        self._install_signal_handlers()
        try:
            await self._start()
            while self._more_cycles() and await self._wait_for_market():
                started = time.monotonic()
                summary = await self._run_cycle()
                self.echo(summary.line())
                if self.stop.is_set():
                    break
                interval = self.settings.schedule.interval_s
                await self.clock.sleep(interval - (time.monotonic() - started), self.stop)
        except BootFailure as exc:
            log.error("workers failed to start: %s", exc)
            self.exit_code = exitcodes.HALTED
        except BrokerError as exc:
            log.error("broker %s: %s", self.broker.name, exc)
            self.exit_code = exitcodes.CANNOT_CONNECT
        finally:
            await self._shutdown()
        return self.exit_code

    async def _start(self) -> None:
        self.pool.start(asyncio.get_running_loop())
        await self.pool.wait_ready(self.settings.workers.start_timeout_s)
        await self.broker.connect()
        log.info("supervisor ready: %d workers, broker %s, mode %s",
                 len(self.pool.workers), self.broker.name, self.executor.mode)

    def _more_cycles(self) -> bool:
        wanted = self.settings.schedule.cycles
        return not self.stop.is_set() and (wanted == 0 or self.cycles_run < wanted)

    async def _wait_for_market(self) -> bool:
        schedule = self.settings.schedule
        while schedule.regular_hours_only and not self.stop.is_set():
            now = self.clock.now()
            is_open = await self.broker.market_open(self.settings.universe.symbols[0], now)
            if is_open is None:
                is_open = is_regular_hours(now, schedule)
            if is_open:
                return True
            wait_s = next_open(now, schedule) - now
            log.info("market closed; next regular open in %.0f min", wait_s / 60,
                     extra={"event": "market_closed"})
            await self.clock.sleep(min(wait_s, 300.0), self.stop)
        return not self.stop.is_set()

    async def _run_cycle(self) -> CycleSummary:
        self.cycles_run += 1
        cycle_id = self.cycles_run
        started = time.monotonic()
        await self._refresh_risk_state()
        now = self.clock.now()
        tasks = [SymbolTask(cycle_id, s, now, whale_last_ts=self.whale_last.get(s))
                 for s in self.settings.universe.symbols]
        self.cycle = CycleRun(cycle_id, tasks, self.pool,
                              self.settings.universe.max_concurrent_symbols,
                              self.settings.schedule.cycle_deadline_s)
        self.cycle.dispatch()
        results = await self._wait_cycle(self.cycle)
        self.cycle = None
        ordered = tuple(results[t.symbol] for t in tasks if t.symbol in results)
        decisions = self._act_on(ordered)
        summary = CycleSummary(cycle_id, ordered, decisions, time.monotonic() - started)
        self.summaries.append(summary)
        return summary

    async def _wait_cycle(self, cycle: CycleRun) -> dict[str, SymbolResult]:
        waiter = asyncio.ensure_future(cycle.wait())
        stopper = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if waiter.done():
            return waiter.result()
        waiter.cancel()
        for symbol in [*cycle.inflight, *(t.symbol for t in cycle.pending)]:
            cycle.results[symbol] = SymbolResult(cycle.cycle_id, symbol, 0,
                                                 error="abandoned at shutdown")
        return cycle.results

    # --- results: risk, then the executor ------------------------------------------------------

    async def _refresh_risk_state(self) -> None:
        account = await self.broker.account()
        day = datetime.fromtimestamp(self.clock.now(), ZoneInfo(self.settings.schedule.timezone))
        today = day.date().isoformat()
        state = self.risk_state
        if state is None or state.day != today:
            state = RiskState(today, account.net_liquidation, account.net_liquidation)
            log.info("new trading day %s, start equity %.2f", today, account.net_liquidation,
                     extra={"event": "day_start", "day": today,
                            "equity": account.net_liquidation})
        self.risk_state = replace(state, equity=account.net_liquidation)

    def _act_on(self, results: tuple[SymbolResult, ...]) -> tuple[RiskDecision, ...]:
        assert self.risk_state is not None
        decisions: list[RiskDecision] = []
        for result in results:
            self._log_result(result)
            if result.whale_fired_ts is not None:
                self.whale_last[result.symbol] = result.whale_fired_ts
            for intent in result.intents:
                ctx = RiskContext(orders_this_cycle=sum(1 for d in decisions if d.accepted),
                                  now_ts=self.clock.now())
                decision = evaluate(intent, self.risk_state, self.settings.risk,
                                    self.settings.options, ctx=ctx)
                if decision.rule == "daily_loss_limit" and not self.risk_state.halted:
                    log.error("kill switch: %s; no new entries today", decision.reason,
                              extra={"event": "kill_switch", "reason": decision.reason})
                    self.risk_state = replace(self.risk_state, halted=True)
                self.executor.execute(intent, decision)
                self.risk_state = record(self.risk_state, decision)
                decisions.append(decision)
        return tuple(decisions)

    def _log_result(self, result: SymbolResult) -> None:
        fields = {"event": "symbol_result", "cycle": result.cycle_id, "symbol": result.symbol,
                  "signal": result.signal.value, "confidence": round(result.confidence, 3),
                  "intents": len(result.intents), "skipped": result.skipped,
                  "reasons": list(result.reasons), "worker": result.worker_id,
                  "attempt": result.attempt, "timings": dict(result.timings)}
        if not result.ok:
            log.error("%s failed: %s", result.symbol, result.error, extra=fields)
        elif result.skipped:
            log.info("%s %s skipped: %s", result.symbol, result.signal.value, result.skipped,
                     extra=fields)
        else:
            log.info("%s %s (%.2f) %s", result.symbol, result.signal.value, result.confidence,
                     "; ".join(result.reasons[:3]), extra=fields)

    # --- messages from workers -----------------------------------------------------------------

    def _on_message(self, message: Any) -> None:
        if isinstance(message, SymbolResult):
            if self.cycle is not None:
                self.cycle.on_result(message)
        elif isinstance(message, REQUESTS):
            task = asyncio.ensure_future(self._serve(message))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
        elif isinstance(message, WorkerReady):
            self.pool.mark_ready(message.worker_id)
            if self.cycle is not None:
                self.cycle.dispatch()
        else:
            log.error("unknown message from a worker: %r", message)

    async def _serve(self, request: Request) -> None:
        reply = await self.service.answer(request)
        if not self.pool.send(request.worker_id, reply):
            log.debug("reply %s for gone worker %s dropped", request.request_id,
                      request.worker_id)

    def _on_death(self, handle: WorkerHandle, failure: str | None) -> None:
        if self.cycle is not None:
            self.cycle.on_worker_death(handle)
        if failure is not None:
            log.error("stopping: %s", failure, extra={"event": "boot_failure"})
            self.exit_code = exitcodes.HALTED
            self.stop.set()

    # --- signals and shutdown ------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        log.warning("%s received: stopping after the current step", signal.Signals(signum).name,
                    extra={"event": "signal", "signal": signal.Signals(signum).name})
        self.stop.set()

    async def _shutdown(self) -> None:
        """Stop scheduling, drop pending serving, stop workers, disconnect; logs flush last."""
        self.stop.set()
        for task in list(self._serving):
            task.cancel()
        await self.pool.stop()
        try:
            await self.broker.disconnect()
        except BrokerError as exc:
            log.warning("disconnect failed: %s (nothing left to cancel)", exc)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        log.info("supervisor stopped after %d cycles", self.cycles_run)
