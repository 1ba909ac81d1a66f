"""PacingGovernor, Backoff and CircuitBreaker on a fake clock: no window ever over the limit,
messages spaced out, lines capped."""

from __future__ import annotations

import asyncio
import math
import random
from bisect import bisect_left

import pytest

from supervisor.broker.ibkr.pacing import Backoff, CircuitBreaker, PacingGovernor


class FakeClock:
    """Time moves only when a waiter sleeps; yields to the loop so others can queue up."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.0)
        await asyncio.sleep(0)


def max_in_any_window(stamps: list[float], window_s: float = 1.0) -> int:
    """The most stamps inside any half-open window [t, t + window_s)."""
    ordered = sorted(stamps)
    best = 0
    for i, t in enumerate(ordered):
        best = max(best, bisect_left(ordered, t + window_s) - i)
    return best


def run_senders(
    gov: PacingGovernor, clock: FakeClock, sizes: list[int], workers: int = 40
) -> list[float]:
    """``workers`` tasks share the queue of message batches; returns one stamp per message."""
    stamps: list[float] = []
    queue = list(sizes)

    async def sender() -> None:
        while queue:
            n = queue.pop()
            await gov.acquire(n)
            stamps.extend([clock()] * n)
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(sender() for _ in range(workers)))

    asyncio.run(main())
    return stamps


def test_no_window_ever_holds_more_than_the_limit() -> None:
    # Given 45 msg/s and 40 concurrent senders with 900 single messages
    clock = FakeClock()
    gov = PacingGovernor(45, 90, clock=clock, sleep=clock.sleep)
    # When they all send as fast as the governor lets them
    stamps = run_senders(gov, clock, [1] * 900)
    # Then no one-second window holds more than 45, and the run took the time it should
    assert len(stamps) == 900
    assert max_in_any_window(stamps) <= 45
    assert 900 / 45 - 1.0 <= clock.t - 1000.0 <= 900 / 45 + 1.0
    assert gov.messages_total == 900
    assert gov.waits_total > 0 and gov.wait_s_total == pytest.approx(clock.t - 1000.0, rel=0.01)


def test_messages_are_spaced_evenly_not_in_bursts() -> None:
    clock = FakeClock()
    gov = PacingGovernor(45, 90, clock=clock, sleep=clock.sleep)
    stamps = sorted(run_senders(gov, clock, [1] * 200))
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert min(gaps) >= 1 / 45 - 1e-9  # one message every 22 ms, never two at once
    # also in any shorter window: a 0.2 s window holds at most ceil(0.2 * 45) messages
    assert max_in_any_window(stamps, 0.2) <= 10


class LateClock(FakeClock):
    """Every sleep ends late, by 0-8 ms (a busy event loop), and now and then by 150 ms."""

    def __init__(self) -> None:
        super().__init__()
        self.rng = random.Random(3)

    async def sleep(self, seconds: float) -> None:
        late = 0.15 if self.rng.random() < 0.01 else self.rng.uniform(0.0, 0.008)
        await super().sleep(max(seconds, 0.0) + late)


@pytest.mark.parametrize("rate", [45.0, 48.0, 49.0])
def test_late_wake_ups_cost_no_pace_and_never_break_the_window(rate: float) -> None:
    # Given sleeps that always end late, as on a loaded machine
    clock = LateClock()
    gov = PacingGovernor(rate, 90, clock=clock, sleep=clock.sleep)
    # When 40 senders keep 2,000 messages queued
    stamps = run_senders(gov, clock, [1] * 2000)
    # Then the pace is the one set: slots (1.5 % under the limit), not wake-ups, set it
    # (0.968-0.972 x: making missed slots up at most 3 in 50 ms, not at once, costs ~1 %
    # here, where the loop stalls 7 % of the time)
    achieved = len(stamps) / (max(stamps) - min(stamps))
    assert achieved >= 0.965 * rate
    # and no second ever held more than the limit, catching up included
    assert max_in_any_window(stamps) <= int(rate)
    # nor a catch-up after a stall a whole second's worth in 0.95 s: the gateway counts on
    # arrival, and that would leave little room for jitter on the way (48 of 49, not 49)
    assert max_in_any_window(stamps, 0.95) <= math.ceil(0.95 * int(rate)) + 1 < int(rate)


class StallingClock(FakeClock):
    """Sleeps end late by 0-8 ms, and one in 100 by a loop stall of 60-300 ms."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = random.Random(seed)

    async def sleep(self, seconds: float) -> None:
        stalled = self.rng.random() < 0.01
        late = self.rng.uniform(0.06, 0.3) if stalled else self.rng.uniform(0.0, 0.008)
        await super().sleep(max(seconds, 0.0) + late)


@pytest.mark.parametrize(("rate", "seed"), [(45.0, 1), (45.0, 2), (49.0, 3), (50.0, 4)])
def test_catching_up_after_a_stall_never_bunches(rate: float, seed: int) -> None:
    # Given sleeps that end late, often by a whole stall of the loop
    clock = StallingClock(seed)
    gov = PacingGovernor(rate, 90, clock=clock, sleep=clock.sleep)
    # When 40 senders keep 1,500 messages queued
    stamps = run_senders(gov, clock, [1] * 1500)
    # Then the missed slots are made up, but never more than 3 in any 50 ms (the old
    # catch-up let a stall's missed slots out at once: 14 within 50 ms here)
    assert max_in_any_window(stamps, 0.05) <= 3
    # and the pace stays close to the one set (0.96 x; 0.97 x made up at once), the windows
    # holding
    achieved = len(stamps) / (max(stamps) - min(stamps))
    assert achieved >= 0.95 * rate
    assert max_in_any_window(stamps) <= int(rate)


