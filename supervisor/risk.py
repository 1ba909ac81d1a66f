"""The central risk check: sizing and the rules every intent passes. Pure, no I/O.

Each decision names the rule that decided it and the values it compared, so a journal line
or a log event explains itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from common.config import OptionsSettings, RiskSettings
from common.messages import OrderIntent

Values = tuple[tuple[str, float | str], ...]


@dataclass(frozen=True)
class RiskState:
    """What the risk step knows across symbols: the day's equity, orders, what was sent."""

    day: str
    start_equity: float
    equity: float
    orders_today: int = 0
    sent_today: frozenset[str] = frozenset()
    halted: bool = False  # the kill switch: no new entries for the rest of the day


@dataclass(frozen=True)
class RiskDecision:
    intent_id: str
    accepted: bool
    quantity: int
    rule: str  # "ok" when accepted, else the rule that refused
    reason: str
    values: Values = ()


def size_contracts(
    equity: float, risk_pct: float, premium: float, multiplier: float, stop_loss_pct: float
) -> int:
    """floor(equity x risk% / (premium x multiplier x stop-loss%)); 0 if any input is unusable.

    The multiplier matters: one contract of a 2.00 option costs 200, not 2.
    """
    inputs = (equity, risk_pct, premium, multiplier, stop_loss_pct)
    if not all(math.isfinite(x) and x > 0 for x in inputs):
        return 0
    risk_budget = equity * risk_pct / 100
    loss_per_contract = premium * multiplier * stop_loss_pct / 100
    return math.floor(risk_budget / loss_per_contract + 1e-9)


def daily_loss(state: RiskState, risk: RiskSettings) -> tuple[bool, str, Values]:
    """Whether today's loss (start-of-day equity minus equity now) breaches a limit."""
    loss = state.start_equity - state.equity
    pct = 100 * loss / state.start_equity if state.start_equity > 0 else 0.0
    values: Values = (("start_equity", state.start_equity), ("equity", state.equity),
                      ("loss", round(loss, 2)), ("loss_pct", round(pct, 3)))
    if pct >= risk.daily_loss_limit_pct:
        return True, f"daily loss {pct:.2f}% >= limit {risk.daily_loss_limit_pct:g}%", values
    if risk.daily_loss_limit_abs and loss >= risk.daily_loss_limit_abs:
        return True, f"daily loss {loss:.2f} >= limit {risk.daily_loss_limit_abs:g}", values
    return False, "", values


def evaluate(
    intent: OrderIntent,
    state: RiskState,
    risk: RiskSettings,
    options: OptionsSettings,
    orders_this_cycle: int,
) -> RiskDecision:
    def refuse(rule: str, reason: str, values: Values = ()) -> RiskDecision:
        return RiskDecision(intent.intent_id, False, 0, rule, reason, values)

    if state.halted:
        return refuse("kill_switch", "daily loss limit tripped earlier today")
    breached, why, values = daily_loss(state, risk)
    if breached:
        return refuse("daily_loss_limit", why, values)
    if intent.intent_id in state.sent_today:
        return refuse("duplicate", "the same intent was already sent today")
    if orders_this_cycle >= risk.max_orders_per_cycle:
        return refuse("max_orders_per_cycle", f"{orders_this_cycle} orders already this cycle",
                      (("orders_this_cycle", orders_this_cycle),
                       ("limit", risk.max_orders_per_cycle)))
    size = size_contracts(state.equity, risk.risk_per_trade_pct, intent.premium,
                          intent.contract.multiplier, options.stop_loss_pct)
    sizing: Values = (("equity", state.equity), ("risk_pct", risk.risk_per_trade_pct),
                      ("premium", intent.premium), ("multiplier", intent.contract.multiplier),
                      ("stop_loss_pct", options.stop_loss_pct), ("size", size))
    if size < 1:
        return refuse("sizing", "the risk budget buys less than one contract", sizing)
    quantity = min(size, risk.max_contracts_per_order)
    capped = " (capped by max_contracts_per_order)" if quantity < size else ""
    return RiskDecision(intent.intent_id, True, quantity, "ok",
                        f"{quantity} contracts{capped}",
                        sizing + (("max_contracts_per_order", risk.max_contracts_per_order),))


def record(state: RiskState, decision: RiskDecision) -> RiskState:
    """The state after an accepted intent was handed to the executor."""
    if not decision.accepted:
        return state
    return replace(state, orders_today=state.orders_today + 1,
                   sent_today=state.sent_today | {decision.intent_id})
