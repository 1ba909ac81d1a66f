"""The simulated position book of dry-run and what-if modes. Pure: no I/O, no clock.

Each cycle the supervisor passes every active position and its contract's latest snapshot
through ``step``; the result is the position a bracket order at IBKR would now be in:

    open_from(intent) --> pending --fill--> open --bid >= take_profit--> closed (take_profit)
                             |                 |--bid <= stop_loss----> closed (stop_loss)
                             |                 |--exit time, a bid----> closed (expiry)
                             |                 '--settle after close--> expired (intrinsic)
                             '--entry_timeout_s / exit time-----------> closed (cancelled)

The exit time is the expiry's close less ``risk.exit_before_expiry_min``: nothing is held into
an expiry on purpose. ``settle`` is the fallback for a position the exit missed (no bid, the
bot was down): intrinsic value from the underlying's regular-session close on the expiry day,
never from the quote of a contract that is no longer listed.

Fill rules (we only BUY options to open, and SELL them to close):
- entry: a buy limit fills once the ask is at or below the limit, at min(limit, ask). A
  snapshot only shows the market at one instant; when the offer is already through our limit
  a marketable limit order trades at the offer (price improvement), so the ask is the price.
- take-profit: a resting sell limit; it fills when the bid reaches it, at the take-profit
  price itself (no improvement assumed: the conservative side).
- stop-loss: a stop becomes a market order when triggered, so it sells at the bid, which may be
  below the stop price (slippage is part of what dry-run P&L should show).
A price is used only if ``common.quotes`` says it is usable, and a crossed market is treated as
no market at all: a NaN / -1 / 0 snapshot moves nothing, the last mark is kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from common.messages import OptionContract, OptionQuote, OrderIntent, Right
from common.quotes import check_quote, clean
from supervisor.journal.records import ExitReason, Position, Status


def open_from(intent: OrderIntent, quantity: int, ts: float) -> Position:
    """The entry order for an accepted intent of ``quantity`` contracts: pending, or filled
    at once at the ask it was decided on when its limit reaches that ask (a marketable limit
    fills on arrival at a broker; waiting for the next cycle's snapshot would hold it open
    for a whole interval, past an expiry's exit time with a long one)."""
    if quantity < 1:
        raise ValueError(f"{intent.intent_id}: quantity must be >= 1, got {quantity}")
    pending = Position(
        intent.intent_id,
        intent.symbol,
        intent.contract,
        quantity,
        intent.entry_limit,
        intent.take_profit,
        intent.stop_loss,
        "pending",
        ts,
    )
    ask = clean(intent.ask)
    if ask is None or ask > intent.entry_limit:
        return pending
    return replace(pending, status="open", entry_price=ask, filled_ts=ts, mark=ask)


def intrinsic(contract: OptionContract, und_price: float | None) -> float:
    """What an expired option is worth per share; 0 when the underlying price is unknown."""
    und = clean(und_price)
    if und is None:
        return 0.0
    if contract.right is Right.CALL:
        return max(und - contract.strike, 0.0)
    return max(contract.strike - und, 0.0)


@dataclass(frozen=True)
class _Market:
    """The usable parts of a snapshot; all None for a missing or crossed one."""

    bid: float | None = None
    ask: float | None = None
    mark: float | None = None  # mid, else last


def _market(quote: OptionQuote | None) -> _Market:
    if quote is None:
        return _Market()
    # wideness is irrelevant to a fill, so no spread limit
    check = check_quote(quote.bid, quote.ask, quote.last, max_spread_pct=math.inf)
    if check.crossed:
        return _Market(mark=check.last)
    return _Market(check.bid, check.ask, check.mid if check.mid is not None else check.last)


def _close(p: Position, ts: float, reason: ExitReason, price: float | None) -> Position:
    status: Status = "expired" if reason == "expired" else "closed"
    mark = price if p.status == "open" and price is not None else p.mark
    return replace(p, status=status, exit_reason=reason, exit_price=price, closed_ts=ts, mark=mark)


def _step_pending(p: Position, m: _Market, ts: float, entry_timeout_s: float) -> Position:
    # The order would have been cancelled before a snapshot taken after its deadline.
    if ts - p.opened_ts > entry_timeout_s:
        return _close(p, ts, "cancelled", None)
    if m.ask is None or m.ask > p.entry_limit:
        return p
    price = min(p.entry_limit, m.ask)
    return replace(
        p,
        status="open",
        entry_price=price,
        filled_ts=ts,
        mark=m.mark if m.mark is not None else price,
    )


def _step_open(p: Position, m: _Market, ts: float) -> Position:
    if m.bid is not None and m.bid >= p.take_profit:
        return _close(p, ts, "take_profit", p.take_profit)
    if m.bid is not None and m.bid <= p.stop_loss:
        return _close(p, ts, "stop_loss", m.bid)
    return replace(p, mark=m.mark) if m.mark is not None else p


def step(
    p: Position,
    quote: OptionQuote | None,
    ts: float,
    entry_timeout_s: float,
    *,
    exit_at_ts: float | None = None,
) -> Position:
    """The position after one snapshot of its contract (None: no snapshot this cycle).

    From ``exit_at_ts`` on (the expiry's close less ``risk.exit_before_expiry_min``) nothing
    may be held into the expiry: a pending entry is cancelled and an open position sells at
    the bid (exit reason ``expiry``), as soon as a bid is there. Closed and expired positions
    never change; settling one the expiry caught is ``settle``'s job.
    """
    if not p.active:
        return p
    if quote is not None and quote.contract.key != p.contract.key:
        raise ValueError(
            f"{p.intent_id}: quote for {quote.contract.key}, position in {p.contract.key}"
        )
    market = _market(quote)
    if exit_at_ts is not None and ts >= exit_at_ts:
        if p.status == "pending":
            return _close(p, ts, "cancelled", None)
        if market.bid is not None:
            return _close(p, ts, "expiry", market.bid)
        return replace(p, mark=market.mark) if market.mark is not None else p
    if p.status == "pending":
        return _step_pending(p, market, ts, entry_timeout_s)
    return _step_open(p, market, ts)


def flatten(p: Position, quote: OptionQuote | None, ts: float) -> Position:
    """The trader's flatten (supervisor/trading/controls.py): a pending entry is cancelled,
    an open position sold at the bid (exit reason ``flatten``, as live's); with no bid it stays
    held (the next cycle's exits go on)."""
    if not p.active:
        return p
    if p.status == "pending":
        return _close(p, ts, "cancelled", None)
    market = _market(quote)
    if market.bid is None:
        return p
    return _close(p, ts, "flatten", market.bid)


def settle(p: Position, underlying_close: float, ts: float) -> Position:
    """A position still active after its expiry's close: an open one settles at its intrinsic
    value from the underlying's regular-session close that day (exercised if in the money,
    worthless if not); a pending entry was never filled and is cancelled."""
    if not p.active:
        return p
    if p.status == "pending":
        return _close(p, ts, "cancelled", None)
    return _close(p, ts, "expired", intrinsic(p.contract, underlying_close))


def book_pnl(positions: Iterable[Position]) -> tuple[float, float]:
    """(realized, unrealized) over the positions, in account currency."""
    realized = unrealized = 0.0
    for p in positions:
        realized += p.realized_pnl
        unrealized += p.unrealized_pnl
    return realized, unrealized
