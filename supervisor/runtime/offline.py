"""The offline driver: the live cycle over a market that is not live, as fast as it goes.

    run_offline(settings, broker, clock, times, journal_path)
      a fresh journal (an existing file is refused: a replay or a backtest never adds to
      another run's days) --> the supervisor's own parts, as the loop builds them: DataService,
      SessionBook, Desk over a dry-run Executor (the paper book), CycleRecord, the expiry guard
      --> for each t in times: the guard's exits due since the last cycle (as the loop's sleep
      between cycles runs them), the clock set to t, one CycleRunner cycle (the symbols run in
      this process: symbol_runs.InProcessSymbols) --> the last day closed: the guard's exits up
      to the session's close, then the book driven to the close as the next cycle's start
      would (paper.settle: what the expiry caught, at intrinsic value from the close)

Who calls it: ``replay`` (a recording's ReplayBroker, at its cycles' times), ``backtest`` (a
HistoryBroker, one cycle per bar minute) and tools/bench_stub.py (the StubBroker: the pool's
baseline). The broker decides the market; nothing here knows which one it is. Give it a
frozen ``SimClock`` (``SimClock(t, frozen=True)``) for a run that journals the same rows
however busy the machine is. The guard is not given to the cycle itself: its timer during a
cycle waits in real seconds, and a frozen cycle has none; every exit still runs at its time,
between cycles or at the next cycle's start (Desk.begin_cycle drives the book first).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from common.calendar import exchange_calendar
from common.config import Settings
from supervisor.broker.base import Broker
from supervisor.journal.store import Journal
from supervisor.runtime.clock import SimClock
from supervisor.runtime.cycle_runner import CycleRunner
from supervisor.runtime.expiry_timer import sleep_between_cycles
from supervisor.runtime.serving import DataService
from supervisor.runtime.symbol_runs import InProcessSymbols
from supervisor.trading.cycle_record import CycleRecord
from supervisor.trading.desk import Desk
from supervisor.trading.execution import Executor
from supervisor.trading.expiry_guard import ExpiryGuard
from supervisor.trading.sessions import SessionBook


class JournalExists(FileExistsError):
    """The journal named for an offline run is there already (the command's exit 2)."""


@dataclass(frozen=True)
class OfflineRun:
    """What a replay or a backtest did."""

    journal: Path
    cycles: int
    seconds: float  # wall time of the cycles (the day's close and the guard's runs not counted)
    symbol_cycles: int  # the symbols each cycle ran, summed
    failed_symbols: int = 0  # symbol runs that failed (a broker error, a strategy's bug)
    cycle_seconds: tuple[float, ...] = ()  # each cycle's wall time, in order

    @property
    def symbol_cycles_per_s(self) -> float | None:
        return self.symbol_cycles / self.seconds if self.seconds > 0 else None


@dataclass
class _Parts:
    """The supervisor's parts over one broker and journal, as the loop builds them."""

    desk: Desk
    sessions: SessionBook
    runner: CycleRunner
    guard: ExpiryGuard
    stop: asyncio.Event


async def run_offline(
    settings: Settings,
    broker: Broker,
    clock: SimClock,
    times: Iterable[float],
    journal_path: Path,
    progress: Callable[[int, float], None] | None = None,
    close_day: bool = True,
    fsync: bool = False,
    universe: Callable[[], Awaitable[Sequence[str]]] | None = None,
) -> OfflineRun:
    """One cycle at each of ``times`` (epoch seconds, ascending) into a fresh journal at
    ``journal_path``; ``progress(cycles done, the clock)`` after each; ``close_day``: the
    last session driven to its close after the last cycle (a replay of a run that stopped
    at its last cycle says False); ``fsync``: the journal's durable commits fsynced as the
    live loop's are (the benchmark's baseline: the pool's work, not less; a replay or a
    backtest that a crash interrupts is run again, so by default none waits on the disk:
    half a backtest's wall time); ``universe``: each cycle's symbols, asked after the clock is
    set (a replay gives them in the order its run acted on them, which the per-cycle caps
    depend on), by default the settings' universe. Raises JournalExists when the file is
    there, before anything is connected or written."""
    if journal_path.exists():
        raise JournalExists(f"{journal_path} exists: an offline run writes a journal of its own")
    journal_path.parent.mkdir(parents=True, exist_ok=True)
    await broker.connect()
    journal = Journal(journal_path)
    journal.store.fsync = fsync
    try:
        parts = await _build(settings, broker, clock, journal, universe)
        seconds: list[float] = []
        symbol_cycles = failed = 0
        for t in times:
            if seconds:  # the exits due between two cycles, at their own times
                await _until(clock, parts, t)
            clock.set(t)
            started = time.perf_counter()
            summary = await parts.runner.run()
            seconds.append(time.perf_counter() - started)
            symbol_cycles += len(summary.results)
            failed += len(summary.failed)
            if progress is not None:
                progress(len(seconds), t)
        if seconds and close_day:
            await _close_day(clock, parts, settings.universe.symbols)
        return OfflineRun(
            journal_path, len(seconds), sum(seconds), symbol_cycles, failed, tuple(seconds)
        )
    finally:
        journal.close()
        await broker.disconnect()


def remove_journal(path: Path) -> None:
    """An interrupted run's journal and its companions (WAL, shared memory, lock): it made
    them, and half a run's days would read as a whole run's."""
    for name in (path, *(path.with_name(path.name + end) for end in ("-wal", "-shm", ".lock"))):
        name.unlink(missing_ok=True)


async def _build(
    settings: Settings,
    broker: Broker,
    clock: SimClock,
    journal: Journal,
    universe: Callable[[], Awaitable[Sequence[str]]] | None,
) -> _Parts:
    calendar = exchange_calendar(settings.schedule)
    service = DataService(broker, settings.ibkr.request_timeout_s, calendar, clock.now)
    sessions = SessionBook(broker, calendar)
    accounts = broker.managed_accounts()
    journal.claim(broker.name, accounts[0] if accounts else "")
    # the paper book whatever the settings say: an offline run never sends an order
    desk = Desk(settings, broker, journal, Executor("dry_run", broker, journal), sessions)
    await desk.start_live(clock.now())
    symbols = list(settings.universe.symbols)

    async def settings_universe() -> list[str]:
        return symbols

    stop = asyncio.Event()  # never set: every cycle runs whole
    runner = CycleRunner(
        desk,
        CycleRecord(journal),
        sessions,
        InProcessSymbols(settings, service),
        clock,
        universe or settings_universe,
        stop,
    )
    return _Parts(desk, sessions, runner, ExpiryGuard(desk), stop)


async def _until(clock: SimClock, parts: _Parts, ts: float) -> None:
    """The clock moved on to ``ts``, the guard run at each exit time on the way (the loop's
    sleep between cycles, which a SimClock's sleep makes a jump)."""
    await sleep_between_cycles(clock, ts - clock.now(), parts.stop, parts.guard, parts.desk.lock)


async def _close_day(clock: SimClock, parts: _Parts, symbols: list[str]) -> None:
    """The last cycle's session to its close, as a running bot would see it: the guard's
    exits at their times, then the book driven at the close (what expires that day settles,
    what does not stays held, marked). No close known (a run outside a session): nothing."""
    now = clock.now()
    session = await parts.sessions.today(symbols[0], now) if symbols else None
    if session is None or session.close_ts <= now:
        return
    await _until(clock, parts, session.close_ts)
    clock.set(session.close_ts)
    async with parts.desk.lock:
        await parts.desk.begin_cycle(session.close_ts)
