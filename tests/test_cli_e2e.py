"""``python -m supervisor`` as a real process: cycles, signals, validation, no orphans."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.sessions import FRIDAY_1545

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def supervisor_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "supervisor", *args]


def env(home: Path) -> dict[str, str]:
    """The embedded default keeps its files in SUPERVISOR_HOME: each test in its own."""
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "SUPERVISOR_HOME": str(home)}


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        supervisor_cmd(*args),
        cwd=tmp_path,
        env=env(tmp_path),
        text=True,
        capture_output=True,
        timeout=100,
    )


def test_run_prints_one_line_per_cycle(tmp_path):
    done = run(tmp_path, "run", "--broker", "stub", "--cycles", "3")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("cycle ")]
    assert [line.split(":")[0] for line in lines] == ["cycle 1", "cycle 2", "cycle 3"]
    for line in lines:
        assert "symbols ok 3/3" in line
        assert all(f"{s}=" in line for s in ("SPY", "QQQ", "AAPL"))
    assert any(" intents 0 " not in line for line in lines)  # at least one intent in the run
    assert (tmp_path / "var" / "bot.jsonl").stat().st_size > 0
    assert "Traceback" not in done.stderr


def test_validate_names_the_broken_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "universe:\n  symbols: [SPY]\n  max_concurent_symbols: 4\n"
        "options:\n  strikes_each_side: -1\n"
    )
    done = run(tmp_path, "validate", "--config", str(bad))
    assert done.returncode == 2
    assert "universe.max_concurent_symbols" in done.stderr and "unknown key" in done.stderr
    assert "options.strikes_each_side: -1" in done.stderr
    assert "Traceback" not in done.stderr


def test_validate_accepts_the_embedded_settings(tmp_path):
    done = run(tmp_path, "validate")
    assert done.returncode == 0 and done.stdout.startswith("OK")


def test_run_refuses_a_bad_file_and_a_bad_flag_without_traceback(tmp_path):
    missing = run(tmp_path, "run", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read the file" in missing.stderr
    flag = run(tmp_path, "run", "--cycles", "-3")
    assert flag.returncode == 2 and "--cycles" in flag.stderr
    strategy = tmp_path / "s.yaml"
    strategy.write_text("strategy:\n  name: no_such_pkg.mod:Strat\n")
    bad = run(tmp_path, "run", "--config", str(strategy), "--cycles", "1")
    assert bad.returncode == 2 and "cannot import no_such_pkg.mod" in bad.stderr
    for done in (missing, flag, bad):
        assert "Traceback" not in done.stderr


def _start_forever(tmp_path: Path) -> tuple[subprocess.Popen[str], list[int]]:
    """A run without a cycle limit; returns once the first cycle line is out."""
    proc = subprocess.Popen(
        supervisor_cmd("run", "--cycles", "0"),
        cwd=tmp_path,
        env=env(tmp_path),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("cycle 1"), first
    workers = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    assert len(workers) >= 2
    return proc, workers


def _gone(pids: list[int]) -> bool:
    _, alive = psutil.wait_procs(
        [psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=15
    )
    return not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_cleanly_with_no_orphans(tmp_path, signum):
    proc, workers = _start_forever(tmp_path)
    proc.send_signal(signum)
    assert proc.wait(timeout=30) == 0
    assert _gone(workers)


def test_a_second_bot_on_the_same_journal_exits_2_and_the_first_keeps_running(tmp_path):
    first, _workers = _start_forever(tmp_path)
    try:
        second = run(tmp_path, "run", "--cycles", "1")
        assert second.returncode == 2
        assert f"in use by another bot (pid {first.pid} " in second.stderr
        assert "journal-stub.sqlite" in second.stderr and "Traceback" not in second.stderr
        assert "cycle" not in second.stdout
        assert first.poll() is None  # untouched: still cycling
        assert first.stdout is not None and first.stdout.readline().startswith("cycle ")
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0


def test_sigkill_of_the_supervisor_leaves_no_workers(tmp_path):
    proc, workers = _start_forever(tmp_path)
    proc.kill()
    proc.wait(timeout=10)
    assert _gone(workers)


def test_sigkill_mid_run_then_restart_sends_no_intent_twice(tmp_path):
    # Given a run killed outright after its first cycle (the same simulated session replays)
    proc, workers = _start_forever(tmp_path)
    proc.kill()
    proc.wait(timeout=10)
    assert _gone(workers)
    # When the bot is started again over the same journal
    done = run(tmp_path, "run", "--cycles", "3")
    assert done.returncode == 0, done.stderr
    # Then every intent id has at most one order, and the replayed ones were refused
    import sqlite3

    db = sqlite3.connect(tmp_path / "var" / "journal-stub.sqlite")
    per_intent = db.execute("SELECT intent_id, COUNT(*) FROM orders GROUP BY intent_id").fetchall()
    assert per_intent and all(n == 1 for _, n in per_intent)
    rules = {r for (r,) in db.execute("SELECT rule FROM decisions WHERE accepted = 0")}
    assert "duplicate" in rules
    report = run(tmp_path, "report")
    rejections = next(
        line for line in report.stdout.splitlines() if line.startswith("rejections by rule:")
    )
    assert report.returncode == 0 and "duplicate 1" in rejections


def test_live_without_its_guards_refuses_with_the_reason(tmp_path):
    config = tmp_path / "live.yaml"
    config.write_text("execution:\n  mode: live\n")
    no_flag = run(tmp_path, "run", "--config", str(config), "--cycles", "1")
    assert no_flag.returncode == 2 and "lacks --live" in no_flag.stderr
    on_stub = run(tmp_path, "run", "--config", str(config), "--cycles", "1", "--live")
    assert on_stub.returncode == 2 and "needs the IBKR broker" in on_stub.stderr
    assert "cycle" not in no_flag.stdout + on_stub.stdout  # refused before any cycle ran


def test_whatif_mode_on_the_stub_is_reported(tmp_path):
    done = run(tmp_path, "run", "--mode", "whatif", "--cycles", "3")
    assert done.returncode == 0, done.stderr
    report = run(tmp_path, "report", "--json")
    import json

    summary = json.loads(report.stdout)
    assert summary["whatifs"] and all(w["init_margin_change"] > 0 for w in summary["whatifs"])


@pytest.mark.integration
def test_run_against_the_simulated_gateway_through_ib_insync(tmp_path):
    # Given the default scenario, which times like IBKR: a snapshot's data within ~0.2 s,
    # its end only ~11 s after the request
    scenario = yaml.safe_load((REPO_ROOT / "configs" / "scenarios" / "default.yaml").read_text())
    assert scenario["latency"]["snapshot_end_s"] >= 11
    done = run(tmp_path, "run", "--sim", "--cycles", "3", "--interval", "0.5")
    assert done.returncode == 0, done.stderr[-3000:]
    # Then every symbol is ok in every cycle: quotes complete on their fields, not the end
    lines = [line for line in done.stdout.splitlines() if line.startswith("cycle ")]
    assert len(lines) == 3
    assert all("symbols ok 3/3 failed 0 skipped 0" in line for line in lines), lines
    assert all("HOLD 3" not in line for line in lines)  # a decision, not a silent HOLD
    # each with a real reference price in its decision
    assert re.search(r"SPY (HOLD|BUY|SELL) \(\d\.\d\d\) .*close \d+\.\d\d", done.stderr)
    assert "no data within" not in done.stderr and "WARNING" not in done.stderr
    import json

    stats = json.loads((tmp_path / "var" / "gateway_sim_stats.json").read_text())
    assert stats["messages_total"] > 20  # the cycles really went over TCP to the simulator
    assert stats["violations_total"] == 0 and stats["market_data_lines_open"] == 0
    assert "gateway_sim: " in done.stderr and "violations 0" in done.stderr


def _decisions(journal: Path) -> dict[str, list[tuple[object, ...]]]:
    """What a run decided, without the timestamps and timings that differ between runs; in
    each cycle by symbol, not by id: results are acted on in the order they arrive."""
    import sqlite3

    db = sqlite3.connect(journal)
    intent_columns = [
        row[1] for row in db.execute("PRAGMA table_info(intents)") if row[1] != "quote_ts"
    ]
    try:
        return {
            "signals": db.execute(
                "SELECT cycle_id, day, symbol, signal, confidence, reasons, "
                "skipped, error FROM signals ORDER BY cycle_id, symbol"
            ).fetchall(),
            "intents": db.execute(
                f"SELECT {', '.join(intent_columns)} FROM intents ORDER BY intent_id"
            ).fetchall(),
            "decisions": db.execute(
                "SELECT intent_id, day, accepted, quantity, rule, reason "
                "FROM decisions ORDER BY intent_id, id"
            ).fetchall(),
        }
    finally:
        db.close()


def _cycle_lines(stdout: str) -> list[str]:
    """The cycle lines without what the wall clock says: their duration (``| 0.87s |``) and
    the ETA of the progress (``· 1/3, ETA 4s``, kept as ``· 1/3``)."""
    lines = [line for line in stdout.splitlines() if line.startswith("cycle ")]
    return [re.sub(r", ETA \S+$", "", re.sub(r"\| [0-9.]+s \|", "|", line)) for line in lines]


@pytest.mark.integration
def test_two_sim_runs_of_the_pinned_scenario_decide_the_same(tmp_path):
    # Given the default scenario (pinned at Tuesday 10:30 ET, prices moving once a minute),
    # run twice, each with a journal of its own
    runs = []
    for name in ("first", "second"):
        where = tmp_path / name
        where.mkdir()
        done = run(where, "run", "--sim", "--cycles", "3", "--interval", "0.5")
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append((done, _decisions(where / "var" / "journal-sim.sqlite")))
    (first, first_journal), (second, second_journal) = runs
    # Then both print the same cycles and journal the same signals, intents and decisions
    assert _cycle_lines(first.stdout) == _cycle_lines(second.stdout)
    assert len(_cycle_lines(first.stdout)) == 3
    assert first_journal == second_journal
    assert first_journal["intents"], "the pinned session should produce an intent"
    assert {row[1] for row in first_journal["signals"]} == {"2026-12-01"}  # the sim's day


@pytest.mark.integration
def test_check_against_the_simulated_gateway(tmp_path):
    done = run(tmp_path, "check", "--sim", "--symbol", "QQQ")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "check QQQ via ibkr: OK" in done.stdout
    assert "window (11)" in done.stdout


@pytest.mark.integration
def test_check_of_a_symbol_the_gateway_does_not_know_says_so(tmp_path):
    done = run(tmp_path, "check", "--sim", "--symbol", "SPYY")
    assert done.returncode == 2, done.stdout + done.stderr[-3000:]  # a bad flag, not exit 3
    assert "SPYY is unknown at the gateway (error 200" in done.stdout
    assert "cannot connect" not in done.stdout + done.stderr
    assert "Error" not in done.stdout + done.stderr and "Request" not in done.stderr


def test_a_run_whose_gateway_never_answers_leaves_no_empty_journal(tmp_path):
    config = tmp_path / "settings.yaml"
    config.write_text("ibkr:\n  connect_wait_s: 0.5\n")
    done = run(tmp_path, "run", "--config", str(config), "--broker", "ibkr", "--port", "1")
    assert done.returncode == 3, done.stderr[-2000:]
    assert not list((tmp_path / "var").glob("journal-*"))


def test_check_against_nothing_listening_fails_clearly(tmp_path):
    done = run(tmp_path, "check", "--broker", "ibkr", "--port", "1")
    assert done.returncode == 3
    assert "FAILED" in done.stdout and "Traceback" not in done.stderr + done.stdout


@pytest.mark.integration
def test_live_with_all_three_keys_sends_brackets_to_the_simulator(tmp_path):
    config = tmp_path / "live.yaml"
    config.write_text("execution:\n  mode: live\nibkr:\n  account: DU1234567\n")
    done = run(
        tmp_path,
        "run",
        "--sim",
        "--config",
        str(config),
        "--live",
        "--cycles",
        "2",
        "--interval",
        "0.5",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    stats = json.loads((tmp_path / "var" / "gateway_sim_stats.json").read_text())
    report = run(tmp_path, "report", "--config", str(config), "--json")
    orders = json.loads(report.stdout)["orders"]
    submitted = sum(o["count"] for o in orders if o["mode"] == "live")
    assert submitted >= 1
    assert stats["orders_received"] == 3 * submitted  # parent, take-profit, stop each
    assert stats["violations_total"] == 0


def test_falling_prices_trip_the_kill_switch_which_survives_a_restart(tmp_path):
    # Given a 1 % daily loss limit: the stub session's stop-losses lose more than that
    config = tmp_path / "tight.yaml"
    config.write_text("risk:\n  daily_loss_limit_pct: 1.0\n")
    first = run(tmp_path, "run", "--config", str(config), "--cycles", "30")
    assert first.returncode == 0 and "KILL SWITCH" in first.stderr
    # When the bot restarts the same (simulated) day
    second = run(tmp_path, "run", "--config", str(config), "--cycles", "3")
    # Then it is still halted: entries refused by the kill switch, one alert for the day
    assert second.returncode == 0 and "halted True" in second.stderr
    assert "KILL SWITCH" not in second.stderr  # logged and alerted once, not again
    report = run(tmp_path, "report", "--config", str(config))
    assert "kill switch: HALTED" in report.stdout
    assert report.stdout.count("kill_switch [daily_loss]") == 1


def _expiring(journal: Path, expiry: str) -> tuple[list[tuple[str, str, float]], int]:
    """Positions in contracts of ``expiry`` (status, reason, closed_ts), and accepted entries."""
    import sqlite3

    db = sqlite3.connect(journal)
    try:
        positions = db.execute(
            "SELECT status, exit_reason, closed_ts FROM positions WHERE expiry = ?", (expiry,)
        ).fetchall()
        accepted = db.execute(
            "SELECT COUNT(*) FROM decisions d JOIN intents i USING "
            "(intent_id) WHERE i.expiry = ? AND d.accepted = 1",
            (expiry,),
        ).fetchone()[0]
        return positions, accepted
    finally:
        db.close()


def test_a_friday_1545_stub_session_enters_nothing_expiring_that_day(tmp_path):
    # Given the default settings and the stub pinned at Friday 15:45 (an expiry day)
    done = run(tmp_path, "run", "--start", FRIDAY_1545.isoformat(), "--cycles", "15")
    assert done.returncode == 0, done.stderr[-3000:]
    # Then no entry in a contract expiring today was accepted (the entry window has closed)
    _positions, accepted = _expiring(tmp_path / "var" / "journal-stub.sqlite", "20261204")
    assert accepted == 0
    assert "entry_window" in done.stderr


def test_nothing_is_held_into_friday_s_close(tmp_path):
    # Given settings that allow 0-DTE entries (at least 30 min to the close) with brackets too
    # wide to be hit, on the stub from Friday 14:55 to the close
    config = tmp_path / "zero_dte.yaml"
    config.write_text(
        "options:\n  expiry_rule: nearest\n  min_dte: 0\n"
        "  min_minutes_to_expiry: 30\n  take_profit_pct: 1000\n"
        "  stop_loss_pct: 95\n"
    )
    start = FRIDAY_1545.replace(hour=14, minute=55)
    done = run(
        tmp_path, "run", "--config", str(config), "--start", start.isoformat(), "--cycles", "65"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Then every position in today's expiry was closed before 16:00, those held to the end
    # sold with exit reason "expiry" from 15:45 on; none was left to expire
    positions, accepted = _expiring(tmp_path / "var" / "journal-stub.sqlite", "20261204")
    close = FRIDAY_1545.replace(hour=16, minute=0).timestamp()
    assert accepted >= 1 and positions
    assert all(status == "closed" and ts < close for status, _reason, ts in positions)
    reasons = {reason for _status, reason, _ts in positions}
    assert "expiry" in reasons and "expired" not in reasons
    assert all(ts >= FRIDAY_1545.timestamp() for _s, reason, ts in positions if reason == "expiry")
    report = run(tmp_path, "report", "--day", "2026-12-04")
    assert "expiry exit" in report.stdout


@pytest.mark.integration
def test_a_friday_1545_sim_session_enters_nothing_expiring_that_day(tmp_path):
    done = run(
        tmp_path,
        "run",
        "--sim",
        "--start",
        FRIDAY_1545.isoformat(),
        "--cycles",
        "3",
        "--interval",
        "0.5",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    _positions, accepted = _expiring(tmp_path / "var" / "journal-sim.sqlite", "20261204")
    assert accepted == 0
    assert len([line for line in done.stdout.splitlines() if line.startswith("cycle ")]) == 3


@pytest.mark.parametrize("workers", [2, 8])
def test_sigterm_to_the_whole_process_group_is_a_quiet_clean_stop(tmp_path, workers):
    # Given a bot started the way systemd starts one: its own process group
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            supervisor_cmd("run", "--cycles", "0", "--workers", str(workers)),
            cwd=tmp_path,
            env=env(tmp_path),
            text=True,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("cycle 1")
        children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        # When systemd stops it: SIGTERM to every process of the group at once
        os.killpg(proc.pid, signal.SIGTERM)
        # Then it exits 0 within 10 s, says nothing alarming, respawns nothing
        assert proc.wait(timeout=10) == 0
    text = log.read_text()
    after = text[text.index("SIGTERM received") :]
    assert " ERROR " not in text and "Traceback" not in text, text[-3000:]
    assert "started (pid" not in after, after  # no worker respawned during the stop
    assert _gone(children)


def test_the_console_command_is_the_same_command_line(tmp_path):
    console = Path(sys.executable).parent / "ibkr-bot"
    assert console.exists(), "pip install -e . makes the ibkr-bot console command"
    version = subprocess.run(
        [str(console), "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and version.stdout.startswith("ibkr-options-bot 0.")
    done = subprocess.run(
        [str(console), "run", "--cycles", "1"],
        cwd=tmp_path,
        env=env(tmp_path),
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("cycle 1: symbols ok 3/3")
    helped = subprocess.run([str(console), "--help"], capture_output=True, text=True, timeout=60)
    for verb in ("run", "check", "phases", "report", "reconcile", "validate", "chaos"):
        assert f"\n    {verb}" in helped.stdout


@pytest.mark.parametrize(
    "args, extra_env, said",
    [
        (
            ("run", "--cycles", "1", "--port", "4002"),
            {},
            "--port: for a gateway, but the broker is stub",
        ),
        (
            ("check", "--host", "127.0.0.1", "--client-id", "7"),
            {},
            "--host, --client-id: for a gateway",
        ),
        (("run", "--cycles", "1"), {"IBKR_PORT": "4002"}, "IBKR_PORT (environment): for a gateway"),
        (("run", "--sim", "--cycles", "1", "--port", "4002"), {}, "but the broker is sim"),
    ],
)
def test_connection_options_without_a_gateway_broker_are_an_error(tmp_path, args, extra_env, said):
    done = subprocess.run(
        supervisor_cmd(*args),
        cwd=tmp_path,
        env={**env(tmp_path), **extra_env},
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert not done.stdout  # nothing ran


def test_the_broker_comes_from_the_settings_and_the_flag_overrides_it(tmp_path):
    config = tmp_path / "settings.yaml"
    config.write_text("broker: ibkr\nibkr:\n  port: 9\n  connect_timeout_s: 2\n")
    refused = run(tmp_path, "check", "--config", str(config))
    assert refused.returncode == 3 and "127.0.0.1:9" in refused.stdout + refused.stderr
    assert "TWS paper 7497" in refused.stdout + refused.stderr
    stub = run(tmp_path, "run", "--config", str(config), "--broker", "stub", "--cycles", "1")
    assert stub.returncode == 0 and stub.stdout.startswith("cycle 1")
