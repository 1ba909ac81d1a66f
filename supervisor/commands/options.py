"""What the commands share: the market options, and loading the settings they run with.

User mistakes (a bad file, a bad flag, a bad ``--start``) print what is wrong and where and
return exit 2 with no traceback; exit codes live in ``supervisor/exitcodes.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from typing import Any

from common.config import Settings
from common.locations import scenario_names
from common.settings_file import ConfigError, load_settings, reparsed
from supervisor import exitcodes
from supervisor.observe.logs import LogPathError
from supervisor.runtime.sessions import (
    ScenarioNotFound,
    SessionStartError,
    SimFolderError,
    SimStartError,
)
from workers.strategy import StrategyLoadError, load_strategy


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO instant: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset, e.g. -05:00")
    return moment


def add_market_options(parser: argparse.ArgumentParser, default_broker: str = "settings") -> None:
    parser.add_argument("--config", help="settings file (default: the embedded one)")
    parser.add_argument(
        "--broker",
        choices=["stub", "sim", "ibkr"],
        default=None if default_broker == "settings" else default_broker,
        help="stub: an in-memory market; sim: the simulated gateway (as --sim); "
        "ibkr: IB Gateway/TWS at --host/--port (default: "
        + ("the settings' broker key, stub" if default_broker == "settings" else default_broker)
        + ")",
    )
    parser.add_argument(
        "--sim",
        action="store_true",
        help="start the simulated IB Gateway on a free loopback port and use it",
    )
    parser.add_argument(
        "--scenario",
        metavar="NAME|FILE",
        help="the simulator's scenario (with --sim): a shipped one by name ("
        + ", ".join(scenario_names())
        + ") or a YAML file (default: the shipped default)",
    )
    parser.add_argument(
        "--sim-clock",
        metavar="FILE",
        help="with --broker sim --port P: use a simulator already running "
        "there, on the session clock it writes (its --clock-file)",
    )
    parser.add_argument(
        "--start",
        type=instant,
        metavar="ISO",
        help="pin the simulated session (stub or --sim) at this instant, e.g. "
        "2026-12-04T15:45:00-05:00 (default: stub.start, or the "
        "scenario's clock.start)",
    )
    parser.add_argument("--host", help="gateway host (default: ibkr.host, 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=non_negative_int,
        help="gateway port (default: ibkr.port, 4002: IB Gateway paper)",
    )
    parser.add_argument(
        "--client-id", type=non_negative_int, help="API client id (default: ibkr.client_id, 1)"
    )


CONNECTION_FLAGS = ("host", "port", "client_id")
CONNECTION_ENV = ("IBKR_HOST", "IBKR_PORT", "IBKR_CLIENT_ID")


def broker_name(args: argparse.Namespace, settings: Settings | None = None) -> str:
    """--sim / --sim-clock, else --broker, else the settings' ``broker`` key."""
    attached = getattr(args, "sim_clock", None)
    if getattr(args, "sim", False) or attached:
        return "sim"
    if args.broker is not None:
        return str(args.broker)
    return settings.broker if settings is not None else "stub"


def market_for(
    args: argparse.Namespace, settings: Settings, environ: dict[str, str] | None = None
) -> str | None:
    """The market to use, or None after saying why the command line contradicts itself:
    connection options are for a gateway, and silently running the stub instead hides it."""
    market = broker_name(args, settings)
    attached = market == "sim" and getattr(args, "sim_clock", None)
    if market == "ibkr" or attached:
        return market
    given = [
        f"--{f.replace('_', '-')}" for f in CONNECTION_FLAGS if getattr(args, f, None) is not None
    ]
    env = os.environ if environ is None else environ
    given += [f"{v} (environment)" for v in CONNECTION_ENV if env.get(v)]
    if given:
        print(
            f"{', '.join(given)}: for a gateway, but the broker is {market}; add --broker "
            "ibkr (or broker: ibkr in the settings), or --broker sim --sim-clock F for a "
            "running simulator",
            file=sys.stderr,
        )
        return None
    return market


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
    if getattr(args, "mode", None) == "live":
        # live is one of three keys and the settings file holds it; a flag cannot stand in
        raise ConfigError(
            "command line",
            [
                "--mode live: refused; live trading needs execution.mode: live in the settings "
                "file, --live on the command line and ibkr.account equal to the connected account"
            ],
        )
    changed = {}
    if getattr(args, "mode", None) is not None:
        raw["execution"]["mode"] = args.mode
        changed["execution.mode"] = f"--mode {args.mode}"  # so a refusal names the flag
    for flag in ("host", "port", "client_id"):
        if getattr(args, flag, None) is not None:
            raw["ibkr"][flag] = getattr(args, flag)
    return reparsed(settings, raw, changed)


def load(args: argparse.Namespace, overrides: bool = True) -> Settings | None:
    """The settings with the command line applied, or None after saying what is wrong."""
    try:
        notes: list[str] = []
        settings = load_settings(args.config, notes=notes)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        if overrides:
            settings = with_overrides(settings, args)
        load_strategy(settings)
        return settings
    except ConfigError as exc:
        print(f"invalid settings in {exc.source}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
    except StrategyLoadError as exc:
        print(f"invalid settings: {exc}", file=sys.stderr)
    return None


MARKET_ERRORS = (SessionStartError, ScenarioNotFound, SimStartError, SimFolderError, LogPathError)


def market_error(exc: Exception) -> int:
    """Say why the market (or the log beside it) could not be had; the exit code that fits."""
    if isinstance(exc, SessionStartError):
        print(f"--start: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    if isinstance(exc, (SimFolderError, ScenarioNotFound)):
        print(exc, file=sys.stderr)
        return exitcodes.USAGE
    if isinstance(exc, LogPathError):
        print(f"invalid settings: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    print(f"cannot start the gateway simulator: {exc}", file=sys.stderr)
    return exitcodes.CANNOT_CONNECT
