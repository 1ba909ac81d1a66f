"""Session closes in the sim: early closes, DAY / GTC orders, option expiration.

Units drive the session clock and an ``OrderBook`` (tests/test_gateway_sim_orders.py
``Desk``) at named sim instants; the wire tests pin a session minutes before a close with a
fast ``rate`` so the close arrives within seconds, and wait for states, never for time.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest

from tests.conftest_sim import DEFAULT_SCENARIO, connect, make_scenario, run_client
from tests.ibclient import IB, LimitOrder, Option, Stock, Trade
from tests.sessions import (
    EARLY_CLOSE_DAY,
    FRIDAY_1558,
    SATURDAY_NOON,
    TUESDAY_MORNING,
)
from tests.test_gateway_sim_orders import NEXT_WEEK, make_desk, until
from tools.gateway_sim import ScenarioError, ThreadedSim, load_scenario
from tools.gateway_sim.hours import SessionClock
from tools.gateway_sim.market import Market
from tools.gateway_sim.positions import Position
from tools.gateway_sim.scenario import SessionSpec

pytestmark = pytest.mark.timeout(90)
REAL = {"mode": "real"}
FRIDAY = date(2026, 12, 4)  # FRIDAY_1558's weekly expiry
HALF_DAY = date(2026, 11, 27)


def at(moment: datetime, hh: int, mm: int, ss: int = 0, days: int = 0) -> float:
    """Epoch seconds of a wall time on ``moment``'s day (+ days), in its zone."""
    day = moment + timedelta(days=days)
    return day.replace(hour=hh, minute=mm, second=ss).timestamp()


# ---- early closes -------------------------------------------------------------------------------
def test_an_early_close_day_ends_at_13_00_and_its_extended_session_at_17_00() -> None:
    clock = SessionClock(SessionSpec(mode="real", early_closes=["20261127"]))
    now = EARLY_CLOSE_DAY.timestamp()
    assert "20261127:0930-20261127:1300" in clock.hours_string(now, rth=True)
    assert "20261127:0400-20261127:1700" in clock.hours_string(now, rth=False)
    assert "20261130:0930-20261130:1600" in clock.hours_string(now, rth=True)  # Monday
    assert clock.is_open(at(EARLY_CLOSE_DAY, 12, 59), rth=True)
    assert not clock.is_open(at(EARLY_CLOSE_DAY, 13, 0), rth=True)
    assert clock.is_open(at(EARLY_CLOSE_DAY, 16, 59), rth=False)
    assert not clock.is_open(at(EARLY_CLOSE_DAY, 17, 0), rth=False)
    assert clock.expiry_close(HALF_DAY) == at(EARLY_CLOSE_DAY, 13, 0)
    assert clock.session_end_after(now, rth=False) == at(EARLY_CLOSE_DAY, 17, 0)


def test_early_closes_are_ignored_on_always_open_days() -> None:
    clock = SessionClock(SessionSpec(early_closes=["20261127"]))
    now = EARLY_CLOSE_DAY.timestamp()
    assert "20261127:0000-20261128:0000" in clock.hours_string(now, rth=True)
    assert clock.is_open(at(EARLY_CLOSE_DAY, 14, 0), rth=True)
    assert clock.expiry_close(HALF_DAY) == at(EARLY_CLOSE_DAY, 16, 0)


def test_an_option_expiring_on_a_half_day_has_no_time_left_after_13_00() -> None:
    def prices(session: dict[str, Any]) -> list[float]:
        scenario = make_scenario(EARLY_CLOSE_DAY, session=session)
        market = Market(scenario, SessionClock(scenario.session))
        call = market.book.option("SPY", HALF_DAY, 680.0, "C", 0)
        return [
            market.greeks(call, at(EARLY_CLOSE_DAY, hh, mm), spot=681.0).price
            for hh, mm in ((12, 0), (13, 0), (14, 0))
        ]

    noon, one, two = prices(REAL)
    assert noon > one == two  # after 13:00 the model sits at its expiry floor
    noon, one, two = prices({"mode": "always_open"})  # always_open: runs to 16:00 as before
    assert noon > one > two


def test_bars_with_use_rth_stop_at_the_early_close() -> None:
    scenario = make_scenario(EARLY_CLOSE_DAY, session=REAL)
    market = Market(scenario, SessionClock(scenario.session))
    spy = market.book.stocks["SPY"]
    end = at(EARLY_CLOSE_DAY, 14, 30)
    rth = market.bars(spy, end, 3 * 3600, 60, rth=True, now_ts=end)
    extended = market.bars(spy, end, 3 * 3600, 60, rth=False, now_ts=end)
    assert rth[-1].start == at(EARLY_CLOSE_DAY, 12, 59)
    assert extended[-1].start == at(EARLY_CLOSE_DAY, 14, 29)


