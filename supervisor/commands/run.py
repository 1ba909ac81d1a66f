"""``run``: trading cycles against the chosen market until ``--cycles`` or a signal."""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from common.calendar import ExchangeCalendar, exchange_calendar, trading_day
from common.config import Settings
from common.timetext import when
from supervisor import exitcodes
from supervisor.commands.options import (
    MARKET_ERRORS,
    add_market_options,
    load,
    market_error,
    market_for,
    non_negative_float,
    non_negative_int,
)
from supervisor.journal.rows import JournalError
from supervisor.journal.store import Journal
from supervisor.runtime.clock import Clock
from supervisor.runtime.sessions import broker_session, run_supervisor, with_values

SIM_INTERVAL_S = 5.0  # --sim without --interval
# plain `run` on the stub (no cycle count anywhere): a simulated week replayed as fast as the
# machine goes, then the end; the stub's clock jumps, so "until stopped" would spin a core
STUB_REPLAY_DAYS = 5
# live is one of three keys and the settings file holds it: a flag cannot stand in for it, so
# --mode does not offer it (docs/live-trading.md)
FLAG_MODES = ("dry_run", "whatif")


def flag_mode(value: str) -> str:
    if value == "live":
        raise argparse.ArgumentTypeError(
            "live is not a --mode: live trading needs execution.mode: live in the settings "
            "file, --live, and ibkr.account equal to the connected account"
        )
    return value


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    add_market_options(parser)
    parser.add_argument(
        "--cycles",
        type=non_negative_int,
        help="cycles to run, 0 = until stopped (default: schedule.cycles, 0; plain run on "
        f"the stub: a replay of {STUB_REPLAY_DAYS} simulated trading days)",
    )
    parser.add_argument(
        "--interval",
        type=non_negative_float,
        help="seconds between cycles (default: schedule.interval_s, 60; "
        f"{SIM_INTERVAL_S:g} with the simulator)",
    )
    parser.add_argument(
        "--symbols",
        help="comma-separated universe, e.g. SPY,QQQ (default: universe.symbols, SPY,QQQ,AAPL)",
    )
    parser.add_argument(
        "--workers", type=non_negative_int, help="worker processes (default: workers.count, 2)"
    )
    parser.add_argument(
        "--mode",
        type=flag_mode,
        choices=FLAG_MODES,
        help="execution mode (default: execution.mode, dry_run); live trading is set in "
        "the settings file, with --live",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="allow live orders; also needs execution.mode live and "
        "ibkr.account equal to the connected account",
    )


@dataclass(frozen=True)
class Replay:
    """A bounded replay of the stub: this many cycles, from ``first_ts`` to ``end_ts``."""

    cycles: int
    first_ts: float
    end_ts: float

    def first_line(self, zone: ZoneInfo) -> str:
        return (
            f"stub (a simulated market, no gateway): replaying {STUB_REPLAY_DAYS} simulated "
            f"trading days, {when(self.first_ts, zone)} to {when(self.end_ts, zone)}, "
            f"{self.cycles} cycles, then it stops; --cycles N for fewer, --cycles 0 to run "
            "until Ctrl-C, --sim for the simulated gateway"
        )


def stub_replay(
    start_ts: float,
    calendar: ExchangeCalendar,
    interval_s: float,
    regular_hours_only: bool = True,
    days: int = STUB_REPLAY_DAYS,
) -> Replay | None:
    """The cycles of ``days`` trading sessions from ``start_ts``, as the loop runs them: the
    first at the start (or the session's open), then every ``interval_s`` market seconds
    before the close, the next session's first at its open. None when no count makes sense
    (an interval of 0: cycles back to back, the clock moving only as fast as they run)."""
    if interval_s <= 0:
        return None
    if not regular_hours_only:  # round the clock: days are calendar days
        end = start_ts + days * 86_400.0
        return Replay(math.ceil((end - start_ts) / interval_s), start_ts, end)
    cycles, first, end, found = 0, None, start_ts, 0
    day = trading_day(start_ts, calendar.tz)
    for ahead in range(days * 3 + 14):  # weekends and holidays: never more than this
        session = calendar.session(day + timedelta(days=ahead))
        if session is None or session.close_ts <= start_ts:
            continue
        begin = max(session.open_ts, start_ts)
        cycles += math.ceil((session.close_ts - begin) / interval_s)
        first = begin if first is None else first
        end, found = session.close_ts, found + 1
        if found == days:
            break
    return Replay(cycles, first if first is not None else start_ts, end)


