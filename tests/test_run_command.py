"""``run`` (supervisor/commands/run.py): the stub's cycle lines say it is a simulated market; a
journal the run created and left empty (the gateway never answered) is removed."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from common.calendar import nyse
from supervisor.commands.cli import main
from supervisor.commands.run import (
    add_run_arguments,
    cycle_echo,
    drop_if_empty,
    planned_replay,
    stub_replay,
)
from supervisor.journal.store import Journal
from tests.conftest import REPO_ROOT, make_settings

pytestmark = pytest.mark.timeout(30)

NEW_YORK = ZoneInfo("America/New_York")


class Pinned:
    rate = 1.0

    def now(self) -> float:
        return datetime(2026, 1, 8, 10, 31, tzinfo=NEW_YORK).timestamp()


def test_the_stubs_cycle_lines_say_simulated_market_and_when(capsys) -> None:
    cycle_echo("stub", Pinned(), NEW_YORK)("cycle 1: symbols ok 3/3")  # type: ignore[arg-type]
    cycle_echo("ibkr", Pinned(), NEW_YORK)("cycle 2: symbols ok 3/3")  # type: ignore[arg-type]
    assert capsys.readouterr().out.splitlines() == [
        "cycle 1: symbols ok 3/3 · simulated market Thu 2026-01-08 10:31 ET",
        "cycle 2: symbols ok 3/3",
    ]


def test_an_empty_journal_is_removed_and_one_with_a_day_is_kept(tmp_path: Path) -> None:
    empty, used = tmp_path / "journal-ibkr.sqlite", tmp_path / "journal-stub.sqlite"
    Journal(empty).close()
    with Journal(used) as journal:
        journal.start_cycle(1, "2026-01-08", 1_767_886_200.0)
    assert drop_if_empty(empty) and not empty.exists()
    assert not list(tmp_path.glob("journal-ibkr*"))  # its WAL, index and lock too
    assert not drop_if_empty(used) and used.exists()


@pytest.mark.parametrize("command", ["run", "check", "doctor", "reconcile"])
def test_a_state_folder_that_cannot_be_made_is_exit_2_naming_it(
    tmp_path: Path, command: str, capsys
) -> None:
    # `var` is a file where the state folder should be: mkdir fails before any process starts
    (tmp_path / "settings.yaml").write_text("broker: stub\n", encoding="utf-8")
    (tmp_path / "var").write_text("not a folder\n", encoding="utf-8")
    code = main([command, "--sim", "--config", str(tmp_path / "settings.yaml")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"cannot write the simulator's files in {tmp_path / 'var'}" in err
    assert "Traceback" not in err and "make that folder writable" in err


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=NEW_YORK).timestamp()


def test_the_stub_replay_is_five_sessions_of_cycles_as_the_loop_runs_them() -> None:
    # the embedded default: Thu 2026-01-08 10:30, a cycle a minute; 330 that day, then 4 x 390
    plan = stub_replay(ts(2026, 1, 8, 10, 30), nyse(), 60.0)
    assert plan is not None and plan.cycles == 330 + 4 * 390
    assert (plan.first_ts, plan.end_ts) == (ts(2026, 1, 8, 10, 30), ts(2026, 1, 14, 16, 0))
    # Thanksgiving closed, the Friday after closes at 13:00
    plan = stub_replay(ts(2026, 11, 25, 10, 0), nyse(), 60.0)
    assert plan is not None and plan.cycles == 360 + 210 + 3 * 390
    # a start after the close begins at the next open
    plan = stub_replay(ts(2026, 1, 8, 17, 0), nyse(), 60.0)
    assert plan is not None and plan.cycles == 5 * 390 and plan.first_ts == ts(2026, 1, 9, 9, 30)


def test_round_the_clock_counts_calendar_days_and_back_to_back_cycles_no_plan() -> None:
    plan = stub_replay(ts(2026, 1, 8, 10, 30), nyse(), 60.0, regular_hours_only=False)
    assert plan is not None and plan.cycles == 5 * 1440
    assert stub_replay(ts(2026, 1, 8, 10, 30), nyse(), 0.0) is None


def run_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return parser.parse_args(list(argv))


def test_only_plain_run_on_the_stub_is_a_bounded_replay(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)  # cycles 0, max_runtime_s 0
    plan = planned_replay(run_args(), "stub", settings)
    assert plan is not None and plan.cycles > 0
    assert planned_replay(run_args("--cycles", "0"), "stub", settings) is None  # asked for
    assert planned_replay(run_args(), "sim", settings) is None
    assert planned_replay(run_args(), "ibkr", settings) is None
    counted = make_settings(tmp_path, schedule={"cycles": 3})
    assert planned_replay(run_args(), "stub", counted) is None


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_plain_run_on_the_stub_says_it_replays_and_ends_by_itself(tmp_path: Path) -> None:
    # an hour apart, so the week is 6 + 4 x 7 cycles: the replay is the same, only shorter
    config = tmp_path / "settings.yaml"
    config.write_text("broker: stub\nschedule:\n  interval_s: 3600\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "run", "--config", str(config)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        text=True,
        capture_output=True,
        timeout=80,
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr[-2000:]
    assert lines[0].startswith("stub (a simulated market, no gateway): replaying 5 simulated")
    assert "Thu 2026-01-08 10:30 ET to Wed 2026-01-14 16:00 ET, 34 cycles" in lines[0]
    assert lines[-2].startswith("cycle 34:") and "Wed 2026-01-14 15:30 ET" in lines[-2]
    assert lines[-1].startswith("stub replay done: 34 cycles over 5 simulated trading days")
