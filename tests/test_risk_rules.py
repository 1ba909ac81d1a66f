"""The rules added on top of sizing: hours, quote sanity, per-day orders, position and notional
caps. Each at, just below and just above its limit; expected sizes worked out by hand."""

from __future__ import annotations

import math
from datetime import date

import pytest

from common.calendar import Session
from common.config import OptionsSettings, RiskSettings
from common.messages import OptionContract, OrderIntent, Right, Signal
from supervisor.trading.risk import RiskContext, RiskState, evaluate
from tests.sessions import EARLY_CLOSE_DAY

pytestmark = pytest.mark.timeout(30)

NOW = 1_767_886_200.0
OPTIONS = OptionsSettings.model_validate({"stop_loss_pct": 30.0, "max_spread_pct": 10.0})
# 48,000 x 1 % = 480 budget; a 2.00 premium x 100 x 30 % = 60 risked per contract -> 8
RISK = RiskSettings(
    risk_per_trade_pct=1.0,
    max_contracts_per_order=100,
    max_position_per_symbol=100,
    max_position_total=1000,
    max_orders_per_cycle=100,
    max_orders_per_day=100,
    max_notional_pct=100,
    max_quote_age_s=30,
)
STATE = RiskState("2026-01-08", 48_000.0, 48_000.0)


def intent(
    bid: float = 1.95, ask: float = 2.05, quote_ts: float = NOW, symbol: str = "SPY"
) -> OrderIntent:
    return OrderIntent(
        "id-1",
        1,
        symbol,
        OptionContract(symbol, "20260109", 680.0, Right.CALL),
        Signal.BUY,
        entry_limit=2.0,
        take_profit=3.0,
        stop_loss=1.4,
        premium=2.0,
        confidence=0.5,
        reasons=(),
        bid=bid,
        ask=ask,
        quote_ts=quote_ts,
    )


def decide(
    the_intent: OrderIntent | None = None,
    risk: RiskSettings = RISK,
    state: RiskState = STATE,
    **ctx: object,
):
    context = RiskContext(**{"now_ts": NOW, **ctx})  # type: ignore[arg-type]
    return evaluate(the_intent or intent(), state, risk, OPTIONS, ctx=context)


def with_risk(**changes: float) -> RiskSettings:
    return RiskSettings(**{**RISK.model_dump(), **changes})


def test_baseline_accepts_eight_contracts():
    decision = decide()
    assert (decision.accepted, decision.quantity, decision.rule) == (True, 8, "ok")


# --- hours: each symbol's own session, the entry window, the expiry ---------------------------

THURSDAY = NOW  # 2026-01-08 10:30 New York
SESSION = Session(date(2026, 1, 8), THURSDAY - 3600, THURSDAY + 5.5 * 3600)  # 09:30-16:00


def at(
    when: float,
    session: Session | None = SESSION,
    expiry_close: float | None = None,
    risk: RiskSettings = RISK,
    **changes: object,
):
    the_intent = intent(quote_ts=when)
    context = RiskContext(
        now_ts=when,
        check_hours=True,
        session=session,
        expiry_close_ts=expiry_close,
        **changes,  # type: ignore[arg-type]
    )
    return evaluate(the_intent, STATE, risk, OPTIONS, ctx=context)


def test_no_session_today_is_a_closed_market():
    decision = at(THURSDAY, session=None)
    assert (decision.accepted, decision.rule) == (False, "market_hours")
    assert "no regular session today" in decision.reason


@pytest.mark.parametrize(
    "minutes, rule",
    [
        (-1, "market_hours"),  # 09:29: before the open
        (0, "entry_window"),
        (4.9, "entry_window"),  # the first five minutes
        (5, "ok"),
        (374.9, "ok"),  # 09:35 .. 15:44:54
        (375, "entry_window"),
        (389, "entry_window"),  # the last fifteen minutes
        (390, "market_hours"),  # 16:00: closed
    ],
)
def test_the_entry_window_is_measured_from_the_symbols_open_and_close(minutes, rule):
    decision = at(SESSION.open_ts + minutes * 60)
    assert decision.rule == rule
    if rule == "entry_window":
        values = dict(decision.values)
        assert (values["from"], values["to"], values["open"]) == ("09:35", "15:45", "09:30")


def test_an_early_close_moves_the_window_with_it():
    early = Session(
        date(2026, 11, 27),
        EARLY_CLOSE_DAY.timestamp() - 3 * 3600,
        EARLY_CLOSE_DAY.timestamp() + 1800,
    )  # 09:30-13:00
    decision = at(EARLY_CLOSE_DAY.timestamp() + 16 * 60, session=early)  # 12:46
    assert (decision.rule, dict(decision.values)["to"]) == ("entry_window", "12:45")
    assert at(EARLY_CLOSE_DAY.timestamp(), session=early).rule == "ok"  # 12:30


def test_an_entry_too_close_to_its_expiry_is_refused():
    # 60 minutes before the expiry's close: min_minutes_to_expiry (60) still allows it
    assert at(THURSDAY, expiry_close=THURSDAY + 3600).rule == "ok"
    decision = at(THURSDAY, expiry_close=THURSDAY + 3599)
    assert (decision.rule, dict(decision.values)["minutes_needed"]) == ("expiry", 60.0)


