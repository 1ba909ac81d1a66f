"""The seed strategy's signal rules in pure Python: EMA/RSI/VWAP scalp and hourly whale breaks.

Everything here is a function of the bars and the settings: no clock, no broker, no I/O, so a
decision can be replayed from the logged inputs.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from common.config import ScalpSettings, StrategySettings, WhaleSettings
from common.messages import Bars, Signal
from common.quotes import usable

NAN = math.nan
# The fast/slow EMA gap (as a fraction of price) that earns full EMA confidence: on 1-minute
# bars the two averages rarely separate by more than a few tenths of a percent.
EMA_GAP_FULL = 0.005
DAY_S = 86_400.0


@dataclass(frozen=True)
class SignalDecision:
    signal: Signal
    confidence: float  # 0..1
    reasons: tuple[str, ...]
    whale: bool = False
    whale_fired_ts: float | None = None


# --- indicators ------------------------------------------------------------------------------


def ema(values: Sequence[float], period: int) -> list[float]:
    """Exponential moving average seeded with the SMA of the first ``period`` values."""
    if period < 1:
        raise ValueError(f"ema period must be >= 1, got {period}")
    out = [NAN] * len(values)
    if len(values) < period:
        return out
    value = sum(values[:period]) / period
    out[period - 1] = value
    k = 2.0 / (period + 1)
    for i in range(period, len(values)):
        value = values[i] * k + value * (1.0 - k)
        out[i] = value
    return out


def _rsi_from(avg_gain: float, avg_loss: float) -> float:
    if avg_loss == 0:
        # a flat window has no direction; only gains is the maximum
        return 50.0 if avg_gain == 0 else 100.0
    return 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)


def rsi(closes: Sequence[float], period: int) -> list[float]:
    """Wilder's RSI: NaN until ``period`` changes are known (index ``period`` is the first)."""
    if period < 1:
        raise ValueError(f"rsi period must be >= 1, got {period}")
    out = [NAN] * len(closes)
    if len(closes) <= period:
        return out
    gain = loss = 0.0
    for i in range(1, period + 1):
        change = closes[i] - closes[i - 1]
        gain += max(change, 0.0)
        loss += max(-change, 0.0)
    avg_gain, avg_loss = gain / period, loss / period
    out[period] = _rsi_from(avg_gain, avg_loss)
    for i in range(period + 1, len(closes)):
        change = closes[i] - closes[i - 1]
        avg_gain = (avg_gain * (period - 1) + max(change, 0.0)) / period
        avg_loss = (avg_loss * (period - 1) + max(-change, 0.0)) / period
        out[i] = _rsi_from(avg_gain, avg_loss)
    return out


def vwap(
    high: Sequence[float], low: Sequence[float], close: Sequence[float], volume: Sequence[float]
) -> list[float]:
    """Cumulative VWAP of the typical price (h+l+c)/3; NaN while the cumulative volume is 0.

    A bar with a non-finite price or a volume that is not finite and > 0 (IBKR's -1) adds
    nothing, so one bad bar cannot poison every later value.
    """
    n = len(close)
    if not len(high) == len(low) == len(volume) == n:
        raise ValueError("vwap columns differ in length")
    out = [NAN] * n
    pv = vol = 0.0
    for i in range(n):
        typical = (high[i] + low[i] + close[i]) / 3.0
        if math.isfinite(typical) and math.isfinite(volume[i]) and volume[i] > 0:
            pv += typical * volume[i]
            vol += volume[i]
        if vol > 0:
            out[i] = pv / vol
    return out


# --- helpers ---------------------------------------------------------------------------------


def _px(x: float) -> str:
    return f"{x:.2f}" if abs(x) >= 1 else f"{x:.4g}"


def _op(a: float, b: float) -> str:
    return ">" if a > b else "<" if a < b else "="


def _clamp01(x: float) -> float:
    return 0.0 if not x > 0 else 1.0 if x > 1 else x  # NaN -> 0


def _hold(*reasons: str) -> SignalDecision:
    return SignalDecision(Signal.HOLD, 0.0, tuple(reasons))


def _dropped_reason(what: str, dropped: list[int]) -> tuple[str, ...]:
    if not dropped:
        return ()
    return (f"{what}: dropped {len(dropped)} bad bar(s) (first at index {dropped[0]})",)


