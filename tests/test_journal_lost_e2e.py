"""A journal deleted under a live bot, end to end: ``python -m supervisor run --live`` against
the simulated gateway in its own process (which outlives the bot, as IB Gateway does). The
bot notices within a cycle and stops entering; a restart on a fresh journal sends no intent
the gateway has already seen: the broker, not the journal, is the record of what was sent."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest_sim import write_scenario
from tests.external_sim import ExternalSim, bot, bot_env, wait_for
from tests.sessions import TUESDAY_MORNING
from tests.test_live_e2e import journal_rows

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

CONFIG = """execution:
  mode: live
  cancel_entries_on_stop: {cancel}
ibkr:
  account: DU1234567
schedule:
  regular_hours_only: false
"""


# The session at half speed, prices moving once a minute: both runs (some 15 s) see the
# market of 10:30, so the restart decides the very intents the first run sent
CLOCK = {"rate": 0.5, "market_step_s": 60}


def working(journal: Path) -> bool:
    """A live bracket journaled as submitted or working (False while the file is created
    but its tables not yet)."""
    try:
        return journal.exists() and bool(
            journal_rows(journal, "SELECT 1 FROM orders WHERE status IN ('submitted', 'working')")
        )
    except sqlite3.OperationalError:
        return False


@pytest.mark.parametrize("cancel_on_stop", [False, True], ids=["left-working", "cancelled-at-stop"])
def test_a_journal_deleted_mid_session_stops_entries_and_nothing_is_sent_twice(
    tmp_path: Path, cancel_on_stop: bool
) -> None:
    # (left working: the restart finds the brackets open and adopts them; cancelled at the
    # stop: only IBKR's completed orders still name them)
    config = tmp_path / "live.yaml"
    config.write_text(CONFIG.format(cancel=str(cancel_on_stop).lower()))
    scenario = write_scenario(
        tmp_path / "scenario.yaml",
        TUESDAY_MORNING,
        clock=CLOCK,
        market_data={"stream_interval_s": 1.0},
    )
    var = tmp_path / "var"
    journal = var / "journal-sim.sqlite"
    err = tmp_path / "first.stderr"
    with ExternalSim(tmp_path, scenario) as sim:
        # Given a live bot with a bracket working at the gateway
        with err.open("w") as stderr:
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
                stderr=stderr,
            )
            try:
                wait_for(lambda: working(journal), 120, "a live bracket")
                # When its journal is deleted under it (rm var/journal-sim.sqlite*)
                for path in var.glob("journal-sim.sqlite*"):
                    path.unlink()
                # Then it says so within a cycle, and refuses entries from then on
                wait_for(lambda: "journal lost:" in err.read_text(), 60, "journal lost said")
                wait_for(
                    lambda: ": journal_lost (" in err.read_text(),
                    90,
                    "an entry refused for the lost journal",
                )
            finally:
                first.send_signal(signal.SIGTERM)
                code = first.wait(timeout=90)
        said = err.read_text()
        assert code == 0, said[-3000:]
        after = said[said.index("journal lost:") :]
        assert not re.search(r"LIVE BUY \d+ x", after), "an entry was sent after the loss"
        assert said.count("journal lost:") == 1  # one ERROR, not one a cycle
        sent_before = dict(sim.stats_once_alone()["orders_by_ref"])
        # When it starts again on a fresh journal (the path is empty now)
        assert not journal.exists()
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
        stats = sim.stop()
    # Then no intent reached the gateway twice: one bracket (3 orders) per orderRef, and the
    # refs the first run sent were not sent again
    assert sent_before and all(n == 3 for n in stats["orders_by_ref"].values()), stats
    assert all(stats["orders_by_ref"][ref] == n for ref, n in sent_before.items())
    # because the restart, deciding the same intents, refused them on IBKR's word
    assert "duplicate (IBKR lists" in second.stderr, second.stderr[-3000:]
    # and what the first run left working is adopted, not "left alone"
    assert not any(
        ref in line
        for ref in sent_before
        for line in second.stderr.splitlines()
        if "left alone" in line
    )
    adopted = {
        ref
        for (ref,) in journal_rows(
            journal, "SELECT intent_id FROM intents WHERE reasons LIKE '%adopted from IBKR%'"
        )
    }
    assert adopted <= set(sent_before) and (cancel_on_stop or adopted)
