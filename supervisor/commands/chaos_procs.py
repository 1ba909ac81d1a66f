"""The processes ``chaos`` runs and hurts: the simulated gateway (killed and restarted on its
port, its session clock carried over) and the bot (``python -m supervisor run``, read line by
line, its workers and memory watched).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from common.config import PROJECT_ROOT
from supervisor.runtime.clock import PinnedClock

CYCLE_LINE = re.compile(r"symbols ok \d+/(?P<n>\d+) failed (?P<failed>\d+) "
                        r"skipped (?P<skipped>\d+)")


class Gateway:
    """``python -m tools.gateway_sim`` on one port for the whole run."""

    def __init__(self, scenario: Path, out: Path) -> None:
        self.scenario = scenario
        self.out = out
        self.clock_file = out / "sim.clock"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []
        self.restarts = 0

    def start(self, session_start: datetime | None = None) -> None:
        port_file = self.out / "sim.port"
        port_file.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "tools.gateway_sim", "--scenario", str(self.scenario),
               "--port", str(self.port), "--port-file", str(port_file), "--clock-file",
               str(self.clock_file), "--stats-file", str(self.out / "sim.stats.json"),
               "--log-level", "WARNING"]
        if session_start is not None:
            cmd += ["--start", session_start.isoformat()]
        with open(self.out / "gateway_sim.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log,
                                         start_new_session=True)
        self.pids.append(self.proc.pid)
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the simulator did not start (see {log.name})")
            time.sleep(0.05)
        self.port = int(port_file.read_text().strip())

    def now(self) -> float:
        return PinnedClock.follow(json.loads(self.clock_file.read_text())).now()

    def kill_and_restart(self, down_s: float) -> None:
        """SIGKILL, ``down_s`` without a gateway, then the same port and the same session
        clock (a restarted IB Gateway is the same market, minutes later)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        time.sleep(down_s)
        self.start(datetime.fromtimestamp(self.now(), UTC))
        self.restarts += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Bot:
    """One ``python -m supervisor run`` against the gateway; its cycle lines are counted."""

    def __init__(self, settings: Path, gateway: Gateway, out: Path, number: int) -> None:
        cmd = [sys.executable, "-m", "supervisor", "run", "--config", str(settings),
               "--broker", "sim", "--sim-clock", str(gateway.clock_file), "--port",
               str(gateway.port), "--cycles", "0"]
        self.stderr_path = out / f"bot-{number}.stderr"
        with open(self.stderr_path, "w") as stderr:
            self.proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=stderr, text=True,
                                         start_new_session=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: queue.Queue[str] = queue.Queue()
        self.cycles = 0
        self.healthy = 0
        self.children: set[int] = set()
        self.rss_kb: list[tuple[float, float]] = []
        self.started = time.monotonic()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def new_cycles(self) -> tuple[int, int]:
        """Cycle lines printed since the last call, and how many of them were healthy (a
        symbol decided: neither every one failed nor every one skipped)."""
        count = healthy = 0
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line.startswith("cycle "):
                count += 1
                found = CYCLE_LINE.search(line)
                if found and int(found["failed"]) + int(found["skipped"]) < int(found["n"]):
                    healthy += 1
        self.cycles += count
        self.healthy += healthy
        return count, healthy

    def watch(self) -> None:
        """Remember every worker pid and the supervisor's RSS (for orphans and growth)."""
        try:
            me = psutil.Process(self.proc.pid)
            self.children.update(c.pid for c in me.children(recursive=True))
            self.rss_kb.append((time.monotonic(), me.memory_info().rss / 1024))
        except psutil.Error:
            pass

    def workers(self) -> list[int]:
        try:
            return [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)
                    if "spawn_main" in " ".join(c.cmdline())]
        except psutil.Error:
            return []

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, signum: int, timeout_s: float = 20.0) -> int | None:
        """The signal, then the exit code (None: still running after ``timeout_s``)."""
        self.watch()
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None

    def orphans(self, wait_s: float = 10.0) -> list[int]:
        """Workers still alive ``wait_s`` after the supervisor is gone."""
        procs = [psutil.Process(p) for p in self.children if psutil.pid_exists(p)]
        _, alive = psutil.wait_procs(procs, timeout=wait_s)
        return [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE]

    def rss_growth_kb(self, warmup_s: float = 20.0) -> float | None:
        steady = [kb for t, kb in self.rss_kb if t - self.started >= warmup_s]
        return steady[-1] - steady[0] if len(steady) >= 2 else None

    def traceback(self) -> bool:
        return "Traceback" in self.stderr_path.read_text(errors="replace")
