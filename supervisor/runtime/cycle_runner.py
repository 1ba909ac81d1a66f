"""One cycle, as the supervisor's loop, the benchmark's baseline and a replay run it.

    universe --> desk.begin_cycle (under desk.lock: a control's flatten waits for it)
      --> record.start --> tasks (sessions, the strategy's memory)
      --> symbols.start(tasks).dispatch()   (the worker pool, or this process: symbol_runs.py)
      --> each result as it arrives: recorded, then acted on under desk.lock (the expiry
          guard's runs wait for it); the cycle's executions so far count in the risk caps
      --> the run over (or abandoned by a stop) --> what was not acted on is recorded
      --> record.end (durable) --> CycleSummary

A ConnectionLost from the desk's start of cycle is raised to the caller, which waits for the
connection; the cycle's rows stay as far as they were written. One while acting on a result
is the execution gate's: it answers an execution with status ``error`` (a live row stays
``unconfirmed`` until the next start settles it), and the cycle goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from common.messages import SymbolResult
from supervisor.runtime.clock import Clock
from supervisor.runtime.cycle import (
    ABANDONED,
    ActOnArrival,
    CycleSummary,
    SymbolRun,
    log_result,
    symbol_tasks,
)
from supervisor.runtime.expiry_timer import during_cycle
from supervisor.runtime.symbol_runs import Symbols
from supervisor.trading.cycle_record import CycleRecord
from supervisor.trading.desk import Desk
from supervisor.trading.execution import Execution
from supervisor.trading.expiry_guard import ExpiryGuard
from supervisor.trading.sessions import SessionBook

log = logging.getLogger("supervisor.runtime.loop")  # the cycle's events, as they always were


@dataclass
class Cycle:
    """One cycle's state while it runs."""

    cycle_id: int
    day: str  # the exchange's, from the desk's start of cycle
    started: float  # time.monotonic()
    # what the cycle executed so far: the per-cycle caps count it for the next symbol
    executions: list[Execution] = field(default_factory=list)


class CycleRunner:
    def __init__(
        self,
        desk: Desk,
        record: CycleRecord,
        sessions: SessionBook,
        symbols: Symbols,
        clock: Clock,
        universe: Callable[[], Awaitable[Sequence[str]]],
        stop: asyncio.Event,
        guard: ExpiryGuard | None = None,
        on_start: Callable[[int, str, float], None] | None = None,
    ) -> None:
        self.desk, self.record, self.sessions = desk, record, sessions
        self.symbols, self.clock, self.universe = symbols, clock, universe
        self.stop, self.guard = stop, guard
        # told (cycle id, day, session clock) as a cycle starts: the flight recorder's cycles
        self.on_start = on_start
        self.cycles_run = record.last_cycle_id()

    async def run(self) -> CycleSummary:
        started, now = time.monotonic(), self.clock.now()
        symbols = await self.universe()  # the venue asked once, here
        async with self.desk.lock:  # a control's flatten never meets the book half-driven
            state = await self.desk.begin_cycle(now)  # ConnectionLost here skips the cycle
        self.cycles_run += 1
        cycle = Cycle(self.cycles_run, state.day, started)
        self.record.start(cycle.cycle_id, cycle.day, now)
        if self.on_start is not None:
            self.on_start(cycle.cycle_id, cycle.day, now)
        memory = self.record.memory.whale_last
        tasks = await symbol_tasks(cycle.cycle_id, now, symbols, self.sessions, memory)
        run = self.symbols.start(cycle.cycle_id, tasks)
        acting = ActOnArrival(run, lambda r: self._act(cycle, r), lambda r: self._record(cycle, r))
        async with during_cycle(self.clock, self.guard, self.desk.lock):
            run.dispatch()
            try:
                results = await acting.during(self._wait(run))
            finally:
                self.symbols.end()
            ordered = tuple(results[t.symbol] for t in tasks if t.symbol in results)
            await acting.finish(ordered)
        decisions = tuple(e.decision for e in cycle.executions)
        summary = CycleSummary(cycle.cycle_id, ordered, decisions, time.monotonic() - started)
        failed = len(summary.failed)
        ok = len(ordered) - failed
        self.record.end(cycle.cycle_id, self.clock.now(), ok, failed, summary.seconds)
        return summary

    async def _wait(self, run: SymbolRun) -> dict[str, SymbolResult]:
        """The run's results; on a stop, what was not done is abandoned (a skip)."""
        waiter = asyncio.ensure_future(run.wait())
        stopper = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if waiter.done():
            return waiter.result()
        waiter.cancel()
        for symbol in run.unfinished():
            run.results[symbol] = SymbolResult(run.cycle_id, symbol, 0, skipped=ABANDONED)
        return run.results

    def _record(self, cycle: Cycle, result: SymbolResult) -> None:
        log_result(log, result)
        self.record.result(result, cycle.day)

    async def _act(self, cycle: Cycle, result: SymbolResult) -> None:
        self._record(cycle, result)
        async with self.desk.lock:  # one step at a time with the expiry guard's runs
            now = self.clock.now()
            done = await self.desk.act_on((result,), now, self.stop.is_set, cycle.executions)
            cycle.executions.extend(done)
