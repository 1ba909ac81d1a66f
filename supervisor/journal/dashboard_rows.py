"""The dashboard's day, read from a journal: what the page (supervisor/observe/static) draws
and ``report --html`` exports, as one JSON-ready dict.

    day_state(journal, day)  the report's DaySummary (positions, P&L, refusals by rule, kill
                             switch, controls, alerts) plus what only a picture needs:
        symbols    every symbol of the day: its last price, signal and decision
        series     symbol -> [[ts, price], ...]: the price at each cycle's start, at most
                   SERIES_POINTS of them (evenly spaced, the last kept)
        marks      entries and exits: [ts, symbol, kind, option price, contract, reason]
        equity     [[ts, equity], ...]: the start equity plus the P&L realized by each cycle
                   (the open positions' marks only at the last point: earlier marks are not
                   kept), so the curve is what the journal can prove
        decisions  the day's latest decisions, newest first
        working    orders still working: live ones at IBKR, and paper entries waiting in the
                   paper book (a position ``pending``)
    read_day_state(path)     the same from a journal file opened read-only (the status
                             server's thread: its own connection, never the loop's), with
                             ``Prices`` kept from one read to the next: each parses only the
                             signals journaled since (a day of 200 symbols, 78,000 signals:
                             ~2 s at once, then ~0.2 s a read, mostly the day summary)

The price is the one the strategy printed in its reasons ("close 269.93 > vwap …", or "atm
270 for price 269.93"): the journal keeps no other record of the underlying's price.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from supervisor.journal.store import Journal, JournalError
from supervisor.journal.summary_types import PositionLine

Json = dict[str, object]  # JSON-ready: str, numbers, None, lists and dicts of them
Mark = tuple[float, str, str, float | None, str, str]  # ts, symbol, kind, price, contract, why

DECISIONS_SHOWN = 60  # newest first; the counts by rule cover the whole day
SERIES_POINTS = 120  # per symbol on the page (a chart 260 px wide): evenly spaced, the last kept
WORKING = ("sending", "submitted", "working", "unconfirmed", "cancelling")
# in the reasons as journaled (a JSON list of strings): a reason that starts "close 269.93 ",
# or one that ends "for price 269.93"; read in the raw text, as parsing each list is the cost
PRICE = re.compile(r'"(?:close|last|price) (-?\d+(?:\.\d+)?)\b|\bfor price (-?\d+(?:\.\d+)?)"')


def price_in(reasons_json: str) -> float | None:
    """The underlying's price a signal's journaled reasons state, or None when none does."""
    found = PRICE.search(reasons_json)
    return None if found is None else float(found.group(1) or found.group(2))


def price_of(reasons: list[str]) -> float | None:
    """``price_in`` of reasons not yet journaled."""
    return price_in(json.dumps(reasons))


class Prices:
    """Each symbol's price at each cycle of a day and its latest signal, from the journal's
    signals. Kept between reads by the status server, so that a read parses only the signals
    journaled since the last (a day of 200 symbols is 78,000 rows: seconds at once)."""

    def __init__(self) -> None:
        self._start(None)

    def _start(self, day: str | None) -> None:
        self.day = day
        self.seen = 0  # the last signal id read
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.last: dict[str, Json] = {}  # symbol -> its latest signal

    def read(self, db: sqlite3.Connection, day: str) -> None:
        if day != self.day:
            self._start(day)  # another day: from its start
        rows = db.execute(
            "SELECT s.id, s.symbol, s.signal, s.confidence, s.reasons, s.skipped, s.error, "
            "s.cycle_id, c.started_ts ts FROM signals s JOIN cycles c USING (cycle_id) "
            "WHERE s.day = ? AND s.id > ? ORDER BY s.id",
            (day, self.seen),
        )
        for row in rows:
            self.seen = row["id"]
            symbol = row["symbol"]
            self.last[symbol] = {
                "cycle_id": row["cycle_id"],
                "ts": row["ts"],
                "signal": row["signal"],
                "confidence": row["confidence"],
                "skipped": row["skipped"],
                "error": row["error"],
            }
            price = price_in(row["reasons"])
            if price is not None:
                self.series.setdefault(symbol, []).append((row["ts"], price))

    def price(self, symbol: str) -> float | None:
        """The latest price stated (a skipped cycle states none: the one before)."""
        points = self.series.get(symbol)
        return points[-1][1] if points else None

    def sampled(self, most: int = SERIES_POINTS) -> dict[str, list[list[float]]]:
        """Each series at ``most`` points at most: evenly spaced, the first and last kept."""
        out: dict[str, list[list[float]]] = {}
        for symbol, points in self.series.items():
            step = max(1, -(-len(points) // most))  # ceil: never more than ``most``
            kept = points[::step]
            if kept[-1] is not points[-1]:
                kept = [*kept[: most - 1], points[-1]]
            out[symbol] = [[ts, price] for ts, price in kept]
        return out


def read_day_state(
    path: str | Path, day: str | None = None, prices: Prices | None = None
) -> Json | None:
    """``day_state`` of the journal at ``path`` (None: no journal yet, or no cycle)."""
    if not Path(path).exists():
        return None
    try:
        journal = Journal(path, readonly=True)
    except JournalError:
        return None
    try:
        return day_state(journal, day, prices)
    finally:
        journal.close()


def day_state(
    journal: Journal, day: str | None = None, prices: Prices | None = None
) -> Json | None:
    """Everything the dashboard shows of ``day`` (default: the latest with a cycle); None
    for a day without cycles. ``prices``: what an earlier read of the same journal kept."""
    day = day or journal.latest_day()
    if day is None:
        return None
    summary = journal.day_summary(day)
    if not summary["cycles"]["count"]:
        return None  # a day asked for that had no cycle
    db = journal.store.db
    prices = prices or Prices()
    prices.read(db, day)
    positions = summary["positions"]["open"] + summary["positions"]["closed"]
    start = summary["kill_switch"]["start_equity"]
    return {
        "day": day,
        "paused": journal.controls.paused(),
        "summary": summary,
        "symbols": _symbols(db, day, prices),
        "series": prices.sampled(),
        "marks": _marks(positions),
        "equity": _equity(db, day, positions, start),
        "decisions": _decisions(db, day),
        "working": _working(db, day),
        "brackets": _brackets(db, day),
    }


def _symbols(db: sqlite3.Connection, day: str, prices: Prices) -> list[Json]:
    """A line per symbol: its latest signal, its latest price (a skipped cycle states none:
    the one before), and its latest intent's decision."""
    decided = {
        r["symbol"]: r
        for r in db.execute(
            "SELECT i.symbol, d.accepted, d.rule, d.reason, d.quantity, d.ts FROM decisions d "
            "JOIN intents i USING (intent_id) WHERE d.day = ? ORDER BY d.ts, d.id",
            (day,),
        )
    }
    lines: list[Json] = []
    for symbol in sorted(prices.last):
        decision = decided.get(symbol)
        lines.append(
            {
                "symbol": symbol,
                **prices.last[symbol],
                "price": prices.price(symbol),
                "decision": None
                if decision is None
                else {
                    "accepted": bool(decision["accepted"]),
                    "rule": decision["rule"],
                    "reason": decision["reason"],
                    "quantity": decision["quantity"],
                    "ts": decision["ts"],
                },
            }
        )
    return lines


