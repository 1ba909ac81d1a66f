"""``python -m supervisor``: the command line, one module per verb.

    run       supervisor/commands/run.py       trading cycles (dry run unless told otherwise)
    check     supervisor/commands/check.py     phase 1: one symbol's price, chain, ATM, window
    phases    supervisor/commands/phases.py    phase 1, phase 2 cycles, phase 3 soak, verdict
    report    supervisor/commands/report.py    a day from the journal
    reconcile supervisor/commands/reconcile.py the journal against the broker, changing nothing
    validate  supervisor/commands/validate.py  a settings file, checked
    init      supervisor/commands/init.py      a first settings file (paper, dry run)
    chaos     supervisor/commands/chaos.py     N cycles against the simulator under faults
    doctor    supervisor/commands/doctor.py    a gateway checked step by step, each failure's fix
    fetch-history
              supervisor/commands/fetch_history.py  1-minute bars from IBKR into backtest files
    replay    supervisor/commands/replay.py    a recording's cycles again, into a journal of its own
    backtest  supervisor/commands/backtest.py  the cycles over historical 1-minute bars
    pause, resume, flatten, kill
              supervisor/commands/control.py   the running bot's controls (its status port)

User mistakes (a bad file, a bad flag) print what is wrong and where, and exit 2 with no
traceback; exit codes live in supervisor.exitcodes. ``ibkr-bot`` (installed with the package)
is the same command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata

from supervisor import exitcodes
from supervisor.commands.backtest import add_backtest_parser, cmd_backtest
from supervisor.commands.chaos import add_chaos_arguments, cmd_chaos
from supervisor.commands.check import cmd_check
from supervisor.commands.control import HELP as CONTROLS
from supervisor.commands.control import add_control_arguments, cmd_control
from supervisor.commands.doctor import add_doctor_arguments, cmd_doctor
from supervisor.commands.fetch_history import add_fetch_history_arguments, cmd_fetch_history
from supervisor.commands.init import add_init_arguments, cmd_init
from supervisor.commands.options import add_market_options, load
from supervisor.commands.phases import add_phase_arguments, cmd_phases
from supervisor.commands.reconcile import add_reconcile_arguments, cmd_reconcile
from supervisor.commands.replay import add_replay_arguments, cmd_replay
from supervisor.commands.report import cmd_report
from supervisor.commands.report_html import add_html_argument
from supervisor.commands.report_results import add_results_arguments
from supervisor.commands.run import add_run_arguments, cmd_run
from supervisor.commands.validate import cmd_validate

PACKAGE = "ibkr-options-bot"
CONSOLE = "ibkr-bot"  # the console command (setup.cfg), the same as python -m supervisor


def version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed: pip install -e .)"


# --help is read by a user, not a developer: no source paths, no markup (the module docstring
# above is the developers' map)
DESCRIPTION = (
    "An options trading bot for Interactive Brokers: dry run unless told otherwise. "
    "Each command has its own --help."
)
EPILOG = (
    "exit codes: 0 done, 1 internal error (a bug: the log has it; reconcile: problems found; "
    "phases: soak FAIL), 2 bad command line or settings, 3 cannot connect, 4 halted (the "
    "workers failed), 5 the journal could not be written, 6 doctor: a check failed"
)


def build_parser(prog: str = "python -m supervisor") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"{PACKAGE} {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run trading cycles (dry run unless told otherwise)")
    add_run_arguments(run)
    check = commands.add_parser("check", help="phase 1: one symbol's price, chain, ATM, window")
    add_market_options(check)
    check.add_argument("--symbol", help="default: the first symbol of the universe")
    phases = commands.add_parser(
        "phases", help="phase 1 check, phase 2 cycles, phase 3 soak, then the soak report"
    )
    add_phase_arguments(phases)
    report = commands.add_parser("report", help="print a day from the journal")
    report.add_argument("--config", help="settings file (for the journal path and time zone)")
    report.add_argument(
        "--broker",
        choices=["stub", "sim", "ibkr"],
        help="whose journal (default: the only one there is)",
    )
    report.add_argument("--day", help="YYYY-MM-DD (default: the latest day in the journal)")
    report.add_argument(
        "--from",
        dest="from_day",
        help="first day YYYY-MM-DD of a range (default: the journal's first)",
    )
    report.add_argument(
        "--to", dest="to_day", help="last day YYYY-MM-DD of a range (default: the journal's last)"
    )
    report.add_argument("--json", action="store_true", help="machine-readable output")
    add_html_argument(report)
    add_results_arguments(report)
    reconcile = commands.add_parser(
        "reconcile", help="the journal against the broker's open orders, executions and positions"
    )
    add_reconcile_arguments(reconcile)
    validate = commands.add_parser("validate", help="check a settings file and exit")
    validate.add_argument("--config", help="settings file (default: the embedded one)")
    init = commands.add_parser(
        "init", help="write DIR/settings.yaml for a paper account (dry run), then say what next"
    )
    add_init_arguments(init)
    add_simulated_and_history(commands)
    doctor = commands.add_parser(
        "doctor", help="check a gateway step by step: ok, warn or fail, each failure's fix"
    )
    add_doctor_arguments(doctor)
    replay = commands.add_parser(
        "replay",
        help="a recorded run's cycles again, as fast as they go, into a journal of its own",
    )
    add_replay_arguments(replay)
    add_backtest_parser(commands)
    for action, text in CONTROLS.items():
        add_control_arguments(commands.add_parser(action, help=text))
    return parser


def add_simulated_and_history(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """``chaos`` and ``fetch-history``: their parsers, out of ``build_parser`` (kept short)."""
    chaos = commands.add_parser(
        "chaos",
        help="the bot against the simulator under injected "
        "faults, then the checks (exit 0: all hold)",
    )
    add_chaos_arguments(chaos)
    fetch = commands.add_parser(
        "fetch-history",
        help="1-minute bars of the underlyings from IBKR into DIR/<SYMBOL>.csv for backtest",
    )
    add_fetch_history_arguments(fetch)


def console() -> None:
    """The ``ibkr-bot`` console command."""
    sys.exit(main(prog=CONSOLE))


def main(argv: list[str] | None = None, prog: str = "python -m supervisor") -> int:
    """The command's exit code. A reader that goes away (``ibkr-bot init x | head -3``) ends
    it quietly with exit 0, as ``report`` always did: what was wanted was read, and 141 (the
    shell's SIGPIPE code) is none of the documented codes a deployment keys on."""
    try:
        try:
            return _dispatch(build_parser(prog).parse_args(argv), prog)
        finally:  # buffered output fails here, not at exit ("Exception ignored ...", exit 120)
            sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return exitcodes.OK


def _dispatch(args: argparse.Namespace, prog: str) -> int:
    if args.command == "validate":
        return cmd_validate(args)
    if args.command == "init":
        return cmd_init(args, prog)
    if args.command == "report":
        return cmd_report(args)
    if args.command == "reconcile":
        return cmd_reconcile(args)
    if args.command == "check":
        return cmd_check(args)
    if args.command == "chaos":
        return cmd_chaos(args)
    if args.command == "doctor":
        return cmd_doctor(args)
    if args.command == "fetch-history":
        return cmd_fetch_history(args)
    if args.command == "replay":
        return cmd_replay(args)
    if args.command == "backtest":
        return cmd_backtest(args)
    if args.command in CONTROLS:
        return cmd_control(args)
    if args.command == "phases":
        settings = load(args)
        return exitcodes.USAGE if settings is None else cmd_phases(args, settings)
    return cmd_run(args)
