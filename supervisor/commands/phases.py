"""The original report's pipeline as one command: Phase 1, Phase 2, Phase 3, the verdict.

    phase 1  check: one symbol's price, chain, ATM and strike window (supervisor.commands.check)
    phase 2  multi-symbol: --phase2-cycles cycles over the universe, back to back
    phase 3  soak: --soak-s seconds (or --soak-cycles cycles), the monitor sampling every
             --metrics-interval-s into OUT/metrics.jsonl
    report   the soak analysis (supervisor/observe/soak.py) of those metrics: PASS (exit 0),
             FAIL or INCOMPLETE (stopped before its planned length; exit 1); the thresholds
             used are appended to the metrics file, so soak_report.py agrees later

Against the simulated gateway by default (a child process, as with --sim), the in-memory
stub with --broker stub, a real gateway with --broker ibkr --host H --port P.
A soak under an hour is "compressed": warm-up, minimum span and the memory slope limit are
scaled to the run (a fixed memory budget over the steady state instead of KB per hour), since
a slope per hour measured over a minute would magnify noise sixty-fold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from common.config import Settings
from common.locations import DEFAULT_CONFIG
from common.settings_file import settings_home
from supervisor import exitcodes
from supervisor.commands.check import run_check
from supervisor.commands.options import MARKET_ERRORS, add_market_options, market_error
from supervisor.observe.progress import cycle_echo
from supervisor.observe.soak import COMPRESSED_BELOW_S, analyse, load_records, soak_thresholds
from supervisor.observe.soak_render import format_report, plot
from supervisor.runtime.sessions import broker_session, run_supervisor, with_values


def add_phase_arguments(parser: argparse.ArgumentParser) -> None:
    add_market_options(parser, default_broker="sim")
    parser.add_argument(
        "--phase2-cycles", type=int, default=3, help="phase 2 length in cycles (default: 3)"
    )
    parser.add_argument(
        "--soak-s",
        type=float,
        default=0.0,
        help="phase 3 length in seconds (e.g. 14400 for the 4-hour soak)",
    )
    parser.add_argument(
        "--soak-cycles",
        type=int,
        default=0,
        help="phase 3 length in cycles instead (e.g. 2000, compressed)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=None,
        help="seconds between cycles in phases 2 and 3 (default: back to back; "
        "the stub's simulated clock still moves 60 s a cycle)",
    )
    parser.add_argument(
        "--metrics-interval-s",
        type=float,
        default=0.0,
        help="monitor sampling (default: 30 s, 0.5 s for compressed soaks)",
    )
    parser.add_argument(
        "--memory-budget-kb",
        type=float,
        default=8192.0,
        help="compressed soaks: RSS growth allowed over the steady state (default: 8192)",
    )
    parser.add_argument(
        "--out",
        help="journal, logs, metrics, report (default: var/phases beside the --config "
        "file, else in the bot's state folder)",
    )
    parser.add_argument("--plot", help="write the soak plot PNG here (needs matplotlib)")


def out_folder(given: str | None, config: str | None, name: str) -> Path:
    """``--out`` as given, else ``var/NAME`` in the state folder of the settings: beside the
    ``--config`` file (its var/, where its journal goes), else the embedded default's state
    folder ($SUPERVISOR_HOME, the checkout, or the per-user one): never the working directory,
    which may be read-only or the installed code."""
    if given:
        return Path(given)
    return settings_home(Path(config) if config else DEFAULT_CONFIG) / "var" / name


def writable_folder(out: Path, command: str) -> bool:
    """Whether ``out`` is (made) a folder we can write into; False after saying why not."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):  # an existing read-only folder fails here
            pass
    except OSError as exc:
        print(
            f"{command}: cannot write into {out}: {exc.strerror or exc} (give --out DIR)",
            file=sys.stderr,
        )
        return False
    return True


def _phase_settings(
    settings: Settings, args: argparse.Namespace, out: Path, phase: str
) -> Settings:
    compressed = not args.soak_s or args.soak_s < COMPRESSED_BELOW_S
    metrics_s = args.metrics_interval_s or (0.5 if compressed else 30.0)
    interval = args.interval
    if interval is None:  # the stub sleeps on a simulated clock: its market moves, we don't wait
        interval = 60.0 if args.broker == "stub" and not args.sim else 0.0
    schedule: dict[str, Any] = {"interval_s": interval}
    if phase == "phase2":
        schedule.update(cycles=args.phase2_cycles, max_runtime_s=0.0)
    else:
        schedule.update(cycles=args.soak_cycles, max_runtime_s=args.soak_s)
    return with_values(
        settings,
        {
            "schedule": schedule,
            "monitoring": {
                "interval_s": metrics_s,
                "metrics_path": str(out / f"{phase}.metrics.jsonl"),
            },
            "logging": {"json_path": str(out / "bot.jsonl"), "console": False},
            "execution": {"journal_path": str(out / "journal.sqlite")},
        },
    )


