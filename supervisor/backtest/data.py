"""A backtest's data folder: loaded, checked, and nothing run until all of it is right.

    DIR/<SYMBOL>.csv | .parquet           1-minute bars of the underlying: ts (ISO 8601 with
                                          its UTC offset, the bar's start), open, high, low,
                                          close, volume; regular sessions only
    DIR/<SYMBOL>_options.csv | .parquet   optional quotes: ts, expiry, strike, right, bid, ask
                                          [, iv, delta] (quotes_data.py)
    DIR/IV.csv                            optional implied volatility by day: date, iv
                                          [, symbol] (quotes_data.py)

    load(dir, symbols, first, last, calendar) -> DataSet, or DataError naming every file,
    line and problem: not UTF-8, a missing column, a value that is no number, a timestamp
    without an offset, rows out of order, a bar outside the exchange calendar's regular
    session (a holiday, after an early close), a gap inside a session (a minute missing, a
    session begun late or ended early), a session of the range with no bars at all.

    cycle_times(data, first, last, calendar)  one cycle per bar minute of the range's sessions

Sessions come from the exchange calendar (common/calendar.py: NYSE's holidays and early
closes), never from the data: a file that disagrees with it is wrong, not the calendar.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from common.calendar import ExchangeCalendar, Session, trading_day, zone
from supervisor.backtest.files import (
    DataError,
    Problem,
    Problems,
    missing,
    number,
    rows_of,
    table,
    timestamp,
)
from supervisor.backtest.quotes_data import IvSeries, OptionRows, load_iv, load_options

BAR_S = 60
BAR_COLUMNS = ("ts", "open", "high", "low", "close", "volume")
SUFFIXES = (".csv", ".parquet")
OPTIONS = "_options"


@dataclass(frozen=True)
class MinuteBars:
    """One symbol's 1-minute bars, oldest first, as columns (epoch seconds of each start)."""

    symbol: str
    ts: array[float]
    open: array[float]
    high: array[float]
    low: array[float]
    close: array[float]
    volume: array[float]

    def at_or_before(self, ts: float) -> int:
        """The index of the last bar starting at or before ``ts`` (-1: none)."""
        return bisect_right(self.ts, ts) - 1


@dataclass(frozen=True)
class DataSet:
    dir: Path
    bars: Mapping[str, MinuteBars]
    options: Mapping[str, OptionRows]  # the symbols with a quotes file
    iv: IvSeries | None  # DIR/IV.csv, if there

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self.bars)


def symbols_in(folder: Path) -> list[str]:
    """The symbols with a bars file in ``folder``, sorted."""
    found = {
        p.stem
        for p in folder.iterdir()
        if p.suffix in SUFFIXES and not p.stem.endswith(OPTIONS) and p.stem != "IV"
    }
    return sorted(found)


def file_of(folder: Path, stem: str) -> Path | None | list[Path]:
    """``stem``.csv or .parquet (None: neither; both: the list, an ambiguity)."""
    there = [folder / f"{stem}{s}" for s in SUFFIXES if (folder / f"{stem}{s}").is_file()]
    return there if len(there) > 1 else there[0] if there else None


def load(
    folder: Path, symbols: Sequence[str], first: date, last: date, calendar: ExchangeCalendar
) -> DataSet:
    """Every file the run needs, checked; DataError with every problem found."""
    if not folder.is_dir():
        raise DataError([Problem(folder, "", "no such folder")])
    problems: list[Problem] = []
    bars: dict[str, MinuteBars] = {}
    options: dict[str, OptionRows] = {}
    for symbol in symbols:
        path = _one(folder, symbol, problems, needed=True)
        if path is not None:
            found = load_bars(path, symbol, first, last, calendar, problems)
            if found is not None:
                bars[symbol] = found
        quotes = _one(folder, symbol + OPTIONS, problems, needed=False)
        if quotes is not None:
            rows = load_options(quotes, calendar, problems)
            if rows is not None:
                options[symbol] = rows
    iv = load_iv(folder / "IV.csv", problems) if (folder / "IV.csv").is_file() else None
    if problems:
        raise DataError(problems)
    return DataSet(folder, bars, options, iv)


def _one(folder: Path, stem: str, problems: list[Problem], needed: bool) -> Path | None:
    found = file_of(folder, stem)
    if isinstance(found, list):
        problems.append(Problem(folder, "", f"both {stem}.csv and {stem}.parquet: keep one"))
        return None
    if found is None and needed:
        problems.append(Problem(folder / f"{stem}.csv", "", "no such file (nor .parquet)"))
    return found


