"""One symbol's prices from a data set's minute bars: ``PricePath``'s interface (dataset.py).

A price inside a bar minute runs from the bar's open to its close; between bars (the night, a
holiday) it stays at the last close; a minute without a bar gets no bar (``has_minute``), so
the 1-minute bars served are the file's rows exactly.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from itertools import accumulate
from typing import TYPE_CHECKING

from tools.gateway_sim.pricepath import Bar

if TYPE_CHECKING:
    from supervisor.backtest.data import MinuteBars


class DataPath:
    """One symbol's prices from its minute bars; ``PricePath``'s interface (see above)."""

    def __init__(
        self,
        bars: MinuteBars,
        key: int,
        tick: float = 0.01,
        hours: Mapping[int, tuple[float, ...]] | None = None,
    ) -> None:
        self.bars, self.key, self.tick = bars, key, tick
        self.hours = hours or {}  # a recording's hourly bars by start: served as recorded
        self.minutes = {int(ts) // 60: i for i, ts in enumerate(bars.ts)}
        self.cumulative = [0.0, *accumulate(bars.volume)]  # volume before bar i

    def has_minute(self, minute: int) -> bool:
        return minute in self.minutes

    def recorded_bar(self, start: int, bar_s: int) -> Bar | None:
        """A recorded hourly bar starting at ``start`` (None: make it from the minutes)."""
        found = self.hours.get(start) if bar_s == 3600 else None
        if found is None:
            return None
        o, h, low, c, volume = found
        wap = round((o + h + low + c) / 4.0, 4)
        return Bar(start, o, h, low, c, int(volume), wap, max(1, int(volume) // 100))

    def price(self, t: float) -> float:
        b = self.bars
        i = b.at_or_before(t)
        if i < 0:
            return b.open[0]
        share = (t - b.ts[i]) / 60.0
        if share >= 1.0:  # after the bar: the night, a gap, a holiday
            return b.close[i]
        return b.open[i] + (b.close[i] - b.open[i]) * share

    def round(self, value: float) -> float:
        return round(round(value / self.tick) * self.tick, 6)

    def minute_bar(self, minute: int, until: float | None = None) -> Bar:
        """The file's bar of ``minute``; cut at ``until`` (the bar in progress): open to the
        price then, its volume pro rata. A minute without a bar: flat, no volume."""
        start = minute * 60
        i = self.minutes.get(minute)
        if i is None:
            p = self.round(self.price(start))
            return Bar(start, p, p, p, p, 0, p, 0)
        b = self.bars
        o, h, low, c, volume = b.open[i], b.high[i], b.low[i], b.close[i], int(b.volume[i])
        if until is not None and until < start + 60:
            share = max(0.0, (until - start) / 60.0)
            c = self.round(self.price(until))
            h, low, volume = max(o, c), min(o, c), int(volume * share)
        wap = round((o + h + low + c) / 4.0, 4)
        return Bar(start, o, h, low, c, volume, wap, max(1, volume // 100) if volume else 0)

    def day_volume(self, since: float, now: float) -> int:
        """The volume of the bars that started in [since, now)."""
        ts = self.bars.ts
        lo, hi = bisect_left(ts, since), bisect_left(ts, now)
        return int(self.cumulative[max(hi, lo)] - self.cumulative[lo])
