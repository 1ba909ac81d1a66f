"""The soak monitor's loop inside the supervisor: one metrics record per monitoring interval.

    Supervisor parts (pool, broker, request serving, the latest cycle's figures)
        --> MonitorLoop.snapshot, on the event loop: plain copies of what the loop changes
            (a thread iterating the loop's dicts sees them change size under it)
        --> MonitorLoop.write, off the loop: psutil and the file write may be slow
        --> Monitor.record: psutil figures + buffer measures --> metrics JSONL
        --> alerts: new gateway buffer warnings, memory growing too fast

Monitoring cannot hurt the bot: a sample that fails is logged and counted
(``monitor_errors_total`` in the next record), never raised into the loop or the shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from common.config import MonitoringSettings
from supervisor.broker.base import Broker
from supervisor.observe.alerts import Alerter
from supervisor.observe.metrics import Monitor
from supervisor.runtime.pool import WorkerPool
from supervisor.runtime.serving import DataService
from supervisor.runtime.status import CycleFigures
from supervisor.runtime.waits import pause

log = logging.getLogger("supervisor.runtime.monitoring")


class MonitorLoop:
    def __init__(
        self,
        settings: MonitoringSettings,
        monitor: Monitor,
        alerter: Alerter,
        pool: WorkerPool,
        broker: Broker,
        service: DataService,
        serving: Callable[[], int],
        last_cycle: Callable[[], CycleFigures | None],
        run_info: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self.settings = settings
        self.monitor = monitor
        self.alerter = alerter
        self.pool = pool
        self.broker = broker
        self.service = service
        self.serving = serving  # requests being served right now
        self.last_cycle = last_cycle
        self.run_info = run_info  # the run's own account: cycles done of planned (soak_run)
        self._gateway_warnings = 0
        self._silences = 0.0  # gateway_silent_total already alerted
        self.errors = 0

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        reported = 0
        while not stop.is_set():
            await pause(stop, self.settings.interval_s)
            cycle = None
            last = self.last_cycle()
            if last is not None and last.cycle_id != reported:
                reported = last.cycle_id
                cycle = {
                    "cycle_id": last.cycle_id,
                    "seconds": round(last.seconds, 4),
                    "ok": last.symbols - last.failed,
                    "failed": last.failed,
                }
            try:
                processes, buffers = self.snapshot()
                run = self.run_info()
                await loop.run_in_executor(None, self.write, processes, buffers, cycle, run)
            except Exception:  # noqa: BLE001 - monitoring must never take the bot down
                self.errors += 1
                log.exception(
                    "a monitoring sample failed (%d so far); trading goes on",
                    self.errors,
                    extra={"event": "monitor_error"},
                )

    def snapshot(self) -> tuple[dict[str, int], dict[str, float]]:
        """What the loop owns, copied on the loop: worker pids and buffer measures."""
        processes = {"supervisor": os.getpid()}
        for handle in list(self.pool.workers.values()):
            if handle.pid is not None:
                processes[f"worker-{handle.worker_id}"] = handle.pid
        buffers: dict[str, float] = {f"broker.{k}": v for k, v in self.broker.stats().items()}
        buffers.update(
            {
                "pending_requests": self.serving(),
                "torn_messages_total": self.pool.torn_messages,
                "inbox_depth": sum(_depth(w.inbox) for w in self.pool.workers.values()),
                "requests_served_total": self.service.served,
                "requests_failed_total": self.service.failed,
                "serving_busy_s_total": round(self.service.busy_s, 3),
                "worker_respawns_total": self.pool.respawns,
                "worker_hangs_total": self.pool.hangs,
                "worker_retired_total": self.pool.retired,
                "worker_spawn_failures_total": self.pool.owed.failures,
                "alerts_dropped_total": self.alerter.stats()["dropped"],
                "monitor_errors_total": self.errors,
            }
        )
        self._alert_silence(buffers.get("broker.gateway_silent_total", 0.0))
        return processes, buffers

    def _alert_silence(self, silences: float) -> None:
        """One alert per gateway that went silent (the link logged it and reconnects)."""
        if silences > self._silences:
            self.alerter.send(
                "gateway_silent",
                "IB Gateway stopped answering with its socket "
                "open: the connection was reset and reconnects "
                f"({silences:.0f} time(s) in this run)",
            )
            self._silences = silences

    def write(
        self,
        processes: dict[str, int],
        buffers: dict[str, float],
        cycle: dict[str, Any] | None,
        run: dict[str, Any] | None = None,
    ) -> None:
        record = self.monitor.record(processes=processes, buffers=buffers, cycle=cycle, run=run)
        self._alert(record)

    def final(self, exit_code: int, by_signal: bool) -> None:
        """The run's last word in the metrics: how it ended (a soak stopped early, or one
        whose end is missing because it was killed, is INCOMPLETE, never a PASS)."""
        try:
            run = {**self.run_info(), "ended": True, "exit_code": exit_code, "by_signal": by_signal}
            self.monitor.record(processes={"supervisor": os.getpid()}, buffers={}, run=run)
        except Exception:  # noqa: BLE001 - monitoring must never take the bot down
            self.errors += 1
            log.exception("the final metrics record failed", extra={"event": "monitor_error"})

    def _alert(self, record: dict[str, Any]) -> None:
        warnings = sum((record.get("gateway_log") or {}).values())
        if warnings > self._gateway_warnings:
            self.alerter.send(
                "buffer_warning",
                f"the gateway logged {warnings} buffer warnings "
                f"({warnings - self._gateway_warnings} new)",
            )
            self._gateway_warnings = warnings
        for name, slope in self.monitor.memory_alerts().items():
            self.alerter.send_once(
                f"memory-{name}", "memory", f"{name} memory grows {slope / 1024:.1f} MB/h"
            )


def _depth(queue: Any) -> int:
    """A multiprocessing queue's depth, or -1 where the platform cannot tell (macOS)."""
    try:
        return int(queue.qsize())
    except NotImplementedError:
        return -1
