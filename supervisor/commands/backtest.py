"""``python -m supervisor backtest --data DIR --from D1 --to D2 [--symbols A,B] [--json]``.

    DIR (supervisor/backtest/data.py: 1-minute bars, optional option quotes and IV) loaded
      and checked first: any problem is exit 2 naming the file, the line and the problem,
      and nothing is journaled
      --> HistoryBroker (supervisor/backtest/market.py) on a frozen SimClock
      --> run_offline (supervisor/runtime/offline.py): the same workers' pipelines, risk
          step, paper book (fills at the quote: buy at the ask, sell at the bid, stops at the
          bid; entry timeouts, brackets, the expiry exit and settlement as in paper) and
          journal; one cycle at the start of every bar minute of the range's sessions
      --> a fresh journal (default: backtests/ beside the settings' journal, named by the
          range and the run's start; never an existing file)
      --> model-priced option quotes journaled as one alert a day (kind ``model_priced``,
          the count in its text), so ``report --journal J`` says so too
      --> the summary (supervisor/journal/results.py's figures), text with a banner when
          options were model-priced, or ``--json``

Exit 0 done (or stopped by Ctrl-C / SIGTERM: the half-written journal removed, since a
backtest is run again, never resumed), 2 a bad command line, settings or data folder or a
range without a session, 5 the journal could not be written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from common.calendar import exchange_calendar
from common.config import Settings
from supervisor import exitcodes
from supervisor.backtest.data import DataSet, count_cycles, cycle_times, load, symbols_in
from supervisor.backtest.files import DataError
from supervisor.backtest.market import HistoryBroker
from supervisor.commands.options import load as load_settings
from supervisor.journal.results import run_results
from supervisor.journal.rows import JournalError
from supervisor.journal.store import Journal
from supervisor.observe.progress import cycle_echo
from supervisor.runtime.clock import SimClock
from supervisor.runtime.offline import JournalExists, OfflineRun, remove_journal, run_offline

MODEL_PRICED = "model_priced"  # the journal alert kind: a day's options priced by the model
BANNER = (
    "MODEL-PRICED: options had no market quotes in the data; they were priced by "
    "Black-Scholes at IV {iv} with bid/ask +/-{spread:g} % of the model price. "
    "P&L is the model's, not a market's."
)


def add_backtest_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "backtest",
        help="the bot's cycles over historical 1-minute bars (options model-priced unless "
        "the data has their quotes), into a journal of its own",
    )
    add_backtest_arguments(parser)


def add_backtest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="folder of <SYMBOL>.csv|.parquet 1-minute bars "
        "(ts with UTC offset, open, high, low, close, volume)",
    )
    parser.add_argument("--from", dest="first", required=True, help="first day YYYY-MM-DD")
    parser.add_argument("--to", dest="last", required=True, help="last day YYYY-MM-DD")
    parser.add_argument(
        "--symbols", help="comma-separated (default: every symbol with a bars file in DIR)"
    )
    parser.add_argument("--config", help="settings file (default: the embedded one)")
    parser.add_argument(
        "--journal",
        metavar="J",
        help="the backtest's journal, a new file (default: backtests/ beside the journal)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")


@dataclass(frozen=True)
class Plan:
    """What the command line asks for, checked."""

    folder: Path
    first: date
    last: date
    symbols: tuple[str, ...]
    journal: Path


def cmd_backtest(args: argparse.Namespace) -> int:
    settings = load_settings(args, overrides=False)
    if settings is None:
        return exitcodes.USAGE
    plan = make_plan(args, settings)
    if plan is None:
        return exitcodes.USAGE
    calendar = exchange_calendar(settings.schedule)
    if count_cycles(calendar, plan.first, plan.last) == 0:
        print(
            f"backtest: no trading session from {plan.first} to {plan.last} "
            "(weekends and exchange holidays only)",
            file=sys.stderr,
        )
        return exitcodes.USAGE
    try:
        data = load(plan.folder, plan.symbols, plan.first, plan.last, calendar)
    except DataError as exc:
        print(f"backtest: the data in {plan.folder} cannot be used:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return exitcodes.USAGE
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = settings.model_copy(
        update={"universe": settings.universe.model_copy(update={"symbols": list(plan.symbols)})}
    )
    # SIGTERM stops it as Ctrl-C does (asyncio.run raises KeyboardInterrupt for both)
    before = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        run, broker = asyncio.run(backtest(settings, data, plan))
        journal_model_priced(plan.journal, broker)
        summary = summarize(settings, run, broker)
    except KeyboardInterrupt:
        remove_journal(plan.journal)
        print(f"backtest: interrupted; the half-written {plan.journal} removed", file=sys.stderr)
        return exitcodes.OK
    except JournalExists as exc:
        print(f"backtest: {exc}; name another with --journal", file=sys.stderr)
        return exitcodes.USAGE
    except JournalError as exc:
        print(f"backtest: the journal {plan.journal} could not be written: {exc}", file=sys.stderr)
        return exitcodes.STORAGE
    finally:
        signal.signal(signal.SIGTERM, before)
    print(json.dumps(summary, indent=2) if args.json else summary_text(summary))
    return exitcodes.OK


def make_plan(args: argparse.Namespace, settings: Settings) -> Plan | None:
    """The folder, the range, the symbols and the journal; None after saying what is wrong."""
    try:
        first, last = date.fromisoformat(args.first), date.fromisoformat(args.last)
    except ValueError as exc:
        print(f"backtest: --from/--to: {exc} (YYYY-MM-DD)", file=sys.stderr)
        return None
    if last < first:
        print(f"backtest: --to {last} is before --from {first}", file=sys.stderr)
        return None
    folder = Path(args.data)
    if not folder.is_dir():
        print(f"backtest: --data {folder}: no such folder", file=sys.stderr)
        return None
    named = [s.strip().upper() for s in (args.symbols or "").split(",") if s.strip()]
    symbols = tuple(dict.fromkeys(named)) or tuple(symbols_in(folder))
    if not symbols:
        print(f"backtest: no <SYMBOL>.csv or .parquet in {folder}", file=sys.stderr)
        return None
    if args.journal:
        journal = Path(args.journal)
    else:
        started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        home = Path(settings.execution.journal_path).parent
        journal = home / "backtests" / f"backtest-{first}-{last}-{started}.sqlite"
    if journal.exists():
        print(f"backtest: {journal} exists; name another with --journal", file=sys.stderr)
        return None
    return Plan(folder, first, last, symbols, journal)


async def backtest(
    settings: Settings, data: DataSet, plan: Plan
) -> tuple[OfflineRun, HistoryBroker]:
    """One cycle per bar minute of the range's sessions through the offline driver (a
    progress bar with its ETA on a terminal)."""
    calendar = exchange_calendar(settings.schedule)
    total = count_cycles(calendar, plan.first, plan.last)
    times = cycle_times(calendar, plan.first, plan.last)
    first = next(cycle_times(calendar, plan.first, plan.last), None)
    clock = SimClock(first if first is not None else 0.0, frozen=True)
    broker = HistoryBroker(data, clock.now, settings.backtest, calendar)
    echo, bar = cycle_echo("backtest", sys.stderr, lambda line: None, cycles=total)
    try:
        run = await run_offline(
            settings,
            broker,
            clock,
            times,
            plan.journal,
            progress=None if bar is None else lambda done, _: echo(f"cycle {done}"),
        )
    finally:
        if bar is not None:
            bar.close()
    return run, broker


def journal_model_priced(path: Path, broker: HistoryBroker) -> None:
    """One alert of kind ``model_priced`` per day the model priced options, its count said."""
    if not broker.modelled_days:
        return
    with Journal(path) as journal:
        for day, n in sorted(broker.modelled_days.items()):
            text = (
                f"{n} option quote(s) priced by the model (Black-Scholes), not by a market: "
                "the day's P&L is the model's"
            )
            first = broker.modelled_first[day]  # the session clock's, as every row's
            journal.record_alert_once(day, MODEL_PRICED, "options", text, first)


def summarize(settings: Settings, run: OfflineRun, broker: HistoryBroker) -> dict[str, Any]:
    """The ``--json`` object: the run, the model flag and the journal's results."""
    with Journal(run.journal, readonly=True) as journal:
        results = run_results(journal)
    figures = results.as_json()
    per_s = run.symbol_cycles_per_s
    by_symbol = figures.get("by_symbol", [])
    assert isinstance(by_symbol, list)
    return {
        "journal": str(run.journal),
        "cycles": run.cycles,
        "symbol_cycles": run.symbol_cycles,
        "seconds": round(run.seconds, 3),
        "symbol_cycles_per_s": round(per_s, 1) if per_s is not None else None,
        "failed_symbols": run.failed_symbols,
        "trades": results.run.trades,
        "pnl": round(results.run.net_pnl + results.unrealized, 2),
        "model_priced": broker.modelled > 0,
        "option_quotes": {"modelled": broker.modelled, "from_data": broker.quoted},
        "model": {"iv": settings.backtest.iv, "half_spread": settings.backtest.option_half_spread},
        "max_drawdown": round(results.run.max_drawdown, 2),
        "per_symbol": {s["symbol"]: s["figures"] for s in by_symbol},
        "results": figures,
    }


def summary_text(s: dict[str, Any]) -> str:
    lines = []
    if s["model_priced"]:
        model = s["model"]
        lines.append(BANNER.format(iv=model["iv"], spread=model["half_spread"] * 100))
    lines += [
        f"backtest: {s['cycles']} cycles ({s['symbol_cycles']} symbol-cycles) in "
        f"{s['seconds']:.1f}s, {s['symbol_cycles_per_s']} symbol-cycles/s",
        f"trades {s['trades']} | P&L {s['pnl']:+.2f} | max drawdown {s['max_drawdown']:.2f}",
    ]
    for symbol, f in s["per_symbol"].items():
        rate = f.get("win_rate")
        won = f"{rate:.0%}" if isinstance(rate, float) else "-"
        lines.append(
            f"  {symbol}: trades {f.get('trades')} won {won} net {f.get('net_pnl', 0):+.2f}"
        )
    lines.append(f"journal {s['journal']} (python -m supervisor report --journal {s['journal']})")
    return "\n".join(lines)
