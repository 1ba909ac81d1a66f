"""A lost connection costs a cycle time, not symbols: nothing is handed out while the broker
is down, and a symbol that failed because the connection was lost runs again once it is
back, while the deadline allows (supervisor/runtime/cycle.py, supervisor/runtime/serving.py)."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from common.calendar import nyse
from common.messages import QuoteRequest, SymbolResult
from supervisor.broker.base import SymbolDataError
from supervisor.runtime.cycle import LINK_POLL_S, MAX_LOST_RUNS, CycleRun
from supervisor.runtime.pool import WorkerPool
from supervisor.runtime.serving import DataService, SymbolBackoff, connection_lost
from tests.test_cycle import CYCLE, FakePool, result, run_async, tasks

pytestmark = pytest.mark.timeout(30)

LOST = "market data: ConnectionLost: quote SPY: connection lost"


class Link:
    def __init__(self) -> None:
        self.up = True

    def __call__(self) -> bool:
        return self.up


def new_run(
    pool: FakePool,
    symbols: list[str],
    link: Link,
    max_concurrent: int = 2,
    deadline_s: float = 30.0,
) -> CycleRun:
    return CycleRun(
        CYCLE, tasks(*symbols), cast(WorkerPool, pool), max_concurrent, deadline_s, link_up=link
    )


def lost(symbol: str, worker_id: int, skipped: bool = False) -> SymbolResult:
    if skipped:  # the option side turns a failed chain into a skip
        return SymbolResult(CYCLE, symbol, worker_id, skipped=f"chain: {LOST}")
    return SymbolResult(CYCLE, symbol, worker_id, error=LOST)


def test_nothing_is_handed_out_while_the_connection_is_down() -> None:
    async def scenario() -> None:
        # Given a cycle whose broker is reconnecting
        pool, link = FakePool(2), Link()
        link.up = False
        run = new_run(pool, ["SPY", "QQQ"], link)
        run.dispatch()
        await asyncio.sleep(LINK_POLL_S * 2)
        assert pool.tasks_sent() == [] and not run.done.is_set()
        # When the connection is back, the cycle notices by itself and hands them out
        link.up = True
        await asyncio.sleep(LINK_POLL_S * 2)
        assert [s for _, s, _ in pool.tasks_sent()] == ["SPY", "QQQ"]
        run.on_result(result("SPY", 1))
        run.on_result(result("QQQ", 2))
        assert (await run.wait())["SPY"].ok

    run_async(scenario)


def test_a_symbol_lost_to_the_connection_runs_again_once_it_is_back() -> None:
    async def scenario() -> None:
        # Given SPY and QQQ in flight when the connection drops
        pool, link = FakePool(2), Link()
        run = new_run(pool, ["SPY", "QQQ", "AAPL"], link)
        run.dispatch()
        link.up = False
        # When both fail with ConnectionLost (one as a failure, one as a skip)
        run.on_result(lost("SPY", 1))
        run.on_result(lost("QQQ", 2, skipped=True))
        # Then neither is a result, nothing goes out while the link is down, and the
        # two lost ones are first in line, in their order
        assert run.results == {} and len(pool.tasks_sent()) == 2
        assert [t.symbol for t in run.pending] == ["QQQ", "SPY", "AAPL"]
        # When the link is back they run again (the worker-death attempt count untouched)
        link.up = True
        await asyncio.sleep(LINK_POLL_S * 2)
        assert pool.tasks_sent()[2:] == [(1, "QQQ", 1), (2, "SPY", 1)]
        for symbol, worker in (("QQQ", 1), ("SPY", 2)):
            run.on_result(result(symbol, worker))
        run.on_result(result("AAPL", 1))
        results = await run.wait()
        assert all(r.ok for r in results.values()) and run.lost_runs == {"SPY": 1, "QQQ": 1}

    run_async(scenario)


def test_a_symbol_lost_again_and_again_fails_in_the_end() -> None:
    async def scenario() -> None:
        pool, link = FakePool(1), Link()
        run = new_run(pool, ["SPY"], link)
        run.dispatch()
        for _ in range(MAX_LOST_RUNS - 1):
            run.on_result(lost("SPY", 1))
            assert "SPY" not in run.results
        run.on_result(lost("SPY", 1))
        assert run.results["SPY"].error == LOST and run.done.is_set()
        assert len(pool.tasks_sent()) == MAX_LOST_RUNS

    run_async(scenario)


def test_no_run_again_after_the_deadline_or_a_stop() -> None:
    async def scenario() -> None:
        pool, link = FakePool(2), Link()
        late = new_run(pool, ["SPY"], link, deadline_s=0.0)
        late.dispatch()
        late.on_result(lost("SPY", 1))
        assert late.results["SPY"].error == LOST
        stopped = new_run(pool, ["QQQ"], link)
        stopped.dispatch()
        stopped.stop_dispatching()
        stopped.on_result(lost("QQQ", pool.tasks_sent()[-1][0]))
        assert stopped.results["QQQ"].error == LOST and not stopped.pending

    run_async(scenario)


def test_the_deadline_fails_what_waited_for_the_connection() -> None:
    async def scenario() -> None:
        pool, link = FakePool(1), Link()
        link.up = False
        run = new_run(pool, ["SPY"], link, deadline_s=LINK_POLL_S * 1.5)
        run.dispatch()
        results = await run.wait()
        assert "deadline" in (results["SPY"].error or "") and pool.tasks_sent() == []
        link.up = True
        await asyncio.sleep(LINK_POLL_S * 2)  # an ended cycle hands nothing out
        assert pool.tasks_sent() == []

    run_async(scenario)


def test_other_failures_are_not_runs_again() -> None:
    assert connection_lost(LOST) and connection_lost(f"chain: {LOST}")
    assert not connection_lost("market data: SymbolDataError: quote SPY: error 200")
    assert not connection_lost(None)


# --- serving: what a silent gateway timed out is not the symbol's -----------------------------


class DownBroker:
    name = "down"

    def __init__(self, fail_with: Exception) -> None:
        self.connected = True
        self.fail_with = fail_with

    def is_connected(self) -> bool:
        return self.connected

    async def quote(self, symbol: str) -> None:
        self.connected = False  # the link gave the silent gateway up meanwhile
        raise self.fail_with


@pytest.mark.parametrize("failure", [SymbolDataError("quote SPY: no answer within 15s"), None])
def test_a_timeout_while_the_connection_went_down_is_not_charged(failure: Exception | None) -> None:
    async def scenario() -> None:
        broker = DownBroker(failure or TimeoutError())
        service = DataService(
            broker,  # type: ignore[arg-type]
            5.0,
            nyse(),
            lambda: 0.0,
            backoff=SymbolBackoff(after=1),
        )
        reply = await service.answer(QuoteRequest(1, 1, "SPY"))
        # Then the reply says the connection failed, the symbol does not rest, and the
        # cycle will run it again
        assert connection_lost(reply.error)
        assert service.backoff.resting("SPY") == 0 and service.backoff.failures == {}

    asyncio.run(scenario())


def test_a_timeout_on_a_live_connection_is_still_the_symbols() -> None:
    class UpBroker(DownBroker):
        async def quote(self, symbol: str) -> None:
            raise self.fail_with  # and the connection stays up

    async def scenario() -> None:
        broker = UpBroker(SymbolDataError("quote SPY: no answer within 15s"))
        service = DataService(
            broker,  # type: ignore[arg-type]
            5.0,
            nyse(),
            lambda: 0.0,
            backoff=SymbolBackoff(after=1),
        )
        reply = await service.answer(QuoteRequest(1, 1, "SPY"))
        assert not connection_lost(reply.error) and service.backoff.resting("SPY") > 0

    asyncio.run(scenario())
