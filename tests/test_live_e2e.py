"""Live mode end to end: ``python -m supervisor run --live`` as a real process against the
simulated gateway as another real process, which outlives the bot like a real gateway (so a
killed bot can be restarted against the same account and orders)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest_sim import write_scenario
from tests.external_sim import ExternalSim, bot, bot_env, wait_for
from tests.sessions import TUESDAY_1400, TUESDAY_1500, TUESDAY_CLOSE, TUESDAY_MORNING

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

LIVE = """execution:
  mode: live
ibkr:
  account: DU1234567
"""


def journal_rows(journal: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def journaled(journal: Path, sql: str) -> bool:
    """Whether a running bot's journal has rows for ``sql`` yet: the file appears a moment
    before its tables do, and that moment is not an error."""
    if not journal.exists():
        return False
    try:
        return bool(journal_rows(journal, sql))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return False
        raise


def live_cycles(
    tmp_path: Path,
    settings: str,
    start: datetime,
    rate: float,
    cycles: int = 20,
    interval_s: float = 0.3,
    entry_timeout_s: float = 300,
    until: datetime | None = None,
) -> tuple[Path, subprocess.CompletedProcess[str], dict[str, Any]]:
    """A live run of ``cycles`` on a simulator of its own, pinned at ``start`` and ``rate``
    (prices move once a sim minute), regular hours off (cycles go on after the close); the
    settings file, the run and the simulator's final stats. With ``until``, the run goes on
    until a cycle has ended at that session instant (whatever the machine's speed), then is
    stopped with SIGTERM."""
    config = tmp_path / "live.yaml"
    live = LIVE.replace("mode: live\n", f"mode: live\n  entry_timeout_s: {entry_timeout_s}\n")
    config.write_text(live + settings + "schedule:\n  regular_hours_only: false\n")
    scenario = write_scenario(
        tmp_path / "scenario.yaml",
        start,
        clock={"rate": rate, "market_step_s": 60},
        market_data={"stream_interval_s": 1.0},
    )
    with ExternalSim(tmp_path, scenario) as sim:
        args = ["run", *sim.args, "--config", str(config), "--live", "--interval", str(interval_s)]
        if until is None:
            done = bot(tmp_path, *args, "--cycles", str(cycles))
        else:
            done = bot_until(tmp_path, [*args, "--cycles", "0"], until)
        stats = sim.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    return config, done, stats


def bot_until(home: Path, args: list[str], until: datetime) -> subprocess.CompletedProcess[str]:
    """``run`` until its journal holds a cycle that ended at ``until`` on the session clock,
    then SIGTERM (a stop: the last fills are booked) and the finished run."""
    journal = home / "var" / "journal-sim.sqlite"
    err = home / "bot.stderr"
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", *args],
            cwd=home,
            env=bot_env(home),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
        try:
            wait_for(
                lambda: (
                    proc.poll() is not None
                    or journaled(
                        journal, f"SELECT 1 FROM cycles WHERE ended_ts >= {until.timestamp()}"
                    )
                ),
                150,
                f"a cycle ended at {until:%H:%M} session time",
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
    return subprocess.CompletedProcess(args, code, "", err.read_text())


def test_a_live_session_keeps_the_caps_at_the_broker_and_reports_what_the_account_holds(
    tmp_path: Path,
) -> None:
    # Given caps of 5 contracts per symbol (one position per direction off, so the caps
    # alone hold the line), exits tight enough to fill within the session, a session from
    # 14:00 at 200x: the entry window (the bot's start-up takes 15-60 session minutes of it,
    # the more the busier the machine), then the close, after which nothing fills and the
    # account holds still for the comparison; the bot stopped once a cycle ended past it
    config, _done, stats = live_cycles(
        tmp_path,
        "risk:\n  max_position_per_symbol: 5\n  one_position_per_direction: false\n"
        "options:\n  take_profit_pct: 10\n  stop_loss_pct: 10\n",
        TUESDAY_1400,
        200,
        interval_s=0.5,
        until=TUESDAY_CLOSE + timedelta(minutes=5),
    )
    # Then the broker never held more than 5 of any underlying, and orders did go out
    assert stats["peak_long_options"] and max(stats["peak_long_options"].values()) <= 5
    assert sum(stats["orders_by_ref"].values()) >= 6
    assert all(n == 3 for n in stats["orders_by_ref"].values())  # whole brackets, once each
    # and the report shows what the simulator's account holds, and its realized P&L
    report = bot(tmp_path, "report", "--config", str(config), "--json")
    summary = json.loads(report.stdout)
    account = stats["account"]
    held_at_broker = sorted(
        (f"{p['symbol']} {p['expiry']} {p['strike']:g}{p['right']}", p["quantity"])
        for p in account["positions"]
        if p["quantity"]
    )
    held_in_journal = sorted(
        (p["contract"], p["held"]) for p in summary["positions"]["open"] if p["held"]
    )
    assert held_in_journal == held_at_broker
    assert summary["pnl"]["realized"] == pytest.approx(account["realized_pnl_today"], abs=0.01)
    assert "broker P&L (IBKR" in bot(tmp_path, "report", "--config", str(config)).stdout


def test_twenty_live_cycles_never_hold_more_than_the_cap_at_the_broker(tmp_path: Path) -> None:
    # Given caps of 5 per symbol and entries that fill at once and are held (exits far away,
    # sizes of 4 or 5): without counting what the broker holds the simulator reached 14. From
    # 15:00 at 100x: the bot's start-up (10-20 session minutes on a busy machine) leaves
    # cycles enough in the entry window, which ends at 15:45
    _config, done, stats = live_cycles(
        tmp_path,
        "risk:\n  max_position_per_symbol: 5\n  risk_per_trade_pct: 2\n"
        "  one_position_per_direction: false\n"
        "options:\n  entry_price: ask\n  take_profit_pct: 1000\n  stop_loss_pct: 95\n",
        TUESDAY_1500,
        100,
        entry_timeout_s=3600,
    )
    peaks = stats["peak_long_options"]
    assert len(stats["orders_by_ref"]) >= 4  # several brackets, on several symbols
    assert peaks and max(peaks.values()) <= 5, peaks
    assert "max_position_per_symbol" in done.stderr  # the cap did refuse or shrink one


def test_a_bracket_the_gateway_refuses_is_journaled_as_rejected_with_its_code(
    tmp_path: Path,
) -> None:
    config = tmp_path / "live.yaml"
    config.write_text(LIVE)
    scenario = write_scenario(
        tmp_path / "scenario.yaml",
        TUESDAY_MORNING,
        orders={
            "rejects": [
                {
                    "sec_type": "OPT",
                    "action": "BUY",
                    "reason": "YOUR ORDER IS NOT ACCEPTED. INSUFFICIENT MARGIN",
                }
            ]
        },
    )
    done = bot(
        tmp_path,
        "run",
        "--sim",
        "--scenario",
        str(scenario),
        "--config",
        str(config),
        "--live",
        "--cycles",
        "3",
        "--interval",
        "0.3",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    journal = tmp_path / "var" / "journal-sim.sqlite"
    orders = journal_rows(journal, "SELECT status, details FROM orders")
    assert orders and {status for status, _ in orders} == {"rejected"}
    assert all(json.loads(str(details))["error_code"] == 201 for _, details in orders)
    decisions = journal_rows(
        journal, "SELECT accepted, rule, reason FROM decisions WHERE rule = 'rejected'"
    )
    assert len(decisions) == len(orders)
    assert all(a == 0 and "INSUFFICIENT MARGIN" in str(r) for a, _, r in decisions)
    assert "rejected by the gateway" in done.stderr


def test_a_bot_killed_mid_session_restarts_without_sending_anything_twice(tmp_path: Path) -> None:
    config = tmp_path / "live.yaml"
    config.write_text(LIVE + "schedule:\n  regular_hours_only: false\n")
    scenario = write_scenario(
        tmp_path / "scenario.yaml",
        TUESDAY_MORNING,
        clock={"rate": 30, "market_step_s": 60},
        market_data={"stream_interval_s": 1.0},
    )
    journal = tmp_path / "var" / "journal-sim.sqlite"
    with ExternalSim(tmp_path, scenario) as sim:
        # Given a live bot killed outright once a bracket of it is working at the gateway
        first = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "supervisor",
                "run",
                *sim.args,
                "--config",
                str(config),
                "--live",
                "--cycles",
                "0",
                "--interval",
                "0.3",
            ],
            cwd=tmp_path,
            env=bot_env(tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(
                lambda: journaled(
                    journal, "SELECT 1 FROM orders WHERE status IN ('submitted', 'working')"
                ),
                90,
                "a live bracket",
            )
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        sent_before = dict(sim.stats_once_alone()["orders_by_ref"])
        # When it is started again on the same journal and gateway
        second = bot(
            tmp_path,
            "run",
            *sim.args,
            "--config",
            str(config),
            "--live",
            "--cycles",
            "4",
            "--interval",
            "0.3",
        )
        assert second.returncode == 0, second.stderr[-3000:]
        check = bot(tmp_path, "reconcile", *sim.args, "--config", str(config))
        stats = sim.stop()
    # Then no bracket went out twice: every orderRef carries one bracket, and none sent
    # before the kill was sent again
    assert sent_before and all(n == 3 for n in stats["orders_by_ref"].values())
    assert all(stats["orders_by_ref"][ref] == n for ref, n in sent_before.items())
    assert "reconcile:" not in second.stderr  # found every order and position: no problem
    # and the reconcile command finds the journal and the account in agreement
    assert check.returncode == 0, check.stdout + check.stderr
    assert ", 0 problems" in check.stdout
    unsure = journal_rows(
        journal, "SELECT COUNT(*) FROM orders WHERE status IN ('sending', 'unconfirmed')"
    )
    assert unsure == [(0,)]
