"""Clocks: wall time for real runs, a simulated one that replays a session without waiting.

Deadlines and durations always use ``time.monotonic()``; a clock only says what time the
market thinks it is and how to wait for the next cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Epoch seconds."""
        ...

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        """Wait ``seconds`` of this clock's time, or until ``wake`` is set."""
        ...


class WallClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=seconds)


class SimClock:
    """Starts at ``start`` (epoch seconds); sleeping moves it forward at once."""

    def __init__(self, start: float) -> None:
        self._start_mono = time.monotonic()
        self._offset = start - self._start_mono

    def now(self) -> float:
        return time.monotonic() + self._offset

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        if seconds > 0 and not wake.is_set():
            self._offset += seconds
        await asyncio.sleep(0)