def _marks(positions: list[PositionLine]) -> list[Mark]:
    """Entries (filled, else only placed) and exits of the day's positions, oldest first."""
    marks: list[Mark] = []
    for p in positions:
        filled = p["entry_price"] is not None
        kind = "entry" if filled else "order"  # an order placed, not filled (yet, or ever)
        price = p["entry_price"] if filled else p["entry_limit"]
        marks.append((p["opened_ts"], p["symbol"], kind, price, p["contract"], ""))
        if filled and p["closed_ts"] is not None:  # a cancelled entry never held anything
            why = p["exit_reason"] or ""
            marks.append((p["closed_ts"], p["symbol"], "exit", p["exit_price"], p["contract"], why))
    return sorted(marks, key=lambda m: m[0])


def _equity(
    db: sqlite3.Connection, day: str, positions: list[PositionLine], start: float | None
) -> list[list[float]]:
    """The start equity plus the P&L realized by each cycle's end; the last point adds the
    open positions' P&L at their latest marks."""
    if start is None:
        return []
    realized = sorted(
        (p["closed_ts"], p["pnl"] or 0.0) for p in positions if p["closed_ts"] is not None
    )
    unrealized = sum(p["pnl"] or 0.0 for p in positions if p["closed_ts"] is None)
    curve: list[list[float]] = []
    done, total = 0, 0.0
    for (ts,) in db.execute(
        "SELECT COALESCE(ended_ts, started_ts) FROM cycles WHERE day = ? ORDER BY cycle_id",
        (day,),
    ):
        while done < len(realized) and realized[done][0] <= ts:
            total += realized[done][1]
            done += 1
        curve.append([ts, round(start + total, 2)])
    total += sum(pnl for _, pnl in realized[done:])
    if curve:
        curve[-1][1] = round(start + total + unrealized, 2)
    return curve


