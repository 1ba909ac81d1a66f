import math
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.config import OptionsSettings
from common.messages import OptionChain, Right
from workers.strikes import (
    ChainError,
    Selection,
    atm_strike,
    nearest_strikes,
    pick_expiry,
    select_contracts,
    strike_window,
    target_strike,
)

pytestmark = pytest.mark.timeout(30)


def spy_like() -> list[float]:
    """1-wide from 250 to 650, 5-wide from 150 to 245 and 655 to 750: 441 strikes, unsorted."""
    far_low = [float(s) for s in range(150, 250, 5)]
    near = [float(s) for s in range(250, 651)]
    far_high = [float(s) for s in range(655, 755, 5)]
    return far_high + near + far_low


# --- atm_strike ------------------------------------------------------------------------------


def test_atm_uneven_increments() -> None:
    strikes = [1.0, 2.5, 5.0, 7.5, 10.0, 11.0, 12.0]
    assert atm_strike(strikes, 6.0) == 5.0  # 1.0 from 5, 1.5 from 7.5
    assert atm_strike(strikes, 6.5) == 7.5
    assert atm_strike(strikes, 1.9) == 2.5
    assert atm_strike(strikes, 10.6) == 11.0


def test_atm_across_a_gap() -> None:
    strikes = [90.0, 95.0, 100.0, 130.0, 135.0]
    assert atm_strike(strikes, 114.0) == 100.0
    assert atm_strike(strikes, 116.0) == 130.0


def test_atm_tie_goes_to_lower_strike() -> None:
    assert atm_strike([100.0, 105.0], 102.5) == 100.0
    assert atm_strike([105.0, 100.0, 110.0], 107.5) == 105.0
    assert atm_strike([2.5, 5.0], 3.75) == 2.5


def test_atm_duplicates_and_unsorted() -> None:
    assert atm_strike([110.0, 100.0, 105.0, 100.0, 105.0, 110.0], 104.0) == 105.0


def test_atm_outside_the_chain() -> None:
    strikes = [50.0, 55.0, 60.0]
    assert atm_strike(strikes, 3.0) == 50.0
    assert atm_strike(strikes, 1000.0) == 60.0


def test_atm_one_strike_chain() -> None:
    assert atm_strike([42.0], 10.0) == 42.0
    assert atm_strike([42.0], 99.0) == 42.0


def test_atm_spy_like_chain() -> None:
    strikes = spy_like()
    assert len(strikes) == 441
    assert atm_strike(strikes, 451.3) == 451.0
    assert atm_strike(strikes, 451.5) == 451.0  # tie: lower
    assert atm_strike(strikes, 451.51) == 452.0
    assert atm_strike(strikes, 652.0) == 650.0  # 650 is 2 away, 655 is 3
    assert atm_strike(strikes, 652.5) == 650.0  # tie across the 1-to-5 boundary
    assert atm_strike(strikes, 653.0) == 655.0
    assert atm_strike(strikes, 247.0) == 245.0
    assert atm_strike(strikes, 10.0) == 150.0
    assert atm_strike(strikes, 9999.0) == 750.0


def test_atm_empty_chain_names_symbol() -> None:
    with pytest.raises(ChainError, match="XYZ: no strikes listed"):
        atm_strike([], 100.0, symbol="XYZ")
    with pytest.raises(ChainError, match="no strikes"):
        atm_strike([math.nan, 0.0, -1.0], 100.0)


@pytest.mark.parametrize("price", [math.nan, math.inf, 0.0, -5.0])
def test_atm_unusable_price(price: float) -> None:
    with pytest.raises(ChainError, match="ABC: reference price"):
        atm_strike([100.0], price, symbol="ABC")


def test_chain_error_is_value_error() -> None:
    assert issubclass(ChainError, ValueError)


# --- strike_window ---------------------------------------------------------------------------


def test_window_middle() -> None:
    strikes = [float(s) for s in range(80, 121)]
    assert strike_window(strikes, 100.0) == tuple(float(s) for s in range(95, 106))
    assert strike_window(strikes, 100.0, 2) == (98.0, 99.0, 100.0, 101.0, 102.0)
    assert strike_window(strikes, 100.0, 0) == (100.0,)


def test_window_sorted_unique() -> None:
    strikes = [105.0, 95.0, 100.0, 100.0, 110.0, 90.0, 95.0]
    assert strike_window(strikes, 100.0, 1) == (95.0, 100.0, 105.0)


