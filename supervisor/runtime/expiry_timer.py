"""The expiry guard on its own timer: exits at their own time, whenever cycles happen.

    between cycles  sleep_between_cycles: the loop's sleep is cut at each exit time and the
                    guard runs there (a stub's clock jumps when it sleeps: never past one)
    during a cycle  during_cycle: a task that wakes at each exit time (real seconds, on the
                    loop) and runs the guard, one step at a time with the cycle's acting
    at a stop       close_before_stop: what is inside its exit window is closed before the
                    bot leaves (execution.close_expiring_on_stop), what is not is alerted

Inside an exit window the guard runs again every ``RERUN_S`` market seconds: a position
with no bid yet, or whose exit must be repriced as the bid falls, is tried until its close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from supervisor.broker.base import BrokerError
from supervisor.observe.alerts import Alerter
from supervisor.runtime.clock import Clock
from supervisor.trading.expiry_guard import ExpiryGuard

log = logging.getLogger("supervisor.runtime.expiry_timer")

RERUN_S = 30.0  # market seconds between runs inside an exit window
WAKE_S = 5.0  # real seconds: how soon a position opened during a cycle is looked at
STOP_CLOSE_S = 60.0  # real seconds a stop waits for expiring positions to close
STOP_RETRY_S = 2.0


async def _due(guard: ExpiryGuard, now: float) -> float | None:
    """When the guard must run next: an exit time to come, or now inside a window (past
    the close the cycles' settlement takes over), or None when nothing is held (or what is
    held cannot be known this moment: a broker error, said, and looked at again later)."""
    try:
        held = await guard.held(now)
    except (BrokerError, TimeoutError) as exc:
        log.warning("expiry guard: what is held is not known now (%s)", exc,
                    extra={"event": "expiry_guard_failed"})
        return None
    times = [h.exit_at if now < h.exit_at else now for h in held if now < h.close]
    return min(times, default=None)


async def _run(guard: ExpiryGuard, lock: asyncio.Lock, now: float) -> None:
    """One run; a broker that fails it is said, and the next run tries again (the guard
    must outlive a hiccup of the connection)."""
    async with lock:
        try:
            await guard.run(now)
        except (BrokerError, TimeoutError) as exc:
            log.warning("expiry guard: %s; tried again in %.0fs", exc, RERUN_S,
                        extra={"event": "expiry_guard_failed"})


async def sleep_between_cycles(clock: Clock, seconds: float, stop: asyncio.Event,
                               guard: ExpiryGuard | None, lock: asyncio.Lock) -> None:
    """``clock.sleep(seconds)``, cut at every exit time on the way to run the guard."""
    end = clock.now() + seconds
    while not stop.is_set() and (now := clock.now()) < end:
        due = None if guard is None else await _due(guard, now)
        if guard is not None and due is not None and due <= now:
            await _run(guard, lock, now)
            due = now + RERUN_S
        wake = end if due is None else min(end, due)
        await clock.sleep(wake - now, stop)


@contextlib.asynccontextmanager
async def during_cycle(clock: Clock, guard: ExpiryGuard | None,
                       lock: asyncio.Lock) -> AsyncIterator[None]:
    """While the block runs (a cycle), the guard runs at each exit time."""
    task = None if guard is None else asyncio.ensure_future(_guard_until_cancelled(
        clock, guard, lock))
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _guard_until_cancelled(clock: Clock, guard: ExpiryGuard, lock: asyncio.Lock) -> None:
    try:
        await _guard_loop(clock, guard, lock)
    except Exception:  # noqa: BLE001 - a bug here must not end the cycle; the loop's next
        # sleep between cycles runs the guard again
        log.exception("the expiry guard's timer failed during a cycle",
                      extra={"event": "expiry_guard_failed"})


async def _guard_loop(clock: Clock, guard: ExpiryGuard, lock: asyncio.Lock) -> None:
    while True:
        now = clock.now()
        due = await _due(guard, now)
        if due is not None and due <= now:
            await _run(guard, lock, now)
            wait_s = RERUN_S / clock.rate
        else:
            wait_s = WAKE_S if due is None else min(WAKE_S, (due - now) / clock.rate)
        await asyncio.sleep(max(wait_s, 0.05))


async def close_before_stop(clock: Clock, guard: ExpiryGuard, lock: asyncio.Lock,
                            alerter: Alerter) -> None:
    """A stop inside an expiry's exit window closes what is held in it first; what could not
    be closed within ``STOP_CLOSE_S`` is logged and alerted by name."""
    expiring = await guard.expiring(clock.now())
    if not expiring:
        return
    log.warning("stopping inside the exit window of %d position(s): closing them before "
                "exit (execution.close_expiring_on_stop): %s", len(expiring),
                ", ".join(h.key for h in expiring), extra={"event": "close_before_stop"})
    deadline = time.monotonic() + STOP_CLOSE_S
    while expiring and time.monotonic() < deadline:
        await _run(guard, lock, clock.now())
        await asyncio.sleep(STOP_RETRY_S)
        expiring = await guard.expiring(clock.now())
    if expiring:
        text = (f"stopped with {len(expiring)} position(s) still held into their expiry: "
                f"{', '.join(h.key for h in expiring)}: close them by hand or they may be "
                "exercised")
        log.error(text, extra={"event": "expiring_left_open",
                               "contracts": [h.key for h in expiring]})
        alerter.send("expiring_left_open", text)
    else:
        log.info("every expiring position closed before exit",
                 extra={"event": "close_before_stop_done"})
