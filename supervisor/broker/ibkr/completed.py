"""The account's completed orders (IBKR reqCompletedOrders: filled or cancelled, whichever
client id placed them), for their orderRefs: an entry cancelled unfilled leaves the open
orders and has no execution, and only this list still says it was sent.

Asked once at a live start (the live position book's start, supervisor/trading/live_book.py,
through LiveBook.sent_before): the running bot's own journal knows what it sent since; a
start on a lost or fresh journal does not.
"""

from __future__ import annotations

from common.config import IBKRSettings
from supervisor.broker.ibkr.link import Link
from supervisor.broker.ibkr.requests import listed


async def completed_refs(link: Link, cfg: IBKRSettings) -> list[str]:
    """orderRefs of the account's completed API orders (empty ones left out)."""
    link.require_connected()
    await link.pace(1)
    trades = await listed(
        "completed orders", link.ib.reqCompletedOrdersAsync(apiOnly=True), cfg.request_timeout_s
    )
    return [t.order.orderRef for t in trades if t.order.orderRef]
