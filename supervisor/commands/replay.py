"""``python -m supervisor replay PATH [--config F] [--journal J] [--json]``: a recorded run again.

    PATH (a recording: supervisor/recording/) --reader--> Recorded answers + the run's settings
      --> ReplayBroker (supervisor/broker/replay.py) on a frozen SimClock
      --> run_offline (supervisor/runtime/offline.py): the same workers' pipelines, risk step,
          paper book and journal, one cycle at each recorded cycle's instant, no waiting
      --> a fresh journal (default: replays/<recording>.sqlite beside the settings' journal;
          never a market's own journal, never an existing file)
      --> each modelled answer journaled as an alert of kind ``modelled`` (one per contract
          and day, its count in the text) --> the summary, text or ``--json``

Settings: the recording's own (meta.json, as its run loaded them) unless ``--config F`` names
others (a threshold, a strike window, a risk cap: the decisions differ where they should).
Exit 0 done, 2 a bad recording, settings or journal path (nothing journaled), 5 the journal
could not be written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.calendar import calendar_tz, trading_day
from common.config import Settings
from common.locations import DEFAULT_CONFIG
from common.settings_file import (
    ConfigError,
    anchored,
    journal_for,
    parse_settings,
    settings_home,
)
from supervisor import exitcodes
from supervisor.broker.replay import OPTION_QUOTE, ModelledAnswer, ReplayBroker
from supervisor.commands.options import load
from supervisor.journal.results import run_results
from supervisor.journal.rows import JournalError, json_ready
from supervisor.journal.store import Journal
from supervisor.observe.progress import cycle_echo
from supervisor.recording.reader import Recording, RecordingError, read_recording
from supervisor.runtime.clock import SimClock
from supervisor.runtime.offline import JournalExists, OfflineRun, remove_journal, run_offline
from workers.strategy import StrategyLoadError, load_strategy

MODELLED = "modelled"  # the journal alert kind of an answer the recording could not give
MARKETS = ("stub", "sim", "ibkr")


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="a recording's directory (recording.dir)")
    parser.add_argument(
        "--config",
        help="other settings to replay with (default: the recording's own, as its run loaded them)",
    )
    parser.add_argument(
        "--journal",
        metavar="J",
        help="the replay's journal, a new file (default: replays/<recording>.sqlite beside the "
        "settings' journal)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")


@dataclass(frozen=True)
class Replayed:
    """What a replay did, as its summary says it."""

    recording: Recording
    run: OfflineRun
    modelled: tuple[ModelledAnswer, ...]


def cmd_replay(args: argparse.Namespace) -> int:
    try:
        recording = read_recording(Path(args.path))
    except RecordingError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    settings = replay_settings(args, recording)
    if settings is None:
        return exitcodes.USAGE
    journal = journal_path(args, recording, settings)
    if journal is None:
        return exitcodes.USAGE
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # SIGTERM stops it as Ctrl-C does (asyncio.run raises KeyboardInterrupt for both)
    before = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        replayed = asyncio.run(replay(settings, recording, journal, args.json))
        journal_modelled(journal, replayed.modelled, calendar_tz(settings.schedule))
        summary = summarize(replayed)
    except KeyboardInterrupt:  # a replay is run again, never resumed
        remove_journal(journal)
        print(f"replay: interrupted; the half-written {journal} removed", file=sys.stderr)
        return exitcodes.OK
    except JournalExists as exc:
        print(f"replay: {exc}; name another with --journal", file=sys.stderr)
        return exitcodes.USAGE
    except JournalError as exc:
        print(f"replay: the journal {journal} could not be written: {exc}", file=sys.stderr)
        return exitcodes.STORAGE
    finally:
        signal.signal(signal.SIGTERM, before)
    print(json.dumps(json_ready(summary), indent=2) if args.json else summary_text(summary))
    return exitcodes.OK


def replay_settings(args: argparse.Namespace, recording: Recording) -> Settings | None:
    """``--config F``'s settings, else the recording's own; None after saying what is wrong."""
    if args.config:
        return load(args, overrides=False)
    raw = recording.settings
    if raw is None:
        print(
            f"replay: {recording.path} holds no settings (meta.json); name them with --config F",
            file=sys.stderr,
        )
        return None
    source = str(recording.path / "meta.json")
    try:  # as the run loaded them: this machine's environment overrides nothing
        settings = parse_settings(raw, source, environ={})
        settings = anchored(settings, settings_home(DEFAULT_CONFIG))  # a relative path: here
        load_strategy(settings)
    except ConfigError as exc:
        print(
            f"replay: the recording's settings are not valid here ({exc.source}):", file=sys.stderr
        )
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None
    except StrategyLoadError as exc:
        print(f"replay: the recording's settings: {exc}", file=sys.stderr)
        return None
    return settings


def journal_path(args: argparse.Namespace, recording: Recording, settings: Settings) -> Path | None:
    """The replay's journal: ``--journal``, or replays/<recording>.sqlite beside the settings'
    journal (var/replays/ of their home); None (said) when it is a market's own journal."""
    if args.journal:
        path = Path(args.journal).resolve()
    else:
        beside = Path(journal_for(settings, "replay").execution.journal_path).resolve().parent
        path = beside / "replays" / f"{recording.name}.sqlite"
    own = {
        Path(journal_for(settings, market).execution.journal_path).resolve() for market in MARKETS
    }
    if path in own:
        print(
            f"replay: {path} is a market's own journal; a replay writes a journal of its own",
            file=sys.stderr,
        )
        return None
    return path


