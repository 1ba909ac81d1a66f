"""One cycle: symbols handed to workers, at most ``max_concurrent_symbols`` at once.

While the broker's connection is down nothing is handed out (its requests could only fail),
and a symbol that failed because the connection was lost (a ConnectionLost reply: the
gateway dropped or went silent) goes back to the front of the queue and runs again once the
connection is back, while the deadline allows: a lost connection costs time, not symbols.
A symbol whose worker died is retried once on another live worker (after a short grace, so
two workers dying together are both noticed first), then reported failed; the symbol a worker
was killed for being stuck on fails at once (a retry would only get another stuck); when the
deadline passes, whatever has not reported is failed with "deadline". Late results of an
ended cycle are recognised by their cycle id and dropped, so a cycle never hangs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from common.messages import Signal, SymbolResult, SymbolTask
from supervisor.runtime.pool import WorkerHandle, WorkerPool
from supervisor.runtime.serving import connection_lost
from supervisor.trading.risk import RiskDecision
from supervisor.trading.sessions import SessionBook

log = logging.getLogger("supervisor.runtime.cycle")
T = TypeVar("T")

ABANDONED = "abandoned: a stop was asked for"  # a skip, not a failure: the user stopped us
LINK_POLL_S = 0.2  # how often a cycle held for the connection looks whether it is back
MAX_LOST_RUNS = 4  # a symbol runs at most this often in one cycle for lost connections


class SymbolRun(Protocol):
    """One cycle's symbols being run (by the worker pool: CycleRun; in this process:
    symbol_runs.InProcessRun). Every result, a failure's too, is put on ``arrivals`` as it
    is ready and kept in ``results``; ``arrivals.task_done()`` says it was acted on."""

    cycle_id: int
    results: dict[str, SymbolResult]
    arrivals: asyncio.Queue[SymbolResult | None]

    def dispatch(self) -> None: ...

    async def wait(self) -> dict[str, SymbolResult]: ...

    def stop_dispatching(self) -> None: ...

    def unfinished(self) -> list[str]:
        """The symbols handed out or waiting, in that order: what a stop abandons."""
        ...


class CycleRun:
    """One cycle's symbols run by the worker pool (a SymbolRun)."""

    def __init__(
        self,
        cycle_id: int,
        tasks: Sequence[SymbolTask],
        pool: WorkerPool,
        max_concurrent: int,
        deadline_s: float,
        retry_grace_s: float = 0.0,
        link_up: Callable[[], bool] = lambda: True,
    ) -> None:
        self.cycle_id = cycle_id
        self.order = [t.symbol for t in tasks]
        self.pool = pool
        self.max_concurrent = max_concurrent
        self.deadline = time.monotonic() + deadline_s
        self.started = time.monotonic()
        self.pending: deque[SymbolTask] = deque(tasks)
        self.inflight: dict[str, tuple[int, SymbolTask]] = {}
        self.results: dict[str, SymbolResult] = {}
        # every result as it comes (a deadline's failures too), for acting on it at once
        self.arrivals: asyncio.Queue[SymbolResult | None] = asyncio.Queue()
        self.done = asyncio.Event()
        # after a worker death nothing is dispatched for this long, so a second worker that
        # died at the same moment is noticed before a retry could land on it
        self.retry_grace_s = retry_grace_s
        self._holding = 0  # the latest death's token: only its timer ends the hold
        self.link_up = link_up  # the broker's connection: nothing is handed out while down
        self._link_poll: asyncio.TimerHandle | None = None
        self._dispatching = True  # False once stop_dispatching was asked for
        self.lost_runs: dict[str, int] = {}  # symbol -> runs lost to the connection
        if not tasks:
            self.done.set()

    def dispatch(self) -> None:
        """Hand pending symbols to the least busy ready workers, up to the concurrency cap."""
        if self._holding:
            return  # the grace after a death: its timer dispatches
        if self.pending and not self.link_up():
            self._wait_for_link()
            return
        while self.pending and len(self.inflight) < self.max_concurrent:
            workers = self.pool.ready_workers()
            if not workers:
                return  # a respawned worker's WorkerReady calls dispatch again
            worker = min(workers, key=lambda w: len(w.inflight))
            task = self.pending.popleft()
            self.inflight[task.symbol] = (worker.worker_id, task)
            self.pool.send(worker.worker_id, task)  # the pool counts it in the worker's inflight

    def on_result(self, result: SymbolResult) -> None:
        entry = self.inflight.get(result.symbol)
        if result.cycle_id != self.cycle_id or entry is None or entry[0] != result.worker_id:
            # late (an ended cycle) or stale (sent by a worker that died after sending it,
            # whose symbol is already being retried elsewhere)
            log.info(
                "late result for %s of cycle %s from worker %s dropped",
                result.symbol,
                result.cycle_id,
                result.worker_id,
            )
            return
        worker_id, task = self.inflight.pop(result.symbol)
        self.pool.release(worker_id, result.symbol)
        if self._run_again(result, task):
            self.dispatch()
            return
        self.results[result.symbol] = result
        self.arrivals.put_nowait(result)
        self.dispatch()
        self._maybe_done()

    def on_worker_death(self, handle: WorkerHandle) -> None:
        for symbol in sorted(handle.inflight):
            entry = self.inflight.get(symbol)
            if entry is None or entry[0] != handle.worker_id:
                continue
            del self.inflight[symbol]
            task = entry[1]
            if (symbol, task.cycle_id) == (handle.stuck_symbol, handle.stuck_cycle):
                # a retry would only get another worker stuck
                self._fail(symbol, f"worker {handle.worker_id} {handle.killed_for}: killed")
            elif task.attempt == 1:
                log.warning(
                    "retrying %s after worker %s died",
                    symbol,
                    handle.worker_id,
                    extra={"event": "symbol_retry", "symbol": symbol},
                )
                self.pending.appendleft(replace(task, attempt=2))
            else:
                self._fail(symbol, f"worker {handle.worker_id} died (attempt {task.attempt})")
        if self.retry_grace_s > 0:
            token = self._holding = self._holding + 1
            asyncio.get_running_loop().call_later(self.retry_grace_s, self._release, token)
        else:
            self.dispatch()
        self._maybe_done()

    def _run_again(self, result: SymbolResult, task: SymbolTask) -> bool:
        """Whether a symbol the connection failed goes back to the queue (the front: it
        was first in line), for another run once the connection is back."""
        why = result.error if result.error is not None else result.skipped
        if not connection_lost(why) or not self._dispatching:
            return False
        runs = self.lost_runs[result.symbol] = self.lost_runs.get(result.symbol, 0) + 1
        if runs >= MAX_LOST_RUNS or time.monotonic() >= self.deadline:
            return False
        log.warning(
            "%s lost to the connection in cycle %s: run again once it is back",
            result.symbol,
            self.cycle_id,
            extra={"event": "symbol_retry", "symbol": result.symbol, "cause": "connection"},
        )
        self.pending.appendleft(task)
        return True

    def _wait_for_link(self) -> None:
        if self._link_poll is None:
            self._link_poll = asyncio.get_running_loop().call_later(LINK_POLL_S, self._link_looked)

    def _link_looked(self) -> None:
        self._link_poll = None
        if self._dispatching:
            self.dispatch()

    def _release(self, token: int) -> None:
        if token == self._holding:  # a later death holds on with its own timer
            self._holding = 0
            self.dispatch()

    async def wait(self) -> dict[str, SymbolResult]:
        try:
            await asyncio.wait_for(self.done.wait(), max(0.0, self.deadline - time.monotonic()))
        except TimeoutError:
            for symbol in list(self.inflight) + [t.symbol for t in self.pending]:
                self._fail(symbol, "deadline passed before the symbol reported")
            self.pending.clear()
            self._forget_inflight()
        finally:  # ended, or cancelled by a stop: a cycle no longer waited on sends nothing
            self._dispatching = False
            if self._link_poll is not None:
                self._link_poll.cancel()
                self._link_poll = None
        return self.results

    def _forget_inflight(self) -> None:
        for worker_id, task in self.inflight.values():
            self.pool.release(worker_id, task.symbol)
        self.inflight.clear()

    def _fail(self, symbol: str, reason: str) -> None:
        log.error(
            "%s failed in cycle %s: %s",
            symbol,
            self.cycle_id,
            reason,
            extra={"event": "symbol_failed", "symbol": symbol, "cycle": self.cycle_id},
        )
        self.results[symbol] = SymbolResult(self.cycle_id, symbol, worker_id=0, error=reason)
        self.arrivals.put_nowait(self.results[symbol])

    def stop_dispatching(self) -> None:
        """Send nothing more out: what is pending is dropped, what is in flight still ends."""
        self._dispatching = False
        self.pending.clear()
        self._maybe_done()

    def unfinished(self) -> list[str]:
        return [*self.inflight, *(t.symbol for t in self.pending)]

    def _maybe_done(self) -> None:
        if not self.pending and not self.inflight:
            self.done.set()


