"""An option exercised at its expiry, followed end to end: ``run --live`` as a real process
against the simulated gateway as another, which outlives it (and the weekend) like a real
gateway.

    Friday 15:20:30 at 60x   the bot buys 0-DTE in-the-money options (calls; QQQ puts), and
                             is stopped at 15:35-15:40 (close_expiring_on_stop off, the exit
                             window one minute): what it bought is held into the close
    Friday 16:00             the simulator exercises what is in the money (OCC's exercise by
                             exception): the option goes, the shares come, no execution
    16:05 -> Monday 09:25    the simulator's clock leaps the weekend (clock.jumps)
    Monday                   the bot, started again on the same journal: each option gone is
                             booked exercised at its intrinsic value (or expired at 0), its
                             shares journaled, alerted, and closed at the open; the account
                             ends holding no shares
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from supervisor.runtime.clock import PinnedClock
from tests.conftest_sim import write_scenario
from tests.external_sim import ExternalSim, bot_env, wait_for
from tests.sessions import FRIDAY_1545, MONDAY_0931
from tests.test_expiry_e2e import SETTINGS as ZERO_DTE_ITM

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

FRIDAY_1520 = FRIDAY_1545.replace(minute=20, second=30)
FRIDAY_1540 = FRIDAY_1545.replace(minute=40)
FRIDAY_1559 = FRIDAY_1545.replace(minute=59)
FRIDAY_1605 = FRIDAY_1545.replace(hour=16, minute=5)
MONDAY_0925 = MONDAY_0931.replace(minute=25)
# the expiry test's 0-DTE in-the-money entries, live, held into the close this time
SETTINGS = (
    ZERO_DTE_ITM
    + """risk:
  exit_before_expiry_min: 1
execution:
  mode: live
  close_expiring_on_stop: false
ibkr:
  account: DU1234567
"""
)


def rows(journal: Path, sql: str) -> list[tuple[Any, ...]]:
    """What a running bot's journal holds for ``sql`` (nothing while it has no tables yet)."""
    if not journal.exists():
        return []
    db = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        db.close()


def events(home: Path, name: str) -> list[dict[str, Any]]:
    log = home / "var" / "bot.jsonl"
    if not log.exists():
        return []
    with log.open(encoding="utf-8") as f:
        return [e for e in map(json.loads, f) if e.get("event") == name]


def run_until(home: Path, sim: ExternalSim, config: Path, done: Any, what: str) -> None:
    """``run --live`` until ``done()``, then SIGTERM; it must exit 0."""
    err = home / f"bot-{len(list(home.glob('bot-*.stderr')))}.stderr"
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "supervisor",
                "run",
                *sim.args,
                "--config",
                str(config),
                "--live",
                "--interval",
                "60",
                "--cycles",
                "0",
            ],
            cwd=home,
            env=bot_env(home),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            wait_for(lambda: proc.poll() is not None or done(), 150, what)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=90)
    assert code == 0, err.read_text()[-3000:]


def test_an_option_exercised_over_the_weekend_is_followed_into_shares_sold_monday(
    tmp_path: Path,
) -> None:
    # Given a simulator from Friday 15:20:30 at 60x whose clock leaps from 16:05 to Monday
    config = tmp_path / "settings.yaml"
    config.write_text(SETTINGS)
    scenario = write_scenario(
        tmp_path / "scenario.yaml",
        FRIDAY_1520,
        clock={
            "rate": 60,
            "market_step_s": 60,
            "jumps": [{"at": FRIDAY_1605.isoformat(), "to": MONDAY_0925.isoformat()}],
        },
    )
    journal = tmp_path / "var" / "journal-sim.sqlite"
    bought_sql = "SELECT DISTINCT intent_id FROM fills WHERE side = 'BOT'"
    with ExternalSim(tmp_path, scenario) as sim:
        clock = PinnedClock.follow(json.loads(sim.clock_file.read_text()))
        # When the bot buys, then is stopped before the close with what it bought held
        run_until(
            tmp_path,
            sim,
            config,
            lambda: (
                len(rows(journal, bought_sql)) >= 3
                or (rows(journal, bought_sql) and clock.now() >= FRIDAY_1540.timestamp())
            ),
            "options bought on Friday",
        )
        assert clock.now() < FRIDAY_1559.timestamp(), "stopped too late to hold into the close"
        bought = {r[0] for r in rows(journal, bought_sql)}
        # and started again once the weekend has passed, until every exercise is followed
        wait_for(lambda: clock.now() >= MONDAY_0925.timestamp(), 120, "Monday on the sim")
        run_until(
            tmp_path,
            sim,
            config,
            lambda: settled(journal, bought),
            "the exercised options' shares closed on Monday",
        )
        stats = sim.stop()
    # Then the simulator exercised options, and the account holds no shares any more
    assert stats["options_exercised"] >= 1, stats
    assert [
        p for p in stats["account"]["positions"] if p["sec_type"] == "STK" and p["quantity"]
    ] == []
    # and each option bought and held into the close (not sold by its bracket before) was
    # booked exercised (at intrinsic value) or expired (at 0) as of Friday's close, as the
    # simulator settled it
    close = FRIDAY_1545.replace(hour=16, minute=0).timestamp()
    closed = rows(
        journal,
        "SELECT intent_id, exit_reason, exit_price, closed_ts, quantity, "
        "option_right FROM positions WHERE status = 'closed' AND "
        "exit_reason IN ('exercised', 'expired')",
    )
    by_bracket = rows(
        journal,
        f"SELECT intent_id FROM positions WHERE closed_ts < {close} "
        "AND exit_reason IN ('take_profit', 'stop_loss')",
    )
    assert {r[0] for r in closed} == bought - {i for (i,) in by_bracket}
    assert all(r[3] == close for r in closed)
    exercised = {r[0]: r for r in closed if r[1] == "exercised"}
    assert len(exercised) == stats["options_exercised"]
    assert all(r[2] > 0 for r in exercised.values())
    assert all(r[2] == 0 for r in closed if r[1] == "expired")
    # and their shares had rows of their own, each alerted and closed by our orders
    shares = rows(journal, "SELECT intent_id, quantity, status, exit_reason FROM shares")
    assert {(i, q, s, x) for i, q, s, x in shares} == {
        (i, 100 * r[4] * (1 if r[5] == "C" else -1), "closed", "closed")
        for i, r in exercised.items()
    }
    alerted = rows(journal, "SELECT key FROM alerts WHERE kind = 'exercised'")
    assert sorted(k for (k,) in alerted) == sorted(f"{i}:shares" for i in exercised)
    fills = rows(journal, "SELECT DISTINCT intent_id FROM fills WHERE intent_id LIKE '%:shares'")
    assert sorted(i for (i,) in fills) == sorted(f"{i}:shares" for i in exercised)
    assert len(events(tmp_path, "exercised")) == len(exercised)


def settled(journal: Path, bought: set[str]) -> bool:
    """Every option bought is settled and every share row closed."""
    marks = ", ".join(f"'{i}'" for i in bought)
    open_ = rows(
        journal, f"SELECT 1 FROM positions WHERE intent_id IN ({marks}) AND status != 'closed'"
    )
    held = rows(journal, "SELECT 1 FROM shares WHERE status != 'closed'")
    return not open_ and not held
