"""Synthetic 1-minute bars in the backtest's data schema, for tests, benchmarks and a demo.

    python -m tools.backtest_data --out DIR --from 2026-11-30 --to 2026-12-04 \
        --symbols SPY,QQQ,AAPL

Each symbol's prices are the stub market's seeded walk (supervisor/broker/stub.py's
PricePath: trends of hours and minutes plus noise), one bar per minute of NYSE's regular
sessions (holidays skipped, early closes ended at 13:00), written as DIR/<SYMBOL>.csv with
``ts`` in ISO 8601 with the exchange's UTC offset: what ``backtest --data DIR`` reads. No
download, the same files every time.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

from common.calendar import nyse, zone
from supervisor.broker.stub import DEFAULT_BASES, PricePath

COLUMNS = ("ts", "open", "high", "low", "close", "volume")


def bar_rows(symbol: str, first: date, last: date, seed: int = 7) -> Iterator[tuple[str, ...]]:
    """The symbol's bars of every regular session from ``first`` to ``last``."""
    path = PricePath(symbol, DEFAULT_BASES.get(symbol, 100.0), seed)
    calendar, tz = nyse(), zone()
    day = first
    while day <= last:
        session = calendar.session(day)
        day += timedelta(days=1)
        if session is None:
            continue
        ts = session.open_ts
        while ts < session.close_ts:
            minute = ts / 60.0
            prices = [path.at(minute + k / 4) for k in range(5)]  # the minute's path
            yield (
                datetime.fromtimestamp(ts, tz).isoformat(),
                f"{prices[0]:.2f}",
                f"{max(prices) * 1.0002:.2f}",
                f"{min(prices) * 0.9998:.2f}",
                f"{prices[-1]:.2f}",
                str(int(path.volume(int(minute)))),
            )
            ts += 60


def write_bars(folder: Path, symbol: str, first: date, last: date, seed: int = 7) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{symbol}.csv"
    with target.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        writer.writerows(bar_rows(symbol, first, last, seed))
    return target


def write_data(folder: Path, symbols: Sequence[str], first: date, last: date) -> list[Path]:
    return [write_bars(folder, s, first, last) for s in symbols]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the data folder to write")
    parser.add_argument("--from", dest="first", required=True, help="YYYY-MM-DD")
    parser.add_argument("--to", dest="last", required=True, help="YYYY-MM-DD")
    parser.add_argument("--symbols", default="SPY,QQQ,AAPL", help="comma-separated")
    args = parser.parse_args(argv)
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    first, last = date.fromisoformat(args.first), date.fromisoformat(args.last)
    for written in write_data(Path(args.out), symbols, first, last):
        print(written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
