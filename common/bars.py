"""Small helpers over columnar Bars: build from rows, take the tail, resample to N minutes."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from itertools import groupby

from common.messages import Bars
from common.quotes import usable

Row = tuple[float, float, float, float, float, float]  # ts, open, high, low, close, volume


def bars_from_rows(symbol: str, rows: Iterable[Row]) -> Bars:
    """Columns from (ts, open, high, low, close, volume) rows, kept in the given order."""
    cols: tuple[array, ...] = tuple(array("d") for _ in range(6))
    for row in rows:
        if len(row) != 6:
            raise ValueError(f"a bar row needs 6 values (ts, o, h, l, c, v), got {len(row)}")
        for col, value in zip(cols, row, strict=True):
            col.append(float(value))
    return Bars(symbol, *cols)


def tail(bars: Bars, n: int) -> Bars:
    """The last ``n`` bars (all of them when there are fewer; none when n <= 0)."""
    start = max(len(bars) - max(n, 0), 0)
    return Bars(
        bars.symbol,
        bars.ts[start:],
        bars.open[start:],
        bars.high[start:],
        bars.low[start:],
        bars.close[start:],
        bars.volume[start:],
    )


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def resample(bars: Bars, bar_minutes: int) -> Bars:
    """Aggregate 1-minute bars into ``bar_minutes`` bars aligned to multiples of N minutes.

    A bucket starts at ``ts // (N*60) * N*60``. Bars whose close is not a usable price (NaN,
    inf, <= 0: IBKR sends such bars for halted minutes) are skipped. High/low/volume ignore
    non-finite values; a bucket with none left gets NaN there. Partial buckets at either end
    are kept: the caller knows whether the newest bar is still forming, this function does not.
    """
    if bar_minutes < 1:
        raise ValueError(f"bar_minutes must be >= 1, got {bar_minutes}")
    width = bar_minutes * 60
    # sorting by ts (stable) makes "first"/"last" mean time order even if a merge was unsorted
    order = sorted(
        (i for i in range(len(bars)) if usable(bars.close[i]) and math.isfinite(bars.ts[i])),
        key=lambda i: bars.ts[i],
    )
    rows: list[Row] = []
    for key, members in groupby(order, key=lambda i: bars.ts[i] // width):
        group = list(members)
        highs = _finite([bars.high[i] for i in group])
        lows = _finite([bars.low[i] for i in group])
        vols = _finite([bars.volume[i] for i in group])
        rows.append(
            (
                key * width,
                bars.open[group[0]],
                max(highs) if highs else math.nan,
                min(lows) if lows else math.nan,
                bars.close[group[-1]],
                math.fsum(vols) if vols else math.nan,
            )
        )
    return bars_from_rows(bars.symbol, rows)
