"""One cycle against an in-memory pool: the concurrency cap, retries, the deadline, the summary."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from common.calendar import trading_day
from common.messages import (
    OptionContract,
    OrderIntent,
    Right,
    Signal,
    SymbolResult,
    SymbolTask,
)
from supervisor.runtime.cycle import ABANDONED, ActOnArrival, CycleRun, CycleSummary
from supervisor.runtime.pool import WorkerHandle, WorkerPool
from supervisor.trading.risk import RiskDecision

pytestmark = pytest.mark.timeout(30)

CYCLE = 3
NOW = 1_767_886_200.0  # 2026-01-08 10:30 ET


# --- an in-memory pool -------------------------------------------------------------------------


@dataclass
class FakeWorker:
    worker_id: int
    inflight: set[str] = field(default_factory=set)
    ready: bool = True
    killed_for: str | None = None  # set as the pool's watchdog does for a stuck worker
    stuck_symbol: str | None = None
    stuck_cycle: int = 0


class FakePool:
    """What CycleRun uses of WorkerPool: workers, ready_workers(), send(), release(); sends
    are recorded, and a task sent is in its worker's inflight until released, as in the pool."""

    def __init__(self, count: int) -> None:
        self.workers: dict[int, FakeWorker] = {}
        self.sent: list[tuple[int, Any]] = []
        self._next_id = 1
        for _ in range(count):
            self.add()

    def add(self, ready: bool = True) -> FakeWorker:
        worker = FakeWorker(self._next_id, ready=ready)
        self.workers[worker.worker_id] = worker
        self._next_id += 1
        return worker

    def kill(self, worker_id: int) -> FakeWorker:
        """Like the real pool's reap: the handle leaves ``workers`` before on_death runs."""
        return self.workers.pop(worker_id)

    def ready_workers(self) -> list[FakeWorker]:
        return [w for w in self.workers.values() if w.ready]

    def send(self, worker_id: int, message: Any) -> bool:
        if worker_id not in self.workers:
            return False
        self.sent.append((worker_id, message))
        if isinstance(message, SymbolTask):
            self.workers[worker_id].inflight.add(message.symbol)
        return True

    def release(self, worker_id: int, symbol: str) -> None:
        if worker_id in self.workers:
            self.workers[worker_id].inflight.discard(symbol)

    def tasks_sent(self) -> list[tuple[int, str, int]]:
        return [(wid, m.symbol, m.attempt) for wid, m in self.sent if isinstance(m, SymbolTask)]


def tasks(*symbols: str, cycle_id: int = CYCLE) -> list[SymbolTask]:
    return [SymbolTask(cycle_id, s, NOW, trading_day(NOW)) for s in symbols]


def new_run(
    pool: FakePool, symbols: list[SymbolTask], max_concurrent: int, deadline_s: float = 30.0
) -> CycleRun:
    return CycleRun(CYCLE, symbols, cast(WorkerPool, pool), max_concurrent, deadline_s)


def result(
    symbol: str, worker_id: int, cycle_id: int = CYCLE, signal: Signal = Signal.HOLD
) -> SymbolResult:
    return SymbolResult(cycle_id, symbol, worker_id, signal=signal)


def die(run: CycleRun, pool: FakePool, worker_id: int) -> None:
    run.on_worker_death(cast(WorkerHandle, pool.kill(worker_id)))


