"""``run``'s cycle lines (supervisor/commands/run.py): the stub's say it is a simulated market."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from supervisor.commands.run import cycle_echo

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