def planned_replay(args: argparse.Namespace, market: str, settings: Settings) -> Replay | None:
    """Plain ``run`` on the stub (no --cycles, cycles and max_runtime_s 0): a bounded replay."""
    schedule = settings.schedule
    if market != "stub" or args.cycles is not None or schedule.cycles or schedule.max_runtime_s:
        return None
    start = (args.start or settings.stub.start).timestamp()
    return stub_replay(
        start, exchange_calendar(schedule), schedule.interval_s, schedule.regular_hours_only
    )


def cmd_run(args: argparse.Namespace) -> int:
    settings = load(args)
    if settings is None:
        return exitcodes.USAGE
    market = market_for(args, settings)
    if market is None:
        return exitcodes.USAGE
    replay = planned_replay(args, market, settings)
    if replay is not None:
        settings = with_values(settings, {"schedule": {"cycles": replay.cycles}})
        print(replay.first_line(ZoneInfo(settings.schedule.timezone)), flush=True)
    if market == "sim" and args.interval is None:
        # the simulator is a demonstration: do not make its user wait a minute per cycle
        interval = min(settings.schedule.interval_s, SIM_INTERVAL_S)
        settings = with_values(settings, {"schedule": {"interval_s": interval}})
    try:
        with broker_session(
            settings, market, args.scenario, start=args.start, sim_clock=args.sim_clock
        ) as (broker, clock, used):
            journal = Path(used.execution.journal_path)
            fresh = not journal.exists()
            began = time.monotonic()
            code, supervisor = run_supervisor(
                used,
                broker,
                clock,
                cli_live=args.live,
                echo=cycle_echo(market, clock, ZoneInfo(used.schedule.timezone)),
                wait_for_gateway=True,
                record=market,  # the flight recorder: sim and ibkr, if recording.enabled
            )
            if replay is not None:
                print(
                    replay_summary(replay, supervisor.cycles_done, time.monotonic() - began, code),
                    flush=True,
                )
            if fresh:
                drop_if_empty(journal)
            return code
    except MARKET_ERRORS as exc:
        return market_error(exc)


def replay_summary(replay: Replay, cycles: int, took_s: float, code: int) -> str:
    """The stub replay's last line: what it did, and how to go on from there."""
    done = (
        f"stub replay done: {cycles} cycles over {STUB_REPLAY_DAYS} simulated trading days"
        if cycles == replay.cycles
        else f"stub replay stopped after {cycles} of {replay.cycles} cycles"
    )
    return (
        f"{done} in {took_s:.0f} s (exit {code}); `report` shows them, `run --sim` runs the "
        "bot through the simulated IB Gateway"
    )


def cycle_echo(market: str, clock: Clock, zone: ZoneInfo) -> Callable[[str], None]:
    """How a cycle line is printed: the stub's each say it is a simulated market and when
    (plain ``run`` replays days of it in seconds: no line may pass for a real one)."""
    if market != "stub":
        return lambda line: print(line, flush=True)
    return lambda line: print(f"{line} · simulated market {when(clock.now(), zone)}", flush=True)


def drop_if_empty(path: Path) -> bool:
    """Remove the journal this run created if it holds nothing (no account, no day: the
    gateway never answered, or a stop came first), so no empty journal is left for
    ``report`` to trip over. True if it was removed."""
    try:
        with Journal(path, readonly=True) as journal:
            empty = journal.owner() is None and journal.latest_day() is None
    except JournalError:
        return False  # not ours to judge: left as it is
    if empty:
        for part in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.lock")):
            part.unlink(missing_ok=True)
    return empty