def _decisions(db: sqlite3.Connection, day: str) -> list[Json]:
    rows = db.execute(
        "SELECT d.ts, i.symbol, i.contract_symbol, i.expiry, i.strike, i.option_right, "
        "i.action, i.signal, d.accepted, d.quantity, d.rule, d.reason FROM decisions d "
        "JOIN intents i USING (intent_id) WHERE d.day = ? ORDER BY d.ts DESC, d.id DESC LIMIT ?",
        (day, DECISIONS_SHOWN),
    )
    return [
        {
            "ts": r["ts"],
            "symbol": r["symbol"],
            "contract": f"{r['expiry']} {r['strike']:g}{r['option_right']}",
            "action": r["action"],
            "signal": r["signal"],
            "accepted": bool(r["accepted"]),
            "quantity": r["quantity"],
            "rule": r["rule"],
            "reason": r["reason"],
        }
        for r in rows
    ]


def _working(db: sqlite3.Connection, day: str) -> list[Json]:
    """Live orders still working (any day: a GTC exit outlives its day) and paper entries."""
    marks = ", ".join("?" * len(WORKING))
    live = db.execute(
        "SELECT o.intent_id, o.mode, o.status, o.quantity, o.broker_order_id, o.details, "
        f"o.updated_ts, i.symbol, i.expiry, i.strike, i.option_right, i.action FROM orders o "
        f"JOIN intents i USING (intent_id) WHERE o.status IN ({marks}) ORDER BY o.id",
        WORKING,
    ).fetchall()
    paper = db.execute(
        "SELECT intent_id, quantity, entry_limit, opened_ts, symbol, expiry, strike, "
        "option_right FROM positions WHERE status = 'pending' ORDER BY opened_ts",
    ).fetchall()
    lines = [
        {
            "intent_id": r["intent_id"],
            "symbol": r["symbol"],
            "contract": f"{r['expiry']} {r['strike']:g}{r['option_right']}",
            "mode": r["mode"],
            "status": r["status"],
            "quantity": r["quantity"],
            "order_id": r["broker_order_id"],
            "details": r["details"],
            "ts": r["updated_ts"],
        }
        for r in live
    ]
    lines += [
        {
            "intent_id": r["intent_id"],
            "symbol": r["symbol"],
            "contract": f"{r['expiry']} {r['strike']:g}{r['option_right']}",
            "mode": "paper",
            "status": "entry waiting",
            "quantity": r["quantity"],
            "order_id": None,
            "details": f"BUY limit {r['entry_limit']}",
            "ts": r["opened_ts"],
        }
        for r in paper
    ]
    return lines


def _brackets(db: sqlite3.Connection, day: str) -> dict[str, list[Json]]:
    """Intent id -> its order rows (the entry and, live, the bracket's legs)."""
    out: dict[str, list[Json]] = {}
    for r in db.execute(
        "SELECT o.intent_id, o.mode, o.status, o.quantity, o.broker_order_id, o.details "
        "FROM orders o JOIN positions p USING (intent_id) "
        "WHERE p.status IN ('pending', 'open', 'short') OR p.opened_day = ? OR p.closed_day = ? "
        "ORDER BY o.id",
        (day, day),
    ):
        out.setdefault(r["intent_id"], []).append(
            {
                "mode": r["mode"],
                "status": r["status"],
                "quantity": r["quantity"],
                "order_id": r["broker_order_id"],
                "details": r["details"],
            }
        )
    return out
