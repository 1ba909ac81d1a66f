import math
import subprocess
import sys
from dataclasses import replace
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.config import OptionsSettings
from common.messages import OptionContract, OptionQuote, OrderIntent, Right, Signal
from workers.intents import (
    best_intent,
    build_intent,
    fill_greeks,
    intent_id,
    liquidity,
    round_to_tick,
    tick_for,
)

pytestmark = pytest.mark.timeout(30)

OPTS = OptionsSettings()  # spread <= 15 %, no volume floor, mid entry, +50 % / -30 %
CALL = OptionContract("SPY", "20240607", 450.0, Right.CALL, trading_class="SPY")
PUT = OptionContract("SPY", "20240607", 450.0, Right.PUT, trading_class="SPY")


def oq(contract: OptionContract = CALL, bid: float = 1.20, ask: float = 1.30, **kw) -> OptionQuote:
    return OptionQuote(contract, bid=bid, ask=ask, **kw)


def build(
    quote: OptionQuote,
    opts: OptionsSettings = OPTS,
    signal: Signal = Signal.BUY,
    reasons: tuple[str, ...] = ("ema up",),
) -> OrderIntent:
    return build_intent(
        quote,
        cycle_id=7,
        day="2024-06-03",
        signal=signal,
        confidence=0.8,
        reasons=reasons,
        opts=opts,
    )


# --- liquidity -------------------------------------------------------------------------------


def test_liquid_quote() -> None:
    assert liquidity(oq(), OPTS) is None


@pytest.mark.parametrize("bid", [math.nan, 0.0, -1.0])
def test_no_bid(bid: float) -> None:
    assert liquidity(oq(bid=bid), OPTS) == "no bid"


@pytest.mark.parametrize("ask", [math.nan, 0.0, -1.0, math.inf])
def test_no_ask(ask: float) -> None:
    assert liquidity(oq(ask=ask), OPTS) == "no ask"


def test_crossed() -> None:
    assert liquidity(oq(bid=1.40, ask=1.30), OPTS) == "crossed"


def test_locked_market_is_tradable() -> None:
    assert liquidity(oq(bid=1.30, ask=1.30), OPTS) is None


def test_wide_spread() -> None:
    # bid 0.89, ask 1.11: mid 1.00, spread 0.22 = 22 % of mid.
    assert liquidity(oq(bid=0.89, ask=1.11), OPTS) == "spread 22.0% > 15.0%"
    # 0.90 / 1.10: exactly 20 %, allowed when the limit is 20.
    assert liquidity(oq(bid=0.90, ask=1.10), OptionsSettings(max_spread_pct=20.0)) is None
    assert liquidity(oq(bid=0.90, ask=1.10), OptionsSettings(max_spread_pct=19.9)) == (
        "spread 20.0% > 19.9%"
    )


def test_volume_floor() -> None:
    opts = OptionsSettings(min_volume=10)
    assert liquidity(oq(volume=3.0), opts) == "volume 3 < 10"
    assert liquidity(oq(volume=math.nan), opts) == "volume 0 < 10"
    assert liquidity(oq(volume=10.0), opts) is None
    # Without a floor a missing volume is no reason to skip.
    assert liquidity(oq(volume=math.nan), OPTS) is None
    assert liquidity(oq(volume=0.0), OPTS) is None


def test_price_reasons_come_before_volume() -> None:
    assert liquidity(oq(bid=math.nan, volume=0.0), OptionsSettings(min_volume=5)) == "no bid"


# --- ticks -----------------------------------------------------------------------------------


def test_tick_for() -> None:
    assert tick_for(2.99) == 0.01
    assert tick_for(3.0) == 0.05
    assert tick_for(12.0) == 0.05


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        (1.234, 1.23),
        (1.235, 1.24),  # half a tick rounds up
        (1.125, 1.13),
        (2.996, 3.00),
        (3.02, 3.00),
        (3.025, 3.05),
        (3.07, 3.05),
        (3.08, 3.10),
        (12.345, 12.35),
        (0.004, 0.0),
    ],
)
def test_round_to_tick(price: float, expected: float) -> None:
    assert round_to_tick(price) == pytest.approx(expected, abs=1e-12)


