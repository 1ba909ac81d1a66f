import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from common.greeks import Greeks, bs_greeks, bs_price, implied_vol, norm_cdf
from common.messages import Right

pytestmark = pytest.mark.timeout(30)


def test_norm_cdf_known_points() -> None:
    assert norm_cdf(0.0) == pytest.approx(0.5)
    assert norm_cdf(1.96) == pytest.approx(0.9750, abs=1e-4)
    assert norm_cdf(-1.0) == pytest.approx(0.1587, abs=1e-4)


def test_textbook_atm_prices() -> None:
    assert bs_price(100, 100, 1.0, 0.05, 0.2, Right.CALL) == pytest.approx(10.4506, abs=1e-4)
    assert bs_price(100, 100, 1.0, 0.05, 0.2, Right.PUT) == pytest.approx(5.5735, abs=1e-4)


def test_hull_example() -> None:
    # Hull, Options Futures and Other Derivatives: S=42, K=40, r=10%, sigma=20%, T=0.5.
    assert bs_price(42, 40, 0.5, 0.1, 0.2, Right.CALL) == pytest.approx(4.76, abs=5e-3)
    assert bs_price(42, 40, 0.5, 0.1, 0.2, Right.PUT) == pytest.approx(0.81, abs=5e-3)


def test_textbook_greeks() -> None:
    # d1 = (0.05 + 0.02) / 0.2 = 0.35, d2 = 0.15; phi(0.35) = 0.37524.
    call = bs_greeks(100, 100, 1.0, 0.05, 0.2, Right.CALL)
    assert isinstance(call, Greeks)
    assert call.delta == pytest.approx(0.6368, abs=1e-4)
    assert call.gamma == pytest.approx(0.37524 / 20, abs=1e-5)
    assert call.vega == pytest.approx(0.37524, abs=1e-4)  # per vol point
    # -S*phi*sigma/2 - r*K*exp(-r)*N(d2) = -3.7524 - 2.6615 per year
    assert call.theta == pytest.approx(-6.4139 / 365, abs=2e-5)
    put = bs_greeks(100, 100, 1.0, 0.05, 0.2, Right.PUT)
    assert put.delta == pytest.approx(0.6368 - 1, abs=1e-4)
    assert put.gamma == pytest.approx(call.gamma)
    assert put.vega == pytest.approx(call.vega)
    # -3.7524 + r*K*exp(-r)*N(-d2) = -3.7524 + 2.0945 per year
    assert put.theta == pytest.approx(-1.6579 / 365, abs=2e-5)


def test_expired_and_zero_vol_are_intrinsic() -> None:
    assert bs_price(105, 100, 0.0, 0.05, 0.2, Right.CALL) == pytest.approx(5.0)
    assert bs_price(105, 100, 0.0, 0.05, 0.2, Right.PUT) == 0.0
    assert bs_price(95, 100, -1.0, 0.05, 0.2, Right.PUT) == pytest.approx(5.0)
    # No volatility: the call is worth S - K e^{-rT} = 100 - 100 e^{-0.05}.
    assert bs_price(100, 100, 1.0, 0.05, 0.0, Right.CALL) == pytest.approx(
        100 - 100 * math.exp(-0.05)
    )
    g = bs_greeks(105, 100, 0.0, 0.05, 0.2, Right.CALL)
    assert (g.delta, g.gamma, g.vega, g.theta) == (1.0, 0.0, 0.0, 0.0)
    assert bs_greeks(105, 100, 0.0, 0.05, 0.2, Right.PUT).delta == 0.0
    assert bs_greeks(95, 100, 0.0, 0.05, 0.2, Right.PUT).delta == -1.0


@pytest.mark.parametrize(("spot", "strike"), [(0.0, 100.0), (100.0, -1.0), (math.nan, 100.0)])
def test_bad_inputs_raise(spot: float, strike: float) -> None:
    with pytest.raises(ValueError):
        bs_price(spot, strike, 1.0, 0.05, 0.2, Right.CALL)


spots = st.floats(5, 500)
moneyness = st.floats(0.6, 1.5)
times = st.floats(1 / 365, 3.0)
rates = st.floats(0.0, 0.1)
vols = st.floats(0.05, 1.5)


@given(spots, moneyness, times, rates, vols)
def test_property_put_call_parity(s: float, m: float, t: float, r: float, v: float) -> None:
    k = s * m
    call = bs_price(s, k, t, r, v, Right.CALL)
    put = bs_price(s, k, t, r, v, Right.PUT)
    assert call - put == pytest.approx(s - k * math.exp(-r * t), abs=1e-8 * s)


@given(spots, moneyness, times, rates, vols)
def test_property_greek_bounds(s: float, m: float, t: float, r: float, v: float) -> None:
    call = bs_greeks(s, s * m, t, r, v, Right.CALL)
    put = bs_greeks(s, s * m, t, r, v, Right.PUT)
    assert 0.0 <= call.delta <= 1.0
    assert -1.0 <= put.delta <= 0.0
    assert call.delta - put.delta == pytest.approx(1.0)
    assert call.gamma >= 0 and call.vega >= 0
    assert call.theta <= 0  # a call on a non-dividend stock only loses value with time


@given(spots, moneyness, times, rates, vols, st.sampled_from(list(Right)))
def test_property_implied_vol_round_trip(
    s: float, m: float, t: float, r: float, v: float, right: Right
) -> None:
    k = s * m
    price = bs_price(s, k, t, r, v, right)
    # Deep out-of-the-money prices carry too little vega to pin the vol down.
    assume(bs_greeks(s, k, t, r, v, right).vega > 1e-4 * s)
    iv = implied_vol(price, s, k, t, r, right)
    assert iv is not None
    assert iv == pytest.approx(v, abs=1e-4)


def test_implied_vol_no_solution() -> None:
    # Below intrinsic (call on 110 struck at 100 worth at least ~10), above the spot, or junk.
    assert implied_vol(5.0, 110, 100, 0.5, 0.0, Right.CALL) is None
    assert implied_vol(120.0, 100, 100, 0.5, 0.05, Right.CALL) is None
    assert implied_vol(math.nan, 100, 100, 0.5, 0.05, Right.CALL) is None
    assert implied_vol(0.0, 100, 100, 0.5, 0.05, Right.CALL) is None
    assert implied_vol(5.0, 100, 100, 0.0, 0.05, Right.CALL) is None


def test_implied_vol_textbook() -> None:
    assert implied_vol(10.4506, 100, 100, 1.0, 0.05, Right.CALL) == pytest.approx(0.2, abs=1e-4)
    assert implied_vol(5.5735, 100, 100, 1.0, 0.05, Right.PUT) == pytest.approx(0.2, abs=1e-4)
