"""The deployment files (configs/deploy/) checked here, where no Docker or systemd runs: the
unit's keys, the compose wiring, the container's command parsed by the bot's own command
line; and the notify protocol the unit relies on, spoken to a real socket by a real run."""

from __future__ import annotations

import configparser
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from supervisor.commands.cli import build_parser
from supervisor.observe.systemd import notify, watchdog_interval_s
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(120)
DEPLOY = REPO_ROOT / "configs" / "deploy"


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read(DEPLOY / "ibkr-bot.service")
    return unit


def test_the_systemd_unit_is_notify_with_a_watchdog_and_a_mixed_kill() -> None:
    service = _unit()["Service"]
    assert service["Type"] == "notify" and int(service["WatchdogSec"]) >= 30
    assert service["KillMode"] == "mixed" and service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    assert set(service["RestartPreventExitStatus"].split()) == {"2", "4"}
    command = service["ExecStart"].split()
    assert command[0].endswith("/ibkr-bot")
    args = build_parser().parse_args(command[1:])  # the bot's own parser accepts it
    assert args.command == "run" and args.broker == "ibkr"


def test_the_compose_file_runs_the_bot_beside_the_gateway_on_loopback() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    gateway, bot = compose["services"]["ib-gateway"], compose["services"]["bot"]
    assert "ib-gateway" in gateway["image"] and gateway["environment"]["TRADING_MODE"] == "paper"
    assert all(p.startswith("127.0.0.1:") for p in gateway.get("ports", []))
    # the bot lives in the gateway's network namespace: 127.0.0.1 is the gateway
    assert bot["network_mode"] == "service:ib-gateway" and "ib-gateway" in bot["depends_on"]
    args = build_parser().parse_args(bot["command"])
    assert args.command == "run" and args.broker == "ibkr" and args.port == 4002
    assert args.config == "/data/settings.yaml"
    context = (DEPLOY / bot["build"]["context"]).resolve()  # relative to the compose file
    assert context == REPO_ROOT.resolve() and (context / bot["build"]["dockerfile"]).exists()


def test_the_unit_and_the_compose_file_raise_the_descriptor_limit() -> None:
    # systemd's and many hosts' default soft limit, 1,024, is what a flood of status
    # connections ran the supervisor out of (a worker then could not be respawned)
    assert int(_unit()["Service"]["LimitNOFILE"]) >= 4096
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    nofile = compose["services"]["bot"]["ulimits"]["nofile"]
    assert nofile["soft"] >= 4096 and nofile["hard"] >= nofile["soft"]


def test_the_container_runs_the_console_command_the_tests_run() -> None:
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    entry = next(line for line in lines if line.startswith("ENTRYPOINT"))
    cmd = next(line for line in lines if line.startswith("CMD"))
    # the wrapper runs `ibkr-bot ARGS` (tests/test_deploy_container.py)
    assert entry == 'ENTRYPOINT ["ibkr-bot-entrypoint"]'
    args = build_parser().parse_args(yaml.safe_load(cmd.removeprefix("CMD ")))
    assert args.command == "run" and args.config == "/data/settings.yaml"
    for copied in ("common", "workers", "supervisor", "tools", "configs"):
        assert f"COPY {copied} ./{copied}" in lines


def test_the_example_settings_validate(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "supervisor",
            "validate",
            "--config",
            str(DEPLOY / "settings.example.yaml"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_notify_speaks_to_the_socket_and_is_silent_without_one(tmp_path: Path) -> None:
    assert notify("READY=1", environ={}) is False
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        assert notify("READY=1", environ={"NOTIFY_SOCKET": str(path)})
        assert server.recv(100) == b"READY=1"
    assert notify("WATCHDOG=1", environ={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False
    assert watchdog_interval_s({"WATCHDOG_USEC": "120000000"}) == 60.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({}) is None


@pytest.mark.e2e
def test_a_run_under_systemd_says_ready_pings_the_watchdog_and_says_stopping(
    tmp_path: Path,
) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(60)
        done = subprocess.run(
            [sys.executable, "-m", "supervisor", "run", "--cycles", "3"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=100,
            env={
                **os.environ,
                "PYTHONPATH": str(REPO_ROOT),
                "SUPERVISOR_HOME": str(tmp_path),
                "NOTIFY_SOCKET": str(path),
                "WATCHDOG_USEC": "2000000",
            },
        )
        assert done.returncode == 0, done.stderr[-2000:]
        server.settimeout(0.5)
        said = []
        try:
            while True:
                said.append(server.recv(200).decode())
        except TimeoutError:
            pass
    assert said[0].startswith("READY=1\nSTATUS=trading (dry_run) on stub")
    assert "WATCHDOG=1" in said and said[-1] == "STOPPING=1"
