"""``python -m supervisor``: run the bot, or validate a settings file.

User mistakes (a bad file, a bad flag) print what is wrong and where, and exit 2 with no
traceback; exit codes live in supervisor.exitcodes.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from common.config import ConfigError, Settings, load_settings, parse_settings
from supervisor import exitcodes
from supervisor.commands.check import run_check
from supervisor.commands.phases import add_phase_arguments, cmd_phases
from supervisor.commands.report import render_json, render_text
from supervisor.journal.rows import JournalError
from supervisor.journal.store import Journal
from supervisor.runtime.sessions import (
    SessionStartError,
    SimStartError,
    broker_session,
    run_supervisor,
    with_values,
)
from workers.strategy import StrategyLoadError, load_strategy

SIM_INTERVAL_S = 5.0  # --sim without --interval


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


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO instant: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset, e.g. -05:00")
    return moment


def _market_options(parser: argparse.ArgumentParser, default_broker: str = "stub") -> None:
    parser.add_argument("--config", help="settings file (default: the embedded one)")
    parser.add_argument("--broker", choices=["stub", "sim", "ibkr"], default=default_broker,
                        help="stub: an in-memory market; sim: the simulated gateway (as --sim); "
                             f"ibkr: IB Gateway/TWS at --host/--port (default: {default_broker})")
    parser.add_argument("--sim", action="store_true",
                        help="start the simulated IB Gateway on a free loopback port and use it")
    parser.add_argument("--scenario", help="the simulator's scenario file (with --sim)")
    parser.add_argument("--start", type=_instant, metavar="ISO",
                        help="pin the simulated session (stub or --sim) at this instant, e.g. "
                             "2026-12-04T15:45:00-05:00 (default: stub.start, or the "
                             "scenario's clock.start)")
    parser.add_argument("--host", help="gateway host (ibkr.host)")
    parser.add_argument("--port", type=_non_negative_int, help="gateway port (ibkr.port)")
    parser.add_argument("--client-id", type=_non_negative_int, help="ibkr.client_id")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m supervisor", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run trading cycles (dry run unless told otherwise)")
    _market_options(run)
    run.add_argument("--cycles", type=_non_negative_int, help="cycles to run (0 = until stopped)")
    run.add_argument("--interval", type=_non_negative_float, help="seconds between cycles")
    run.add_argument("--symbols", help="comma-separated universe, e.g. SPY,QQQ")
    run.add_argument("--workers", type=_non_negative_int, help="worker processes")
    run.add_argument("--mode", choices=["dry_run", "whatif", "live"],
                     help="execution mode (default: the file's execution.mode, dry_run)")
    run.add_argument("--live", action="store_true",
                     help="allow live orders; also needs execution.mode live and ibkr.account "
                          "equal to the connected account")
    check = commands.add_parser("check", help="phase 1: one symbol's price, chain, ATM, window")
    _market_options(check)
    check.add_argument("--symbol", help="default: the first symbol of the universe")
    phases = commands.add_parser("phases", help="phase 1 check, phase 2 cycles, phase 3 soak, "
                                                "then the soak report")
    _market_options(phases, default_broker="sim")
    add_phase_arguments(phases)
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
    if getattr(args, "cycles", None) is not None:
        raw["schedule"]["cycles"] = args.cycles
    if getattr(args, "interval", None) is not None:
        raw["schedule"]["interval_s"] = args.interval
    if getattr(args, "symbols", None):
        raw["universe"]["symbols"] = [s for s in args.symbols.split(",") if s.strip()]
    if getattr(args, "workers", None) is not None:
        raw["workers"]["count"] = args.workers
    if getattr(args, "mode", None) is not None:
        raw["execution"]["mode"] = args.mode
    for flag in ("host", "port", "client_id"):
        if getattr(args, flag, None) is not None:
            raw["ibkr"][flag] = getattr(args, flag)
    return parse_settings(raw, "command line", environ={})


def _print_config_error(exc: ConfigError) -> None:
    print(f"invalid settings in {exc.source}:", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def _load(args: argparse.Namespace, overrides: bool = True) -> Settings | None:
    """The settings with the command line applied, or None after saying what is wrong."""
    try:
        settings = load_settings(args.config)
        if overrides:
            settings = with_overrides(settings, args)
        load_strategy(settings)
        return settings
    except ConfigError as exc:
        _print_config_error(exc)
    except StrategyLoadError as exc:
        print(f"invalid settings: {exc}", file=sys.stderr)
    return None


def cmd_validate(args: argparse.Namespace) -> int:
    settings = _load(args, overrides=False)
    if settings is None:
        return exitcodes.USAGE
    print(f"OK: {args.config or 'embedded configs/settings.yaml'} "
          f"({len(settings.universe.symbols)} symbols, mode {settings.execution.mode})")
    return exitcodes.OK


def _broker_name(args: argparse.Namespace) -> str:
    return "sim" if getattr(args, "sim", False) else str(args.broker)


def cmd_run(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return exitcodes.USAGE
    if _broker_name(args) == "sim" and args.interval is None:
        # the simulator is a demonstration: do not make its user wait a minute per cycle
        interval = min(settings.schedule.interval_s, SIM_INTERVAL_S)
        settings = with_values(settings, {"schedule": {"interval_s": interval}})
    try:
        with broker_session(settings, _broker_name(args), args.scenario,
                            start=args.start) as (broker, clock, used):
            code, _ = run_supervisor(used, broker, clock, cli_live=args.live,
                                     echo=lambda line: print(line, flush=True))
            return code
    except SessionStartError as exc:
        print(f"--start: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    except SimStartError as exc:
        print(f"cannot start the gateway simulator: {exc}", file=sys.stderr)
        return exitcodes.CANNOT_CONNECT


def cmd_check(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return exitcodes.USAGE
    symbol = (args.symbol or settings.universe.symbols[0]).upper()
    try:
        with broker_session(settings, _broker_name(args), args.scenario,
                            start=args.start) as (broker, clock, used):
            report = asyncio.run(run_check(broker, used, symbol, clock.now()))
    except SessionStartError as exc:
        print(f"--start: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    except SimStartError as exc:
        print(f"cannot start the gateway simulator: {exc}", file=sys.stderr)
        return exitcodes.CANNOT_CONNECT
    print("\n".join(report.lines()))
    return exitcodes.OK if report.ok else exitcodes.CANNOT_CONNECT


def cmd_report(args: argparse.Namespace) -> int:
    settings = _load(args, overrides=False)
    if settings is None:
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
    if args.command == "check":
        return cmd_check(args)
    if args.command == "phases":
        settings = _load(args)
        return exitcodes.USAGE if settings is None else cmd_phases(args, settings)
    return cmd_run(args)
