"""The supervisor: owns the broker connection, the worker pool, the desk and the journal.

    broker <-- DataService <-- Requests --------- channel[w] <-- worker w (spawned pool)
                    +--------> Replies ---------- inbox[w] ----> worker w
    CycleRunner --> PoolSymbols: CycleRun --> SymbolTask --> inbox[w]
    SymbolResult (channel[w]) --> CycleRun --> CycleRunner: CycleRecord (journal, the
        strategy's memory) and Desk: risk.evaluate --> Executor (mode) --> Journal (SQLite)
    Monitor (psutil + buffers -> metrics JSONL) every monitoring.interval_s; Alerter thread

The main loop reads top to bottom: start workers, connect, then per cycle wait for the
market, run the cycle (runtime/cycle_runner.py), sleep; signal handlers only set the stop
event.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
import time
from collections.abc import Callable, Coroutine
from datetime import date
from typing import Any

from common.calendar import calendar_tz, exchange_calendar, trading_day
from common.config import Settings
from common.messages import FromWorker, Requests, SymbolResult
from common.settings_file import journal_for, origins_text
from common.settings_warnings import settings_warnings
from supervisor import exitcodes
from supervisor.broker.base import Broker, BrokerError, ConnectionLost
from supervisor.journal.rows import JournalError
from supervisor.journal.store import Journal
from supervisor.observe.alerts import Alerter
from supervisor.observe.http_status import StatusPortError, StatusServer
from supervisor.observe.metrics import Monitor
from supervisor.observe.systemd import notify
from supervisor.runtime.clock import Clock
from supervisor.runtime.controls import attach as attach_controls
from supervisor.runtime.cycle import CycleSummary
from supervisor.runtime.cycle_runner import CycleRunner
from supervisor.runtime.day_end import DayEnd
from supervisor.runtime.expiry_timer import close_desk, sleep_between_cycles
from supervisor.runtime.gateway_wait import connect
from supervisor.runtime.monitoring import MonitorLoop
from supervisor.runtime.outages import OutageAlerts, exits_at_stake
from supervisor.runtime.pool import BootFailure, WorkerHandle, WorkerPool
from supervisor.runtime.serving import DataService
from supervisor.runtime.status import (
    CycleFigures,
    StatusFeed,
    heartbeats,
    progress,
    serve_status,
    stopped_text,
    systemd_watchdog,
)
from supervisor.runtime.symbol_runs import PoolSymbols
from supervisor.runtime.telegram_commands import TelegramCommands, start_commands
from supervisor.runtime.universe import NoKnownSymbols, Universe
from supervisor.runtime.waits import unless_stopped, wait_for_market, wait_for_reconnect
from supervisor.trading.controls import Controls
from supervisor.trading.cycle_record import CycleRecord
from supervisor.trading.desk import Desk
from supervisor.trading.execution import Executor, ModeNotAvailable, live_refusal
from supervisor.trading.expiry_guard import ExpiryGuard
from supervisor.trading.sessions import SessionBook

log = logging.getLogger("supervisor.runtime.loop")


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        clock: Clock,
        on_log: Callable[[logging.LogRecord], None],
        echo: Callable[[str], None] = print,
        mp_context: str = "spawn",
        cli_live: bool = False,
        wait_for_gateway: bool = False,  # `run`: a gateway not there yet is waited for
        on_cycle: Callable[[CycleSummary], None] | None = None,
        # each cycle's start (id, day, session clock): the flight recorder's cycles row
        on_cycle_start: Callable[[int, str, float], None] | None = None,
    ) -> None:
        self.settings = journal_for(settings, broker.name)  # a no-op once the session did it
        self.broker = broker
        self.clock = clock
        self.echo = echo
        self.cli_live = cli_live
        self.wait_for_gateway = wait_for_gateway
        self.journal: Journal | None = None
        self.desk: Desk | None = None
        self.guard: ExpiryGuard | None = None  # exits before expiry, on a timer of their own
        # "once a day" is the market's day, which a pinned session keeps apart from the wall's
        self.alerter = Alerter(settings.alerts, today=self._market_day)
        self.monitor = Monitor(settings.monitoring)
        self.calendar = exchange_calendar(settings.schedule)
        self.sessions = SessionBook(broker, self.calendar)
        self.universe = Universe(settings.universe.symbols)  # checked at the first cycle
        self.service = DataService(
            broker, settings.ibkr.request_timeout_s, self.calendar, clock.now
        )
        self.pool = WorkerPool(
            settings, self._on_message, self._on_death, on_log, mp_context, alert=self.alerter.send
        )  # a worker it cannot start
        self.symbols = PoolSymbols(self.pool, settings, broker.is_connected)  # the cycle's
        self.runner: CycleRunner | None = None  # the cycle, once the desk is there
        self.stop = asyncio.Event()
        self.exit_code = exitcodes.OK
        # only the last cycle's figures are read: its results go once journaled (status.py)
        self.last_cycle: CycleFigures | None = None
        self.on_cycle = on_cycle  # a test's or a benchmark's look at each summary
        self.on_cycle_start = on_cycle_start
        self.cycles_done = 0
        self.failed_symbols_total = 0
        self._serving: set[asyncio.Task[None]] = set()
        # its own tasks by name (status page, watchdog, monitor, heartbeats): ended at shutdown
        self._background: dict[str, asyncio.Task[None]] = {}
        self._started = time.monotonic()
        self.watcher: MonitorLoop | None = None
        self.http: StatusServer | None = None
        self.telegram: TelegramCommands | None = None  # alerts.telegram_commands
        self.feed = self._status_feed(settings)
        self.by_signal = False
        self._disconnects: list[float] = []
        self.outages: OutageAlerts | None = None  # once the journal is open (outages.py)
        self.day_end = DayEnd(settings, self.alerter, self.calendar)  # its summary alerts

    def _status_feed(self, settings: Settings) -> StatusFeed:
        """What /healthz, the dashboard and systemd are told, read from this supervisor."""
        return StatusFeed(
            settings,
            self.broker,
            lambda: self.last_cycle,
            lambda: self.cycles_done,
            lambda: self.desk,
            self._worker_pids,
        )

    def _worker_pids(self) -> dict[str, int]:
        workers = list(self.pool.workers.values())  # a copy: read on the loop, built here
        return {f"worker-{w.worker_id}": w.pid for w in workers if w.pid is not None}

    def _market_day(self) -> date:
        return trading_day(self.clock.now(), calendar_tz(self.settings.schedule))

    # --- the main loop -------------------------------------------------------------------------

    async def run(self) -> int:
        self._install_signal_handlers()
        for text in settings_warnings(self.settings):
            log.warning(text, extra={"event": "settings_warning"})
        self.alerter.start()  # before the connect: "cannot connect" is worth an alert too
        try:
            if await self._start():
                await self._cycles()
        except BootFailure as exc:
            log.error("workers failed to start: %s", exc)
            self.exit_code = exitcodes.HALTED
        except BrokerError as exc:
            log.error("broker %s: %s", self.broker.name, exc)
            self.exit_code = exitcodes.CANNOT_CONNECT
        except (ModeNotAvailable, JournalError, StatusPortError, NoKnownSymbols) as exc:
            log.error("cannot start: %s", exc)
            self.exit_code = exitcodes.USAGE
        except sqlite3.Error as exc:  # disk full, I/O: what was committed stays committed
            log.error(
                "the journal %s cannot be written (%s): stopping before any new order; "
                "everything committed is kept and the next start resumes from it",
                self.settings.execution.journal_path,
                exc,
                extra={"event": "journal_failed"},
            )
            self.exit_code = exitcodes.STORAGE
        except Exception as exc:  # noqa: BLE001 - a bug: said once, then a clean shutdown
            log.exception("unhandled error, stopping: %r", exc, extra={"event": "crash"})
            self.exit_code = exitcodes.FAILED
        finally:
            await self._shutdown()
        return self.exit_code

    async def _cycles(self) -> None:
        while self._more_cycles() and await wait_for_market(
            self.stop,
            self.clock,
            self.sessions,
            self.settings,
            self.feed,
            lambda session, now: self.day_end.over(self.journal, session, now),
        ):
            started = time.monotonic()
            self.day_end.at_close(self.journal, self.clock.now())  # regular_hours_only false
            try:
                summary = await self._run_cycle()
            except ConnectionLost as exc:
                self._disconnects = await wait_for_reconnect(
                    self.stop,
                    self.broker,
                    self.alerter,
                    self._disconnects,
                    exc,
                    self.outages,
                    self.settings.alerts.outage_after_s,
                    await exits_at_stake(
                        self.guard, self.clock.now, self.settings.alerts.outage_after_s
                    ),
                )
                self.day_end.latest(self.journal, self.clock.now())  # an outage past the close
                continue
            self.echo(
                summary.line()
                + progress(
                    self.cycles_done,
                    self.settings.schedule.cycles,
                    time.monotonic() - self._started,
                )
            )
            if self.on_cycle is not None:
                self.on_cycle(summary)
            del summary  # nothing holds the cycle's results through the sleep
            if self.stop.is_set() or not self._more_cycles():
                break  # no sleep after the last of --cycles N
            interval = self.settings.schedule.interval_s  # market seconds
            elapsed = (time.monotonic() - started) * self.clock.rate
            await sleep_between_cycles(
                self.clock,
                interval - elapsed,
                self.stop,
                self.guard,
                self.desk.lock if self.desk else asyncio.Lock(),
            )

    async def _start(self) -> bool:
        """Workers, connection, journal and desk; False if a stop came first (honoured at
        once: a connect to a gateway that does not answer is not waited out)."""
        # the live keys the file and the command line decide are refused before a worker
        # starts or a gateway is waited for; the account is checked again once connected
        refusal = live_refusal(self.settings, self.cli_live, self.broker.name, None)
        if refusal is not None:
            raise ModeNotAvailable(f"live trading refused: {refusal}")
        self.journal = Journal(self.settings.execution.journal_path)
        # before the connect: a restart inside an outage already alerted does not alert again
        self.outages = OutageAlerts(self.alerter, self.journal.outages)
        self.day_end.latest(self.journal, self.clock.now())  # a stop or crash after a close
        # from the start: a wait for the gateway is said on /healthz and to systemd
        self.http, status_task = serve_status(
            self.settings.monitoring.http_port, self.stop, self.feed, self.clock.now
        )
        if status_task is not None:
            self._background["status"] = status_task
        self._run_in_background("watchdog", systemd_watchdog(self.stop, self.feed.announced))
        self.pool.start(asyncio.get_running_loop())
        if not await unless_stopped(
            self.stop, self.pool.wait_ready(self.settings.workers.start_timeout_s)
        ):
            return False
        if not await connect(
            self.stop,
            self.broker,
            self.settings.ibkr,
            self.alerter,
            self.feed.waiting if self.wait_for_gateway else None,
            self.outages,
        ):
            return False
        executor = await self._open_desk(self.journal)
        assert self.desk is not None
        controls = Controls(self.desk, self.alerter)
        attach_controls(self.http, self.settings, controls, self.clock.now)
        self.telegram = start_commands(
            self.settings, self.http, self.desk, controls, self.feed.status, self.clock.now
        )
        self._watch()
        self._say_ready(executor.mode)
        return True

    async def _open_desk(self, journal: Journal) -> Executor:
        """The account checked against the mode and claimed in the journal; the desk, its
        expiry guard and the cycle on top of it."""
        accounts = self.broker.managed_accounts()
        refusal = live_refusal(self.settings, self.cli_live, self.broker.name, accounts)
        if refusal is not None:
            raise ModeNotAvailable(f"live trading refused: {refusal}")
        journal.claim(
            self.broker.name, self.settings.ibkr.account or (accounts[0] if accounts else "")
        )
        executor = Executor(
            self.settings.execution.mode, self.broker, journal, self.settings.ibkr.account
        )
        self.desk = Desk(self.settings, self.broker, journal, executor, self.sessions, self.alerter)
        await self.desk.start_live(self.clock.now())
        self.guard = ExpiryGuard(self.desk)
        self.runner = CycleRunner(
            self.desk,
            CycleRecord(journal),  # the strategy's memory restored from the journal
            self.sessions,
            self.symbols,
            self.clock,
            lambda: self.universe.symbols(self.broker),
            self.stop,
            self.guard,
            self.on_cycle_start,
        )
        return executor

    def _watch(self) -> None:
        """The monitor's samples and the heartbeats, from now on until the stop."""
        self.watcher = MonitorLoop(
            self.settings.monitoring,
            self.monitor,
            self.alerter,
            self.pool,
            self.broker,
            self.service,
            lambda: len(self._serving),
            lambda: self.last_cycle,
            self.feed.run_info,
        )
        self._run_in_background("monitor", self.watcher.run(self.stop))
        interval = self.settings.alerts.heartbeat_interval_s
        heartbeat = heartbeats(self.stop, self.alerter, self.feed.healthy, interval)
        self._run_in_background("heartbeat", heartbeat)

    def _run_in_background(self, name: str, job: Coroutine[Any, Any, None]) -> None:
        self._background[name] = asyncio.ensure_future(job)

    def _say_ready(self, mode: str) -> None:
        assert self.journal is not None
        where = self.journal.path.resolve()
        keys = origins_text(self.settings)  # what the environment or a flag supplied
        said = f"; {keys}" if keys else ""
        log.info(
            "supervisor ready: %d workers, broker %s, mode %s, journal %s%s",
            len(self.pool.workers),
            self.broker.name,
            mode,
            where,
            said,
            extra={
                "event": "ready",
                "mode": mode,
                "broker": self.broker.name,
                "origins": self.settings.origins(),
            },
        )
        self.feed.say("trading", f"trading ({mode}) on {self.broker.name}")
        self.alerter.send(
            "start",
            f"bot started: broker {self.broker.name}, mode "
            f"{mode}, {len(self.settings.universe.symbols)} symbols, "
            f"journal {where}{said}",
        )

    def _more_cycles(self) -> bool:
        schedule = self.settings.schedule
        if schedule.max_runtime_s and time.monotonic() - self._started > schedule.max_runtime_s:
            log.info("max_runtime_s %.0f reached", schedule.max_runtime_s)
            return False
        return not self.stop.is_set() and not 0 < schedule.cycles <= self.cycles_done

    async def _run_cycle(self) -> CycleSummary:
        assert self.runner is not None
        summary = await self.runner.run()
        self.last_cycle = CycleFigures.of(summary)
        self.feed.cycle_ended(summary)
        self.cycles_done += 1
        self.failed_symbols_total += len(summary.failed)
        return summary

    # --- messages from workers -----------------------------------------------------------------

    def _on_message(self, message: FromWorker) -> None:
        if isinstance(message, SymbolResult):
            self.symbols.on_result(message)
        elif isinstance(message, Requests):
            task = asyncio.ensure_future(self._serve(message))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
        else:
            self.pool.mark_ready(message.worker_id)  # WorkerReady
            self.symbols.on_ready()

    async def _serve(self, batch: Requests) -> None:
        replies = await self.service.answer_all(batch.requests)
        if not self.pool.send(batch.worker_id, replies):
            log.debug("replies for gone worker %s dropped", batch.worker_id)

    def _on_death(self, handle: WorkerHandle, failure: str | None) -> None:
        self.symbols.on_death(handle)
        if handle.killed_for is not None and self.pool.hangs > 1:  # once is logged; again
            self.alerter.send_once(
                "worker_stuck",
                "worker_stuck",  # is worth a look
                f"{self.pool.hangs} workers killed for being stuck in this "
                f"run; the latest {handle.killed_for}",
            )
        if failure is not None:
            self.broker.stop_entries()  # as a signal does: nothing more leaves
            log.error("stopping: %s", failure, extra={"event": "boot_failure"})
            self.exit_code = exitcodes.HALTED
            self.stop.set()

    # --- signals and shutdown ------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        log.info(
            "%s received: stopping after the current step",
            signal.Signals(signum).name,
            extra={"event": "signal", "signal": signal.Signals(signum).name},
        )
        self.pool.stopping = True  # a worker that dies now is not replaced
        self.broker.stop_entries()  # even a bracket already waiting for its pacing slot
        self.by_signal = True
        self.stop.set()

    async def _shutdown(self) -> None:
        """Stop scheduling, drop pending serving, stop workers, disconnect, close the journal;
        logs flush last (the CLI closes them). Each step runs whatever the one before did."""
        self.stop.set()
        notify("STOPPING=1")
        if self.http is not None:
            self.http.control = None  # no control from here on: the desk is being closed
        if self.telegram is not None:
            self.telegram.stop()  # nor from a chat
        for task in list(self._serving):
            task.cancel()
        for name, running in self._background.items():
            try:
                await running
            except asyncio.CancelledError:
                pass
            except Exception:  # noqa: BLE001 - whatever it was, the shutdown goes on
                log.exception("%s task ended with an error", name)
        await self.pool.stop()
        if self.desk is not None and self.exit_code != exitcodes.STORAGE:
            await close_desk(self.desk, self.guard, self.clock, self.alerter)
        try:
            await self.broker.disconnect()
        except BrokerError as exc:
            log.warning("disconnect failed: %s (nothing left to cancel)", exc)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if self.journal is not None:
            try:  # a day whose session is over: said before the stop (a stop after a close)
                if self.exit_code != exitcodes.STORAGE:
                    self.day_end.latest(self.journal, self.clock.now())
            except sqlite3.Error as exc:  # the stop goes on
                log.warning("day summary not read at stop: %s", exc)
            self.journal.close()
        if self.watcher is not None:
            self.watcher.final(self.exit_code, self.by_signal)
        self._say_stopped()
        self.alerter.stop()
        self.monitor.close()
        if self.http is not None:
            self.http.stop()

    def _say_stopped(self) -> None:
        code = self.exit_code
        log.info(
            "supervisor stopped after %d cycles",
            self.cycles_done,
            extra={"event": "stopped", "exit_code": code},
        )
        if code == exitcodes.CANNOT_CONNECT and self.outages and self.outages.ongoing:
            return  # the outage's alert said it (once, not per restart); its end will be
        self.alerter.send(
            "stop" if code == exitcodes.OK else "exit",
            stopped_text(code, self.cycles_done),
            {"exit_code": code, "cycles": self.cycles_done},
        )
