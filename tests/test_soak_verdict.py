"""A soak verdict that cannot lie: INCOMPLETE for a run stopped or killed before its planned
length, cycles counted by the run itself, an absolute memory budget as well as a slope, and
the thresholds written into the metrics file so a later soak_report agrees with phases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor.observe.soak import Thresholds, analyse, soak_thresholds
from supervisor.observe.soak_run import run_length
from tests.conftest import REPO_ROOT
from tests.test_soak import synthetic, write_jsonl
from tools import soak_report

pytestmark = pytest.mark.timeout(60)


def _with_run(records: list[dict], planned: int, done: int, end: dict | None) -> list[dict]:
    """The run's own account on every record (cycles rising to ``done``), ``end`` on a last
    record when the run ended."""
    out = []
    for i, record in enumerate(records):
        cycles = done * (i + 1) // len(records)
        out.append(
            {
                **record,
                "run": {
                    "pid": 100,
                    "cycles_done": cycles,
                    "planned_cycles": planned,
                    "planned_s": 0,
                },
            }
        )
    if end is not None:
        out.append(
            {
                "ts": out[-1]["ts"] + 1,
                "mono": out[-1]["mono"] + 1,
                "processes": {},
                "buffers": {},
                "cycle": None,
                "run": {**out[-1]["run"], "ended": True, **end},
            }
        )
    return out


def test_a_soak_stopped_by_a_signal_before_its_length_is_incomplete() -> None:
    records = _with_run(synthetic(), planned=2000, done=30, end={"exit_code": 0, "by_signal": True})
    report = analyse(records)
    assert report.verdict == "INCOMPLETE" and not report.passed
    assert report.incomplete == "stopped by a signal after 30 of 2000 planned cycles"
    assert report.cycles == 30  # the run's count, not the sampled summaries (481)
    assert report.to_dict()["verdict"] == "INCOMPLETE"


def test_a_killed_soak_whose_end_never_came_is_incomplete() -> None:
    report = analyse(_with_run(synthetic(), planned=0, done=700, end=None))
    assert report.verdict == "INCOMPLETE"
    assert "never recorded (killed?) after 700 cycles" in (report.incomplete or "")


def test_a_halted_soak_is_incomplete_and_a_whole_one_passes() -> None:
    halted = analyse(_with_run(synthetic(), 2000, 2000, {"exit_code": 4, "by_signal": False}))
    assert halted.incomplete == "the run ended with exit code 4 after 2000 cycles"
    whole = analyse(_with_run(synthetic(), 2000, 2000, {"exit_code": 0, "by_signal": False}))
    assert whole.verdict == "PASS" and whole.cycles == 2000


def test_a_failed_check_is_fail_even_when_also_incomplete() -> None:
    leaking = synthetic(leak_kb_per_h=4096)
    report = analyse(_with_run(leaking, 2000, 30, {"exit_code": 0, "by_signal": True}))
    assert report.verdict == "FAIL"


def test_two_runs_on_one_file_count_both_and_the_last_decides() -> None:
    first = _with_run(synthetic()[:100], 0, 50, {"exit_code": 0, "by_signal": True})
    second = [
        {**r, "run": {**r["run"], "pid": 200}}
        for r in _with_run(synthetic()[100:], 0, 70, {"exit_code": 0, "by_signal": True})
    ]
    length = run_length(first + second)
    assert length is not None and length.cycles == 120 and length.incomplete is None


def test_the_absolute_budget_catches_what_a_short_run_slope_cannot() -> None:
    # Given 10 minutes of samples in which the supervisor jumps 20 MB in its last 15 s
    records = []
    for i in range(121):
        t = i * 5.0
        rss = 80_000 + (20_480 if i >= 118 else 0)
        records.append(
            {
                "ts": 1e9 + t,
                "mono": t,
                "buffers": {},
                "cycle": None,
                "processes": {"supervisor": {"pid": 1, "rss_kb": rss}},
            }
        )
    thresholds = soak_thresholds(records, soak_s=0, budget_kb=8192)
    report = analyse(records, thresholds)
    # the slope per hour of a late jump stays under the compressed slope limit ...
    (supervisor,) = report.processes
    assert supervisor.slope_kb_per_h is not None
    assert supervisor.slope_kb_per_h < thresholds.max_rss_slope_kb_per_h
    # ... and the budget catches it
    memory = next(c for c in report.checks if c.name == "memory")
    assert memory.status == "FAIL", memory.detail
    assert "RSS grew 20480 KB after warm-up > 8192 KB" in memory.detail


def test_soak_report_judges_with_the_thresholds_phases_wrote(tmp_path: Path, capsys) -> None:
    records = _with_run(synthetic(leak_kb_per_h=1500), 0, 481, {"exit_code": 0, "by_signal": False})
    path = write_jsonl(tmp_path / "metrics.jsonl", records)
    assert soak_report.main([str(path)]) == 1  # the default 1024 KB/h fails it
    with open(path, "a", encoding="utf-8") as f:  # as phases appends after its verdict
        strict = Thresholds(max_rss_slope_kb_per_h=2048)
        f.write(json.dumps({"ts": records[-1]["ts"], "thresholds": strict.__dict__}) + "\n")
    assert soak_report.main([str(path)]) == 0
    assert "thresholds: the metrics file (as judged by phases)" in capsys.readouterr().out
    assert soak_report.main([str(path), "--max-rss-slope-kb-per-h", "1024"]) == 1


def _phases(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "supervisor", "phases", *args],
        cwd=tmp_path,
        # the run's state (and phases' default --out, var/phases) in this test's folder: from
        # a checkout the embedded default keeps it in the project, shared by parallel tests
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "SUPERVISOR_HOME": str(tmp_path)},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_phases_stopped_early_says_incomplete_and_soak_report_agrees(tmp_path: Path) -> None:
    run = _phases(tmp_path, "--broker", "stub", "--soak-cycles", "100000")
    metrics = tmp_path / "var" / "phases" / "phase3.metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (metrics.exists() and metrics.stat().st_size):
        time.sleep(0.2)
    time.sleep(2.0)  # a few hundred cycles in
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 1, out[-2000:] + err[-2000:]
    assert "INCOMPLETE run length: stopped by a signal after" in out
    assert out.rstrip().endswith("verdict: INCOMPLETE")
    later = subprocess.run(
        [sys.executable, "tools/soak_report.py", str(metrics), "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert later.returncode == 1
    assert json.loads(later.stdout)["verdict"] == "INCOMPLETE"
