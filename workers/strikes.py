"""Choosing option contracts from a chain: expiry, ATM strike, strike window, candidates.

Pure functions over plain values. Listed chains are messy (unsorted, duplicated, uneven
increments, gaps), so nothing here assumes a regular grid.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from common.calendar import days_to_expiry, parse_expiry
from common.config import EXPIRY_RULES, OptionsSettings
from common.messages import OptionChain, OptionContract, Right


class ChainError(ValueError):
    """The chain cannot give a contract; the message names the symbol and the problem."""


def _who(symbol: str) -> str:
    return symbol or "option chain"


def _listed(strikes: Sequence[float]) -> list[float]:
    """Sorted unique strikes, without the NaN / zero placeholders a feed may send."""
    if isinstance(strikes, tuple):  # a chain's: the same tuple each cycle of the day
        return list(_listed_once(strikes))
    return sorted({float(s) for s in strikes if math.isfinite(s) and s > 0})


@lru_cache(maxsize=256)
def _listed_once(strikes: tuple[float, ...]) -> tuple[float, ...]:
    # a chain holds hundreds of strikes, looked at several times a symbol-cycle: sorted once
    return tuple(sorted({float(s) for s in strikes if math.isfinite(s) and s > 0}))


def _nearest(listed: Sequence[float], x: float) -> int:
    """The index of the sorted ``listed`` strike nearest ``x``, a tie to the lower one (what
    ``min(listed, key=(abs(s - x), s))`` picks, by bisection)."""
    i = bisect_left(listed, x)
    if i == 0:
        return 0
    if i == len(listed):
        return i - 1
    return i - 1 if x - listed[i - 1] <= listed[i] - x else i


def atm_strike(strikes: Sequence[float], price: float, *, symbol: str = "") -> float:
    """The listed strike nearest ``price``; a tie goes to the lower strike."""
    listed = _listed(strikes)
    if not listed:
        raise ChainError(f"{_who(symbol)}: no strikes listed")
    if not (math.isfinite(price) and price > 0):
        raise ChainError(f"{_who(symbol)}: reference price {price!r} is not usable")
    return listed[_nearest(listed, price)]


def strike_window(
    strikes: Sequence[float], atm: float, each_side: int = 5, *, symbol: str = ""
) -> tuple[float, ...]:
    """``min(2*each_side + 1, n)`` consecutive listed strikes around ``atm``, sorted.

    At a chain end the window slides inwards instead of shrinking, so a caller always gets
    the same number of candidates when the chain has them.
    """
    listed = _listed(strikes)
    if not listed:
        raise ChainError(f"{_who(symbol)}: no strikes listed")
    if each_side < 0:
        raise ValueError(f"each_side must be >= 0, got {each_side}")
    # ``atm`` normally is listed; if not, centre on the listed strike nearest it.
    centre = _nearest(listed, atm)
    size = min(2 * each_side + 1, len(listed))
    start = min(max(centre - each_side, 0), len(listed) - size)
    return tuple(listed[start : start + size])


def pick_expiry(
    expirations: Sequence[str],
    today: date,
    opts: OptionsSettings,
    *,
    minutes_left_today: float | None = None,
    symbol: str = "",
) -> str:
    """The listed expiry (YYYYMMDD) the rule picks, never one already past.

    nearest     the first listed expiry at least ``min_dte`` days away
    weekly      the last listed expiry of the first week holding one ``min_dte`` days away
                (Friday, or the Thursday before a Friday holiday)
    dte_window  the nearest listed expiry inside ``[min_dte, max_dte]``
    A same-day expiry (``min_dte`` 0) qualifies only with ``minutes_left_today`` (to the
    session's close) of at least ``min_minutes_to_expiry``; unknown minutes: it does not.
    Malformed dates are ignored.
    """
    if opts.expiry_rule not in EXPIRY_RULES:
        raise ValueError(f"unknown expiry rule {opts.expiry_rule!r}; expected {EXPIRY_RULES}")
    parsed = sorted((d, e.strip()) for e in expirations if (d := parse_expiry(e)) is not None)
    if not parsed:
        shown = list(expirations)[:5]
        raise ChainError(f"{_who(symbol)}: no valid expiry listed (got {shown})")
    same_day_ok = (
        minutes_left_today is not None and minutes_left_today >= opts.min_minutes_to_expiry
    )
    eligible = [
        (d, e)
        for d, e in parsed
        if (d - today).days >= max(opts.min_dte, 0) and (d != today or same_day_ok)
    ]
    if opts.expiry_rule == "dte_window":
        eligible = [(d, e) for d, e in eligible if (d - today).days <= opts.max_dte]
    if not eligible:
        raise ChainError(_no_expiry(symbol, today, opts, parsed, same_day_ok))
    first_day, first = eligible[0]
    if opts.expiry_rule != "weekly":
        return first
    week = first_day.isocalendar()[:2]
    return [e for d, e in eligible if d.isocalendar()[:2] == week][-1]


def _no_expiry(
    symbol: str,
    today: date,
    opts: OptionsSettings,
    parsed: Sequence[tuple[date, str]],
    same_day_ok: bool,
) -> str:
    window = (
        f"{opts.min_dte}..{opts.max_dte}"
        if opts.expiry_rule == "dte_window"
        else f">= {opts.min_dte}"
    )
    same_day = (
        ""
        if opts.min_dte > 0 or same_day_ok
        else (f"; today's only with {opts.min_minutes_to_expiry:g}+ min to the close")
    )
    nearest = [e for _, e in parsed][:5]
    return (
        f"{_who(symbol)}: no expiry {window} dte ({opts.expiry_rule}, today "
        f"{today.isoformat()}{same_day}); listed {len(parsed)}, first {nearest}"
    )


def target_strike(window: Sequence[float], atm: float, right: Right, moneyness: str) -> float:
    """The strike to aim at: ATM, or one listed strike in / out of the money, within the window."""
    listed = _listed(window)
    if not listed:
        raise ChainError("empty strike window")
    centre = listed.index(min(listed, key=lambda s: (abs(s - atm), s)))
    if moneyness == "atm":
        return listed[centre]
    if moneyness not in ("itm", "otm"):
        raise ValueError(f"unknown moneyness {moneyness!r}; expected atm, itm or otm")
    # A call is in the money below the spot, a put above it.
    step = -1 if right is Right.CALL else 1
    if moneyness == "otm":
        step = -step
    return listed[min(max(centre + step, 0), len(listed) - 1)]


def nearest_strikes(window: Sequence[float], target: float, count: int) -> tuple[float, ...]:
    """The ``count`` strikes nearest ``target`` (ties to the lower), sorted ascending."""
    if count <= 0:
        return ()
    by_distance = sorted(_listed(window), key=lambda s: (abs(s - target), s))
    return tuple(sorted(by_distance[:count]))


@dataclass(frozen=True)
class Selection:
    symbol: str
    expiry: str
    atm: float
    window: tuple[float, ...]
    target: float
    candidates: tuple[OptionContract, ...]
    reasons: tuple[str, ...]


def select_contracts(
    chain: OptionChain,
    price: float,
    right: Right,
    today: date,
    opts: OptionsSettings,
    minutes_left_today: float | None = None,
) -> Selection:
    """Expiry, ATM, window, target and the candidate contracts to quote, with the reasons."""
    symbol = chain.symbol
    expiry = pick_expiry(
        chain.expirations, today, opts, minutes_left_today=minutes_left_today, symbol=symbol
    )
    atm = atm_strike(chain.strikes, price, symbol=symbol)
    window = strike_window(chain.strikes, atm, opts.strikes_each_side, symbol=symbol)
    target = target_strike(window, atm, right, opts.moneyness)
    strikes = nearest_strikes(window, target, opts.strike_count)
    candidates = tuple(
        OptionContract(
            symbol=symbol,
            expiry=expiry,
            strike=strike,
            right=right,
            multiplier=chain.multiplier,
            exchange=chain.exchange,
            trading_class=chain.trading_class,
        )
        for strike in strikes
    )
    dte = days_to_expiry(expiry, today)
    assert dte is not None  # pick_expiry only returns dates it parsed
    reasons = (
        f"expiry {expiry} ({dte} dte, {opts.expiry_rule})",
        f"atm {atm:g} for price {price:g}",
        f"window {window[0]:g}..{window[-1]:g} ({len(window)} strikes)",
        f"target {target:g} ({opts.moneyness} {right.name.lower()})",
        "candidates " + ", ".join(f"{s:g}" for s in strikes),
    )
    return Selection(symbol, expiry, atm, window, target, candidates, reasons)
