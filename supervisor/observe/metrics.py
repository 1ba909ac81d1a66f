"""Soak monitor: psutil samples of every process plus buffer measures, one JSON line each.

    supervisor loop --record(processes, buffers, cycle)--> Monitor
        Monitor --psutil--> supervisor + each worker (RSS, USS, CPU %, threads, files, fds)
        Monitor --tail----> the gateway's own log (buffer warnings)
        Monitor --append--> metrics.jsonl (rotated: metrics.jsonl.1 ... .N)
    tools/soak_report.py <--reads-- metrics.jsonl*

One metrics line (the schema ``tools/soak_report.py`` reads)::

    {"ts": 1767886200.0,            # epoch seconds (wall clock, orders rotated files)
     "mono": 5321.7,                # time.monotonic() of the writing process
     "processes": {                 # only the processes alive at sampling time
       "supervisor": {"pid": 100, "rss_kb": 81234, "uss_kb": 60000 | null,
                      "cpu_pct": 0.4 | null, "threads": 5, "open_files": 3 | null,
                      "fds": 21 | null},
       "worker-1": {...}},          # a respawned worker appears under its new name
     "buffers": {"live_tickers": 0, "pending_requests": 0, "recv_buffer_bytes": 0,
                 "bytes_in_total": 81920, "errors.2104": 3, ...},
     "gateway_log": {"output_exceeded": 0, "ebuffer_grown": 0} | null,  # null: not watched
     "cycle": {"cycle_id": 12, "seconds": 0.41, "ok": 3, "failed": 0} | null,
     "run": {"pid": 100, "cycles_done": 12, "planned_cycles": 2000, "planned_s": 0}}
                                    # + "ended", "exit_code", "by_signal" in the last
                                    # record of a run (supervisor/observe/soak_run.py)

Buffer names follow one convention, so the report knows what to judge:
- ``errors.<code>`` / ``warnings.<code>``: cumulative counts of IBKR messages by code;
- a name ending ``_total``: any other cumulative counter (``bytes_in_total``,
  ``pacing_wait_s_total``): reported as a run total, never judged as growth;
- anything else is a level (a gauge: live tickers, pending requests, queue depths); a level
  whose name ends ``_bytes`` is a buffer size, judged against the KB growth threshold.

``cpu_pct`` is null on the first sample of a pid: psutil measures CPU between two calls on the
same ``psutil.Process`` object, so the objects are cached per pid (and pruned when a pid is no
longer asked for, so a week of respawns does not grow the cache).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import psutil

from common.config import MonitoringSettings
from supervisor.observe.repeats import Repeated, os_reason
from supervisor.observe.soak import least_squares_slope

log = logging.getLogger(__name__)

HISTORY_POINTS = 720  # RSS samples kept per process for the growth slope (6 h at 30 s)
GATEWAY_READ_CHUNK_BYTES = 4 * 1024 * 1024  # read the gateway log in bounded pieces


class ProcessSampler:
    """psutil figures per pid, keeping one ``psutil.Process`` per pid so CPU % has a baseline."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    def sample(self, pid: int) -> dict[str, Any] | None:
        proc, first = self._process(pid)
        if proc is None:
            return None
        try:
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    raise psutil.ZombieProcess(pid)
                cpu = proc.cpu_percent(interval=None)
                figures = {
                    "pid": pid,
                    "rss_kb": proc.memory_info().rss // 1024,
                    "uss_kb": _uss_kb(proc),
                    "cpu_pct": None if first else round(cpu, 2),
                    "threads": proc.num_threads(),
                    "open_files": _open_files(proc),
                    "fds": _fds(proc),
                }
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            self._procs.pop(pid, None)
            return None
        except psutil.AccessDenied:
            self._procs.pop(pid, None)
            log.warning("pid %d is not ours to sample; skipped from this record", pid)
            return None
        return figures

    def forget_except(self, pids: Iterable[int]) -> None:
        """Drop cached processes not asked for any more (dead or replaced workers)."""
        keep = set(pids)
        for pid in [p for p in self._procs if p not in keep]:
            del self._procs[pid]

    def _process(self, pid: int) -> tuple[psutil.Process | None, bool]:
        proc = self._procs.get(pid)
        if proc is not None and proc.is_running():
            return proc, False
        try:  # new pid, or the pid now belongs to another process: start a fresh baseline
            proc = psutil.Process(pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            self._procs.pop(pid, None)
            return None, True
        self._procs[pid] = proc
        return proc, True


def _uss_kb(proc: psutil.Process) -> int | None:
    try:
        return int(proc.memory_full_info().uss) // 1024
    except (psutil.AccessDenied, AttributeError):
        # Not permitted (another user's process) or no USS on this platform: RSS still tells
        # the story, so the field is null rather than the sample lost.
        return None


def _open_files(proc: psutil.Process) -> int | None:
    try:
        return len(proc.open_files())
    except psutil.AccessDenied:
        return None  # not ours to inspect: the other figures are still worth recording


def _fds(proc: psutil.Process) -> int | None:
    try:
        if hasattr(proc, "num_fds"):
            return int(proc.num_fds())
        return int(proc.num_handles())  # Windows: handles are the fd equivalent
    except psutil.AccessDenied:
        return None  # as above: one missing figure, not a lost sample


_default_sampler = ProcessSampler()


def sample_process(pid: int) -> dict[str, Any] | None:
    """RSS, USS, CPU %, threads, open files and fds of ``pid``; None when it is gone."""
    return _default_sampler.sample(pid)


class MetricsWriter:
    """Appends JSON lines, flushed one by one, rolling ``path`` over to ``path.1`` … ``.N``."""

    def __init__(self, path: str | Path, rotate_bytes: int, keep_files: int) -> None:
        self.path = Path(path)
        self.rotate_bytes = rotate_bytes
        self.keep_files = keep_files
        self.write_errors = 0
        self._file: IO[str] | None = None
        # a read-only or full disk fails every sample: said once with a count, not each time
        self._unwritable = Repeated(log, f"metrics lines not written to {self.path}")
        self._not_json = Repeated(log, "metrics line not written: not plain JSON")
        self._unclosable = Repeated(log, "closing the metrics file failed")

    def write(self, record: dict[str, Any]) -> bool:
        """Write one line; False (logged) when the disk refuses: metrics never stop trading."""
        try:
            line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        except (TypeError, ValueError) as exc:
            self.write_errors += 1
            self._not_json.failed(
                str(exc), "the caller's measure needs fixing, the next sample is unaffected"
            )
            return False
        try:
            handle = self._open()
            if handle.tell() > 0 and handle.tell() + len(line) > self.rotate_bytes:
                handle = self._rotate()
            handle.write(line)
            handle.flush()
        except OSError as exc:
            self.write_errors += 1
            self._unwritable.failed(os_reason(exc), "the next sample tries again")
            self.close()
            return False
        self._unwritable.succeeded()
        return True

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                self._unclosable.failed(os_reason(exc), "lines were flushed")
            else:
                self._unclosable.succeeded()
            self._file = None

    def _open(self) -> IO[str]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        return self._file

    def _rotate(self) -> IO[str]:
        self.close()
        oldest = self._numbered(self.keep_files)
        if oldest.exists():
            oldest.unlink()
        for n in range(self.keep_files - 1, 0, -1):
            if self._numbered(n).exists():
                os.replace(self._numbered(n), self._numbered(n + 1))
        os.replace(self.path, self._numbered(1))
        return self._open()

    def _numbered(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")


_OUTPUT_EXCEEDED = re.compile(rb"Output exceeded limit")
_EBUFFER_GROWN = re.compile(rb"EBuffer.*has grown")


class GatewayLogWatcher:
    """Counts the gateway's buffer warnings in lines appended since it started watching.

    Lines already in the file when watching starts belong to earlier runs and are skipped. The
    file is opened and closed on every poll (the gateway may run on Windows, where an open
    handle would stop it rotating its log); a new inode or a shrunken file means rotation or
    truncation, and reading restarts at the top of the new file. A line still being written
    (no newline yet) is counted once it is complete.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._counts = {"output_exceeded": 0, "ebuffer_grown": 0}
        self._unreadable = Repeated(log, f"gateway log {self.path} unreadable")
        self._inode: int | None = None
        self._offset = 0
        stat = self._stat()
        if stat is not None:
            self._inode, self._offset = stat.st_ino, stat.st_size

    def counts(self) -> dict[str, int]:
        """Read what was appended since the last call and return the running totals."""
        stat = self._stat()
        if stat is None:
            return dict(self._counts)  # not created yet, or between rotation steps
        if stat.st_ino != self._inode or stat.st_size < self._offset:
            self._inode, self._offset = stat.st_ino, 0
        if stat.st_size > self._offset:
            try:
                self._read_new()
            except OSError as exc:
                self._unreadable.failed(os_reason(exc), "counts resume once it is readable")
            else:
                self._unreadable.succeeded()
        return dict(self._counts)

    def _stat(self) -> os.stat_result | None:
        try:
            return self.path.stat()
        except FileNotFoundError:
            return None

    def _read_new(self) -> None:
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            while True:
                chunk = f.read(GATEWAY_READ_CHUNK_BYTES)
                end = chunk.rfind(b"\n") + 1
                if end == 0 and len(chunk) == GATEWAY_READ_CHUNK_BYTES:
                    end = len(chunk)  # a "line" longer than a chunk: count it, do not stall
                self._count_lines(chunk[:end])
                self._offset += end
                if len(chunk) < GATEWAY_READ_CHUNK_BYTES:
                    return

    def _count_lines(self, data: bytes) -> None:
        for line in data.splitlines():
            if _OUTPUT_EXCEEDED.search(line):
                self._counts["output_exceeded"] += 1
            if _EBUFFER_GROWN.search(line):
                self._counts["ebuffer_grown"] += 1


class Monitor:
    """One ``record()`` per interval: samples, buffer measures and gateway warnings, written."""

    def __init__(
        self,
        settings: MonitoringSettings,
        writer: MetricsWriter | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        history_points: int = HISTORY_POINTS,
    ) -> None:
        self.settings = settings
        self.writer = writer or MetricsWriter(
            settings.metrics_path, settings.rotate_bytes, settings.keep_files
        )
        self.gateway = (
            GatewayLogWatcher(settings.gateway_log_path) if settings.gateway_log_path else None
        )
        self._clock = clock
        self._wall_clock = wall_clock
        self._history_points = history_points
        self._sampler = ProcessSampler()
        self._rss: dict[str, deque[tuple[float, float, int]]] = {}

    def record(
        self,
        *,
        processes: dict[str, int],
        buffers: dict[str, float],
        cycle: dict[str, Any] | None = None,
        run: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Sample ``processes`` (name -> pid; gone pids skipped), write one line, return it."""
        mono = self._clock()
        sampled = {}
        for name, pid in processes.items():
            figures = self._sampler.sample(pid)
            if figures is not None:
                sampled[name] = figures
        self._sampler.forget_except(processes.values())
        self._remember_rss(mono, sampled)
        record = {
            "ts": self._wall_clock(),
            "mono": mono,
            "processes": sampled,
            "buffers": {name: _finite(value) for name, value in buffers.items()},
            "gateway_log": self.gateway.counts() if self.gateway is not None else None,
            "cycle": cycle,
        }
        if run is not None:
            record["run"] = run
        self.writer.write(record)
        return record

    def memory_growth_kb_per_h(self, name: str) -> float | None:
        """Least-squares RSS slope of ``name`` over its recorded samples; None below 2 points."""
        history = self._rss.get(name)
        if not history:
            return None
        slope_per_s = least_squares_slope(list(history))
        return None if slope_per_s is None else slope_per_s * 3600.0

    def memory_alerts(self, min_span_s: float = 1800.0) -> dict[str, float]:
        """Processes growing faster than the alert threshold, once ``min_span_s`` is covered.

        Start-up growth (imports, caches filling) looks like a leak over a few minutes, hence
        the minimum span before a slope may alert.
        """
        limit_kb_per_h = self.settings.memory_growth_alert_mb_per_h * 1024.0
        alerts = {}
        for name, history in self._rss.items():
            if len(history) < 3 or history[-1][0] - history[0][0] < min_span_s:
                continue
            slope = self.memory_growth_kb_per_h(name)
            if slope is not None and slope > limit_kb_per_h:
                alerts[name] = slope
        return alerts

    def close(self) -> None:
        self.writer.close()

    def _remember_rss(self, mono: float, sampled: dict[str, dict[str, Any]]) -> None:
        for name in [n for n in self._rss if n not in sampled]:
            del self._rss[name]  # gone or renamed: its history would only leak
        for name, figures in sampled.items():
            history = self._rss.setdefault(name, deque(maxlen=self._history_points))
            if history and history[-1][2] != figures["pid"]:
                history.clear()  # same name, new process: its own slope starts here
            history.append((mono, float(figures["rss_kb"]), int(figures["pid"])))


def _finite(value: Any) -> Any:
    # JSON has no NaN/inf: a measure that is not a finite number is written as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
