"""HistoryBroker: a backtest's market, from historical 1-minute bars at the clock's now.

    quote          the bar of the minute: its open while the minute runs (a cycle at the
                   bar's start sees the price then, nothing of the minute to come), its close
                   once it is over; bid and ask a cent either side (``UNDERLYING_HALF``);
                   close = the previous session's last close; volume = the session's so far
    bars           completed bars only (start + length <= now), 1-minute ones as they are,
                   longer ones built from them on multiples of their length (as the stub and
                   bars_start count them)
    chain          pricing.chain_of: the data's contracts of the day, else a synthetic chain
    option_quotes  the options file's latest row of the day for the contract; else the model
                   (pricing.model), counted in ``modelled``; an expired contract: no market
    closing_price  the session's last bar's close, once the session is over
    account        ``backtest.equity``; orders: none (PaperVenue: the paper book fills)

Everything is a lookup in arrays (bisect): a year of three symbols answers as fast as the stub.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date

from common.calendar import ExchangeCalendar, Session, TradingHours, expiry_close, trading_day
from common.config import BacktestSettings
from common.messages import Bars, OptionChain, OptionContract, OptionQuote, Quote
from supervisor.backtest.data import BAR_S, DataSet, MinuteBars
from supervisor.backtest.pricing import chain_of, from_row, iv_for, model
from supervisor.broker.base import AccountSnapshot, SymbolDataError
from supervisor.broker.paper_venue import PaperVenue

ACCOUNT = "BACKTEST"
UNDERLYING_HALF = 0.01  # a liquid underlying's half-spread: a cent


class HistoryBroker(PaperVenue):
    name = "backtest"
    no_orders = "a backtest places no orders (its paper book fills them from the quotes)"

    def __init__(
        self,
        data: DataSet,
        now: Callable[[], float],
        settings: BacktestSettings,
        calendar: ExchangeCalendar,
    ) -> None:
        self.data, self.now, self.settings, self.calendar = data, now, settings, calendar
        self.modelled = 0  # option quotes the model answered
        self.modelled_days: Counter[str] = Counter()  # of them, by trading day
        self.modelled_first: dict[str, float] = {}  # each such day's first, on the clock
        self.quoted = 0  # option quotes the data answered
        self.requests = 0
        self._sessions: dict[date, Session | None] = {}
        self._longer: dict[tuple[str, int], MinuteBars] = {}
        self._volume: dict[str, array[float]] = {}  # running sums of each symbol's volume
        self._chains: dict[tuple[str, date], OptionChain] = {}

    # --- the account (the connection is PaperVenue's flag) -----------------------------------

    def managed_accounts(self) -> list[str]:
        return [ACCOUNT]

    # --- the underlying ----------------------------------------------------------------------

    def _bars(self, symbol: str) -> MinuteBars:
        self.requests += 1
        bars = self.data.bars.get(symbol)
        if bars is None:
            raise SymbolDataError(f"{symbol}: not in the backtest's data")
        return bars

    def _session(self, day: date) -> Session | None:
        if day not in self._sessions:
            self._sessions[day] = self.calendar.session(day)
        return self._sessions[day]

    def price(self, symbol: str, now: float) -> float:
        """The underlying's price at ``now``: the minute's open, or the last bar's close."""
        bars = self._bars(symbol)
        i = bars.at_or_before(now)
        if i < 0:
            raise SymbolDataError(f"{symbol}: no bar at or before the clock")
        return bars.open[i] if now < bars.ts[i] + BAR_S else bars.close[i]

    async def quote(self, symbol: str) -> Quote:
        now = self.now()
        last = self.price(symbol, now)
        bars = self.data.bars[symbol]
        session = self._session(trading_day(now, self.calendar.tz))
        opened = session.open_ts if session is not None else now
        before = bisect_left(bars.ts, opened) - 1  # the previous session's last bar
        done = bisect_right(bars.ts, now - BAR_S) - 1  # the last completed bar
        sums = self._sums(symbol)
        volume = (sums[done] if done >= 0 else 0.0) - (sums[before] if before >= 0 else 0.0)
        return Quote(
            symbol=symbol,
            bid=round(last - UNDERLYING_HALF, 2),
            ask=round(last + UNDERLYING_HALF, 2),
            last=last,
            close=bars.close[before] if before >= 0 else float("nan"),
            bid_size=100.0,
            ask_size=100.0,
            volume=max(volume, 0.0),
            ts=now,
        )

    def _sums(self, symbol: str) -> array[float]:
        sums = self._volume.get(symbol)
        if sums is None:
            sums, total = array("d"), 0.0
            for v in self.data.bars[symbol].volume:
                total += v
                sums.append(total)
            self._volume[symbol] = sums
        return sums

    async def bars(
        self, symbol: str, minutes: int, bar_minutes: int = 1, rth: bool = False
    ) -> Bars:
        """Completed bars starting within the last ``minutes``, oldest first (the data holds
        regular sessions only, so ``rth`` changes nothing)."""
        series = self._bars(symbol) if bar_minutes == 1 else self._built(symbol, bar_minutes)
        end_min = int(self.now() // 60)
        first = (end_min - minutes) // bar_minutes * bar_minutes
        lo = bisect_left(series.ts, first * 60.0)
        hi = bisect_right(series.ts, (end_min - bar_minutes) * 60.0)
        return Bars(
            symbol,
            series.ts[lo:hi],
            series.open[lo:hi],
            series.high[lo:hi],
            series.low[lo:hi],
            series.close[lo:hi],
            series.volume[lo:hi],
        )

    def _built(self, symbol: str, bar_minutes: int) -> MinuteBars:
        """The symbol's bars of ``bar_minutes``, on multiples of their length, built once."""
        key = (symbol, bar_minutes)
        found = self._longer.get(key)
        if found is None:
            found = self._longer[key] = longer_bars(self._bars(symbol), bar_minutes)
        return found

    # --- options -----------------------------------------------------------------------------

    async def chain(self, symbol: str) -> OptionChain:
        now = self.now()
        today = trading_day(now, self.calendar.tz)
        key = (symbol, today)
        if key not in self._chains:
            spot = self.price(symbol, now)
            rows = self.data.options.get(symbol)
            self._chains[key] = chain_of(symbol, today, spot, self.calendar, rows)
        return self._chains[key]

    async def option_quotes(self, contracts: Sequence[OptionContract]) -> tuple[OptionQuote, ...]:
        now = self.now()
        return tuple(self._option_quote(c, now) for c in contracts)

    def _option_quote(self, contract: OptionContract, now: float) -> OptionQuote:
        spot = self.price(contract.symbol, now)
        close = self._expiry_close(contract.expiry)
        if contract.strike <= 0 or close is None or now >= close:
            return OptionQuote(contract, und_price=spot, ts=now)  # not listed (any more)
        rows = self.data.options.get(contract.symbol)
        row = rows.at((contract.expiry, contract.strike, contract.right), now) if rows else None
        if row is not None:
            self.quoted += 1
            return from_row(contract, row, spot)
        self.modelled += 1
        day = trading_day(now, self.calendar.tz)
        self.modelled_days[day.isoformat()] += 1
        self.modelled_first.setdefault(day.isoformat(), now)
        iv = iv_for(contract.symbol, day, self.data.iv, self.settings)
        return model(contract, spot, iv, now, self.settings)

    def _expiry_close(self, expiry: str) -> float | None:
        """The expiry day's close by the calendar (13:00 on an early close), else 16:00."""
        fallback = expiry_close(expiry, self.calendar.tz)
        if fallback is None:
            return None
        session = self._session(trading_day(fallback, self.calendar.tz))
        return session.close_ts if session is not None else fallback

    # --- account and hours -------------------------------------------------------------------

    async def account(self) -> AccountSnapshot:
        equity = self.settings.equity
        return AccountSnapshot(account=ACCOUNT, net_liquidation=equity, available_funds=equity)

    async def regular_hours(self, symbol: str) -> TradingHours | None:
        return None  # the exchange calendar decides, as it checked the data

    async def closing_price(self, symbol: str, day: date) -> float | None:
        """The session's last bar's close, once the session is over (None before, or on a
        day without a session or bars)."""
        session = self._session(day)
        bars = self.data.bars.get(symbol)
        if session is None or bars is None or self.now() < session.close_ts:
            return None
        i = bars.at_or_before(session.close_ts - BAR_S)
        return bars.close[i] if i >= 0 and bars.ts[i] >= session.open_ts else None

    async def unknown_symbols(self, symbols: Sequence[str]) -> dict[str, str]:
        return {s: "not in the backtest's data" for s in symbols if s not in self.data.bars}

    def stats(self) -> dict[str, float]:
        return {
            "requests_total": float(self.requests),
            "live_tickers": 0.0,
            "model_priced": float(self.modelled),
        }


def longer_bars(bars: MinuteBars, bar_minutes: int) -> MinuteBars:
    """1-minute bars put together into bars of ``bar_minutes`` starting on multiples of it
    (an hourly bar holding 09:30-09:59 starts at 09:00)."""
    length = bar_minutes * 60.0
    cols: list[array[float]] = [array("d") for _ in range(6)]
    for i, ts in enumerate(bars.ts):
        start = ts // length * length
        if cols[0] and cols[0][-1] == start:
            cols[2][-1] = max(cols[2][-1], bars.high[i])
            cols[3][-1] = min(cols[3][-1], bars.low[i])
            cols[4][-1] = bars.close[i]
            cols[5][-1] += bars.volume[i]
        else:
            row = (start, bars.open[i], bars.high[i], bars.low[i], bars.close[i], bars.volume[i])
            for col, value in zip(cols, row, strict=True):
                col.append(value)
    return MinuteBars(bars.symbol, *cols)


__all__ = ["HistoryBroker", "longer_bars"]