def test_window_clipped_at_low_end() -> None:
    strikes = [10.0, 12.5, 15.0, 17.5, 20.0, 22.5, 25.0]
    # ATM is the lowest strike: nothing below, so the window reaches further up.
    assert strike_window(strikes, 10.0, 2) == (10.0, 12.5, 15.0, 17.5, 20.0)
    assert strike_window(strikes, 12.5, 2) == (10.0, 12.5, 15.0, 17.5, 20.0)


def test_window_clipped_at_high_end() -> None:
    strikes = [10.0, 12.5, 15.0, 17.5, 20.0, 22.5, 25.0]
    assert strike_window(strikes, 25.0, 2) == (15.0, 17.5, 20.0, 22.5, 25.0)
    assert strike_window(strikes, 22.5, 2) == (15.0, 17.5, 20.0, 22.5, 25.0)


def test_window_larger_than_chain() -> None:
    assert strike_window([3.0, 1.0, 2.0], 2.0, 5) == (1.0, 2.0, 3.0)
    assert strike_window([7.0], 7.0, 5) == (7.0,)


def test_window_spy_like() -> None:
    strikes = spy_like()
    assert strike_window(strikes, 450.0) == tuple(float(s) for s in range(445, 456))
    assert strike_window(strikes, 700.0, 2) == (690.0, 695.0, 700.0, 705.0, 710.0)
    assert strike_window(strikes, 650.0, 2) == (648.0, 649.0, 650.0, 655.0, 660.0)
    assert strike_window(strikes, 750.0, 2) == (730.0, 735.0, 740.0, 745.0, 750.0)


def test_window_empty_chain() -> None:
    with pytest.raises(ChainError, match="QQQ"):
        strike_window([], 100.0, symbol="QQQ")


# --- pick_expiry -----------------------------------------------------------------------------

TODAY = date(2024, 6, 3)  # a Monday
# SPY-like: a daily expiry every weekday, the Friday weekly, then Fridays and a monthly
DAILIES = [
    "20240603",
    "20240604",
    "20240605",
    "20240606",
    "20240607",
    "20240610",
    "20240614",
    "20240621",
    "20240719",
]


def opts(
    rule: str = "weekly", min_dte: int = 1, max_dte: int = 7, min_minutes: float = 60.0
) -> OptionsSettings:
    return OptionsSettings(
        expiry_rule=rule, min_dte=min_dte, max_dte=max_dte, min_minutes_to_expiry=min_minutes
    )


def test_the_defaults_never_pick_a_same_day_expiry() -> None:
    defaults = OptionsSettings()
    assert (defaults.expiry_rule, defaults.min_dte) == ("weekly", 1)
    assert pick_expiry(DAILIES, TODAY, defaults, minutes_left_today=390) == "20240607"


def test_weekly_is_the_last_listed_expiry_of_the_first_eligible_week() -> None:
    assert pick_expiry(DAILIES, TODAY, opts()) == "20240607"  # Friday of this week
    friday = date(2024, 6, 7)  # on Friday itself (min_dte 1): next week's last listed
    assert pick_expiry(DAILIES, friday, opts()) == "20240614"
    # a week whose Friday is a holiday ends on the Thursday (Good Friday 2024-03-29)
    holiday_week = ["20240325", "20240326", "20240327", "20240328", "20240405"]
    assert pick_expiry(holiday_week, date(2024, 3, 25), opts()) == "20240328"


def test_nearest_is_the_first_listed_expiry_far_enough_away() -> None:
    assert pick_expiry(DAILIES, TODAY, opts("nearest")) == "20240604"  # tomorrow's daily
    assert pick_expiry(DAILIES, TODAY, opts("nearest", min_dte=3)) == "20240606"
    assert pick_expiry(["20240719"], TODAY, opts("nearest")) == "20240719"  # no upper bound


def test_a_same_day_expiry_needs_min_dte_0_and_time_left() -> None:
    zero = opts("nearest", min_dte=0, min_minutes=60)
    assert pick_expiry(DAILIES, TODAY, zero, minutes_left_today=61) == "20240603"
    # 15:58 on the expiry day: two minutes left is not a trade that can be managed
    assert pick_expiry(DAILIES, TODAY, zero, minutes_left_today=2) == "20240604"
    assert pick_expiry(DAILIES, TODAY, zero) == "20240604"  # no session known: not today
    with pytest.raises(ChainError, match="today's only with 60"):
        pick_expiry(["20240603"], TODAY, zero, minutes_left_today=30)