@given(st.floats(0.01, 500))
def test_property_rounded_price_is_on_its_tick(price: float) -> None:
    rounded = round_to_tick(price)
    tick = tick_for(price)
    steps = rounded / tick
    assert abs(steps - round(steps)) < 1e-6
    assert abs(rounded - price) <= tick / 2 + 1e-9


# --- build_intent ----------------------------------------------------------------------------


def test_bracket_from_mid() -> None:
    intent = build(oq(bid=1.20, ask=1.30, ts=1717420000.0))
    # mid 1.25; tp 1.25 * 1.5 = 1.875 -> 1.88; sl 1.25 * 0.7 = 0.875 -> 0.88 (half up)
    assert intent.entry_limit == pytest.approx(1.25)
    assert intent.take_profit == pytest.approx(1.88)
    assert intent.stop_loss == pytest.approx(0.88)
    assert intent.premium == pytest.approx(1.25)
    assert (intent.bid, intent.ask, intent.quote_ts) == (1.20, 1.30, 1717420000.0)
    assert (intent.cycle_id, intent.symbol, intent.contract, intent.signal) == (
        7,
        "SPY",
        CALL,
        Signal.BUY,
    )
    assert intent.confidence == 0.8
    assert intent.reasons == ("ema up", "entry 1.25 mid", "tp 1.88 (+50%)", "sl 0.88 (-30%)")
    assert intent.intent_id == intent_id("2024-06-03", "SPY", CALL, Signal.BUY)


def test_bracket_crosses_into_nickel_ticks() -> None:
    # mid 2.40; tp 2.40 * 1.5 = 3.60 (nickel tick, already on it); sl 1.68.
    intent = build(oq(bid=2.35, ask=2.45))
    assert (intent.entry_limit, intent.take_profit, intent.stop_loss) == pytest.approx(
        (2.40, 3.60, 1.68)
    )
    # mid 4.12 -> 4.10 on the nickel; tp 4.10 * 1.5 = 6.15; sl 4.10 * 0.7 = 2.87 (penny tick).
    intent = build(oq(bid=4.04, ask=4.20))
    assert (intent.entry_limit, intent.take_profit, intent.stop_loss) == pytest.approx(
        (4.10, 6.15, 2.87)
    )


def test_entry_at_ask_or_bid() -> None:
    ask = build(oq(bid=1.20, ask=1.30), OptionsSettings(entry_price="ask"))
    assert ask.entry_limit == pytest.approx(1.30)
    assert ask.premium == pytest.approx(1.25)  # premium stays the mid
    assert "entry 1.30 ask" in ask.reasons
    # tp 1.30 * 1.5 = 1.95; sl 1.30 * 0.7 = 0.91
    assert (ask.take_profit, ask.stop_loss) == pytest.approx((1.95, 0.91))
    bid = build(oq(bid=1.20, ask=1.30), OptionsSettings(entry_price="bid"))
    assert bid.entry_limit == pytest.approx(1.20)
    assert "entry 1.20 bid" in bid.reasons


def test_custom_bracket_percentages() -> None:
    opts = OptionsSettings(take_profit_pct=100.0, stop_loss_pct=50.0)
    intent = build(oq(bid=0.48, ask=0.52), opts)
    assert (intent.entry_limit, intent.take_profit, intent.stop_loss) == pytest.approx(
        (0.50, 1.00, 0.25)
    )
    assert intent.reasons[-2:] == ("tp 1.00 (+100%)", "sl 0.25 (-50%)")


def test_stop_loss_stays_above_zero() -> None:
    intent = build(oq(bid=0.40, ask=0.40), OptionsSettings(stop_loss_pct=100.0))
    assert intent.stop_loss == pytest.approx(0.01)
    intent = build(oq(bid=0.02, ask=0.02), OptionsSettings(stop_loss_pct=90.0))
    assert intent.stop_loss == pytest.approx(0.01)  # 0.002 would round to 0


def test_put_intent_for_sell_signal() -> None:
    intent = build(oq(PUT), signal=Signal.SELL)
    assert intent.contract.right is Right.PUT and intent.signal is Signal.SELL


def test_signal_must_match_right() -> None:
    with pytest.raises(ValueError, match="SELL"):
        build(oq(CALL), signal=Signal.SELL)
    with pytest.raises(ValueError, match="HOLD"):
        build(oq(CALL), signal=Signal.HOLD)


