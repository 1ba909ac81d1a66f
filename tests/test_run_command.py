"""``run`` (supervisor/commands/run.py): the stub's cycle lines say it is a simulated market; a
journal the run created and left empty (the gateway never answered) is removed."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from supervisor.commands.cli import main
from supervisor.commands.run import cycle_echo, drop_if_empty
from supervisor.journal.store import Journal

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
