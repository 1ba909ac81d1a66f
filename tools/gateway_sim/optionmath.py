"""Black-Scholes price and greeks for the simulated option quotes (IB conventions).

IB reports vega per 1 volatility point (1 %) and theta per calendar day; the sim does too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

RATE = 0.04
SECONDS_PER_YEAR = 365.0 * 86_400.0
MIN_YEARS = 1.0 / (365.0 * 24.0 * 4.0)  # 15 minutes: keeps expiring options finite


@dataclass(frozen=True)
class Greeks:
    price: float
    delta: float
    gamma: float
    vega: float
    theta: float
    iv: float
    und_price: float


def _cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def black_scholes(spot: float, strike: float, years: float, vol: float, right: str) -> Greeks:
    """European price and greeks; ``right`` is "C" or "P"."""
    t = max(years, MIN_YEARS)
    sq = vol * math.sqrt(t)
    d1 = (math.log(spot / strike) + (RATE + 0.5 * vol * vol) * t) / sq
    d2 = d1 - sq
    disc = math.exp(-RATE * t)
    if right == "C":
        price = spot * _cdf(d1) - strike * disc * _cdf(d2)
        delta = _cdf(d1)
        theta_y = -spot * _pdf(d1) * vol / (2 * math.sqrt(t)) - RATE * strike * disc * _cdf(d2)
    else:
        price = strike * disc * _cdf(-d2) - spot * _cdf(-d1)
        delta = _cdf(d1) - 1.0
        theta_y = -spot * _pdf(d1) * vol / (2 * math.sqrt(t)) + RATE * strike * disc * _cdf(-d2)
    gamma = _pdf(d1) / (spot * sq)
    vega = spot * _pdf(d1) * math.sqrt(t) / 100.0
    return Greeks(max(price, 0.0), delta, gamma, vega, theta_y / 365.0, vol, spot)


def smile_vol(base_vol: float, spot: float, strike: float, years: float) -> float:
    """A mild smile with put skew and a small term structure."""
    moneyness = math.log(strike / spot)
    skew = -0.35 * moneyness if moneyness < 0 else 0.12 * moneyness
    term = 0.04 * math.exp(-max(years, 0.0) * 12.0)
    return max(0.03, base_vol * (1.0 + skew + 1.6 * moneyness * moneyness) + term)
