"""Pacing: how fast the broker may talk to the gateway.

    IBKRBroker request --> PacingGovernor.acquire(n) --> ib_insync client --> gateway
                           |  sliding 1 s window: at most floor(max_messages_per_s) messages
                           |  in any second, and spaced out evenly (a slot every 1/(0.985 x
                           |  limit) s; catching up never more than 3 in 50 ms), so the
                           |  gateway never sees a burst
                           +- line(): at most max_lines market-data requests in flight

    reconnect loop --> Backoff.delay(attempt) --> CircuitBreaker.allow(now)?
                       (supervisor/broker/retry.py, imported here for the link)

IBKR disconnects a client that sends more than 50 messages in a second and refuses market
data beyond the account's lines (100 by default). Both are bugs on our side, never conditions
to retry, so every outgoing message passes ``acquire`` first and every market-data request
holds a line until the gateway is done with it. ib_insync's own throttle (45 requests per
rolling second, released in one burst exactly a second later) is switched off by the broker:
one governor, not two stacked. The connection also asks for IBKR's own pacing (``+PACEAPI``,
link.py): a gateway that honours it delays what is over the limit instead of dropping us,
a backstop, not the budget.

The arithmetic of the limit (``pacing.max_messages_per_s``, 45 by default):

- IBKR: at most 50 messages in any second, counted where they arrive (error 100, then the
  connection drops, and every symbol of the cycle in flight fails with it).
- We send at most ``floor(max_messages_per_s)`` (45) in any second we stamp, in slots 1.5 %
  slower (44.3/s: 42 in 0.95 s of steady flow), catching up to at most 44 in any 0.95 s.
- What the gateway counts is not what we stamp: our loop's and its reader's stalls and
  jitter shift messages by tens of ms and its window may be shorter than a second (the
  simulator judges 50 in 0.95 s). At 49 (the old default) three of six 1,000-symbol runs
  beside CPU hogs tripped the simulator (peaks 51, 52, 56) though by our own stamps we never
  sent more than 50 in a second; at 45 two CPU hogs peaked at 46: five messages of margin
  (~110 ms of jitter at this pace) for ~5 % more cycle time. A violation costs a reconnect
  and a cycle, so a real deployment keeps the margin; 49 is for a quiet machine (max 50).

Slots are counted from the previous slot, not from when a waiter woke up: a sleep always
ends a little late, and spacing each message from its late wake-up loses that lag on every
message (45 msg/s set gave 43.6 measured). A waiter that woke late may use the slot it missed,
but never one more than ``CATCH_UP_S`` old, so an idle spell banks no burst; the window caps
whatever catching up there is. Slots run 1.5 % slower than the window's limit, so that in
steady flow the window does not bind: were it to, every late wake-up on its edge would push
the next second back by as much, and the lag would add up again.

Catching up is bounded twice more. By a shorter window: at most ``ceil(0.95 x limit) + 1``
messages in any 0.95 s (44 of 45), which steady flow (42.1 in 0.95 s) does not reach, so a
stall cannot squeeze a whole second's worth into the gateway's shorter window. And by the
shortest: at most ``SHORT_LIMIT`` (3) in any ``SHORT_WINDOW_S`` (50 ms), however late the
waiters woke: missed slots are made up at most 60/s, never as a bunch (before it, a loop
stall of 0.25 s let 9-13 messages out within 10 ms, which a gateway whose count lags by
~40 ms at the wrong moment sees as one more than it allows). Steady slots, >= 20 ms apart
at any pace <= 50/s, put at most 3 in 50 ms, so it binds only on catch-up.

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
SHORT_WINDOW_S = 0.05  # ... nor more than SHORT_LIMIT in this long, however late it woke
SHORT_LIMIT = 3  # slots are >= 20 ms apart (<= 50/s): steady flow puts 3 in 50 ms at most
SPACING = PACING_SLOT_SHARE  # slots per second, as a share of the window's limit
__all__ = ["Backoff", "CircuitBreaker", "PacingGovernor"]


class PacingGovernor:
    """A sliding one-second message window with even spacing, plus a market-data line cap."""

    def __init__(
        self,
        max_messages_per_s: float,
        max_lines: int,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
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
        return max(
            self._next_at - now,  # the slot
            self._window_wait(now, n, WINDOW_S, self.limit),
            self._window_wait(now, n, BURST_WINDOW_S, self.burst_limit),
            self._window_wait(now, n, SHORT_WINDOW_S, SHORT_LIMIT),
        )

    def _window_wait(self, now: float, n: int, span_s: float, cap: int) -> float:
        """How long until ``n`` more fit ``cap`` messages in any ``span_s`` (a batch bigger
        than ``cap`` waits for the span to be empty, then goes at once)."""
        first = bisect.bisect_right(self._sent, now - span_s)  # the oldest still inside
        over = len(self._sent) - first + n - max(cap, n)
        return self._sent[first + over - 1] + span_s - now if over > 0 else 0.0

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
