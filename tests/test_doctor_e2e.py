"""``python -m supervisor doctor`` against nothing, the simulated gateway, and its faults.

The process tests run the real command line (nothing listening; ``--sim`` healthy; ``--sim``
with a read-only API, no options and no stock subscription, and a skewed gateway clock); the
in-process ones probe a simulator whose client id is taken and a port that is not the API.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor import exitcodes
from supervisor.commands.doctor import examine
from tests.conftest import REPO_ROOT, make_settings
from tests.conftest_sim import connect, make_scenario, run_client, write_scenario
from tests.sessions import TUESDAY_MORNING
from tools.gateway_sim import ThreadedSim

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def doctor(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "SUPERVISOR_HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "supervisor", "doctor", *args],
        cwd=tmp_path,
        env=env,
        text=True,
        capture_output=True,
        timeout=80,
    )


def lines_by_name(stdout: str) -> dict[str, str]:
    """{"SPY option quote": "fail SPY option quote: ..."} from the check lines."""
    return {line[5:].split(":")[0]: line for line in stdout.splitlines()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_nothing_listening_fails_naming_the_socket_clients_setting(tmp_path: Path) -> None:
    done = doctor(tmp_path, "--broker", "ibkr", "--port", str(free_port()))
    assert done.returncode == exitcodes.CANNOT_CONNECT, done.stdout + done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("fail listening: nothing listening at 127.0.0.1:")
    assert "Enable ActiveX and Socket Clients" in first and "Trusted IPs" in first
    assert "skip client id" in done.stdout and "Traceback" not in done.stderr


def test_against_the_simulator_every_check_is_ok(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path / "sim.yaml", TUESDAY_MORNING)
    done = doctor(tmp_path, "--sim", "--scenario", str(scenario))
    assert done.returncode == exitcodes.OK, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines and all(line.startswith("ok ") for line in lines), done.stdout
    names = lines_by_name(done.stdout)
    for name in ("listening", "API handshake", "client id", "accounts", "read-only API", "clock"):
        assert name in names
    for symbol in ("SPY", "QQQ", "AAPL"):
        assert f"{symbol} option quote" in names
    assert "DU1234567 (paper)" in names["accounts"]


def test_simulated_faults_give_the_right_fail_and_warn_lines(tmp_path: Path) -> None:
    scenario = write_scenario(
        tmp_path / "sim.yaml",
        TUESDAY_MORNING,
        orders={"read_only_api": True},
        clock={"current_time_skew_s": 120},
        faults=[
            {
                "kind": "no_market_data",
                "symbol": "SPY",
                "sec_type": "OPT",
                "code": 354,
                "every_connection": True,
            },
            {
                "kind": "no_market_data",
                "symbol": "QQQ",
                "sec_type": "STK",
                "code": 10168,
                "every_connection": True,
            },
        ],  # fmt: skip
    )
    done = doctor(tmp_path, "--sim", "--scenario", str(scenario))
    assert done.returncode == exitcodes.CHECKS_FAILED, done.stdout + done.stderr
    names = lines_by_name(done.stdout)
    assert names["SPY option quote"].startswith("fail") and "OPRA" in names["SPY option quote"]
    assert names["QQQ market data"].startswith("fail")
    assert "US equities" in names["QQQ market data"]
    assert "ibkr.market_data_type: delayed" in names["QQQ market data"]
    assert names["AAPL option quote"].startswith("ok")
    # the what-if asks about QQQ's option, the first one quoted
    assert names["read-only API"].startswith("warn") and "untick" in names["read-only API"]
    assert names["clock"].startswith("warn") and "120 s behind" in names["clock"]


@pytest.mark.integration
def test_a_client_id_in_use_fails_with_the_fix(tmp_path: Path) -> None:
    with ThreadedSim(make_scenario(TUESDAY_MORNING)) as sim:
        settings = make_settings(tmp_path, ibkr={"port": sim.port, "client_id": 77})

        async def probe() -> list[str]:
            holder = await connect(sim.port, 77)
            try:
                return [c.line() for c in await examine(settings, ["SPY"], lambda: 0.0)]
            finally:
                holder.disconnect()

        lines = run_client(probe)
    assert lines[2].startswith("fail client id: client id 77 is in use (error 326)")
    assert "another client id" in lines[2]
    assert all(line.startswith("skip") for line in lines[3:-1]), lines


@pytest.mark.integration
def test_a_port_that_is_not_the_api_fails_as_such(tmp_path: Path) -> None:
    async def probe() -> list[str]:
        async def http(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(http, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            settings = make_settings(tmp_path, ibkr={"port": port})
            return [c.line() for c in await examine(settings, ["SPY"], lambda: 0.0)]

    lines = run_client(probe)
    assert lines[0].startswith("ok   listening")
    assert lines[1].startswith("fail API handshake") and "not an IBKR API port" in lines[1]
