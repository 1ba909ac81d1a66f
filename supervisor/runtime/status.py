"""What the running bot tells the person watching it: progress, heartbeats, the last word.

cycle line + progress(" · 1823/2000, ETA 1m12s")  --> console
heartbeats(healthy?) every alerts.heartbeat_interval_s --> Alerter.heartbeat (GET)
stopped_text(exit code, cycles)                    --> the "stop"/"exit" alert
StatusFeed: healthy() / run_info() / status()      --> heartbeats, metrics, /healthz,
                                                       the dashboard (with the journal's
                                                       day, journal/dashboard_rows.py)
StatusFeed.say(phase): READY=1 + STATUS=           --> systemd (trading, or waiting for
                                                       the gateway), then its watchdog
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.calendar import exchange_calendar, next_open
from common.config import Settings
from supervisor import exitcodes
from supervisor.broker.base import Broker
from supervisor.journal.dashboard_rows import Prices, read_day_state
from supervisor.observe.alerts import Alerter
from supervisor.observe.exposition import CycleTotals
from supervisor.observe.http_status import Status, StatusServer
from supervisor.observe.systemd import notify, watchdog_interval_s
from supervisor.runtime.controls import configured_token
from supervisor.runtime.cycle import CycleSummary
from supervisor.runtime.waits import pause
from supervisor.trading.desk import Desk

log = logging.getLogger("supervisor.runtime.status")


@dataclass(frozen=True)
class CycleFigures:
    """What is read of the last cycle once it is journaled (the status endpoint, the
    heartbeat, the metrics): its counts, not its results. A summary holds every symbol's
    reasons, timings and intents and every risk decision (~0.7 MB at 200 symbols); keeping
    only these lets them go as soon as the cycle's line is printed."""

    cycle_id: int
    seconds: float
    symbols: int
    failed: int
    skipped: int  # ok but without a decision

    @classmethod
    def of(cls, summary: CycleSummary) -> CycleFigures:
        return cls(
            summary.cycle_id,
            summary.seconds,
            len(summary.results),
            len(summary.failed),
            sum(1 for r in summary.results if r.ok and r.skipped),
        )


def progress(done: int, planned: int, elapsed_s: float) -> str:
    """`` · done/planned, ETA …`` for a run of planned length, else nothing."""
    if not planned:
        return ""
    left_s = elapsed_s / max(done, 1) * max(planned - done, 0)
    return f" · {done}/{planned}, ETA {duration(left_s)}"


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def stopped_text(code: int, cycles: int) -> str:
    return f"bot {exitcodes.NAMES.get(code, 'exited')} after {cycles} cycles (exit {code})"


async def heartbeats(
    stop: asyncio.Event, alerter: Alerter, healthy: Callable[[], bool], interval_s: float
) -> None:
    """The heartbeat URL every ``interval_s`` while ``healthy()``, market open or closed: a
    dead-man monitor then fires only when something is wrong, never every night."""
    while not stop.is_set():
        if healthy():
            alerter.heartbeat()
        await pause(stop, interval_s)


def halted_reason(desk: Desk | None) -> str:
    """Why the kill switch tripped today: the desk keeps only the flag, the journal's day
    state the reason (a kill's who and whence, the daily loss), as report reads it."""
    if desk is None or desk.state is None or not desk.state.halted:
        return ""
    saved = desk.journal.day_state(desk.state.day)
    return saved.halted_reason if saved is not None else ""