def test_one_position_per_symbol_and_direction():
    decision = at(THURSDAY, positioned=frozenset({("SPY", "C")}))
    assert (decision.accepted, decision.rule) == (False, "already_positioned")
    assert at(THURSDAY, positioned=frozenset({("SPY", "P"), ("QQQ", "C")})).rule == "ok"
    lenient = with_risk(one_position_per_direction=False)
    assert at(THURSDAY, positioned=frozenset({("SPY", "C")}), risk=lenient).rule == "ok"


@pytest.mark.parametrize(
    "bid, ask, flag",
    [
        (math.nan, 2.05, "no_bid"),
        (1.95, -1.0, "no_ask"),
        (0.0, 2.05, "no_bid"),
        (2.10, 2.00, "crossed"),
    ],
)
def test_one_sided_or_crossed_market_refuses(bid, ask, flag):
    decision = decide(intent(bid=bid, ask=ask))
    assert (decision.accepted, decision.rule) == (False, "quote")
    assert flag in decision.reason


@pytest.mark.parametrize("ask, accepted", [(2.09, True), (2.10, True), (2.11, False)])
def test_spread_limit(ask, accepted):
    # bid 1.90: spread (ask - 1.90) / mid; at 2.10 -> 0.20 / 2.00 = exactly 10 %
    decision = decide(intent(bid=1.90, ask=ask))
    assert decision.accepted is accepted
    if not accepted:
        assert decision.rule == "quote" and "spread" in decision.reason


@pytest.mark.parametrize("age_s, accepted", [(29.0, True), (30.0, True), (31.0, False)])
def test_stale_quote(age_s, accepted):
    decision = decide(intent(quote_ts=NOW - age_s))
    assert decision.accepted is accepted
    if not accepted:
        assert decision.rule == "quote" and dict(decision.values)["age_s"] == age_s


def test_quote_without_a_time_is_stale():
    decision = decide(intent(quote_ts=math.nan))
    assert (decision.rule, dict(decision.values)["age_s"]) == ("quote", "unknown")


@pytest.mark.parametrize("orders_today, accepted", [(2, True), (3, False), (4, False)])
def test_max_orders_per_day(orders_today, accepted):
    state = RiskState("2026-01-08", 48_000.0, 48_000.0, orders_today=orders_today)
    decision = decide(risk=with_risk(max_orders_per_day=3), state=state)
    assert decision.accepted is accepted
    if not accepted:
        assert decision.rule == "max_orders_per_day"
        assert dict(decision.values) == {"orders_today": orders_today, "limit": 3}


@pytest.mark.parametrize(
    "held, quantity, rule", [(2, 8, "ok"), (7, 3, "ok"), (10, 0, "max_position_per_symbol")]
)
def test_position_per_symbol_leaves_only_the_room_there_is(held, quantity, rule):
    # limit 10 per symbol: holding 2 leaves 8 (size 8 fits), 7 leaves 3, 10 leaves none
    decision = decide(risk=with_risk(max_position_per_symbol=10), open_contracts={"SPY": held})
    assert (decision.quantity, decision.rule) == (quantity, rule)
    if held == 7:
        assert "capped by max_position_per_symbol" in decision.reason


def test_other_symbols_do_not_count_against_the_symbol_cap():
    decision = decide(risk=with_risk(max_position_per_symbol=10), open_contracts={"QQQ": 10})
    assert decision.quantity == 8


def test_position_total_counts_every_symbol():
    # total limit 12 with 5 QQQ + 4 IWM held -> room 3
    decision = decide(risk=with_risk(max_position_total=12), open_contracts={"QQQ": 5, "IWM": 4})
    assert (decision.accepted, decision.quantity) == (True, 3)
    full = decide(risk=with_risk(max_position_total=9), open_contracts={"QQQ": 5, "IWM": 4})
    assert (full.accepted, full.rule) == (False, "max_position_total")


@pytest.mark.parametrize("pct, quantity", [(2.5, 6), (2.0, 4), (0.4, 0)])
def test_notional_share_of_net_liquidation(pct, quantity):
    # one contract costs 2.00 x 100 = 200; 48,000 x 2.5 % = 1,200 -> 6; 2 % = 960 -> 4;
    # 0.4 % = 192 -> none
    decision = decide(risk=with_risk(max_notional_pct=pct))
    assert decision.quantity == quantity
    assert decision.accepted is (quantity > 0)
    if not quantity:
        assert decision.rule == "max_notional_pct"


def test_kill_switch_beats_every_other_rule():
    state = RiskState("2026-01-08", 48_000.0, 48_000.0, halted=True)
    decision = decide(intent(bid=math.nan), state=state, check_hours=True, session=None)
    assert decision.rule == "kill_switch"


# --- what the broker remembers, and a journal gone under the bot ------------------------------


def test_an_intent_the_broker_lists_is_a_duplicate_whatever_the_journal_holds():
    # Given a journal that remembers nothing today (deleted, replaced, fresh) and IBKR
    # listing an order whose orderRef is this intent's id
    state = RiskState("2026-01-08", 48_000.0, 48_000.0, at_broker=frozenset({"id-1"}))
    decision = decide(state=state)
    # Then it is refused as a duplicate, saying where the record came from
    assert (decision.accepted, decision.rule) == (False, "duplicate")
    assert "IBKR lists" in decision.reason


def test_a_journal_lost_under_the_bot_refuses_every_entry_first():
    state = RiskState(
        "2026-01-08", 48_000.0, 48_000.0, halted=True, journal_lost="var/j.sqlite is gone"
    )
    decision = decide(state=state)
    assert (decision.accepted, decision.rule) == (False, "journal_lost")
    assert "var/j.sqlite is gone" in decision.reason and "restart" in decision.reason