def test_dte_window_keeps_to_bounds() -> None:
    exps = ["20240603", "20240607", "20240614", "20240621", "20240719"]
    assert pick_expiry(exps, TODAY, opts("dte_window", 10, 30)) == "20240614"
    assert pick_expiry(exps, TODAY, opts("dte_window", 0, 0), minutes_left_today=300) == (
        "20240603"
    )
    assert pick_expiry(exps, TODAY, opts("dte_window", 18, 18)) == "20240621"
    with pytest.raises(ChainError, match="no expiry 5..6 dte"):
        pick_expiry(exps, TODAY, opts("dte_window", 5, 6))


def test_past_expiries_never_chosen() -> None:
    with pytest.raises(ChainError, match="no expiry"):
        pick_expiry(
            ["20240531", "20240601"], TODAY, opts("nearest", min_dte=0), minutes_left_today=300
        )


def test_no_expiry_in_range_names_symbol() -> None:
    with pytest.raises(ChainError, match="IWM: no expiry 1..7 dte"):
        pick_expiry(["20250117"], TODAY, opts("dte_window"), symbol="IWM")


def test_malformed_expiries_ignored() -> None:
    exps = ["garbage", "2024-06-05", "20241399", "", "20240607"]
    assert pick_expiry(exps, TODAY, opts()) == "20240607"


def test_all_malformed_expiries() -> None:
    with pytest.raises(ChainError, match="SPY: no valid expiry"):
        pick_expiry(["x", "2024-06-07"], TODAY, opts(), symbol="SPY")
    with pytest.raises(ChainError):
        pick_expiry([], TODAY, opts())


def test_the_old_rule_name_is_refused_with_the_new_ones() -> None:
    with pytest.raises(ValueError, match="renamed: use 'nearest'.*'weekly'"):
        OptionsSettings(expiry_rule="nearest_weekly")


# --- target_strike / nearest_strikes ---------------------------------------------------------

WINDOW = (95.0, 97.5, 100.0, 102.5, 105.0)


@pytest.mark.parametrize(
    ("right", "moneyness", "expected"),
    [
        (Right.CALL, "atm", 100.0),
        (Right.PUT, "atm", 100.0),
        (Right.CALL, "itm", 97.5),
        (Right.CALL, "otm", 102.5),
        (Right.PUT, "itm", 102.5),
        (Right.PUT, "otm", 97.5),
    ],
)
def test_target_moneyness(right: Right, moneyness: str, expected: float) -> None:
    assert target_strike(WINDOW, 100.0, right, moneyness) == expected


def test_target_clipped_to_window() -> None:
    assert target_strike(WINDOW, 95.0, Right.CALL, "itm") == 95.0
    assert target_strike(WINDOW, 95.0, Right.PUT, "otm") == 95.0
    assert target_strike(WINDOW, 105.0, Right.CALL, "otm") == 105.0
    assert target_strike(WINDOW, 105.0, Right.PUT, "itm") == 105.0
    assert target_strike((50.0,), 50.0, Right.CALL, "otm") == 50.0


def test_target_bad_moneyness() -> None:
    with pytest.raises(ValueError):
        target_strike(WINDOW, 100.0, Right.CALL, "deep")


def test_nearest_strikes() -> None:
    assert nearest_strikes(WINDOW, 100.0, 3) == (97.5, 100.0, 102.5)
    assert nearest_strikes(WINDOW, 100.0, 1) == (100.0,)
    # 97.5 and 102.5 tie for second nearest: the lower one wins.
    assert nearest_strikes(WINDOW, 100.0, 2) == (97.5, 100.0)
    assert nearest_strikes(WINDOW, 105.0, 3) == (100.0, 102.5, 105.0)
    assert nearest_strikes(WINDOW, 100.0, 50) == WINDOW
    assert nearest_strikes(WINDOW, 100.0, 0) == ()


def test_nearest_strikes_target_between_listed() -> None:
    # 101.25 is exactly between 100 and 102.5: the lower comes first.
    assert nearest_strikes(WINDOW, 101.25, 1) == (100.0,)
    assert nearest_strikes(WINDOW, 101.25, 3) == (97.5, 100.0, 102.5)


# --- select_contracts ------------------------------------------------------------------------


