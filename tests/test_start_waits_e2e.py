"""Start waits for the gateway, end to end: ``python -m supervisor run`` as a real process
started before anything listens on its port. The simulator then comes up on that port and the
run trades; ``ibkr.connect_wait_s`` ends the wait with exit 3; SIGTERM ends it with exit 0.
Every step waits for the event it asserts on (a log line, a port, the status endpoint)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from supervisor import exitcodes
from tests.conftest import REPO_ROOT
from tests.conftest_sim import write_scenario
from tests.external_sim import bot_env
from tests.sessions import TUESDAY_MORNING

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bot:
    """``python -m supervisor ARGS`` with its stderr read line by line as it comes (one
    reader only), its stdout in a file."""

    def __init__(self, home: Path, *args: str) -> None:
        self.stdout_path = home / "bot.stdout"
        with open(self.stdout_path, "w") as stdout:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "supervisor", *args],
                cwd=home,
                env=bot_env(home),
                text=True,
                stdout=stdout,
                stderr=subprocess.PIPE,
            )
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._new:
                self.lines.append(line)
                self._new.notify_all()
        with self._new:
            self._new.notify_all()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, timeout_s: float = 60) -> str:
        deadline = time.monotonic() + timeout_s
        with self._new:
            while True:
                found = next((line for line in self.lines if text in line), None)
                if found is not None:
                    return found
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(
                        f"exited {self.proc.returncode} before {text!r}:\n" + self.stderr[-3000:]
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no {text!r} within {timeout_s:g}s:\n" + self.stderr[-3000:]
                    )
                self._new.wait(min(left, 0.5))

    def finish(self, timeout_s: float) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=10)
        return code, self.stdout_path.read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def healthz(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            return dict(json.loads(reply.read()))
    except urllib.error.HTTPError as error:  # 503: unhealthy, the body says why
        return dict(json.loads(error.read()))
    except OSError:
        return None  # not serving yet


def wait_until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g}s")
        time.sleep(0.1)


def test_a_run_started_before_its_gateway_waits_for_it_then_trades(tmp_path: Path) -> None:
    # Given a run against a port where nothing listens yet, its status endpoint on
    port, status_port = free_port(), free_port()
    clock_file = tmp_path / "sim.clock.json"
    config = tmp_path / "settings.yaml"
    config.write_text(
        f"monitoring:\n  http_port: {status_port}\n"
        "ibkr:\n  reconnect_max_s: 1\n  circuit_cooldown_s: 1\n"
    )
    bot = Bot(
        tmp_path,
        "run",
        "--broker",
        "sim",
        "--sim-clock",
        str(clock_file),
        "--port",
        str(port),
        "--config",
        str(config),
        "--cycles",
        "2",
        "--interval",
        "0.3",
    )
    sim = None
    try:
        # When it has said it waits, once, and the status endpoint says so too
        bot.wait_for_line(f"waiting for the gateway at 127.0.0.1:{port}")
        wait_until(
            lambda: (healthz(status_port) or {}).get("state") == "waiting for gateway",
            30,
            "the status endpoint saying 'waiting for gateway'",
        )
        health = healthz(status_port)
        assert health is not None and not health["healthy"] and not health["connected"]
        # and the simulator comes up on that port only then
        scenario = write_scenario(tmp_path / "scenario.yaml", TUESDAY_MORNING)
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tools.gateway_sim",
                "--scenario",
                str(scenario),
                "--port",
                str(port),
                "--clock-file",
                str(clock_file),
                "--log-level",
                "WARNING",
            ],
            cwd=REPO_ROOT,
            env=bot_env(tmp_path),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert sim.stdout is not None
        assert f"listening on 127.0.0.1:{port}" in sim.stdout.readline()
        # Then the run connects, follows the simulator's clock and completes its cycles
        code, stdout = bot.finish(timeout_s=120)
    finally:
        bot.kill()
        if sim is not None:
            sim.kill()
            sim.communicate(timeout=10)
    assert code == exitcodes.OK, bot.stderr[-3000:]
    assert stdout.count("cycle ") == 2 and "symbols ok 3/3" in stdout
    err = bot.stderr
    assert err.count("waiting for the gateway at") == 1  # once, not per probe
    assert f"the gateway at 127.0.0.1:{port} answered after" in err
    assert "new trading day 2026-12-01" in err  # the simulator's day, not the machine's
    assert "Traceback" not in err and " ERROR " not in err, err[-3000:]


def test_connect_wait_s_without_a_gateway_is_exit_3_naming_it(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "settings.yaml"
    config.write_text("ibkr:\n  connect_wait_s: 2\n")
    bot = Bot(tmp_path, "run", "--broker", "ibkr", "--port", str(port), "--config", str(config))
    try:
        code, _ = bot.finish(timeout_s=90)
    finally:
        bot.kill()
    assert code == exitcodes.CANNOT_CONNECT, bot.stderr[-3000:]
    assert f"no gateway at 127.0.0.1:{port} after 2s (ibkr.connect_wait_s: 2" in bot.stderr
    assert "Traceback" not in bot.stderr


def test_sigterm_while_waiting_for_the_gateway_is_exit_0_at_once(tmp_path: Path) -> None:
    port = free_port()
    bot = Bot(tmp_path, "run", "--broker", "ibkr", "--port", str(port))
    try:
        bot.wait_for_line(f"waiting for the gateway at 127.0.0.1:{port}")
        stopped_at = time.monotonic()
        bot.proc.send_signal(signal.SIGTERM)
        code, _ = bot.finish(timeout_s=60)
        took_s = time.monotonic() - stopped_at
    finally:
        bot.kill()
    assert code == exitcodes.OK, bot.stderr[-3000:]
    assert took_s < 30, took_s  # workers joined, nothing waited out (a probe is ~10 s apart)
    assert "SIGTERM received" in bot.stderr and "supervisor stopped after 0 cycles" in bot.stderr
    assert "Traceback" not in bot.stderr