def _can_plot() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _say(line: str) -> None:
    print(line, flush=True)


def cmd_phases(args: argparse.Namespace, settings: Settings) -> int:
    if not args.soak_s and not args.soak_cycles:
        print(
            "phases: give phase 3 a length: --soak-s SECONDS or --soak-cycles N "
            "(e.g. --soak-s 600 for ten minutes, 14400 for the 4-hour soak)",
            file=sys.stderr,
        )
        return exitcodes.USAGE
    if args.plot and not _can_plot():  # said before the soak, not after an hour of it
        # the interpreter named: the fix goes into the bot's environment, installed or not
        print(
            "phases --plot: matplotlib cannot be imported "
            f"({shlex.quote(sys.executable)} -m pip install matplotlib)",
            file=sys.stderr,
        )
        return exitcodes.USAGE
    out = out_folder(args.out, args.config, "phases")
    if not writable_folder(out, "phases"):
        return exitcodes.USAGE
    broker_name = "sim" if args.sim else args.broker
    try:
        return _run_phases(settings, args, out, broker_name)
    except MARKET_ERRORS as exc:
        return market_error(exc)


def _run_phases(settings: Settings, args: argparse.Namespace, out: Path, broker_name: str) -> int:
    symbol = settings.universe.symbols[0]
    _say(f"== phase 1: check {symbol} ({broker_name})")
    with broker_session(settings, broker_name, args.scenario, out, args.start, args.sim_clock) as (
        broker,
        clock,
        used,
    ):
        report = asyncio.run(run_check(broker, used, symbol, clock.now()))
    for line in report.lines():
        _say(line)
    if not report.ok:
        _say("phase 1 FAILED: stopping")
        return exitcodes.CANNOT_CONNECT
    for phase in ("phase2", "phase3"):
        _say(f"== {phase}: {'multi-symbol cycles' if phase == 'phase2' else 'soak'}")
        phase_settings = _phase_settings(settings, args, out, phase)
        for old in out.glob(f"{phase}.metrics.jsonl*"):  # a verdict speaks of this run only
            old.unlink()
        planned = phase_settings.schedule
        echo, bar = cycle_echo(
            phase, sys.stderr, _say, cycles=planned.cycles, seconds=planned.max_runtime_s
        )
        try:
            with broker_session(
                phase_settings, broker_name, args.scenario, out, args.start, args.sim_clock
            ) as (b, c, used):
                code, sup = run_supervisor(used, b, c, echo=echo, console=False)
                if bar is not None:  # before the market is shut: the simulator's summary
                    bar.close()  # must not run on from the bar's line
        finally:
            if bar is not None:
                bar.close()
        _say(
            f"{phase}: exit {code}, {sup.cycles_done} cycles, "
            f"{sup.failed_symbols_total} failed symbols"
        )
        if code != exitcodes.OK:
            return code
    return _verdict(args, out)


def _verdict(args: argparse.Namespace, out: Path) -> int:
    files = [out / "phase3.metrics.jsonl"]
    records, problems = load_records(files)
    for problem in problems:
        print(problem, file=sys.stderr)
    thresholds = soak_thresholds(records, args.soak_s, args.memory_budget_kb)
    verdict = analyse(
        records, thresholds, files=[str(f) for f in files], malformed_lines=len(problems)
    )
    verdict.thresholds_from = "phases (written into the metrics file)"
    with open(files[0], "a", encoding="utf-8") as metrics:  # any later soak_report agrees
        last_ts = records[-1]["ts"] if records else 0.0
        metrics.write(json.dumps({"ts": last_ts, "thresholds": asdict(thresholds)}) + "\n")
    _say("== soak report")
    text = format_report(verdict)
    _say(text)
    (out / "soak_report.txt").write_text(text + "\n")
    if args.plot:
        plot(records, Path(args.plot), verdict)
        _say(f"plot written to {args.plot}")
    return 0 if verdict.passed else 1  # FAIL and INCOMPLETE alike
