"""The one cycle (runtime/cycle_runner.py) with its symbols run in this process: the order of
recording and acting, a stop, and the strategy's memory across a restart."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from common.calendar import exchange_calendar
from common.config import Settings
from common.messages import Signal, SymbolResult, SymbolTask
from supervisor.broker.stub import StubBroker
from supervisor.journal.store import Journal
from supervisor.runtime.clock import SimClock
from supervisor.runtime.cycle import ABANDONED, CycleSummary
from supervisor.runtime.cycle_runner import CycleRunner
from supervisor.runtime.serving import DataService
from supervisor.runtime.symbol_runs import InProcessRun, InProcessSymbols
from supervisor.trading.cycle_record import CycleRecord
from supervisor.trading.desk import Desk
from supervisor.trading.execution import Executor
from supervisor.trading.sessions import SessionBook
from tests.conftest import make_settings

pytestmark = pytest.mark.timeout(30)

SYMBOLS = ("SPY", "QQQ")


class Scripted:
    """Symbols whose results are given: each task is kept, then answered with ``fired``'s
    whale firing for its symbol (if any) and a HOLD."""

    def __init__(self, fired: dict[str, float], stop_at: str | None = None) -> None:
        self.fired, self.stop_at = fired, stop_at
        self.tasks: list[SymbolTask] = []
        self.stop = asyncio.Event()
        self.events: list[str] = []

    def start(self, cycle_id: int, tasks: Sequence[SymbolTask]) -> InProcessRun:
        return InProcessRun(cycle_id, tasks, self.drive)

    def end(self) -> None:
        pass

    async def drive(self, task: SymbolTask) -> SymbolResult:
        self.tasks.append(task)
        self.events.append(f"run {task.symbol}")
        if task.symbol == self.stop_at:
            self.stop.set()
            await asyncio.Event().wait()  # a symbol that never ends: only a stop ends it
        fired = self.fired.get(task.symbol)
        return SymbolResult(task.cycle_id, task.symbol, 1, Signal.HOLD, whale_fired_ts=fired)


class Said(CycleRecord):
    """The journal's record, and each result's recording said in ``events``."""

    def __init__(self, journal: Journal, events: list[str]) -> None:
        super().__init__(journal)
        self.events = events

    def result(self, result: SymbolResult, day: str) -> None:
        self.events.append(f"record {result.symbol}")
        super().result(result, day)


async def one_cycle(settings: Settings, symbols: Scripted) -> CycleSummary:
    """A start of the bot on the journal settings name, one cycle, a stop."""
    journal = Journal(settings.execution.journal_path)
    try:
        clock = SimClock(settings.stub.start.timestamp())
        broker = StubBroker(settings.stub, clock.now)
        await broker.connect()
        sessions = SessionBook(broker, exchange_calendar(settings.schedule))
        desk = Desk(settings, broker, journal, Executor("dry_run", broker, journal), sessions)
        record = Said(journal, symbols.events)

        async def universe() -> Sequence[str]:
            return SYMBOLS

        runner = CycleRunner(desk, record, sessions, symbols, clock, universe, symbols.stop)
        return await runner.run()
    finally:
        journal.close()


def test_a_restart_keeps_the_whale_rules_last_firing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    fired_at = settings.stub.start.timestamp() - 3600
    # Given a cycle in which the whale rule fired for SPY
    before = Scripted({"SPY": fired_at})
    asyncio.run(one_cycle(settings, before))
    assert [t.whale_last_ts for t in before.tasks] == [None, None]
    # When the bot starts again on the same journal (new objects all) and runs a cycle
    after = Scripted({})
    summary = asyncio.run(one_cycle(settings, after))
    # Then that cycle's task for SPY carries the firing, and QQQ's none
    assert summary.cycle_id == 2  # the ids go on from the journal
    assert {t.symbol: t.whale_last_ts for t in after.tasks} == {"SPY": fired_at, "QQQ": None}


def test_in_process_each_result_is_recorded_before_the_next_symbol_runs(tmp_path: Path) -> None:
    symbols = Scripted({})
    summary = asyncio.run(one_cycle(make_settings(tmp_path), symbols))
    assert symbols.events == ["run SPY", "record SPY", "run QQQ", "record QQQ"]
    assert [r.symbol for r in summary.results] == list(SYMBOLS) and not summary.failed


def test_a_stop_abandons_what_is_not_done_and_records_it(tmp_path: Path) -> None:
    # Given a stop while QQQ runs
    symbols = Scripted({}, stop_at="QQQ")
    summary = asyncio.run(one_cycle(make_settings(tmp_path), symbols))
    # Then SPY's result stands, QQQ is abandoned (a skip, not a failure), and both recorded
    assert [(r.symbol, r.skipped) for r in summary.results] == [
        ("SPY", None),
        ("QQQ", ABANDONED),
    ]
    assert symbols.events == ["run SPY", "record SPY", "run QQQ", "record QQQ"]


def test_in_process_symbols_drive_the_pipeline_against_the_data_service(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    clock = SimClock(settings.stub.start.timestamp())
    broker = StubBroker(settings.stub, clock.now)
    calendar = exchange_calendar(settings.schedule)
    service = DataService(broker, settings.ibkr.request_timeout_s, calendar, clock.now)

    async def scenario() -> SymbolResult:
        await broker.connect()
        sessions = SessionBook(broker, calendar)
        session = await sessions.today("SPY", clock.now())
        assert session is not None
        task = SymbolTask(
            1,
            "SPY",
            clock.now(),
            sessions.day_of(clock.now()),
            session_open_ts=session.open_ts,
            session_close_ts=session.close_ts,
        )
        return await InProcessSymbols(settings, service).drive(task)

    result = asyncio.run(scenario())
    assert result.ok and result.symbol == "SPY" and result.timings
