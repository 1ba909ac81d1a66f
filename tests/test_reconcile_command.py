"""``reconcile``'s account check: a gateway whose account is not the journal's or the
settings' is a problem, as ``run`` would refuse it; orders and positions that are not the
bot's are "not ours", a problem only with --strict."""

from __future__ import annotations

import asyncio

import pytest

from common.config import Settings
from supervisor import exitcodes
from supervisor.broker.base import BrokerPosition, Fill, OpenOrder
from supervisor.commands.reconcile import account_problems, compare
from supervisor.journal.store import Journal

pytestmark = pytest.mark.timeout(30)


def test_the_journals_and_the_settings_account_at_the_gateway_is_no_problem():
    assert account_problems(["DU1", "DU2"], "DU1", "DU1") == []
    assert account_problems(["DU1"], "", "") == []  # a journal of no run yet, dry run


@pytest.mark.parametrize(
    "accounts, journal, wanted, words",
    [
        (["DU9"], "DU1", "", "not the journal's account DU1"),
        (["DU9"], "", "DU1", "not ibkr.account DU1"),
        (["DU1", "DU2"], "DU1", "DU2", "the journal belongs to account DU1"),
        ([], "DU1", "", "none reported"),
    ],
)
def test_an_account_run_would_refuse_is_a_problem(accounts, journal, wanted, words):
    problems = account_problems(accounts, journal, wanted)
    assert problems and any(words in p for p in problems), problems


# --- what is not the bot's: "not ours", exit 0 unless --strict --------------------------------

T0 = 1_767_886_200.0  # 2026-01-08 15:30 UTC, a named instant


class FixedClock:
    rate = 1.0

    def now(self) -> float:
        return T0


class ForeignBroker:
    """A gateway holding the trader's own order and position, nothing of the bot's."""

    name = "fake"

    async def connect(self) -> None:
        return None

    async def disconnect(self) -> None:
        return None

    async def refresh_orders(self) -> None:
        return None

    def managed_accounts(self) -> list[str]:
        return ["DU1"]

    def open_orders(self) -> list[OpenOrder]:
        return [OpenOrder(40, "manual", "Submitted", "BUY", 1.0, "LMT", symbol="SPY")]

    def fills(self) -> list[Fill]:
        return []

    def positions(self) -> list[BrokerPosition]:
        return [BrokerPosition("DU1", "QQQ", "OPT", 2.0, 150.0, 1, "20260109", 600.0, "P")]


@pytest.mark.parametrize("strict, code", [(False, exitcodes.OK), (True, exitcodes.FAILED)])
def test_orders_and_positions_not_the_bots_are_not_ours_unless_strict(
    tmp_path, capsys, strict, code
):
    # Given a journal of the bot's and a gateway holding only the trader's own order and position
    journal = tmp_path / "journal.sqlite"
    Journal(journal).close()
    settings = Settings().model_copy(deep=True)
    settings = settings.model_copy(
        update={"execution": settings.execution.model_copy(update={"journal_path": str(journal)})}
    )
    # When reconcile compares them
    done = asyncio.run(compare(ForeignBroker(), settings, FixedClock(), strict=strict))  # type: ignore[arg-type]
    out = capsys.readouterr().out
    # Then both are listed as not ours, and only --strict makes them a problem
    assert done == code
    assert "2 not ours, 0 problems" in out
    foreign = [line.strip() for line in out.splitlines() if "not ours:" in line]
    assert len(foreign) == 2 and "40" in foreign[0] and "QQQ" in foreign[1]
    assert all(line.startswith("PROBLEM") == strict for line in foreign)


# --- a journal that cannot be read is exit 2 (as report), not 3 (cannot connect) ------------


@pytest.mark.parametrize("content", ["junk", "schema 3"])
def test_a_journal_it_cannot_read_is_exit_2(tmp_path, capsys, content):
    import sqlite3

    from supervisor.journal.schema import MIGRATIONS

    journal = tmp_path / "journal.sqlite"
    if content == "junk":
        journal.write_bytes(b"this is not sqlite, just some bytes long enough for a header" * 4)
    else:  # older than a read-only open reads: run must migrate it first
        raw = sqlite3.connect(journal, isolation_level=None)
        for script in MIGRATIONS[:3]:
            raw.executescript(script)
        raw.execute("PRAGMA user_version = 3")
        raw.close()
    settings = Settings().model_copy(deep=True)
    settings = settings.model_copy(
        update={"execution": settings.execution.model_copy(update={"journal_path": str(journal)})}
    )
    done = asyncio.run(compare(ForeignBroker(), settings, FixedClock()))  # type: ignore[arg-type]
    assert done == exitcodes.USAGE
    assert "cannot read the journal" in capsys.readouterr().err


class UnreachableBroker(ForeignBroker):
    async def connect(self) -> None:
        raise AssertionError("no journal: nothing to compare, no connection")


def test_no_journal_is_exit_2_saying_which_it_looked_for(tmp_path, capsys):
    missing = tmp_path / "journal-ibkr.sqlite"
    settings = Settings().model_copy(deep=True)
    settings = settings.model_copy(
        update={"execution": settings.execution.model_copy(update={"journal_path": str(missing)})}
    )
    done = asyncio.run(compare(UnreachableBroker(), settings, FixedClock()))  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert done == exitcodes.USAGE
    assert f"no journal at {missing}: nothing to reconcile" in err and "--broker" in err
