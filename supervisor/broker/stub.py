"""StubBroker: an in-memory, seeded venue for unit tests, the CLI's stub mode and benchmarks.

Prices are a closed-form function of the minute index (a few sinusoids of different periods
plus hash noise), so any window of bars is computed in O(bars), deterministically, in any
order of requests. Trends alternate on the scale of tens of minutes to hours, which is what
makes the scalp rule say BUY, SELL and HOLD over a session.
"""

from __future__ import annotations

import asyncio
import math
from array import array
from collections.abc import Callable, Sequence
from datetime import date, timedelta

from common.calendar import (
    ExchangeCalendar,
    Session,
    TradingHours,
    expiry_close,
    nyse,
    trading_day,
)
from common.config import StubSettings
from common.greeks import bs_greeks, bs_price
from common.messages import Bars, OptionChain, OptionContract, OptionQuote, Quote
from supervisor.broker.base import AccountSnapshot, SymbolDataError, WhatIf
from supervisor.broker.paper_venue import PaperVenue

STUB_ACCOUNT = "STUB0001"
DEFAULT_BASES = {"SPY": 680.0, "QQQ": 600.0, "AAPL": 270.0, "IWM": 240.0, "MSFT": 480.0}
RATE = 0.04
VOL = 0.20


def _unit_noise(key: int) -> float:
    """A deterministic pseudo-random number in [-1, 1) for an integer key (splitmix64)."""
    z = (key + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z ^= z >> 31
    return (z / 2**63) - 1.0


def _symbol_key(symbol: str) -> int:
    key = 1469598103934665603
    for ch in symbol.encode():
        key = ((key ^ ch) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return key


class PricePath:
    """log(price) = base + trends of ~4 h, ~90 min and ~35 min + per-minute noise."""

    PERIODS_MIN = (240.0, 90.0, 35.0)
    AMPLITUDES = (0.010, 0.004, 0.0015)
    NOISE = 0.0008

    def __init__(self, symbol: str, base: float, seed: int) -> None:
        self.key = _symbol_key(symbol) ^ (seed * 0x5851F42D4C957F2D)
        self.log_base = math.log(base)
        self.phases = [math.pi * (1 + _unit_noise(self.key + i)) for i in range(3)]

    def at(self, minute: float) -> float:
        x = self.log_base
        for period, amp, phase in zip(self.PERIODS_MIN, self.AMPLITUDES, self.phases, strict=True):
            x += amp * math.sin(2 * math.pi * minute / period + phase)
        return math.exp(x + self.NOISE * _unit_noise(self.key ^ int(minute)))

    def volume(self, minute: int) -> float:
        hour_spike = 3.0 if _unit_noise(self.key + 7 * (minute // 60)) > 0.8 else 1.0
        return round(1000 * hour_spike * (1.2 + _unit_noise(self.key ^ (minute * 31))))


class StubBroker(PaperVenue):
    """Deterministic from ``settings.seed``; time comes from the injected ``now`` function.
    A market for dry-run and what-if only: it places no orders and holds none."""

    name = "stub"
    no_orders = "the stub places no orders (live trading needs the IBKR broker)"

    def __init__(
        self,
        settings: StubSettings,
        now: Callable[[], float],
        calendar: ExchangeCalendar | None = None,
    ) -> None:
        self.settings = settings
        self.now = now
        self._calendar = calendar  # NYSE's unless told otherwise (loaded when first needed)
        self._paths: dict[str, PricePath] = {}
        self._bar_cache: dict[tuple[str, int, bool], dict[int, tuple[float, ...] | None]] = {}
        self._day_sessions: dict[date, Session | None] = {}
        self._built: dict[tuple[str, int, bool], tuple[tuple[int, int], Bars]] = {}
        self._chains_day: date | None = None
        self._chains: dict[str, OptionChain] = {}  # the day's, by symbol
        self.requests = 0
        self._leak: list[bytes] = []  # stays empty unless the test-only leak is switched on

    # --- requests (the connection is PaperVenue's flag) ----------------------------------------

    async def _round_trip(self) -> None:
        self.requests += 1
        if self.settings.leak_bytes_per_request:
            self._leak.append(bytes(self.settings.leak_bytes_per_request))
        if self.settings.latency_s:
            await asyncio.sleep(self.settings.latency_s)

    def _path(self, symbol: str) -> PricePath:
        path = self._paths.get(symbol)
        if path is None:
            base = self.settings.base_prices.get(symbol) or DEFAULT_BASES.get(symbol)
            if base is None:  # any other ticker gets a stable price between 20 and 520
                base = 20.0 + 500.0 * (0.5 + 0.5 * _unit_noise(_symbol_key(symbol)))
            path = self._paths[symbol] = PricePath(symbol, base, self.settings.seed)
        return path

    # --- market data -------------------------------------------------------------------------

    async def quote(self, symbol: str) -> Quote:
        await self._round_trip()
        now = self.now()
        path = self._path(symbol)
        last = path.at(now / 60.0)
        half = max(0.01, round(last * 0.0001, 2))
        day_start = (now // 86_400) * 86_400
        return Quote(
            symbol=symbol,
            bid=round(last - half, 2),
            ask=round(last + half, 2),
            last=round(last, 2),
            close=round(path.at(day_start / 60.0 - 1), 2),
            bid_size=100.0,
            ask_size=100.0,
            volume=float(path.volume(int(now // 60)) * 390),
            ts=now,
        )

    @property
    def calendar(self) -> ExchangeCalendar:
        if self._calendar is None:
            self._calendar = nyse()
        return self._calendar

    async def bars(
        self, symbol: str, minutes: int, bar_minutes: int = 1, rth: bool = False
    ) -> Bars:
        """Completed bars starting within the last ``minutes``, oldest first; ``rth``: only
        the minutes of NYSE's regular sessions count (a bar of none is not sent)."""
        await self._round_trip()
        path = self._path(symbol)
        end_min = int(self.now() // 60)  # the bar of the current minute is still forming
        first = (end_min - minutes) // bar_minutes * bar_minutes
        last_start = end_min - bar_minutes
        key = (symbol, bar_minutes, rth)
        built = self._built.get(key)
        if built is not None and built[0] == (first, last_start):
            return built[1]  # the same window again (nobody changes a Bars' columns)
        cols = [array("d") for _ in range(6)]
        # a completed bar never changes: each series keeps the bars of its latest window
        # (bounded by the universe and the window, however long the run), not a global cap
        # that a large universe thrashes
        series = self._bar_cache.setdefault(key, {})
        window = (last_start - first) // bar_minutes + 1
        sessions = self._sessions(first * 60.0, end_min * 60.0) if rth else None
        if len(series) > 2 * window + 16:
            for old in [start for start in series if start < first]:
                del series[old]
        for start in range(first, last_start + 1, bar_minutes):
            if start not in series:
                series[start] = self._bar(path, start, bar_minutes, sessions)
            bar = series[start]
            if bar is not None:
                for col, value in zip(cols, bar, strict=True):
                    col.append(value)
        bars = Bars(symbol, *cols)
        self._built[key] = ((first, last_start), bars)
        return bars

    def _bar(
        self, path: PricePath, start: int, bar_minutes: int, sessions: list[Session] | None
    ) -> tuple[float, ...] | None:
        """One completed bar (None: no regular minute in it); ``sessions``: the regular
        sessions its minutes must fall in (None: every minute counts)."""
        minutes = [
            m
            for m in range(start, start + bar_minutes)
            if sessions is None or any(s.contains(m * 60.0) for s in sessions)
        ]
        bar = None
        if minutes:
            prices = [path.at(m) for m in (*minutes, minutes[-1] + 1)]
            volume = sum(path.volume(m) for m in minutes)
            bar = (
                start * 60.0,
                prices[0],
                max(prices) * 1.0002,
                min(prices) * 0.9998,
                prices[-1],
                volume,
            )
        return bar

    def _sessions(self, start_ts: float, end_ts: float) -> list[Session]:
        """The regular sessions of the trading days from ``start_ts`` to ``end_ts`` (each
        day's looked up once: a minute-by-minute lookup was most of a cycle's cost)."""
        tz = self.calendar.tz
        day, last = trading_day(start_ts, tz), trading_day(end_ts, tz)
        found = []
        while day <= last:
            if day not in self._day_sessions:
                self._day_sessions[day] = self.calendar.session(day)
            session = self._day_sessions[day]
            if session is not None:
                found.append(session)
            day += timedelta(days=1)
        return found

    async def chain(self, symbol: str) -> OptionChain:
        await self._round_trip()
        today = trading_day(self.now())
        if self._chains_day != today:  # listed for the day, as IBKR's chains are cached
            self._chains_day, self._chains = today, {}
        if symbol not in self._chains:
            spot = self._path(symbol).at(self.now() / 60.0)
            self._chains[symbol] = OptionChain(
                symbol=symbol,
                expirations=stub_expiries(symbol, today, self.calendar),
                strikes=stub_strikes(spot),
                multiplier=100,
                exchange="SMART",
                trading_class=symbol,
            )
        return self._chains[symbol]

    async def option_quotes(self, contracts: Sequence[OptionContract]) -> tuple[OptionQuote, ...]:
        await self._round_trip()
        now = self.now()
        return tuple(self._option_quote(c, now) for c in contracts)

    def _option_quote(self, contract: OptionContract, now: float) -> OptionQuote:
        if contract.strike <= 0:
            raise SymbolDataError(f"{contract.key}: no security definition")
        spot = self._path(contract.symbol).at(now / 60.0)
        close = expiry_close(contract.expiry)
        if close is None:
            raise SymbolDataError(f"{contract.key}: no such expiry")
        t_years = max((close - now) / (365 * 86_400), 1 / (365 * 24))
        price = bs_price(spot, contract.strike, t_years, RATE, VOL, contract.right)
        greeks = bs_greeks(spot, contract.strike, t_years, RATE, VOL, contract.right)
        half = max(0.01, round(price * 0.02, 2))
        key = _symbol_key(contract.key) ^ int(now // 60)
        return OptionQuote(
            contract=contract,
            bid=round(max(price - half, 0.0), 2),
            ask=round(price + half, 2),
            last=round(price, 2),
            volume=float(int(2500 * (1 + _unit_noise(key)))),
            iv=VOL,
            delta=greeks.delta,
            gamma=greeks.gamma,
            vega=greeks.vega,
            theta=greeks.theta,
            und_price=spot,
            ts=now,
        )

    # --- account and hours -------------------------------------------------------------------

    async def account(self) -> AccountSnapshot:
        await self._round_trip()
        equity = self.settings.equity
        return AccountSnapshot(account=STUB_ACCOUNT, net_liquidation=equity, available_funds=equity)

    def managed_accounts(self) -> list[str]:
        return [STUB_ACCOUNT]

    async def what_if(
        self, contract: OptionContract, action: str, quantity: int, limit: float
    ) -> WhatIf:
        """The paper venue's margin check (a long option's: its premium), a request like
        any other."""
        await self._round_trip()
        return await super().what_if(contract, action, quantity, limit)

    async def regular_hours(self, symbol: str) -> TradingHours | None:
        return None  # the stub publishes no hours: the exchange calendar decides

    async def unknown_symbols(self, symbols: Sequence[str]) -> dict[str, str]:
        return {}  # the stub prices any ticker

    async def closing_price(self, symbol: str, day: date) -> float | None:
        """The path's price at the regular close of ``day`` (None before it, or no session)."""
        session = self.calendar.session(day)
        if session is None or self.now() < session.close_ts:
            return None
        return round(self._path(symbol).at(session.close_ts / 60.0), 2)

    def stats(self) -> dict[str, float]:
        return {
            "requests_total": float(self.requests),
            "live_tickers": 0.0,
            "leaked_bytes": float(len(self._leak) * self.settings.leak_bytes_per_request),
        }


DAILY_EXPIRIES = frozenset({"SPY", "QQQ", "IWM"})  # IBKR lists an expiry every weekday


def weekly_expiries(today: date, weeks: int) -> tuple[str, ...]:
    """Fridays from today on (today included when it is one)."""
    first = today + timedelta(days=(4 - today.weekday()) % 7)
    return tuple((first + timedelta(weeks=i)).strftime("%Y%m%d") for i in range(weeks))


def stub_expiries(symbol: str, today: date, calendar: ExchangeCalendar) -> tuple[str, ...]:
    """Eight weekly Fridays (a holiday Friday moves to its Thursday), plus, for SPY, QQQ and
    IWM, every session of the next two weeks (the dailies): 0-DTE on any weekday."""
    days = set()
    for stamp in weekly_expiries(today, weeks=8):
        friday = date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:]))
        while calendar.session(friday) is None and friday > today:
            friday -= timedelta(days=1)
        days.add(friday)
    if symbol in DAILY_EXPIRIES:
        days |= {
            today + timedelta(days=n)
            for n in range(14)
            if calendar.session(today + timedelta(days=n)) is not None
        }
    return tuple(sorted(d.strftime("%Y%m%d") for d in days if d >= today))


def stub_strikes(spot: float) -> tuple[float, ...]:
    """SPY-like: 1 wide within 20 % of spot, 5 wide out to 60 % away (~400 for SPY)."""
    step = 1.0 if spot >= 50 else 0.5
    lo, hi = spot * 0.8, spot * 1.2
    near = {round(i * step, 2) for i in range(math.floor(lo / step), math.floor(hi / step) + 1)}
    far = {
        float(k)
        for k in range(max(5, math.floor(spot * 0.4 / 5) * 5), math.floor(spot * 1.6) + 1, 5)
        if not lo <= k <= hi
    }
    return tuple(sorted(near | far))


__all__ = ["StubBroker", "PricePath", "stub_expiries", "stub_strikes", "weekly_expiries"]
