"""A descriptor flood, end to end: ``python -m supervisor run`` as a real process under a low
RLIMIT_NOFILE (256, as systemd's default 1,024 scaled down), its status port flooded with
more idle connections than it has descriptors, and one of its workers killed meanwhile.

Before: the flood took every descriptor, the killed worker's respawn failed inside an asyncio
callback (a traceback, and the pool never heard of it) and the bot ran on one worker to the
end. Now: the endpoint serves at most its cap and refuses the rest, the worker is replaced,
cycles go on, /healthz answers once the flood closes, and stderr holds no traceback."""

from __future__ import annotations

import json
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisor import exitcodes
from tests.external_sim import bot_env
from tests.sessions import TUESDAY_MORNING

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(150)]

LIMIT = 256  # the supervisor's descriptors: ~25 of them in use before the flood
FLOOD = 300  # idle connections, more than it could ever hold


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def until(condition: Callable[[], Any], what: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:g}s"
        time.sleep(0.05)
    return value


def healthz(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            return dict(json.loads(reply.read()))
    except urllib.error.HTTPError as error:
        try:
            return dict(json.loads(error.read()))  # 503: unhealthy, the body says why
        except ValueError:
            return None  # 503 busy: every slot taken
    except OSError:
        return None


def workers(supervisor: psutil.Process) -> set[int]:
    """Its worker processes' pids (not multiprocessing's resource tracker)."""
    found = set()
    for child in supervisor.children():
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.add(child.pid)
        except psutil.Error:
            pass  # gone as we looked
    return found


def lower_descriptor_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


def test_a_worker_killed_under_a_descriptor_flood_is_replaced(tmp_path: Path) -> None:
    status_port = free_port()
    config = tmp_path / "settings.yaml"
    config.write_text(
        f"monitoring:\n  http_port: {status_port}\nworkers:\n  count: 2\nstub:\n  latency_s: 0.02\n"
    )  # cycles of ~0.1 s, not thousands a second
    stdout, stderr = tmp_path / "bot.stdout", tmp_path / "bot.stderr"
    with open(stdout, "w") as out, open(stderr, "w") as err:
        bot = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "supervisor",
                "run",
                "--broker",
                "stub",
                "--start",
                TUESDAY_MORNING.isoformat(),
                "--config",
                str(config),
            ],
            cwd=tmp_path,
            env=bot_env(tmp_path),
            stdout=out,
            stderr=err,
            preexec_fn=lower_descriptor_limit,
        )
    flood: list[socket.socket] = []

    def cycles() -> int:
        return stdout.read_text().count("cycle ")

    try:
        # Given a bot trading on two workers, at 256 descriptors
        until(lambda: (healthz(status_port) or {}).get("cycles", 0) >= 1, "a first cycle")
        supervisor = psutil.Process(bot.pid)
        before = until(lambda: len(found := workers(supervisor)) == 2 and found, "2 workers")
        # When its status port gets more idle connections than it has descriptors
        for _ in range(FLOOD):
            try:
                flood.append(socket.create_connection(("127.0.0.1", status_port), timeout=5))
            except OSError:  # it accepts no more (before: every descriptor taken)
                break
        until(
            lambda: supervisor.num_fds() < LIMIT - 64,  # the endpoint holds its cap
            "the supervisor's descriptors back below its limit",
            timeout_s=20,
        )
        # and one of its workers is killed meanwhile
        victim = min(before)
        psutil.Process(victim).kill()
        # Then the worker is replaced, and cycles go on
        after = until(
            lambda: len(found := workers(supervisor)) == 2 and victim not in found and found,
            "the killed worker replaced",
            timeout_s=30,
        )
        assert len(after - before) == 1
        assert len(flood) == FLOOD  # every connection accepted (and the surplus refused)
        done = cycles()
        until(lambda: cycles() >= done + 3, "cycles after the replacement")
    finally:
        for conn in flood:
            conn.close()
    try:
        # and once the flood has closed, /healthz answers
        health = until(lambda: healthz(status_port), "/healthz after the flood", timeout_s=30)
        assert health["healthy"] and health["state"] == "trading"
        bot.send_signal(signal.SIGTERM)
        code = bot.wait(timeout=60)
    finally:
        if bot.poll() is None:
            bot.kill()
            bot.wait(timeout=10)
    log = stderr.read_text()
    assert code == exitcodes.OK, log[-3000:]
    assert f"(pid {victim}) died" in log
    assert "Traceback" not in log and "could not be started" not in log, log[-3000:]
