"""The sim's account ledger and IBKR's cost / realized P&L rules, with no sockets.

``positions.apply_trade`` is tested on hand-built positions; the ledger through an
``OrderBook`` (tests/test_gateway_sim_orders.py ``Desk``) whose matcher passes and closes the
test runs at named sim instants, so every day boundary is exact.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from tests.sessions import FRIDAY_1558, SATURDAY_NOON, TUESDAY_MORNING, TUESDAY_NIGHT
from tests.test_gateway_sim_orders import NEXT_WEEK, Desk, make_desk
from tools.gateway_sim.instruments import Instrument
from tools.gateway_sim.positions import Position, apply_trade

pytestmark = pytest.mark.timeout(60)
IMMEDIATE = {"orders": {"fill_mode": "immediate"}}
FRIDAY = date(2026, 12, 4)


def at(moment: datetime, hh: int, mm: int, days: int = 0) -> float:
    return (moment + timedelta(days=days)).replace(hour=hh, minute=mm, second=0).timestamp()


def fill(
    desk: Desk, order_id: int, inst: Instrument, action: str, qty: float, price: float, ts: float
) -> float:
    """Place an order that fills at ``price`` on the pass at ``ts``; returns its commission."""
    order = desk.place(order_id, inst, action, qty, price)
    desk.book.match_pass(ts)
    assert order.status == "Filled"
    return order.commission_paid


# ---- avgCost and realized P&L -------------------------------------------------------------------
def test_a_short_position_costs_its_net_credit_and_a_buy_back_realizes_against_it() -> None:
    call = make_desk(TUESDAY_MORNING).option(NEXT_WEEK, 680.0)
    pos = Position(call)
    assert apply_trade(pos, -4, 3.0, 2.6) is None  # opening: nothing realized
    assert pos.avg_cost == pytest.approx(300 - 2.6 / 4)
    realized = apply_trade(pos, 1, 1.0, 1.0)
    assert realized == pytest.approx(pos.avg_cost - 100 - 1.0)
    assert pos.quantity == -3 and pos.avg_cost == pytest.approx(300 - 2.6 / 4)


def test_adding_averages_the_cost_and_a_flip_splits_the_commission() -> None:
    call = make_desk(TUESDAY_MORNING).option(NEXT_WEEK, 680.0)
    pos = Position(call)
    apply_trade(pos, 2, 5.0, 1.3)
    apply_trade(pos, 2, 6.0, 1.3)
    held_cost = (1000 + 1.3 + 1200 + 1.3) / 4
    assert pos.avg_cost == pytest.approx(held_cost)
    # selling 10 closes 4 (4/10 of the commission) and opens 6 short (the other 6/10)
    realized = apply_trade(pos, -10, 7.0, 6.5)
    assert realized == pytest.approx((700 - held_cost) * 4 - 6.5 * 0.4)
    assert pos.quantity == -6 and pos.avg_cost == pytest.approx(700 - 6.5 * 0.6 / 6)
    assert pos.realized_pnl == pytest.approx(realized)


# ---- cash and net liquidation -------------------------------------------------------------------
def test_cash_net_liquidation_and_available_funds_follow_the_fills() -> None:
    desk = make_desk(TUESDAY_MORNING, **IMMEDIATE)
    ledger, spy = desk.book.ledger, desk.spy()
    start = ledger.figures(desk.ts())
    fee = fill(desk, 1, spy, "BUY", 10, 600.0, desk.ts(1))
    now = desk.ts(2)
    fig = ledger.figures(now)
    assert fig.cash == pytest.approx(start.cash - 6000 - fee)
    assert fig.net_liquidation == pytest.approx(fig.cash + 10 * desk.market.mark(spy, now))
    assert fig.available_funds is not None and start.available_funds is not None
    assert fig.available_funds == pytest.approx(start.available_funds - 6000 - fee)
    assert fig.unrealized_pnl == pytest.approx(10 * desk.market.mark(spy, now) - 6000 - fee)
    held = fig.position(spy.con_id)
    assert held is not None and held.avg_cost == pytest.approx(600 + fee / 10)


# ---- the trading day ----------------------------------------------------------------------------
def test_the_trading_day_starts_at_the_extended_open_of_the_last_trading_day() -> None:
    clock = make_desk(TUESDAY_MORNING).market.clock  # real hours; Wednesday is a holiday here
    assert clock.trading_day_start(TUESDAY_MORNING.timestamp()) == at(TUESDAY_MORNING, 4, 0)
    assert clock.trading_day_start(TUESDAY_NIGHT.timestamp()) == at(TUESDAY_NIGHT, 4, 0, -1)
    assert clock.trading_day_start(at(TUESDAY_MORNING, 12, 0, 1)) == at(TUESDAY_MORNING, 4, 0)
    assert clock.trading_day_start(at(TUESDAY_MORNING, 4, 0, 2)) == at(TUESDAY_MORNING, 4, 0, 2)
    assert clock.trading_day_start(SATURDAY_NOON.timestamp()) == at(SATURDAY_NOON, 4, 0, -1)


def test_realized_today_and_daily_pnl_reset_only_when_the_next_trading_day_starts() -> None:
    # Given a round trip on Tuesday and 10 SPY shares still held
    desk = make_desk(TUESDAY_MORNING, **IMMEDIATE)
    ledger, spy = desk.book.ledger, desk.spy()
    call = desk.option(NEXT_WEEK, 680.0)
    fees = fill(desk, 1, call, "BUY", 2, 5.0, desk.ts(1))
    fees += fill(desk, 2, call, "SELL", 2, 5.5, desk.ts(2))
    fill(desk, 3, spy, "BUY", 10, 600.0, desk.ts(3))
    round_trip = 2 * 50.0 - fees
    # Then Tuesday evening and the Wednesday holiday still count Tuesday's figures
    for ts in (
        at(TUESDAY_MORNING, 19, 0),
        at(TUESDAY_MORNING, 12, 0, 1),
        at(TUESDAY_MORNING, 3, 59, 2),
    ):
        assert ledger.figures(ts).realized_pnl_today == pytest.approx(round_trip)
    # When Thursday's session opens at 04:00, the day starts over from the marks then
    thursday = at(TUESDAY_MORNING, 4, 0, 2)
    opened = ledger.figures(thursday)
    later = ledger.figures(thursday + 3600)
    assert (opened.realized_pnl_today, opened.daily_pnl) == (0.0, 0.0)
    assert later.realized_pnl == pytest.approx(round_trip)
    moved = 10 * (desk.market.mark(spy, thursday + 3600) - desk.market.mark(spy, thursday))
    assert later.daily_pnl == pytest.approx(moved) and moved != 0
    assert sum(p.daily_pnl for p in later.positions) == pytest.approx(later.daily_pnl)


# ---- expiration ---------------------------------------------------------------------------------
def test_short_options_expiring_worthless_realize_their_credit_and_move_no_cash() -> None:
    desk = make_desk(FRIDAY_1558, session={"mode": "real"})
    ledger = desk.book.ledger
    otm_call, otm_put = desk.option(FRIDAY, 760.0, "C"), desk.option(FRIDAY, 600.0, "P")
    desk.book.positions[otm_call.con_id] = Position(otm_call, -3, 45.0)
    desk.book.positions[otm_put.con_id] = Position(otm_put, 2, 12.5)
    before = ledger.figures(at(FRIDAY_1558, 15, 59))
    desk.book.closes.sweep(at(FRIDAY_1558, 16, 0))
    after = ledger.figures(at(FRIDAY_1558, 16, 1))
    assert after.realized_pnl_today == pytest.approx(3 * 45.0 - 2 * 12.5)
    assert after.cash == before.cash
    assert [p.quantity for p in after.positions] == [0, 0]


def test_an_exercise_pays_the_strike_and_realizes_nothing_on_the_option() -> None:
    desk = make_desk(FRIDAY_1558, session={"mode": "real"})
    ledger = desk.book.ledger
    itm = desk.option(FRIDAY, 600.0, "C")
    desk.book.positions[itm.con_id] = Position(itm, 2, 8000.0)
    before = ledger.figures(at(FRIDAY_1558, 15, 59))
    close = at(FRIDAY_1558, 16, 0)
    desk.book.closes.sweep(close)
    after = ledger.figures(close + 60)
    stock = after.position(desk.spy().con_id)
    assert stock is not None and (stock.quantity, stock.avg_cost) == (200, 600.0)
    assert after.cash == pytest.approx(before.cash - 200 * 600.0)
    assert after.realized_pnl_today == 0.0  # IBKR at delivery: the premium is not realized
    assert after.net_liquidation == pytest.approx(
        after.cash + 200 * desk.market.mark(desk.spy(), close + 60)
    )