# --- scalp -----------------------------------------------------------------------------------


def _usable_each(values: Sequence[float]) -> list[bool]:
    """``usable`` of each value, once: a session's bars are looked at several times a cycle.
    A float column (array 'd', what the broker sends) needs no type check: 0 < x < inf is
    False for NaN, the infinities, zero and IBKR's -1, as ``usable`` is."""
    if isinstance(values, array) and values.typecode == "d":
        return [0.0 < x < math.inf for x in values]
    return [usable(x) for x in values]


def scalp_signal(
    bars: Bars, s: ScalpSettings, session_open_ts: float | None = None
) -> SignalDecision:
    """EMA cross + VWAP + RSI band on 1-minute bars.

    Bars whose close is not a usable price (NaN, inf, <= 0) are dropped, not fatal: IBKR leaves
    such holes in otherwise good history, and a reason records how many went. The EMAs and RSI
    run over the newest ``s.bars_minutes`` bars (yesterday's session included, early in the
    day); VWAP is the session's, anchored to ``session_open_ts`` over every bar since the open
    however old the session is (the pipeline asks for them all), or over the lookback when no
    session is known.
    """
    lookback = range(max(0, len(bars) - s.bars_minutes), len(bars))
    good = _usable_each(bars.close)
    kept = [i for i in lookback if good[i]]
    dropped = [i for i in lookback if not good[i]]
    pre = _dropped_reason("scalp", dropped)
    closes = [bars.close[i] for i in kept]
    need = max(s.ema_slow, s.rsi_period + 1)
    if len(closes) < need:
        return _hold(*pre, f"not enough bars (have {len(closes)}, need {need})")

    session = lookback if session_open_ts is None else range(len(bars))
    today = [
        i for i in session if good[i] and (session_open_ts is None or bars.ts[i] >= session_open_ts)
    ]
    if not today:
        return _hold(*pre, "no bar of today's session yet (vwap undefined)")
    vw = vwap(
        [bars.high[i] for i in today],
        [bars.low[i] for i in today],
        [bars.close[i] for i in today],
        [bars.volume[i] for i in today],
    )[-1]
    if math.isnan(vw):
        return _hold(*pre, "no volume (vwap undefined)")
    fast, slow = ema(closes, s.ema_fast)[-1], ema(closes, s.ema_slow)[-1]
    r = rsi(closes, s.rsi_period)[-1]
    last = closes[-1]
    if not all(math.isfinite(x) for x in (fast, slow, r, vw)):
        return _hold(*pre, "indicators not finite (absurd prices)")

    in_band = s.rsi_buy_low <= r <= s.rsi_buy_high
    reasons = [
        *pre,
        f"ema{s.ema_fast} {_px(fast)} {_op(fast, slow)} ema{s.ema_slow} {_px(slow)}",
        f"rsi {r:.1f} {'in' if in_band else 'not in'} [{s.rsi_buy_low:g}, {s.rsi_buy_high:g}]",
        f"close {_px(last)} {_op(last, vw)} vwap {_px(vw)}",
    ]
    if r < s.rsi_sell_floor:
        reasons.append(f"rsi {r:.1f} < sell floor {s.rsi_sell_floor:g}")
    return _scalp_verdict(fast, slow, r, last, vw, s, tuple(reasons))


def _scalp_verdict(
    fast: float,
    slow: float,
    r: float,
    last: float,
    vw: float,
    s: ScalpSettings,
    reasons: tuple[str, ...],
) -> SignalDecision:
    """BUY on an up-cross above VWAP with RSI in the band, SELL on a down-cross or RSI under
    the floor, else HOLD; confidence from the EMA gap and the RSI's place."""
    gap_score = _clamp01(abs(fast - slow) / last / EMA_GAP_FULL)
    if fast > slow and last > vw and s.rsi_buy_low <= r <= s.rsi_buy_high:
        # the middle of the band is the safest momentum: the edges are about to leave it
        half = (s.rsi_buy_high - s.rsi_buy_low) / 2
        centre = s.rsi_buy_low + half
        band_score = 1.0 if half == 0 else _clamp01(1 - abs(r - centre) / half)
        confidence = 0.5 * gap_score + 0.5 * band_score
        return SignalDecision(Signal.BUY, _clamp01(confidence), reasons)
    if fast < slow or r < s.rsi_sell_floor:
        ema_part = gap_score if fast < slow else 0.0
        rsi_part = (s.rsi_sell_floor - r) / s.rsi_sell_floor if r < s.rsi_sell_floor else 0.0
        confidence = 0.5 * ema_part + 0.5 * _clamp01(rsi_part)
        return SignalDecision(Signal.SELL, _clamp01(confidence), reasons)
    return SignalDecision(Signal.HOLD, 0.0, reasons)


