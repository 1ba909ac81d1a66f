"""A day's chart as the journal has it: each underlying's price over the cycles, and the
entries and exits of our options on it (supervisor/observe/results_plot.py draws it).

The journal keeps no quote table: the underlying's price a cycle saw is the one its signal
names in its reasons (the scalp strategy's "close 671.45 < vwap 675.68", else the strike
step's "atm 671 for price 671.45"), at the cycle's start. A symbol whose signals name no
price has no line, only its markers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from supervisor.journal.rows import position_from
from supervisor.journal.store import Journal

# the reasons that carry the underlying's price (workers/signals.py, workers/strikes.py)
PRICE_REASONS = (
    re.compile(r"^close (-?[\d.]+(?:e-?\d+)?) [<>=] vwap "),
    re.compile(r"^atm \S+ for price (-?[\d.]+(?:e-?\d+)?)$"),
)


@dataclass(frozen=True)
class Marker:
    """An entry (the fill of our option) or an exit, at the moment it happened."""

    symbol: str
    ts: float
    kind: str  # "entry" or "exit"
    contract: str
    price: float  # the option's price
    label: str  # what the chart writes beside it
    pnl: float | None = None  # an exit's realized P&L


@dataclass(frozen=True)
class DayChart:
    day: str
    prices: dict[str, tuple[tuple[float, float], ...]]  # symbol -> (ts, underlying price)
    markers: tuple[Marker, ...]


def price_in(reasons: list[str]) -> float | None:
    """The underlying's price a signal's reasons name, None when none does."""
    for pattern in PRICE_REASONS:
        for reason in reasons:
            if isinstance(reason, str) and (m := pattern.match(reason)):
                return float(m.group(1))
    return None


def day_chart(journal: Journal, day: str) -> DayChart:
    """The prices and markers of ``day`` (the exchange's day the journal counts in)."""
    journal.store.flush()
    db = journal.store.db
    prices: dict[str, list[tuple[float, float]]] = {}
    for r in db.execute(
        "SELECT c.started_ts, s.symbol, s.reasons FROM signals s JOIN cycles c "
        "USING (cycle_id) WHERE s.day = ? AND s.error IS NULL ORDER BY c.started_ts, s.id",
        (day,),
    ):
        price = price_in(json.loads(r["reasons"] or "[]"))
        if price is not None:
            prices.setdefault(r["symbol"], []).append((float(r["started_ts"]), price))
    markers: list[Marker] = []
    for r in db.execute(
        "SELECT * FROM positions WHERE filled_ts IS NOT NULL AND entry_price IS NOT NULL "
        "AND (opened_day = ? OR closed_day = ?) ORDER BY filled_ts, intent_id",
        (day, day),
    ):
        p = position_from(r)
        assert p.entry_price is not None and p.filled_ts is not None
        if r["opened_day"] == day:
            c = p.contract
            label = f"buy {p.quantity} {c.strike:g}{c.right.value} at {p.entry_price:.2f}"
            markers.append(
                Marker(p.symbol, p.filled_ts, "entry", p.contract.key, p.entry_price, label)
            )
        if r["closed_day"] == day and not p.active and p.exit_price is not None:
            label = f"{p.exit_reason} {p.exit_price:.2f} ({p.realized_pnl:+,.0f})"
            ts = p.closed_ts if p.closed_ts is not None else p.filled_ts
            markers.append(
                Marker(p.symbol, ts, "exit", p.contract.key, p.exit_price, label, p.realized_pnl)
            )
    return DayChart(
        day, {s: tuple(points) for s, points in prices.items()}, tuple(sorted(markers, key=_when))
    )


def _when(m: Marker) -> tuple[float, str]:
    return m.ts, m.symbol
