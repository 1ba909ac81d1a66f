"""The optional files of a backtest's data folder: option quotes and an IV series.

    <SYMBOL>_options.csv | .parquet  ts, expiry, strike, right, bid, ask [, iv, delta]: a
        vendor's export of the options' quotes, in time order (several rows per instant);
        a contract's quote is its latest row at or before the clock on the same trading day
    IV.csv  date, iv [, symbol]: the implied volatility the model prices options at from that
        day on (a row without a symbol is every symbol's); iv as a fraction (0.18, not 18)

Checked like the bars (files.py names the file, the line and the problem).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from common.calendar import ExchangeCalendar, trading_day
from common.messages import Right
from supervisor.backtest.files import (
    Problem,
    Problems,
    day_of,
    missing,
    number,
    rows_of,
    table,
    timestamp,
)

OPTION_COLUMNS = ("ts", "expiry", "strike", "right", "bid", "ask", "iv", "delta")
REQUIRED = OPTION_COLUMNS[:6]
RIGHTS = {"C": Right.CALL, "CALL": Right.CALL, "P": Right.PUT, "PUT": Right.PUT}
NAN = float("nan")

ContractKey = tuple[str, float, Right]  # (expiry YYYYMMDD, strike, right)


@dataclass(frozen=True)
class RowQuote:
    ts: float
    bid: float
    ask: float
    iv: float  # NaN when the file has none
    delta: float


@dataclass
class _Series:
    ts: array[float] = field(default_factory=lambda: array("d"))
    rows: list[RowQuote] = field(default_factory=list)


@dataclass
class OptionRows:
    """One symbol's quoted contracts: each one's rows in time order, and what each day lists."""

    symbol: str
    series: dict[ContractKey, _Series] = field(default_factory=dict)
    listed: dict[date, set[tuple[str, float]]] = field(default_factory=dict)  # (expiry, strike)
    tz: str = "America/New_York"

    def add(self, key: ContractKey, row: RowQuote) -> None:
        series = self.series.setdefault(key, _Series())
        series.ts.append(row.ts)
        series.rows.append(row)
        self.listed.setdefault(trading_day(row.ts, self.tz), set()).add((key[0], key[1]))

    def at(self, key: ContractKey, now: float) -> RowQuote | None:
        """The contract's latest row at or before ``now`` on ``now``'s trading day."""
        series = self.series.get(key)
        if series is None:
            return None
        i = bisect_right(series.ts, now) - 1
        if i < 0 or trading_day(series.ts[i], self.tz) != trading_day(now, self.tz):
            return None
        return series.rows[i]


def load_options(
    path: Path, calendar: ExchangeCalendar, problems: list[Problem]
) -> OptionRows | None:
    said = Problems(path)
    read = table(path, said)
    found = OptionRows(path.stem.removesuffix("_options"), tz=calendar.tz)
    if read is not None and not missing(read, REQUIRED, said):
        last = None
        for where, values in rows_of(read, OPTION_COLUMNS):
            if said.full():
                break
            try:
                key, row = _option_row(values)
            except ValueError as exc:
                said.add(where, str(exc))
                continue
            session = calendar.session(trading_day(row.ts, calendar.tz))
            if session is None or not session.contains(row.ts):
                said.add(where, f"ts {values[0]!s} is outside the regular sessions")
            elif last is not None and row.ts < last:
                said.add(where, f"not in time order: ts {values[0]!s} after a later row")
            else:
                found.add(key, row)
                last = row.ts
    if said.found or read is None:
        problems.extend(said.all())
        return None
    return found


def _option_row(values: Sequence[object]) -> tuple[ContractKey, RowQuote]:
    ts = timestamp(values[0]).timestamp()
    expiry = day_of("expiry", values[1]).strftime("%Y%m%d")
    strike = number("strike", values[2])
    right = RIGHTS.get(str(values[3] or "").strip().upper())
    if right is None:
        raise ValueError(f"right {values[3]!r} is not C, P, CALL or PUT")
    bid, ask = number("bid", values[4]), number("ask", values[5])
    iv = number("iv", values[6], optional=True)
    delta = number("delta", values[7], optional=True)
    assert strike is not None and bid is not None and ask is not None
    if strike <= 0 or bid < 0 or ask < 0:
        raise ValueError("strike must be > 0, bid and ask >= 0")
    if ask < bid:
        raise ValueError(f"crossed: bid {bid:g} above ask {ask:g}")
    quote = RowQuote(ts, bid, ask, NAN if iv is None else iv, NAN if delta is None else delta)
    return (expiry, strike, right), quote


@dataclass(frozen=True)
class IvSeries:
    """IV by day, per symbol ("" for every symbol's): the latest row at or before a day."""

    days: dict[str, tuple[tuple[date, ...], tuple[float, ...]]]

    def at(self, symbol: str, day: date) -> float | None:
        for key in (symbol, ""):
            days, ivs = self.days.get(key, ((), ()))
            i = bisect_right(days, day) - 1
            if i >= 0:
                return ivs[i]
        return None


def load_iv(path: Path, problems: list[Problem]) -> IvSeries | None:
    said = Problems(path)
    read = table(path, said)
    days: dict[str, list[tuple[date, float]]] = {}
    if read is not None and not missing(read, ("date", "iv"), said):
        for where, (when, iv_text, symbol) in rows_of(read, ("date", "iv", "symbol")):
            try:
                day, iv = day_of("date", when), number("iv", iv_text)
            except ValueError as exc:
                said.add(where, str(exc))
                continue
            assert iv is not None
            if not 0 < iv <= 5:
                said.add(where, f"iv {iv:g} is not a fraction in (0, 5] (0.18 for 18 %)")
                continue
            name = str(symbol or "").strip().upper()
            days.setdefault("" if name == "*" else name, []).append((day, iv))
    if said.found or read is None:
        problems.extend(said.all())
        return None
    ordered = {k: sorted(v) for k, v in days.items()}
    return IvSeries(
        {k: (tuple(d for d, _ in v), tuple(iv for _, iv in v)) for k, v in ordered.items()}
    )
