"""Bars answers stored once per bar, not once per answer (and read back whole).

A cycle asks every symbol for its last few hundred 1-minute bars; from one cycle to the next
all but the newest one or two are the same. Stored as answered, they are most of a
recording (measured: 2.7 KB a symbol-cycle, ~1 MB a symbol-day at 100 symbols, more at
1,000 where a row group holds fewer repeats). So each bars answer is a row of its request
and range (``n_bars``, ``first_bar_ts``, ``last_bar_ts``), and each bar *version* (a bar not
recorded before for that request, or whose values changed) a row of ``bar_values``, stamped
with ``answer``, the bars row that first carried it. An answer is read back as the latest
version of every bar of its request in its range, carried by it or an earlier answer.

The encoder checks that reading back gives exactly the answer (a bar it once gave and now
leaves out inside the range would come back); when it would not, the row carries its bars
whole, as lists, and nothing is derived for it.

A run of many days must not keep every bar it ever recorded: per request the encoder forgets
all but its newest bars, twice as many as the widest answer of that request held (a cycle's
answer ends at the newest bar: none reaches back that far), and remembers the first bar it
kept, its ``horizon``; a series is at most three times that widest answer. Above it the
encoder knows exactly what a reader derives, so the check above stays exact; an answer that
does reach below it (a wider request than any before) carries its bars whole.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import pyarrow as pa

from common.messages import Bars

BarsKey = tuple[str, int, bool]  # symbol, bar size in minutes, regular hours only
COLUMNS = ("bar_ts", "open", "high", "low", "close", "volume")
VALUES = COLUMNS[1:]


def float_lists(values: Sequence[array[float] | Sequence[float] | None]) -> pa.Array:
    """A list<float64> column from each row's ``array('d')`` (copied as bytes: no Python
    float is made per value), a plain sequence, or None (null)."""
    flat: array[float] = array("d")
    offsets = [0]
    for value in values:
        if value is not None:
            flat.extend(value if isinstance(value, array) else array("d", value))
        offsets.append(len(flat))
    numbers = pa.Array.from_buffers(pa.float64(), len(flat), [None, pa.py_buffer(flat)])
    nulls = pa.array([value is None for value in values], pa.bool_())
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), numbers, mask=nulls)


@dataclass
class Series:
    """One request's bars known so far, sorted by bar start: six parallel columns."""

    columns: tuple[array[float], ...] = field(
        default_factory=lambda: tuple(array("d") for _ in COLUMNS)
    )
    # bars before this were forgotten (the encoder's side only): below it a reader may hold
    # bars the series no longer does
    horizon: float = float("-inf")
    widest: int = 0  # the most bars an answer of this request held so far

    @property
    def ts(self) -> array[float]:
        return self.columns[0]

    def put(self, bar: Sequence[float]) -> None:
        """A bar version: replaces the one of the same start, else goes in its place."""
        ts = self.ts
        i = bisect_left(ts, bar[0])
        if i < len(ts) and ts[i] == bar[0]:
            for column, value in zip(self.columns[1:], bar[1:], strict=True):
                column[i] = value
            return
        for column, value in zip(self.columns, bar, strict=True):
            column.insert(i, value)  # the end, nearly always: appending

    def bounds(self, first: float, last: float) -> tuple[int, int]:
        return bisect_left(self.ts, first), bisect_right(self.ts, last)

    def span(self, first: float, last: float) -> tuple[array[float], ...]:
        lo, hi = self.bounds(first, last)
        return tuple(column[lo:hi] for column in self.columns)

    def forget_old(self, n: int) -> None:
        """An answer of ``n`` bars was encoded: past three times the widest answer's bars,
        the oldest dropped down to twice that (each bar moved a bounded number of times)."""
        self.widest = max(self.widest, n)
        cut = len(self.ts) - 2 * self.widest
        if len(self.ts) > 3 * self.widest:
            self.horizon = self.ts[cut]
            for column in self.columns:
                del column[:cut]

    def replace_tail(self, start: int, tail: tuple[array[float], ...]) -> None:
        """Everything from ``start`` on replaced by ``tail`` (bytes copied, no floats)."""
        for column, values in zip(self.columns, tail, strict=True):
            del column[start:]
            column.extend(values)


Columns: TypeAlias = "tuple[array[float], ...]"  # noqa: UP040 - array is not generic at runtime


def _columns(bars: Bars) -> Columns:
    return (bars.ts, bars.open, bars.high, bars.low, bars.close, bars.volume)


def _empty() -> Columns:
    return tuple(array("d") for _ in COLUMNS)