def run_async(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


# --- dispatch ----------------------------------------------------------------------------------


def test_never_more_than_max_concurrent_in_flight() -> None:
    async def scenario() -> None:
        # Given five symbols, three idle workers and a cap of two
        pool = FakePool(3)
        run = new_run(pool, tasks("SPY", "QQQ", "AAPL", "IWM", "MSFT"), max_concurrent=2)

        # When the cycle starts
        run.dispatch()

        # Then only two are sent
        assert [s for _, s, _ in pool.tasks_sent()] == ["SPY", "QQQ"]
        # ... and as each result comes in, exactly one more goes out, never above two
        while run.inflight:
            busy = sum(len(w.inflight) for w in pool.workers.values())
            assert len(run.inflight) <= 2 and busy <= 2
            symbol, (worker_id, _) = next(iter(run.inflight.items()))
            run.on_result(result(symbol, worker_id))
        assert len(pool.tasks_sent()) == 5
        assert set(run.results) == {"SPY", "QQQ", "AAPL", "IWM", "MSFT"}
        assert run.done.is_set()
        assert all(not w.inflight for w in pool.workers.values())
        assert set(await run.wait()) == {"SPY", "QQQ", "AAPL", "IWM", "MSFT"}

    run_async(scenario)


def test_tasks_go_to_the_least_busy_worker() -> None:
    async def scenario() -> None:
        # Given worker 1 already busy with one symbol and worker 2 idle
        pool = FakePool(2)
        pool.workers[1].inflight.add("BUSY")
        run = new_run(pool, tasks("SPY", "QQQ", "AAPL"), max_concurrent=3)

        run.dispatch()

        # SPY -> 2 (0 vs 1); QQQ: both hold one -> the first, 1; AAPL: 1 holds 2, 2 holds 1 -> 2
        assert pool.tasks_sent() == [(2, "SPY", 1), (1, "QQQ", 1), (2, "AAPL", 1)]
        assert pool.workers[1].inflight == {"BUSY", "QQQ"}
        assert pool.workers[2].inflight == {"SPY", "AAPL"}

    run_async(scenario)


def test_workers_not_ready_get_nothing() -> None:
    async def scenario() -> None:
        pool = FakePool(0)
        starting = pool.add(ready=False)
        run = new_run(pool, tasks("SPY"), max_concurrent=2)

        run.dispatch()
        assert pool.sent == []

        # When the worker reports ready, the supervisor dispatches again
        starting.ready = True
        run.dispatch()
        assert pool.tasks_sent() == [(starting.worker_id, "SPY", 1)]

    run_async(scenario)


def test_a_result_frees_its_slot_and_dispatches_the_next() -> None:
    async def scenario() -> None:
        pool = FakePool(2)
        run = new_run(pool, tasks("SPY", "QQQ", "AAPL"), max_concurrent=1)
        run.dispatch()
        assert pool.tasks_sent() == [(1, "SPY", 1)]

        # When SPY reports
        run.on_result(result("SPY", 1, signal=Signal.BUY))

        # Then worker 1 is free again and QQQ goes out (both idle: the first one)
        assert pool.workers[1].inflight == {"QQQ"}
        assert pool.tasks_sent()[1:] == [(1, "QQQ", 1)]
        assert run.results["SPY"].signal is Signal.BUY
        assert not run.done.is_set()

    run_async(scenario)


def test_an_empty_task_list_is_done_at_once() -> None:
    async def scenario() -> None:
        pool = FakePool(2)
        run = new_run(pool, [], max_concurrent=2)
        assert run.done.is_set()
        run.dispatch()
        assert pool.sent == []
        assert await run.wait() == {}

    run_async(scenario)


# --- worker deaths -----------------------------------------------------------------------------


def test_the_symbol_a_worker_was_stuck_on_fails_and_its_others_are_retried() -> None:
    async def scenario() -> None:
        # Given SPY and AAPL on worker 1, QQQ on worker 2
        pool = FakePool(2)
        run = new_run(pool, tasks("SPY", "QQQ", "AAPL"), max_concurrent=3)
        run.dispatch()
        assert pool.workers[1].inflight == {"SPY", "AAPL"}
        # When the watchdog kills worker 1 for being stuck on this cycle's SPY
        worker = pool.workers[1]
        worker.killed_for, worker.stuck_symbol, worker.stuck_cycle = "stuck", "SPY", CYCLE
        die(run, pool, 1)
        # Then SPY fails at once, never retried; AAPL goes to worker 2 as attempt 2
        spy = run.results["SPY"]
        assert not spy.ok and spy.error is not None and "stuck" in spy.error
        assert pool.tasks_sent()[3:] == [(2, "AAPL", 2)]

    run_async(scenario)


def test_a_later_cycles_same_symbol_is_not_the_one_a_worker_was_stuck_on() -> None:
    async def scenario() -> None:
        pool = FakePool(2)
        run = new_run(pool, tasks("SPY"), max_concurrent=1)
        run.dispatch()
        worker = pool.workers[1]  # stuck on SPY of an earlier cycle (its deadline passed)
        worker.killed_for, worker.stuck_symbol, worker.stuck_cycle = "stuck", "SPY", CYCLE - 1
        die(run, pool, 1)
        assert "SPY" not in run.results and pool.tasks_sent()[1:] == [(2, "SPY", 2)]

    run_async(scenario)


def test_a_dead_workers_symbol_is_retried_once_then_failed() -> None:
    async def scenario() -> None:
        # Given SPY on worker 1 and QQQ on worker 2
        pool = FakePool(2)
        run = new_run(pool, tasks("SPY", "QQQ"), max_concurrent=2)
        run.dispatch()
        assert pool.tasks_sent() == [(1, "SPY", 1), (2, "QQQ", 1)]

        # When worker 1 dies, SPY goes to the surviving worker as attempt 2
        die(run, pool, 1)
        assert pool.tasks_sent()[2:] == [(2, "SPY", 2)]
        assert pool.workers[2].inflight == {"SPY", "QQQ"}
        assert "SPY" not in run.results

        # When worker 2 dies too: QQQ (attempt 1) is retried, SPY (attempt 2) is failed
        die(run, pool, 2)
        spy = run.results["SPY"]
        assert not spy.ok
        assert spy.error is not None
        assert "died" in spy.error and "attempt 2" in spy.error
        assert "QQQ" not in run.results
        assert [t.symbol for t in run.pending] == ["QQQ"]
        assert not run.done.is_set()

        # When a respawned worker comes up, QQQ goes to it as attempt 2 and can finish
        fresh = pool.add()
        run.dispatch()
        assert pool.tasks_sent()[-1] == (fresh.worker_id, "QQQ", 2)
        run.on_result(result("QQQ", fresh.worker_id))
        assert run.done.is_set()
        results = await run.wait()
        assert results["QQQ"].ok and not results["SPY"].ok

    run_async(scenario)


def test_death_of_an_idle_worker_changes_nothing() -> None:
    async def scenario() -> None:
        pool = FakePool(2)
        run = new_run(pool, tasks("SPY"), max_concurrent=2)
        run.dispatch()
        die(run, pool, 2)  # worker 2 held nothing
        assert pool.tasks_sent() == [(1, "SPY", 1)]
        assert run.inflight["SPY"][0] == 1
        assert run.results == {}

    run_async(scenario)


def test_the_last_symbol_failing_ends_the_cycle() -> None:
    async def scenario() -> None:
        pool = FakePool(1)
        run = new_run(pool, tasks("SPY"), max_concurrent=1)
        run.dispatch()
        die(run, pool, 1)  # attempt 1 -> waits for a worker
        assert not run.done.is_set()
        pool.add()
        run.dispatch()
        die(run, pool, 2)  # attempt 2 -> failed
        assert run.done.is_set()
        assert not run.results["SPY"].ok

    run_async(scenario)


def test_a_dead_workers_result_does_not_free_the_retrys_worker() -> None:
    async def scenario() -> None:
        pool = FakePool(2)
        run = new_run(pool, tasks("SPY", "QQQ"), max_concurrent=1)
        run.dispatch()
        die(run, pool, 1)  # SPY -> worker 2, attempt 2
        assert run.inflight["SPY"][0] == 2

        # When the result worker 1 put on the outbox before it died arrives
        run.on_result(result("SPY", worker_id=1))

        # Then worker 2 is still counted busy with SPY, and QQQ waits for the slot
        assert "SPY" in pool.workers[2].inflight
        assert [s for _, s, _ in pool.tasks_sent()] == ["SPY", "SPY"]

    run_async(scenario)


# --- late results and the deadline -------------------------------------------------------------


def test_a_result_of_another_cycle_is_dropped() -> None:
    async def scenario() -> None:
        pool = FakePool(1)
        run = new_run(pool, tasks("SPY", "QQQ"), max_concurrent=1)
        run.dispatch()

        # When a result for SPY from the previous cycle arrives
        run.on_result(result("SPY", 1, cycle_id=CYCLE - 1, signal=Signal.BUY))

        # Then nothing moves: SPY is still in flight, QQQ still waits
        assert run.results == {}
        assert "SPY" in run.inflight and pool.workers[1].inflight == {"SPY"}
        assert len(pool.sent) == 1

    run_async(scenario)


def test_a_second_result_for_the_same_symbol_is_dropped() -> None:
    async def scenario() -> None:
        pool = FakePool(1)
        run = new_run(pool, tasks("SPY", "QQQ"), max_concurrent=1)
        run.dispatch()
        run.on_result(result("SPY", 1, signal=Signal.BUY))
        run.on_result(result("SPY", 1, signal=Signal.SELL))
        assert run.results["SPY"].signal is Signal.BUY
        assert "QQQ" in run.inflight

    run_async(scenario)


def test_the_deadline_fails_what_is_left_and_wait_returns() -> None:
    async def scenario() -> None:
        # Given three symbols, one slot, and a deadline already reached
        pool = FakePool(2)
        run = new_run(pool, tasks("SPY", "QQQ", "AAPL"), max_concurrent=1, deadline_s=0.0)
        run.dispatch()
        run.on_result(result("SPY", 1, signal=Signal.SELL))  # SPY made it; QQQ in flight

        # When the cycle is awaited
        results = await run.wait()

        # Then SPY keeps its result and the in-flight and never-sent symbols fail "deadline"
        assert results["SPY"].ok and results["SPY"].signal is Signal.SELL
        for symbol in ("QQQ", "AAPL"):
            assert not results[symbol].ok
            assert "deadline" in (results[symbol].error or "")
            assert results[symbol].cycle_id == CYCLE
        assert not run.pending and not run.inflight
        # ... and no worker is left counting a symbol of the ended cycle
        assert all(not w.inflight for w in pool.workers.values())

        # A result that straggles in afterwards does not overwrite the failure
        run.on_result(result("QQQ", 1, signal=Signal.BUY))
        assert not run.results["QQQ"].ok

    run_async(scenario)


def test_each_result_is_acted_on_as_it_arrives_not_at_the_cycle_end() -> None:
    async def scenario() -> None:
        # Given a cycle of three symbols, one at a time, and a desk that notes what it saw
        pool = FakePool(1)
        run = new_run(pool, tasks("SPY", "QQQ", "AAPL"), max_concurrent=1, deadline_s=0.5)
        seen: list[tuple[str, list[str]]] = []
        recorded: list[str] = []

        async def act(r: SymbolResult) -> None:
            seen.append((r.symbol, sorted(run.results)))  # what had arrived by then
            await asyncio.sleep(0)

        acting = ActOnArrival(run, act, lambda r: recorded.append(r.symbol))
        run.dispatch()
        # When SPY reports, then (later) QQQ, and AAPL never does
        run.on_result(result("SPY", 1, signal=Signal.BUY))
        await asyncio.sleep(0.01)
        assert seen == [("SPY", ["SPY"])]  # SPY acted on before QQQ was even sent for
        run.on_result(result("QQQ", 1))
        results = await acting.during(run.wait())
        await acting.finish(list(results.values()))
        # Then each was acted on in arrival order, the deadline's failure too, and none
        # needed recording apart
        assert [symbol for symbol, _ in seen] == ["SPY", "QQQ", "AAPL"]
        assert seen[1] == ("QQQ", ["QQQ", "SPY"])
        assert acting.seen == {"SPY", "QQQ", "AAPL"} and recorded == []

    run_async(scenario)


def test_a_failure_while_acting_stops_the_cycle_and_loses_no_signal() -> None:
    async def scenario() -> None:
        # Given three symbols in flight one at a time, and a desk whose first call fails
        pool = FakePool(1)
        run = new_run(pool, tasks("SPY", "QQQ", "AAPL"), max_concurrent=1)
        recorded: list[str] = []

        async def act(r: SymbolResult) -> None:
            raise OSError("disk full")

        acting = ActOnArrival(run, act, lambda r: recorded.append(r.symbol))
        run.dispatch()
        # When SPY's result fails to be acted on
        run.on_result(result("SPY", 1))
        await asyncio.sleep(0.01)
        # Then nothing more is sent out (QQQ had gone with SPY's slot): the cycle ends with
        # what is in flight
        assert pool.tasks_sent() == [(1, "SPY", 1), (1, "QQQ", 1)] and not run.pending
        run.on_result(result("QQQ", 1))
        results = await acting.during(run.wait())
        assert run.done.is_set() and sorted(results) == ["QQQ", "SPY"]
        # and finishing raises the error, QQQ (never acted on) journaled first; SPY was
        # handed to act, which journals first, so not twice
        with pytest.raises(OSError, match="disk full"):
            await acting.finish(list(results.values()))
        assert recorded == ["QQQ"]

    run_async(scenario)


def test_a_cancelled_cycle_leaves_nothing_acting() -> None:
    async def scenario() -> None:
        pool = FakePool(1)
        run = new_run(pool, tasks("SPY"), max_concurrent=1)

        async def act(r: SymbolResult) -> None:
            await asyncio.sleep(0)

        acting = ActOnArrival(run, act, lambda r: None)
        waiting = asyncio.ensure_future(acting.during(run.wait()))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.sleep(0)
        assert acting._task.cancelled()

    run_async(scenario)


def test_the_deadline_with_no_ready_worker_fails_everything() -> None:
    async def scenario() -> None:
        pool = FakePool(0)
        run = new_run(pool, tasks("SPY", "QQQ"), max_concurrent=2, deadline_s=0.01)
        run.dispatch()
        results = await run.wait()
        assert sorted(results) == ["QQQ", "SPY"]
        assert all("deadline" in (r.error or "") for r in results.values())

    run_async(scenario)


# --- the summary line --------------------------------------------------------------------------


def _intent(symbol: str, n: int) -> OrderIntent:
    contract = OptionContract(symbol, "20260109", 100.0 + n, Right.CALL)
    return OrderIntent(
        f"{symbol}-{n}", CYCLE, symbol, contract, Signal.BUY, 1.0, 1.5, 0.7, 1.0, 0.5, ()
    )


def test_summary_line_counts_by_hand() -> None:
    # Given five symbols: two with signals and intents, one HOLD, one skipped HOLD and one
    # failure whose signal field says BUY (a failed symbol must count as failed, not as BUY)
    results = (
        SymbolResult(CYCLE, "SPY", 1, Signal.BUY, intents=(_intent("SPY", 1), _intent("SPY", 2))),
        SymbolResult(CYCLE, "QQQ", 2, Signal.SELL, intents=(_intent("QQQ", 1),)),
        SymbolResult(CYCLE, "AAPL", 1, Signal.HOLD),
        SymbolResult(CYCLE, "IWM", 0, Signal.BUY, error="worker 2 died (attempt 2)"),
        SymbolResult(CYCLE, "MSFT", 2, Signal.HOLD, skipped="not enough bars"),
    )
    decisions = (
        RiskDecision("SPY-1", True, 3, "ok", "3 contracts"),
        RiskDecision("SPY-2", False, 0, "max_orders_per_cycle", "5 orders already"),
        RiskDecision("QQQ-1", True, 1, "ok", "1 contracts"),
    )
    summary = CycleSummary(CYCLE, results, decisions, seconds=1.5)

    # Then: ok 4 of 5, failed 1, skipped 1 (MSFT); BUY 1 (IWM does not count), SELL 1,
    # HOLD 2 (AAPL, MSFT); intents 2 + 1 = 3; accepted 2, rejected 1
    assert summary.line() == (
        "cycle 3: symbols ok 4/5 failed 1 skipped 1 | signals BUY 1 SELL 1 HOLD 2 | intents 3 "
        "accepted 2 rejected 1 | 1.50s | SPY=BUY QQQ=SELL AAPL=HOLD IWM=FAILED MSFT=HOLD"
    )
    assert [r.symbol for r in summary.failed] == ["IWM"]
    assert summary.count(Signal.BUY) == 1


def test_summary_of_an_empty_cycle() -> None:
    summary = CycleSummary(9, (), (), seconds=0.0)
    assert summary.line().startswith(
        "cycle 9: symbols ok 0/0 failed 0 skipped 0 | signals BUY 0 SELL 0 HOLD 0 | intents 0 "
        "accepted 0 rejected 0 | 0.00s"
    )


def test_a_stop_that_was_asked_for_is_abandoned_not_failed() -> None:
    results = (
        SymbolResult(CYCLE, "SPY", 1, Signal.HOLD),
        SymbolResult(CYCLE, "QQQ", 0, skipped=ABANDONED),
    )
    line = CycleSummary(CYCLE, results, (), seconds=0.2).line()
    assert "symbols ok 2/2 failed 0 skipped 1" in line
    assert line.endswith("SPY=HOLD QQQ=abandoned")