def load_bars(
    path: Path,
    symbol: str,
    first: date,
    last: date,
    calendar: ExchangeCalendar,
    problems: list[Problem],
) -> MinuteBars | None:
    """The file's bars, checked row by row and session by session (None: problems added)."""
    said = Problems(path)
    read = table(path, said)
    if read is not None and not missing(read, BAR_COLUMNS, said):
        cols = [array("d") for _ in BAR_COLUMNS]
        check = _Sessions(calendar, said)
        for where, values in rows_of(read, BAR_COLUMNS):
            if said.full():
                break
            row = _bar(where, values, said)
            if row is None:
                check.excused = True  # a row said bad is not also a missing minute
            elif check.bar(where, row[0]):
                for col, value in zip(cols, row, strict=True):
                    col.append(value)
        check.end()
        for day in _range_sessions(calendar, first, last):
            if day not in check.days:
                said.add("", f"no bars for the session of {day} (inside --from .. --to)")
        if not said.found:
            return MinuteBars(symbol, *cols)
    problems.extend(said.all())
    return None


def _bar(where: str, values: list[object], said: Problems) -> tuple[float, ...] | None:
    try:
        ts = timestamp(values[0]).timestamp()
        o, h, low, c, v = (number(n, x) for n, x in zip(BAR_COLUMNS[1:], values[1:], strict=True))
    except ValueError as exc:
        said.add(where, str(exc))
        return None
    assert o is not None and h is not None and low is not None and c is not None and v is not None
    if min(o, h, low, c) <= 0 or v < 0:
        said.add(where, "prices must be > 0 and volume >= 0")
        return None
    if h < max(o, c, low) or low > min(o, c):
        said.add(where, f"high {h:g} / low {low:g} do not hold open {o:g} and close {c:g}")
        return None
    return ts, o, h, low, c, v


class _Sessions:
    """The order and the sessions of one file's bars, one bar at a time."""

    def __init__(self, calendar: ExchangeCalendar, said: Problems) -> None:
        self.calendar, self.said = calendar, said
        self.days: set[date] = set()
        self.last: float | None = None
        self.session: Session | None = None
        self.where = ""
        # a row dropped for a bad value since the last bar kept: the gap it leaves is not
        # said too (its minute may be there, its time unreadable; the file is refused anyway)
        self.excused = False

    def bar(self, where: str, ts: float) -> bool:
        """Whether the bar at ``ts`` can be kept (a problem said if not)."""
        if self.last is not None and ts <= self.last:
            self.said.add(where, f"not in time order: {_text(ts)} after {_text(self.last)}")
            return False
        if ts % BAR_S:
            self.said.add(where, f"{_text(ts)} is not the start of a minute")
            return False
        day = trading_day(ts, self.calendar.tz)
        session = self.calendar.session(day)
        if session is None:
            self.said.add(where, f"{_text(ts)}: {day} has no regular session (holiday, weekend)")
            return False
        if not session.contains(ts):
            self.said.add(
                where,
                f"{_text(ts)} is outside the regular session of {day} "
                f"({_hm(session.open_ts)}-{_hm(session.close_ts)})",
            )
            return False
        if session != self.session:
            self.end()
            self.session = session
            if ts != session.open_ts and not self.excused:
                self.said.add(
                    where,
                    f"gap: the session of {day} opens at "
                    f"{_hm(session.open_ts)}, its first bar is at {_hm(ts)}",
                )
        elif self.last is not None and ts - self.last > BAR_S and not self.excused:
            self.said.add(
                where,
                f"gap: no bars from {_hm(self.last + BAR_S)} to {_hm(ts - BAR_S)} "
                f"inside the session of {day}",
            )
        self.days.add(day)
        self.last, self.where, self.excused = ts, where, False
        return True

    def end(self) -> None:
        """The session so far ended: its last bar must be the one before its close."""
        if self.session is None or self.last is None:
            return
        if self.last != self.session.close_ts - BAR_S and not self.excused:
            self.said.add(
                self.where,
                f"gap: the session of {self.session.day} closes at "
                f"{_hm(self.session.close_ts)}, its last bar is at {_hm(self.last)}",
            )
        self.session = None


def _text(ts: float) -> str:
    """``ts`` as the exchange's clock reads it, offset included."""
    return datetime.fromtimestamp(ts, zone()).isoformat()


def _hm(ts: float) -> str:
    return datetime.fromtimestamp(ts, zone()).strftime("%H:%M")


def _range_sessions(calendar: ExchangeCalendar, first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        if calendar.session(day) is not None:
            yield day
        day += timedelta(days=1)


def cycle_times(calendar: ExchangeCalendar, first: date, last: date) -> Iterator[float]:
    """One cycle at the start of every bar minute of the range's regular sessions (the
    bar's open is then the price: nothing of the minute to come is seen)."""
    for day in _range_sessions(calendar, first, last):
        session = calendar.session(day)
        assert session is not None
        ts = session.open_ts
        while ts < session.close_ts:
            yield ts
            ts += BAR_S


def count_cycles(calendar: ExchangeCalendar, first: date, last: date) -> int:
    total = 0
    for day in _range_sessions(calendar, first, last):
        session = calendar.session(day)
        assert session is not None
        total += int((session.close_ts - session.open_ts) // BAR_S)
    return total
