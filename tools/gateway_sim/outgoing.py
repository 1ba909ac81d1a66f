"""Builders of server->client messages, field for field as ib_insync 0.9.86 decodes them.

Each returns the field list (message id first). Counts are strict on the client side for
many of them (tickPrice 7, tickOptionComputation 12, position 16, portfolio 20,
commissionReport 8, execDetails 31); a wrong count is dropped there with only a log line.
"""

from __future__ import annotations

from tools.gateway_sim.codec import UNSET_DOUBLE, FieldValue
from tools.gateway_sim.instruments import Instrument
from tools.gateway_sim.optionmath import Greeks
from tools.gateway_sim.pricepath import Bar

Fields = list[FieldValue]

ERROR_TEXT = {
    100: "Max rate of messages per second has been exceeded.",
    101: "Max number of tickers has been reached.",
    102: "Duplicate ticker ID.",
    103: "Duplicate order id",
    162: "Historical Market Data Service error message:Historical data request pacing violation",
    200: "No security definition has been found for the request",
    202: "Order Canceled - reason:",
    300: "Can't find EId with tickerId:",
    322: "Error processing request.-'bW' : cause - Duplicate ticker id",
    326: "Unable to connect as the client id is already in use. Retry with a unique client id.",
    354: "Requested market data is not subscribed.",
    414: "Snapshot market data subscription is not applicable to generic ticks",
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and TWS has been restored- data lost.",
    1102: "Connectivity between IB and TWS has been restored- data maintained.",
    2103: "Market data farm connection is broken:usfarm",
    2104: "Market data farm connection is OK:usfarm",
    2105: "HMDS data farm connection is broken:ushmds",
    2106: "HMDS data farm connection is OK:ushmds",
    2158: "Sec-def data farm connection is OK:secdefil",
    10167: "Requested market data is not subscribed. Displaying delayed market data.",
    10168: "Requested market data is not subscribed. Delayed market data is not enabled.",
    10197: "No market data during competing live session",
}

# tick types: live -> delayed
BID, ASK, LAST, CLOSE, OPEN = 1, 2, 4, 9, 14
BID_SIZE, ASK_SIZE, LAST_SIZE, VOLUME = 0, 3, 5, 8
MODEL_OPTION = 13
DELAYED = {
    1: 66,
    2: 67,
    4: 68,
    9: 75,
    14: 76,
    0: 69,
    3: 70,
    5: 71,
    8: 74,
    10: 80,
    11: 81,
    12: 82,
    13: 83,
}


def error(req_id: int, code: int, message: str = "") -> Fields:
    return [4, 2, req_id, code, message or ERROR_TEXT.get(code, f"Error {code}"), ""]


def contract_head(inst: Instrument) -> Fields:
    """conId .. tradingClass as openOrder, execDetails and position carry them."""
    return [
        inst.con_id,
        inst.symbol,
        inst.sec_type,
        inst.expiry,
        inst.strike,
        inst.right,
        str(inst.multiplier) if inst.is_option else "",
        "SMART",
        "USD",
        inst.local_symbol,
        inst.symbol,
    ]


def tick_price(req_id: int, tick: int, price: float, size: float, delayed: bool) -> Fields:
    tick_type = DELAYED[tick] if delayed else tick
    mask = 1 if tick in (BID, ASK) and not delayed else 0
    return [1, 6, req_id, tick_type, price, size, mask]


def tick_size(req_id: int, tick: int, size: float, delayed: bool) -> Fields:
    return [2, 6, req_id, DELAYED[tick] if delayed else tick, size]


def tick_option(req_id: int, tick: int, g: Greeks | None, delayed: bool) -> Fields:
    """Model greeks; ``None`` sends IB's "not computed" markers (-1 prices, -2 greeks)."""
    tick_type = DELAYED[tick] if delayed else tick
    if g is None:
        return [21, req_id, tick_type, 1, -1.0, -2.0, -1.0, -1.0, -2.0, -2.0, -2.0, -1.0]
    return [
        21,
        req_id,
        tick_type,
        0,
        round(g.iv, 6),
        round(g.delta, 6),
        round(g.price, 6),
        0.0,
        round(g.gamma, 6),
        round(g.vega, 6),
        round(g.theta, 6),
        round(g.und_price, 4),
    ]