class StatusFeed:
    """What the loop owns, read on the loop: for the heartbeat, the metrics' run record and
    the status endpoint (each gets plain values, never the loop's own objects)."""

    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        last_cycle: Callable[[], CycleFigures | None],
        cycles_done: Callable[[], int],
        desk: Callable[[], Desk | None],
        workers: Callable[[], dict[str, int]] = dict,
    ) -> None:
        self.settings = settings
        self.calendar = exchange_calendar(settings.schedule)
        self.workers = workers  # worker-N -> pid, for the RSS per role on /metrics
        self.broker = broker
        self.last_cycle = last_cycle
        self.cycles_done = cycles_done
        self.desk = desk
        self.market_open = False  # set by the loop as it waits for the market or runs
        self.phase = "starting"  # starting | waiting for gateway | trading: see say()
        self.announced = asyncio.Event()  # READY=1 said: systemd's watchdog runs from then on
        self.last_cycle_mono: float | None = None
        self.totals = CycleTotals()  # every cycle of the run, counted (counters, histogram)

    def cycle_ended(self, summary: CycleSummary) -> None:
        """Told once per cycle, on the loop: its end time, and its figures counted."""
        self.last_cycle_mono = time.monotonic()
        skipped = sum(1 for r in summary.results if r.ok and r.skipped)
        failed = len(summary.failed)
        self.totals = self.totals.add(
            summary.seconds,
            decided=len(summary.results) - failed - skipped,
            skipped=skipped,
            failed=failed,
            decisions=[(d.accepted, d.rule) for d in summary.decisions],
        )

    def say(self, phase: str, status: str) -> None:
        """The phase for /healthz, and systemd's READY=1 with STATUS=: the bot is up and doing
        its job, trading or waiting for its gateway (a unit's start timeout must not end a
        wait through a weekend)."""
        self.phase = phase
        notify(f"READY=1\nSTATUS={status}")
        self.announced.set()

    def waiting(self, status: str) -> None:
        """Told once by the start's wait for a gateway that is not there yet."""
        self.say("waiting for gateway", status)

    def healthy(self) -> bool:
        """Worth a heartbeat: connected, and the last cycle did not fail every symbol."""
        last = self.last_cycle()
        failing = last is not None and last.symbols > 0 and last.failed == last.symbols
        return self.broker.is_connected() and not failing

    def state(self) -> str:
        """What the bot is doing, in words: a lost connection mid-run is waited for too."""
        if self.phase == "trading" and not self.broker.is_connected():
            return "waiting for gateway"
        return self.phase

    def run_info(self) -> dict[str, Any]:
        schedule = self.settings.schedule
        return {
            "pid": os.getpid(),
            "cycles_done": self.cycles_done(),
            "planned_cycles": schedule.cycles,
            "planned_s": schedule.max_runtime_s,
        }

    def status(self, session_ts: float | None = None) -> Status:
        """The Status of now; ``session_ts``, the session clock's reading (a sim's is pinned),
        dates the dashboard's clock and the next open."""
        desk = self.desk()
        state = desk.state if desk is not None else None
        last = self.last_cycle()
        pnl = None
        if state is not None:
            pnl = (
                state.daily_pnl
                if state.daily_pnl is not None
                else (state.equity - state.start_equity)
            )
        return Status(
            state=self.state(),
            connected=self.broker.is_connected(),
            market_open=self.market_open,
            halted=bool(state and state.halted),
            halted_reason=halted_reason(desk),
            cycles=self.cycles_done(),
            last_cycle_mono=self.last_cycle_mono,
            cycle_seconds=last.seconds if last else None,
            symbols_ok=last.symbols - last.failed if last else 0,
            symbols_failed=last.failed if last else 0,
            symbols_skipped=last.skipped if last else 0,
            open_positions=len(desk.journal.open_positions()) if desk is not None else 0,
            day_pnl=pnl,
            broker=dict(self.broker.stats()),
            totals=self.totals,
            processes=(("supervisor", os.getpid()), *sorted(self.workers().items())),
            paused=bool(desk and desk.paused),
            session_ts=session_ts,
            next_open_ts=self._next_open(session_ts),
        )

    def _next_open(self, now: float | None) -> float | None:
        if now is None or self.market_open:
            return None
        try:
            return next_open(self.calendar, now)
        except ValueError:  # none within 15 days (a calendar without sessions)
            return None


async def publish_status(
    stop: asyncio.Event, server: StatusServer, feed: StatusFeed, now: Callable[[], float]
) -> None:
    """A fresh Status for the endpoint every second, built on the loop (``now``: the
    session clock)."""
    while not stop.is_set():
        try:
            server.publish(feed.status(now()))
        except Exception:  # noqa: BLE001 - the endpoint must never take the bot down
            log.exception("building the status for the endpoint failed")
        await pause(stop, 1.0)


def serve_status(
    port: int,
    stop: asyncio.Event,
    feed: StatusFeed,
    now: Callable[[], float] = time.time,
) -> tuple[StatusServer | None, asyncio.Task[None] | None]:
    """The status endpoint on ``port`` (monitoring.http_port; 0: none) and the task feeding
    it, from the start: it says "starting", "waiting for gateway", then "trading". The
    dashboard's day is read from the journal's file on the server's thread, read-only."""
    if not port:
        return None, None
    journal = feed.settings.execution.journal_path
    bind = feed.settings.monitoring.bind
    prices = Prices()  # kept between reads: each parses only the signals journaled since
    server = StatusServer(
        port,
        host=bind,
        day_state=lambda: read_day_state(journal, None, prices),
        token=configured_token(feed.settings),  # bound beyond loopback: the state needs it
    )
    server.dashboard.universe = tuple(feed.settings.universe.symbols)
    log.info(
        "status endpoint on http://%s:%d (the dashboard at /, /healthz, /metrics)",
        bind,
        server.start(),
        extra={"event": "http_status"},
    )
    return server, asyncio.ensure_future(publish_status(stop, server, feed, now))


async def systemd_watchdog(stop: asyncio.Event, announced: asyncio.Event) -> None:
    """WATCHDOG=1 every half WatchdogSec while the loop runs, from READY=1 on (``announced``),
    market open or not (a gateway outage is waited out by the bot, at start as mid-run;
    only a wedged loop misses these)."""
    interval = watchdog_interval_s()
    if interval is None:
        return
    either = [asyncio.ensure_future(e.wait()) for e in (stop, announced)]
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    for waiter in either:
        waiter.cancel()
    while not stop.is_set():
        notify("WATCHDOG=1")
        await pause(stop, interval)