async def symbol_task(
    cycle_id: int,
    symbol: str,
    now: float,
    sessions: SessionBook,
    whale_last_ts: float | None = None,
) -> SymbolTask:
    """One symbol's task: the exchange's trading day and the symbol's session today, computed
    here in the exchange's zone so that no worker ever needs a zone of its own."""
    session = await sessions.today(symbol, now)
    return SymbolTask(
        cycle_id,
        symbol,
        now,
        sessions.day_of(now),
        whale_last_ts=whale_last_ts,
        session_open_ts=session.open_ts if session else None,
        session_close_ts=session.close_ts if session else None,
    )


async def symbol_tasks(
    cycle_id: int,
    now: float,
    symbols: Sequence[str],
    sessions: SessionBook,
    whale_last: Mapping[str, float],
) -> list[SymbolTask]:
    """The cycle's tasks, each with its symbol's session today and its last whale signal."""
    return [
        await symbol_task(cycle_id, symbol, now, sessions, whale_last.get(symbol))
        for symbol in symbols
    ]


class ActOnArrival:
    """Hands each result to ``act`` as it arrives, one at a time: a symbol's intents are
    judged seconds after its quotes, not when the last of a thousand symbols is in.

    If ``act`` fails (a lost connection, a journal that cannot be written), that is said at
    once, the cycle stops sending symbols out, and ``finish`` raises it; every result not
    acted on is still handed to ``record`` (journaled), in universe order."""

    def __init__(
        self,
        cycle: SymbolRun,
        act: Callable[[SymbolResult], Awaitable[None]],
        record: Callable[[SymbolResult], None],
    ) -> None:
        self.cycle, self.act, self.record = cycle, act, record
        self.seen: set[str] = set()
        self.error: BaseException | None = None
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while (result := await self.cycle.arrivals.get()) is not None:
            try:
                if self.error is None:  # else left for finish() to record
                    await self._act(result)
            finally:  # an in-process run waits for it before its next symbol
                self.cycle.arrivals.task_done()

    async def _act(self, result: SymbolResult) -> None:
        self.seen.add(result.symbol)
        try:
            await self.act(result)
        except Exception as exc:  # noqa: BLE001 - raised again by finish()
            log.error(
                "acting on %s failed, cycle %s stops here: %r",
                result.symbol,
                self.cycle.cycle_id,
                exc,
                extra={"event": "act_failed"},
            )
            self.error = exc
            self.cycle.stop_dispatching()

    async def finish(self, results: Sequence[SymbolResult]) -> None:
        """Wait until every result that arrived was acted on, record the rest of
        ``results``, then raise ``act``'s error if there was one."""
        self.cycle.arrivals.put_nowait(None)
        try:
            await self._task
        finally:
            for result in results:
                if result.symbol not in self.seen:
                    self.record(result)  # abandoned by a stop, or after a failure
        if self.error is not None:
            raise self.error

    async def during(self, waiting: Awaitable[T]) -> T:
        """``waiting``'s result; if it is cancelled or fails, nothing is left acting."""
        try:
            return await waiting
        except BaseException:
            self._task.cancel()
            raise


