"""The bar layer: completed TRADES bars from historical requests, cached incrementally.

Per (symbol, bar size, regular hours only) the cache keeps the rows of the longest window asked
for and the span of time they cover completely (IBKR sends no bar for a closed period, so an
empty stretch is still covered). A call asks only for what lies past the cache, one bar of
overlap included; bar sizes IBKR does not offer are resampled from 1-minute bars.

A request IBKR refuses for pacing (error 162) cools down: that (symbol, bar size) is not
asked for again for ``PACING_COOLDOWN_S``, doubling with each refusal in a row up to
``PACING_COOLDOWN_MAX_S``, and fails meanwhile with the code and the time left, no request
sent. Resending at once would only be refused again and spend the 60 requests of IBKR's
10-minute window.
"""

from __future__ import annotations

import math
import time as clock
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from common.bars import resample, tail
from common.config import IBKRSettings
from common.messages import Bars
from supervisor.broker.base import SymbolDataError
from supervisor.broker.ibkr.contracts import Contracts
from supervisor.broker.ibkr.link import Link
from supervisor.broker.ibkr.requests import IBKRRequestError, Requests

BAR_SIZES = {
    1: "1 min",
    2: "2 mins",
    3: "3 mins",
    5: "5 mins",
    10: "10 mins",
    15: "15 mins",
    20: "20 mins",
    30: "30 mins",
    60: "1 hour",
    120: "2 hours",
    180: "3 hours",
    240: "4 hours",
    480: "8 hours",
}
Row = tuple[float, float, float, float, float, float]
PACING_VIOLATION = 162
# 60 s clears IBKR's 15 s identical-request and 2 s same-contract rules with room to spare;
# refusals in a row double it up to 600 s, the whole 60-requests-in-10-minutes window.
PACING_COOLDOWN_S = 60.0
PACING_COOLDOWN_MAX_S = 600.0


def ib_duration(seconds: float) -> str:
    """An IBKR duration covering ``seconds``: ``N S`` up to a day, whole days beyond."""
    whole = max(60, math.ceil(seconds))
    return f"{whole} S" if whole <= 86_400 else f"{math.ceil(whole / 86_400)} D"


@dataclass
class BarCache:
    rows: dict[float, Row] = field(default_factory=dict)
    covered_from: float = math.inf  # completed bars starting in [covered_from, covered_to)
    covered_to: float = -math.inf  # are all known (IBKR sends none for closed periods)
    span_s: float = 0.0  # the longest window asked for: what the cache keeps


class PacingCooldown:
    """Requests IBKR refused with error 162, each resting until its cooldown is over."""

    def __init__(
        self,
        base_s: float = PACING_COOLDOWN_S,
        max_s: float = PACING_COOLDOWN_MAX_S,
        mono: Callable[[], float] = clock.monotonic,
    ) -> None:
        self.base_s, self.max_s, self.mono = base_s, max_s, mono  # wall seconds: IBKR's
        self._refusals: dict[tuple[str, int, bool], tuple[int, float, str]] = {}

    def check(self, key: tuple[str, int, bool], what: str) -> None:
        """IBKRRequestError (162) while ``key`` cools down; nothing is sent for it."""
        refused = self._refusals.get(key)
        if refused is None:
            return
        _n, until, reason = refused
        left = until - self.mono()
        if left > 0:
            raise IBKRRequestError(
                f"{what}: not sent, cooling down {left:.0f}s more after "
                f"IBKR's pacing refusal ({reason})",
                PACING_VIOLATION,
            )

    def refused(self, key: tuple[str, int, bool], exc: IBKRRequestError) -> IBKRRequestError:
        """Start (or double) the cooldown of ``key``; the error, saying how long it rests."""
        n = self._refusals.get(key, (0, 0.0, ""))[0] + 1
        rest = min(self.base_s * 2 ** (n - 1), self.max_s)
        self._refusals[key] = (n, self.mono() + rest, str(exc))
        return IBKRRequestError(f"{exc}; not asked again for {rest:.0f}s", exc.code)

    def passed(self, key: tuple[str, int, bool]) -> None:
        self._refusals.pop(key, None)


