"""StubBroker: deterministic prices, well-formed bars, a SPY-like chain, sane option quotes,
and a session whose scalp/whale signals are not all the same."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest

from common.config import Settings, StubSettings
from common.messages import Bars, OptionContract, Right, Signal
from supervisor.broker.base import SymbolDataError
from supervisor.broker.stub import StubBroker, stub_strikes, weekly_expiries
from workers.signals import combined_signal

pytestmark = pytest.mark.timeout(30)

T = TypeVar("T")
ET = timezone(timedelta(hours=-5))  # January: EST
# Thursday 2026-01-08 10:30:30 ET, half a minute into the 10:30 bar
NOW = datetime(2026, 1, 8, 10, 30, 30, tzinfo=ET).timestamp()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def broker(seed: int = 7, now: float = NOW) -> StubBroker:
    return StubBroker(StubSettings(seed=seed), now=lambda: now)


class MovingClock:
    def __init__(self, start: float) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


def columns(bars: Bars) -> list[list[float]]:
    return [list(c) for c in (bars.ts, bars.open, bars.high, bars.low, bars.close, bars.volume)]


def assert_well_formed(bars: Bars, step_s: float) -> None:
    lengths = {len(c) for c in columns(bars)}
    assert lengths == {len(bars)}, lengths
    assert len(bars) > 0
    gaps = {b - a for a, b in zip(bars.ts, bars.ts[1:], strict=False)}
    assert gaps == {step_s}
    for i in range(len(bars)):
        o, h, lo, c = bars.open[i], bars.high[i], bars.low[i], bars.close[i]
        assert all(math.isfinite(x) and x > 0 for x in (o, h, lo, c)), i
        assert h >= max(o, c), i
        assert lo <= min(o, c), i
        assert math.isfinite(bars.volume[i]) and bars.volume[i] >= 0, i


# --- determinism -----------------------------------------------------------------------------


def test_same_seed_gives_identical_bars_and_quotes() -> None:
    a, b = broker(seed=7), broker(seed=7)
    for symbol in ("SPY", "QQQ", "AAPL", "ZZZZ"):
        assert columns(run(a.bars(symbol, 120))) == columns(run(b.bars(symbol, 120)))
        assert run(a.quote(symbol)) == run(b.quote(symbol))


def test_order_of_requests_does_not_change_the_prices() -> None:
    # Given one broker asked for QQQ then SPY, another asked for SPY only
    a, b = broker(), broker()
    run(a.bars("QQQ", 300))
    run(a.quote("QQQ"))
    # Then SPY is the same on both
    assert columns(run(a.bars("SPY", 120))) == columns(run(b.bars("SPY", 120)))


def test_different_seed_gives_different_prices() -> None:
    a, b = broker(seed=7), broker(seed=8)
    closes_a = list(run(a.bars("SPY", 120)).close)
    closes_b = list(run(b.bars("SPY", 120)).close)
    assert len(closes_a) == len(closes_b)
    assert sum(1 for x, y in zip(closes_a, closes_b, strict=True) if x != y) > 100
    assert run(a.quote("SPY")).last != run(b.quote("SPY")).last


def test_overlapping_windows_agree() -> None:
    # A completed bar never changes: the window 5 minutes later repeats the shared bars
    clock = MovingClock(NOW)
    stub = StubBroker(StubSettings(), now=clock)
    first = run(stub.bars("AAPL", 120))
    clock.t += 300
    later = run(stub.bars("AAPL", 120))
    shared = {ts: i for i, ts in enumerate(later.ts)}
    common_ts = [ts for ts in first.ts if ts in shared]
    assert len(common_ts) >= 110
    for i, ts in enumerate(first.ts):
        if ts in shared:
            j = shared[ts]
            assert (first.open[i], first.high[i], first.low[i], first.close[i]) == (
                later.open[j],
                later.high[j],
                later.low[j],
                later.close[j],
            )


@pytest.mark.timeout(150)  # 61 cycles of 1,200 symbols: CPU-bound, ~6 s alone, 4x under load
def test_a_large_universe_computes_each_bar_once_and_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given 1,200 symbols asking for 20 one-minute bars every cycle (24,000 bars a cycle: a
    # cache capped at 20,000 would clear itself and compute everything again each time)
    clock = MovingClock(NOW)
    stub = StubBroker(StubSettings(), now=clock)
    computed = 0
    bar = stub._bar

    def counting(*args: Any) -> Any:
        nonlocal computed
        computed += 1
        return bar(*args)

    monkeypatch.setattr(stub, "_bar", counting)
    symbols = [f"S{i:04d}" for i in range(1200)]

    async def cycle() -> None:
        for symbol in symbols:
            await stub.bars(symbol, 20)

    run(cycle())
    assert computed == 1200 * 20
    # When the next cycles come a minute apart, for an hour
    for _ in range(60):
        clock.t += 60
        computed = 0
        run(cycle())
        # Then each cycle computes only the bar each symbol completed since
        assert computed == 1200
    # and the cache holds no more than the window and a margin, per symbol
    assert all(len(series) <= 2 * 21 + 16 for series in stub._bar_cache.values())


def test_base_prices_place_the_path() -> None:
    stub = StubBroker(StubSettings(base_prices={"SPY": 100.0}), now=lambda: NOW)
    last = run(stub.quote("SPY")).last
    # the trends move log(price) by at most 0.01 + 0.004 + 0.0015 + noise 0.0008 (~1.6 %)
    assert 98.0 < last < 102.0


# --- bars --------------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", ["SPY", "QQQ", "AAPL", "ZZZZ"])
def test_minute_bars_are_well_formed(symbol: str) -> None:
    bars = run(broker().bars(symbol, 240))
    assert bars.symbol == symbol
    assert_well_formed(bars, 60.0)


@pytest.mark.parametrize("symbol", ["SPY", "QQQ", "AAPL"])
def test_hourly_bars_are_well_formed_and_on_the_hour(symbol: str) -> None:
    bars = run(broker().bars(symbol, 22 * 60, bar_minutes=60))
    assert_well_formed(bars, 3600.0)
    assert all(ts % 3600 == 0 for ts in bars.ts)
    # 22 hours back, completed hours only: 22 or 23 bars, the last ending by now
    assert 21 <= len(bars) <= 23
    assert bars.ts[-1] + 3600 <= NOW


def test_bars_cover_the_window_and_end_before_the_current_minute() -> None:
    bars = run(broker().bars("SPY", 120))
    current_minute = math.floor(NOW / 60) * 60  # 10:30:00 ET; its bar is still forming
    assert 119 <= len(bars) <= 121
    assert bars.ts[-1] < current_minute
    assert bars.ts[-1] == current_minute - 60  # the 10:29 bar is the newest completed one
    assert bars.ts[0] >= current_minute - 121 * 60


def test_bars_prices_stay_near_the_base() -> None:
    bars = run(broker().bars("SPY", 24 * 60))
    # base 680; the sinusoids and noise move log(price) by under 2 %
    assert min(bars.low) > 680 * 0.98
    assert max(bars.high) < 680 * 1.02


# --- quotes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", ["SPY", "QQQ", "AAPL"])
def test_underlying_quote_is_sane(symbol: str) -> None:
    quote = run(broker().quote(symbol))
    assert quote.symbol == symbol
    assert quote.ts == NOW
    assert 0 < quote.bid < quote.ask
    assert quote.bid <= quote.last <= quote.ask
    assert math.isfinite(quote.close) and quote.close > 0
    # a quote's last sits near the latest completed bar's close (within 0.5 %)
    last_close = run(broker().bars(symbol, 5)).close[-1]
    assert abs(quote.last / last_close - 1) < 0.005


# --- the option chain --------------------------------------------------------------------------


def test_spy_chain_has_about_400_strikes() -> None:
    chain = run(broker().chain("SPY"))
    assert chain.symbol == "SPY"
    assert chain.multiplier == 100
    assert 350 <= len(chain.strikes) <= 450
    assert list(chain.strikes) == sorted(set(chain.strikes))
    spot = run(broker().quote("SPY")).last
    # 1-wide strikes around the money
    near = [k for k in chain.strikes if abs(k - spot) <= 10]
    assert len(near) >= 19
    assert all(b - a == 1.0 for a, b in zip(near, near[1:], strict=False))


def test_chain_expirations_are_weekly_fridays_from_today() -> None:
    chain = run(broker().chain("AAPL"))
    # Thursday 2026-01-08: the first Friday is tomorrow, then every week
    assert chain.expirations[:4] == ("20260109", "20260116", "20260123", "20260130")
    days = [datetime.strptime(e, "%Y%m%d").replace(tzinfo=UTC) for e in chain.expirations]
    assert all(d.weekday() == 4 for d in days)
    assert all((b - a).days == 7 for a, b in zip(days, days[1:], strict=False))


def test_spy_and_qqq_list_a_daily_expiry_every_session_as_ibkr_does() -> None:
    for symbol in ("SPY", "QQQ"):
        chain = run(broker().chain(symbol))
        # today (0-DTE), then every session of two weeks; Monday 01-19 is MLK Day (closed)
        assert chain.expirations[:7] == (
            "20260108",
            "20260109",
            "20260112",
            "20260113",
            "20260114",
            "20260115",
            "20260116",
        )
        assert "20260119" not in chain.expirations and "20260120" in chain.expirations


def test_a_holiday_friday_moves_the_weekly_to_thursday() -> None:
    # Good Friday 2026-04-03: NYSE is closed, the weekly expires Thursday 04-02
    monday = datetime(2026, 3, 30, 14, 0, tzinfo=UTC).timestamp()  # 10:00 New York
    chain = run(broker(now=monday).chain("AAPL"))
    assert chain.expirations[0] == "20260402" and "20260403" not in chain.expirations


def test_a_friday_expires_the_same_day() -> None:
    friday = datetime(2026, 1, 9, 10, 0, tzinfo=ET).timestamp()
    chain = run(broker(now=friday).chain("SPY"))
    assert chain.expirations[0] == "20260109"


def test_weekly_expiries_from_a_saturday() -> None:
    from datetime import date

    assert weekly_expiries(date(2026, 1, 10), weeks=2) == ("20260116", "20260123")


def test_stub_strikes_are_half_wide_for_cheap_underlyings() -> None:
    strikes = stub_strikes(40.0)
    near = [k for k in strikes if 36 <= k <= 44]
    assert all(b - a == 0.5 for a, b in zip(near, near[1:], strict=False))
    assert all(k > 0 for k in strikes)


# --- option quotes -----------------------------------------------------------------------------


def test_option_quotes_near_the_money_are_sane() -> None:
    stub = broker()
    spot = run(stub.quote("SPY")).last
    atm = round(spot)
    contracts = [
        OptionContract("SPY", "20260116", float(k), right)
        for k in range(atm - 10, atm + 11)
        for right in (Right.CALL, Right.PUT)
    ]

    quotes = run(stub.option_quotes(contracts))

    assert [q.contract for q in quotes] == contracts
    for q in quotes:
        assert 0 <= q.bid < q.ask, q
        assert q.ask > 0
        for greek in (q.delta, q.gamma, q.vega, q.theta, q.iv, q.und_price):
            assert math.isfinite(greek), q
        if q.contract.right is Right.CALL:
            assert 0 < q.delta < 1, q
        else:
            assert -1 < q.delta < 0, q
        assert q.gamma > 0
        assert q.ts == NOW


def test_call_delta_falls_and_put_price_rises_with_the_strike() -> None:
    stub = broker()
    strikes = [660.0, 680.0, 700.0]
    calls = run(
        stub.option_quotes([OptionContract("SPY", "20260116", k, Right.CALL) for k in strikes])
    )
    puts = run(
        stub.option_quotes([OptionContract("SPY", "20260116", k, Right.PUT) for k in strikes])
    )
    assert calls[0].delta > calls[1].delta > calls[2].delta
    assert puts[0].ask < puts[1].ask < puts[2].ask


def test_option_quote_for_a_zero_strike_is_a_symbol_data_error() -> None:
    with pytest.raises(SymbolDataError):
        run(broker().option_quotes([OptionContract("SPY", "20260116", 0.0, Right.CALL)]))


# --- a session ---------------------------------------------------------------------------------


def test_a_session_produces_buy_sell_and_hold() -> None:
    # Given the stub clock stepping 5 minutes from 09:45 to 15:55 ET on Thursday 2026-01-08
    clock = MovingClock(0.0)
    stub = StubBroker(StubSettings(), now=clock)
    strategy = Settings().strategy
    start = datetime(2026, 1, 8, 9, 45, tzinfo=ET).timestamp()
    end = datetime(2026, 1, 8, 15, 55, tzinfo=ET).timestamp()
    seen: dict[Signal, int] = {Signal.BUY: 0, Signal.SELL: 0, Signal.HOLD: 0}
    whale_last: dict[str, float | None] = {}

    # When every symbol is decided at every step, as a worker would
    clock.t = start
    steps = 0
    while clock.t <= end:
        steps += 1
        for symbol in ("SPY", "QQQ", "AAPL"):
            minute = run(stub.bars(symbol, 120))
            hourly = run(stub.bars(symbol, 22 * 60, 60))
            decision = combined_signal(minute, hourly, strategy, clock.t, whale_last.get(symbol))
            if decision.whale_fired_ts is not None:
                whale_last[symbol] = decision.whale_fired_ts
            seen[decision.signal] += 1
        clock.t += 300

    # Then 09:45 .. 15:55 is 75 steps, and every kind of signal shows up at least once
    assert steps == 75
    assert sum(seen.values()) == 3 * 75
    assert all(count >= 1 for count in seen.values()), seen
