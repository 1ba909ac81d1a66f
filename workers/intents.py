"""From option snapshots to a bracket OrderIntent: liquidity, fallback greeks, prices, the id.

Pure functions. The supervisor's risk step decides the quantity; this module only decides
which contract, at what limit, with which take-profit and stop-loss.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from common.calendar import days_to_expiry
from common.config import OptionsSettings
from common.greeks import bs_greeks, implied_vol
from common.messages import OptionContract, OptionQuote, OrderIntent, Right, Signal
from common.quotes import check_quote, usable

# The right a directional signal buys: calls for BUY, puts for SELL.
SIGNAL_RIGHT = {Signal.BUY: Right.CALL, Signal.SELL: Right.PUT}


def _spread_pct(oq: OptionQuote) -> float:
    spread = check_quote(oq.bid, oq.ask, max_spread_pct=math.inf).spread_pct
    return math.inf if spread is None else spread


def liquidity(oq: OptionQuote, opts: OptionsSettings) -> str | None:
    """None when the quote is tradable, else why not."""
    check = check_quote(oq.bid, oq.ask, oq.last, max_spread_pct=opts.max_spread_pct)
    if check.bid is None:
        return "no bid"
    if check.ask is None:
        return "no ask"
    if check.crossed:
        return "crossed"
    if check.wide:  # a spread exactly on the limit is inside it (common.quotes)
        return f"spread {check.spread_pct:.1f}% > {opts.max_spread_pct:.1f}%"
    if opts.min_volume > 0:
        volume = oq.volume if math.isfinite(oq.volume) else 0.0
        if volume < opts.min_volume:
            return f"volume {volume:g} < {opts.min_volume}"
    return None


def fill_greeks(
    oq: OptionQuote, today: date, rate: float = 0.04, spot: float | None = None
) -> OptionQuote:
    """Black–Scholes greeks where IBKR sent none; the quote unchanged when they can't be had.

    The underlying's price comes with IBKR's model greeks, so a quote without them usually
    lacks it too: ``spot`` (the worker's own reference price of the underlying) stands in.
    """
    if math.isfinite(oq.delta):
        return oq
    if not usable(oq.und_price):
        if spot is None or not usable(spot):
            return oq
        oq = dataclasses.replace(oq, und_price=spot)
    dte = days_to_expiry(oq.contract.expiry, today)
    if dte is None or dte < 0:
        return oq
    # A same-day expiry still has hours to run; half a day keeps the model off t = 0.
    t_years = max(dte, 0.5) / 365.0
    spot, strike, right = oq.und_price, oq.contract.strike, oq.contract.right
    iv = oq.iv
    if not usable(iv):
        if not (usable(oq.bid) and usable(oq.ask)) or oq.bid > oq.ask:
            return oq
        implied = implied_vol((oq.bid + oq.ask) / 2.0, spot, strike, t_years, rate, right)
        if implied is None:
            return oq
        iv = implied
    g = bs_greeks(spot, strike, t_years, rate, iv, right)
    return dataclasses.replace(oq, iv=iv, delta=g.delta, gamma=g.gamma, vega=g.vega, theta=g.theta)


def intent_id(day: str, symbol: str, contract: OptionContract, signal: Signal) -> str:
    """A short id that is the same for the same (day, symbol, contract, signal) in any process."""
    # Exchange is left out: the same contract routed elsewhere is still the same trade.
    parts = (
        day,
        symbol,
        contract.symbol,
        contract.expiry,
        repr(float(contract.strike)),
        contract.right.value,
        str(contract.multiplier),
        contract.trading_class,
        signal.value,
    )
    return hashlib.sha1("|".join(parts).encode("utf-8")).hexdigest()[:16]


def tick_for(price: float) -> float:
    """US option minimum increment: 0.05 from 3.00 up, 0.01 below."""
    return 0.05 if price >= 3.0 else 0.01


def round_to_tick(price: float) -> float:
    # Decimal on repr() rounds 1.125 up to 1.13, where float division would land either side.
    tick = Decimal(str(tick_for(price)))
    steps = (Decimal(repr(price)) / tick).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return float(steps * tick)


def build_intent(
    oq: OptionQuote,
    *,
    cycle_id: int,
    day: str,
    signal: Signal,
    confidence: float,
    reasons: Sequence[str],
    opts: OptionsSettings,
) -> OrderIntent:
    """A bracket buy of ``oq.contract``: limit entry, take-profit and stop-loss on the tick."""
    contract = oq.contract
    if SIGNAL_RIGHT.get(signal) is not contract.right:
        raise ValueError(f"{contract.key}: signal {signal.value} does not buy this right")
    if not (usable(oq.bid) and usable(oq.ask)) or oq.bid > oq.ask:
        raise ValueError(f"{contract.key}: no two-sided market (bid {oq.bid}, ask {oq.ask})")
    mid = (oq.bid + oq.ask) / 2.0
    raw_entry = {"mid": mid, "ask": oq.ask, "bid": oq.bid}[opts.entry_price]
    entry = max(round_to_tick(raw_entry), 0.01)
    take_profit = round_to_tick(entry * (1.0 + opts.take_profit_pct / 100.0))
    # A stop at 0 would never trigger: keep it at least one tick above.
    stop_loss = max(round_to_tick(entry * (1.0 - opts.stop_loss_pct / 100.0)), 0.01)
    return OrderIntent(
        intent_id=intent_id(day, contract.symbol, contract, signal),
        cycle_id=cycle_id,
        symbol=contract.symbol,
        contract=contract,
        signal=signal,
        entry_limit=entry,
        take_profit=take_profit,
        stop_loss=stop_loss,
        premium=mid,
        confidence=confidence,
        reasons=(
            *reasons,
            f"entry {entry:.2f} {opts.entry_price}",
            f"tp {take_profit:.2f} (+{opts.take_profit_pct:g}%)",
            f"sl {stop_loss:.2f} (-{opts.stop_loss_pct:g}%)",
        ),
        bid=oq.bid,
        ask=oq.ask,
        quote_ts=oq.ts,
    )


def best_intent(
    quotes: Sequence[OptionQuote],
    target: float,
    *,
    cycle_id: int,
    day: str,
    signal: Signal,
    confidence: float,
    reasons: Sequence[str],
    opts: OptionsSettings,
) -> tuple[OrderIntent | None, tuple[str, ...]]:
    """The intent for the liquid quote nearest ``target`` (ties: tighter spread), and rejections."""
    rejections: list[str] = []
    liquid: list[OptionQuote] = []
    for oq in quotes:
        why = liquidity(oq, opts)
        if why is None:
            liquid.append(oq)
        else:
            rejections.append(f"{oq.contract.key}: {why}")
    if not liquid:
        return None, tuple(rejections)
    best = min(
        liquid,
        key=lambda q: (
            abs(q.contract.strike - target),
            _spread_pct(q),
            q.contract.strike,
        ),
    )
    intent = build_intent(
        best,
        cycle_id=cycle_id,
        day=day,
        signal=signal,
        confidence=confidence,
        reasons=reasons,
        opts=opts,
    )
    return intent, tuple(rejections)
