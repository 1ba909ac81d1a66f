"""The central risk check: sizing and the rules every intent passes. Pure, no I/O.

Rules, in the order they are checked (the first that refuses decides):
paused (the trader's pause: ``python -m supervisor pause`` or POST /api/pause), journal lost
(the journal file was deleted or replaced under the running bot), kill switch, daily loss
limit, market hours (the symbol's own regular session), entry window
(not in the first minutes after the open nor the last before the close), expiry (too little
left before the contract's expiry close), duplicate (sent today by the journal's record, or
live: named by an order or execution at the broker), already positioned (one position per
symbol and direction), quote sanity (missing, crossed, wide, stale), orders per cycle, orders
per day, sizing, then the caps that may shrink the size: contracts per order, position per
symbol, position in total, notional share of net liquidation. Each decision names the rule
that decided it and the values it compared (times as exchange-zone clock times).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from common.calendar import EXCHANGE_TZ, Session, zone
from common.config import OptionsSettings, RiskSettings
from common.messages import OrderIntent
from common.quotes import check_quote

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
    # live: the broker's own P&L of the account today (IBKR reqPnL), when it gives one; the
    # daily loss is then read from it rather than from equity's change since the first cycle
    daily_pnl: float | None = None
    # live: intent ids the broker's open orders and today's executions carry as orderRef;
    # duplicates whatever the journal holds (a journal lost or replaced forgets them)
    at_broker: frozenset[str] = frozenset()
    # what became of the journal file this run writes to ("" while it is still at its path)
    journal_lost: str = ""
    # the trader's pause (supervisor/trading/controls.py): no new entry until a resume
    paused: bool = False


@dataclass(frozen=True)
class RiskContext:
    """Facts of this moment the rules need besides the day's state."""

    orders_this_cycle: int = 0
    now_ts: float | None = None  # None: quote age is not checked (hand-built tests only)
    open_contracts: Mapping[str, int] = field(default_factory=dict)  # by underlying
    held_notional: float = 0.0  # premium held and working in entries, in account currency
    # the desk always checks hours; hand-built tests that are about other rules need not
    check_hours: bool = False
    session: Session | None = None  # the intent's symbol's regular session today; None: closed
    expiry_close_ts: float | None = None  # when the contract's last session closes
    positioned: frozenset[tuple[str, str]] = frozenset()  # (symbol, right) held or pending
    tz: str = EXCHANGE_TZ  # how times in reasons are shown


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
    contracts = risk_budget / loss_per_contract + 1e-9
    # a premium of 1e-300 sizes to infinity: no size at all, never a crash (the caps would
    # not see it either)
    return math.floor(contracts) if math.isfinite(contracts) else 0


def daily_loss(state: RiskState, risk: RiskSettings) -> tuple[bool, str, Values]:
    """Whether today's loss breaches a limit: the broker's daily P&L when known, else
    start-of-day equity minus equity now."""
    loss = -state.daily_pnl if state.daily_pnl is not None else state.start_equity - state.equity
    pct = 100 * loss / state.start_equity if state.start_equity > 0 else 0.0
    values: Values = (
        ("start_equity", state.start_equity),
        ("equity", state.equity),
        ("loss", round(loss, 2)),
        ("loss_pct", round(pct, 3)),
    )
    if pct >= risk.daily_loss_limit_pct:
        return True, f"daily loss {pct:.2f}% >= limit {risk.daily_loss_limit_pct:g}%", values
    if risk.daily_loss_limit_abs and loss >= risk.daily_loss_limit_abs:
        return True, f"daily loss {loss:.2f} >= limit {risk.daily_loss_limit_abs:g}", values
    return False, "", values


class _Refusal(Exception):
    def __init__(self, rule: str, reason: str, values: Values = ()) -> None:
        super().__init__(reason)
        self.rule, self.reason, self.values = rule, reason, values


