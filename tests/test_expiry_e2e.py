"""The expiry guard end to end: ``run`` as a real process against the simulated gateway with
IBKR's hours, cycles 20 minutes apart (15:20, 15:40, then the close), 0-DTE in-the-money
positions held: the guard alone closes them at 15:45, before the simulator would exercise
them at 16:00 (it exercises by exception, as OCC and IBKR do)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest_sim import write_scenario
from tests.external_sim import ExternalSim, bot_env, wait_for
from tests.sessions import FRIDAY_1545

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

FRIDAY_1520 = FRIDAY_1545.replace(minute=20, second=30)
SETTINGS = """strategy:
  name: tests.strategies:BuysEverySymbol
options:
  expiry_rule: nearest
  min_dte: 0
  min_minutes_to_expiry: 10
  moneyness: itm
  entry_price: ask
  take_profit_pct: 400
  stop_loss_pct: 90
"""
LIVE = """execution:
  mode: live
ibkr:
  account: DU1234567
"""


def _events(home: Path, name: str) -> list[dict[str, Any]]:
    log = home / "var" / "bot.jsonl"
    if not log.exists():
        return []
    with log.open(encoding="utf-8") as f:
        return [e for e in map(json.loads, f) if e.get("event") == name]


def _positions(journal: Path) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT intent_id, status, exit_reason, closed_ts, contract_symbol, "
            "expiry, strike, option_right FROM positions "
            "WHERE exit_reason IS NOT 'cancelled'"
        ).fetchall()
    finally:
        db.close()
    return [(*r[:4], f"{r[4]} {r[5]} {r[6]:g}{r[7]}") for r in rows]


def assert_closed_by_the_guard(home: Path) -> None:
    """Every position bought is closed; what its bracket had not closed by 15:45 was closed
    by the guard (exit reason expiry), in the window, before the close."""
    positions = _positions(home / "var" / "journal-sim.sqlite")
    assert positions, "nothing was bought: the test proves nothing"
    # paper: one left without a bid to sell to (gone out of the money) is said, by name,
    # and settles at the close (worthless); live, the account at the broker is checked
    tried = {key for e in _events(home, "expiry_guard_held") for key in e["contracts"]}
    held = [p for p in positions if p[1] != "closed"]
    assert all(p[4] in tried for p in held), (held, tried)
    positions = [p for p in positions if p[1] == "closed"]
    by_guard = [p for p in positions if p[3] >= FRIDAY_1545.timestamp()]
    assert by_guard and {p[2] for p in by_guard} == {"expiry"}
    assert all(p[3] < FRIDAY_1545.replace(hour=16, minute=0).timestamp() for p in by_guard)
    assert _events(home, "expiry_guard")


def run_past_the_close(home: Path, settings: str, live: bool) -> dict[str, Any]:
    """The bot from Friday 15:20:30 at 60x, interval 1200 s, until it has found the market
    closed after 16:00; the simulator's final stats."""
    config = home / "settings.yaml"
    config.write_text(settings + SETTINGS)
    scenario = write_scenario(
        home / "scenario.yaml", FRIDAY_1520, clock={"rate": 60, "market_step_s": 60}
    )
    err = home / "bot.stderr"
    with ExternalSim(home, scenario) as sim, err.open("w") as stderr:
        args = [
            "run",
            *sim.args,
            "--config",
            str(config),
            "--interval",
            "1200",
            "--cycles",
            "0",
            *(["--live"] if live else []),
        ]
        proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", *args],
            cwd=home,
            env=bot_env(home),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            wait_for(
                lambda: proc.poll() is not None or bool(_events(home, "market_closed")),
                200,
                "the bot finding the market closed after 16:00",
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=90)
        stats = sim.stop()
    assert code == 0, err.read_text()[-3000:]
    return stats


def test_live_positions_held_into_the_last_minutes_are_closed_by_the_guard(tmp_path: Path):
    # Given a live bot that bought 0-DTE in-the-money options at 15:20 and cycles every
    # 20 minutes (the next cycle after 15:40 starts at the close)
    stats = run_past_the_close(tmp_path, LIVE, live=True)
    # Then the simulator's account holds nothing after 16:00: no option, no exercised shares
    held = [p for p in stats["account"]["positions"] if p["quantity"]]
    assert held == []
    assert stats["options_exercised"] == 0
    # and the journal shows each position still held at 15:45 closed by its expiry exit
    assert_closed_by_the_guard(tmp_path)


def test_paper_positions_held_into_the_last_minutes_are_closed_by_the_guard(tmp_path: Path):
    # Given the same in dry run: entries at the ask, filled when accepted at 15:20
    run_past_the_close(tmp_path, "", live=False)
    # Then every position still held at 15:45 was sold before the close, exit reason expiry
    assert_closed_by_the_guard(tmp_path)
