"""The pool's baseline: the same cycles' work done by one process, one symbol at a time.

Each cycle is the supervisor's own (supervisor/runtime/cycle_runner.py: the desk's start of
cycle, the tasks with each symbol's session, each result journaled and put through the same
risk step and dry-run executor, the cycle's durable end), with its symbols run in this
process (symbol_runs.InProcessSymbols: each pipeline driven against the same DataService
over the same seeded StubBroker on the same session clock) instead of by the worker pool.
Only what the pool adds is missing: the processes, the queues, the pickling. So
``pool / sequential`` says what the worker processes buy on this machine.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from common.calendar import exchange_calendar
from common.config import Settings
from supervisor.broker.stub import StubBroker
from supervisor.journal.store import Journal
from supervisor.runtime.clock import SimClock
from supervisor.runtime.cycle_runner import CycleRunner
from supervisor.runtime.serving import DataService
from supervisor.runtime.symbol_runs import InProcessSymbols
from supervisor.trading.cycle_record import CycleRecord
from supervisor.trading.desk import Desk
from supervisor.trading.execution import Executor
from supervisor.trading.sessions import SessionBook


def sequential(settings: Settings, cycles: int, journal_path: Path) -> dict[str, Any]:
    """Symbol-cycles per second of the in-process run."""
    journal_path.unlink(missing_ok=True)
    journal = Journal(journal_path)
    clock = SimClock(settings.stub.start.timestamp())
    broker = StubBroker(settings.stub, clock.now)
    calendar = exchange_calendar(settings.schedule)
    service = DataService(broker, settings.ibkr.request_timeout_s, calendar, clock.now)
    sessions = SessionBook(broker, calendar)
    desk = Desk(settings, broker, journal, Executor("dry_run", broker, journal), sessions)
    symbols = settings.universe.symbols

    async def universe() -> list[str]:
        return symbols

    async def run() -> tuple[list[float], int]:
        await broker.connect()
        runner = CycleRunner(
            desk,
            CycleRecord(journal),
            sessions,
            InProcessSymbols(settings, service),
            clock,
            universe,
            asyncio.Event(),  # never set: every cycle runs whole
        )
        seconds, failed = [], 0
        for _ in range(cycles):
            started = time.perf_counter()
            failed += len((await runner.run()).failed)
            seconds.append(time.perf_counter() - started)
        return seconds, failed

    try:
        seconds, failed = asyncio.run(run())
    finally:
        journal.close()
    busy = sum(seconds)
    ordered = sorted(seconds)
    return {
        "symbol_cycles_per_s": round(len(symbols) * cycles / busy, 1) if busy else None,
        "cycle_s_first": round(seconds[0], 4),
        "cycle_s_p50": round(ordered[len(ordered) // 2], 4),
        "failed_symbols": failed,
    }