class BarsEncoder:
    """The writer's side: per request, the bars recorded so far that an answer can still
    reach (bounded: see the module's docstring)."""

    def __init__(self) -> None:
        self.known: dict[BarsKey, Series] = {}

    def encode(self, key: BarsKey, bars: Bars) -> tuple[dict[str, object], Columns]:
        """The bars row's own columns, and the new bar versions as columns (rows of
        bar_values)."""
        n = len(bars)
        if n == 0:
            return {"n_bars": 0}, _empty()
        series = self.known.setdefault(key, Series())
        columns = _columns(bars)
        first, last = bars.ts[0], bars.ts[n - 1]
        lo, hi = series.bounds(first, last)
        keep = _appended(tuple(c[lo:hi] for c in series.columns), columns)
        if keep is not None and hi == len(series.ts):  # the usual: new bars at the end
            new = tuple(c[keep:] for c in columns)
            series.replace_tail(lo + keep, new)
        else:  # a bar in the middle changed, the answer reaches further back, or ends early
            new = _changed(series.span(first, last), columns)
            for bar in zip(*new, strict=True):
                series.put(bar)
        row: dict[str, object] = {"n_bars": n, "first_bar_ts": first, "last_bar_ts": last}
        # a bar once given, left out now; or below the horizon, where a reader may hold a bar
        # forgotten here
        if first < series.horizon or series.span(first, last)[0] != bars.ts:
            row.update({name: array("d", c) for name, c in zip(COLUMNS, columns, strict=True)})
        series.forget_old(n)
        return row, new


def _appended(known: Columns, columns: Columns) -> int | None:
    """How many of the answer's first bars are ``known`` as they are, when the rest are new
    at its end (the last known one perhaps revised: the usual answer a cycle later); None
    when it is not so simple."""
    k = len(known[0])
    for keep in (k, k - 1):
        if 0 <= keep <= len(columns[0]) and all(
            c[:keep] == kc[:keep] for c, kc in zip(columns, known, strict=True)
        ):
            return keep
    return None


def _changed(known: Columns, columns: Columns) -> Columns:
    """The bars of ``columns`` that ``known`` lacks or holds with other values."""
    position = {ts: i for i, ts in enumerate(known[0])}
    changed = _empty()
    for j in range(len(columns[0])):
        bar = tuple(column[j] for column in columns)
        i = position.get(bar[0])
        if i is None or tuple(column[i] for column in known) != bar:
            for column, value in zip(changed, bar, strict=True):
                column.append(value)
    return changed


def expand(bars: pa.Table, values: pa.Table) -> pa.Table:
    """``bars`` with every row's lists filled in from ``values`` (rows that carry their
    lists, and failed requests, as they are)."""
    versions: dict[BarsKey, list[tuple[int, tuple[float, ...]]]] = {}
    value_columns = [values.column(n).to_pylist() for n in ("answer", *COLUMNS)]
    keys = zip(
        *(values.column(n).to_pylist() for n in ("symbol", "bar_minutes", "rth")), strict=True
    )
    for (symbol, size, rth), answer, *bar in zip(keys, *value_columns, strict=True):
        versions.setdefault((symbol, size, rth), []).append((answer, tuple(bar)))
    series: dict[BarsKey, Series] = {}
    taken: dict[BarsKey, int] = {}
    out: dict[str, list[array[float] | None]] = {name: [] for name in COLUMNS}
    lists = [bars.column(n).to_pylist() for n in COLUMNS]  # null where derived
    rows = zip(
        *(bars.column(n).to_pylist() for n in ("symbol", "bar_minutes", "rth", "n_bars")),
        bars.column("first_bar_ts").to_pylist(),
        bars.column("last_bar_ts").to_pylist(),
        bars.column("error").to_pylist(),
        strict=True,
    )
    for i, (symbol, size, rth, n, first, last, error) in enumerate(rows):
        key = (symbol, size, rth)
        own = series.setdefault(key, Series())
        pending = versions.get(key, [])
        while taken.get(key, 0) < len(pending) and pending[taken.get(key, 0)][0] <= i:
            own.put(pending[taken.get(key, 0)][1])
            taken[key] = taken.get(key, 0) + 1
        if error is not None or lists[0][i] is not None:
            for name, column in zip(COLUMNS, lists, strict=True):
                value = column[i]
                out[name].append(None if value is None else array("d", value))
            continue
        span = own.span(first, last) if n else tuple(array("d") for _ in COLUMNS)
        if len(span[0]) != (n or 0):
            # an Arrow error, as an unreadable file's: the reader says which recording
            raise pa.ArrowInvalid(
                f"bars row {i} ({symbol}): {n} bars answered, {len(span[0])} found"
            )
        for name, column in zip(COLUMNS, span, strict=True):
            out[name].append(column)
    filled = bars
    for name in COLUMNS:
        index = filled.schema.get_field_index(name)
        filled = filled.set_column(index, name, float_lists(out[name]))
    return filled
