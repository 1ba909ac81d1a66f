"""A simulated gateway in its own process that outlives the bots run against it, as a real IB
Gateway does: a bot can be killed and restarted against the same account and orders.

    with ExternalSim(tmp_path, scenario_file, rate=60) as sim:
        bot(tmp_path, "run", *sim.args, ...)        # --broker sim --sim-clock F --port P
        sim.stats()                                  # written on every disconnect and at exit
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import REPO_ROOT


def bot_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBKR_")}
    return {**env, "PYTHONPATH": str(REPO_ROOT), "SUPERVISOR_HOME": str(home)}


def bot(home: Path, *args: str, timeout_s: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        cwd=home,
        env=bot_env(home),
        text=True,
        capture_output=True,
        timeout=timeout_s,
    )


class ExternalSim:
    def __init__(self, where: Path, scenario: Path, rate: float | None = None) -> None:
        self.where = where
        self.scenario = scenario
        self.rate = rate
        self.port_file = where / "sim.port"
        self.clock_file = where / "sim.clock.json"
        self.stats_file = where / "sim.stats.json"
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ExternalSim:
        cmd = [
            sys.executable,
            "-m",
            "tools.gateway_sim",
            "--scenario",
            str(self.scenario),
            "--port",
            "0",
            "--port-file",
            str(self.port_file),
            "--clock-file",
            str(self.clock_file),
            "--stats-file",
            str(self.stats_file),
            "--log-level",
            "WARNING",
        ]
        if self.rate is not None:
            cmd += ["--rate", str(self.rate)]
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=bot_env(self.where),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "listening on 127.0.0.1:" in line, line
        return self

    @property
    def port(self) -> int:
        return int(self.port_file.read_text())

    @property
    def args(self) -> list[str]:
        return ["--broker", "sim", "--sim-clock", str(self.clock_file), "--port", str(self.port)]

    def stats(self) -> dict[str, Any]:
        return dict(json.loads(self.stats_file.read_text()))

    def stats_once_alone(self, timeout_s: float = 15.0) -> dict[str, Any]:
        """The stats the sim writes once it has seen its last client go (a killed bot's
        socket closes a moment after the kill: reading at once races the sim)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.stats_file.exists():
                stats = self.stats()
                if not stats["clients_connected"]:
                    return stats
            time.sleep(0.05)
        raise AssertionError(f"the simulator still lists clients after {timeout_s:g} s")

    def stop(self) -> dict[str, Any]:
        """SIGTERM, wait (the sim writes its final stats), and those stats."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=15)
        return self.stats()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g}s")
        time.sleep(0.1)