async def replay(
    settings: Settings, recording: Recording, journal: Path, quiet: bool = False
) -> Replayed:
    """The recording's cycles through the offline driver, at their recorded instants."""
    cycles = recording.recorded.cycles
    clock = SimClock(cycles[0], frozen=True)
    broker = ReplayBroker(recording.recorded, clock.now, settings.stub.equity, clock.set)
    echo, bar = cycle_echo(
        f"replay {recording.name}", sys.stderr, lambda line: None, cycles=len(cycles)
    )
    symbols = list(settings.universe.symbols)

    async def arrived() -> list[str]:  # the order the run acted on its symbols' results
        return broker.arrival_order(symbols, clock.now())

    try:
        run = await run_offline(
            settings,
            broker,
            clock,
            cycles,
            journal,
            progress=None if quiet else lambda done, _: echo(f"cycle {done}"),
            close_day=False,  # the recorded run stopped at its last cycle: so does its replay
            universe=arrived,
        )
    finally:
        if bar is not None:
            bar.close()
    return Replayed(recording, run, tuple(broker.modelled))


def journal_modelled(path: Path, modelled: tuple[ModelledAnswer, ...], tz: str) -> None:
    """One alert of kind ``modelled`` per answer kind, contract and day: its count, the
    first time, and what the model used (the report lists the day's alerts)."""
    counts = Counter((trading_day(m.ts, tz).isoformat(), m.kind, m.key) for m in modelled)
    first: dict[tuple[str, str, str], ModelledAnswer] = {}
    for m in modelled:
        first.setdefault((trading_day(m.ts, tz).isoformat(), m.kind, m.key), m)
    if not counts:
        return
    with Journal(path) as journal:
        for (day, kind, key), m in first.items():
            n = counts[(day, kind, key)]
            text = f"{n} answer(s) not in the recording, modelled: {m.how}"  # the key names it
            journal.record_alert_once(day, MODELLED, f"{kind} {key}", text, m.ts)


def summarize(replayed: Replayed) -> dict[str, Any]:
    """The ``--json`` object: the run, its journal's signals, decisions, trades and P&L."""
    signals: Counter[str] = Counter()
    decisions: Counter[str] = Counter()
    refused_by: Counter[str] = Counter()
    intents = 0
    with Journal(replayed.run.journal, readonly=True) as journal:
        for day in journal.days_between("0000-01-01", "9999-12-31"):
            s = journal.day_summary(day)
            signals.update(s["signals"]["by_kind"])
            decisions.update(accepted=s["decisions"]["accepted"], refused=s["decisions"]["refused"])
            refused_by.update(s["decisions"]["refused_by_rule"])
            intents += s["intents"]["recorded"]
        results = run_results(journal)
    meta = replayed.recording.meta
    return {
        "recording": str(replayed.recording.path),
        "market": meta.get("market"),
        "journal": str(replayed.run.journal),
        "cycles": replayed.run.cycles,
        "symbol_cycles": replayed.run.symbol_cycles,
        "seconds": round(replayed.run.seconds, 3),
        "signals": dict(signals),
        "intents": intents,
        "decisions": {**decisions, "refused_by_rule": dict(refused_by)},
        "trades": results.run.trades,
        "pnl": round(results.run.net_pnl + results.unrealized, 2),
        "modelled": len(replayed.modelled),
        "modelled_by_kind": dict(Counter(m.kind for m in replayed.modelled)),
        "modelled_contracts": len({m.key for m in replayed.modelled if m.kind == OPTION_QUOTE}),
        "results": results.as_json(),
    }


def summary_text(s: dict[str, Any]) -> str:
    signals = " ".join(f"{k} {v}" for k, v in sorted(s["signals"].items())) or "none"
    d = s["decisions"]
    lines = [
        f"replay of {s['recording']}: {s['cycles']} cycles ({s['symbol_cycles']} "
        f"symbol-cycles) in {s['seconds']:.2f}s",
        f"signals {signals} | intents {s['intents']} | decisions accepted "
        f"{d.get('accepted', 0)} refused {d.get('refused', 0)} | trades {s['trades']} | "
        f"P&L {s['pnl']:+.2f}",
        "modelled answers: "
        + (
            ", ".join(f"{k} {v}" for k, v in sorted(s["modelled_by_kind"].items()))
            + f" ({s['modelled_contracts']} option contracts), journaled as 'modelled' alerts"
            if s["modelled"]
            else "none, the recording answered every request"
        ),
        f"journal {s['journal']} (python -m supervisor report --journal {s['journal']})",
    ]
    return "\n".join(lines)
