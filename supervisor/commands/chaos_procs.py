"""The processes ``chaos`` runs and hurts: the simulated gateway (killed and restarted on its
port, its session clock and its account (``--state-file``) carried over; frozen with SIGSTOP
and thawed), the bot (``python -m supervisor run``, read line by line, its workers watched)
and the memory of every process by role over the whole run (RssWatch).
"""

from __future__ import annotations

import json
import os
import queue
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from common.config import PROJECT_ROOT
from supervisor.commands.chaos_hang import HANG_CUE_ENV
from supervisor.commands.chaos_records import all_decided
from supervisor.runtime.clock import PinnedClock

ORDER_LOG = "sim-orders.jsonl"
CYCLE_LINE = re.compile(
    r"symbols ok (?P<ok>\d+)/(?P<n>\d+) failed (?P<failed>\d+) "
    r"skipped (?P<skipped>\d+)"
)
BOT_NOFILE = 1024  # systemd's default limit of open files: what a flood runs into


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
        self.frozen = False

    def start(self, session_start: datetime | None = None) -> None:
        port_file = self.out / "sim.port"
        port_file.unlink(missing_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "tools.gateway_sim",
            "--scenario",
            str(self.scenario),
            "--port",
            str(self.port),
            "--port-file",
            str(port_file),
            "--clock-file",
            str(self.clock_file),
            "--stats-file",
            str(self.out / "sim.stats.json"),
            "--order-log",
            str(self.out / ORDER_LOG),
            "--log-level",
            "WARNING",
            # the account outlives a restart, as IBKR's server-side orders do
            "--state-file",
            str(self.out / "sim.state.json"),
        ]
        if session_start is not None:
            cmd += ["--start", session_start.isoformat()]
        with open(self.out / "gateway_sim.log", "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=PROJECT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
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

    def freeze(self, frozen: bool) -> None:
        """SIGSTOP: the process holds its sockets open and answers nothing (an API port open
        but silent); SIGCONT: it goes on where it stopped."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)
        self.frozen = frozen

    def stop(self) -> None:
        if self.frozen:
            self.freeze(False)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Bot:
    """One ``python -m supervisor run`` against the gateway; its cycle lines are counted."""

    def __init__(
        self, settings: Path, gateway: Gateway, out: Path, number: int, live: bool = False
    ) -> None:
        cmd = [
            sys.executable,
            "-m",
            "supervisor",
            "run",
            "--config",
            str(settings),
            "--broker",
            "sim",
            "--sim-clock",
            str(gateway.clock_file),
            "--port",
            str(gateway.port),
            "--cycles",
            "0",
            *(["--live"] if live else []),
        ]
        self.stderr_path = out / f"bot-{number}.stderr"
        # the file names the account: none may come from the environment
        env = {k: v for k, v in os.environ.items() if not k.startswith("IBKR_")}
        env.update(PYTHONUNBUFFERED="1", **{HANG_CUE_ENV: str(out / "hang.cue")})
        with open(self.stderr_path, "w") as stderr:
            self.proc = subprocess.Popen(
                cmd,
                cwd=PROJECT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,
                env=env,
                preexec_fn=_nofile_limit,
            )
        self.lines: queue.Queue[str] = queue.Queue()
        self.cycles = 0
        self.healthy = 0
        self.healthy_at: list[float] = []  # monotonic time of each cycle every symbol decided
        self.children: set[int] = set()
        self.started = time.monotonic()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def new_cycles(self) -> tuple[int, int]:
        """Cycle lines printed since the last call, and how many of them were healthy (every
        symbol decided: none failed, none skipped)."""
        count = healthy = 0
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line.startswith("cycle "):
                count += 1
                found = CYCLE_LINE.search(line)
                if found and all_decided(int(found["ok"]), int(found["n"])):
                    healthy += 1
                    self.healthy_at.append(time.monotonic())
        self.cycles += count
        self.healthy += healthy
        return count, healthy

    def watch(self) -> None:
        """Remember every worker pid (for orphans)."""
        try:
            me = psutil.Process(self.proc.pid)
            self.children.update(c.pid for c in me.children(recursive=True))
        except psutil.Error:
            pass

    def workers(self) -> list[int]:
        try:
            return [
                c.pid
                for c in psutil.Process(self.proc.pid).children(recursive=True)
                if "spawn_main" in " ".join(c.cmdline())
            ]
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

    def traceback(self) -> bool:
        return "Traceback" in self.stderr_path.read_text(errors="replace")


def _nofile_limit() -> None:
    """In the bot's child, before exec: at most BOT_NOFILE open files (soft limit)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(BOT_NOFILE, hard), hard))


class RssWatch:
    """Every process of the run by role (supervisor, workers, simulator), sampled: the
    samples chaos_records.rss_growth_mb judges over the whole run."""

    def __init__(self) -> None:
        self.samples: dict[tuple[str, int], list[tuple[float, float]]] = {}
        self.first_seen: dict[int, float] = {}

    def sample(self, bot: Bot | None, gateway: Gateway) -> None:
        roles: list[tuple[str, int]] = []
        if gateway.proc is not None:
            roles.append(("simulator", gateway.proc.pid))
        if bot is not None and bot.alive():
            roles.append(("supervisor", bot.proc.pid))
            roles += [("workers", pid) for pid in bot.workers()]
        now = time.monotonic()
        for role, pid in roles:
            try:
                mb = psutil.Process(pid).memory_info().rss / 2**20
            except psutil.Error:
                continue
            t0 = self.first_seen.setdefault(pid, now)
            self.samples.setdefault((role, pid), []).append((now - t0, mb))


def last_error(stderr: Path) -> str:
    errors = [line for line in tail(stderr, 0).splitlines() if " ERROR " in line]
    return errors[-1][:300] if errors else "no ERROR line"


def tail(path: Path, offset: int) -> str:
    """What the file holds from ``offset`` on."""
    with path.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
