"""Clocks: what time the market thinks it is, and how to wait for the next cycle.

    WallClock    real runs against a real gateway: the wall clock
    PinnedClock  --sim runs: the simulated gateway's own session clock, followed exactly, so
                 the bot's "now" (trading day, expiries, bar ends) is its gateway's "now"
    ClockFile    --sim-clock F before that simulator has written F: its clock once it has
    SimClock     the stub: a seeded session replayed without waiting (sleeping jumps ahead);
                 frozen, an offline run's (replay, backtest): set to each cycle's instant

Deadlines and durations always use ``time.monotonic()``; ``rate`` is market seconds per real
second, so a cycle interval (market seconds) can be turned into a real wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


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


CLOCK_JUMP_S = 2.0  # a step of the wall clock against the monotonic one worth a WARNING
SLEW_PER_S = 0.001  # NTP slews at most 500 ppm: drift between distant readings is no jump


def clock_jump(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    """How far the wall clock stepped between two (wall, monotonic) readings, or None: set by
    hand, stepped by NTP, or the machine slept (the monotonic clock stops in a suspend)."""
    step = (after[0] - before[0]) - (after[1] - before[1])
    allowed = max(CLOCK_JUMP_S, SLEW_PER_S * abs(after[1] - before[1]))
    return step if abs(step) > allowed else None


class WallClock:
    """The wall clock, saying when it jumps: a journal's timestamps, the trading day and the
    expiry timer all read it, so a step of it is worth knowing about."""

    rate = 1.0

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None
        self.jumps = 0

    def now(self) -> float:
        reading = (time.time(), time.monotonic())
        step = None if self._last is None else clock_jump(self._last, reading)
        if step is not None:
            self.jumps += 1
            log.warning(
                "the wall clock jumped %+.1f s (set by hand, stepped by NTP, or the "
                "machine slept); timestamps and the trading day follow it",
                step,
                extra={"event": "clock_jump", "step_s": round(step, 3)},
            )
        self._last = reading
        return reading[0]

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        await _wait(seconds, wake)


class PinnedClock:
    """now = start + elapsed x rate, elapsed on the system-wide monotonic clock since
    ``origin_monotonic``, then each of ``jumps`` (at, to): from ``at`` on it reads ``to``
    (a simulator's weekend in a moment): the same function the simulator computes."""

    def __init__(
        self,
        start_ts: float,
        rate: float = 1.0,
        origin_monotonic: float | None = None,
        jumps: tuple[tuple[float, float], ...] = (),
    ) -> None:
        if rate <= 0:
            raise ValueError(f"clock rate must be > 0, got {rate}")
        self.start_ts = start_ts
        self.rate = rate
        self.origin = time.monotonic() if origin_monotonic is None else origin_monotonic
        self.jumps = jumps

    @classmethod
    def follow(cls, description: Mapping[str, Any]) -> Clock:
        """The clock a simulator described (``--clock-file``); the wall clock if unpinned."""
        start = description.get("start_ts")
        if start is None:
            return WallClock()
        jumps = tuple((float(at), float(to)) for at, to in description.get("jumps", ()))
        return cls(
            float(start),
            float(description.get("rate", 1.0)),
            float(description["origin_monotonic"]),
            jumps,
        )

    def now(self) -> float:
        ts = self.start_ts + max(0.0, time.monotonic() - self.origin) * self.rate
        for at, to in self.jumps:  # in order: each leap moves the time the next one sees
            if ts >= at:
                ts += to - at
        return ts

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        await _wait(seconds / self.rate, wake)


class ClockFile:
    """The session clock a simulator writes to ``path`` (its ``--clock-file``), read once the
    file is there: a bot started before its simulator waits for it like for any gateway, and
    follows its clock from the first reading on. Until then it is the wall clock, which nothing
    trades on (no connection yet, no cycle)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rate = 1.0
        self._followed: Clock | None = None

    def _clock(self) -> Clock:
        if self._followed is None:
            try:
                description = json.loads(self.path.read_text())
            except FileNotFoundError:
                return _WALL
            except (OSError, ValueError) as exc:
                raise ValueError(f"the simulator's clock file {self.path}: {exc}") from None
            self._followed = PinnedClock.follow(description)
            self.rate = self._followed.rate
        return self._followed

    def now(self) -> float:
        return self._clock().now()

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        await self._clock().sleep(seconds, wake)


_WALL = WallClock()


class SimClock:
    """Starts at ``start`` (epoch seconds); sleeping moves it forward at once, and so does
    ``set``. ``frozen``: between those moves it stands still (an offline run's clock: every
    step of a cycle sees the instant the cycle was set to, so a replay or a backtest gives
    the same journal however busy the machine is); else it runs with the monotonic clock."""

    rate = 1.0

    def __init__(self, start: float, frozen: bool = False) -> None:
        self.frozen = frozen
        self._offset = start - self._running()

    def _running(self) -> float:
        return 0.0 if self.frozen else time.monotonic()

    def now(self) -> float:
        return self._running() + self._offset

    def set(self, ts: float) -> None:
        """From now on the clock reads ``ts`` (and runs on from there unless frozen)."""
        self._offset = ts - self._running()

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        if seconds > 0 and not wake.is_set():
            self._offset += seconds
        await asyncio.sleep(0)
