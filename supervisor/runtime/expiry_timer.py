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
import sqlite3
import time
from collections.abc import AsyncIterator, Callable

from supervisor.broker.base import BrokerError
from supervisor.journal.order_status import IllegalTransition
from supervisor.observe.alerts import Alerter
from supervisor.runtime.clock import Clock
from supervisor.trading.desk import Desk
from supervisor.trading.expiry_guard import ExpiryGuard

log = logging.getLogger("supervisor.runtime.expiry_timer")

RERUN_S = 30.0  # market seconds between runs inside an exit window
WAKE_S = 5.0  # real seconds: how soon a position opened during a cycle is looked at
STOP_CLOSE_S = 60.0  # real seconds a stop waits for expiring positions to close
STOP_RETRY_S = 2.0
END_WAIT_S = 30.0  # real seconds a cycle's end waits for a guard run in progress


async def _due(guard: ExpiryGuard, now: float) -> float | None:
    """When the guard must run next: an exit time to come, or now inside a window (past
    the close the cycles' settlement takes over), or None when nothing is held (or what is
    held cannot be known this moment: a broker error, said, and looked at again later)."""
    try:
        held = await guard.held(now)
    except (BrokerError, TimeoutError) as exc:
        log.warning(
            "expiry guard: what is held is not known now (%s); looked at again in %.0fs",
            exc,
            RERUN_S,
            extra={"event": "expiry_guard_failed"},
        )
        return now + RERUN_S
    times = [h.exit_at if now < h.exit_at else now for h in held if now < h.close]
    return min(times, default=None)


async def _run(guard: ExpiryGuard, lock: asyncio.Lock, now: float) -> None:
    """One run; a broker that fails it is said, and the next run tries again (the guard
    must outlive a hiccup of the connection)."""
    async with lock:
        try:
            await guard.run(now)
        except (BrokerError, TimeoutError) as exc:
            log.warning(
                "expiry guard: %s; tried again in %.0fs",
                exc,
                RERUN_S,
                extra={"event": "expiry_guard_failed"},
            )


async def sleep_between_cycles(
    clock: Clock, seconds: float, stop: asyncio.Event, guard: ExpiryGuard | None, lock: asyncio.Lock
) -> None:
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
async def during_cycle(
    clock: Clock, guard: ExpiryGuard | None, lock: asyncio.Lock
) -> AsyncIterator[None]:
    """While the block runs (a cycle), the guard runs at each exit time. At the block's end
    the timer is asked to stop (an event, not a cancel: a run in progress ends whole, never
    between an exit's journal row and its order) and waited for, at most ``END_WAIT_S``."""
    if guard is None:
        yield
        return
    done = asyncio.Event()
    task = asyncio.ensure_future(_guard_until(done, clock, guard, lock))
    try:
        yield
    finally:
        done.set()
        await _end(task)


async def _end(task: asyncio.Task[None]) -> None:
    """The timer's task over: finished by itself, or cancelled (again and again: Python
    3.11's wait_for may swallow one) once it overran ``END_WAIT_S``."""
    finished, _ = await asyncio.wait({task}, timeout=END_WAIT_S)
    while not finished:
        log.error(
            "the expiry guard's run overran the cycle's end by %.0fs: cancelled",
            END_WAIT_S,
            extra={"event": "expiry_guard_failed"},
        )
        task.cancel()
        finished, _ = await asyncio.wait({task}, timeout=0.1)


async def _guard_until(
    done: asyncio.Event, clock: Clock, guard: ExpiryGuard, lock: asyncio.Lock
) -> None:
    try:
        while not done.is_set():
            now = clock.now()
            due = await _due(guard, now)
            if due is not None and due <= now:
                await _run(guard, lock, now)
                wait_s = RERUN_S / clock.rate
            else:
                wait_s = WAKE_S if due is None else min(WAKE_S, (due - now) / clock.rate)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), max(wait_s, 0.05))
    except Exception:  # noqa: BLE001 - a bug here must not end the cycle; the loop's next
        # sleep between cycles runs the guard again
        log.exception(
            "the expiry guard's timer failed during a cycle", extra={"event": "expiry_guard_failed"}
        )


async def close_before_stop(
    clock: Clock,
    guard: ExpiryGuard,
    lock: asyncio.Lock,
    alerter: Alerter,
    connected: Callable[[], bool],
) -> None:
    """A stop inside an expiry's exit window closes what is held in it first; what could not
    be closed within ``STOP_CLOSE_S`` (or at all: no connection) is logged and alerted by
    name. (The systemd unit and compose file give a stop 120 s before a SIGKILL.)"""
    expiring = await guard.expiring(clock.now())
    if not expiring:
        return
    log.warning(
        "stopping inside the exit window of %d position(s): closing them before "
        "exit (execution.close_expiring_on_stop): %s",
        len(expiring),
        ", ".join(h.key for h in expiring),
        extra={"event": "close_before_stop"},
    )
    deadline = time.monotonic() + STOP_CLOSE_S
    while expiring and connected() and time.monotonic() < deadline:
        await _run(guard, lock, clock.now())
        await asyncio.sleep(STOP_RETRY_S)
        expiring = await guard.expiring(clock.now())
    if expiring:
        text = (
            f"stopped with {len(expiring)} position(s) still held into their expiry: "
            f"{', '.join(h.key for h in expiring)}: close them by hand or they may be "
            "exercised"
        )
        log.error(
            text, extra={"event": "expiring_left_open", "contracts": [h.key for h in expiring]}
        )
        alerter.send("expiring_left_open", text)
    else:
        log.info(
            "every expiring position closed before exit", extra={"event": "close_before_stop_done"}
        )


async def close_desk(desk: Desk, guard: ExpiryGuard | None, clock: Clock, alerter: Alerter) -> None:
    """At exit, each step whatever became of the one before: what is held in an expiry's
    exit window closed (``execution.close_expiring_on_stop``), then the live book's close-out
    (entries cancelled, the last fills booked, what stays working said)."""
    connected = desk.broker.is_connected
    if guard is not None and desk.settings.execution.close_expiring_on_stop:
        try:
            await close_before_stop(clock, guard, desk.lock, alerter, connected)
        except (BrokerError, TimeoutError, sqlite3.Error, IllegalTransition) as exc:
            log.error(
                "closing expiring positions at the stop failed: %s",
                exc,
                extra={"event": "expiring_left_open"},
            )
            alerter.send(
                "expiring_left_open",
                f"closing expiring positions at the stop "
                f"failed ({exc}): check what is held before the close",
            )
    try:
        await desk.close_out(clock.now())
    except (BrokerError, TimeoutError, sqlite3.Error, IllegalTransition) as exc:
        log.error("closing out the live book failed: %s", exc)
