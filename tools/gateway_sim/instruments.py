"""Instruments the sim knows: stocks from the scenario and their generated option chains.

A chain's strike grid is fixed at start from the base price (1-wide near the money, 5-wide
far out for SPY-like settings); expiries are computed from the session's current date
(daily / weekly Fridays / monthly third Fridays, holidays moved a day earlier). Expiries from
``sparse_from_expiry`` on lose strikes, so some (expiry, strike) pairs do not exist (error 200),
while reqSecDefOptParams reports the union, as IBKR does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

from tools.gateway_sim.codec import ContractFields
from tools.gateway_sim.hours import SessionClock
from tools.gateway_sim.pricepath import mix64, symbol_key, unit
from tools.gateway_sim.scenario import ChainSpec, Scenario, SymbolSpec

OPTION_CONID_BASE = 200_000_000
OPTION_CONID_SPAN = 1_800_000_000


@dataclass(frozen=True)
class Instrument:
    sec_type: str
    symbol: str
    con_id: int
    spec: SymbolSpec = field(compare=False, repr=False)
    expiry: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: int = 1
    min_tick: float = 0.01
    strike_index: int = -1
    expiry_index: int = -1

    @property
    def is_option(self) -> bool:
        return self.sec_type == "OPT"

    @property
    def local_symbol(self) -> str:
        if not self.is_option:
            return self.symbol
        return f"{self.symbol:<6}{self.expiry[2:]}{self.right}{round(self.strike * 1000):08d}"

    @property
    def primary_exchange(self) -> str:
        return "" if self.is_option else self.spec.primary_exchange


class Chain:
    """Strike grid and expiries of one underlying."""

    def __init__(self, spec: SymbolSpec, chain: ChainSpec, clock: SessionClock, key: int):
        self.spec = spec
        self.cfg = chain
        self.clock = clock
        self.key = key
        self.grid = _strike_grid(spec.price, chain)
        self.index = {k: i for i, k in enumerate(self.grid)}
        self._expiry_cache: tuple[date, list[date]] | None = None

    def expiries(self, today: date) -> list[date]:
        if self._expiry_cache and self._expiry_cache[0] == today:
            return self._expiry_cache[1]
        days = _expiry_dates(today, self.cfg, self.clock.holidays)
        self._expiry_cache = (today, days)
        return days

    def strikes_for(self, expiry_index: int) -> list[float]:
        if expiry_index < self.cfg.sparse_from_expiry:
            return self.grid
        return [k for k in self.grid if self.has_strike(expiry_index, k)]

    def has_strike(self, expiry_index: int, strike: float) -> bool:
        idx = self.index.get(strike)
        if idx is None:
            return False
        if expiry_index < self.cfg.sparse_from_expiry:
            return True
        near = abs(strike / self.spec.price - 1.0) * 100 <= self.cfg.near_range_pct
        step = self.cfg.sparse_increment
        if near and abs(strike / step - round(strike / step)) > 1e-9:
            return False
        drop = unit(self.key, 50_000 + expiry_index * 10_000 + idx) * 100 < self.cfg.missing_pct
        return not drop


def _strike_grid(price: float, cfg: ChainSpec) -> list[float]:
    near = (price * (1 - cfg.near_range_pct / 100), price * (1 + cfg.near_range_pct / 100))
    far = (
        max(cfg.far_increment, price * (1 - cfg.far_range_pct / 100)),
        price * (1 + cfg.far_range_pct / 100),
    )
    strikes = set()
    for inc, (lo, hi) in ((cfg.near_increment, near), (cfg.far_increment, far)):
        k = math.ceil(lo / inc) * inc
        while k <= hi + 1e-9:
            if k > 0:
                strikes.add(round(k, 4))
            k += inc
    return sorted(strikes)


def _expiry_dates(today: date, cfg: ChainSpec, holidays: set[date]) -> list[date]:
    found: set[date] = set()
    day, count = today, 0
    while count < cfg.daily_expiries:
        if day.weekday() < 5:
            found.add(day)
            count += 1
        day += timedelta(days=1)
    friday = today + timedelta(days=(4 - today.weekday()) % 7)
    for week in range(cfg.weekly_expiries):
        found.add(friday + timedelta(weeks=week))
    month_start = today.replace(day=1)
    for _ in range(cfg.monthly_expiries + 1):
        third = _third_friday(month_start)
        if third >= today:
            found.add(third)
        month_start = (month_start + timedelta(days=32)).replace(day=1)
    moved = {_before_holiday(d, holidays) for d in found}
    return sorted(d for d in moved if d >= today)


def _third_friday(month_start: date) -> date:
    first_friday = month_start + timedelta(days=(4 - month_start.weekday()) % 7)
    return first_friday + timedelta(weeks=2)


def _before_holiday(day: date, holidays: set[date]) -> date:
    while day in holidays or day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


class InstrumentBook:
    """Resolves request contracts to instruments; owns the chains and the conId registry."""

    def __init__(self, scenario: Scenario, clock: SessionClock) -> None:
        self.clock = clock
        self.seed = scenario.seed
        self.stocks: dict[str, Instrument] = {}
        self.chains: dict[str, Chain] = {}
        self.by_con_id: dict[int, Instrument] = {}
        self._option_ids: dict[tuple[str, str, float, str], int] = {}
        for spec in scenario.all_symbols():
            self._add_stock(spec, scenario)

    def _add_stock(self, spec: SymbolSpec, scenario: Scenario) -> None:
        key = symbol_key(self.seed, spec.symbol)
        con_id = spec.con_id or 10_000 + mix64(key) % 90_000_000
        while con_id in self.by_con_id:
            con_id += 1
        stock = Instrument("STK", spec.symbol, con_id, spec)
        self.stocks[spec.symbol] = stock
        self.by_con_id[con_id] = stock
        if spec.options:
            self.chains[spec.symbol] = Chain(spec, spec.chain or scenario.chain, self.clock, key)

    def today(self, now_ts: float) -> date:
        return self.clock.local(now_ts).date()

    def option(
        self, symbol: str, expiry: date, strike: float, right: str, expiry_index: int
    ) -> Instrument:
        chain = self.chains[symbol]
        stamp = expiry.strftime("%Y%m%d")
        ident = (symbol, stamp, strike, right)
        con_id = self._option_ids.get(ident)
        if con_id is None:
            con_id = OPTION_CONID_BASE + mix64(hash_text(repr(ident))) % OPTION_CONID_SPAN
            while con_id in self.by_con_id:
                con_id += 1
            self._option_ids[ident] = con_id
        inst = Instrument(
            "OPT",
            symbol,
            con_id,
            chain.spec,
            stamp,
            strike,
            right,
            chain.cfg.multiplier,
            chain.cfg.min_tick,
            chain.index.get(strike, -1),
            expiry_index,
        )
        self.by_con_id[con_id] = inst
        return inst

    def resolve(self, c: ContractFields, now_ts: float) -> list[Instrument]:
        """All instruments matching the request contract (empty list: error 200)."""
        if c.con_id and c.con_id in self.by_con_id:
            found = self.by_con_id[c.con_id]
            if found.is_option and found.expiry < self.today(now_ts).strftime("%Y%m%d"):
                return []
            return [found]
        if c.con_id and not c.symbol:
            return []
        if c.currency not in ("", "USD"):
            return []
        if c.sec_type in ("STK", ""):
            stock = self.stocks.get(c.symbol)
            return [stock] if stock else []
        if c.sec_type == "OPT":
            return self._options(c, now_ts)
        return []

    def _options(self, c: ContractFields, now_ts: float) -> list[Instrument]:
        chain = self.chains.get(c.symbol)
        if chain is None or c.multiplier not in ("", str(chain.cfg.multiplier)):
            return []
        out = []
        for idx, day in enumerate(chain.expiries(self.today(now_ts))):
            stamp = day.strftime("%Y%m%d")
            if c.expiry and not stamp.startswith(c.expiry):
                continue
            strikes = [c.strike] if c.strike else chain.strikes_for(idx)
            for strike in strikes:
                if not chain.has_strike(idx, strike):
                    continue
                for right in [c.right] if c.right else ["C", "P"]:
                    out.append(self.option(c.symbol, day, strike, right, idx))
        return out


def hash_text(text: str) -> int:
    key = 0
    for ch in text.encode():
        key = mix64(key ^ ch)
    return key
