"""The simulator's clock: a pinned session replays the same market on any day it runs.

    pinned: sim time = start + elapsed x rate     (elapsed on the monotonic clock since origin)
            then each of ``clock.jumps`` (at, to): from ``at`` on it reads ``to`` and flows on
    wall:   sim time = the wall clock             (no ``start``: manual runs against "now")
    market steps (``market_step_s``): prices, greeks and bars are computed for the sim time
            floored to whole steps after ``start`` (a bar replay), while time itself flows:
            every request inside one step sees the same market, byte for byte

Prices, chains, bars and quotes are functions of the seed and sim time only, so two runs of
one pinned scenario see the same market whatever the date. The origin is a
``time.monotonic()`` reading: that clock is system-wide (CLOCK_MONOTONIC on Linux), so a
process told ``start``, ``rate`` and the origin computes exactly the same instant
(``describe()`` is what the CLI writes to ``--clock-file`` for the bot to follow).
"""

from __future__ import annotations

import math
import time
from typing import Any

from tools.gateway_sim.scenario import ClockSpec


class ScenarioClock:
    def __init__(self, spec: ClockSpec, origin_monotonic: float | None = None) -> None:
        self.spec = spec
        self.start_ts = spec.start.timestamp() if spec.start is not None else None
        self.jumps = spec.jump_times()
        self.origin = time.monotonic() if origin_monotonic is None else origin_monotonic

    @property
    def pinned(self) -> bool:
        return self.start_ts is not None

    def now(self) -> float:
        """Epoch seconds of the simulated session."""
        if self.start_ts is None:
            return time.time()
        ts = self.start_ts + max(0.0, time.monotonic() - self.origin) * self.spec.rate
        for at, to in self.jumps:  # in order: each leap moves the time the next one sees
            if ts >= at:
                ts += to - at
        return ts

    def market_instant(self, ts: float) -> float:
        """The instant the market is priced at for ``ts``: ``ts`` floored to a market step."""
        step = self.spec.market_step_s
        if step <= 0:
            return ts
        anchor = self.start_ts or 0.0
        return anchor + math.floor((ts - anchor) / step) * step

    def describe(self) -> dict[str, Any]:
        """What another process needs to follow this clock exactly."""
        return {
            "start_ts": self.start_ts,
            "rate": self.spec.rate,
            "origin_monotonic": self.origin,
            "jumps": [list(j) for j in self.jumps],
        }
