"""``python -m supervisor chaos``: the schedule, the checks (each able to fail), and a
compressed run end to end against the simulator with every kind of fault."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.commands.chaos_checks import (
    ChaosReport,
    Recovery,
    journal_findings,
    journaled_intents,
)
from supervisor.commands.chaos_plan import (
    GATEWAY_RESTART,
    SUPERVISOR_KILL,
    SUPERVISOR_TERM,
    WORKER_KILL,
    plan,
)
from supervisor.journal.store import Journal
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(60)


def test_the_schedule_is_seeded_spread_and_has_every_kind() -> None:
    faults = plan(1000, seed=7)
    assert faults == plan(1000, seed=7) and faults != plan(1000, seed=8)
    kinds = [f.kind for f in faults]
    assert kinds.count(WORKER_KILL) == 25 and kinds.count(GATEWAY_RESTART) == 4
    assert kinds.count(SUPERVISOR_TERM) == 2 and kinds.count(SUPERVISOR_KILL) == 2
    cycles = [f.at_cycle for f in faults]
    assert cycles == sorted(cycles) and cycles[0] >= 3 and cycles[-1] < 900
    assert {f.kind for f in plan(40, seed=1)} == {WORKER_KILL, GATEWAY_RESTART,
                                                  SUPERVISOR_TERM, SUPERVISOR_KILL}


def test_every_check_can_fail() -> None:
    report = ChaosReport(planned_cycles=100, seed=1, cycles=100, integrity="ok")
    assert report.problems() == [] and report.to_dict()["verdict"] == "PASS"
    report.cycles = 99
    report.hung_cycles = 1
    report.crashes.append("bot run 2 exited with code 1 by itself")
    report.integrity = "*** in database main ***"
    report.rows_lost, report.duplicates, report.orphans = 2, 1, 3
    report.rss_growth_mb = 80.0
    report.recoveries.append(Recovery(GATEWAY_RESTART, 50, None))
    problems = report.problems()
    assert len(problems) == 9, problems
    assert report.to_dict()["verdict"] == "FAIL"
    assert report.lines()[-1].startswith("verdict: FAIL (99 of 100 cycles completed")


def test_the_journal_checks_find_a_decision_taken_twice(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    Journal(path).close()
    db = sqlite3.connect(path)
    for n in (1, 2):
        db.execute("INSERT INTO decisions (intent_id, day, ts, accepted, quantity, rule, "
                   "reason, values_json) VALUES ('i1', '2026-12-01', ?, 1, 1, 'ok', '', '{}')",
                   (n,))
    db.commit()
    db.close()
    found = journal_findings(path)
    assert found["integrity"] == "ok" and found["duplicates"] == 1
    assert journaled_intents(tmp_path / "absent.sqlite") == set()


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_a_compressed_chaos_run_survives_every_fault(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "chaos", "--cycles", "60", "--seed", "3",
         "--json", "--out", str(tmp_path / "chaos")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=280)
    report = json.loads(done.stdout)
    assert done.returncode == 0, (report["problems"], done.stderr[-2000:])
    assert report["verdict"] == "PASS" and report["cycles"] >= 60
    assert {r["kind"] for r in report["recoveries"]} == {
        WORKER_KILL, GATEWAY_RESTART, SUPERVISOR_TERM, SUPERVISOR_KILL}
    assert all(r["seconds"] is not None for r in report["recoveries"])
    assert report["bot_runs"] >= 3 and report["gateway_restarts"] >= 1
    assert report["integrity"] == "ok" and report["rows_lost"] == 0
    assert report["duplicates"] == 0 and report["orphans"] == 0 and not report["crashes"]
