"""Waits that a stop cuts short: a signal is honoured at once, never waited out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from common.calendar import Session, next_open
from common.config import Settings
from common.timetext import due
from supervisor.broker.base import Broker
from supervisor.observe.alerts import Alerter
from supervisor.runtime.clock import Clock
from supervisor.trading.sessions import SessionBook

if TYPE_CHECKING:  # status.py waits with ``pause`` from here (and outages.py uses status.py)
    from supervisor.runtime.outages import OutageAlerts
    from supervisor.runtime.status import StatusFeed

log = logging.getLogger("supervisor.runtime.loop")


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Wall-clock wait that a stop cuts short (the market clock may be simulated)."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def unless_stopped(stop: asyncio.Event, step: Awaitable[Any]) -> bool:
    """Await ``step`` unless a stop comes first (then it is cancelled): False if so. A
    connect to a gateway that does not answer is not waited out after SIGTERM."""
    task = asyncio.ensure_future(step)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task.done():
        task.result()
        return True
    while not task.done():
        # again and again: Python 3.11's wait_for can swallow a cancel that lands as its
        # inner step completes (ib_insync's connect then waits out its whole timeout)
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
    log.info("stopped while starting", extra={"event": "stopped_starting"})
    return False


async def wait_for_reconnect(
    stop: asyncio.Event,
    broker: Broker,
    alerter: Alerter,
    disconnects: list[float],
    exc: Exception,
    outages: OutageAlerts | None = None,
    outage_after_s: float = 120.0,
    urgent: Callable[[], str | None] | None = None,
) -> list[float]:
    """The broker reconnects by itself (gateways restart daily): cycles wait until it has.
    Returns the disconnects of the last hour, this one included (three alert once). A loss
    that lasts ``outage_after_s`` is an outage (``outages``: alerted once, however often the
    bot restarts during it; its end alerted once); at once while ``urgent()`` says why
    (positions expiring today inside their exit window: outages.exits_at_stake)."""
    now = time.monotonic()
    disconnects = [t for t in disconnects if now - t < 3600] + [now]
    log.warning(
        "connection lost (%s): cycles paused until the broker reconnects",
        exc,
        extra={"event": "connection_lost", "disconnects_last_hour": len(disconnects)},
    )
    if len(disconnects) >= 3:
        alerter.send_once(
            "disconnects", "connection", f"{len(disconnects)} disconnects within an hour"
        )
    said = False
    while not stop.is_set() and not broker.is_connected():
        if outages is not None and not said:
            lost_s = time.monotonic() - now
            why = urgent() if urgent is not None else None
            if why is not None or lost_s >= outage_after_s:
                outages.lost(lost_s, exc, why)
                said = True
        await pause(stop, 1.0)
    if broker.is_connected():
        log.info("connection back: cycles resume", extra={"event": "connection_back"})
        if outages is not None:
            outages.up(broker.name)
    return disconnects


async def wait_for_market(
    stop: asyncio.Event,
    clock: Clock,
    sessions: SessionBook,
    settings: Settings,
    feed: StatusFeed,
    day_over: Callable[[Session, float], None] | None = None,
) -> bool:
    """With ``regular_hours_only``, cycles run inside the first symbol's regular session
    (the broker's hours, else the exchange calendar); each intent's own symbol's session
    is judged again by the risk step. False if a stop came first. The wait is said once per
    closed spell (a replayed weekend is not a line every five simulated minutes).
    ``day_over(session, now)``: today's session is over (the end-of-day summary, which says
    each day once)."""
    zone, said = ZoneInfo(settings.schedule.timezone), 0.0
    while settings.schedule.regular_hours_only and not stop.is_set():
        now = clock.now()
        session = await sessions.today(settings.universe.symbols[0], now)
        feed.market_open = session is not None and session.contains(now)
        if feed.market_open:
            return True
        if session is not None and now >= session.close_ts and day_over is not None:
            day_over(session, now)
        opens = (
            session.open_ts
            if session is not None and now < session.open_ts
            else next_open(sessions.calendar, now)
        )
        log.log(
            logging.INFO if opens != said else logging.DEBUG,
            "market closed; next regular open %s",
            due(opens, now, zone),
            extra={"event": "market_closed", "opens_ts": opens},
        )
        said = opens
        await clock.sleep(min(opens - now, 300.0), stop)
    return not stop.is_set()
