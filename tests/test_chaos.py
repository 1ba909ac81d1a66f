"""``python -m supervisor chaos``: the schedule, the checks (each able to fail), the verdicts
on the independent records (the JSON log, the journals, the simulator's order log, memory
by role), and a compressed run end to end against the simulator with every kind of fault."""

from __future__ import annotations

import json
import os
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
from supervisor.commands.chaos_hang import claim
from supervisor.commands.chaos_plan import (
    FD_FLOOD,
    GATEWAY_FREEZE,
    GATEWAY_RESTART,
    JOURNAL_DELETE,
    JOURNAL_REPLACE,
    SUPERVISOR_KILL,
    SUPERVISOR_TERM,
    WORKER_HANG,
    WORKER_KILL,
    plan,
)
from supervisor.commands.chaos_procs import CYCLE_LINE
from supervisor.commands.chaos_records import (
    all_decided,
    broker_duplicates,
    gateway_orders,
    journal_intents,
    logged_accepted,
    record_mismatch,
    rss_growth_mb,
)
from supervisor.journal.store import Journal
from tests.conftest import REPO_ROOT
from tools.gateway_sim.__main__ import DEFAULT_SCENARIO
from tools.gateway_sim.scenario import load_scenario
from tools.gateway_sim.server import SimServer

pytestmark = pytest.mark.timeout(60)


def test_the_schedule_is_seeded_spread_and_has_every_kind() -> None:
    faults = plan(1000, seed=7)
    assert faults == plan(1000, seed=7) and faults != plan(1000, seed=8)
    kinds = [f.kind for f in faults]
    assert kinds.count(WORKER_KILL) == 25 and kinds.count(GATEWAY_RESTART) == 4
    assert kinds.count(SUPERVISOR_TERM) == 2 and kinds.count(SUPERVISOR_KILL) == 2
    cycles = [f.at_cycle for f in faults]
    assert cycles == sorted(cycles) and cycles[0] >= 3 and cycles[-1] < 900
    assert kinds.count(WORKER_HANG) == 10 and kinds.count(GATEWAY_FREEZE) == 6
    assert kinds.count(JOURNAL_DELETE) == kinds.count(JOURNAL_REPLACE) == 2
    assert kinds.count(FD_FLOOD) == 3
    assert {f.kind for f in plan(40, seed=1)} == {
        WORKER_KILL,
        GATEWAY_RESTART,
        SUPERVISOR_TERM,
        SUPERVISOR_KILL,
        WORKER_HANG,
        GATEWAY_FREEZE,
        JOURNAL_DELETE,
        JOURNAL_REPLACE,
        FD_FLOOD,
    }


def test_every_check_can_fail() -> None:
    report = ChaosReport(planned_cycles=100, seed=1, cycles=100, integrity="ok")
    assert report.problems() == [] and report.to_dict()["verdict"] == "PASS"
    report.cycles = 99
    report.hung_cycles = 1
    report.crashes.append("bot run 2 exited with code 1 by itself")
    report.integrity = "*** in database main ***"
    report.rows_lost, report.duplicates, report.orphans = 2, 1, 3
    report.rss_growth_mb = {"supervisor": 80.0, "workers": 3.0}
    report.recoveries.append(Recovery(GATEWAY_RESTART, 50, None))
    report.recoveries.append(Recovery(GATEWAY_FREEZE, 60, 61.0))  # over the 60 s limit
    report.logged_not_journaled = ["i1"]
    report.journaled_not_logged = ["i2"]
    report.broker_duplicates, report.duplicate_refs = 1, {"i3": 2}
    report.findings.append("journal_delete at cycle 9: the bot never said so")
    report.faults, report.wall_s = {"alert_hang": 1}, 120.0  # and no heartbeat went out
    problems = report.problems()
    assert len(problems) == 15, problems
    assert report.to_dict()["verdict"] == "FAIL"
    assert report.lines()[-1].startswith("verdict: FAIL (99 of 100 cycles completed")


