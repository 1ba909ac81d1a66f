"""The simulated account as trades happen, seen through the real ib_insync client.

Every expected figure is computed from what the client itself was told (execution prices,
commission reports, avgCost), then compared with the sim's ledger (``ThreadedSim.account()``),
ib_insync's portfolio items, reqPnL and the account values. Orders fill at their limits
(``fill_mode: immediate``) and marks hold still for an hour of sim time (``market_step_s``),
so figures taken a moment apart agree exactly. Waits are for states, never for the clock.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest_sim import connect, deep_merge, make_scenario, run_client
from tests.ibclient import (
    IB,
    AccountValue,
    Contract,
    LimitOrder,
    Option,
    PnL,
    PortfolioItem,
    Stock,
    Trade,
)
from tests.sessions import FRIDAY_1558, TUESDAY_MORNING
from tests.test_gateway_sim_orders import until
from tools.gateway_sim import Scenario, ThreadedSim

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
ACCOUNT = "DU1234567"
NEXT_WEEK = "20261211"  # a Friday expiry listed from TUESDAY_MORNING
BEFORE_MIDNIGHT = TUESDAY_MORNING.replace(hour=23, minute=58)
MIDNIGHT_TS = (TUESDAY_MORNING + timedelta(days=1)).replace(hour=0, minute=0).timestamp()


def _scenario(at: Any, **overrides: Any) -> Scenario:
    still = {
        "clock": {"market_step_s": 3600},
        "orders": {"fill_mode": "immediate"},
        "account": {"pnl_interval_s": 0.2},
    }
    return make_scenario(at, **deep_merge(still, overrides))


async def _qualified(ib: IB, contract: Contract) -> Contract:
    (done,) = await ib.qualifyContractsAsync(contract)
    return done


async def _fill(ib: IB, contract: Contract, action: str, qty: float, price: float) -> Trade:
    """Place a limit order and wait until it filled and every commission report is in."""
    trade = ib.placeOrder(contract, LimitOrder(action, qty, price))
    await until(
        lambda: (
            trade.orderStatus.status == "Filled"
            and bool(trade.fills)
            and all(f.commissionReport.execId for f in trade.fills)
        )
    )
    return trade


def _cash_flow(trade: Trade, multiplier: float) -> float:
    """What the trade's executions paid (-) or brought (+), commissions included."""
    return sum(
        (1 if f.execution.side == "SLD" else -1)
        * f.execution.shares
        * f.execution.price
        * multiplier
        - f.commissionReport.commission
        for f in trade.fills
    )


def _value(ib: IB, tag: str) -> float:
    return float(next(v.value for v in ib.accountValues() if v.tag == tag and v.currency == "USD"))


def _settled(x: float) -> bool:
    """A PnL field the sim has sent and that is not zero (ib_insync starts them at NaN)."""
    return not math.isnan(x) and x != 0


def _row(account: dict[str, Any], con_id: int) -> dict[str, Any]:
    return next(p for p in account["positions"] if p["con_id"] == con_id)


# ---- a round trip -------------------------------------------------------------------------------
def test_a_round_trip_realizes_proceeds_minus_both_commissions_minus_cost() -> None:
    # Given a flat account and a SPY call that fills at its limits
    async def run(sim: ThreadedSim) -> dict[str, Any]:
        ib = await connect(sim.port)
        try:
            call = await _qualified(ib, Option("SPY", NEXT_WEEK, 680, "C", "SMART"))
            pnl = ib.reqPnL(ACCOUNT)
            rows: list[PortfolioItem] = []
            ib.updatePortfolioEvent += rows.append
            net_before, funds_before = _value(ib, "NetLiquidation"), _value(ib, "AvailableFunds")
            ledger_before = sim.account()
            # When 3 are bought at 5.00 and sold at 6.25
            buy = await _fill(ib, call, "BUY", 3, 5.0)
            sell = await _fill(ib, call, "SELL", 3, 6.25)
            await until(
                lambda: (
                    _settled(pnl.realizedPnL)
                    and any(r.contract.conId == call.conId and r.position == 0 for r in rows)
                )
            )
            summary = {
                v.tag: float(v.value) for v in await ib.accountSummaryAsync() if v.currency == "USD"
            }
            return {
                "call": call,
                "buy": buy,
                "sell": sell,
                "pnl": pnl,
                "summary": summary,
                "closed": [r for r in rows if r.contract.conId == call.conId][-1],
                "net": (net_before, _value(ib, "NetLiquidation")),
                "funds": (funds_before, _value(ib, "AvailableFunds")),
                "ledger": (ledger_before, sim.account()),
            }
        finally:
            ib.disconnect()

    with ThreadedSim(_scenario(TUESDAY_MORNING)) as sim:
        seen = run_client(lambda: run(sim))
    # Then realized = proceeds - both commissions - cost, everywhere the account shows it
    expected = _cash_flow(seen["buy"], 100) + _cash_flow(seen["sell"], 100)
    before, after = seen["ledger"]
    pnl: PnL = seen["pnl"]
    assert after["realized_pnl_today"] == pytest.approx(expected)
    assert _row(after, seen["call"].conId)["realized_pnl"] == pytest.approx(expected)
    assert seen["closed"].realizedPNL == pytest.approx(expected)
    assert pnl.realizedPnL == pytest.approx(expected)
    assert seen["sell"].fills[-1].commissionReport.realizedPNL == pytest.approx(expected)
    assert seen["buy"].fills[-1].commissionReport.realizedPNL == 0.0  # opening: no realized
    # ... and NetLiquidation moved by exactly that P&L (the account is flat again)
    assert after["net_liquidation"] - before["net_liquidation"] == pytest.approx(expected)
    assert seen["net"][1] - seen["net"][0] == pytest.approx(expected, abs=0.011)
    assert pnl.dailyPnL == pytest.approx(expected) and pnl.unrealizedPnL == pytest.approx(0.0)
    assert seen["summary"]["NetLiquidation"] == pytest.approx(after["net_liquidation"], abs=0.005)
    assert seen["summary"]["TotalCashValue"] == pytest.approx(after["cash"], abs=0.005)
    assert seen["funds"][1] - seen["funds"][0] == pytest.approx(
        after["cash"] - before["cash"], abs=0.011
    )


