"""Indicators against hand computations, and every branch of the scalp and whale rules."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.bars import bars_from_rows
from common.config import ScalpSettings, StrategySettings, WhaleSettings
from common.messages import Bars, Signal
from workers.signals import (
    SignalDecision,
    combined_signal,
    ema,
    rsi,
    scalp_signal,
    vwap,
    whale_signal,
)

pytestmark = pytest.mark.timeout(30)

NAN = math.nan
DAY = 86_400.0
T0 = 1_700_000_100.0
NOW = 1_800_000_000.0


# --- independent references ------------------------------------------------------------------


def ref_ema(values: list[float], period: int) -> list[float]:
    # the "move a fraction k toward the new value" form, written separately from the module's
    out: list[float] = []
    prev = None
    for i, v in enumerate(values):
        if i < period - 1:
            out.append(NAN)
        elif i == period - 1:
            prev = sum(values[:period]) / period
            out.append(prev)
        else:
            assert prev is not None
            prev = prev + (2 / (period + 1)) * (v - prev)
            out.append(prev)
    return out


def ref_rsi(closes: list[float], period: int) -> list[float]:
    gains = [max(b - a, 0.0) for a, b in zip(closes, closes[1:], strict=False)]
    losses = [max(a - b, 0.0) for a, b in zip(closes, closes[1:], strict=False)]
    out = [NAN] * len(closes)
    if len(gains) < period:
        return out
    g = sum(gains[:period]) / period
    lo = sum(losses[:period]) / period
    for i in range(period, len(closes)):
        if i > period:
            g = (g * (period - 1) + gains[i - 1]) / period
            lo = (lo * (period - 1) + losses[i - 1]) / period
        if lo == 0:
            out[i] = 50.0 if g == 0 else 100.0
        else:
            out[i] = 100 * g / (g + lo)  # == 100 - 100 / (1 + g/lo)
    return out


def ref_vwap(bars: Bars) -> float:
    tp = [(h + lo + c) / 3 for h, lo, c in zip(bars.high, bars.low, bars.close, strict=True)]
    total = sum(bars.volume)
    return sum(p * v for p, v in zip(tp, bars.volume, strict=True)) / total


def minute_bars(closes: list[float], volumes: list[float] | None = None) -> Bars:
    volumes = volumes if volumes is not None else [1000.0] * len(closes)
    return bars_from_rows(
        "SPY",
        (
            (T0 + 60 * i, c, c + 0.05, c - 0.05, c, v)
            for i, (c, v) in enumerate(zip(closes, volumes, strict=True))
        ),
    )


def zigzag(start: float, up: float, down: float, n: int) -> list[float]:
    out = [start]
    for i in range(1, n):
        out.append(out[-1] + (up if i % 2 else -down))
    return out


def same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-9, abs=1e-9)
        for x, y in zip(a, b, strict=True)
    )


# --- ema -------------------------------------------------------------------------------------


def test_ema_by_hand() -> None:
    # SMA(1, 2, 3) = 2; k = 2/4 = 0.5: 0.5*4 + 0.5*2 = 3; 0.5*5 + 0.5*3 = 4
    out = ema([1.0, 2.0, 3.0, 4.0, 5.0], 3)
    assert math.isnan(out[0]) and math.isnan(out[1])
    assert out[2:] == [2.0, 3.0, 4.0]


def test_ema_edge_cases() -> None:
    assert ema([3.0, 1.0, 4.0], 1) == [3.0, 1.0, 4.0]  # k = 1: the series itself
    assert all(math.isnan(x) for x in ema([1.0, 2.0], 3))
    assert ema([], 5) == []
    assert ema([7.0] * 10, 4)[3:] == [7.0] * 7
    with pytest.raises(ValueError):
        ema([1.0], 0)


@given(
    st.lists(st.floats(min_value=0.01, max_value=1e4), max_size=80),
    st.integers(min_value=1, max_value=30),
)
def test_ema_matches_reference(values: list[float], period: int) -> None:
    assert same(ema(values, period), ref_ema(values, period))


# --- rsi -------------------------------------------------------------------------------------


def test_rsi_by_hand() -> None:
    # changes +1, -0.5, +1, +0.5 with period 2:
    #   seed: gain (1+0)/2 = 0.5, loss (0+0.5)/2 = 0.25 -> RS 2  -> 100 - 100/3
    #   next: gain (0.5+1)/2 = 0.75, loss 0.25/2 = 0.125 -> RS 6 -> 100 - 100/7
    #   next: gain (0.75+0.5)/2 = 0.625, loss 0.0625  -> RS 10 -> 100 - 100/11
    out = rsi([10.0, 11.0, 10.5, 11.5, 12.0], 2)
    assert math.isnan(out[0]) and math.isnan(out[1])
    assert out[2] == pytest.approx(100 - 100 / 3)
    assert out[3] == pytest.approx(100 - 100 / 7)
    assert out[4] == pytest.approx(100 - 100 / 11)


def test_rsi_extremes() -> None:
    assert rsi([1.0, 2.0, 3.0, 4.0, 5.0], 3)[3:] == [100.0, 100.0]
    assert rsi([5.0, 4.0, 3.0, 2.0, 1.0], 3)[3:] == [0.0, 0.0]
    assert rsi([2.0] * 6, 3)[3:] == [50.0, 50.0, 50.0]
    assert all(math.isnan(x) for x in rsi([1.0, 2.0, 3.0], 3))  # 2 changes < 3
    with pytest.raises(ValueError):
        rsi([1.0, 2.0], 0)


@given(
    st.lists(st.floats(min_value=1.0, max_value=1e3), max_size=80),
    st.integers(min_value=1, max_value=30),
)
def test_rsi_matches_reference_and_stays_in_range(closes: list[float], period: int) -> None:
    out = rsi(closes, period)
    assert same(out, ref_rsi(closes, period))
    assert all(0.0 <= x <= 100.0 for x in out[period:])


# --- vwap ------------------------------------------------------------------------------------


def test_vwap_by_hand() -> None:
    # typical prices: (12+8+10)/3 = 10 and (13+11+12)/3 = 12; volumes 0, 100, 300
    out = vwap([12.0, 12.0, 13.0], [8.0, 8.0, 11.0], [10.0, 10.0, 12.0], [0.0, 100.0, 300.0])
    assert math.isnan(out[0])
    assert out[1] == pytest.approx(10.0)
    assert out[2] == pytest.approx((10 * 100 + 12 * 300) / 400)


def test_vwap_ignores_bad_volume_and_prices() -> None:
    out = vwap([12.0, 99.0, NAN], [8.0, 1.0, 5.0], [10.0, 50.0, 7.0], [100.0, -1.0, 500.0])
    assert out == [pytest.approx(10.0)] * 3


def test_vwap_needs_equal_columns() -> None:
    with pytest.raises(ValueError):
        vwap([1.0], [1.0], [1.0, 2.0], [1.0])


# --- scalp -----------------------------------------------------------------------------------

S = ScalpSettings()  # ema 8/21, rsi 14, band [45, 75], floor 35


def indicators(closes: list[float], s: ScalpSettings = S) -> tuple[float, float, float]:
    return (
        ref_ema(closes, s.ema_fast)[-1],
        ref_ema(closes, s.ema_slow)[-1],
        ref_rsi(closes, s.rsi_period)[-1],
    )


def test_scalp_buy() -> None:
    closes = zigzag(100.0, 1.0, 0.6, 61)  # ends on an up bar
    bars = minute_bars(closes)
    fast, slow, r = indicators(closes)
    assert fast > slow and 45 <= r <= 75 and closes[-1] > ref_vwap(bars)  # the fixture is a BUY
    d = scalp_signal(bars, S)
    assert d.signal is Signal.BUY
    assert 0 < d.confidence <= 1
    assert not d.whale and d.whale_fired_ts is None
    text = " | ".join(d.reasons)
    assert f"ema8 {fast:.2f} > ema21 {slow:.2f}" in text
    assert f"rsi {r:.1f} in [45, 75]" in text
    assert "> vwap" in text


def test_scalp_sell_on_ema_cross_down() -> None:
    closes = zigzag(200.0, 0.6, 1.0, 61)
    fast, slow, r = indicators(closes)
    assert fast < slow and r >= 35
    d = scalp_signal(minute_bars(closes), S)
    assert d.signal is Signal.SELL
    assert 0 < d.confidence <= 1
    assert any(f"ema8 {fast:.2f} < ema21 {slow:.2f}" in x for x in d.reasons)


def test_scalp_sell_on_rsi_floor_despite_rising_emas() -> None:
    s = ScalpSettings(rsi_buy_low=45, rsi_buy_high=55, rsi_sell_floor=70)
    closes = zigzag(100.0, 1.0, 0.6, 61)
    fast, slow, r = indicators(closes, s)
    assert fast > slow and 55 < r < 70
    d = scalp_signal(minute_bars(closes), s)
    assert d.signal is Signal.SELL
    assert any("< sell floor 70" in x for x in d.reasons)


def test_scalp_hold_when_rsi_overbought() -> None:
    closes = [100.0 + 0.1 * i for i in range(40)]  # only gains: RSI 100, above the band
    fast, slow, r = indicators(closes)
    assert fast > slow and r == 100.0
    d = scalp_signal(minute_bars(closes), S)
    assert d.signal is Signal.HOLD and d.confidence == 0.0
    assert any("not in [45, 75]" in x for x in d.reasons)


def test_scalp_hold_when_close_under_vwap() -> None:
    # a huge-volume print at 200 long ago pins the VWAP far above the later uptrend
    closes = [200.0] + zigzag(100.0, 1.0, 0.6, 79)
    volumes = [1e9] + [1000.0] * 79
    bars = minute_bars(closes, volumes)
    fast, slow, r = indicators(closes)
    assert fast > slow and 45 <= r <= 75 and closes[-1] < ref_vwap(bars)
    d = scalp_signal(bars, S)
    assert d.signal is Signal.HOLD
    assert any("< vwap" in x for x in d.reasons)


def test_scalp_not_enough_bars() -> None:
    d = scalp_signal(minute_bars(zigzag(100.0, 1.0, 0.6, 20)), S)
    assert d.signal is Signal.HOLD and d.confidence == 0.0
    assert "not enough bars (have 20, need 21)" in d.reasons
    # the RSI can need more than the slow EMA
    s = ScalpSettings(ema_fast=3, ema_slow=5, rsi_period=30)
    d = scalp_signal(minute_bars(zigzag(100.0, 1.0, 0.6, 30)), s)
    assert "not enough bars (have 30, need 31)" in d.reasons


def test_scalp_empty_bars() -> None:
    d = scalp_signal(Bars("SPY"), S)
    assert d.signal is Signal.HOLD
    assert "not enough bars (have 0, need 21)" in d.reasons


def test_scalp_zero_volume() -> None:
    closes = zigzag(100.0, 1.0, 0.6, 61)
    d = scalp_signal(minute_bars(closes, [0.0] * 61), S)
    assert d.signal is Signal.HOLD
    assert any(x.startswith("no volume") for x in d.reasons)


@pytest.mark.parametrize("bad", [NAN, 0.0, -1.0, math.inf])
def test_scalp_drops_bad_bars(bad: float) -> None:
    closes = zigzag(100.0, 1.0, 0.6, 61)
    clean = scalp_signal(minute_bars(closes), S)
    holed = closes[:30] + [bad] + closes[30:]
    d = scalp_signal(minute_bars(holed), S)
    assert d.signal is clean.signal and d.confidence == pytest.approx(clean.confidence)
    assert any("dropped 1 bad bar(s) (first at index 30)" in x for x in d.reasons)


def test_scalp_bad_bars_count_against_the_minimum() -> None:
    closes = zigzag(100.0, 1.0, 0.6, 22)
    closes[3] = NAN
    closes[10] = NAN
    d = scalp_signal(minute_bars(closes), S)
    assert d.signal is Signal.HOLD
    assert "not enough bars (have 20, need 21)" in d.reasons


price = st.floats(min_value=0.5, max_value=1000.0)
messy = st.one_of(price, st.sampled_from([NAN, 0.0, -1.0, math.inf]))


@settings(max_examples=150)
@given(
    st.lists(st.tuples(messy, st.floats(min_value=0, max_value=1e6)), max_size=80),
    st.integers(min_value=2, max_value=10),
    st.integers(min_value=2, max_value=20),
)
def test_scalp_confidence_in_bounds(
    rows: list[tuple[float, float]], fast: int, rsi_period: int
) -> None:
    s = ScalpSettings(ema_fast=fast, ema_slow=fast + 5, rsi_period=rsi_period)
    bars = minute_bars([c for c, _ in rows], [v for _, v in rows])
    d = scalp_signal(bars, s)
    assert isinstance(d, SignalDecision)
    assert 0.0 <= d.confidence <= 1.0
    assert d.reasons
    if d.signal is Signal.HOLD:
        assert d.confidence == 0.0


@given(st.lists(price, min_size=30, max_size=80))
def test_scalp_buy_only_when_all_three_hold(closes: list[float]) -> None:
    d = scalp_signal(minute_bars(closes), S)
    fast, slow, r = indicators(closes)
    if d.signal is Signal.BUY:
        assert fast > slow and 45 <= r <= 75
        assert closes[-1] > ref_vwap(minute_bars(closes)) * (1 - 1e-12)
    elif d.signal is Signal.SELL:
        assert fast < slow * (1 + 1e-12) or r < 35 + 1e-9


# --- whale -----------------------------------------------------------------------------------

W = WhaleSettings()  # lookback 20, spike 1.5x, debounce 3 days


def hourly(last: tuple[float, float, float, float], n_prev: int = 20) -> Bars:
    """``n_prev`` quiet hours in [99, 101] at volume 1000, then ``last`` = (h, l, c, volume)."""
    rows = [(T0 + 3600 * i, 100.0, 101.0, 99.0, 100.0, 1000.0) for i in range(n_prev)]
    h, lo, c, v = last
    rows.append((T0 + 3600 * n_prev, 100.0, h, lo, c, v))
    return bars_from_rows("SPY", rows)


def test_whale_buy_on_break_up_with_spike() -> None:
    d = whale_signal(hourly((102.5, 100.0, 102.0, 2000.0)), W, NOW, None)
    assert d.signal is Signal.BUY
    assert d.whale and d.whale_fired_ts == NOW
    assert 0.5 <= d.confidence <= 1.0
    assert any("> 20h high 101.00" in x for x in d.reasons)


def test_whale_sell_on_break_down_with_spike() -> None:
    d = whale_signal(hourly((100.0, 96.5, 97.0, 2000.0)), W, NOW, None)
    assert d.signal is Signal.SELL and d.whale and d.whale_fired_ts == NOW
    assert any("< 20h low 99.00" in x for x in d.reasons)


def test_whale_break_without_spike_holds() -> None:
    # 1500 is exactly 1.5 x 1000: a spike must be strictly above
    for volume in (1400.0, 1500.0):
        d = whale_signal(hourly((102.5, 100.0, 102.0, volume)), W, NOW, None)
        assert d.signal is Signal.HOLD and not d.whale and d.whale_fired_ts is None


def test_whale_spike_inside_range_holds() -> None:
    d = whale_signal(hourly((101.0, 99.0, 100.5, 50_000.0)), W, NOW, None)
    assert d.signal is Signal.HOLD and not d.whale
    assert any("inside 20h range" in x for x in d.reasons)


def test_whale_confidence_grows_with_volume() -> None:
    conf = [
        whale_signal(hourly((102.5, 100.0, 102.0, v)), W, NOW, None).confidence
        for v in (1600.0, 2000.0, 2500.0, 3000.0, 1e7)
    ]
    assert conf == sorted(conf) and conf[0] < conf[-1]
    assert all(0.5 <= c <= 1.0 for c in conf)


def test_whale_only_looks_back_lookback_bars() -> None:
    old_peak = (T0 - 3600, 100.0, 500.0, 1.0, 100.0, 1e9)  # outside the 20-bar window
    bars = hourly((102.5, 100.0, 102.0, 2000.0))
    rows = [old_peak] + list(
        zip(bars.ts, bars.open, bars.high, bars.low, bars.close, bars.volume, strict=True)
    )
    d = whale_signal(bars_from_rows("SPY", rows), W, NOW, None)
    assert d.signal is Signal.BUY


# a negative age: the journal remembers a firing from a later day than the one replayed now
@pytest.mark.parametrize(
    "ago_days, fires", [(-10.0, True), (0.0, False), (2.99, False), (3.0, True), (4.0, True)]
)
def test_whale_debounce(ago_days: float, fires: bool) -> None:
    bars = hourly((102.5, 100.0, 102.0, 2000.0))
    d = whale_signal(bars, W, NOW, NOW - ago_days * DAY)
    assert d.whale is fires
    assert d.signal is (Signal.BUY if fires else Signal.HOLD)
    assert any(x.startswith("whale debounced") for x in d.reasons) is not fires


def test_whale_zero_debounce_never_blocks() -> None:
    d = whale_signal(
        hourly((102.5, 100.0, 102.0, 2000.0)), WhaleSettings(debounce_days=0), NOW, NOW
    )
    assert d.whale


def test_whale_disabled() -> None:
    d = whale_signal(hourly((102.5, 100.0, 102.0, 2000.0)), WhaleSettings(enabled=False), NOW, None)
    assert d.signal is Signal.HOLD and not d.whale and d.reasons == ("whale disabled",)


def test_whale_not_enough_bars() -> None:
    d = whale_signal(hourly((102.5, 100.0, 102.0, 2000.0), n_prev=19), W, NOW, None)
    assert d.signal is Signal.HOLD
    assert any("not enough hourly bars (have 20, need 21)" in x for x in d.reasons)
    assert whale_signal(Bars("SPY"), W, NOW, None).signal is Signal.HOLD


def test_whale_drops_nan_bars() -> None:
    bars = hourly((102.5, 100.0, 102.0, 2000.0))
    rows = list(zip(bars.ts, bars.open, bars.high, bars.low, bars.close, bars.volume, strict=True))
    rows.insert(5, (T0 + 1, NAN, NAN, NAN, NAN, NAN))
    d = whale_signal(bars_from_rows("SPY", rows), W, NOW, None)
    assert d.signal is Signal.BUY
    assert any("dropped 1 bad bar(s) (first at index 5)" in x for x in d.reasons)
    # with one of the 20 quiet hours unusable there are too few left
    rows[6] = (T0, 100.0, 101.0, 99.0, -1.0, 1000.0)
    d = whale_signal(bars_from_rows("SPY", rows), W, NOW, None)
    assert d.signal is Signal.HOLD


# --- combined --------------------------------------------------------------------------------


def test_combined_whale_overrides_scalp() -> None:
    s = StrategySettings()
    minutes = minute_bars(zigzag(200.0, 0.6, 1.0, 61))  # scalp says SELL
    assert scalp_signal(minutes, s.scalp).signal is Signal.SELL
    d = combined_signal(minutes, hourly((102.5, 100.0, 102.0, 2000.0)), s, NOW, None)
    assert d.signal is Signal.BUY and d.whale and d.whale_fired_ts == NOW
    assert any(x.startswith("whale:") for x in d.reasons)
    assert any(x.startswith("ema8") for x in d.reasons)


def test_combined_scalp_when_whale_quiet_or_debounced() -> None:
    s = StrategySettings()
    minutes = minute_bars(zigzag(100.0, 1.0, 0.6, 61))  # scalp says BUY
    scalp = scalp_signal(minutes, s.scalp)
    quiet = combined_signal(minutes, hourly((101.0, 99.0, 100.0, 1000.0)), s, NOW, None)
    assert quiet.signal is Signal.BUY and not quiet.whale and quiet.whale_fired_ts is None
    assert quiet.confidence == scalp.confidence
    assert quiet.reasons[: len(scalp.reasons)] == scalp.reasons
    assert any(x.startswith("whale") for x in quiet.reasons)
    # a whale break down inside the debounce window does not override the scalp BUY
    sell_break = hourly((100.0, 96.5, 97.0, 2000.0))
    debounced = combined_signal(minutes, sell_break, s, NOW, NOW - DAY)
    assert debounced.signal is Signal.BUY and not debounced.whale
    assert any(x.startswith("whale debounced") for x in debounced.reasons)


def test_scalp_confidence_grows_with_the_ema_gap() -> None:
    # scaling the steps keeps the RSI (a ratio of moves) but shrinks the EMA gap vs price
    small = zigzag(100.0, 0.05, 0.03, 61)
    big = zigzag(100.0, 1.0, 0.6, 61)
    assert indicators(small)[2] == pytest.approx(indicators(big)[2])
    d_small, d_big = scalp_signal(minute_bars(small), S), scalp_signal(minute_bars(big), S)
    assert d_small.signal is d_big.signal is Signal.BUY
    assert d_small.confidence < d_big.confidence


def test_usable_each_reads_a_float_column_as_usable_does() -> None:
    from array import array
    from typing import Any

    from common.quotes import usable
    from workers.signals import _usable_each

    values = [1.5, 0.0, -1.0, math.nan, math.inf, -math.inf, 1e-9, 680.25]
    assert _usable_each(array("d", values)) == [usable(v) for v in values]
    odd: list[Any] = [*values, None, True]  # a list from a caller: usable's own checks
    assert _usable_each(odd) == [usable(v) for v in odd]
