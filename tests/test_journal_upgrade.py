"""A journal of an older schema after an upgrade: read-only (report, reconcile) reads it as
it is, without migrating it, when every later migration only adds tables; those tables read
as empty. ``run`` (read-write) migrates it."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from supervisor.journal.rows import JournalError
from supervisor.journal.schema import ADDS_TABLES, MIGRATIONS, READABLE_FROM, SCHEMA_VERSION
from supervisor.journal.store import Journal
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(60)

DAY = "2026-01-08"
T = datetime(2026, 1, 8, 15, 30, tzinfo=UTC).timestamp()  # 10:30 in New York


def old_journal(path: Path, version: int) -> Path:
    """A journal as the code of schema ``version`` wrote it: only its migrations, one cycle."""
    raw = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:version], start=1):
        raw.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    raw.execute(
        "INSERT INTO cycles (cycle_id, day, started_ts, ended_ts, ok, failed, seconds) "
        "VALUES (1, ?, ?, ?, 3, 0, 2.0)",
        (DAY, T, T + 2),
    )
    raw.close()
    return path


def tables(path: Path) -> set[str]:
    raw = sqlite3.connect(path)
    try:
        return {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        raw.close()


def version_of(path: Path) -> int:
    raw = sqlite3.connect(path)
    try:
        return int(raw.execute("PRAGMA user_version").fetchone()[0])
    finally:
        raw.close()


def test_the_migrations_said_to_add_only_tables_do_nothing_else() -> None:
    # ADDS_TABLES is what lets an older file be read: a migration listed there that altered a
    # table would make readers query columns the older file lacks
    for number, names in ADDS_TABLES.items():
        statements = [s.strip() for s in MIGRATIONS[number - 1].split(";") if s.strip()]
        created = set()
        for statement in statements:
            table = re.match(r"CREATE TABLE (\w+) \(", statement)
            index = re.match(r"CREATE INDEX \w+ ON (\w+) \(", statement)
            assert table or index, (number, statement)
            created.add(table.group(1) if table else index.group(1) if index else "")
        assert created == set(names), number
    assert READABLE_FROM == 4


@pytest.mark.parametrize("version", [4, 5])
def test_an_older_journal_is_read_as_it_is_its_added_tables_empty(
    tmp_path: Path, version: int
) -> None:
    # Given a journal the code of schema 4 or 5 wrote, never opened by this code's run
    path = old_journal(tmp_path / "journal.sqlite3", version)
    before = tables(path)
    assert "strategy_memory" not in before
    # When it is opened read-only, as report and reconcile do
    with Journal(path, readonly=True) as journal:
        summary = journal.day_summary(DAY)
        held, of_day = journal.shares.held(), journal.shares.of_day(DAY)
        fired = journal.strategy.fired("whale")
        seen = journal.shares.stock_seen("SPY")
    # Then it reads, the tables it lacks read as empty, and the file is left as it was
    assert summary["cycles"]["count"] == 1
    assert (held, of_day, fired, seen) == ([], [], {}, None)
    assert version_of(path) == version and tables(path) == before
    # and a read-write open (run) migrates it
    with Journal(path) as journal:
        assert journal.strategy.fired("whale") == {}
    assert version_of(path) == SCHEMA_VERSION and "strategy_memory" in tables(path)


def test_a_journal_older_than_readable_from_asks_for_a_read_write_open(tmp_path: Path) -> None:
    path = old_journal(tmp_path / "journal.sqlite3", READABLE_FROM - 1)
    with pytest.raises(JournalError, match="start the bot"):
        Journal(path, readonly=True)
    assert version_of(path) == READABLE_FROM - 1


def test_a_stray_file_is_not_a_journal_and_is_not_said_to_be_migrated(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    path.write_text("\n")  # echo '' > e.sqlite
    with pytest.raises(JournalError, match="not a bot journal") as raised:
        Journal(path, readonly=True)
    assert "migrate" not in str(raised.value) and "start the bot" not in str(raised.value)
    assert path.read_text() == "\n"


def test_report_reads_a_schema_5_journal(tmp_path: Path) -> None:
    old_journal(tmp_path / "journal-stub.sqlite", 5)
    config = tmp_path / "settings.yaml"
    config.write_text(f"execution:\n  journal_path: {tmp_path / 'journal-{broker}.sqlite'}\n")
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "report", "--config", str(config), "--day", DAY],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stderr
    assert f"day report {DAY}" in done.stdout
    assert version_of(tmp_path / "journal-stub.sqlite") == 5
