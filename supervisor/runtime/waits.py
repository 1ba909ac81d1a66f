"""Waits that a stop cuts short: a signal is honoured at once, never waited out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

log = logging.getLogger("supervisor.runtime.loop")


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Wall-clock wait that a stop cuts short (the market clock may be simulated)."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def unless_stopped(stop: asyncio.Event, step: Awaitable[Any]) -> bool:
    """Await ``step`` unless a stop comes first (then it is cancelled): False if so. A
    connect to a gateway that does not answer is not waited out after SIGTERM."""
    task = asyncio.ensure_future(step)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task.done():
        task.result()
        return True
    while not task.done():
        # again and again: Python 3.11's wait_for can swallow a cancel that lands as its
        # inner step completes (ib_insync's connect then waits out its whole timeout)
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
    log.info("stopped while starting", extra={"event": "stopped_starting"})
    return False
