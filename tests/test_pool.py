"""The worker pool (supervisor/runtime/pool.py): channels no worker can wedge for another."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import time
from typing import Any

import pytest

from common.calendar import nyse
from common.messages import Requests, SymbolResult, SymbolTask, WorkerReady
from supervisor.broker.stub import StubBroker
from supervisor.runtime.pool import WorkerHandle, WorkerPool
from supervisor.runtime.serving import DataService
from tests.conftest import make_settings
from tests.sessions import STUB_SESSION

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KILLS = int(os.environ.get("TEST_POOL_KILLS", "100"))


def kill_soon(pid: int, delay_s: float) -> None:
    time.sleep(delay_s)
    os.kill(pid, signal.SIGKILL)


async def until(condition: Any, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


def stub_task(cycle: int, symbol: str) -> SymbolTask:
    return SymbolTask(cycle, symbol, STUB_SESSION.timestamp(), STUB_SESSION.date())


class Harness:
    """A pool answered by a fake supervisor: requests are served, results and logs counted."""

    def __init__(self, settings: Any) -> None:
        broker = StubBroker(settings.stub, STUB_SESSION.timestamp)
        self.service = DataService(broker, 10.0, nyse(), STUB_SESSION.timestamp)
        self.serving: set[asyncio.Task[None]] = set()
        self.results: list[SymbolResult] = []
        self.logs = 0
        self.got = asyncio.Event()
        self.pool = WorkerPool(settings, self.on_message, self.on_death, self.on_log)

    def on_message(self, message: Any) -> None:
        if isinstance(message, WorkerReady):
            self.pool.mark_ready(message.worker_id)
        elif isinstance(message, SymbolResult):
            self.results.append(message)
            self.got.set()
        else:  # a step's requests: answered the way the supervisor answers them
            task = asyncio.ensure_future(self.serve(message))
            self.serving.add(task)
            task.add_done_callback(self.serving.discard)

    async def serve(self, batch: Requests) -> None:
        self.pool.send(batch.worker_id, await self.service.answer_all(batch.requests))

    def on_log(self, record: logging.LogRecord) -> None:
        self.logs += 1

    def on_death(self, handle: WorkerHandle, failure: str | None) -> None:
        assert failure is None, failure

    async def ready(self) -> list[WorkerHandle]:
        while len(self.pool.ready_workers()) < self.pool.settings.workers.count:
            await asyncio.sleep(0.01)
        return self.pool.ready_workers()

    async def result_from(self, handle: WorkerHandle, cycle: int, timeout_s: float = 30) -> None:
        self.got.clear()
        before = len(self.results)
        self.pool.send(handle.worker_id, stub_task(cycle, "SPY"))
        while not any(r.cycle_id == cycle for r in self.results[before:]):
            self.got.clear()
            await asyncio.wait_for(self.got.wait(), timeout_s)


def test_a_worker_killed_while_writing_never_leaves_the_supervisor_deaf(tmp_path):
    settings = make_settings(
        tmp_path,
        strategy={"name": "tests.strategies:Chatty"},
        workers={"count": 2, "max_respawns_per_minute": 1000},
    )

    async def scenario() -> tuple[int, int, int]:
        harness = Harness(settings)
        harness.pool.start(asyncio.get_running_loop())
        try:
            for cycle in range(1, KILLS + 1):
                victim, witness = await harness.ready()
                # Given the victim in the middle of writing its chatter
                logs = harness.logs
                harness.pool.send(victim.worker_id, stub_task(cycle, "QQQ"))
                await until(lambda logs=logs: harness.logs > logs)
                # When it is killed outright, from outside, a moment later
                await asyncio.to_thread(kill_soon, victim.pid or 0, random.uniform(0, 0.004))
                # Then the other worker is still heard, results and all
                await harness.result_from(witness, 10_000 + cycle)
                await until(lambda v=victim: v.worker_id not in harness.pool.workers)
            return harness.pool.respawns, harness.pool.torn_messages, len(harness.results)
        finally:
            await harness.pool.stop()

    respawns, torn, results = asyncio.run(scenario())
    assert respawns == KILLS and results >= KILLS
    assert torn >= 1  # some kills did land mid-message, and were survived
