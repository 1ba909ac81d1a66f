"""The risk step: contract sizing by hand, every rule at, just below and just above its limit."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.config import OptionsSettings, RiskSettings
from common.messages import OptionContract, OrderIntent, Right, Signal
from supervisor.trading.risk import RiskDecision, RiskState, evaluate, record, size_contracts

pytestmark = pytest.mark.timeout(30)

INF = math.inf
NAN = math.nan

SPY_CALL = OptionContract("SPY", "20260109", 680.0, Right.CALL)


def intent(
    intent_id: str = "2026-01-08 SPY 20260109 680C BUY",
    premium: float = 2.00,
    multiplier: int = 100,
) -> OrderIntent:
    return OrderIntent(
        intent_id=intent_id,
        cycle_id=1,
        symbol="SPY",
        contract=replace(SPY_CALL, multiplier=multiplier),
        signal=Signal.BUY,
        entry_limit=premium,
        take_profit=round(premium * 1.5, 2),
        stop_loss=round(premium * 0.7, 2),
        premium=premium,
        confidence=0.8,
        reasons=("hand-built",),
        bid=round(premium * 0.98, 4),  # a 4 % spread: inside the 15 % quote-sanity limit
        ask=round(premium * 1.02, 4),
        quote_ts=0.0,
    )


def state(equity: float = 48_000.0, start_equity: float | None = None, **kw: object) -> RiskState:
    return RiskState(
        day="2026-01-08",
        start_equity=equity if start_equity is None else start_equity,
        equity=equity,
        **kw,  # type: ignore[arg-type]
    )


RISK = RiskSettings(
    risk_per_trade_pct=1.0,
    max_contracts_per_order=1000,
    max_orders_per_cycle=5,
    daily_loss_limit_pct=3.0,
    daily_loss_limit_abs=0.0,
    # caps out of the way here: tests/test_risk_rules.py covers them
    max_position_per_symbol=10**6,
    max_position_total=10**6,
    max_orders_per_day=10**6,
    max_notional_pct=100.0,
)
OPTIONS = OptionsSettings.model_validate({"stop_loss_pct": 30.0})


def risk_with(**changes: float) -> RiskSettings:
    return RiskSettings(**{**RISK.model_dump(), **changes})


def decide(
    the_intent: OrderIntent | None = None,
    the_state: RiskState | None = None,
    risk: RiskSettings = RISK,
    options: OptionsSettings = OPTIONS,
    orders_this_cycle: int = 0,
) -> RiskDecision:
    return evaluate(the_intent or intent(), the_state or state(), risk, options, orders_this_cycle)


# --- size_contracts --------------------------------------------------------------------------


def test_the_multiplier_case() -> None:
    # Given 48,000 equity, 1 % risk (480), a 2.00 premium, x100, a 30 % stop:
    # one contract risks 2.00 x 100 x 0.30 = 60, so 480 / 60 = 8 contracts.
    assert size_contracts(48_000, 1.0, 2.00, 100, 30.0) == 8


def test_forgetting_the_multiplier_would_size_a_hundred_times_more() -> None:
    # The original bot's mistake: 480 / (2.00 x 0.30) = 800. With multiplier=1 the function
    # must give exactly that, which proves the 100 above really is multiplied in.
    assert size_contracts(48_000, 1.0, 2.00, 1, 30.0) == 800
    assert size_contracts(48_000, 1.0, 2.00, 1, 30.0) == 100 * size_contracts(
        48_000, 1.0, 2.00, 100, 30.0
    )


@pytest.mark.parametrize(
    ("equity", "risk_pct", "premium", "multiplier", "stop_pct", "expected"),
    [
        # budget 1000; per contract 5.00 x 100 x 0.5 = 250 -> 4
        (100_000, 1.0, 5.00, 100, 50.0, 4),
        # budget 2000; per contract 0.45 x 100 x 1.0 = 45 -> 44.44 -> 44
        (100_000, 2.0, 0.45, 100, 100.0, 44),
        # budget 250; per contract 3.10 x 100 x 0.3 = 93 -> 2.69 -> 2
        (25_000, 1.0, 3.10, 100, 30.0, 2),
        # mini options (x10): budget 480; per contract 2.00 x 10 x 0.3 = 6 -> 80
        (48_000, 1.0, 2.00, 10, 30.0, 80),
        # budget 10; per contract 0.05 x 100 x 0.3 = 1.5 -> 6.67 -> 6
        (1_000, 1.0, 0.05, 100, 30.0, 6),
    ],
)
def test_size_contracts_hand_computed(
    equity: float,
    risk_pct: float,
    premium: float,
    multiplier: float,
    stop_pct: float,
    expected: int,
) -> None:
    assert size_contracts(equity, risk_pct, premium, multiplier, stop_pct) == expected


@pytest.mark.parametrize(
    ("equity", "expected"),
    [
        (9_999.0, 1),  # budget 99.99 / 50 = 1.9998
        (10_000.0, 2),  # budget 100 / 50 = exactly 2
        (10_001.0, 2),  # 2.0002
        (14_999.0, 2),  # 2.9998
        (15_000.0, 3),  # exactly 3
    ],
)
def test_size_floors_at_exact_boundaries(equity: float, expected: int) -> None:
    # 1 % of equity over 1.00 x 100 x 50 % = 50 per contract
    assert size_contracts(equity, 1.0, 1.00, 100, 50.0) == expected


def test_exact_quotient_survives_binary_rounding() -> None:
    # 1.1 % of 10,000 = 110; 1.10 x 100 x 10 % = 11; exactly 10 contracts. Neither 1.1 nor
    # 1.10 is exact in binary, and a bare floor of the float quotient would say 9.
    assert size_contracts(10_000, 1.1, 1.10, 100, 10.0) == 10
    # 2.2 % of 10,000 = 220; 2.20 x 100 x 10 % = 22; exactly 10 again
    assert size_contracts(10_000, 2.2, 2.20, 100, 10.0) == 10


def test_budget_below_one_contract_is_zero() -> None:
    # budget 100; per contract 4.00 x 100 x 0.3 = 120 -> 0.83 -> 0
    assert size_contracts(10_000, 1.0, 4.00, 100, 30.0) == 0


@pytest.mark.parametrize("position", range(5))
@pytest.mark.parametrize("bad", [0.0, -1.0, -48_000.0, NAN, INF, -INF])
def test_unusable_input_sizes_zero(position: int, bad: float) -> None:
    args = [48_000.0, 1.0, 2.00, 100.0, 30.0]
    args[position] = bad
    assert size_contracts(*args) == 0


@pytest.mark.parametrize(
    "args", [(1e308, 100.0, 1e-308, 100.0, 30.0), (1e300, 100.0, 1e-300, 100.0, 1e-10)]
)
def test_inputs_that_size_to_infinity_size_zero_instead_of_crashing(args) -> None:
    assert size_contracts(*args) == 0


@given(
    equity=st.floats(1_000, 10_000_000),
    risk_pct=st.floats(0.01, 100),
    premium=st.floats(0.01, 500),
    stop_pct=st.floats(1, 100),
)
def test_size_never_risks_more_than_the_budget(
    equity: float, risk_pct: float, premium: float, stop_pct: float
) -> None:
    size = size_contracts(equity, risk_pct, premium, 100, stop_pct)
    budget = equity * risk_pct / 100
    per_contract = premium * 100 * stop_pct / 100
    assert size >= 0
    # the size's total risk fits the budget (a hair of float tolerance) ...
    assert size * per_contract <= budget * (1 + 1e-9)
    # ... and one more contract would not
    assert (size + 1) * per_contract > budget * (1 - 1e-9)


# --- evaluate: the daily loss limit ------------------------------------------------------------


@pytest.mark.parametrize(
    ("equity", "refused"),
    [
        (97_001.0, False),  # loss 2,999 = 2.999 %: below the 3 % limit
        (97_000.0, True),  # loss 3,000 = exactly 3 %: at the limit is refused
        (96_999.0, True),  # loss 3,001 = 3.001 %
    ],
)
def test_daily_loss_limit_pct(equity: float, refused: bool) -> None:
    # Given the day started at 100,000
    decision = decide(the_state=state(equity=equity, start_equity=100_000.0))

    if refused:
        assert not decision.accepted
        assert decision.rule == "daily_loss_limit"
        assert decision.quantity == 0
        values = dict(decision.values)
        assert values["start_equity"] == 100_000.0
        assert values["equity"] == equity
        assert values["loss"] == 100_000.0 - equity
        assert values["loss_pct"] == pytest.approx((100_000.0 - equity) / 1000)
        assert "3%" in decision.reason
    else:
        assert decision.accepted, decision
        assert decision.rule == "ok"


@pytest.mark.parametrize(
    ("equity", "refused"),
    [
        (99_501.0, False),  # loss 499, under the absolute limit of 500 (and 0.499 %)
        (99_500.0, True),  # loss exactly 500
        (99_499.0, True),  # loss 501
    ],
)
def test_daily_loss_limit_absolute(equity: float, refused: bool) -> None:
    risk = risk_with(daily_loss_limit_abs=500.0)
    decision = decide(the_state=state(equity=equity, start_equity=100_000.0), risk=risk)

    assert decision.accepted is not refused
    if refused:
        assert decision.rule == "daily_loss_limit"
        assert dict(decision.values)["loss"] == 100_000.0 - equity
        assert "500" in decision.reason


def test_absolute_limit_of_zero_means_only_the_pct_limit() -> None:
    # a 2,000 loss (2 %) with daily_loss_limit_abs = 0 must not be read as "loss >= 0"
    decision = decide(the_state=state(equity=98_000.0, start_equity=100_000.0))
    assert decision.accepted


def test_a_gain_passes_the_daily_loss_rule() -> None:
    decision = decide(the_state=state(equity=110_000.0, start_equity=100_000.0))
    assert decision.accepted


# --- evaluate: kill switch, duplicates, orders per cycle ---------------------------------------


def test_halted_state_refuses_everything() -> None:
    decision = decide(the_state=state(halted=True))
    assert not decision.accepted
    assert decision.rule == "kill_switch"
    assert decision.quantity == 0


def test_kill_switch_is_checked_before_the_other_rules() -> None:
    # Given an intent that would also be a duplicate and over the per-cycle cap
    the_intent = intent("dup")
    decision = decide(
        the_intent, state(halted=True, sent_today=frozenset({"dup"})), orders_this_cycle=99
    )
    assert decision.rule == "kill_switch"


def test_duplicate_intent_is_refused() -> None:
    the_intent = intent("2026-01-08 SPY 20260109 680C BUY")
    decision = decide(the_intent, state(sent_today=frozenset({"2026-01-08 SPY 20260109 680C BUY"})))
    assert not decision.accepted
    assert decision.rule == "duplicate"
    assert decision.intent_id == "2026-01-08 SPY 20260109 680C BUY"


def test_other_intent_ids_sent_today_do_not_block() -> None:
    decision = decide(intent("B"), state(sent_today=frozenset({"A", "C"})))
    assert decision.accepted


@pytest.mark.parametrize(("sent", "refused"), [(4, False), (5, True), (6, True)])
def test_max_orders_per_cycle(sent: int, refused: bool) -> None:
    decision = decide(orders_this_cycle=sent)  # limit 5
    assert decision.accepted is not refused
    if refused:
        assert decision.rule == "max_orders_per_cycle"
        assert dict(decision.values)["limit"] == 5
        assert str(sent) in decision.reason


def test_max_orders_per_cycle_of_zero_refuses_the_first() -> None:
    decision = decide(risk=risk_with(max_orders_per_cycle=0), orders_this_cycle=0)
    assert decision.rule == "max_orders_per_cycle"


def test_max_orders_per_cycle_carries_both_compared_values() -> None:
    decision = decide(risk=risk_with(max_orders_per_cycle=3), orders_this_cycle=4)
    assert 4 in dict(decision.values).values()
    assert 3 in dict(decision.values).values()


# --- evaluate: sizing and the per-order cap ----------------------------------------------------


@pytest.mark.parametrize(
    ("premium", "expected"),
    [
        # 100,000 equity, 1 % = 1,000; stop 50 %: per contract premium x 100 x 0.5
        (19.99, 1),  # 999.50 per contract -> 1.0005 -> 1
        (20.00, 1),  # 1,000 -> exactly 1
        (20.01, 0),  # 1,000.50 -> 0.9995 -> refused
    ],
)
def test_sizing_below_one_contract_is_refused(premium: float, expected: int) -> None:
    decision = decide(
        intent(premium=premium),
        state(equity=100_000.0),
        options=OptionsSettings.model_validate({"stop_loss_pct": 50.0}),
    )
    values = dict(decision.values)
    assert values["size"] == expected
    assert values["premium"] == premium
    assert values["multiplier"] == 100
    assert values["stop_loss_pct"] == 50.0
    assert values["equity"] == 100_000.0
    assert values["risk_pct"] == 1.0
    if expected == 0:
        assert not decision.accepted
        assert decision.rule == "sizing"
        assert decision.quantity == 0
    else:
        assert decision.accepted
        assert decision.quantity == 1


def test_accepted_decision_sizes_with_the_contract_multiplier() -> None:
    # the multiplier case through evaluate: 48,000 x 1 % / (2.00 x 100 x 30 %) = 8
    decision = decide(intent(premium=2.00), state(equity=48_000.0))
    assert decision.accepted
    assert decision.rule == "ok"
    assert decision.quantity == 8
    assert dict(decision.values)["multiplier"] == 100
    assert dict(decision.values)["max_contracts_per_order"] == 1000


def test_mini_contract_multiplier_is_taken_from_the_contract() -> None:
    # x10: 480 / (2.00 x 10 x 30 %) = 80
    decision = decide(intent(multiplier=10), state(equity=48_000.0))
    assert decision.quantity == 80


@pytest.mark.parametrize(
    ("cap", "quantity", "capped"),
    [(7, 7, True), (8, 8, False), (9, 8, False)],  # the sizing says 8
)
def test_max_contracts_per_order_caps_the_quantity(cap: int, quantity: int, capped: bool) -> None:
    decision = decide(risk=risk_with(max_contracts_per_order=cap))
    assert decision.accepted
    assert decision.quantity == quantity
    assert dict(decision.values)["size"] == 8
    assert dict(decision.values)["max_contracts_per_order"] == cap
    assert ("capped" in decision.reason) is capped


def test_sizing_uses_equity_now_not_start_of_day() -> None:
    # Given a day that started at 50,000 and is at 48,600 (a 2.8 % loss, under the limit)
    # 2 % of 48,600 = 972; per contract 0.50 x 100 x 30 % = 15 -> 64.8 -> 64 contracts,
    # where the start-of-day equity would give 1,000 / 15 = 66.7 -> 66.
    decision = decide(
        intent(premium=0.50),
        state(equity=48_600.0, start_equity=50_000.0),
        risk=risk_with(risk_per_trade_pct=2.0),
    )
    assert decision.accepted
    assert decision.quantity == 64


# --- record ----------------------------------------------------------------------------------


def test_record_of_an_accepted_decision_counts_it_and_remembers_the_id() -> None:
    before = state(orders_today=2, sent_today=frozenset({"A"}))
    decision = decide(intent("B"), before)
    assert decision.accepted

    after = record(before, decision)

    assert after.orders_today == 3
    assert after.sent_today == frozenset({"A", "B"})
    assert (after.day, after.start_equity, after.equity, after.halted) == (
        before.day,
        before.start_equity,
        before.equity,
        before.halted,
    )
    # the state is immutable: the old one is untouched
    assert before.orders_today == 2 and before.sent_today == frozenset({"A"})


def test_record_of_a_refusal_changes_nothing() -> None:
    before = state(orders_today=2, sent_today=frozenset({"A"}))
    decision = decide(intent("B"), before, orders_this_cycle=5)
    assert not decision.accepted

    assert record(before, decision) == before


def test_recorded_intent_is_a_duplicate_the_second_time() -> None:
    # Given an intent accepted and recorded
    first = state()
    after = record(first, decide(intent("X"), first))
    # When the same intent comes back in a later cycle
    again = decide(intent("X"), after)
    # Then it is refused as a duplicate
    assert again.rule == "duplicate"
