"""``fetch-history``: the underlyings' 1-minute bars from IBKR into a backtest's data files.

    fetch-history --symbols SPY,QQQ --from 2026-11-30 --to 2026-12-04 --out DIR
      for each symbol, each regular session of the exchange calendar in the range:
        IBKRBroker.history.day(symbol, session)   one request, paced (broker/ibkr/history.py)
      -> DIR/<SYMBOL>.csv   ts (ISO 8601 with the UTC offset, the bar's start), open, high,
                            low, close, volume: the schema ``backtest --data DIR`` reads

Days already in a file are not asked for again (a second run fetches only what is missing:
IBKR's 60 requests per 10 minutes make a year of one symbol 42 minutes); a file is rewritten
whole, by rename, after each symbol and every ``SAVE_EVERY`` days, so an interrupted run keeps
what it fetched. Days the exchange was closed are not requested; a day not over yet (by the
gateway's clock) is left for a later run.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from common.calendar import ExchangeCalendar, Session, calendar_tz, exchange_calendar, zone
from common.config import Settings
from common.timetext import span
from supervisor import exitcodes
from supervisor.broker.base import BrokerError, ConnectionLost, NoDataPermission
from supervisor.commands.options import (
    MARKET_ERRORS,
    add_market_options,
    load,
    market_error,
    market_for,
)
from supervisor.runtime.sessions import broker_session

if TYPE_CHECKING:  # ib_insync is loaded only by the commands that talk to a gateway
    from supervisor.broker.ibkr.history import HistoricalBars, Row

COLUMNS = ("ts", "open", "high", "low", "close", "volume")
SAVE_EVERY = 20  # days between rewrites of a symbol's file while it is fetched


class HistoryFileError(ValueError):
    """An existing output file this command did not write (another header): not merged."""


def add_fetch_history_arguments(parser: argparse.ArgumentParser) -> None:
    add_market_options(parser, default_broker="ibkr")
    parser.add_argument(
        "--symbols", help="comma-separated (default: the settings' universe.symbols)"
    )
    parser.add_argument(
        "--from", dest="from_day", type=date.fromisoformat, required=True, help="YYYY-MM-DD"
    )
    parser.add_argument(
        "--to", dest="to_day", type=date.fromisoformat, required=True, help="YYYY-MM-DD"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for <SYMBOL>.csv (made if missing)"
    )


def sessions(calendar: ExchangeCalendar, first: date, last: date) -> list[Session]:
    """The regular sessions from ``first`` to ``last``, both included, oldest first."""
    found, day = [], first
    while day <= last:
        session = calendar.session(day)
        if session is not None:
            found.append(session)
        day += timedelta(days=1)
    return found


def row_text(row: Row, tz: str) -> list[str]:
    ts = datetime.fromtimestamp(row[0], zone(tz)).isoformat()
    return [ts, *(f"{v:.10g}" for v in row[1:])]


def read_days(path: Path, tz: str) -> dict[date, list[list[str]]]:
    """An existing output file's rows by exchange day (empty if there is no file)."""
    if not path.exists():
        return {}
    days: dict[date, list[list[str]]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return {}
        if tuple(header) != COLUMNS:
            raise HistoryFileError(
                f"{path}: line 1: header {','.join(header)!r} is not {','.join(COLUMNS)!r}; "
                "not a file fetch-history wrote (move it away or choose another --out)"
            )
        for line, row in enumerate(reader, start=2):
            try:
                day = datetime.fromisoformat(row[0]).astimezone(zone(tz)).date()
            except (ValueError, IndexError):
                raise HistoryFileError(f"{path}: line {line}: not a timestamp: {row!r}") from None
            days.setdefault(day, []).append(row)
    return days


def write_days(path: Path, days: dict[date, list[list[str]]]) -> None:
    """All rows, oldest first, written to a temporary file and renamed over ``path``."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for day in sorted(days):
            writer.writerows(days[day])
    os.replace(partial, path)


@dataclass
class Fetched:
    """What a run did, per symbol: days fetched, already there, empty, failed."""

    days: dict[str, int] = field(default_factory=dict)
    bars: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    empty: list[str] = field(default_factory=list)  # "SYM YYYY-MM-DD"
    failed: list[str] = field(default_factory=list)  # "SYM YYYY-MM-DD: why"
    not_over: list[str] = field(default_factory=list)
    refusals: int = 0


async def fetch(
    history: HistoricalBars,
    symbols: Sequence[str],
    wanted: Sequence[Session],
    out: Path,
    *,
    now: float,
    tz: str,
    echo: Callable[[str], None],
) -> Fetched:
    """Every (symbol, session) not yet in ``out`` requested and written; see the docstring."""
    result = Fetched()
    over = [s for s in wanted if s.close_ts <= now]
    result.not_over = [str(s.day) for s in wanted if s.close_ts > now]
    files = {sym: read_days(out / f"{sym}.csv", tz) for sym in symbols}
    todo = [(sym, s) for sym in symbols for s in over if s.day not in files[sym]]
    for sym in symbols:
        result.kept[sym] = sum(1 for s in over if s.day in files[sym])
        result.days[sym], result.bars[sym] = 0, 0
    dirty: set[str] = set()  # symbols with days fetched but not yet on disk
    hopeless: set[str] = set()  # no data permission: no later day of them is asked

    def save(*symbols: str) -> None:
        for sym in symbols:
            write_days(out / f"{sym}.csv", files[sym])
            dirty.discard(sym)

    for done, (sym, session) in enumerate(todo, start=1):
        if sym in hopeless:
            continue
        failed = False
        try:
            rows = await history.day(sym, session)
        except ConnectionLost:
            save(*sorted(dirty))  # what was fetched is kept; a later run asks for the rest
            raise
        except NoDataPermission as exc:  # each of its days would fail the same way
            left = sum(1 for s, _ in todo[done - 1 :] if s == sym)
            result.failed.append(f"{sym}: {left} days from {session.day} not fetched: {exc}")
            rows, failed = [], True
            hopeless.add(sym)
        except BrokerError as exc:
            result.failed.append(f"{sym} {session.day}: {exc}")
            rows, failed = [], True
        if rows:
            files[sym][session.day] = [row_text(r, tz) for r in rows]
            result.days[sym] += 1
            result.bars[sym] += len(rows)
            dirty.add(sym)
        elif not failed:
            result.empty.append(f"{sym} {session.day}")
        last_of_symbol = done == len(todo) or todo[done][0] != sym or sym in hopeless
        if sym in dirty and (last_of_symbol or result.days[sym] % SAVE_EVERY == 0):
            save(sym)
        eta = history.pacer.eta_s(len(todo) - done)
        echo(f"{sym} {session.day}: {len(rows)} bars ({done}/{len(todo)}, ETA {span(eta)})")
    result.refusals = history.refusals
    return result


def summary(result: Fetched, out: Path) -> list[str]:
    lines = [
        f"{sym}: {result.days[sym]} days, {result.bars[sym]:,} bars fetched, "
        f"{result.kept[sym]} days already there -> {out / f'{sym}.csv'}"
        for sym in result.days
    ]
    if result.not_over:
        lines.append(f"not over yet (left for a later run): {', '.join(result.not_over)}")
    if result.empty:
        lines.append(f"no bars from IBKR: {', '.join(result.empty)}")
    lines += [f"FAILED {f}" for f in result.failed]
    if result.refusals:
        lines.append(f"IBKR refused {result.refusals} requests for pacing (waited out)")
    return lines


async def run_fetch(
    broker: object, settings: Settings, symbols: Sequence[str], args: argparse.Namespace, now: float
) -> Fetched:
    from supervisor.broker.ibkr.broker import IBKRBroker

    assert isinstance(broker, IBKRBroker)
    calendar = exchange_calendar(settings.schedule)
    wanted = sessions(calendar, args.from_day, args.to_day)
    await broker.connect()
    try:

        def echo(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

        return await fetch(
            broker.history, symbols, wanted, args.out, now=now, tz=calendar.tz, echo=echo
        )
    finally:
        await broker.disconnect()


def cmd_fetch_history(args: argparse.Namespace) -> int:
    settings = load(args)
    if settings is None:
        return exitcodes.USAGE
    if args.to_day < args.from_day:
        print(f"--to {args.to_day} is before --from {args.from_day}", file=sys.stderr)
        return exitcodes.USAGE
    if not sessions(exchange_calendar(settings.schedule), args.from_day, args.to_day):
        print(
            f"fetch-history: no trading session from {args.from_day} to {args.to_day} "
            "(weekends and exchange holidays only)",
            file=sys.stderr,
        )
        return exitcodes.USAGE
    market = market_for(args, settings)
    if market is None:
        return exitcodes.USAGE
    if market == "stub":
        print("fetch-history asks a gateway: --broker ibkr, or --sim", file=sys.stderr)
        return exitcodes.USAGE
    symbols = [s.strip().upper() for s in (args.symbols or "").split(",") if s.strip()]
    symbols = symbols or list(settings.universe.symbols)
    try:  # a file this command cannot merge is said before anything is asked
        for sym in symbols:
            read_days(args.out / f"{sym}.csv", calendar_tz(settings.schedule))
    except HistoryFileError as exc:
        print(exc, file=sys.stderr)
        return exitcodes.USAGE
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with broker_session(
            settings, market, args.scenario, start=args.start, sim_clock=args.sim_clock
        ) as (broker, clock, used):
            result = asyncio.run(run_fetch(broker, used, symbols, args, clock.now()))
    except MARKET_ERRORS as exc:
        return market_error(exc)
    except BrokerError as exc:  # the connection: refused, or lost on the way
        kept = "; what was fetched is kept" if isinstance(exc, ConnectionLost) else ""
        print(f"fetch-history: {exc}{kept}", file=sys.stderr)
        return exitcodes.CANNOT_CONNECT
    print("\n".join(summary(result, args.out)))
    return exitcodes.FAILED if result.failed else exitcodes.OK
