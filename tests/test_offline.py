"""The offline driver (runtime/offline.py): cycles at the given instants into a fresh journal."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from supervisor.broker.stub import StubBroker
from supervisor.journal.store import Journal
from supervisor.runtime.clock import SimClock
from supervisor.runtime.offline import JournalExists, run_offline
from tests.conftest import make_settings

pytestmark = pytest.mark.timeout(60)


def test_one_cycle_at_each_instant_on_a_frozen_clock(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, universe={"symbols": ["SPY", "QQQ"]})
    start = settings.stub.start.timestamp()
    clock = SimClock(start, frozen=True)
    times = [start, start + 60, start + 180]
    said: list[tuple[int, float]] = []
    path = tmp_path / "offline" / "run.sqlite"
    run = asyncio.run(
        run_offline(
            settings,
            StubBroker(settings.stub, clock.now),
            clock,
            times,
            path,
            lambda n, t: said.append((n, t)),
        )
    )
    assert (run.journal, run.cycles, run.symbol_cycles, run.failed_symbols) == (path, 3, 6, 0)
    assert len(run.cycle_seconds) == 3 and run.seconds == pytest.approx(sum(run.cycle_seconds))
    assert said == [(1, times[0]), (2, times[1]), (3, times[2])]
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT cycle_id, started_ts, ended_ts FROM cycles ORDER BY 1").fetchall()
        owner = dict(db.execute("SELECT key, value FROM meta WHERE key = 'broker'").fetchall())
    # frozen: each cycle starts and ends at its own instant, whatever the machine's speed
    assert rows == [(1, times[0], times[0]), (2, times[1], times[1]), (3, times[2], times[2])]
    assert owner == {"broker": "stub"}


class Untouched(StubBroker):
    connects = 0

    async def connect(self) -> None:
        self.connects += 1
        await super().connect()


def test_an_existing_journal_is_refused_before_anything_is_done(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    clock = SimClock(settings.stub.start.timestamp(), frozen=True)
    path = tmp_path / "taken.sqlite"
    path.write_bytes(b"another run's")
    broker = Untouched(settings.stub, clock.now)
    with pytest.raises(JournalExists, match="taken.sqlite exists"):
        asyncio.run(run_offline(settings, broker, clock, [clock.now()], path))
    assert path.read_bytes() == b"another run's" and broker.connects == 0


def test_set_moves_a_running_clock_and_a_frozen_one_stands_still() -> None:
    running, frozen = SimClock(1000.0), SimClock(1000.0, frozen=True)
    running.set(5000.0)
    frozen.set(5000.0)
    assert 5000.0 <= running.now() < 5001.0
    assert frozen.now() == 5000.0 == frozen.now()


def test_an_offline_journal_commits_without_fsync(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    try:
        with journal.store.tx(True) as db:  # a durable commit: FULL (2), fsynced
            assert db.execute("PRAGMA synchronous").fetchone()[0] == 2
        journal.store.fsync = False  # as run_offline sets it
        with journal.store.tx(True) as db:
            assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        journal.close()


def test_each_cycle_asks_the_given_universe_after_its_clock_is_set(tmp_path: Path) -> None:
    """A replay's symbols come per cycle, in the order its run acted on them."""
    settings = make_settings(tmp_path, universe={"symbols": ["SPY", "QQQ"]})
    start = settings.stub.start.timestamp()
    clock = SimClock(start, frozen=True)
    times = [start, start + 60]
    asked: list[float] = []

    async def universe() -> list[str]:
        asked.append(clock.now())
        return ["QQQ"] if len(asked) == 1 else ["QQQ", "SPY"]

    path = tmp_path / "run.sqlite"
    run = asyncio.run(
        run_offline(
            settings, StubBroker(settings.stub, clock.now), clock, times, path, universe=universe
        )
    )
    assert asked == times and run.symbol_cycles == 3
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "signals" in tables, tables
        rows = db.execute("SELECT cycle_id, symbol FROM signals ORDER BY rowid").fetchall()
    assert rows == [(1, "QQQ"), (2, "QQQ"), (2, "SPY")]