# --- whale -----------------------------------------------------------------------------------


def _good_hourly(bars: Bars, i: int) -> bool:
    v = bars.volume[i]
    prices = (bars.close[i], bars.high[i], bars.low[i])
    return all(usable(p) for p in prices) and math.isfinite(v) and v >= 0


def whale_signal(
    hourly: Bars, s: WhaleSettings, now_ts: float, last_fired_ts: float | None
) -> SignalDecision:
    """A close beyond the previous ``lookback_bars`` hours' range on a volume spike.

    Bars without usable high/low/close or with a non-finite/negative volume are dropped.
    When the lookback's average volume is 0, any volume > 0 counts as a spike.
    """
    if not s.enabled:
        return _hold("whale disabled")
    window = s.debounce_days * DAY_S
    # a firing later than now (a replay of an earlier day on the same journal, a clock set
    # back) debounces nothing: only one in the window before now does
    if last_fired_ts is not None and 0 <= now_ts - last_fired_ts < window:
        ago_h = (now_ts - last_fired_ts) / 3600
        return _hold(f"whale debounced (fired {ago_h:.1f}h ago, window {s.debounce_days:g}d)")

    kept = [i for i in range(len(hourly)) if _good_hourly(hourly, i)]
    dropped = [i for i in range(len(hourly)) if not _good_hourly(hourly, i)]
    pre = _dropped_reason("whale", dropped)
    need = s.lookback_bars + 1
    if len(kept) < need:
        return _hold(*pre, f"whale: not enough hourly bars (have {len(kept)}, need {need})")

    prev, last = kept[-need:-1], kept[-1]
    high = max(hourly.high[i] for i in prev)
    low = min(hourly.low[i] for i in prev)
    avg_volume = sum(hourly.volume[i] for i in prev) / len(prev)
    close, volume = hourly.close[last], hourly.volume[last]
    threshold = s.volume_spike * avg_volume
    spike = volume > threshold
    n = s.lookback_bars
    vol_reason = (
        f"whale volume {volume:g} {_op(volume, threshold)} {s.volume_spike:g}x avg {avg_volume:.0f}"
    )
    if close > high:
        where, signal = f"whale: close {_px(close)} > {n}h high {_px(high)}", Signal.BUY
    elif close < low:
        where, signal = f"whale: close {_px(close)} < {n}h low {_px(low)}", Signal.SELL
    else:
        where, signal = (
            f"whale: close {_px(close)} inside {n}h range [{_px(low)}, {_px(high)}]",
            Signal.HOLD,
        )
    if signal is Signal.HOLD or not spike:
        return _hold(*pre, where, vol_reason)
    # at the threshold confidence is 0.5; twice the threshold or more is full
    confidence = 1.0 if threshold == 0 else _clamp01(0.5 + 0.5 * (volume / threshold - 1))
    return SignalDecision(
        signal, confidence, (*pre, where, vol_reason), whale=True, whale_fired_ts=now_ts
    )


# --- both ------------------------------------------------------------------------------------


def combined_signal(
    minute_bars: Bars,
    hourly_bars: Bars,
    s: StrategySettings,
    now_ts: float,
    whale_last_ts: float | None,
    session_open_ts: float | None = None,
) -> SignalDecision:
    """The scalp decision, overridden by the whale one when it fires; both keep their reasons."""
    scalp = scalp_signal(minute_bars, s.scalp, session_open_ts)
    whale = whale_signal(hourly_bars, s.whale, now_ts, whale_last_ts)
    if whale.whale:
        return SignalDecision(
            whale.signal,
            whale.confidence,
            whale.reasons + scalp.reasons,
            whale=True,
            whale_fired_ts=whale.whale_fired_ts,
        )
    return SignalDecision(scalp.signal, scalp.confidence, scalp.reasons + whale.reasons)
