"""The Phase 1-2-3 pipeline end to end: compressed soaks on the stub and against the simulated
gateway pass, a deliberately leaking run fails."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(300)]


def phases(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor", "phases", *args],
        cwd=tmp_path,
        # the run's state (and phases' default --out, var/phases) in this test's folder: from
        # a checkout the embedded default keeps it in the project, shared by parallel tests
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "SUPERVISOR_HOME": str(tmp_path)},
        text=True,
        capture_output=True,
        timeout=280,
    )


def test_compressed_soak_of_2000_cycles_passes(tmp_path):
    done = phases(tmp_path, "--broker", "stub", "--soak-cycles", "2000")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "check SPY via stub: OK" in out
    assert "phase2: exit 0, 3 cycles, 0 failed symbols" in out
    assert "phase3: exit 0, 2000 cycles, 0 failed symbols" in out
    assert out.rstrip().endswith("verdict: PASS")
    assert (tmp_path / "var" / "phases" / "soak_report.txt").exists()


def test_a_leaking_run_fails_the_report(tmp_path):
    # Given the stub's test-only leak: 50 KB kept forever on every request
    config = tmp_path / "leak.yaml"
    config.write_text("stub:\n  leak_bytes_per_request: 50000\n")
    done = phases(tmp_path, "--broker", "stub", "--config", str(config), "--soak-cycles", "400")
    assert done.returncode == 1, done.stdout[-3000:]
    assert "FAIL memory: supervisor" in done.stdout
    assert "verdict: FAIL" in done.stdout


def test_phases_needs_a_soak_length(tmp_path):
    done = phases(tmp_path)
    assert done.returncode == 2 and "--soak-s" in done.stderr


def test_plot_is_written(tmp_path):
    png = tmp_path / "soak.png"
    done = phases(tmp_path, "--broker", "stub", "--soak-cycles", "300", "--plot", str(png))
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", done.stdout[-2000:]


def test_phases_plot_without_matplotlib_stops_before_the_soak(tmp_path):
    broken = tmp_path / "broken" / "matplotlib"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('matplotlib is broken here')\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "supervisor",
            "phases",
            "--broker",
            "stub",
            "--soak-cycles",
            "2000",
            "--plot",
            str(tmp_path / "s.png"),
        ],
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": f"{broken.parent}{os.pathsep}{REPO_ROOT}"},
    )
    assert done.returncode == 2 and "matplotlib cannot be imported" in done.stderr
    assert "phase 1" not in done.stdout  # nothing ran


@pytest.mark.integration
def test_compressed_soak_against_the_simulated_gateway_passes(tmp_path):
    # 300 cycles through ib_insync at IBKR's pace (~45 messages/s): about a minute
    scenario = REPO_ROOT / "configs" / "scenarios" / "soak.yaml"
    done = phases(tmp_path, "--scenario", str(scenario), "--soak-cycles", "300")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "check SPY via ibkr: OK" in done.stdout
    assert "phase3: exit 0, 300 cycles, 0 failed symbols" in done.stdout
    assert "broker.recv_buffer_bytes" in done.stdout  # the client buffer is measured
    assert "violations 0" in done.stderr
    assert done.stdout.rstrip().endswith("verdict: PASS")
