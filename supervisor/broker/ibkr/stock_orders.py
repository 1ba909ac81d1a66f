"""One stock order: what closes the shares an exercised option delivered
(supervisor/trading/live_shares.py).

    BUY or SELL LMT, DAY, regular hours only (outsideRth off), orderRef "<intent id>:shares",
    on the stock contract the bars and quotes use (SMART, USD) -> its order id

Beside orders.py rather than in it so the order layer's option code stays as it is; the same
rules (one governor, the account checked against the login's).
"""

from __future__ import annotations

import logging

from supervisor.broker.base import BrokerError
from supervisor.broker.ibkr.client import ibi
from supervisor.broker.ibkr.contracts import Contracts
from supervisor.broker.ibkr.link import Link

log = logging.getLogger("supervisor.broker.ibkr.broker")


async def place_stock_order(
    link: Link,
    contracts: Contracts,
    symbol: str,
    action: str,
    quantity: int,
    limit: float,
    account: str,
    order_ref: str,
) -> int:
    """The order's id once it is handed to the gateway (its fate is followed by orderRef)."""
    if action not in ("BUY", "SELL") or quantity < 1:
        raise BrokerError(f"order {order_ref}: {action} x {quantity} is no stock order")
    if link.accounts and account not in link.accounts:
        raise BrokerError(f"account {account} is not one of this login's {link.accounts}")
    contract = (await contracts.stock(symbol)).contract
    await link.pace(1)
    order_id = link.new_req_id()
    link.ib.placeOrder(
        contract,
        ibi.LimitOrder(
            action,
            quantity,
            limit,
            orderId=order_id,
            tif="DAY",
            outsideRth=False,
            orderRef=order_ref,
            account=account,
        ),
    )
    log.info("order %s placed: %s %d %s @ %.2f", order_ref, action, quantity, symbol, limit)
    return order_id
