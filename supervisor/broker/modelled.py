"""Modelled option quotes: what a replay answers for a contract the recording never saw.

A replay asked for a strike or an expiry the recorded run never asked for (other settings: a
wider strike window, another DTE) has no recorded answer. It answers with a declared model
instead of failing: Black–Scholes (common/greeks.py, European, no dividends, rate ``RATE``)
at the implied volatility interpolated in strike from the recorded quotes of the same expiry
at that moment, the spot being the underlying's recorded price, and a bid/ask around the
model price as wide as the recorded quotes of that expiry were (their median relative
half-spread, at least a cent). Every such answer is flagged by the caller (``modelled``).

Pure functions over plain values: tested without a recording.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from common.calendar import expiry_close
from common.greeks import bs_greeks, bs_price, implied_vol
from common.messages import OptionContract, OptionQuote
from common.quotes import usable

RATE = 0.04  # the model's risk-free rate (the stub market's too)
MIN_T_YEARS = 1 / (365 * 24)  # an hour: at the close itself the model is only intrinsic value
DEFAULT_HALF_SPREAD = 0.02  # of the price, when no recorded quote has a two-sided market
MIN_HALF_SPREAD = 0.01  # a cent: no listed option quotes tighter


@dataclass(frozen=True)
class SmilePoint:
    """One recorded quote's implied volatility at its strike."""

    strike: float
    iv: float


def years_to(expiry: str, now: float) -> float | None:
    """Years from ``now`` to the expiry's regular close (at least an hour); None if malformed."""
    close = expiry_close(expiry)
    if close is None:
        return None
    return max((close - now) / (365 * 86_400), MIN_T_YEARS)


def quote_iv(quote: OptionQuote, now: float, spot: float | None = None) -> float | None:
    """The quote's implied volatility: the venue's model IV when it sent one, else the one
    that reprices its mid (its ``und_price`` or ``spot`` as the underlying); None if neither."""
    if usable(quote.iv):
        return quote.iv
    if not (usable(quote.bid) and usable(quote.ask)):
        return None
    under = quote.und_price if usable(quote.und_price) else spot
    t_years = years_to(quote.contract.expiry, now)
    if under is None or not usable(under) or t_years is None:
        return None
    mid = (quote.bid + quote.ask) / 2
    return implied_vol(mid, under, quote.contract.strike, t_years, RATE, quote.contract.right)


def interpolate_iv(points: Sequence[SmilePoint], strike: float) -> float | None:
    """The IV at ``strike``: linear between the two recorded strikes around it (their mean
    where a strike has several, a call and a put), the nearest one's beyond the ends (no
    extrapolated smile); None without points."""
    by_strike: dict[float, list[float]] = {}
    for p in points:
        if math.isfinite(p.iv) and p.iv > 0:
            by_strike.setdefault(p.strike, []).append(p.iv)
    if not by_strike:
        return None
    smile = sorted((k, statistics.fmean(v)) for k, v in by_strike.items())
    if strike <= smile[0][0]:
        return smile[0][1]
    if strike >= smile[-1][0]:
        return smile[-1][1]
    for (k0, v0), (k1, v1) in zip(smile, smile[1:], strict=False):
        if k0 <= strike <= k1:
            return v0 + (v1 - v0) * (strike - k0) / (k1 - k0)
    raise AssertionError("unreachable: strike inside the smile's range")


def half_spread(quotes: Sequence[OptionQuote]) -> float:
    """The median of the recorded quotes' half-spread relative to their mid (two-sided ones
    only); ``DEFAULT_HALF_SPREAD`` when none is."""
    fractions = [
        (q.ask - q.bid) / (q.ask + q.bid)
        for q in quotes
        if usable(q.bid) and usable(q.ask) and q.ask >= q.bid
    ]
    return statistics.median(fractions) if fractions else DEFAULT_HALF_SPREAD


def model_quote(
    contract: OptionContract, spot: float, iv: float, now: float, spread: float
) -> OptionQuote:
    """The Black–Scholes quote of ``contract`` at ``now``: bid and ask the model price less
    and plus ``spread`` of it (at least a cent), rounded to cents, the greeks the model's."""
    t_years = years_to(contract.expiry, now)
    if t_years is None:
        raise ValueError(f"{contract.key}: no such expiry")
    price = bs_price(spot, contract.strike, t_years, RATE, iv, contract.right)
    greeks = bs_greeks(spot, contract.strike, t_years, RATE, iv, contract.right)
    half = max(MIN_HALF_SPREAD, round(price * spread, 2))  # a cent grid, as the stub quotes
    return OptionQuote(
        contract=contract,
        bid=round(max(price - half, 0.0), 2),
        ask=round(price + half, 2),
        last=round(price, 2),
        iv=iv,
        delta=greeks.delta,
        gamma=greeks.gamma,
        vega=greeks.vega,
        theta=greeks.theta,
        und_price=spot,
        ts=now,
    )
