"""The simulated position book: fills, take-profit, stop-loss, timeouts, bad quotes, expiry.

Every P&L below is worked by hand: (exit - entry) x contracts x 100.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from common.calendar import is_expired
from common.messages import OptionContract, OptionQuote, OrderIntent, Right, Signal
from supervisor.journal.records import Position
from supervisor.trading.paper import book_pnl, intrinsic, open_from, settle, step

pytestmark = pytest.mark.timeout(30)

NAN = math.nan
CALL = OptionContract("SPY", "20260109", 680.0, Right.CALL)
PUT = OptionContract("SPY", "20260109", 680.0, Right.PUT)
# Thursday 2026-01-08 10:30 New York (EST, UTC-5)
T0 = datetime(2026, 1, 8, 15, 30, tzinfo=UTC).timestamp()
TIMEOUT = 60.0


def intent(contract: OptionContract = CALL) -> OrderIntent:
    return OrderIntent(
        "id-" + contract.key,
        1,
        "SPY",
        contract,
        Signal.BUY,
        entry_limit=2.00,
        take_profit=3.00,
        stop_loss=1.40,
        premium=2.00,
        confidence=0.7,
        reasons=("hand-built",),
    )


def quote(
    bid: float = NAN,
    ask: float = NAN,
    last: float = NAN,
    und: float = NAN,
    contract: OptionContract = CALL,
) -> OptionQuote:
    return OptionQuote(contract, bid=bid, ask=ask, last=last, und_price=und)


def filled(quantity: int = 1, ask: float = 2.00, contract: OptionContract = CALL) -> Position:
    p = step(
        open_from(intent(contract), quantity, T0),
        quote(ask - 0.10, ask, contract=contract),
        T0 + 1,
        TIMEOUT,
    )
    assert p.status == "open"
    return p


def test_open_from_is_a_pending_entry_with_the_intents_bracket() -> None:
    p = open_from(intent(), 3, T0)
    assert (p.status, p.quantity, p.opened_ts) == ("pending", 3, T0)
    assert (p.entry_limit, p.take_profit, p.stop_loss) == (2.00, 3.00, 1.40)
    assert p.multiplier == 100
    assert (p.entry_price, p.unrealized_pnl, p.realized_pnl) == (None, 0.0, 0.0)
    with pytest.raises(ValueError, match="quantity"):
        open_from(intent(), 0, T0)


def test_a_marketable_entry_fills_at_once_at_the_ask_it_was_decided_on() -> None:
    # an entry priced at (or over) the ask fills on arrival, as at a broker
    at_ask = open_from(replace(intent(), bid=1.90, ask=2.00), 3, T0)
    assert (at_ask.status, at_ask.entry_price, at_ask.filled_ts) == ("open", 2.00, T0)
    below = open_from(replace(intent(), bid=1.90, ask=2.05), 3, T0)  # mid-priced: waits
    assert (below.status, below.entry_price) == ("pending", None)
    assert open_from(replace(intent(), ask=-1.0), 3, T0).status == "pending"  # no ask known


def test_a_position_reaching_its_take_profit() -> None:
    p = open_from(intent(), 3, T0)
    # Given an offer above the limit, the buy limit rests
    p = step(p, quote(1.95, 2.05), T0 + 10, TIMEOUT)
    assert p.status == "pending"
    # When the offer drops through the limit, it fills at the offer (1.98 < 2.00)
    p = step(p, quote(1.90, 1.98), T0 + 20, TIMEOUT)
    assert (p.status, p.entry_price, p.filled_ts) == ("open", 1.98, T0 + 20)
    assert p.mark == pytest.approx(1.94)  # mid of 1.90 / 1.98
    # Marked at the mid: (2.45 - 1.98) x 3 x 100 = 141
    p = step(p, quote(2.40, 2.50), T0 + 30, TIMEOUT)
    assert p.mark == pytest.approx(2.45)
    assert p.unrealized_pnl == pytest.approx(141.0)
    assert book_pnl([p]) == (0.0, pytest.approx(141.0))
    # Then a bid through the take-profit sells at the take-profit: (3.00 - 1.98) x 300 = 306
    p = step(p, quote(3.10, 3.20), T0 + 40, TIMEOUT)
    assert (p.status, p.exit_reason, p.exit_price, p.closed_ts) == (
        "closed",
        "take_profit",
        3.00,
        T0 + 40,
    )
    assert p.realized_pnl == pytest.approx(306.0)
    assert p.unrealized_pnl == 0.0
    assert book_pnl([p]) == (pytest.approx(306.0), 0.0)


def test_a_position_hitting_its_stop_loss_sells_at_the_bid() -> None:
    # Given an ask exactly at the limit: filled at 2.00
    p = filled(quantity=2, ask=2.00)
    assert p.entry_price == 2.00
    # A bid above the stop changes only the mark
    p = step(p, quote(1.45, 1.55), T0 + 30, TIMEOUT)
    assert (p.status, p.mark) == ("open", pytest.approx(1.50))
    assert p.unrealized_pnl == pytest.approx(-100.0)  # (1.50 - 2.00) x 2 x 100
    # When the bid falls through the stop (1.40) the stop sells at the bid, 1.20:
    # (1.20 - 2.00) x 2 x 100 = -160
    p = step(p, quote(1.20, 1.30), T0 + 40, TIMEOUT)
    assert (p.status, p.exit_reason, p.exit_price) == ("closed", "stop_loss", 1.20)
    assert p.realized_pnl == pytest.approx(-160.0)


def test_a_bid_exactly_at_either_bracket_price_triggers_it() -> None:
    assert step(filled(), quote(3.00, 3.10), T0 + 5, TIMEOUT).exit_reason == "take_profit"
    stopped = step(filled(), quote(1.40, 1.50), T0 + 5, TIMEOUT)
    assert (stopped.exit_reason, stopped.exit_price) == ("stop_loss", 1.40)


def test_pending_never_filled_is_cancelled_after_the_timeout() -> None:
    p = open_from(intent(), 1, T0)
    p = step(p, quote(2.00, 2.10), T0 + 30, TIMEOUT)
    assert p.status == "pending"
    # at exactly the timeout it is still working
    assert step(p, quote(2.00, 2.10), T0 + TIMEOUT, TIMEOUT).status == "pending"
    # past it, it is cancelled even though this snapshot's offer (1.50) would fill it
    p = step(p, quote(1.40, 1.50), T0 + TIMEOUT + 1, TIMEOUT)
    assert (p.status, p.exit_reason, p.closed_ts) == ("closed", "cancelled", T0 + TIMEOUT + 1)
    assert (p.entry_price, p.exit_price) == (None, None)
    assert (p.realized_pnl, p.unrealized_pnl) == (0.0, 0.0)


@pytest.mark.parametrize(
    "bad",
    [
        quote(),  # all NaN
        quote(-1.0, -1.0, -1.0),
        quote(0.0, 0.0, 0.0),
        quote(3.50, 1.00),  # crossed: its bid would otherwise take profit and its ask fill
        quote(math.inf, math.inf),
        None,
    ],
)
def test_nan_and_sentinel_quotes_move_nothing(bad: OptionQuote | None) -> None:
    pending = open_from(intent(), 1, T0)
    assert step(pending, bad, T0 + 5, TIMEOUT) == pending
    held = replace(filled(), mark=2.10)
    after = step(held, bad, T0 + 5, TIMEOUT)
    assert after == held
    assert after.mark == 2.10
    assert after.unrealized_pnl == pytest.approx(10.0)  # (2.10 - 2.00) x 1 x 100


def test_one_sided_quote_marks_at_last_and_a_lone_bid_can_still_stop() -> None:
    held = filled()
    assert step(held, quote(NAN, 2.20, last=2.15), T0 + 5, TIMEOUT).mark == 2.15
    # no ask and no last: the mark stays, but the bid alone is a price to sell at
    kept = step(held, quote(1.60, NAN), T0 + 5, TIMEOUT)
    assert (kept.status, kept.mark) == ("open", held.mark)
    assert step(held, quote(1.30, -1.0), T0 + 5, TIMEOUT).exit_price == 1.30


def test_settlement_is_intrinsic_value_from_the_underlyings_close() -> None:
    saturday = datetime(2026, 1, 10, 15, 0, tzinfo=UTC).timestamp()
    # Call 680 with the underlying closing at 683.50: worth 3.50; (3.50 - 2.00) x 100 = 150
    call = settle(filled(), 683.50, saturday)
    assert (call.status, call.exit_reason, call.exit_price) == ("expired", "expired", 3.50)
    assert call.realized_pnl == pytest.approx(150.0)
    # the put is worthless there: (0 - 2.00) x 2 x 100 = -400
    put = settle(filled(quantity=2, contract=PUT), 683.50, saturday)
    assert (put.status, put.exit_price) == ("expired", 0.0)
    assert put.realized_pnl == pytest.approx(-400.0)
    # a pending entry the expiry caught was never filled: cancelled
    pending = settle(open_from(intent(), 1, T0), 683.50, saturday)
    assert (pending.status, pending.exit_reason) == ("closed", "cancelled")
    assert book_pnl([call, put, pending]) == (pytest.approx(-250.0), 0.0)
    assert settle(call, 700.0, saturday) == call  # settled once, for good


def test_from_the_exit_time_nothing_is_held_into_the_expiry() -> None:
    exit_at = T0 + 600
    # before the exit time the bracket works as usual
    assert step(filled(), quote(1.95, 2.05), exit_at - 1, TIMEOUT, exit_at_ts=exit_at) == (
        replace(filled(), mark=2.0)
    )
    # from it: sold at the bid (a loss or a gain, whatever the market gives)
    sold = step(filled(), quote(1.70, 1.80), exit_at, TIMEOUT, exit_at_ts=exit_at)
    assert (sold.status, sold.exit_reason, sold.exit_price) == ("closed", "expiry", 1.70)
    assert sold.realized_pnl == pytest.approx(-30.0)
    # no bid yet: still held (marked), tried again next cycle
    kept = step(filled(), quote(NAN, 1.80, last=1.75), exit_at, TIMEOUT, exit_at_ts=exit_at)
    assert (kept.status, kept.mark) == ("open", 1.75)
    # a pending entry is cancelled rather than filled into the last minutes
    pending = step(open_from(intent(), 1, T0), quote(1.0, 1.1), exit_at, 10**9, exit_at_ts=exit_at)
    assert (pending.status, pending.exit_reason) == ("closed", "cancelled")


def test_expiry_uses_the_new_york_date() -> None:
    # 2026-01-10 00:30 UTC is still the expiry day (Jan 9, 19:30) in New York
    late_on_expiry_day = datetime(2026, 1, 10, 0, 30, tzinfo=UTC).timestamp()
    assert not is_expired(CALL.expiry, late_on_expiry_day)
    assert is_expired(CALL.expiry, late_on_expiry_day, tz="UTC")
    next_morning = datetime(2026, 1, 10, 5, 0, tzinfo=UTC).timestamp()  # 00:00 in New York
    assert is_expired(CALL.expiry, next_morning)


def test_intrinsic_by_hand() -> None:
    assert intrinsic(CALL, 690.0) == 10.0
    assert intrinsic(CALL, 670.0) == 0.0
    assert intrinsic(PUT, 670.0) == 10.0
    assert intrinsic(PUT, NAN) == 0.0
    assert intrinsic(CALL, -1.0) == 0.0


def test_finished_positions_never_change_and_other_contracts_are_refused() -> None:
    done = step(filled(), quote(3.10, 3.20), T0 + 5, TIMEOUT)
    assert step(done, quote(1.00, 1.10), T0 + 6, TIMEOUT) == done
    with pytest.raises(ValueError, match="quote for"):
        step(filled(), quote(2.0, 2.1, contract=PUT), T0 + 5, TIMEOUT)


def test_pnl_is_nan_safe() -> None:
    odd = replace(filled(), mark=NAN)
    assert odd.unrealized_pnl == 0.0
    closed = replace(filled(), status="closed", exit_reason="take_profit", exit_price=NAN)
    assert closed.realized_pnl == 0.0
    assert book_pnl([]) == (0.0, 0.0)