def _gates(
    intent: OrderIntent,
    state: RiskState,
    risk: RiskSettings,
    options: OptionsSettings,
    ctx: RiskContext,
) -> None:
    """The rules that refuse outright, whatever the size."""
    if state.paused:  # first: a trader who paused wants no entry, whatever else holds
        raise _Refusal("paused", "paused by the trader: no new entry until resume")
    if state.journal_lost:
        raise _Refusal(
            "journal_lost",
            f"{state.journal_lost}: no new entry until the bot is restarted on a journal",
        )
    if state.halted:
        raise _Refusal(
            "kill_switch", "the kill switch tripped earlier today (daily loss, net short or kill)"
        )
    breached, why, values = daily_loss(state, risk)
    if breached:
        raise _Refusal("daily_loss_limit", why, values)
    if ctx.check_hours:
        _hours(intent, risk, options, ctx)
    if intent.intent_id in state.sent_today:
        raise _Refusal("duplicate", "the same intent was already sent today")
    if intent.intent_id in state.at_broker:
        raise _Refusal(
            "duplicate",
            "IBKR lists an order or an execution of today with this "
            "intent id as its orderRef: it was sent (the journal does not say so)",
        )
    if (
        risk.one_position_per_direction
        and (intent.symbol, intent.contract.right.value) in ctx.positioned
    ):
        raise _Refusal(
            "already_positioned",
            f"{intent.symbol} already has a "
            f"{'call' if intent.contract.right.value == 'C' else 'put'} position or "
            "entry working (risk.one_position_per_direction)",
        )
    _quote_sanity(intent, risk, options, ctx)
    if ctx.orders_this_cycle >= risk.max_orders_per_cycle:
        raise _Refusal(
            "max_orders_per_cycle",
            f"{ctx.orders_this_cycle} orders already this cycle",
            (("orders_this_cycle", ctx.orders_this_cycle), ("limit", risk.max_orders_per_cycle)),
        )
    if state.orders_today >= risk.max_orders_per_day:
        raise _Refusal(
            "max_orders_per_day",
            f"{state.orders_today} orders already today",
            (("orders_today", state.orders_today), ("limit", risk.max_orders_per_day)),
        )


def _clock(ts: float, tz: str) -> str:
    return datetime.fromtimestamp(ts, zone(tz)).strftime("%H:%M")


def _hours(
    intent: OrderIntent, risk: RiskSettings, options: OptionsSettings, ctx: RiskContext
) -> None:
    """Entries only inside the symbol's session, away from its open and its close, and never
    in a contract too close to its expiry to be managed."""
    now, session, tz = ctx.now_ts, ctx.session, ctx.tz
    assert now is not None, "hours are checked at a moment"
    if session is None:
        raise _Refusal(
            "market_hours",
            f"{intent.symbol} has no regular session today",
            (("now", _clock(now, tz)),),
        )
    hours = (
        ("now", _clock(now, tz)),
        ("open", _clock(session.open_ts, tz)),
        ("close", _clock(session.close_ts, tz)),
    )
    if not session.contains(now):
        raise _Refusal(
            "market_hours",
            f"{intent.symbol}'s regular session is "
            f"{_clock(session.open_ts, tz)}-{_clock(session.close_ts, tz)}",
            hours,
        )
    earliest = session.open_ts + risk.no_entries_after_open_min * 60
    latest = session.close_ts - risk.no_entries_before_close_min * 60
    window = (("from", _clock(earliest, tz)), ("to", _clock(latest, tz)))
    if now < earliest or now >= latest:
        raise _Refusal(
            "entry_window",
            f"entries {_clock(earliest, tz)}-{_clock(latest, tz)} only, it is {_clock(now, tz)}",
            hours + window,
        )
    if ctx.expiry_close_ts is not None:
        left_min = (ctx.expiry_close_ts - now) / 60
        need_min = max(options.min_minutes_to_expiry, risk.exit_before_expiry_min)
        if left_min < need_min:
            raise _Refusal(
                "expiry",
                f"{intent.contract.key} expires in {left_min:.0f} min, less than {need_min:g}",
                (("minutes_left", round(left_min, 1)), ("minutes_needed", need_min)),
            )


