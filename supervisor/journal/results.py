"""Results a trader reads, from any journal (live, paper, a replay's, a backtest's).

    run_results(journal, days) --reads cycles, filled positions, day states--> compute(...)
                               --pure--> RunResults: the run, each day, each symbol, the trades
                                         and the equity curve

A trade is a filled position closed on one of the days (a take-profit, a stop, the expiry
exit, a settlement, a flatten...); an entry never filled is no trade. Its P&L is the
journal's (``Position.realized_pnl``: net of commissions; paper books none). The journal
keeps a position's latest mark only, not its marks over time, so the equity curve steps at
each trade's exit (closed-trade equity) and ends, for the journal's latest day, with the
open positions at their last mark; the drawdown is measured on that curve.

Daily Sharpe and Sortino are over the days' net P&L (as a return on the day's start equity
when the journal has one for every day), annualised by sqrt(252), risk-free rate 0; fewer
than two days (or no spread) gives None, not a number made up.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from supervisor.journal.records import Position
from supervisor.journal.rows import position_from
from supervisor.journal.store import Journal

TRADING_DAYS = 252  # a year of sessions, to annualise the daily ratios


@dataclass(frozen=True)
class Trade:
    """One closed position: what it made, net of commissions, and when."""

    intent_id: str
    symbol: str
    contract: str
    quantity: int
    entry_ts: float
    entry_price: float
    exit_ts: float
    exit_price: float
    exit_reason: str
    day: str  # the day it was closed (the exchange's)
    gross_pnl: float
    commission: float
    net_pnl: float


@dataclass(frozen=True)
class Figures:
    """The numbers of a run, a day or a symbol (money in the account's currency)."""

    cycles: int
    trades: int
    wins: int
    win_rate: float | None  # wins / trades; None without trades
    gross_pnl: float
    commissions: float
    net_pnl: float
    max_drawdown: float  # largest fall of the equity curve from a peak, >= 0
    max_drawdown_pct: float | None  # of that peak's equity; None without a start equity
    sharpe_daily: float | None
    sortino_daily: float | None
    exposure: float | None  # share of cycles holding a filled position; None without cycles


@dataclass(frozen=True)
class DayResults:
    day: str
    figures: Figures


@dataclass(frozen=True)
class SymbolResults:
    symbol: str
    figures: Figures


@dataclass(frozen=True)
class RunResults:
    days: tuple[str, ...]
    start_equity: float | None  # the first day's, as the journal has it
    run: Figures
    by_day: tuple[DayResults, ...]
    by_symbol: tuple[SymbolResults, ...]
    equity: tuple[tuple[float, float], ...]  # (ts, equity): start, each exit, the end
    trades: tuple[Trade, ...]
    open_positions: int  # filled and still held at the end (their P&L is not in the trades)
    unrealized: float  # of those, at their last mark (in the curve's last point)
    # (day, its first cycle's ts, its last cycle's ts): where the sessions were, for a
    # picture that leaves the nights out
    sessions: tuple[tuple[str, float, float], ...] = ()

    def as_json(self) -> dict[str, object]:
        """A JSON-ready dict (money to cents, ratios to 4 places, no NaN)."""
        out = _rounded(asdict(self))
        assert isinstance(out, dict)
        return out


@dataclass(frozen=True)
class Held:
    """A filled position as the results read it: the closing day beside it (None: open)."""

    position: Position
    closed_day: str | None


def run_results(journal: Journal, days: Sequence[str] | None = None) -> RunResults:
    """The results over ``days`` (default: every day with a cycle) of ``journal``."""
    journal.store.flush()
    db = journal.store.db
    known = [str(r[0]) for r in db.execute("SELECT DISTINCT day FROM cycles ORDER BY day")]
    chosen = sorted(set(known) & set(days)) if days is not None else known
    marks = ", ".join("?" * len(chosen))
    cycles = [
        (str(r[0]), float(r[1]))
        for r in db.execute(
            f"SELECT day, started_ts FROM cycles WHERE day IN ({marks}) ORDER BY started_ts",
            chosen,
        )
    ]
    held = [
        Held(position_from(r), r["closed_day"])
        for r in db.execute(
            "SELECT * FROM positions WHERE filled_ts IS NOT NULL AND entry_price IS NOT NULL "
            "ORDER BY filled_ts, intent_id"
        )
    ]
    equity = {
        str(r[0]): float(r[1])
        for r in db.execute(
            f"SELECT day, start_equity FROM day_state WHERE day IN ({marks})", chosen
        )
    }
    at_end = bool(chosen) and chosen[-1] == known[-1]
    return compute(chosen, cycles, held, equity, marked_at_end=at_end)


def compute(
    days: Sequence[str],
    cycles: Sequence[tuple[str, float]],
    held: Sequence[Held],
    start_equity: Mapping[str, float],
    *,
    marked_at_end: bool = True,
) -> RunResults:
    """The results of ``days`` from the ``cycles`` (day, start ts), the filled positions
    and the days' start equities; ``marked_at_end``: the last day is the journal's latest,
    so the open positions' marks are today's and end the equity curve."""
    in_days = set(days)
    trades = tuple(
        sorted(
            (trade_of(h) for h in held if h.closed_day in in_days and not h.position.active),
            key=lambda t: (t.exit_ts, t.intent_id),
        )
    )
    still = [h.position for h in held if h.position.active and h.position.status == "open"]
    unrealized = sum((p.unrealized_pnl for p in still), 0.0) if marked_at_end else 0.0
    base = start_equity.get(days[0]) if days else None
    ts = [t for _, t in cycles]
    curve = _curve(trades, base or 0.0, ts, unrealized)
    intervals = [_interval(h) for h in held]
    returns_on = dict(start_equity) if all(start_equity.get(d) for d in days) else None
    run = _figures(days, ts, trades, intervals, curve, base, returns_on)
    day_cycles, day_trades = _by_day(days, cycles, trades)
    # a day's figures: its own cycles and trades, its curve from 0
    by_day = tuple(DayResults(d, _part([d], day_cycles[d], day_trades[d], intervals)) for d in days)
    symbols = sorted({t.symbol for t in trades} | {h.position.symbol for h in held if _in(h, ts)})
    by_symbol = tuple(
        SymbolResults(
            s,
            _part(
                days, ts, [t for t in trades if t.symbol == s], [i for i in intervals if i[0] == s]
            ),
        )
        for s in symbols
    )
    return RunResults(
        tuple(days),
        base,
        run,
        by_day,
        by_symbol,
        tuple(curve),
        trades,
        len(still),
        unrealized,
        tuple((d, day_cycles[d][0], day_cycles[d][-1]) for d in days if day_cycles[d]),
    )


def _by_day(
    days: Sequence[str], cycles: Sequence[tuple[str, float]], trades: Sequence[Trade]
) -> tuple[dict[str, list[float]], dict[str, list[Trade]]]:
    """Each day's cycle times and trades."""
    day_cycles: dict[str, list[float]] = {d: [] for d in days}
    for d, t in cycles:
        day_cycles.setdefault(d, []).append(t)
    day_trades: dict[str, list[Trade]] = {d: [] for d in days}
    for trade in trades:
        day_trades[trade.day].append(trade)
    return day_cycles, day_trades


def trade_of(h: Held) -> Trade:
    """A closed position as a trade. Live positions sold in parts count the sold contracts
    and their share of the entry's commission (as ``realized_pnl`` does)."""
    p = h.position
    assert p.entry_price is not None and p.filled_ts is not None
    net = p.realized_pnl
    if p.exited is not None and p.quantity:
        commission = p.exit_commission + (p.commission - p.exit_commission) * p.exited / p.quantity
    else:
        commission = p.commission
    return Trade(
        p.intent_id,
        p.symbol,
        p.contract.key,
        p.quantity if p.exited is None else p.exited,
        p.filled_ts,
        p.entry_price,
        p.closed_ts if p.closed_ts is not None else p.filled_ts,
        p.exit_price if p.exit_price is not None else math.nan,
        p.exit_reason or "",
        h.closed_day or "",
        net + commission,
        commission,
        net,
    )


def _part(
    days: Sequence[str],
    ts: Sequence[float],
    trades: Sequence[Trade],
    intervals: Sequence[tuple[str, float, float]],
) -> Figures:
    """The figures of one day or one symbol (its cycles ``ts``, its trades, the holdings
    that count): its curve starts at 0 (no equity share)."""
    if ts:  # only the holdings that overlap these cycles
        intervals = [i for i in intervals if i[1] <= ts[-1] and i[2] > ts[0]]
    return _figures(days, ts, trades, intervals, _curve(trades, 0.0, ts, 0.0), None, None)


def _figures(
    days: Sequence[str],
    ts: Sequence[float],
    trades: Sequence[Trade],
    intervals: Sequence[tuple[str, float, float]],
    curve: Sequence[tuple[float, float]],
    base: float | None,
    returns_on: Mapping[str, float] | None,
) -> Figures:
    wins = sum(1 for t in trades if t.net_pnl > 0)
    daily = {d: 0.0 for d in days}
    for t in trades:
        daily[t.day] = daily.get(t.day, 0.0) + t.net_pnl
    series = [daily[d] / returns_on[d] if returns_on else daily[d] for d in days]
    drawdown, peak = max_drawdown([e for _, e in curve])
    return Figures(
        cycles=len(ts),
        trades=len(trades),
        wins=wins,
        win_rate=wins / len(trades) if trades else None,
        gross_pnl=sum((t.gross_pnl for t in trades), 0.0),
        commissions=sum((t.commission for t in trades), 0.0),
        net_pnl=sum((t.net_pnl for t in trades), 0.0),
        max_drawdown=drawdown,
        max_drawdown_pct=drawdown / peak if base and peak > 0 else None,
        sharpe_daily=sharpe(series),
        sortino_daily=sortino(series),
        exposure=exposure(ts, [(a, b) for _, a, b in intervals]),
    )


def _curve(
    trades: Iterable[Trade], base: float, ts: Sequence[float], unrealized: float
) -> list[tuple[float, float]]:
    """(ts, equity): the start, after each trade's exit, and the end with the open
    positions' unrealized P&L."""
    ordered = sorted(trades, key=lambda t: t.exit_ts)
    first = min([*ts[:1], *(t.exit_ts for t in ordered[:1])], default=None)
    if first is None:
        return []
    curve = [(first, base)]
    equity = base
    for t in ordered:
        equity += t.net_pnl
        curve.append((t.exit_ts, equity))
    last = max(ts[-1] if ts else first, curve[-1][0])
    if unrealized or last > curve[-1][0]:
        curve.append((last, equity + unrealized))
    return curve


def max_drawdown(equity: Sequence[float]) -> tuple[float, float]:
    """(largest peak-to-trough fall, the peak it fell from); (0, first) when none."""
    worst, worst_peak = 0.0, equity[0] if equity else 0.0
    peak = -math.inf
    for e in equity:
        peak = max(peak, e)
        if peak - e > worst:
            worst, worst_peak = peak - e, peak
    return worst, worst_peak


def sharpe(daily: Sequence[float]) -> float | None:
    """Mean over sample standard deviation of the daily figures, x sqrt(252)."""
    if len(daily) < 2:
        return None
    spread = statistics.stdev(daily)
    return statistics.fmean(daily) / spread * math.sqrt(TRADING_DAYS) if spread > 0 else None


def sortino(daily: Sequence[float]) -> float | None:
    """Mean over the downside deviation (root mean square of the losses, gains as 0),
    x sqrt(252); None with fewer than two days or no losing day."""
    if len(daily) < 2:
        return None
    downside = math.sqrt(statistics.fmean([min(0.0, x) ** 2 for x in daily]))
    return statistics.fmean(daily) / downside * math.sqrt(TRADING_DAYS) if downside > 0 else None


def exposure(ts: Sequence[float], spans: Sequence[tuple[float, float]]) -> float | None:
    """Share of the cycles (start times ``ts``, sorted) inside a span [filled, closed)."""
    if not ts:
        return None
    covered: set[int] = set()
    for start, end in spans:
        covered.update(range(bisect.bisect_left(ts, start), bisect.bisect_left(ts, end)))
    return len(covered) / len(ts)


def _interval(h: Held) -> tuple[str, float, float]:
    """(symbol, filled, closed) of a position; one still held runs on."""
    p = h.position
    assert p.filled_ts is not None
    return p.symbol, p.filled_ts, p.closed_ts if p.closed_ts is not None else math.inf


def _in(h: Held, ts: Sequence[float]) -> bool:
    """Whether the position was held during one of the cycles."""
    _, start, end = _interval(h)
    return bool(ts) and bisect.bisect_left(ts, start) < bisect.bisect_left(ts, end)


_MONEY = {"gross_pnl", "commissions", "net_pnl", "max_drawdown", "start_equity", "unrealized"}
_MONEY |= {"commission"}


def _rounded(x: object, key: str = "") -> object:
    """JSON-ready: money to cents, other floats to 4 places (ts kept whole), NaN as None."""
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        return round(x, 2) if key in _MONEY else x if key.endswith("ts") else round(x, 4)
    if isinstance(x, dict):
        return {k: _rounded(v, k) for k, v in x.items()}
    if isinstance(x, list | tuple):
        if key == "equity":
            return [[t, round(e, 2)] for t, e in x]
        return [_rounded(v, key) for v in x]
    return x
