"""Black–Scholes prices, greeks and implied volatility: the fallback when IBKR sends no greeks.

European model, no dividends, stdlib ``math`` only. Vega is per 1 vol point (0.01) and theta per
calendar day, the units IBKR's model greeks use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from common.messages import Right

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

IV_LOW = 1e-4
IV_HIGH = 5.0  # 500 %: beyond that a quote is noise, not volatility


@dataclass(frozen=True)
class Greeks:
    delta: float
    gamma: float
    vega: float  # price change per 1 vol point
    theta: float  # price change per calendar day


def norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / _SQRT2))


def norm_pdf(x: float) -> float:
    return _INV_SQRT_2PI * math.exp(-0.5 * x * x)


def _check(spot: float, strike: float) -> None:
    if not (math.isfinite(spot) and spot > 0 and math.isfinite(strike) and strike > 0):
        raise ValueError(f"spot and strike must be finite and > 0, got {spot!r}, {strike!r}")


def _degenerate(t_years: float, vol: float) -> bool:
    # At expiry or with no volatility the option is worth its (discounted) intrinsic value.
    return t_years <= 0 or vol <= 0


def _d1_d2(spot: float, strike: float, t: float, rate: float, vol: float) -> tuple[float, float]:
    sd = vol * math.sqrt(t)
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol * vol) * t) / sd
    return d1, d1 - sd


def bs_price(
    spot: float, strike: float, t_years: float, rate: float, vol: float, right: Right
) -> float:
    _check(spot, strike)
    if _degenerate(t_years, vol):
        pv_strike = strike * math.exp(-rate * max(t_years, 0.0))
        return max(spot - pv_strike, 0.0) if right is Right.CALL else max(pv_strike - spot, 0.0)
    d1, d2 = _d1_d2(spot, strike, t_years, rate, vol)
    pv_strike = strike * math.exp(-rate * t_years)
    if right is Right.CALL:
        return spot * norm_cdf(d1) - pv_strike * norm_cdf(d2)
    return pv_strike * norm_cdf(-d2) - spot * norm_cdf(-d1)


def bs_greeks(
    spot: float, strike: float, t_years: float, rate: float, vol: float, right: Right
) -> Greeks:
    _check(spot, strike)
    if _degenerate(t_years, vol):
        pv_strike = strike * math.exp(-rate * max(t_years, 0.0))
        in_money = spot > pv_strike if right is Right.CALL else spot < pv_strike
        delta = (1.0 if right is Right.CALL else -1.0) if in_money else 0.0
        return Greeks(delta=delta, gamma=0.0, vega=0.0, theta=0.0)
    d1, d2 = _d1_d2(spot, strike, t_years, rate, vol)
    sqrt_t = math.sqrt(t_years)
    pdf = norm_pdf(d1)
    pv_strike = strike * math.exp(-rate * t_years)
    decay = -spot * pdf * vol / (2.0 * sqrt_t)
    if right is Right.CALL:
        delta = norm_cdf(d1)
        theta_year = decay - rate * pv_strike * norm_cdf(d2)
    else:
        delta = norm_cdf(d1) - 1.0
        theta_year = decay + rate * pv_strike * norm_cdf(-d2)
    return Greeks(
        delta=delta,
        gamma=pdf / (spot * vol * sqrt_t),
        vega=spot * pdf * sqrt_t * 0.01,
        theta=theta_year / 365.0,
    )


def implied_vol(
    price: float, spot: float, strike: float, t_years: float, rate: float, right: Right
) -> float | None:
    """The volatility that reprices ``price`` (bisection), or None when none in range does."""
    values = (price, spot, strike, t_years, rate)
    if not all(math.isfinite(v) for v in values) or price <= 0 or spot <= 0 or strike <= 0:
        return None
    if t_years <= 0:
        return None
    lo, hi = IV_LOW, IV_HIGH
    # The price rises with vol, so a price outside [f(lo), f(hi)] has no solution in range.
    f_lo = bs_price(spot, strike, t_years, rate, lo, right)
    f_hi = bs_price(spot, strike, t_years, rate, hi, right)
    tol = 1e-9 * max(1.0, price)
    if price < f_lo - tol or price > f_hi + tol:
        return None
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if bs_price(spot, strike, t_years, rate, mid, right) < price:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return 0.5 * (lo + hi)