def _quote_sanity(
    intent: OrderIntent, risk: RiskSettings, options: OptionsSettings, ctx: RiskContext
) -> None:
    check = check_quote(intent.bid, intent.ask, max_spread_pct=options.max_spread_pct)
    values: Values = (
        ("bid", intent.bid),
        ("ask", intent.ask),
        ("spread_pct", round(check.spread_pct, 3) if check.spread_pct is not None else "n/a"),
        ("max_spread_pct", options.max_spread_pct),
    )
    if check.bid is None or check.ask is None or check.mid is None:
        raise _Refusal("quote", f"no two-sided market ({', '.join(check.flags)})", values)
    if check.wide:
        raise _Refusal(
            "quote", f"spread {check.spread_pct:.1f}% > {options.max_spread_pct:g}%", values
        )
    if ctx.now_ts is not None:
        age = ctx.now_ts - intent.quote_ts if math.isfinite(intent.quote_ts) else math.inf
        if age > risk.max_quote_age_s:
            raise _Refusal(
                "quote",
                f"quote is stale ({age:.0f}s old)",
                (
                    ("age_s", round(age, 1) if math.isfinite(age) else "unknown"),
                    ("max_quote_age_s", risk.max_quote_age_s),
                ),
            )


def _capped(
    intent: OrderIntent, size: int, state: RiskState, risk: RiskSettings, ctx: RiskContext
) -> tuple[int, str, Values]:
    """The size after every cap, the rule of the tightest cap, and the caps compared."""
    held = ctx.open_contracts.get(intent.symbol, 0)
    held_total = sum(ctx.open_contracts.values())
    outlay = intent.entry_limit * intent.contract.multiplier
    budget = state.equity * risk.max_notional_pct / 100 - ctx.held_notional
    notional_room = (
        math.floor(budget / outlay + 1e-9) if outlay > 0 and math.isfinite(outlay) else 0
    )
    caps = {
        "sizing": size,
        "max_contracts_per_order": risk.max_contracts_per_order,
        "max_position_per_symbol": risk.max_position_per_symbol - held,
        "max_position_total": risk.max_position_total - held_total,
        "max_notional_pct": notional_room,
    }
    rule = min(caps, key=lambda name: caps[name])  # dicts keep order: sizing wins ties
    values: Values = tuple(caps.items()) + (
        ("held_symbol", held),
        ("held_total", held_total),
        ("held_notional", round(ctx.held_notional, 2)),
    )
    return max(caps[rule], 0), rule, values


def evaluate(
    intent: OrderIntent,
    state: RiskState,
    risk: RiskSettings,
    options: OptionsSettings,
    orders_this_cycle: int = 0,
    ctx: RiskContext | None = None,
) -> RiskDecision:
    ctx = ctx or RiskContext(orders_this_cycle=orders_this_cycle)
    try:
        _gates(intent, state, risk, options, ctx)
    except _Refusal as no:
        return RiskDecision(intent.intent_id, False, 0, no.rule, no.reason, no.values)
    size = size_contracts(
        state.equity,
        risk.risk_per_trade_pct,
        intent.premium,
        intent.contract.multiplier,
        options.stop_loss_pct,
    )
    sizing: Values = (
        ("equity", state.equity),
        ("risk_pct", risk.risk_per_trade_pct),
        ("premium", intent.premium),
        ("multiplier", intent.contract.multiplier),
        ("stop_loss_pct", options.stop_loss_pct),
        ("size", size),
    )
    if size < 1:
        return RiskDecision(
            intent.intent_id,
            False,
            0,
            "sizing",
            "the risk budget buys less than one contract",
            sizing,
        )
    quantity, rule, caps = _capped(intent, size, state, risk, ctx)
    if quantity < 1:
        return RiskDecision(
            intent.intent_id, False, 0, rule, f"{rule} leaves no room", sizing + caps
        )
    capped = f" (capped by {rule})" if rule != "sizing" and quantity < size else ""
    return RiskDecision(
        intent.intent_id, True, quantity, "ok", f"{quantity} contracts{capped}", sizing + caps
    )


def record(state: RiskState, decision: RiskDecision) -> RiskState:
    """The state after an accepted intent was handed to the executor."""
    if not decision.accepted:
        return state
    return replace(
        state,
        orders_today=state.orders_today + 1,
        sent_today=state.sent_today | {decision.intent_id},
    )