@pytest.mark.parametrize(
    ("session", "message"),
    [
        ({"early_closes": ["2026-11-27"]}, r"session\.early_closes\.0"),
        ({"early_close_time": "25:00"}, r"session\.early_close_time"),
        ({"early_close_time": "17:30"}, r"early_close_time 17:30 must fall in the liquid hours"),
        ({"early_close_trading_time": "12:00"}, r"early_close_trading_time must not be before"),
    ],
)
def test_bad_early_close_keys_are_named(session: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        make_scenario(TUESDAY_MORNING, session=session)


def test_every_shipped_scenario_lists_the_2026_half_days() -> None:
    for path in sorted(DEFAULT_SCENARIO.parent.glob("*.yaml")):
        assert load_scenario(path).session.early_closes == ["20261127", "20261224"], path.name


# ---- time in force ------------------------------------------------------------------------------
def test_day_orders_die_at_the_close_and_gtc_orders_work_on() -> None:
    # Given resting orders a minute before Friday's close
    desk = make_desk(FRIDAY_1558, session=REAL)
    spy, call = desk.spy(), desk.option(NEXT_WEEK, 680.0)
    desk.place(1, spy, "BUY", 1, 1.0)  # DAY, regular hours
    desk.place(2, spy, "BUY", 1, 1.0, tif="GTC")
    desk.place(3, spy, "BUY", 1, 1.0, outsideRth="1")  # DAY, extended hours
    desk.place(4, call, "BUY", 1, 0.01)  # DAY option
    desk.book.match_pass(at(FRIDAY_1558, 15, 59, 59))
    assert {o.status for o in desk.book.orders.values()} == {"Submitted"}
    # When the regular session ends, then when the extended one does
    desk.book.match_pass(at(FRIDAY_1558, 16, 0))
    status = {oid: o.status for (_c, oid), o in desk.book.orders.items()}
    assert status == {1: "Cancelled", 2: "Submitted", 3: "Submitted", 4: "Cancelled"}
    assert desk.book.orders[(1, 4)].completed_time == "20261204 16:00:00 US/Eastern"
    desk.book.match_pass(at(FRIDAY_1558, 20, 0))
    assert desk.book.orders[(1, 3)].completed_time == "20261204 20:00:00 US/Eastern"
    # Then the GTC order is still working on Monday morning
    desk.book.match_pass(at(FRIDAY_1558, 9, 31, days=3))
    assert desk.book.orders[(1, 2)].status == "Submitted"
    assert desk.book.stats.snapshot()["orders_expired"] == 3


def test_a_day_order_modified_to_gtc_survives_the_close() -> None:
    desk = make_desk(FRIDAY_1558, session=REAL)
    desk.place(1, desk.spy(), "BUY", 1, 1.0)
    desk.place(1, desk.spy(), "BUY", 1, 1.0, tif="GTC")  # the same id: a modify
    desk.book.match_pass(at(FRIDAY_1558, 16, 0))
    assert desk.book.orders[(1, 1)].status == "Submitted"


def test_on_a_half_day_day_orders_die_at_13_00_and_extended_ones_at_17_00() -> None:
    desk = make_desk(EARLY_CLOSE_DAY, session=REAL)
    desk.place(1, desk.option(FRIDAY + timedelta(days=7), 680.0), "BUY", 1, 0.01)
    desk.place(2, desk.spy(), "BUY", 1, 1.0, outsideRth="1")
    desk.book.match_pass(at(EARLY_CLOSE_DAY, 12, 59, 59))
    assert desk.book.orders[(1, 1)].status == "Submitted"
    desk.book.match_pass(at(EARLY_CLOSE_DAY, 17, 0))
    assert [o.completed_time[9:17] for o in desk.book.orders.values()] == ["13:00:00", "17:00:00"]


def test_always_open_day_orders_die_at_the_local_midnight() -> None:
    desk = make_desk(TUESDAY_MORNING, session={"mode": "always_open"})
    desk.place(1, desk.spy(), "BUY", 1, 1.0)
    desk.book.match_pass(at(TUESDAY_MORNING, 23, 59, 59))
    assert desk.book.orders[(1, 1)].status == "Submitted"
    desk.book.match_pass(at(TUESDAY_MORNING, 0, 0, days=1))
    assert desk.book.orders[(1, 1)].completed_time == "20261202 00:00:00 US/Eastern"


def test_nothing_fills_while_closed_and_a_weekend_day_order_is_mondays() -> None:
    # Given orders placed on a Saturday that would fill at once if the market were open
    desk = make_desk(SATURDAY_NOON, session=REAL, orders={"fill_mode": "immediate"})
    regular = desk.place(1, desk.spy(), "BUY", 1, 680.0)
    extended = desk.place(2, desk.spy(), "BUY", 1, 680.0, outsideRth="1")
    assert regular.day_deadline == at(SATURDAY_NOON, 16, 0, days=2)
    desk.book.match_pass(at(SATURDAY_NOON, 12, 1))
    desk.book.match_pass(at(SATURDAY_NOON, 3, 59, days=2))
    assert regular.filled == extended.filled == 0
    # Then the extended-hours order fills at Monday's 04:00, the regular one at 09:30
    desk.book.match_pass(at(SATURDAY_NOON, 4, 0, days=2))
    assert (regular.status, extended.status) == ("Submitted", "Filled")
    desk.book.match_pass(at(SATURDAY_NOON, 9, 30, days=2))
    assert regular.status == "Filled"


def test_an_ioc_order_keeps_what_its_first_pass_filled_and_loses_the_rest() -> None:
    desk = make_desk(TUESDAY_MORNING, orders={"max_fill_per_match": 2})
    spy = desk.spy()
    desk.place(1, spy, "BUY", 5, desk.marketable(spy, "BUY", 1), tif="IOC", transmit="0")
    desk.place(2, spy, "SELL", 5, desk.marketable(spy, "SELL", 3), tif="IOC", parentId="1")
    desk.passes(1)
    assert desk.statuses(1)[-1] == ("Cancelled", 2, 3)  # 2 filled, 3 never will
    assert desk.statuses(2)[-1][0] == "Cancelled"  # a parent's IOC cancel takes its child
    resting = desk.place(3, spy, "BUY", 1, 1.0, tif="IOC")
    desk.passes(1, start_s=2.0)
    assert (resting.status, resting.filled) == ("Cancelled", 0)


# ---- option expiration --------------------------------------------------------------------------
def test_at_the_close_itm_options_are_exercised_or_assigned_and_otm_ones_expire() -> None:
    desk = make_desk(FRIDAY_1558, session=REAL)
    held = [(600.0, "C", 10), (600.0, "P", 5), (760.0, "P", -2), (760.0, "C", -3)]
    for strike, right, qty in held:
        inst = desk.option(FRIDAY, strike, right)
        desk.book.positions[inst.con_id] = Position(inst, qty, 100.0)
    desk.book.closes.sweep(at(FRIDAY_1558, 15, 59, 59))
    assert desk.positions == []
    desk.book.closes.sweep(at(FRIDAY_1558, 16, 0))
    # long 600 calls: +1,000 at 600; short 760 puts assigned: +200 at 760; the rest lapse
    stock = desk.book.positions[desk.spy().con_id]
    assert stock.quantity == 1200 and stock.avg_cost == pytest.approx(
        (1000 * 600 + 200 * 760) / 1200
    )
    assert all(p.quantity == 0 for p in desk.book.positions.values() if p.inst.is_option)
    assert [q for name, q in desk.positions if name == "SPY"] == [1000, 1200]
    stats = desk.book.stats.snapshot()
    assert (stats["options_exercised"], stats["options_expired"]) == (2, 2)


def test_one_cent_in_the_money_is_exercised_less_is_not() -> None:
    desk = make_desk(FRIDAY_1558, session=REAL)
    close = at(FRIDAY_1558, 16, 0)
    spot = round(desk.market.underlying("SPY", close), 2)
    for strike, right in ((spot - 0.01, "C"), (spot, "C"), (spot + 0.01, "P"), (spot + 0.005, "P")):
        inst = desk.option(FRIDAY, round(strike, 3), right)
        desk.book.positions[inst.con_id] = Position(inst, 1, 1.0)
    desk.book.closes.sweep(close)
    assert [q for name, q in desk.positions if name == "SPY"] == [100, 0]  # +call, -put
    assert desk.book.stats.snapshot()["options_expired"] == 2


def test_an_option_stops_trading_at_its_expiry_close_even_on_an_always_open_day() -> None:
    desk = make_desk(TUESDAY_MORNING, orders={"fill_mode": "immediate"})
    today = desk.option(TUESDAY_MORNING.date(), 680.0)
    order = desk.place(1, today, "BUY", 1, 5.0, tif="GTC")
    desk.book.positions[today.con_id] = Position(today, 2, 500.0)
    desk.book.match_pass(at(TUESDAY_MORNING, 16, 0, 1))
    assert (order.status, order.filled) == ("Cancelled", 0)
    assert order.completed_time == "20261201 16:00:00 US/Eastern"
    assert desk.book.positions[today.con_id].quantity == 0


# ---- on the wire --------------------------------------------------------------------------------
def _held_into_the_close() -> dict[str, Any]:
    positions = [
        {
            "symbol": "SPY",
            "sec_type": "OPT",
            "expiry": "20261204",
            "strike": 600,
            "right": "C",
            "quantity": 10,
            "avg_cost": 8000,
        },
        {
            "symbol": "SPY",
            "sec_type": "OPT",
            "expiry": "20261204",
            "strike": 760,
            "right": "C",
            "quantity": 5,
            "avg_cost": 10,
        },
    ]
    return {"account": {"positions": positions}}


async def _completed(ib: IB, trade: Trade) -> str:
    """The status reqCompletedOrders reports (its completedTime stays in the OrderState,
    which ib_insync 0.9.86 drops: the sim's own stamp is read with ``_stamp``)."""
    done = await ib.reqCompletedOrdersAsync(apiOnly=True)
    return next(t.orderStatus.status for t in done if t.order.permId == trade.order.permId)


def _stamp(sim: ThreadedSim, perm_id: int) -> str:
    return sim.call(
        lambda: next(
            o.completed_time for o in sim.server.orders.done_for(None) if o.perm_id == perm_id
        )
    )


@pytest.mark.integration
def test_ten_itm_calls_held_into_the_close_become_1000_shares() -> None:
    # Given 10 ITM and 5 OTM SPY calls expiring today, two minutes before the close at 30x
    scenario = make_scenario(
        FRIDAY_1558, clock={"rate": 30}, session=REAL, **_held_into_the_close()
    )

    async def scenario_run(sim: ThreadedSim) -> dict[str, Any]:
        ib = await connect(sim.port)
        try:
            held = {p.contract.strike: p.position for p in ib.positions()}
            call = Option("SPY", "20261204", 600, "C", "SMART")
            spy = Stock("SPY", "SMART", "USD")
            await ib.qualifyContractsAsync(call, spy)
            bid = ib.placeOrder(call, LimitOrder("BUY", 1, 0.05))
            gtc = ib.placeOrder(spy, LimitOrder("BUY", 1, 1.0, tif="GTC"))
            # When the close passes: wait for the account, not the clock
            await until(
                lambda: (
                    bid.isDone() and not any(p.contract.secType == "OPT" for p in ib.positions())
                ),
                30,
            )
            stock = next(p for p in ib.positions() if p.contract.secType == "STK")
            return {
                "before": held,
                "shares": stock.position,
                "cost": stock.avgCost,
                "gtc": gtc.orderStatus.status,
                "bid": bid.orderStatus.status,
                "completed": await _completed(ib, bid),
                "when": _stamp(sim, bid.order.permId),
                "portfolio": {i.contract.secType: i.position for i in ib.portfolio()},
            }
        finally:
            ib.disconnect()

    with ThreadedSim(scenario) as sim:
        seen = run_client(lambda: scenario_run(sim), timeout_s=60)
        stats = sim.stats()
    assert seen["before"] == {600: 10, 760: 5}
    assert (seen["shares"], seen["cost"]) == (1000, 600)
    assert seen["portfolio"] == {"STK": 1000}
    assert (seen["bid"], seen["gtc"]) == ("Cancelled", "Submitted")
    assert seen["when"] == "20261204 16:00:00 US/Eastern" and seen["completed"] == "Cancelled"
    assert (stats["options_exercised"], stats["options_expired"]) == (1, 1)


@pytest.mark.integration
def test_a_half_day_lists_its_hours_and_cancels_day_orders_at_13_00() -> None:
    scenario = make_scenario(EARLY_CLOSE_DAY, clock={"rate": 360}, session=REAL)

    async def scenario_run(sim: ThreadedSim) -> dict[str, Any]:
        ib = await connect(sim.port)
        try:
            (details,) = await ib.reqContractDetailsAsync(Stock("SPY", "SMART", "USD"))
            call = Option("SPY", "20261204", 680, "C", "SMART")
            await ib.qualifyContractsAsync(call)
            day = ib.placeOrder(call, LimitOrder("BUY", 1, 0.05))
            gtc = ib.placeOrder(call, LimitOrder("BUY", 1, 0.05, tif="GTC"))
            await until(day.isDone, 30)
            return {
                "liquid": details.liquidHours,
                "trading": details.tradingHours,
                "gtc": gtc.orderStatus.status,
                "completed": await _completed(ib, day),
                "when": _stamp(sim, day.order.permId),
            }
        finally:
            ib.disconnect()

    with ThreadedSim(scenario) as sim:
        seen = run_client(lambda: scenario_run(sim), timeout_s=60)
    assert "20261127:0930-20261127:1300" in seen["liquid"]
    assert "20261127:0400-20261127:1700" in seen["trading"]
    assert seen["when"] == "20261127 13:00:00 US/Eastern" and seen["gtc"] == "Submitted"
    assert seen["completed"] == "Cancelled"
