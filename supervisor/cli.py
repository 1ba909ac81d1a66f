"""``python -m supervisor``: run the bot, or validate a settings file.

User mistakes (a bad file, a bad flag) print what is wrong and where, and exit 2 with no
traceback; exit codes live in supervisor.exitcodes.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import re
import sys
from pathlib import Path
from typing import Any

from common.config import ConfigError, Settings, load_settings, parse_settings
from supervisor import exitcodes
from supervisor.app import Supervisor
from supervisor.broker.stub import StubBroker
from supervisor.clock import Clock, SimClock
from supervisor.journal import Journal, JournalError
from supervisor.logs import LogService
from supervisor.report import render_json, render_text
from workers.strategy import StrategyLoadError, load_strategy


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m supervisor", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run trading cycles (dry run unless told otherwise)")
    run.add_argument("--config", help="settings file (default: the embedded configs/settings.yaml)")
    run.add_argument("--broker", choices=["stub"], default="stub",
                     help="where market data comes from (default: stub, an in-memory market)")
    run.add_argument("--cycles", type=_non_negative_int, help="cycles to run (0 = until stopped)")
    run.add_argument("--interval", type=_non_negative_float, help="seconds between cycles")
    run.add_argument("--symbols", help="comma-separated universe, e.g. SPY,QQQ")
    run.add_argument("--workers", type=_non_negative_int, help="worker processes")
    run.add_argument("--mode", choices=["dry_run", "whatif", "live"],
                     help="execution mode (default: the file's execution.mode, dry_run)")
    run.add_argument("--live", action="store_true",
                     help="allow live orders; also needs execution.mode live and ibkr.account "
                          "equal to the connected account")
    report = commands.add_parser("report", help="print a day from the journal")
    report.add_argument("--config", help="settings file (for the journal path and time zone)")
    report.add_argument("--day", help="YYYY-MM-DD (default: the latest day in the journal)")
    report.add_argument("--json", action="store_true", help="machine-readable output")
    validate = commands.add_parser("validate", help="check a settings file and exit")
    validate.add_argument("--config", help="settings file (default: the embedded one)")
    return parser


def with_overrides(settings: Settings, args: argparse.Namespace) -> Settings:
    """Command-line values applied on top of the file, validated by the same models."""
    raw: dict[str, Any] = settings.model_dump()  # python mode keeps secrets intact
    if args.cycles is not None:
        raw["schedule"]["cycles"] = args.cycles
    if args.interval is not None:
        raw["schedule"]["interval_s"] = args.interval
    if args.symbols:
        raw["universe"]["symbols"] = [s for s in args.symbols.split(",") if s.strip()]
    if args.workers is not None:
        raw["workers"]["count"] = args.workers
    if args.mode is not None:
        raw["execution"]["mode"] = args.mode
    return parse_settings(raw, "command line", environ={})


def _print_config_error(exc: ConfigError) -> None:
    print(f"invalid settings in {exc.source}:", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
        load_strategy(settings)
    except ConfigError as exc:
        _print_config_error(exc)
        return exitcodes.USAGE
    except StrategyLoadError as exc:
        print(f"invalid settings: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    print(f"OK: {args.config or 'embedded configs/settings.yaml'} "
          f"({len(settings.universe.symbols)} symbols, mode {settings.execution.mode})")
    return exitcodes.OK


def make_broker(settings: Settings, name: str) -> tuple[StubBroker, Clock]:
    """The stub replays a seeded session on a simulated clock: cycles run back to back."""
    if name == "stub":
        clock = SimClock(settings.stub.start.timestamp())
        return StubBroker(settings.stub, clock.now), clock
    raise AssertionError(f"unknown broker {name}")  # argparse's choices keep this unreachable


def cmd_run(args: argparse.Namespace) -> int:
    try:
        settings = with_overrides(load_settings(args.config), args)
        load_strategy(settings)
    except ConfigError as exc:
        _print_config_error(exc)
        return exitcodes.USAGE
    except StrategyLoadError as exc:
        print(f"invalid settings: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    broker, clock = make_broker(settings, args.broker)
    log_queue = multiprocessing.get_context("spawn").Queue()
    logs = LogService(settings.logging, log_queue, sys.stderr)
    supervisor = Supervisor(settings, broker, clock, log_queue, cli_live=args.live,
                            echo=lambda line: print(line, flush=True))
    try:
        return asyncio.run(supervisor.run())
    finally:
        logs.close()


def cmd_report(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        _print_config_error(exc)
        return exitcodes.USAGE
    path = Path(settings.execution.journal_path)
    if not path.exists():
        print(f"no journal at {path}: run the bot first", file=sys.stderr)
        return exitcodes.USAGE
    if args.day is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", args.day):
        print(f"--day {args.day!r}: expected YYYY-MM-DD", file=sys.stderr)
        return exitcodes.USAGE
    try:
        with Journal(path, readonly=True) as journal:
            day = args.day or journal.latest_day()
            if day is None:
                print(f"the journal at {path} has no cycles yet", file=sys.stderr)
                return exitcodes.USAGE
            summary = journal.day_summary(day)
    except JournalError as exc:
        print(f"cannot read the journal: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    if args.json:
        print(render_json(summary))
    else:
        print(render_text(summary, tz=settings.schedule.timezone))
    return exitcodes.OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "validate":
        return cmd_validate(args)
    if args.command == "report":
        return cmd_report(args)
    return cmd_run(args)