def contract_details(
    req_id: int, inst: Instrument, under_con_id: int, tz: str, trading: str, liquid: str
) -> Fields:
    spec = inst.spec
    opt = inst.is_option
    order_types = "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,DAY,GTC,LMT,MKT,STP,STPLMT,TRAIL,WHATIF"
    exchanges = "SMART,AMEX,CBOE,ISE,PHLX,BOX" if opt else f"SMART,{spec.primary_exchange},ARCA"
    fields: Fields = [
        10,
        req_id,
        inst.symbol,
        inst.sec_type,
        inst.expiry,
        inst.strike,
        inst.right,
        "SMART",
        "USD",
        inst.local_symbol,
        inst.symbol,
        inst.symbol,
        inst.con_id,
        inst.min_tick,
        str(inst.multiplier) if opt else "",
        order_types,
        exchanges,
        1,
        under_con_id if opt else 0,
        spec.long_name or inst.symbol,
        inst.primary_exchange,
        inst.expiry[:6],
        spec.industry,
        "",
        "",
        tz,
        trading,
        liquid,
        "",
        "",
        0,
    ]
    fields += [
        1 if opt else 2,
        inst.symbol if opt else "",
        "STK" if opt else "",
        "32,109" if opt else "26,26,26",
        inst.expiry,
        "" if opt else spec.listed_stock_type,
        "1",
        "1",
        "1",
    ]
    return fields


def sec_def_param(
    req_id: int,
    exchange: str,
    under_con_id: int,
    trading_class: str,
    multiplier: int,
    expiries: list[str],
    strikes: list[float],
) -> Fields:
    return [
        75,
        req_id,
        exchange,
        under_con_id,
        trading_class,
        str(multiplier),
        len(expiries),
        *expiries,
        len(strikes),
        *strikes,
    ]


def historical_data(req_id: int, start: str, end: str, bars: list[Bar], dates: list[str]) -> Fields:
    fields: Fields = [17, req_id, start, end, len(bars)]
    for bar, stamp in zip(bars, dates, strict=True):
        fields += [stamp, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.wap, bar.count]
    return fields


def position(account: str, inst: Instrument, qty: float, avg_cost: float) -> Fields:
    return [
        61,
        3,
        account,
        *contract_head(inst)[:7],
        "SMART",
        "USD",
        inst.local_symbol,
        inst.symbol,
        qty,
        avg_cost,
    ]


def portfolio(
    account: str, inst: Instrument, qty: float, price: float, avg_cost: float, realized: float = 0.0
) -> Fields:
    """updatePortfolio: unrealized = market value - qty x avgCost (the ledger's formula);
    ``realized`` is the position's realized P&L today. Sent unrounded, as IBKR sends doubles,
    so a client reads exactly the sim's figures."""
    value = qty * price * inst.multiplier
    unrealized = value - qty * avg_cost
    head = contract_head(inst)
    return [
        7,
        8,
        *head[:7],
        inst.primary_exchange,
        "USD",
        inst.local_symbol,
        inst.symbol,
        qty,
        price,
        value,
        avg_cost,
        unrealized,
        realized,
        account,
    ]


def order_status(
    order_id: int,
    status: str,
    filled: float,
    remaining: float,
    avg_price: float,
    perm_id: int,
    parent_id: int,
    last_price: float,
    client_id: int,
) -> Fields:
    return [
        3,
        order_id,
        status,
        filled,
        remaining,
        avg_price,
        perm_id,
        parent_id,
        last_price,
        client_id,
        "",
        0.0,
    ]


def exec_details(
    req_id: int,
    order_id: int,
    inst: Instrument,
    exec_id: str,
    when: str,
    account: str,
    side: str,
    shares: float,
    price: float,
    perm_id: int,
    client_id: int,
    order_ref: str,
    cum_qty: float,
    avg_price: float,
) -> Fields:
    """One execution: ``shares`` at ``price`` in this part; cumQty / avgPrice are the
    order's totals so far (they differ from the part once an order fills in parts)."""
    return [
        11,
        req_id,
        order_id,
        *contract_head(inst),
        exec_id,
        when,
        account,
        "SMART",
        "BOT" if side == "BUY" else "SLD",
        shares,
        price,
        perm_id,
        client_id,
        0,
        cum_qty,
        avg_price,
        order_ref,
        "",
        "",
        "",
        1,
    ]


def commission_report(
    exec_id: str, commission: float, currency: str, realized: float | None = None
) -> Fields:
    """``realized``: the execution's realized P&L (IBKR sends it for closing executions and
    the unset double for opening ones, which ib_insync turns into 0.0)."""
    pnl = UNSET_DOUBLE if realized is None else realized
    return [59, 1, exec_id, round(commission, 4), currency, pnl, UNSET_DOUBLE, ""]
