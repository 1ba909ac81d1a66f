"""The pool's baseline: the same cycles' work done by one process, one symbol at a time.

Each cycle is the supervisor's own, driven by the offline driver a replay and a backtest use
(supervisor/runtime/offline.py: the desk's start of cycle, the tasks with each symbol's
session, each result journaled and put through the same risk step and dry-run executor, the
cycle's durable end), with its symbols run in this process (symbol_runs.InProcessSymbols:
each pipeline driven against the same DataService over the same seeded StubBroker on the
same running session clock) instead of by the worker pool.
Only what the pool adds is missing: the processes, the queues, the pickling. So
``pool / sequential`` says what the worker processes buy on this machine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from common.config import Settings
from supervisor.broker.stub import StubBroker
from supervisor.runtime.clock import SimClock
from supervisor.runtime.offline import run_offline


def sequential(settings: Settings, cycles: int, journal_path: Path) -> dict[str, Any]:
    """Symbol-cycles per second of the in-process run."""
    journal_path.unlink(missing_ok=True)
    clock = SimClock(settings.stub.start.timestamp())  # running, as the pool's stub clock
    broker = StubBroker(settings.stub, clock.now)
    # each cycle at the clock's now, as the pool's loop with interval_s 0 starts them
    times = (clock.now() for _ in range(cycles))
    # fsynced as the pool's journal is: the same work, so pool / sequential compares them
    run = asyncio.run(run_offline(settings, broker, clock, times, journal_path, fsync=True))
    ordered = sorted(run.cycle_seconds)
    per_s = run.symbol_cycles_per_s
    return {
        "symbol_cycles_per_s": round(per_s, 1) if per_s is not None else None,
        "cycle_s_first": round(run.cycle_seconds[0], 4),
        "cycle_s_p50": round(ordered[len(ordered) // 2], 4),
        "failed_symbols": run.failed_symbols,
    }