def test_a_partial_close_keeps_avg_cost_and_realizes_the_closed_part() -> None:
    # Given 3 SPY calls bought at 5.00 (avgCost: price x 100 + the commission, per contract)
    async def run(sim: ThreadedSim) -> dict[str, Any]:
        ib = await connect(sim.port)
        try:
            call = await _qualified(ib, Option("SPY", NEXT_WEEK, 680, "C", "SMART"))
            rows: list[PortfolioItem] = []
            ib.updatePortfolioEvent += rows.append
            buy = await _fill(ib, call, "BUY", 3, 5.0)
            await until(lambda: any(p.contract.conId == call.conId for p in ib.positions()))
            opened = next(p.avgCost for p in ib.positions() if p.contract.conId == call.conId)
            # When 1 of them is sold at 6.00
            sell = await _fill(ib, call, "SELL", 1, 6.0)
            single = ib.reqPnLSingle(ACCOUNT, "", call.conId)
            pnl = ib.reqPnL(ACCOUNT)
            await until(
                lambda: (
                    _settled(single.realizedPnL)
                    and _settled(pnl.realizedPnL)
                    and any(r.position == 2 and r.realizedPNL for r in rows)
                )
            )
            held = next(p for p in ib.positions() if p.contract.conId == call.conId)
            return {
                "call": call,
                "buy": buy,
                "sell": sell,
                "opened": opened,
                "held": held,
                "row": [r for r in rows if r.position == 2][-1],
                "single": single,
                "pnl": pnl,
                "ledger": sim.account(),
            }
        finally:
            ib.disconnect()

    with ThreadedSim(_scenario(TUESDAY_MORNING)) as sim:
        seen = run_client(lambda: run(sim))
    opened = seen["opened"]
    assert opened == pytest.approx(-_cash_flow(seen["buy"], 100) / 3)  # commission folded in
    # Then avgCost is unchanged and the closed contract realized price x 100 - fee - avgCost
    expected = _cash_flow(seen["sell"], 100) - opened
    ledger = _row(seen["ledger"], seen["call"].conId)
    assert seen["held"].position == 2 and seen["held"].avgCost == pytest.approx(opened)
    assert ledger["avg_cost"] == pytest.approx(opened) and ledger["quantity"] == 2
    assert ledger["realized_pnl_today"] == pytest.approx(expected)
    item: PortfolioItem = seen["row"]
    assert item.averageCost == pytest.approx(opened)
    assert item.realizedPNL == pytest.approx(expected)
    assert item.unrealizedPNL == pytest.approx(ledger["unrealized_pnl"])
    assert item.unrealizedPNL == pytest.approx((item.marketPrice * 100 - opened) * 2)
    single = seen["single"]
    assert (single.position, single.realizedPnL) == (2, pytest.approx(expected))
    assert single.unrealizedPnL == pytest.approx(ledger["unrealized_pnl"])
    assert single.value == pytest.approx(ledger["market_value"])
    assert seen["pnl"].unrealizedPnL == pytest.approx(ledger["unrealized_pnl"])
    assert seen["pnl"].realizedPnL == pytest.approx(expected)


