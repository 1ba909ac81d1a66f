"""Run the simulated IB Gateway (tools/gateway_sim) as a child process of the supervisor.

::

    supervisor process                         child: python -m tools.gateway_sim
    ------------------                         -----------------------------------
    SimProcess.start()  -- spawn ------------>  --scenario F --port 0
                        <-- clock file ------   --clock-file TMP/sim.clock (session clock)
                        <-- port file -------   --port-file TMP/sim.port (renamed into place)
    SimProcess.clock()  the sim's session clock, followed exactly (supervisor/clock.py)
    IBKRBroker connects to 127.0.0.1:port  <-->  the TWS API socket
    SimProcess.stats()  <-- stats file ------   --stats-file S (on each disconnect and exit)
    SimProcess.stop()   -- SIGTERM, wait, SIGKILL if it hangs

This is what ``python -m supervisor run --sim`` uses: the sim runs in its own process (its own
event loop and GIL), exactly like a real gateway would, and never inside the supervisor's loop.
The child gets its own process group, so a Ctrl-C at the terminal reaches the supervisor only
and the supervisor stops the sim after its own graceful shutdown; on Linux the child is also
told to terminate if the supervisor dies (PR_SET_PDEATHSIG), so a SIGKILL leaves no orphan.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from supervisor.runtime.clock import Clock, PinnedClock

log = logging.getLogger("supervisor.runtime.simproc")
ROOT = Path(__file__).resolve().parents[2]
PR_SET_PDEATHSIG = 1


class SimStartError(RuntimeError):
    """The simulator did not come up (bad scenario, cannot listen, too slow)."""


class SimFolderError(ValueError):
    """The folder for the simulator's stats and log cannot be written: a user's setup to fix
    (exit 2), not a simulator that failed to start."""

    def __init__(self, folder: Path, exc: OSError) -> None:
        super().__init__(
            f"cannot write the simulator's files in {folder} ({exc.strerror or exc}): make "
            "that folder writable (or remove a file in its place), or point --config at a "
            "settings file in a folder you can write (state goes beside it), or set "
            "SUPERVISOR_HOME"
        )
        self.folder = folder


def _parent_death_signal() -> Any:
    """A preexec function asking Linux to SIGTERM the child when its parent dies, or None.

    Only a prepared libc call runs between fork and exec (nothing that takes Python locks).
    The signal follows the *thread* that started the child: call ``start()`` from the main
    thread (the supervisor does), not from a short-lived worker thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


class SimProcess:
    """Start with ``start()`` (blocking, bounded) or ``await astart()``; use as a (async)
    context manager; ``port`` once started; ``stats()`` reads the stats file."""

    def __init__(
        self,
        scenario_path: str | Path,
        stats_path: Path,
        *,
        start_timeout_s: float = 15.0,
        log_path: Path | None = None,
        log_level: str = "WARNING",
        start: datetime | None = None,
    ) -> None:
        self.scenario_path = str(scenario_path)
        self.session_start = start  # None: the scenario's clock.start
        self.stats_path = Path(stats_path)
        self.start_timeout_s = start_timeout_s
        self.log_path = log_path or self.stats_path.with_name("gateway_sim.log")
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._clock: dict[str, Any] | None = None
        self._tmp: Path | None = None

    # --- start -----------------------------------------------------------------------------

    def _spawn(self) -> Path:
        if self.proc is not None:
            raise RuntimeError("the simulator was already started")
        for folder in (self.stats_path.parent, self.log_path.parent):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # not writable, or a file where the folder should be
                raise SimFolderError(folder, exc) from None
        try:
            log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed below, once spawned
        except OSError as exc:
            raise SimFolderError(self.log_path.parent, exc) from None
        self._tmp = Path(tempfile.mkdtemp(prefix="gateway_sim."))
        port_file = self._tmp / "sim.port"
        clock_file = self._tmp / "sim.clock"
        cmd = [
            sys.executable,
            "-m",
            "tools.gateway_sim",
            "--scenario",
            self.scenario_path,
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--clock-file",
            str(clock_file),
            "--stats-file",
            str(self.stats_path),
            "--log-level",
            self.log_level,
        ]
        if self.session_start is not None:
            cmd += ["--start", self.session_start.isoformat()]
        with log_file:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                start_new_session=True,
                preexec_fn=_parent_death_signal(),
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        log.info(
            "gateway_sim started (pid %d, scenario %s, log %s)",
            self.proc.pid,
            self.scenario_path,
            self.log_path,
        )
        return port_file

    def _check_port(self, port_file: Path) -> bool:
        """True once the port is known; raises if the child exited."""
        assert self.proc is not None
        if port_file.exists():  # written after the clock file
            self._port = int(port_file.read_text().strip())
            self._clock = json.loads((port_file.parent / "sim.clock").read_text())
            return True
        code = self.proc.poll()
        if code is not None:
            self._cleanup_tmp()
            raise SimStartError(
                f"gateway_sim exited with code {code} before listening "
                f"(scenario {self.scenario_path}): {self._log_tail()}"
            )
        return False

    def _give_up(self) -> SimStartError:
        self.stop()
        return SimStartError(
            f"gateway_sim did not listen within {self.start_timeout_s:g}s: {self._log_tail()}"
        )

    def start(self) -> int:
        """Spawn the child and wait (bounded) for its port."""
        port_file = self._spawn()
        deadline = time.monotonic() + self.start_timeout_s
        while not self._check_port(port_file):
            if time.monotonic() > deadline:
                raise self._give_up()
            time.sleep(0.05)
        return self.port

    async def astart(self) -> int:
        """``start()`` for a running event loop: polls with asyncio.sleep, never blocks."""
        port_file = self._spawn()
        deadline = time.monotonic() + self.start_timeout_s
        while not self._check_port(port_file):
            if time.monotonic() > deadline:
                raise self._give_up()
            await asyncio.sleep(0.05)
        return self.port

    # --- use -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator has not started")
        return self._port

    def clock(self) -> Clock:
        """The sim's session clock: pinned scenarios replay the same session on any day."""
        if self._clock is None:
            raise RuntimeError("the simulator has not started")
        return PinnedClock.follow(self._clock)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stats(self) -> dict[str, Any]:
        """The last stats the sim wrote (on every disconnect and at exit); {} before any."""
        try:
            data = json.loads(self.stats_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # written by rename, so rare: report, go on
            log.warning("cannot read gateway_sim stats %s: %s", self.stats_path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    # --- stop ------------------------------------------------------------------------------

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """SIGTERM (the sim writes its stats and exits 0), wait, SIGKILL if it hangs."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning(
                    "gateway_sim (pid %d) ignored SIGTERM for %gs: killing it", proc.pid, timeout_s
                )
                proc.kill()
                proc.wait(timeout_s)
        self._cleanup_tmp()
        if proc.returncode not in (0, None):
            log.warning("gateway_sim exited with code %s", proc.returncode)
        return proc.returncode

    async def astop(self, timeout_s: float = 5.0) -> int | None:
        return await asyncio.to_thread(self.stop, timeout_s)

    def _cleanup_tmp(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def __enter__(self) -> SimProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> SimProcess:
        await self.astart()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()
