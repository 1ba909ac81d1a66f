"""``python -m tools.gateway_sim`` as a real process: port announcement, port file, stats file
on disconnect and on SIGTERM, exit codes.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.runtime.clock import PinnedClock
from tests.conftest_sim import DEFAULT_SCENARIO, ROOT, connect, run_client
from tests.sessions import FRIDAY_1555
from tools.gateway_sim import load_scenario

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tools.gateway_sim", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_announces_port_writes_stats_and_stops_on_sigterm(tmp_path: Path) -> None:
    port_file, stats_file = tmp_path / "port", tmp_path / "stats.json"
    proc = _start(
        "--scenario",
        str(DEFAULT_SCENARIO),
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--stats-file",
        str(stats_file),
        "--log-level",
        "WARNING",
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("gateway_sim listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        assert int(port_file.read_text()) == port

        async def session() -> float:
            ib = await connect(port)
            now = await ib.reqCurrentTimeAsync()
            ib.disconnect()
            await asyncio.sleep(0.3)
            return now.timestamp()

        assert run_client(session) > 0
        after_disconnect = json.loads(stats_file.read_text())
        assert after_disconnect["connections_total"] == 1
        assert after_disconnect["violations_total"] == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        final = json.loads(stats_file.read_text())
        assert final["messages_by_type"]["49"] == 1 and final["connections_open"] == 0
        # the simulated broker's account, for an end-to-end test to compare with the bot's
        opening = load_scenario(DEFAULT_SCENARIO).account.values["TotalCashValue"]
        assert final["account"]["cash"] == opening and final["account"]["positions"] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_clock_file_lets_another_process_follow_the_session(tmp_path: Path) -> None:
    # Given the sim started at a moment of our choosing, at 60x, with a clock file
    port_file, clock_file = tmp_path / "port", tmp_path / "clock.json"
    proc = _start(
        "--scenario",
        str(DEFAULT_SCENARIO),
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--clock-file",
        str(clock_file),
        "--log-level",
        "WARNING",
        "--start",
        FRIDAY_1555.isoformat(),
        "--rate",
        "60",
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().strip().rsplit(":", 1)[1])
        # When this process follows the clock the file describes
        clock = PinnedClock.follow(json.loads(clock_file.read_text()))

        async def session() -> tuple[float, float, float]:
            ib = await connect(port)
            try:
                before = clock.now()
                answer = (await ib.reqCurrentTimeAsync()).timestamp()
                return before, answer, clock.now()
            finally:
                ib.disconnect()

        before, gateway_now, after = run_client(session)
        # Then the gateway's answer falls between our readings before and after the request
        # (whole seconds on the wire), in the Friday session, running at 60x
        assert before - 1 <= gateway_now <= after
        assert FRIDAY_1555.timestamp() <= gateway_now < FRIDAY_1555.timestamp() + 3600
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_cli_rejects_a_bad_scenario(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("account: {id: DU1, colour: blue}\n")
    proc = _start("--scenario", str(bad), "--check")
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "account.colour" in err
