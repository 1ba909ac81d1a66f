"""What the supervisor sends a worker in one pass of its event loop goes as one message."""

from __future__ import annotations

import asyncio
import queue
from typing import Any

import pytest

from common.messages import Bundle, unbundled
from supervisor.runtime.pool import WorkerHandle, WorkerPool
from tests.conftest import make_settings

pytestmark = pytest.mark.timeout(30)


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
