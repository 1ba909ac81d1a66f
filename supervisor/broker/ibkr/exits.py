"""One exit of a bracket placed on its own: the take-profit or the stop that never reached
IBKR, or was cancelled, found missing by the start's check of the brackets
(supervisor/trading/live_brackets.py).

    SELL LMT at the take-profit, or SELL STP triggered at the stop; GTC (as the bracket's
    exits); orderRef = the intent id; in the bracket's OCA group (``oca-<intent id>``, type
    2: a fill of one exit reduces the other by as much); no parent (its entry has filled)
    -> waits, bounded by ibkr.request_timeout_s, until IBKR accepted it (a permId) or
       refused it (OrderRejected with the code)

Beside orders.py rather than in it so the order layer's bracket code stays as it is; the
same rules (one governor, the account checked against the login's).
"""

from __future__ import annotations

import asyncio
from typing import Any

from common.config import IBKRSettings
from common.messages import OptionContract
from supervisor.broker.base import BrokerError, OrderRejected
from supervisor.broker.ibkr.client import ibi
from supervisor.broker.ibkr.contracts import Contracts
from supervisor.broker.ibkr.link import Link
from supervisor.broker.ibkr.orders import ACCEPTED, OCA_REDUCE_WITH_BLOCK

EXIT_TYPES = ("LMT", "STP")


async def place_exit(
    link: Link,
    contracts: Contracts,
    cfg: IBKRSettings,
    contract: OptionContract,
    order_type: str,
    quantity: int,
    price: float,
    account: str,
    order_ref: str,
    oca_group: str,
) -> tuple[int, int]:
    """(order id, permId) of the exit once IBKR accepted it; see the module docstring."""
    if order_type not in EXIT_TYPES or quantity < 1:
        raise BrokerError(f"exit {order_ref}: {order_type} x {quantity} is no exit")
    if link.accounts and account not in link.accounts:
        raise BrokerError(f"account {account} is not one of this login's {link.accounts}")
    qualified = await contracts.tradable(contract)
    await link.pace(1)
    order_id = link.new_req_id()
    fields = {
        "orderId": order_id,
        "tif": "GTC",
        "orderRef": order_ref,
        "account": account,
        "ocaGroup": oca_group,
        "ocaType": OCA_REDUCE_WITH_BLOCK,
    }
    order = (
        ibi.LimitOrder("SELL", quantity, price, **fields)
        if order_type == "LMT"
        else ibi.StopOrder("SELL", quantity, price, **fields)
    )
    trade = link.ib.placeOrder(qualified, order)
    return order_id, await _accepted(trade, order_ref, cfg.request_timeout_s)


async def _accepted(trade: Any, ref: str, timeout_s: float) -> int:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        worked = trade.orderStatus.status in ACCEPTED or any(
            e.status in ACCEPTED for e in trade.log
        )
        if worked and trade.order.permId:
            return int(trade.order.permId)
        if trade.orderStatus.status in ("Cancelled", "Inactive") and not worked:
            errors = [e for e in trade.log if e.errorCode]
            raise OrderRejected(
                f"exit {ref} refused: {errors[0].message if errors else trade.orderStatus.status}",
                errors[0].errorCode if errors else 0,
                [trade.order.orderId],
            )
        if asyncio.get_running_loop().time() > deadline:
            raise BrokerError(
                f"exit {ref}: no answer from the gateway within {timeout_s:g}s; "
                "its fate is unknown (the open orders will tell)"
            )
        await asyncio.sleep(0.02)