def test_no_market_raises() -> None:
    with pytest.raises(ValueError, match="no two-sided market"):
        build(oq(bid=math.nan))


# --- intent_id -------------------------------------------------------------------------------


def test_intent_id_stable_and_short() -> None:
    a = intent_id("2024-06-03", "SPY", CALL, Signal.BUY)
    assert a == intent_id("2024-06-03", "SPY", replace(CALL), Signal.BUY)
    assert len(a) == 16 and int(a, 16) >= 0
    # An int strike and a float strike are the same contract.
    assert a == intent_id("2024-06-03", "SPY", replace(CALL, strike=450), Signal.BUY)


def test_intent_id_differs_by_field() -> None:
    base = intent_id("2024-06-03", "SPY", CALL, Signal.BUY)
    others = {
        intent_id("2024-06-04", "SPY", CALL, Signal.BUY),
        intent_id("2024-06-03", "QQQ", CALL, Signal.BUY),
        intent_id("2024-06-03", "SPY", replace(CALL, strike=451.0), Signal.BUY),
        intent_id("2024-06-03", "SPY", replace(CALL, expiry="20240614"), Signal.BUY),
        intent_id("2024-06-03", "SPY", PUT, Signal.BUY),
        intent_id("2024-06-03", "SPY", CALL, Signal.SELL),
    }
    assert base not in others
    assert len(others) == 6


def test_intent_id_same_in_another_process() -> None:
    code = (
        "from common.messages import OptionContract, Right, Signal\n"
        "from workers.intents import intent_id\n"
        "c = OptionContract('SPY', '20240607', 450.0, Right.CALL, trading_class='SPY')\n"
        "print(intent_id('2024-06-03', 'SPY', c, Signal.BUY))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PYTHONPATH": "."},
    )
    assert out.stdout.strip() == intent_id("2024-06-03", "SPY", CALL, Signal.BUY)


# --- best_intent -----------------------------------------------------------------------------


def chain_quotes() -> list[OptionQuote]:
    def c(strike: float) -> OptionContract:
        return replace(CALL, strike=strike)

    return [
        oq(c(448.0), bid=2.90, ask=3.00),
        oq(c(449.0), bid=math.nan, ask=2.50),  # no bid
        oq(c(450.0), bid=1.00, ask=1.60),  # 46 % wide
        oq(c(451.0), bid=1.50, ask=1.60),
        oq(c(452.0), bid=1.10, ask=1.16),
    ]


def pick(quotes: list[OptionQuote], target: float, opts: OptionsSettings = OPTS):
    return best_intent(
        quotes,
        target,
        cycle_id=1,
        day="2024-06-03",
        signal=Signal.BUY,
        confidence=0.5,
        reasons=("why",),
        opts=opts,
    )


def test_best_intent_nearest_liquid_strike() -> None:
    intent, rejected = pick(chain_quotes(), 450.0)
    # 450 is too wide and 449 has no bid; 451 (1 away) beats 448 (2 away) and 452 (2 away).
    assert intent is not None and intent.contract.strike == 451.0
    assert intent.entry_limit == pytest.approx(1.55)
    assert rejected == (
        "SPY 20240607 449C: no bid",
        "SPY 20240607 450C: spread 46.2% > 15.0%",
    )


def test_best_intent_tie_goes_to_tighter_spread() -> None:
    quotes = chain_quotes()
    # Target 450: 449 and 451 both 1 away once 449 is liquid; 451's spread is 6.5 %, 449's 2 %.
    quotes[1] = oq(replace(CALL, strike=449.0), bid=1.98, ask=2.02)
    intent, _ = pick(quotes, 450.0)
    assert intent is not None and intent.contract.strike == 449.0
    # Order of the candidates must not matter.
    intent, _ = pick(list(reversed(quotes)), 450.0)
    assert intent is not None and intent.contract.strike == 449.0


def test_best_intent_all_illiquid() -> None:
    quotes = [oq(bid=math.nan), oq(replace(CALL, strike=455.0), bid=1.0, ask=2.0)]
    intent, rejected = pick(quotes, 450.0)
    assert intent is None
    assert rejected == ("SPY 20240607 450C: no bid", "SPY 20240607 455C: spread 66.7% > 15.0%")


def test_best_intent_no_quotes() -> None:
    assert pick([], 450.0) == (None, ())