# ---- the trading day ----------------------------------------------------------------------------
def test_daily_figures_reset_on_the_next_trading_day_and_so_do_todays_executions() -> None:
    # Given a round trip two sim minutes before midnight of a 24-hour day, at 30x
    scenario = _scenario(
        BEFORE_MIDNIGHT,
        clock={"rate": 30},
        session={"mode": "always_open"},
        account={"update_interval_s": 0.2},
    )

    async def run(sim: ThreadedSim) -> dict[str, Any]:
        ib = await connect(sim.port)
        try:
            spy = await _qualified(ib, Stock("SPY", "SMART", "USD"))
            pnl_seen: list[tuple[float, float, float, float]] = []
            realized_values: list[tuple[float, str]] = []

            def on_pnl(p: PnL) -> None:
                pnl_seen.append((sim.now(), p.dailyPnL, p.unrealizedPnL, p.realizedPnL))

            def on_value(v: AccountValue) -> None:
                if v.tag == "RealizedPnL":
                    realized_values.append((sim.now(), v.value))

            ib.pnlEvent += on_pnl
            ib.accountValueEvent += on_value
            ib.reqPnL(ACCOUNT)
            buy = await _fill(ib, spy, "BUY", 10, 600.0)
            sell = await _fill(ib, spy, "SELL", 10, 601.5)
            await until(lambda: bool(pnl_seen) and _settled(pnl_seen[-1][3]))
            before = (pnl_seen[-1], realized_values[-1], len(await ib.reqExecutionsAsync()))
            # When the sim's clock passes midnight
            await until(
                lambda: (
                    pnl_seen[-1][0] > MIDNIGHT_TS + 10 and realized_values[-1][0] > MIDNIGHT_TS + 10
                ),
                20,
            )
            after = (pnl_seen[-1], realized_values[-1], await ib.reqExecutionsAsync())
            return {
                "buy": buy,
                "sell": sell,
                "before": before,
                "after": after,
                "ledger": sim.account(),
            }
        finally:
            ib.disconnect()

    with ThreadedSim(scenario) as sim:
        seen = run_client(lambda: run(sim), timeout_s=45)
    expected = _cash_flow(seen["buy"], 1) + _cash_flow(seen["sell"], 1)
    (when, daily, _unrealized, realized), (_t, realized_text), executions = seen["before"]
    assert when < MIDNIGHT_TS, "the round trip must finish before midnight (slow machine?)"
    assert (daily, realized) == (pytest.approx(expected), pytest.approx(expected))
    assert float(realized_text) == pytest.approx(expected, abs=0.005) and executions == 2
    # Then the new day starts from zero: dailyPnL, realized today, the day's executions
    (_when, daily, _unrealized, realized), (_t, realized_text), executions = seen["after"]
    assert (daily, realized, float(realized_text), executions) == (0.0, 0.0, 0.0, [])
    ledger = seen["ledger"]
    assert ledger["day_start_ts"] == MIDNIGHT_TS
    assert ledger["realized_pnl"] == pytest.approx(expected)  # kept since the sim started
    assert (ledger["realized_pnl_today"], ledger["daily_pnl"]) == (0.0, 0.0)


# ---- expiration ---------------------------------------------------------------------------------
def test_an_option_expiring_worthless_realizes_minus_avg_cost_times_quantity() -> None:
    # Given 2 far out-of-the-money SPY calls bought two minutes before their expiry close, 30x
    async def run(sim: ThreadedSim) -> dict[str, Any]:
        ib = await connect(sim.port)
        try:
            call = await _qualified(ib, Option("SPY", "20261204", 760, "C", "SMART"))
            pnl = ib.reqPnL(ACCOUNT)
            rows: list[PortfolioItem] = []
            ib.updatePortfolioEvent += rows.append
            buy = await _fill(ib, call, "BUY", 2, 0.05)
            await until(lambda: any(p.contract.conId == call.conId for p in ib.positions()))
            avg_cost = next(p.avgCost for p in ib.positions() if p.contract.conId == call.conId)
            cash_before = sim.account()["cash"]
            # When the 16:00 close passes
            await until(
                lambda: (
                    not any(p.contract.conId == call.conId for p in ib.positions())
                    and any(r.contract.conId == call.conId and r.position == 0 for r in rows)
                    and _settled(pnl.realizedPnL)
                ),
                30,
            )
            return {
                "call": call,
                "buy": buy,
                "avg_cost": avg_cost,
                "pnl": pnl,
                "cash_before": cash_before,
                "ledger": sim.account(),
                "closed": [r for r in rows if r.position == 0][-1],
            }
        finally:
            ib.disconnect()

    with ThreadedSim(_scenario(FRIDAY_1558, clock={"rate": 30})) as sim:
        seen = run_client(lambda: run(sim), timeout_s=50)
        stats = sim.stats()
    avg_cost = seen["avg_cost"]
    assert avg_cost == pytest.approx(-_cash_flow(seen["buy"], 100) / 2)
    expected = -avg_cost * 2
    ledger = seen["ledger"]
    assert ledger["realized_pnl_today"] == pytest.approx(expected)
    assert _row(ledger, seen["call"].conId)["quantity"] == 0
    assert seen["closed"].realizedPNL == pytest.approx(expected)
    assert seen["pnl"].realizedPnL == pytest.approx(expected)
    assert ledger["cash"] == seen["cash_before"]  # expiring moves no cash
    assert stats["options_expired"] == 1
    assert stats["account"]["realized_pnl_today"] == pytest.approx(expected)
