"""Pacing: how fast the broker may talk to the gateway.

    IBKRBroker request --> PacingGovernor.acquire(n) --> ib_insync client --> gateway
                           |  sliding 1 s window: at most floor(max_messages_per_s) messages
                           |  in any second, and spaced out evenly (a slot every 1/(0.985 x
                           |  limit) s), so the gateway never sees a burst
                           +- line(): at most max_lines market-data requests in flight

    reconnect loop --> Backoff.delay(attempt) --> CircuitBreaker.allow(now)?
                       (supervisor/broker/retry.py, imported here for the link)

IBKR disconnects a client that sends more than 50 messages in a second and refuses market
data beyond the account's lines (100 by default). Both are bugs on our side, never conditions
to retry, so every outgoing message passes ``acquire`` first and every market-data request
holds a line until the gateway is done with it. ib_insync's own throttle (45 requests per
rolling second, released in one burst exactly a second later) is switched off by the broker:
one governor, not two stacked.

Slots are counted from the previous slot, not from when a waiter woke up: a sleep always
ends a little late, and spacing each message from its late wake-up loses that lag on every
message (45 msg/s set gave 43.6 measured). A waiter that woke late may use the slot it missed,
but never one more than ``CATCH_UP_S`` old, so an idle spell banks no burst; the window caps
whatever catching up there is. Slots run 1.5 % slower than the window's limit, so that in
steady flow the window does not bind: were it to, every late wake-up on its edge would push
the next second back by as much, and the lag would add up again.

Catching up is bounded once more, by a shorter window: at most ``ceil(0.95 x limit) + 1``
messages in any 0.95 s (48 of 49), which steady flow (45.9 in 0.95 s) does not reach.
Without it a burst after a stall could fill a whole second's 49 into its last 0.95 s, where
the gateway (50 in 0.95 s, judged on arrival) then needs only two messages of jitter on the
way (~40 ms of its own pauses: the simulator's garbage collections take that long) to count
a violation and drop the connection. With it, it needs three (~60 ms).

Everything takes an injectable clock and sleep, so tests drive it on a fake clock.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from common.config import PACING_SLOT_SHARE
from supervisor.broker.retry import Backoff, CircuitBreaker

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
WINDOW_S = 1.0
CATCH_UP_S = 0.25  # how far back a late waiter may claim a missed slot
BURST_WINDOW_S = 0.95  # ... and no catching up beyond ceil(0.95 x limit) + 1 in this long
SPACING = PACING_SLOT_SHARE  # slots per second, as a share of the window's limit
__all__ = ["Backoff", "CircuitBreaker", "PacingGovernor"]


class PacingGovernor:
    """A sliding one-second message window with even spacing, plus a market-data line cap."""

    def __init__(self, max_messages_per_s: float, max_lines: int, *,
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        if max_messages_per_s <= 0:
            raise ValueError(f"max_messages_per_s must be > 0, got {max_messages_per_s}")
        if max_lines < 1:
            raise ValueError(f"max_lines must be >= 1, got {max_lines}")
        self.rate = float(max_messages_per_s)
        self.limit = max(1, math.floor(max_messages_per_s))  # messages in any 1 s window
        # in any 0.95 s: 48 of 49 (the gateway allows 50 in its 0.95 s), never more than a
        # second's limit
        self.burst_limit = min(self.limit, math.ceil(BURST_WINDOW_S * self.limit) + 1)
        self.interval_s = 1.0 / (self.limit * SPACING)
        self.max_lines = max_lines
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._next_at = -math.inf
        self._lock = asyncio.Lock()  # FIFO: waiters are served in arrival order
        self._queued = 0  # callers inside acquire
        self._lines = asyncio.Semaphore(max_lines)
        self.lines_in_use = 0
        self.messages_total = 0
        self.waits_total = 0
        self.wait_s_total = 0.0
        self.line_waits_total = 0

    # --- messages ------------------------------------------------------------------------

    async def acquire(self, n: int = 1) -> None:
        """Wait until ``n`` messages may be sent now, and count them as sent now.

        Call it right before sending: the window is only as true as the timestamps in it.
        """
        if n < 1:
            return
        if n > self.limit:
            raise ValueError(f"{n} messages never fit a window of {self.limit}")
        ahead = self._queued  # others already in line: this one is part of a flow
        self._queued += 1
        try:
            async with self._lock:
                now, waited = await self._until_free(n)
                self._sent.extend([now] * n)
                # in a flow each slot follows the last one (claimed late, if need be, but
                # none older than CATCH_UP_S); after an idle spell the next starts now
                flowing = ahead > 0 or waited
                base = max(self._next_at, now - CATCH_UP_S) if flowing else now
                self._next_at = base + n * self.interval_s
                self.messages_total += n
        finally:
            self._queued -= 1

    async def _until_free(self, n: int) -> tuple[float, bool]:
        """Sleep until ``n`` messages may go; (now, whether it had to wait)."""
        waited = False
        while True:
            now = self._clock()
            wait_s = self._wait_s(now, n)
            if wait_s <= 0:
                return now, waited
            if not waited:
                waited = True
                self.waits_total += 1
            self.wait_s_total += wait_s
            await self._sleep(wait_s)

    def _wait_s(self, now: float, n: int) -> float:
        while self._sent and now - self._sent[0] >= WINDOW_S:
            self._sent.popleft()
        spacing = self._next_at - now
        over = len(self._sent) + n - self.limit
        window = self._sent[over - 1] + WINDOW_S - now if over > 0 else 0.0
        recent = len(self._sent) - bisect.bisect_right(self._sent, now - BURST_WINDOW_S)
        over_burst = recent + n - max(self.burst_limit, n)  # a bigger n waits for room
        first_recent = len(self._sent) - recent
        burst = (self._sent[first_recent + over_burst - 1] + BURST_WINDOW_S - now
                 if over_burst > 0 else 0.0)
        return max(spacing, window, burst)

    def in_window(self, now: float | None = None) -> int:
        """Messages sent within the last second (for tests and stats)."""
        t = self._clock() if now is None else now
        return sum(1 for s in self._sent if t - s < WINDOW_S)

    # --- market-data lines ---------------------------------------------------------------

    async def acquire_line(self) -> None:
        if self._lines.locked():
            self.line_waits_total += 1
        await self._lines.acquire()
        self.lines_in_use += 1

    def lines_free(self) -> int:
        return self.max_lines - self.lines_in_use

    def release_line(self) -> None:
        if self.lines_in_use <= 0:
            raise RuntimeError("release_line without a line held")
        self.lines_in_use -= 1
        self._lines.release()

    @contextlib.asynccontextmanager
    async def line(self) -> AsyncIterator[None]:
        """Hold one market-data line for the body."""
        await self.acquire_line()
        try:
            yield
        finally:
            self.release_line()