def test_select_contracts_end_to_end() -> None:
    chain = OptionChain(
        symbol="AAPL",
        expirations=("20240621", "20240607", "20240614"),
        strikes=tuple(float(s) for s in range(150, 231, 5)) + (192.5, 197.5),
        multiplier=100,
        exchange="SMART",
        trading_class="AAPL",
    )
    opts = OptionsSettings(moneyness="otm", strikes_each_side=2, strike_count=3)
    sel = select_contracts(chain, 194.0, Right.PUT, TODAY, opts)
    assert isinstance(sel, Selection)
    assert sel.symbol == "AAPL"
    assert sel.expiry == "20240607"
    assert sel.atm == 195.0  # 192.5 is 1.5 away, 195 is 1.0
    assert sel.window == (190.0, 192.5, 195.0, 197.5, 200.0)
    assert sel.target == 192.5  # an OTM put sits one strike below ATM
    assert [c.strike for c in sel.candidates] == [190.0, 192.5, 195.0]
    for c in sel.candidates:
        assert (c.symbol, c.expiry, c.right) == ("AAPL", "20240607", Right.PUT)
        assert (c.multiplier, c.exchange, c.trading_class) == (100, "SMART", "AAPL")
    assert any("20240607" in r and "4 dte" in r for r in sel.reasons)


def test_select_contracts_carries_chain_fields() -> None:
    chain = OptionChain("SPX", ("20240604",), (5000.0, 5005.0, 5010.0), 10, "CBOE", "SPXW")
    sel = select_contracts(chain, 5004.0, Right.CALL, TODAY, OptionsSettings(strike_count=1))
    assert len(sel.candidates) == 1
    c = sel.candidates[0]
    assert (c.strike, c.multiplier, c.exchange, c.trading_class) == (5005.0, 10, "CBOE", "SPXW")


def test_select_contracts_empty_chain() -> None:
    chain = OptionChain("TSLA", ("20240607",), ())
    with pytest.raises(ChainError, match="TSLA: no strikes listed"):
        select_contracts(chain, 180.0, Right.CALL, TODAY, OptionsSettings())


def test_select_contracts_no_expiry() -> None:
    chain = OptionChain("TSLA", ("20250117",), (170.0, 180.0))
    with pytest.raises(ChainError, match="TSLA: no expiry >= 1 dte"):
        select_contracts(chain, 180.0, Right.CALL, date(2025, 1, 18), OptionsSettings())


# --- properties ------------------------------------------------------------------------------

strike_lists = st.lists(
    st.one_of(
        st.integers(1, 2000).map(float),
        st.integers(2, 4000).map(lambda n: n / 2),
        st.integers(4, 8000).map(lambda n: n / 4),
    ),
    min_size=1,
    max_size=60,
)
prices = st.floats(0.01, 3000, allow_nan=False, allow_infinity=False)


@given(strike_lists, prices)
def test_property_atm_is_listed_and_nearest(strikes: list[float], price: float) -> None:
    atm = atm_strike(strikes, price)
    assert atm in strikes
    assert all(abs(s - price) >= abs(atm - price) for s in strikes)
    # On a tie the lower strike wins, so no lower strike is equally near.
    assert not any(s < atm and abs(s - price) == abs(atm - price) for s in strikes)


@given(strike_lists, prices, st.integers(0, 12))
def test_property_window(strikes: list[float], price: float, k: int) -> None:
    atm = atm_strike(strikes, price)
    window = strike_window(strikes, atm, k)
    n = len(set(strikes))
    assert len(window) == min(2 * k + 1, n)
    assert atm in window
    assert list(window) == sorted(set(window))
    assert set(window) <= set(strikes)
    # The window is a run of consecutive listed strikes.
    listed = sorted(set(strikes))
    start = listed.index(window[0])
    assert tuple(listed[start : start + len(window)]) == window


@given(strike_lists, prices, st.integers(1, 20))
def test_property_nearest_strikes(strikes: list[float], target: float, count: int) -> None:
    chosen = nearest_strikes(strikes, target, count)
    assert len(chosen) == min(count, len(set(strikes)))
    assert list(chosen) == sorted(set(chosen))
    worst = max(abs(s - target) for s in chosen)
    assert all(abs(s - target) >= worst for s in set(strikes) - set(chosen))


@given(
    st.lists(st.floats(0.5, 2000, allow_nan=False).map(lambda x: round(x * 2) / 2), min_size=1),
    st.floats(0.01, 2500, allow_nan=False),
)
def test_the_nearest_strike_by_bisection_is_the_nearest_with_ties_to_the_lower(
    strikes: list[float], price: float
) -> None:
    from workers.strikes import _listed, _nearest

    listed = _listed(strikes)
    assert listed == _listed(tuple(strikes))  # the chain's tuple, sorted once and cached
    expected = min(listed, key=lambda s: (abs(s - price), s))
    assert listed[_nearest(listed, price)] == expected
    tie = [100.0, 101.0]
    assert tie[_nearest(tie, 100.5)] == 100.0
