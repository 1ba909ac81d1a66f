"""Commissions and the what-if OrderState (margin before / change / after) of an order.

Commission is per contract (options) or share (stocks) with a minimum per ORDER: the parts of
a partially filled order are charged so their sum is ``max(minimum, rate x filled)`` — the
first part carries the minimum, later parts only what they add above it (IBKR's fixed
pricing applies its minimum per order, not per execution).
"""

from __future__ import annotations

from tools.gateway_sim.codec import FieldValue
from tools.gateway_sim.instruments import Instrument
from tools.gateway_sim.market import Market
from tools.gateway_sim.order_codec import number
from tools.gateway_sim.scenario import OrdersSpec, Scenario


def commission(spec: OrdersSpec, inst: Instrument, qty: float) -> float:
    """The commission of an order of ``qty`` executed in full."""
    rate = spec.commission_per_contract if inst.is_option else spec.commission_per_share
    return round(max(spec.min_commission, rate * abs(qty)), 4)


def part_commission(
    spec: OrdersSpec, inst: Instrument, filled_after: float, paid_before: float
) -> float:
    """What one execution adds, given the order's cumulative fill after it and what its
    earlier executions were charged."""
    return round(max(0.0, commission(spec, inst, filled_after) - paid_before), 4)


def what_if_state(
    scenario: Scenario, market: Market, inst: Instrument, fields: dict[str, str]
) -> dict[str, FieldValue]:
    """The OrderState of a what-if answer: margin and equity before, change, after."""
    qty = number(fields, "totalQuantity") or 0.0
    now = market.now()
    price = number(fields, "lmtPrice") or market.mark(inst, now)
    spec = scenario.orders
    if inst.is_option and fields.get("action", "").upper() == "BUY":
        change = price * qty * inst.multiplier
    elif inst.is_option:
        spot = market.underlying(inst.symbol, now)
        change = spec.short_option_margin_pct / 100 * spot * qty * inst.multiplier
    else:
        change = spec.stock_margin_pct / 100 * price * qty
    values = scenario.account.values
    fee = commission(spec, inst, qty)
    before = (
        values.get("InitMarginReq", 0.0),
        values.get("MaintMarginReq", 0.0),
        values.get("EquityWithLoanValue", values.get("NetLiquidation", 0.0)),
    )
    changes = (change, change * 0.8, -fee)
    state: dict[str, FieldValue] = {
        "commission": fee,
        "minCommission": fee,
        "maxCommission": fee,
        "commissionCurrency": scenario.account.currency,
    }
    for i, part in enumerate(("initMargin", "maintMargin", "equityWithLoan")):
        state[f"{part}Before"] = f"{before[i]:.2f}"
        state[f"{part}Change"] = f"{changes[i]:.2f}"
        state[f"{part}After"] = f"{before[i] + changes[i]:.2f}"
    return state
