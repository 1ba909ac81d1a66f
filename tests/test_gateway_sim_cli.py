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

from tests.conftest_sim import DEFAULT_SCENARIO, ROOT, connect, run_client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tools.gateway_sim", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_cli_announces_port_writes_stats_and_stops_on_sigterm(tmp_path: Path) -> None:
    port_file, stats_file = tmp_path / "port", tmp_path / "stats.json"
    proc = _start("--scenario", str(DEFAULT_SCENARIO), "--port", "0", "--port-file",
                  str(port_file), "--stats-file", str(stats_file), "--log-level", "WARNING")
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
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_rejects_a_bad_scenario(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("account: {id: DU1, colour: blue}\n")
    proc = _start("--scenario", str(bad), "--check")
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "account.colour" in err