def test_best_intent_volume_rejection() -> None:
    opts = OptionsSettings(min_volume=100)
    quotes = [oq(volume=50.0), oq(replace(CALL, strike=455.0), volume=500.0)]
    intent, rejected = pick(quotes, 450.0, opts)
    assert intent is not None and intent.contract.strike == 455.0
    assert rejected == ("SPY 20240607 450C: volume 50 < 100",)


# --- fill_greeks -----------------------------------------------------------------------------

TODAY = date(2024, 6, 3)


def test_fill_greeks_keeps_broker_greeks() -> None:
    q = oq(delta=0.5, iv=0.2, und_price=450.0)
    assert fill_greeks(q, TODAY) is q


def test_fill_greeks_from_iv() -> None:
    # 365 days out, spot = strike = 100, iv 20 %, r 5 %: the textbook call, delta 0.6368.
    contract = OptionContract("XYZ", "20250603", 100.0, Right.CALL)
    q = OptionQuote(contract, bid=10.0, ask=11.0, iv=0.2, und_price=100.0)
    filled = fill_greeks(q, TODAY, rate=0.05)
    assert filled.delta == pytest.approx(0.6368, abs=1e-4)
    assert filled.vega == pytest.approx(0.3752, abs=1e-4)
    assert filled.theta < 0 and filled.gamma > 0
    assert filled.iv == 0.2
    assert (filled.bid, filled.ask, filled.contract) == (10.0, 11.0, contract)


def test_fill_greeks_implies_iv_from_mid() -> None:
    contract = OptionContract("XYZ", "20250603", 100.0, Right.PUT)
    # mid 5.5735 is the textbook put at 20 % vol.
    q = OptionQuote(contract, bid=5.5235, ask=5.6235, und_price=100.0)
    filled = fill_greeks(q, TODAY, rate=0.05)
    assert filled.iv == pytest.approx(0.2, abs=1e-4)
    assert filled.delta == pytest.approx(0.6368 - 1, abs=1e-3)


@pytest.mark.parametrize(
    "quote",
    [
        OptionQuote(CALL, bid=1.0, ask=1.1),  # no underlying price
        OptionQuote(CALL, bid=math.nan, ask=1.1, und_price=450.0),  # no iv, no mid
        OptionQuote(replace(CALL, expiry="20240531"), iv=0.2, und_price=450.0),  # expired
        OptionQuote(replace(CALL, expiry="bad"), iv=0.2, und_price=450.0),
        # Mid below intrinsic (450-call with spot 460 worth >= 10): no vol fits.
        OptionQuote(CALL, bid=1.0, ask=1.1, und_price=460.0),
    ],
)
def test_fill_greeks_leaves_unusable_quotes(quote: OptionQuote) -> None:
    assert fill_greeks(quote, TODAY) is quote


def test_fill_greeks_without_model_greeks_uses_the_workers_spot() -> None:
    # IBKR sent no model greeks at all, so no underlying price either: the worker's own
    # reference price of the underlying stands in (and is recorded on the quote)
    contract = OptionContract("XYZ", "20250603", 100.0, Right.CALL)
    q = OptionQuote(contract, bid=10.0, ask=11.0, iv=0.2)
    assert fill_greeks(q, TODAY, rate=0.05) is q  # nothing to price it from
    filled = fill_greeks(q, TODAY, rate=0.05, spot=100.0)
    assert filled.delta == pytest.approx(0.6368, abs=1e-4) and filled.und_price == 100.0
    assert fill_greeks(q, TODAY, rate=0.05, spot=math.nan) is q


def test_fill_greeks_keeps_the_brokers_underlying_over_the_spot() -> None:
    contract = OptionContract("XYZ", "20250603", 100.0, Right.CALL)
    q = OptionQuote(contract, bid=10.0, ask=11.0, iv=0.2, und_price=100.0)
    filled = fill_greeks(q, TODAY, rate=0.05, spot=120.0)
    assert filled.und_price == 100.0 and filled.delta == pytest.approx(0.6368, abs=1e-4)


def test_fill_greeks_same_day_expiry() -> None:
    contract = replace(CALL, expiry="20240603")
    filled = fill_greeks(OptionQuote(contract, iv=0.2, und_price=450.0), TODAY)
    assert 0.0 < filled.delta < 1.0
    assert filled.delta == pytest.approx(0.5, abs=0.05)
