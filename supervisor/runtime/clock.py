"""Clocks: what time the market thinks it is, and how to wait for the next cycle.

    WallClock    real runs against a real gateway: the wall clock
    PinnedClock  --sim runs: the simulated gateway's own session clock, followed exactly, so
                 the bot's "now" (trading day, expiries, bar ends) is its gateway's "now"
    SimClock     the stub: a seeded session replayed without waiting (sleeping jumps ahead)

Deadlines and durations always use ``time.monotonic()``; ``rate`` is market seconds per real
second, so a cycle interval (market seconds) can be turned into a real wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any, Protocol


class Clock(Protocol):
    rate: float

    def now(self) -> float:
        """Epoch seconds."""
        ...

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        """Wait ``seconds`` of this clock's time, or until ``wake`` is set."""
        ...


async def _wait(seconds: float, wake: asyncio.Event) -> None:
    if seconds <= 0:
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(wake.wait(), timeout=seconds)


class WallClock:
    rate = 1.0

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        await _wait(seconds, wake)


class PinnedClock:
    """now = start + elapsed x rate, elapsed on the system-wide monotonic clock since
    ``origin_monotonic``: the same function the simulator computes for its session."""

    def __init__(self, start_ts: float, rate: float = 1.0,
                 origin_monotonic: float | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"clock rate must be > 0, got {rate}")
        self.start_ts = start_ts
        self.rate = rate
        self.origin = time.monotonic() if origin_monotonic is None else origin_monotonic

    @classmethod
    def follow(cls, description: Mapping[str, Any]) -> Clock:
        """The clock a simulator described (``--clock-file``); the wall clock if unpinned."""
        start = description.get("start_ts")
        if start is None:
            return WallClock()
        return cls(float(start), float(description.get("rate", 1.0)),
                   float(description["origin_monotonic"]))

    def now(self) -> float:
        return self.start_ts + max(0.0, time.monotonic() - self.origin) * self.rate

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        await _wait(seconds / self.rate, wake)


class SimClock:
    """Starts at ``start`` (epoch seconds); sleeping moves it forward at once."""

    rate = 1.0

    def __init__(self, start: float) -> None:
        self._start_mono = time.monotonic()
        self._offset = start - self._start_mono

    def now(self) -> float:
        return time.monotonic() + self._offset

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        if seconds > 0 and not wake.is_set():
            self._offset += seconds
        await asyncio.sleep(0)