class BarHistory:
    """Bars per (symbol, bar size), fetched incrementally; see the module docstring."""

    def __init__(
        self,
        link: Link,
        requests: Requests,
        contracts: Contracts,
        cfg: IBKRSettings,
        *,
        tz: str,
        now: Callable[[], float],
        cooldown: PacingCooldown | None = None,
    ) -> None:
        self._link = link
        self._requests = requests
        self._contracts = contracts
        self._cfg = cfg
        self._zone = ZoneInfo(tz)
        self._now = now
        self._bars: dict[tuple[str, int, bool], BarCache] = {}
        self.cooldown = cooldown or PacingCooldown()

    async def bars(
        self, symbol: str, minutes: int, bar_minutes: int = 1, rth: bool = False
    ) -> Bars:
        """Completed TRADES bars covering the last ``minutes``, oldest first (``rth``: the
        regular session's only, IBKR's useRTH).

        Cached per (symbol, bar size): a call asks IBKR only for the bars since the last
        cached one (plus one bar of overlap), or for nothing when the cache already reaches
        the newest completed bar. Sizes IBKR does not offer are resampled from 1-minute bars.
        """
        if minutes < 1 or bar_minutes < 1:
            raise SymbolDataError(f"bars {symbol}: minutes and bar_minutes must be >= 1")
        if bar_minutes not in BAR_SIZES:
            return await self._resampled(symbol, minutes, bar_minutes, rth)
        bar_s = bar_minutes * 60
        count = max(1, minutes // bar_minutes)
        key = (symbol, bar_s, rth)
        async with self._requests.lock_for(("bars", *key)):
            end = math.floor(self._now() / bar_s) * bar_s  # the forming bar starts here
            need_from = end - count * bar_s
            cache = self._bars.get(key) or BarCache()
            if cache.covered_from <= need_from and cache.covered_to >= end:
                self._link.counts["bars_cache_hits_total"] += 1
            else:
                cache = await self._fetch_bars(symbol, bar_s, rth, need_from, end, cache)
                self._bars[key] = cache
            cache.span_s = max(cache.span_s, count * bar_s)
            rows = sorted(r for ts, r in cache.rows.items() if need_from <= ts < end)
        cols = [array("d", col) for col in zip(*rows, strict=True)] if rows else []
        return Bars(symbol, *cols) if cols else Bars(symbol)

    async def _fetch_bars(
        self, symbol: str, bar_s: int, rth: bool, need_from: float, end: float, cache: BarCache
    ) -> BarCache:
        contiguous = cache.covered_from <= need_from and cache.covered_to >= need_from
        start = max(need_from, cache.covered_to - bar_s) if contiguous else need_from
        # An explicit end (UTC) rather than "now": the window is the broker's, whatever the
        # gateway's clock says; one bar of margin before the start.
        end_text = datetime.fromtimestamp(end, UTC).strftime("%Y%m%d-%H:%M:%S")
        duration = ib_duration(end - start + bar_s)
        key, size = (symbol, bar_s, rth), BAR_SIZES[bar_s // 60]
        self.cooldown.check(key, f"bars {symbol} {size}")
        stock = await self._contracts.stock(symbol)
        contract = stock.contract
        ib = self._link.ib
        self._link.counts["bars_requests_total"] += 1
        try:
            got = await self._requests.request(
                f"bars {symbol} {size} {duration} to {end_text}",
                lambda rid: ib.client.reqHistoricalData(
                    rid, contract, end_text, duration, size, "TRADES", rth, 2, False, []
                ),
                self._cfg.historical_timeout_s,
                contract=contract,
                on_timeout=lambda rid: self._link.spawn(
                    self._requests.paced_send(lambda: ib.client.cancelHistoricalData(rid))
                ),
            )
        except IBKRRequestError as exc:
            # 162 also says "HMDS query returned no data": an answer, not a pacing refusal
            if exc.code == PACING_VIOLATION and "no data" not in str(exc):
                self._link.counts["bars_pacing_cooldowns_total"] += 1
                raise self.cooldown.refused(key, exc) from None
            raise
        self.cooldown.passed(key)
        fresh = {row[0]: row for row in map(self._bar_row, got) if row[0] < end}
        merged = {**cache.rows, **fresh} if contiguous else fresh
        keep_from = end - max(cache.span_s, end - need_from)
        rows = {ts: r for ts, r in merged.items() if ts >= keep_from}
        covered_from = max(cache.covered_from if contiguous else need_from, keep_from)
        return BarCache(rows, covered_from, end, cache.span_s)

    def _bar_row(self, bar: Any) -> Row:
        when = bar.date
        if isinstance(when, datetime):
            ts = when.timestamp()
        else:  # daily bars come as dates: the day starts at midnight in the exchange's zone
            ts = datetime.combine(when, datetime.min.time(), self._zone).timestamp()
        return (
            ts,
            float(bar.open),
            float(bar.high),
            float(bar.low),
            float(bar.close),
            float(bar.volume),
        )

    async def _resampled(self, symbol: str, minutes: int, bar_minutes: int, rth: bool) -> Bars:
        width = bar_minutes * 60
        ones = await self.bars(symbol, minutes + bar_minutes, 1, rth)
        if not len(ones):
            return ones
        done = math.floor(self._now() / 60) * 60  # every minute before this is complete
        out = resample(ones, bar_minutes)
        keep = [i for i in range(len(out)) if out.ts[i] + width <= done and out.ts[i] >= ones.ts[0]]
        if not keep:
            return Bars(symbol)
        sliced = Bars(
            symbol,
            *(
                col[keep[0] : keep[-1] + 1]
                for col in (out.ts, out.open, out.high, out.low, out.close, out.volume)
            ),
        )
        return tail(sliced, max(1, minutes // bar_minutes))

    async def closing_price(self, symbol: str, day: date) -> float | None:
        """The regular session's close of ``day``: the close of its last 1-minute RTH bar
        (None when IBKR has no bar for that day, or the day is not over)."""
        ends = datetime.combine(day + timedelta(days=1), time(0, 0), self._zone)
        if ends.timestamp() > self._now():
            return None
        end_text = datetime.fromtimestamp(ends.timestamp(), UTC).strftime("%Y%m%d-%H:%M:%S")
        contract = (await self._contracts.stock(symbol)).contract
        ib = self._link.ib
        got = await self._requests.request(
            f"closing price {symbol} {day}",
            lambda rid: ib.client.reqHistoricalData(
                rid, contract, end_text, "1 D", "1 min", "TRADES", True, 2, False, []
            ),
            self._cfg.historical_timeout_s,
            contract=contract,
        )
        rows = [
            row
            for row in map(self._bar_row, got)
            if datetime.fromtimestamp(row[0], self._zone).date() == day
        ]
        return rows[-1][4] if rows else None

    def stats(self) -> dict[str, float]:
        return {"bars_cached": float(sum(len(c.rows) for c in self._bars.values()))}
