"""What the supervisor sends a worker in one pass of its event loop goes as one message."""

from __future__ import annotations

import asyncio
import queue
from pathlib import Path
from typing import Any

import pytest

from common.calendar import trading_day
from common.messages import Bundle, SymbolResult, SymbolTask, unbundled
from supervisor.runtime.cycle import CycleRun
from supervisor.runtime.pool import WorkerHandle, WorkerPool
from tests.conftest import make_settings

pytestmark = pytest.mark.timeout(30)

NOW = 1_767_886_200.0  # 2026-01-08 10:30 ET


def test_messages_due_together_go_as_one_bundle_in_order_and_a_lone_one_as_itself(tmp_path):
    pool = WorkerPool(make_settings(tmp_path), lambda m: None, lambda h, f: None, lambda r: None)
    inbox: queue.Queue[Any] = queue.Queue()
    seen_before_the_pass_ended: list[bool] = []

    async def scenario() -> None:
        # Given a worker's handle (no process: only its inbox is used here)
        pool._loop = asyncio.get_running_loop()
        pool.workers[1] = WorkerHandle(1, None, inbox, None, None, None)  # type: ignore[arg-type]
        # When three messages are sent in one pass of the loop, then one in the next
        assert all(pool.send(1, m) for m in ("task SPY", "task QQQ", "replies 7"))
        seen_before_the_pass_ended.append(inbox.empty())
        await asyncio.sleep(0)
        assert pool.send(1, "replies 8")
        await asyncio.sleep(0)

    asyncio.run(scenario())
    # Then nothing went out before the pass ended, and the three went as one, in order
    assert seen_before_the_pass_ended == [True]
    first, second = inbox.get_nowait(), inbox.get_nowait()
    assert first == Bundle(("task SPY", "task QQQ", "replies 7"))
    assert second == "replies 8" and unbundled(second) == ("replies 8",)
    assert inbox.empty()
    # and a worker that is gone is told so, nothing queued for it
    assert pool.send(99, "late") is False


class _Alive:
    """A worker's process that is alive (none is started here)."""

    def is_alive(self) -> bool:
        return True


def test_a_workers_inflight_is_the_pools_to_write_and_a_cycle_asks(tmp_path: Path) -> None:
    # Given a real pool's worker (no process) and a cycle run over the pool
    seen_at_death: list[set[str]] = []
    pool = WorkerPool(make_settings(tmp_path), lambda m: None, lambda h, f: None, lambda r: None)
    handle = WorkerHandle(1, _Alive(), queue.Queue(), None, None, None)  # type: ignore[arg-type]
    handle.ready = True

    async def scenario() -> None:
        pool._loop = asyncio.get_running_loop()
        pool.workers[1] = handle
        day = trading_day(NOW)
        tasks = [SymbolTask(5, s, NOW, day) for s in ("SPY", "QQQ")]
        run = CycleRun(5, tasks, pool, max_concurrent=2, deadline_s=30.0)
        # When the cycle hands both out: the pool counted them in the worker's inflight
        run.dispatch()
        assert handle.inflight == {"SPY", "QQQ"}
        # and one result comes back: the cycle asked the pool to release it
        run.on_result(SymbolResult(5, "SPY", 1))
        assert handle.inflight == {"QQQ"}
        # and the worker dies: the cycle is told with QQQ still there, then the pool forgets it
        pool.workers.pop(1)

        def on_death(dead: WorkerHandle, failure: str | None) -> None:
            seen_at_death.append(set(dead.inflight))
            run.on_worker_death(dead)

        pool.on_death = on_death
        pool._died(handle, None)
        assert seen_at_death == [{"QQQ"}] and handle.inflight == set()
        assert list(run.pending) and run.pending[0].attempt == 2  # retried once elsewhere

    asyncio.run(scenario())