def test_the_journal_checks_find_a_decision_taken_twice(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    Journal(path).close()
    db = sqlite3.connect(path)
    for n in (1, 2):
        db.execute(
            "INSERT INTO decisions (intent_id, day, ts, accepted, quantity, rule, "
            "reason, values_json) VALUES ('i1', '2026-12-01', ?, 1, 1, 'ok', '', '{}')",
            (n,),
        )
    db.commit()
    db.close()
    found = journal_findings(path)
    assert found["integrity"] == "ok" and found["duplicates"] == 1
    assert journaled_intents(tmp_path / "absent.sqlite") == set()
    damaged = tmp_path / "damaged.sqlite"  # past what integrity_check can read: a verdict
    damaged.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    assert journal_findings(damaged)["integrity"].startswith("cannot be read: ")
    assert journaled_intents(damaged) == set() == journal_intents([damaged])


def test_a_decision_logged_but_in_no_journal_fails_and_so_does_the_other_way() -> None:
    assert record_mismatch({"a", "b"}, {"a", "b"}, set()) == ([], [])
    assert record_mismatch({"a", "b"}, {"a"}, set()) == (["b"], [])
    assert record_mismatch({"a"}, {"a", "c"}, set()) == ([], ["c"])
    assert record_mismatch({"a"}, {"a", "c"}, {"c"}) == ([], [])  # just before a SIGKILL
    report = ChaosReport(planned_cycles=1, seed=1, cycles=1, integrity="ok")
    report.logged_not_journaled = record_mismatch({"a", "b"}, {"a"}, set())[0]
    assert report.to_dict()["verdict"] == "FAIL"
    assert "1 accepted decision(s) in the log and in no journal: b" in report.problems()


def test_an_order_ref_sent_to_the_gateway_as_two_brackets_is_a_broker_duplicate() -> None:
    def bracket(ref: str, entry_id: int, pid: int = 1) -> list[dict[str, object]]:
        return [
            {
                "pid": pid,
                "client_id": 1,
                "order_id": entry_id,
                "parentId": 0,
                "orderRef": ref,
                "action": "BUY",
            },
            *(
                {
                    "pid": pid,
                    "client_id": 1,
                    "order_id": entry_id + n,
                    "parentId": entry_id,
                    "orderRef": ref,
                    "action": "SELL",
                }
                for n in (1, 2)
            ),
        ]

    once = bracket("r1", 10) + bracket("r2", 13)
    assert broker_duplicates(once) == {}
    assert broker_duplicates(once + bracket("r1", 10)) == {}  # the same ids: a modification
    assert broker_duplicates(once + bracket("r1", 20)) == {"r1": 2}
    assert broker_duplicates(once + bracket("r1", 10, pid=2)) == {"r1": 2}  # a new gateway
    sale = {
        "pid": 1,
        "client_id": 1,
        "order_id": 30,
        "parentId": 0,
        "orderRef": "r1",
        "action": "SELL",
    }  # a lone exit placed again for a held position: not a bracket
    assert broker_duplicates([*once, sale]) == {}
    report = ChaosReport(planned_cycles=1, seed=1, cycles=1, integrity="ok")
    report.duplicate_refs = broker_duplicates(once + bracket("r1", 20))
    report.broker_duplicates = len(report.duplicate_refs)
    assert report.problems() == ["1 orderRef(s) reached the gateway as more than one bracket: r1"]


def test_a_cycle_in_which_one_symbol_failed_is_not_healthy() -> None:
    line = "cycle 7: symbols ok 2/3 failed 1 skipped 0 in 1.20s"
    found = CYCLE_LINE.search(line)
    assert found is not None
    assert not all_decided(int(found["ok"]), int(found["n"]))
    assert all_decided(3, 3) and not all_decided(2, 3) and not all_decided(0, 0)


def test_rss_growth_is_summed_over_the_processes_of_each_role() -> None:
    # Given two supervisor runs that each grew 10 MB after warm-up, a worker that held still
    # and one seen too briefly to judge
    def series(before: float, after: float) -> list[tuple[float, float]]:
        return [(t, before if t < 50 else after) for t in range(0, 100, 5)]

    grows = series(100.0, 110.0)  # a sample every 5 s: 100 MB, then 110 MB from 50 s on
    samples = {
        ("supervisor", 1): grows,
        ("supervisor", 2): grows,
        ("workers", 3): series(50.0, 50.0),
        ("workers", 4): [(30.0, 80.0)],
    }
    growth = rss_growth_mb(samples)
    assert growth["supervisor"] == 20.0
    assert growth["workers"] == 0.0


def test_the_log_and_the_journals_are_read_as_independent_records(tmp_path: Path) -> None:
    log = tmp_path / "bot.jsonl"
    lines = [
        {"event": "execution", "intent_id": "a", "accepted": True},
        {"event": "execution", "intent_id": "b", "accepted": False},
        {"event": "order_rejected", "intent_id": "c", "accepted": True},
        {"event": "cycle", "cycle_id": 3},
    ]
    log.write_text("\n".join(json.dumps(x) for x in lines) + "\n{cut by a kil")
    (tmp_path / "bot.jsonl.1").write_text(
        json.dumps({"event": "execution", "intent_id": "d", "accepted": True}) + "\n"
    )
    assert logged_accepted(log) == {"a", "c", "d"}
    path = tmp_path / "journal.sqlite"
    Journal(path).close()
    db = sqlite3.connect(path)
    for intent, rule in (("a", "ok"), ("z", "adopted")):
        db.execute(
            "INSERT INTO intents (intent_id, day, cycle_id, symbol, contract_symbol, "
            "expiry, strike, option_right, multiplier, exchange, trading_class, "
            "signal, reasons) VALUES (?, '2026-12-01', 1, 'SPY', 'SPY', '20261204', "
            "600, 'C', 100, 'SMART', 'SPY', 'BUY', '[]')",
            (intent,),
        )
        db.execute(
            "INSERT INTO decisions (intent_id, day, ts, accepted, quantity, rule, "
            "reason, values_json) VALUES (?, '2026-12-01', 1, 1, 1, ?, '', '{}')",
            (intent, rule),
        )
    db.commit()
    db.close()
    # an adopted intent was rebuilt from the broker's orders: not a decision of this journal
    assert journal_intents([path, tmp_path / "gone.sqlite"]) == {"a"}


def test_the_simulator_logs_every_order_it_receives_as_it_arrives(tmp_path: Path) -> None:
    server = SimServer(load_scenario(DEFAULT_SCENARIO), order_log=tmp_path / "orders.jsonl")
    entry = {
        "order_id": 7,
        "client_id": 1,
        "parentId": 0,
        "orderRef": "r1",
        "action": "BUY",
        "sec_type": "OPT",
        "symbol": "SPY",
        "totalQuantity": 2.0,
        "transmit": False,
        "whatIf": False,
    }
    server.log_order(entry)
    server.log_order({**entry, "order_id": 8, "whatIf": True})  # a what-if places nothing
    server.log_order({**entry, "order_id": 9, "parentId": 7, "action": "SELL"})
    logged = gateway_orders(tmp_path / "orders.jsonl")
    assert [(o["order_id"], o["parentId"], o["orderRef"]) for o in logged] == [
        (7, 0, "r1"),
        (9, 7, "r1"),
    ]
    assert {o["pid"] for o in logged} == {os.getpid()}


def test_a_hang_cue_is_taken_by_one_worker_only(tmp_path: Path) -> None:
    cue = tmp_path / "hang.cue"
    assert not claim(cue, "SPY")
    cue.write_text("*\n")
    assert claim(cue, "SPY") and not claim(cue, "QQQ")
    assert (tmp_path / "hang.cue.taken").read_text().startswith("SPY ")


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_a_compressed_live_chaos_run_survives_every_fault(tmp_path: Path) -> None:
    # journal_replace is left out: a journal replaced under the running bot leaves the old
    # file's WAL at the path, which the next start replays into the replacement (damaged)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "supervisor",
            "chaos",
            "--cycles",
            "30",
            "--seed",
            "3",
            "--live",
            "--without",
            JOURNAL_REPLACE,
            "--json",
            "--out",
            str(tmp_path / "chaos"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    report = json.loads(done.stdout)
    assert done.returncode == 0, (report["problems"], done.stderr[-2000:])
    assert report["verdict"] == "PASS" and report["cycles"] >= 30 and report["live"]
    assert set(report["faults"]) == {
        WORKER_KILL,
        GATEWAY_RESTART,
        SUPERVISOR_TERM,
        SUPERVISOR_KILL,
        WORKER_HANG,
        GATEWAY_FREEZE,
        JOURNAL_DELETE,
        FD_FLOOD,
        "alert_hang",
    }
    assert all(r["seconds"] is not None for r in report["recoveries"])
    assert report["bot_runs"] >= 4 and report["gateway_restarts"] >= 1
    assert report["integrity"] == "ok" and report["rows_lost"] == 0
    assert report["duplicates"] == 0 and report["orphans"] == 0 and not report["crashes"]
    # the independent records: brackets did reach the gateway, none twice; the log and the
    # journals agree; memory was sampled for every role
    assert report["broker_brackets"] >= 1 and report["broker_duplicates"] == 0
    assert report["logged_not_journaled"] == [] == report["journaled_not_logged"]
    assert set(report["rss_growth_mb"]) == {"supervisor", "workers", "simulator"}
