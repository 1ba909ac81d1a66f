"""The one place for the "is this a price?" rules.

IBKR reports a missing price as -1, 0 or NaN depending on the field, the market data type and
the time of day, so every other module asks here instead of comparing against sentinels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from common.config import QuoteSettings
from common.messages import NAN, Quote

SOURCES = ("mid", "last", "close")


def usable(x: float | None) -> bool:
    """True for a finite number > 0: the only kind of value that can be a price."""
    # bool is an int subclass; True must not pass as a price of 1.0
    if x is None or isinstance(x, bool) or not isinstance(x, int | float):
        return False
    return math.isfinite(x) and x > 0


def clean(x: float | None) -> float | None:
    """The value as a float when usable, else None."""
    return float(x) if x is not None and usable(x) else None


@dataclass(frozen=True)
class QuoteCheck:
    """A snapshot with the sentinels replaced by None and its problems named in ``flags``."""

    bid: float | None
    ask: float | None
    last: float | None
    close: float | None
    mid: float | None
    spread_pct: float | None  # (ask - bid) / mid * 100
    crossed: bool
    wide: bool
    flags: tuple[str, ...]


def _mid(bid: float, ask: float) -> float:
    total = bid + ask
    # the sum can overflow for absurd inputs; halving first keeps it finite
    mid = total / 2 if math.isfinite(total) else bid / 2 + ask / 2
    # rounding must never put the mid outside the market it comes from
    return min(max(mid, bid), ask)


def check_quote(
    bid: float | None,
    ask: float | None,
    last: float | None = NAN,
    close: float | None = NAN,
    *,
    max_spread_pct: float,
) -> QuoteCheck:
    """Clean the four prices and judge the market; a locked market (bid == ask) is fine."""
    b, a, lst, cls = clean(bid), clean(ask), clean(last), clean(close)
    crossed = b is not None and a is not None and b > a
    mid: float | None = None
    spread_pct: float | None = None
    if b is not None and a is not None and not crossed:
        mid = _mid(b, a)
        spread_pct = (a - b) / mid * 100.0
    # the tolerance keeps a spread exactly on the limit (0.20 on a 2.00 mid at 10 %) inside it
    # despite binary rounding (10.000000000000002)
    wide = spread_pct is not None and spread_pct > max_spread_pct + 1e-9
    flags = tuple(
        name
        for name, bad in (
            ("no_bid", b is None),
            ("no_ask", a is None),
            ("no_last", lst is None),
            ("no_close", cls is None),
            ("crossed", crossed),
            ("wide", wide),
        )
        if bad
    )
    return QuoteCheck(b, a, lst, cls, mid, spread_pct, crossed, wide, flags)


def reference_price(check: QuoteCheck, sources: Sequence[str]) -> tuple[float, str] | None:
    """The first usable source in ``sources`` order as (price, source name), or None.

    A wide market's mid says little about where the stock trades, so it falls through to the
    next source.
    """
    for source in sources:
        if source == "mid":
            price = None if check.wide else check.mid
        elif source == "last":
            price = check.last
        elif source == "close":
            price = check.close
        else:
            raise ValueError(f"unknown price source {source!r}; expected one of {SOURCES}")
        if price is not None:
            return price, source
    return None


def check_underlying(
    q: Quote, settings: QuoteSettings
) -> tuple[QuoteCheck, tuple[float, str] | None]:
    """check_quote + reference_price for an underlying snapshot, with the configured rules."""
    check = check_quote(q.bid, q.ask, q.last, q.close, max_spread_pct=settings.max_spread_pct)
    return check, reference_price(check, settings.price_sources)
