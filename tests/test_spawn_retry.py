"""A worker that cannot be started (supervisor/runtime/spawning.py, pool.py's spawn path):
retried with back-off, logged, counted, alerted, its death still reported; never lost."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
from typing import Any

import pytest

from supervisor.runtime.pool import WorkerPool
from supervisor.runtime.spawning import (
    SPAWN_RETRY_FIRST_S,
    SPAWN_RETRY_MAX_S,
    Owed,
    spawn_retry_in,
)
from tests.conftest import make_settings

EMFILE = OSError(errno.EMFILE, "Too many open files")


def test_the_back_off_doubles_from_the_first_wait_and_stops_at_the_cap() -> None:
    waits = [spawn_retry_in(n) for n in range(1, 12)]
    assert waits[:3] == [SPAWN_RETRY_FIRST_S, 2 * SPAWN_RETRY_FIRST_S, 4 * SPAWN_RETRY_FIRST_S]
    assert waits == sorted(waits) and waits[-1] == SPAWN_RETRY_MAX_S
    assert spawn_retry_in(10_000) == SPAWN_RETRY_MAX_S  # no overflow after days of failing
    assert spawn_retry_in(0) == SPAWN_RETRY_FIRST_S


def test_a_streak_of_failures_is_alerted_at_its_first_and_said_when_it_ends() -> None:
    owed = Owed()
    text, wait, first = owed.failed(EMFILE)
    assert first and wait == SPAWN_RETRY_FIRST_S
    assert "Too many open files" in text and "1 worker missing" in text
    text, wait, first = owed.failed(EMFILE)  # a second worker owed, in the same streak
    assert not first and wait == 2 * SPAWN_RETRY_FIRST_S and "2 workers missing" in text
    owed.count -= 1  # its retry
    said = owed.started(7)
    assert said is not None and "worker 7 started after 2 failed attempts" in said
    assert owed.started(8) is None  # no streak: nothing to say
    assert owed.failures == 2 and owed.streak == 0


class Starved:
    """The spawn context, out of descriptors for its next ``pipes`` pipes."""

    def __init__(self, ctx: Any, pipes: int) -> None:
        self.ctx, self.pipes = ctx, pipes

    def Pipe(self, duplex: bool = True) -> Any:  # noqa: N802 - multiprocessing's name
        if self.pipes:
            self.pipes -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return self.ctx.Pipe(duplex)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ctx, name)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_killed_worker_that_cannot_be_respawned_is_retried_until_it_is(tmp_path, caplog):
    settings = make_settings(tmp_path, workers={"count": 1})
    deaths: list[tuple[int, str | None]] = []
    alerts: list[tuple[str, str]] = []
    unhandled: list[dict[str, Any]] = []

    async def scenario() -> WorkerPool:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
        pool = WorkerPool(
            settings,
            lambda m: pool.mark_ready(m.worker_id),
            lambda h, f: deaths.append((h.worker_id, f)),
            lambda r: None,
            alert=lambda kind, text: alerts.append((kind, text)),
        )
        pool.start(loop)
        try:
            await pool.wait_ready(60)
            (victim,) = pool.workers.values()
            # Given no descriptor for the next three attempts (a flood at the process's limit)
            pool.ctx, pool.owed = Starved(pool.ctx, 3), Owed(first_s=0.05)
            # When its only worker is killed
            os.kill(victim.pid or 0, signal.SIGKILL)
            # Then its death is reported at once, and a new worker comes up once it can
            while not any(
                w.worker_id != victim.worker_id and w.ready for w in pool.workers.values()
            ):
                await asyncio.sleep(0.02)
            return pool
        finally:
            await pool.stop()

    with caplog.at_level(logging.INFO, logger="supervisor.runtime.pool"):
        pool = asyncio.run(scenario())
    assert unhandled == []  # nothing left to asyncio's handler (before: the spawn's OSError)
    assert deaths == [(1, None)] and pool.respawns == 1
    assert pool.owed.failures == 3 and pool.owed.count == 0
    failed = [r for r in caplog.records if getattr(r, "event", "") == "worker_spawn_failed"]
    assert len(failed) == 3 and all(r.levelno == logging.ERROR and not r.exc_info for r in failed)
    assert [kind for kind, _ in alerts] == ["worker_spawn", "worker_spawn"]
    assert "could not be started (Too many open files" in alerts[0][1]
    assert "started after 3 failed attempts; 0 still missing" in alerts[1][1]


def test_a_spawn_that_fails_half_way_closes_what_it_opened(tmp_path) -> None:
    settings = make_settings(tmp_path, workers={"count": 1})
    opened: list[Any] = []

    class SecondPipeFails(Starved):
        def Pipe(self, duplex: bool = True) -> Any:  # noqa: N802
            if opened:
                raise OSError(errno.EMFILE, "Too many open files")
            ends = self.ctx.Pipe(duplex)
            opened.extend(ends)
            return ends

    async def scenario() -> WorkerPool:
        pool = WorkerPool(settings, print, lambda h, f: None, lambda r: None)
        pool.ctx = SecondPipeFails(pool.ctx, 0)
        pool._loop = asyncio.get_running_loop()
        assert pool._spawn() is None  # owed, not raised
        await pool.stop()
        return pool

    pool = asyncio.run(scenario())
    assert pool.owed.count == 1 and pool.workers == {}
    assert len(opened) == 2 and all(end.closed for end in opened)
