"""The NaN rules: what counts as a price, the market checks and the reference-price order."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.config import QuoteSettings
from common.messages import Quote
from common.quotes import check_quote, check_underlying, clean, reference_price, usable

pytestmark = pytest.mark.timeout(30)

NAN = math.nan
INF = math.inf

# every kind of value IBKR may send in a price field, good and bad
any_price = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([-1.0, 0.0, -0.0, NAN, INF, -INF]),
    st.floats(min_value=0.01, max_value=10_000.0),
)
spread_limit = st.floats(min_value=0.0, max_value=100.0)
orders = st.permutations(["mid", "last", "close"]).flatmap(
    lambda p: st.integers(min_value=1, max_value=3).map(lambda n: list(p[:n]))
)


def is_price(x: float) -> bool:
    # independent restatement of the rule: a real, finite, strictly positive number
    return isinstance(x, float) and x == x and x not in (INF, -INF) and x > 0


# --- usable / clean --------------------------------------------------------------------------


@pytest.mark.parametrize("x", [None, NAN, INF, -INF, -1.0, 0.0, -0.0, -1e-9, True, False, "1.0"])
def test_not_usable(x: object) -> None:
    assert not usable(x)  # type: ignore[arg-type]
    assert clean(x) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("x", [1e-9, 0.01, 1.0, 412.37, 1e12, 5])
def test_usable(x: float) -> None:
    assert usable(x)
    assert clean(x) == float(x)


@given(any_price)
def test_usable_matches_the_rule(x: float) -> None:
    assert usable(x) == is_price(x)
    assert (clean(x) is None) == (not is_price(x))


# --- hand-written markets --------------------------------------------------------------------


def test_minus_one_both_sides_is_no_quote() -> None:
    c = check_quote(-1.0, -1.0, -1.0, -1.0, max_spread_pct=2.0)
    assert (c.bid, c.ask, c.last, c.close, c.mid, c.spread_pct) == (None,) * 6
    assert set(c.flags) == {"no_bid", "no_ask", "no_last", "no_close"}
    assert not c.crossed and not c.wide
    assert reference_price(c, ["mid", "last", "close"]) is None


def test_zero_bid_has_no_mid_and_falls_to_last() -> None:
    c = check_quote(0.0, 10.2, 10.1, 9.9, max_spread_pct=2.0)
    assert c.bid is None and c.ask == 10.2 and c.mid is None
    assert c.flags == ("no_bid",)
    assert reference_price(c, ["mid", "last", "close"]) == (10.1, "last")


def test_nan_everything_is_none() -> None:
    c = check_quote(NAN, NAN, NAN, NAN, max_spread_pct=2.0)
    assert c.flags == ("no_bid", "no_ask", "no_last", "no_close")
    for order in itertools.permutations(["mid", "last", "close"]):
        assert reference_price(c, order) is None


def test_defaults_for_last_and_close_are_missing() -> None:
    c = check_quote(99.0, 101.0, max_spread_pct=5.0)
    assert c.last is None and c.close is None
    assert reference_price(c, ["last", "close", "mid"]) == (100.0, "mid")


def test_crossed_market_has_no_mid() -> None:
    c = check_quote(101.0, 100.0, 100.4, 99.0, max_spread_pct=50.0)
    assert c.crossed and c.mid is None and c.spread_pct is None and not c.wide
    assert "crossed" in c.flags
    assert reference_price(c, ["mid", "close"]) == (99.0, "close")


def test_locked_market_is_not_crossed() -> None:
    c = check_quote(100.0, 100.0, max_spread_pct=0.0)
    assert not c.crossed and not c.wide
    assert c.mid == 100.0 and c.spread_pct == 0.0
    assert c.flags == ("no_last", "no_close")
    assert reference_price(c, ["mid"]) == (100.0, "mid")


def test_wide_market_mid_falls_through() -> None:
    # bid 99, ask 101: mid 100, spread 2 / 100 = 2 %
    c = check_quote(99.0, 101.0, 100.5, 98.0, max_spread_pct=1.5)
    assert c.mid == 100.0 and c.spread_pct == pytest.approx(2.0)
    assert c.wide and "wide" in c.flags
    assert reference_price(c, ["mid", "last", "close"]) == (100.5, "last")
    assert reference_price(c, ["mid", "close"]) == (98.0, "close")
    assert reference_price(c, ["mid"]) is None


def test_spread_at_the_limit_is_not_wide() -> None:
    c = check_quote(99.0, 101.0, max_spread_pct=2.0)
    assert not c.wide
    assert reference_price(c, ["mid"]) == (100.0, "mid")


@pytest.mark.parametrize("bid, ask", [(INF, 101.0), (99.0, INF), (-INF, 101.0), (INF, INF)])
def test_infinite_sides_are_missing(bid: float, ask: float) -> None:
    c = check_quote(bid, ask, INF, 100.0, max_spread_pct=2.0)
    assert c.mid is None and c.last is None
    assert reference_price(c, ["mid", "last", "close"]) == (100.0, "close")


def test_original_order_prefers_last() -> None:
    c = check_quote(99.9, 100.1, 100.3, 99.5, max_spread_pct=2.0)
    assert reference_price(c, ["last", "close", "mid"]) == (100.3, "last")
    assert reference_price(c, ["mid", "last", "close"]) == (100.0, "mid")
    no_last = check_quote(99.9, 100.1, -1.0, 99.5, max_spread_pct=2.0)
    assert reference_price(no_last, ["last", "close", "mid"]) == (99.5, "close")


def test_unknown_source_is_an_error() -> None:
    c = check_quote(99.0, 101.0, max_spread_pct=2.0)
    with pytest.raises(ValueError, match="bogus"):
        reference_price(c, ["bogus"])


def test_check_underlying_uses_the_settings() -> None:
    q = Quote("SPY", bid=99.0, ask=101.0, last=100.2, close=-1.0)
    check, ref = check_underlying(q, QuoteSettings())  # default limit 2 %: not wide
    assert ref == (100.0, "mid") and check.close is None and "no_close" in check.flags
    check, ref = check_underlying(q, QuoteSettings(max_spread_pct=1.0))
    assert check.wide and ref == (100.2, "last")
    check, ref = check_underlying(q, QuoteSettings(price_sources=["close"]))
    assert ref is None


# --- properties ------------------------------------------------------------------------------


@given(any_price, any_price, any_price, any_price, spread_limit, orders)
def test_reference_price_is_one_of_the_usable_inputs(
    bid: float, ask: float, last: float, close: float, limit: float, order: list[str]
) -> None:
    c = check_quote(bid, ask, last, close, max_spread_pct=limit)
    ref = reference_price(c, order)
    if ref is None:
        return
    price, source = ref
    assert is_price(price)
    assert source in order
    if source == "last":
        assert price == last
    elif source == "close":
        assert price == close
    else:
        assert is_price(bid) and is_price(ask) and bid <= ask
        assert bid <= price <= ask
        assert (ask - bid) / price * 100 <= limit * (1 + 1e-9)


@given(any_price, any_price, any_price, any_price, spread_limit)
def test_unusable_inputs_are_never_used(
    bid: float, ask: float, last: float, close: float, limit: float
) -> None:
    c = check_quote(bid, ask, last, close, max_spread_pct=limit)
    for name, raw in (("bid", bid), ("ask", ask), ("last", last), ("close", close)):
        value = getattr(c, name)
        assert (value is None) == (not is_price(raw))
        assert (f"no_{name}" in c.flags) == (not is_price(raw))
    if not (is_price(bid) and is_price(ask)):
        assert c.mid is None
        for order in itertools.permutations(["mid", "last", "close"]):
            ref = reference_price(c, order)
            assert ref is None or ref[1] != "mid"


@given(any_price, any_price, spread_limit)
def test_mid_lies_between_bid_and_ask(bid: float, ask: float, limit: float) -> None:
    c = check_quote(bid, ask, max_spread_pct=limit)
    both = is_price(bid) and is_price(ask)
    assert c.crossed == (both and bid > ask)
    if both and bid <= ask:
        assert c.mid is not None and bid <= c.mid <= ask
        assert c.spread_pct is not None and c.spread_pct >= 0
    else:
        assert c.mid is None


@given(any_price, any_price, any_price, any_price, spread_limit, orders)
def test_order_of_sources_is_respected(
    bid: float, ask: float, last: float, close: float, limit: float, order: list[str]
) -> None:
    c = check_quote(bid, ask, last, close, max_spread_pct=limit)
    available = {
        "mid": c.mid is not None and not c.wide,
        "last": is_price(last),
        "close": is_price(close),
    }
    ref = reference_price(c, order)
    first = next((s for s in order if available[s]), None)
    assert (ref[1] if ref else None) == first
