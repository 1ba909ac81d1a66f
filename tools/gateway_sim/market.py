"""The simulated market: quotes, option greeks and bars for any instrument at any time.

Stocks follow their ``PricePath``; options are priced with Black-Scholes on the underlying's
path (a smile on the symbol's volatility). Quote quirks from the scenario (-1, 0, missing
ticks, crossed, wide) are applied last, so one place decides what the client sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date

from tools.gateway_sim.datapath import DataPath
from tools.gateway_sim.dataset import scenario_bars, scenario_hours
from tools.gateway_sim.hours import SessionClock
from tools.gateway_sim.instruments import Instrument, InstrumentBook
from tools.gateway_sim.optionmath import SECONDS_PER_YEAR, Greeks, black_scholes, smile_vol
from tools.gateway_sim.pricepath import Bar, PricePath, aggregate, symbol_key, unit
from tools.gateway_sim.scenario import QuirkSpec, Scenario
from tools.gateway_sim.simclock import ScenarioClock


@dataclass(frozen=True)
class Quote:
    """One snapshot; None means "no tick sent" (the client keeps NaN)."""

    bid: float | None
    ask: float | None
    last: float | None
    close: float | None
    open: float | None
    bid_size: float
    ask_size: float
    last_size: float
    volume: float | None
    greeks: Greeks | None = None
    greeks_missing: bool = False


class Market:
    def __init__(
        self, scenario: Scenario, clock: SessionClock, time_source: ScenarioClock | None = None
    ) -> None:
        self.scenario = scenario
        self.clock = clock
        self.time = time_source or ScenarioClock(scenario.clock)
        self.book = InstrumentBook(scenario, clock)
        self.paths: dict[str, PricePath | DataPath] = {}
        data = scenario_bars(scenario) if scenario.market.source else {}
        hours = scenario_hours(scenario)
        for spec in scenario.all_symbols():
            if spec.symbol in data:  # yesterday's market: a data set's or a recording's bars
                key = symbol_key(scenario.seed, spec.symbol)
                self.paths[spec.symbol] = DataPath(
                    data[spec.symbol], key, hours=hours.get(spec.symbol)
                )
                continue
            self.paths[spec.symbol] = PricePath(
                spec.price,
                symbol_key(scenario.seed, spec.symbol),
                spec.path or scenario.path,
                spec.volume_per_min,
                events=spec.events,
            )

    def now(self) -> float:
        return self.time.now()

    def today(self) -> date:
        return self.clock.local(self.now()).date()

    # ---- prices -------------------------------------------------------------------------
    def underlying(self, symbol: str, ts: float) -> float:
        return self.paths[symbol].price(self.time.market_instant(ts))

    def greeks(self, inst: Instrument, ts: float, spot: float | None = None) -> Greeks:
        ts = self.time.market_instant(ts)
        s = self.underlying(inst.symbol, ts) if spot is None else spot
        expiry = date(int(inst.expiry[:4]), int(inst.expiry[4:6]), int(inst.expiry[6:]))
        years = (self.clock.expiry_close(expiry) - ts) / SECONDS_PER_YEAR
        vol = smile_vol(inst.spec.volatility, s, inst.strike, years)
        return black_scholes(s, inst.strike, years, vol, inst.right)

    def mark(self, inst: Instrument, ts: float) -> float:
        """Fair value: the stock price or the option model price."""
        if inst.is_option:
            return self.greeks(inst, ts).price
        return self.underlying(inst.symbol, ts)

    def quote(self, inst: Instrument, ts: float) -> Quote:
        ts = self.time.market_instant(ts)
        base = self._option_quote(inst, ts) if inst.is_option else self._stock_quote(inst, ts)
        for quirk in self.quirks_for(inst):
            base = _apply_quirk(base, quirk, inst.min_tick)
        return base

    def _stock_quote(self, inst: Instrument, ts: float) -> Quote:
        path = self.paths[inst.symbol]
        price = path.price(ts)
        tick = inst.min_tick
        half = max(tick / 2, price * inst.spec.spread_bps / 20_000)
        bid, ask = _floor(price - half, tick), _ceil(price + half, tick)
        if ask <= bid:
            ask = round(bid + tick, 6)
        start = self.clock.session_start(ts)
        sizes = _sizes(path.key, ts)
        close = path.round(path.price(self.clock.previous_close(ts)))
        return Quote(
            bid,
            ask,
            path.round(price),
            close,
            path.round(path.price(start)),
            sizes[0],
            sizes[1],
            sizes[2],
            float(path.day_volume(start, ts) // 100),
        )

    def _option_quote(self, inst: Instrument, ts: float) -> Quote:
        g = self.greeks(inst, ts)
        tick = inst.min_tick
        half = max(tick, g.price * inst.spec.option_spread_pct / 200)
        bid = max(0.0, _floor(g.price - half, tick))
        ask = max(_ceil(g.price + half, tick), round(bid + tick, 6))
        key = symbol_key(inst.con_id, inst.symbol)
        drift = (unit(key, int(ts // 60)) - 0.5) * half
        last = max(tick, _round(g.price + drift, tick))
        close = _round(self.greeks(inst, self.clock.previous_close(ts)).price, tick)
        atm = math.exp(-((math.log(inst.strike / g.und_price) / 0.06) ** 2))
        volume = float(int(4000 * atm * unit(key, 3)))
        sizes = _sizes(key, ts)
        return Quote(bid, ask, last, max(close, 0.0), None, sizes[0], sizes[1], sizes[2], volume, g)

    def quirks_for(self, inst: Instrument) -> list[QuirkSpec]:
        return [q for q in self.scenario.quirks if _quirk_matches(q, inst)]

    # ---- bars ---------------------------------------------------------------------------
    def bars(
        self,
        inst: Instrument,
        end_ts: float,
        duration_s: float,
        bar_s: int,
        rth: bool,
        now_ts: float,
    ) -> list[Bar]:
        """Bars of ``bar_s`` seconds (a multiple of 60) covering ``duration_s`` up to end.

        Bars of an hour or more align to local time (a daily bar starts at local midnight);
        bars longer than an hour sample every 15th minute (volumes scaled), to stay cheap.
        """
        now_ts = self.time.market_instant(now_ts)
        offset = 0
        if bar_s >= 3600:
            delta = self.clock.local(end_ts).utcoffset()
            offset = int(delta.total_seconds()) if delta else 0
        last_start = (math.ceil((end_ts + offset) / bar_s) - 1) * bar_s - offset
        step = 1 if bar_s <= 3600 else 15
        path = self.paths[inst.symbol]
        out = []
        for i in range(max(1, int(duration_s // bar_s)) - 1, -1, -1):
            start = int(last_start - i * bar_s)
            recorded = None if inst.is_option else path.recorded_bar(start, bar_s)
            if recorded is not None and recorded.start + bar_s <= now_ts:
                out.append(recorded)
                continue
            minutes = [
                m
                for m in range(start // 60, (start + bar_s) // 60, step)
                if m * 60 < now_ts and self._in_session(m * 60, rth) and path.has_minute(m)
            ]
            if minutes:
                bar = aggregate([self._minute(inst, m, now_ts) for m in minutes], start)
                if step > 1:
                    bar = replace(bar, volume=bar.volume * step, count=bar.count * step)
                out.append(bar)
        return out

    def _in_session(self, ts: float, rth: bool) -> bool:
        return self.scenario.session.mode == "always_open" or self.clock.is_open(ts, rth)

    def _minute(self, inst: Instrument, minute: int, now_ts: float) -> Bar:
        path = self.paths[inst.symbol]
        until = now_ts if (minute + 1) * 60 > now_ts else None
        bar = path.minute_bar(minute, until)
        if not inst.is_option:
            return bar
        ends = (bar.start, min(bar.start + 60.0, now_ts))
        o, c = (_round(self.greeks(inst, t, path.price(t)).price, inst.min_tick) for t in ends)
        volume = bar.volume // 200
        return replace(
            bar,
            open=o,
            close=c,
            high=max(o, c),
            low=min(o, c),
            volume=volume,
            wap=round((o + c) / 2, 4),
            count=max(1, volume // 10) if volume else 0,
        )


def _quirk_matches(q: QuirkSpec, inst: Instrument) -> bool:
    if q.symbol != inst.symbol or q.sec_type not in ("ANY", inst.sec_type):
        return False
    if not inst.is_option:
        return True
    if q.right and q.right != inst.right:
        return False
    if q.strike is not None and abs(q.strike - inst.strike) > 1e-9:
        return False
    if q.expiry and q.expiry != inst.expiry:
        return False
    return not (q.every_nth_strike and inst.strike_index % q.every_nth_strike)


def _apply_quirk(quote: Quote, quirk: QuirkSpec, tick: float) -> Quote:
    kind = quirk.kind
    if kind == "minus_one":
        return replace(quote, bid=-1.0, ask=-1.0, bid_size=0.0, ask_size=0.0)
    if kind == "zero":
        return replace(quote, bid=0.0, ask=0.0, last=0.0)
    if kind == "missing":
        return replace(quote, bid=None, ask=None, last=None)
    if kind == "no_last":
        return replace(quote, last=None)
    if kind == "no_close":
        return replace(quote, close=None)
    if kind == "no_volume":
        return replace(quote, volume=None)
    if kind == "no_greeks":
        return replace(quote, greeks_missing=True)
    if quote.bid is None or quote.ask is None or quote.bid < 0 or quote.ask < 0:
        return quote
    mid, half = (quote.bid + quote.ask) / 2, max(tick, (quote.ask - quote.bid) / 2)
    if kind == "crossed":
        return replace(
            quote, bid=_round(mid + 2 * tick, tick), ask=max(tick, _round(mid - 2 * tick, tick))
        )
    wide = half * quirk.factor  # kind == "wide"
    return replace(quote, bid=max(0.0, _floor(mid - wide, tick)), ask=_ceil(mid + wide, tick))


def _sizes(key: int, ts: float) -> tuple[float, float, float]:
    slot = int(ts // 5)
    return (
        float(1 + int(unit(key, slot) * 20)),
        float(1 + int(unit(key, slot + 1) * 20)),
        float(1 + int(unit(key, slot + 2) * 5)),
    )


def _round(value: float, tick: float) -> float:
    return round(round(value / tick) * tick, 6)


def _floor(value: float, tick: float) -> float:
    return round(math.floor(value / tick + 1e-9) * tick, 6)


def _ceil(value: float, tick: float) -> float:
    return round(math.ceil(value / tick - 1e-9) * tick, 6)
