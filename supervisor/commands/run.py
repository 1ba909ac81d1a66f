"""``run``: trading cycles against the chosen market until ``--cycles`` or a signal."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

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
        help="cycles to run, 0 = until stopped (default: schedule.cycles, 0)",
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


def cmd_run(args: argparse.Namespace) -> int:
    settings = load(args)
    if settings is None:
        return exitcodes.USAGE
    market = market_for(args, settings)
    if market is None:
        return exitcodes.USAGE
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
            code, _ = run_supervisor(
                used,
                broker,
                clock,
                cli_live=args.live,
                echo=cycle_echo(market, clock, ZoneInfo(used.schedule.timezone)),
                wait_for_gateway=True,
            )
            if fresh:
                drop_if_empty(journal)
            return code
    except MARKET_ERRORS as exc:
        return market_error(exc)


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