@dataclass(frozen=True)
class CycleSummary:
    cycle_id: int
    results: tuple[SymbolResult, ...]  # in universe order
    decisions: tuple[RiskDecision, ...]
    seconds: float

    @property
    def failed(self) -> tuple[SymbolResult, ...]:
        return tuple(r for r in self.results if not r.ok)

    def count(self, signal: Signal) -> int:
        return sum(1 for r in self.results if r.ok and r.signal is signal)

    def line(self) -> str:
        ok = len(self.results) - len(self.failed)
        intents = sum(len(r.intents) for r in self.results)
        accepted = sum(1 for d in self.decisions if d.accepted)
        per_symbol = " ".join(f"{r.symbol}={_state(r)}" for r in self.results)
        # skipped: ok but without a decision (no market data, lost connection, a stop): a
        # cycle of skips must not read as a healthy one
        skipped = sum(1 for r in self.results if r.ok and r.skipped)
        return (
            f"cycle {self.cycle_id}: symbols ok {ok}/{len(self.results)} failed "
            f"{len(self.failed)} skipped {skipped} | signals BUY {self.count(Signal.BUY)} SELL "
            f"{self.count(Signal.SELL)} HOLD {self.count(Signal.HOLD)} | intents {intents} "
            f"accepted {accepted} rejected {len(self.decisions) - accepted} | "
            f"{self.seconds:.2f}s | {per_symbol}"
        )


def _state(result: SymbolResult) -> str:
    if not result.ok:
        return "FAILED"
    return "abandoned" if result.skipped == ABANDONED else result.signal.value


def log_result(log: logging.Logger, result: SymbolResult) -> None:
    """One structured event per symbol result: ERROR failed, INFO otherwise."""
    fields = {
        "event": "symbol_result",
        "cycle": result.cycle_id,
        "symbol": result.symbol,
        "signal": result.signal.value,
        "confidence": round(result.confidence, 3),
        "intents": len(result.intents),
        "skipped": result.skipped,
        "reasons": list(result.reasons),
        "worker": result.worker_id,
        "attempt": result.attempt,
        "timings": dict(result.timings),
    }
    if not result.ok:
        log.error("%s failed: %s", result.symbol, result.error, extra=fields)
    elif result.skipped:
        log.info(
            "%s %s skipped: %s", result.symbol, result.signal.value, result.skipped, extra=fields
        )
    else:
        log.info(
            "%s %s (%.2f) %s",
            result.symbol,
            result.signal.value,
            result.confidence,
            "; ".join(result.reasons[:3]),
            extra=fields,
        )
