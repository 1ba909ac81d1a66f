"""Deterministic price paths: any minute of any symbol in O(1), the same on every run.

log(price / base) = envelope(t) * fast waves(t) + slow waves(t) + noise(t)

The fast waves (tens of minutes to hours) make EMA/RSI/VWAP trends that alternate up and down;
the envelope switches them off about a third of the time (flat, choppy stretches); the slow
waves drift over days; the noise is hash-seeded per minute and linearly interpolated, so the
price is continuous and any window of bars can be served without walking from a start date.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tools.gateway_sim.scenario import EventSpec, PathSpec

_MASK = (1 << 64) - 1
TWO_PI = 2.0 * math.pi


def mix64(value: int) -> int:
    """splitmix64 finaliser: a fast, well-spread integer hash."""
    z = (value + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def unit(key: int, n: int) -> float:
    """Deterministic uniform number in [0, 1) for (key, n)."""
    return mix64((key * 0x100000001B3) ^ (n & _MASK)) / float(1 << 64)


def symbol_key(seed: int, symbol: str) -> int:
    key = mix64(seed & _MASK)
    for ch in symbol.encode():
        key = mix64(key ^ ch)
    return key


@dataclass(frozen=True)
class Bar:
    start: int  # epoch seconds of the bar's first second
    open: float
    high: float
    low: float
    close: float
    volume: int
    wap: float
    count: int


@dataclass(frozen=True)
class _Wave:
    period_s: float
    amplitude: float  # in log units
    phase: float

    def at(self, t: float) -> float:
        return self.amplitude * math.sin(TWO_PI * t / self.period_s + self.phase)


class PricePath:
    """One symbol's path; ``price(t)`` for any epoch second, ``minute_bar(i)`` per minute."""

    def __init__(
        self,
        base: float,
        key: int,
        spec: PathSpec,
        volume_per_min: int,
        tick: float = 0.01,
        events: Sequence[EventSpec] = (),
    ) -> None:
        self.base = base
        # news: (from epoch s, log move, volume factor until epoch s), ramped over a minute
        # so the price stays continuous
        self.events = [
            (
                e.at.timestamp(),
                math.log1p(e.move_pct / 100.0),
                e.volume_x,
                e.at.timestamp() + e.duration_min * 60.0,
            )
            for e in events
        ]
        self.key = key
        self.tick = tick
        self.noise = spec.noise_pct / 100.0
        self.volume_per_min = volume_per_min
        stretch = 1.0 + spec.period_jitter * (2.0 * unit(key, 1) - 1.0)
        self.fast = self._waves(spec.fast_waves, stretch, 10)
        self.slow = self._waves(spec.slow_waves, stretch, 20)
        self.env_period = spec.envelope_period_min * 60.0 * stretch
        self.env_phase = TWO_PI * unit(key, 3)

    def _waves(self, specs: list, stretch: float, salt: int) -> list[_Wave]:
        return [
            _Wave(
                w.period_min * 60.0 * stretch,
                w.amplitude_pct / 100.0,
                TWO_PI * unit(self.key, salt + i),
            )
            for i, w in enumerate(specs)
        ]

    def envelope(self, t: float) -> float:
        raw = 0.5 + 1.2 * math.sin(TWO_PI * t / self.env_period + self.env_phase)
        return min(1.0, max(0.0, raw))

    def _noise_knot(self, minute: int) -> float:
        return (2.0 * unit(self.key, minute * 4 + 1000) - 1.0) * self.noise

    def log_level(self, t: float) -> float:
        minute = math.floor(t / 60.0)
        frac = t / 60.0 - minute
        noise = (1.0 - frac) * self._noise_knot(minute) + frac * self._noise_knot(minute + 1)
        fast = sum(w.at(t) for w in self.fast)
        slow = sum(w.at(t) for w in self.slow)
        news = sum(
            move * min(1.0, (t - at) / 60.0) for at, move, _x, _until in self.events if t > at
        )
        return self.envelope(t) * fast + slow + noise + news

    def price(self, t: float) -> float:
        return self.base * math.exp(self.log_level(t))

    def has_minute(self, minute: int) -> bool:
        """Whether the minute has a bar (a synthetic path trades every minute)."""
        return True

    def recorded_bar(self, start: int, bar_s: int) -> Bar | None:
        """A bar served as recorded rather than made from minutes: none on a synthetic path."""
        return None

    def round(self, value: float) -> float:
        return round(round(value / self.tick) * self.tick, 6)

    def minute_bar(self, minute: int, until: float | None = None) -> Bar:
        """The 1-minute bar starting at ``minute * 60``; partial when ``until`` cuts it."""
        start = minute * 60
        end = float(start + 60) if until is None else min(float(start + 60), until)
        share = max(0.0, min(1.0, (end - start) / 60.0))
        o, c = self.price(start), self.price(end)
        up = unit(self.key, minute * 4 + 2) * self.noise * 0.8 * share
        down = unit(self.key, minute * 4 + 3) * self.noise * 0.8 * share
        high = self.round(max(o, c) * (1.0 + up))
        low = self.round(min(o, c) * (1.0 - down))
        o, c = self.round(o), self.round(c)
        volume = int(self._volume(minute, o, c) * share)
        wap = round((o + high + low + c) / 4.0, 4)
        return Bar(
            start,
            o,
            max(high, o, c),
            min(low, o, c),
            c,
            volume,
            wap,
            max(1, volume // 100) if volume else 0,
        )

    def _volume(self, minute: int, o: float, c: float) -> float:
        move = abs(c - o) / (o * max(self.noise, 1e-6) * 2.0)
        hour_spike = 3.0 if unit(self.key, minute // 60 + 7_000_000) < 0.06 else 1.0
        jitter = 0.5 + unit(self.key, minute * 4 + 4)
        news = 1.0
        for at, _move, factor, until in self.events:
            if at <= minute * 60 < until:
                news *= factor
        return self.volume_per_min * jitter * (1.0 + min(3.0, move)) * hour_spike * news

    def day_volume(self, since: float, now: float) -> int:
        """Cumulative volume since ``since``: an O(1) estimate, not a sum of bars."""
        minutes = max(0.0, (now - since) / 60.0)
        return int(self.volume_per_min * 1.5 * minutes * (0.8 + 0.4 * unit(self.key, 99)))


def aggregate(bars: list[Bar], start: int) -> Bar:
    """Merge consecutive minute bars into one bar starting at ``start``."""
    volume = sum(b.volume for b in bars)
    if volume:
        wap = sum(b.wap * b.volume for b in bars) / volume
    else:
        wap = sum(b.wap for b in bars) / len(bars)
    return Bar(
        start=start,
        open=bars[0].open,
        high=max(b.high for b in bars),
        low=min(b.low for b in bars),
        close=bars[-1].close,
        volume=volume,
        wap=round(wap, 4),
        count=sum(b.count for b in bars),
    )
