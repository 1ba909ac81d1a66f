"""The pool's baseline: the same symbols' work done by one process, one symbol at a time.

Each symbol's pipeline (workers/pipeline.py) is driven in this process, its requests answered
by the same DataService over the same seeded StubBroker, cycle after cycle on the same
session clock, and each result journaled as the supervisor does (cycle rows, one signal row
a symbol). Only what the pool adds is missing: the processes, the queues, the pickling; and
the risk step, which judges the few intents of a cycle. So ``pool / sequential`` says what
the worker processes buy on this machine.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from common.calendar import trading_day
from common.config import Settings
from common.messages import SymbolResult, SymbolTask
from supervisor.broker.stub import StubBroker
from supervisor.journal.store import Journal
from supervisor.runtime.clock import SimClock
from supervisor.runtime.serving import DataService
from workers.pipeline import process_symbol, request_ids
from workers.strategy import load_strategy


def sequential(settings: Settings, cycles: int, journal_path: Path) -> dict[str, Any]:
    """Symbol-cycles per second of the in-process run."""
    journal_path.unlink(missing_ok=True)
    journal = Journal(journal_path)
    clock = SimClock(settings.stub.start.timestamp())
    broker = StubBroker(settings.stub, clock.now)
    service = DataService(broker, settings.ibkr.request_timeout_s, broker.calendar, clock.now)
    strategy = load_strategy(settings)
    symbols = settings.universe.symbols

    async def run() -> tuple[list[float], int]:
        seconds, failed = [], 0
        for cycle_id in range(1, cycles + 1):
            started = time.perf_counter()
            day = trading_day(clock.now()).isoformat()
            journal.start_cycle(cycle_id, day, clock.now())
            for symbol in symbols:
                task = SymbolTask(cycle_id, symbol, clock.now())
                result = await _drive(process_symbol(task, 1, settings, strategy,
                                                     request_ids()), service)
                journal.record_signal(cycle_id, day, symbol, result.signal.value,
                                      result.confidence, result.reasons, result.skipped,
                                      result.error)
                failed += not result.ok
            journal.end_cycle(cycle_id, clock.now(), len(symbols), 0, 0.0)
            seconds.append(time.perf_counter() - started)
        return seconds, failed

    try:
        seconds, failed = asyncio.run(run())
    finally:
        journal.close()
    busy = sum(seconds)
    ordered = sorted(seconds)
    return {"symbol_cycles_per_s": round(len(symbols) * cycles / busy, 1) if busy else None,
            "cycle_s_first": round(seconds[0], 4),
            "cycle_s_p50": round(ordered[len(ordered) // 2], 4), "failed_symbols": failed}


async def _drive(pipeline: Any, service: DataService) -> SymbolResult:
    """Answer the pipeline's requests until it returns its result."""
    try:
        requests = next(pipeline)
        while True:
            replies = await asyncio.gather(*(service.answer(r) for r in requests))
            requests = pipeline.send(tuple(replies))
    except StopIteration as done:
        result: SymbolResult = done.value
        return result
