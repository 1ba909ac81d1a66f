"""How often to try to connect again: the one reconnect policy, for any broker.

    a connect fails --> Backoff.delay(attempt)      1 s doubling to reconnect_max_s, +- jitter
                    --> CircuitBreaker.failure()    after circuit_failures in a row: one probe
                                                    every circuit_cooldown_s until one succeeds

Both count from when the failed attempt *began*: an attempt against a gateway that accepts the
socket and never answers (hung, stopped) takes connect_timeout_s itself, and that is waiting
enough; the next attempt then follows at once, so a gateway that wakes up finds one waiting.

Used by the IBKR link's reconnect loop (a mid-run outage) and by the supervisor's wait for a
gateway that is not there yet at start (supervisor/runtime/gateway_wait.py); nothing here
imports a broker library. Both take an injectable clock and random source for tests.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

Clock = Callable[[], float]


class Backoff:
    """Exponential delays with jitter: initial * 2**attempt, capped, times (1 +- jitter)."""

    def __init__(
        self, initial_s: float, max_s: float, jitter: float, rng: random.Random | None = None
    ) -> None:
        self.initial_s = initial_s
        self.max_s = max(max_s, initial_s)
        self.jitter = jitter
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        base = min(self.max_s, self.initial_s * 2.0 ** min(max(attempt, 0), 30))
        return max(0.0, base * (1.0 + self.jitter * self._rng.uniform(-1.0, 1.0)))


class CircuitBreaker:
    """After ``failures`` connects in a row fail, stop trying for ``cooldown_s``, then let
    one probe through: its success closes the circuit, its failure opens it again."""

    CLOSED, OPEN, HALF_OPEN = 0, 1, 2
    NAMES = {CLOSED: "closed", OPEN: "open", HALF_OPEN: "half_open"}

    def __init__(self, failures: int, cooldown_s: float, clock: Clock = time.monotonic) -> None:
        self.threshold = max(1, failures)
        self.cooldown_s = cooldown_s
        self._clock = clock
        self.failures = 0
        self._state = self.CLOSED
        self._opened_at = 0.0
        self.opened_total = 0

    @property
    def state(self) -> int:
        if self._state == self.OPEN and self._clock() - self._opened_at >= self.cooldown_s:
            self._state = self.HALF_OPEN
        return self._state

    def allow(self) -> bool:
        return self.state != self.OPEN

    def remaining_s(self) -> float:
        if self.state != self.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown_s - self._clock())

    def success(self) -> None:
        self.failures = 0
        self._state = self.CLOSED

    def failure(self, started_at: float | None = None) -> None:
        """A connect failed. ``started_at`` (this clock): when it began; the cooldown counts
        from there, so an attempt that itself waited out a silent gateway's connect timeout
        has served that much of it."""
        self.failures += 1
        if self.state == self.HALF_OPEN or self.failures >= self.threshold:
            if self._state != self.OPEN:
                self.opened_total += 1
            self._state = self.OPEN
            now = self._clock()
            self._opened_at = now if started_at is None else min(started_at, now)
