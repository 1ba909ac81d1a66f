"""The replay's declared model (supervisor/broker/modelled.py): IV interpolated in strike from
recorded quotes, Black–Scholes at it, a bid/ask as wide as the recorded ones."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from common.greeks import bs_price
from common.messages import OptionContract, OptionQuote, Right
from supervisor.broker.modelled import (
    DEFAULT_HALF_SPREAD,
    RATE,
    SmilePoint,
    half_spread,
    interpolate_iv,
    model_quote,
    quote_iv,
    years_to,
)

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 12, 1, 10, 30, tzinfo=NY).timestamp()  # Tuesday, 5.5 h before the close
EXPIRY = "20261204"  # that week's Friday


def contract(strike: float, right: Right = Right.CALL) -> OptionContract:
    return OptionContract("SPY", EXPIRY, strike, right)


def test_years_to_counts_to_the_expirys_close() -> None:
    close = datetime(2026, 12, 4, 16, 0, tzinfo=NY).timestamp()
    assert years_to(EXPIRY, NOW) == pytest.approx((close - NOW) / (365 * 86_400))
    assert years_to(EXPIRY, close + 60) == pytest.approx(1 / (365 * 24))  # floored, not < 0
    assert years_to("2026-12-04", NOW) is None


def test_interpolate_is_linear_between_strikes_and_flat_beyond() -> None:
    smile = [SmilePoint(670.0, 0.24), SmilePoint(680.0, 0.20), SmilePoint(690.0, 0.22)]
    assert interpolate_iv(smile, 675.0) == pytest.approx(0.22)
    assert interpolate_iv(smile, 687.5) == pytest.approx(0.215)
    assert interpolate_iv(smile, 680.0) == pytest.approx(0.20)
    assert interpolate_iv(smile, 650.0) == pytest.approx(0.24)  # nearest end, no extrapolation
    assert interpolate_iv(smile, 700.0) == pytest.approx(0.22)
    assert interpolate_iv(list(reversed(smile)), 675.0) == pytest.approx(0.22)  # any order


def test_interpolate_averages_a_strikes_call_and_put_and_skips_bad_points() -> None:
    smile = [
        SmilePoint(680.0, 0.20),
        SmilePoint(680.0, 0.24),
        SmilePoint(690.0, math.nan),
        SmilePoint(700.0, 0.30),
    ]
    assert interpolate_iv(smile, 680.0) == pytest.approx(0.22)
    assert interpolate_iv(smile, 690.0) == pytest.approx(0.26)
    assert interpolate_iv([], 680.0) is None
    assert interpolate_iv([SmilePoint(680.0, 0.0)], 680.0) is None


def test_quote_iv_prefers_the_venues_and_else_reprices_the_mid() -> None:
    c = contract(680.0)
    assert quote_iv(OptionQuote(c, bid=1.0, ask=1.2, iv=0.31), NOW) == 0.31
    t = years_to(EXPIRY, NOW)
    assert t is not None
    price = bs_price(681.0, 680.0, t, RATE, 0.18, Right.CALL)
    q = OptionQuote(c, bid=price - 0.05, ask=price + 0.05, und_price=681.0)
    assert quote_iv(q, NOW) == pytest.approx(0.18, abs=1e-6)
    no_under = OptionQuote(c, bid=price - 0.05, ask=price + 0.05)
    assert quote_iv(no_under, NOW) is None
    assert quote_iv(no_under, NOW, spot=681.0) == pytest.approx(0.18, abs=1e-6)
    assert quote_iv(OptionQuote(c, bid=math.nan, ask=1.0, und_price=681.0), NOW) is None


def test_half_spread_is_the_median_of_two_sided_quotes() -> None:
    quotes = [
        OptionQuote(contract(680.0), bid=0.95, ask=1.05),  # 5 %
        OptionQuote(contract(685.0), bid=1.8, ask=2.2),  # 10 %
        OptionQuote(contract(690.0), bid=2.0, ask=2.04),  # ~1 %
        OptionQuote(contract(695.0), bid=math.nan, ask=3.0),  # one-sided: not counted
    ]
    assert half_spread(quotes) == pytest.approx(0.05)
    assert half_spread([]) == DEFAULT_HALF_SPREAD


def test_model_quote_is_black_scholes_with_the_spread_around_it() -> None:
    q = model_quote(contract(680.0, Right.PUT), 681.0, 0.2, NOW, 0.05)
    t = years_to(EXPIRY, NOW)
    assert t is not None
    price = bs_price(681.0, 680.0, t, RATE, 0.2, Right.PUT)
    assert q.last == round(price, 2)
    half = round(price * 0.05, 2)
    assert q.bid == round(price - half, 2) and q.ask == round(price + half, 2)
    assert q.iv == 0.2 and q.und_price == 681.0 and q.ts == NOW
    assert -0.6 < q.delta < -0.4  # a put at the money
    far = model_quote(contract(900.0), 681.0, 0.2, NOW, 0.05)  # worth nothing: a cent wide
    assert far.bid == 0.0 and far.ask == 0.01
    with pytest.raises(ValueError, match="no such expiry"):
        model_quote(OptionContract("SPY", "soon", 680.0, Right.CALL), 681.0, 0.2, NOW, 0.05)
