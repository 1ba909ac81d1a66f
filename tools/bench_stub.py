"""The pool's baseline: the same cycles' work done by one process, one symbol at a time.

Each cycle is what the supervisor's is: the desk's start of cycle (the paper book driven,
the day's risk state), the tasks with each symbol's session, then per symbol its pipeline
(workers/pipeline.py) driven in this process, its requests answered by the same DataService
over the same seeded StubBroker on the same session clock, its signal journaled and its
intents put through the same risk step and dry-run executor; then the cycle's durable end.
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
from common.messages import SymbolResult
from supervisor.broker.stub import StubBroker
from supervisor.journal.store import Journal
from supervisor.runtime.clock import SimClock
from supervisor.runtime.cycle import symbol_tasks
from supervisor.runtime.serving import DataService
from supervisor.trading.desk import Desk
from supervisor.trading.execution import Execution, Executor
from supervisor.trading.sessions import SessionBook
from workers.pipeline import process_symbol, request_ids
from workers.strategy import load_strategy


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
    strategy = load_strategy(settings)
    symbols = settings.universe.symbols

    async def cycle(cycle_id: int) -> int:
        now = clock.now()
        state = await desk.begin_cycle(now)
        journal.start_cycle(cycle_id, state.day, now)
        executions: list[Execution] = []
        failed = 0
        for task in await symbol_tasks(cycle_id, now, symbols, sessions, {}):
            result = await _drive(
                process_symbol(task, 1, settings, strategy, request_ids()), service
            )
            journal.record_signal(
                cycle_id,
                state.day,
                task.symbol,
                result.signal.value,
                result.confidence,
                result.reasons,
                result.skipped,
                result.error,
            )
            executions.extend(await desk.act_on((result,), clock.now(), prior=executions))
            failed += not result.ok
        journal.end_cycle(cycle_id, clock.now(), len(symbols) - failed, failed, 0.0)
        return failed

    async def run() -> tuple[list[float], int]:
        await broker.connect()
        seconds, failed = [], 0
        for cycle_id in range(1, cycles + 1):
            started = time.perf_counter()
            failed += await cycle(cycle_id)
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


async def _drive(pipeline: Any, service: DataService) -> SymbolResult:
    """Answer the pipeline's requests until it returns its result."""
    try:
        requests = next(pipeline)
        while True:
            requests = pipeline.send((await service.answer_all(requests)).replies)
    except StopIteration as done:
        result: SymbolResult = done.value
        return result
