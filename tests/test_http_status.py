"""The status endpoint: /healthz and /metrics over a real HTTP request, during a real
``--sim`` run (the Prometheus text parsed, the figures checked), and off by default."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from supervisor.observe.http_status import Status, StatusPortError, StatusServer
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(120)


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_health_says_why_and_metrics_carry_every_figure() -> None:
    server = StatusServer(0)
    port = server.start()
    try:
        code, body = _get(port, "/healthz")
        assert code == 503 and json.loads(body)["connected"] is False  # nothing published
        server.publish(
            Status(
                connected=True,
                market_open=True,
                cycles=7,
                last_cycle_mono=time.monotonic(),
                cycle_seconds=0.42,
                symbols_ok=3,
                symbols_failed=1,
                open_positions=2,
                day_pnl=-12.5,
                broker={"pacing_waits_total": 4.0, "lines_in_use": 6.0, "errors.100": 0.0},
            )
        )
        code, body = _get(port, "/healthz")
        assert code == 200 and json.loads(body)["cycles"] == 7
        code, text = _get(port, "/metrics")
        samples = _samples(text)
        assert code == 200
        assert samples["ibkr_bot_cycles_total"] == 7 and samples["ibkr_bot_cycle_seconds"] == 0.42
        assert samples["ibkr_bot_symbols_failed"] == 1 and samples["ibkr_bot_day_pnl"] == -12.5
        assert samples['ibkr_bot_broker_events_total{stat="pacing_waits"}'] == 4
        assert samples['ibkr_bot_broker{stat="lines_in_use"}'] == 6
        assert samples['ibkr_bot_ibkr_messages_total{code="100",kind="error"}'] == 0
        assert samples["ibkr_bot_rss_bytes"] > 1e6
        assert _get(port, "/")[0] == 200  # the dashboard (tests/test_dashboard.py)
        with pytest.raises(StatusPortError, match=f"monitoring.http_port {port}"):
            StatusServer(port).start()  # taken: said, not a traceback
    finally:
        server.stop()


def test_a_get_of_a_control_is_405_post_only_not_404() -> None:
    server = StatusServer(0)
    port = server.start()
    try:
        asked = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/resume", headers={"Authorization": "Bearer t"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(asked, timeout=5)
        assert refused.value.code == 405 and refused.value.headers["Allow"] == "POST"
        assert _get(port, "/api/nothing")[0] == 404  # an unknown path is still not found
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.integration
def test_metrics_during_a_sim_run(tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "settings.yaml"
    config.write_text(f"monitoring:\n  http_port: {port}\n")
    bot = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "supervisor",
            "run",
            "--sim",
            "--cycles",
            "0",
            "--interval",
            "0.2",
            "--config",
            str(config),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        deadline = time.monotonic() + 60
        health: dict = {}
        while time.monotonic() < deadline:
            try:
                code, body = _get(port, "/healthz")
                health = json.loads(body)
                if code == 200 and health["cycles"] >= 2:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        assert health.get("healthy") and health["cycles"] >= 2, health
        code, text = _get(port, "/metrics")
        samples = _samples(text)
    finally:
        bot.send_signal(signal.SIGTERM)
        bot.wait(timeout=30)
    assert code == 200 and samples["ibkr_bot_up"] == 1
    assert samples["ibkr_bot_cycles_total"] >= 2 and samples["ibkr_bot_cycle_seconds"] > 0
    # every cycle in the histogram, though the status is published once a second
    assert samples["ibkr_bot_cycle_duration_seconds_count"] == samples["ibkr_bot_cycles_total"]
    assert samples['ibkr_bot_broker_events_total{stat="messages_sent"}'] > 0
    assert 'ibkr_bot_broker_events_total{stat="pacing_waits"}' in samples
    assert samples['ibkr_bot_process_rss_bytes{process="worker-1",role="worker"}'] > 1e6
    assert samples["process_resident_memory_bytes"] > 1e6
    assert 'ibkr_bot_broker{stat="lines_in_use"}' in samples
    assert bot.returncode == 0
