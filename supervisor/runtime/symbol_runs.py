"""How a cycle's symbols are run: by the worker pool, or in this process.

CycleRunner --start(cycle_id, tasks)--> Symbols --> a SymbolRun (cycle.py)
  PoolSymbols:      CycleRun over the WorkerPool; the pool's messages about the cycle
                    (a result, a worker ready, a worker dead) are passed on to it
  InProcessSymbols: InProcessRun: each symbol's pipeline (workers/pipeline.py) driven
                    here against the DataService, one symbol at a time, each result acted
                    on before the next symbol starts (a replay's order, and the
                    benchmark's baseline: the pool's work without the processes)
"""

from __future__ import annotations

import asyncio
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from common.config import Settings
from common.messages import SymbolResult, SymbolTask
from supervisor.runtime.budget import cycle_budget
from supervisor.runtime.cycle import CycleRun, SymbolRun
from supervisor.runtime.pool import WorkerHandle, WorkerPool
from supervisor.runtime.serving import DataService
from workers.pipeline import process_symbol, request_ids
from workers.strategy import Strategy, load_strategy

RETRY_GRACE_S = 0.25  # see CycleRun: deaths at one moment are all seen before a retry
IN_PROCESS_WORKER = 1  # the worker id an in-process result carries


class Symbols(Protocol):
    def start(self, cycle_id: int, tasks: Sequence[SymbolTask]) -> SymbolRun:
        """A run of ``tasks``; nothing is handed out before its ``dispatch``."""
        ...

    def end(self) -> None:
        """The cycle is over: nothing more reaches its run."""
        ...


class PoolSymbols:
    """Symbols run by the worker pool, at most the cycle budget's number at once."""

    def __init__(self, pool: WorkerPool, settings: Settings, link_up: Callable[[], bool]) -> None:
        self.pool, self.settings, self.link_up = pool, settings, link_up
        self.current: CycleRun | None = None

    def start(self, cycle_id: int, tasks: Sequence[SymbolTask]) -> CycleRun:
        budget = cycle_budget(self.settings, len(tasks))
        self.current = CycleRun(
            cycle_id, tasks, self.pool, *budget, RETRY_GRACE_S, link_up=self.link_up
        )
        return self.current

    def end(self) -> None:
        self.current = None

    def on_result(self, result: SymbolResult) -> None:
        if self.current is not None:
            self.current.on_result(result)

    def on_ready(self) -> None:
        if self.current is not None:
            self.current.dispatch()  # a (re)spawned worker takes what waits

    def on_death(self, handle: WorkerHandle) -> None:
        if self.current is not None:
            self.current.on_worker_death(handle)


class InProcessSymbols:
    """Symbols run in this process against ``service``, one after the other."""

    def __init__(
        self, settings: Settings, service: DataService, strategy: Strategy | None = None
    ) -> None:
        self.settings, self.service = settings, service
        self.strategy = strategy if strategy is not None else load_strategy(settings)
        self.ids = request_ids()

    def start(self, cycle_id: int, tasks: Sequence[SymbolTask]) -> InProcessRun:
        return InProcessRun(cycle_id, tasks, self.drive)

    def end(self) -> None:
        pass  # a run of its own ends with its task

    async def drive(self, task: SymbolTask) -> SymbolResult:
        """The symbol's pipeline, its requests answered until it returns its result; a bug
        in the strategy costs the symbol, as in a worker."""
        pipeline = process_symbol(task, IN_PROCESS_WORKER, self.settings, self.strategy, self.ids)
        try:
            requests = next(pipeline)
            while True:
                replies = await self.service.answer_all(requests)
                requests = pipeline.send(replies.replies)
        except StopIteration as done:
            result: SymbolResult = done.value
            return result
        except Exception:  # noqa: BLE001 - one symbol's failure, as a worker reports it
            return SymbolResult(
                task.cycle_id,
                task.symbol,
                IN_PROCESS_WORKER,
                error=traceback.format_exc(),
                attempt=task.attempt,
            )


class InProcessRun:
    """A SymbolRun in this process: one symbol at a time, in the tasks' order; the next one
    starts once the last result was acted on (``arrivals.join``), so a run is repeatable."""

    def __init__(
        self,
        cycle_id: int,
        tasks: Sequence[SymbolTask],
        drive: Callable[[SymbolTask], Awaitable[SymbolResult]],
    ) -> None:
        self.cycle_id = cycle_id
        self.pending: deque[SymbolTask] = deque(tasks)
        self.running: str | None = None
        self.results: dict[str, SymbolResult] = {}
        self.arrivals: asyncio.Queue[SymbolResult | None] = asyncio.Queue()
        self._drive = drive
        self._task: asyncio.Task[None] | None = None

    def dispatch(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while self.pending:
            task = self.pending.popleft()
            self.running = task.symbol
            result = await self._drive(task)
            self.running = None
            self.results[task.symbol] = result
            self.arrivals.put_nowait(result)
            await self.arrivals.join()

    async def wait(self) -> dict[str, SymbolResult]:
        self.dispatch()
        assert self._task is not None
        try:
            await self._task
        finally:  # ended, or cancelled by a stop: nothing more runs
            self._task.cancel()
        return self.results

    def stop_dispatching(self) -> None:
        self.pending.clear()

    def unfinished(self) -> list[str]:
        running = [self.running] if self.running is not None else []
        return [*running, *(t.symbol for t in self.pending)]
