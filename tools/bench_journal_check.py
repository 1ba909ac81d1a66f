"""How long the journal's start-up check takes on a journal of a year's size.

    .venv/bin/python tools/bench_journal_check.py [--symbols 3] [--days 252] [--out FILE]

Builds a journal with the real schema (a Journal opened once) holding a year of cycles: one
cycle a minute through a 6.5 h session (390 a day), a signal per symbol per cycle, an intent
and a risk decision for 5 % of the signals, ten orders, fills and positions a day; then times
``PRAGMA quick_check`` and ``PRAGMA integrity_check`` (what a start runs) on it and a
Journal open as the bot does it. Prints the figures and writes them as JSON to --out
(default var/bench_journal_check.json). The file is built under a temporary directory and
removed unless --keep. The page cache is warm (the file was just written): a start after a
reboot reads it from disk first.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor.journal.store import Journal  # noqa: E402 - after the path fix above

CYCLES_PER_DAY = 390  # 09:30-16:00 at one cycle a minute
INTENT_SHARE = 0.05
ORDERS_PER_DAY = 10
REASONS = json.dumps(
    ["ema_fast 101.23 > ema_slow 100.87", "rsi 55.1 in 45-70", "volume 1.4x the 20-bar mean"]
)


def build(path: Path, symbols: int, days: int, seed: int = 5) -> dict[str, int]:
    Journal(path).close()  # the schema, migrated as the bot creates it
    rng = random.Random(seed)
    names = [f"S{i:03d}" for i in range(symbols)]
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    counts = {"cycles": 0, "signals": 0, "intents": 0, "orders": 0}
    ts = 1_767_000_000.0
    for day_index in range(days):
        day = (date(2026, 1, 2) + timedelta(days=day_index)).isoformat()
        with db:
            _day(db, rng, names, day, day_index, ts, counts)
        ts += 86_400
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return counts


Row = tuple[Any, ...]


def _day(
    db: sqlite3.Connection,
    rng: random.Random,
    names: list[str],
    day: str,
    day_index: int,
    ts: float,
    counts: dict[str, int],
) -> None:
    """One day's rows: its cycles, a signal per symbol and cycle, an intent for a share of the
    signals with a risk decision each, and the first ORDERS_PER_DAY intents ordered."""
    cycles, signals = _cycles(db, rng, names, day, day_index, ts)
    picked = [s for s in signals if rng.random() < INTENT_SHARE]
    intents = _intents(db, picked, day, day_index, ts)
    accepted = {intent[0] for intent in intents[:ORDERS_PER_DAY]}
    _decisions(db, intents, accepted, day, ts)
    _orders(db, accepted, day_index, ts)
    counts["cycles"] += len(cycles)
    counts["signals"] += len(signals)
    counts["intents"] += len(intents)
    counts["orders"] += len(accepted)


def _cycles(
    db: sqlite3.Connection,
    rng: random.Random,
    names: list[str],
    day: str,
    day_index: int,
    ts: float,
) -> tuple[list[Row], list[Row]]:
    first = day_index * CYCLES_PER_DAY + 1
    cycles = [
        (first + c, day, ts + 60 * c, ts + 60 * c + 2.5, len(names), 0, 2.5)
        for c in range(CYCLES_PER_DAY)
    ]
    db.executemany("INSERT INTO cycles VALUES (?, ?, ?, ?, ?, ?, ?)", cycles)
    signals = [
        (
            cycle[0],
            day,
            name,
            rng.choice(("BUY", "SELL", "HOLD")),
            round(rng.random(), 3),
            REASONS,
            None,
            None,
        )
        for cycle in cycles
        for name in names
    ]
    db.executemany(
        "INSERT INTO signals (cycle_id, day, symbol, signal, confidence, reasons,"
        " skipped, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        signals,
    )
    return cycles, signals


def _intents(
    db: sqlite3.Connection, picked: list[Row], day: str, day_index: int, ts: float
) -> list[Row]:
    intents = [
        (
            f"{day_index}-{s[0]}-{s[2]}",
            day,
            s[0],
            s[2],
            s[2],
            "20260116",
            500.0 + i,
            "C",
            100,
            "SMART",
            s[2],
            s[3],
            1.2,
            1.8,
            0.6,
            1.2,
            s[4],
            REASONS,
            1.15,
            1.25,
            ts,
        )
        for i, s in enumerate(picked)
    ]
    db.executemany(
        "INSERT INTO intents (intent_id, day, cycle_id, symbol, contract_symbol, "
        "expiry, strike, option_right, multiplier, exchange, trading_class, signal,"
        " entry_limit, take_profit, stop_loss, premium, confidence, reasons, bid, "
        "ask, quote_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
        "?, ?, ?, ?)",
        intents,
    )
    return intents


def _decisions(
    db: sqlite3.Connection, intents: list[Row], accepted: set[str], day: str, ts: float
) -> None:
    db.executemany(
        "INSERT INTO decisions (intent_id, day, ts, accepted, quantity, rule, reason,"
        " values_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                i[0],
                day,
                ts,
                i[0] in accepted,
                1 if i[0] in accepted else 0,
                "ok" if i[0] in accepted else "max_orders_per_day",
                "within limits",
                '{"orders_today": 3, "limit": 10}',
            )
            for i in intents
        ],
    )


def _orders(db: sqlite3.Connection, accepted: set[str], day_index: int, ts: float) -> None:
    """A live bracket filled and over: 'done', as the bot leaves it."""
    db.executemany(
        "INSERT INTO orders (intent_id, mode, status, quantity, broker_order_id, "
        "details, created_ts, updated_ts, perm_id) VALUES (?, 'live', 'done', 1, "
        "?, '{}', ?, ?, ?)",
        [
            (i, n + day_index * 100, ts, ts, n + day_index * 100)
            for n, i in enumerate(sorted(accepted))
        ],
    )


def timed(path: Path, pragma: str) -> tuple[float, str]:
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    started = time.perf_counter()
    result = "; ".join(r[0] for r in db.execute(f"PRAGMA {pragma}"))
    seconds = time.perf_counter() - started
    db.close()
    return seconds, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=3)
    parser.add_argument("--days", type=int, default=252)
    parser.add_argument("--out", default="var/bench_journal_check.json")
    parser.add_argument("--keep", action="store_true", help="keep the journal built")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "journal.sqlite"
        started = time.perf_counter()
        counts = build(path, args.symbols, args.days)
        built_s = time.perf_counter() - started
        quick_s, quick = timed(path, "quick_check")
        integrity_s, integrity = timed(path, "integrity_check")
        started = time.perf_counter()
        Journal(path).close()
        open_s = time.perf_counter() - started
        figures = {
            "symbols": args.symbols,
            "days": args.days,
            **counts,
            "size_mb": round(path.stat().st_size / 1e6, 1),
            "build_s": round(built_s, 1),
            "quick_check_s": round(quick_s, 3),
            "integrity_check_s": round(integrity_s, 3),
            "journal_open_s": round(open_s, 3),
            "result": [quick, integrity],
        }
        if args.keep:
            kept = Path(args.out).with_suffix(".sqlite")
            kept.parent.mkdir(parents=True, exist_ok=True)
            path.replace(kept)
    print(json.dumps(figures, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