@pytest.mark.parametrize("rate", [45.0, 50.0, 12.5, 1.0])
def test_mixed_batch_sizes_respect_the_window(rate: float) -> None:
    # Given batches of 1..8 messages (a snapshot of n contracts is n messages)
    rng = random.Random(7)
    clock = FakeClock()
    gov = PacingGovernor(rate, 90, clock=clock, sleep=clock.sleep)
    limit = int(rate)
    sizes = [rng.randint(1, min(8, limit)) for _ in range(int(rate * 8))]
    # When they are sent concurrently
    stamps = run_senders(gov, clock, sizes, workers=25)
    # Then the window holds, whatever the mix
    assert len(stamps) == sum(sizes)
    assert max_in_any_window(stamps) <= limit


def test_idle_governor_does_not_wait_and_a_batch_too_big_is_refused() -> None:
    clock = FakeClock()
    gov = PacingGovernor(45, 90, clock=clock, sleep=clock.sleep)

    async def main() -> None:
        await gov.acquire(8)
        assert clock.t == 1000.0 and gov.waits_total == 0
        with pytest.raises(ValueError):
            await gov.acquire(46)
        await gov.acquire(0)  # nothing to send: no wait, nothing counted
        assert gov.messages_total == 8

    asyncio.run(main())


def test_line_semaphore_caps_concurrency() -> None:
    # Given 5 lines and 60 snapshots that each hold a line for a while
    clock = FakeClock()
    gov = PacingGovernor(45, 5, clock=clock, sleep=clock.sleep)
    active = peak = done = 0

    async def snapshot(i: int) -> None:
        nonlocal active, peak, done
        async with gov.line():
            active += 1
            peak = max(peak, active)
            for _ in range(i % 4 + 1):
                await asyncio.sleep(0)
            active -= 1
            done += 1

    async def main() -> None:
        await asyncio.gather(*(snapshot(i) for i in range(60)))

    asyncio.run(main())
    # Then never more than 5 at once, all finished, all lines back
    assert peak == 5 and done == 60
    assert gov.lines_in_use == 0 and gov.line_waits_total > 0


def test_a_line_can_be_handed_on_and_released_later() -> None:
    gov = PacingGovernor(45, 1)

    async def main() -> None:
        await gov.acquire_line()
        waiter = asyncio.ensure_future(gov.acquire_line())
        await asyncio.sleep(0)
        assert not waiter.done()  # the only line is held (e.g. until a cancel is sent)
        gov.release_line()
        await asyncio.wait_for(waiter, 1)
        gov.release_line()
        with pytest.raises(RuntimeError):
            gov.release_line()

    asyncio.run(main())


def test_backoff_doubles_caps_and_jitters() -> None:
    backoff = Backoff(1.0, 30.0, 0.25, random.Random(3))
    plain = Backoff(1.0, 30.0, 0.0)
    assert [plain.delay(a) for a in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    for attempt in range(10):
        base = min(30.0, 2.0**attempt)
        assert 0.75 * base <= backoff.delay(attempt) <= 1.25 * base
    assert plain.delay(10_000) == 30.0


def test_circuit_breaker_opens_cools_down_and_probes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=3, cooldown_s=60, clock=clock)
    # Given two failures: still closed
    breaker.failure()
    breaker.failure()
    assert breaker.allow() and breaker.state == CircuitBreaker.CLOSED
    # When the third fails: open, no tries for the cool-down
    breaker.failure()
    assert not breaker.allow() and breaker.state == CircuitBreaker.OPEN
    assert breaker.remaining_s() == 60
    clock.t += 59
    assert not breaker.allow()
    # Then after it, one probe; a failed probe opens it again at once
    clock.t += 1
    assert breaker.allow() and breaker.state == CircuitBreaker.HALF_OPEN
    breaker.failure()
    assert breaker.state == CircuitBreaker.OPEN and breaker.opened_total == 2
    # and a successful probe closes it
    clock.t += 60
    assert breaker.state == CircuitBreaker.HALF_OPEN
    breaker.success()
    assert breaker.state == CircuitBreaker.CLOSED and breaker.failures == 0


def test_the_default_reconnect_policy_finds_a_gateway_back_within_seconds() -> None:
    """The reconnect loop's probes (backoff, then the breaker's cooldown) with the shipped
    settings, through outages up to IB Gateway's 5-minute daily restart: the first probe
    after the gateway answers again is never more than ~10 s later."""
    from common.config import IBKRSettings

    cfg = IBKRSettings()
    for outage_s in (20.0, 75.0, 180.0, 300.0):
        now = [0.0]
        backoff = Backoff(cfg.reconnect_initial_s, cfg.reconnect_max_s, 0.0)
        breaker = CircuitBreaker(
            cfg.circuit_failures,
            cfg.circuit_cooldown_s,
            clock=lambda now=now: now[0],  # type: ignore[misc]
        )
        attempt = 0
        while True:  # the loop of upkeep.reconnect_loop, time advanced instead of slept
            if not breaker.allow():
                now[0] += breaker.remaining_s()
                continue
            if breaker.state != CircuitBreaker.HALF_OPEN:
                now[0] += backoff.delay(attempt)
            if now[0] >= outage_s:
                break  # this probe connects
            attempt += 1
            breaker.failure()
        late_by = now[0] - outage_s
        assert late_by <= 10.0, (outage_s, late_by)  # old defaults: up to 300 s late
