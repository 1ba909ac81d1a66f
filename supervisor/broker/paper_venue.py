"""A venue that prices but never trades: the order half of the Broker for paper markets.

The stub, a backtest's history and a replay's recording answer market data only; the paper
book (trading/paper.py) decides their fills from the quotes. Each class that mixes this in
names itself in ``no_orders`` (what an order sent to it is told) and answers the order
methods the Broker protocol asks for with that refusal, or with nothing held; connecting to
it is a flag.
"""

from __future__ import annotations

from common.messages import OptionContract, OrderIntent
from supervisor.broker.base import (
    BrokerError,
    BrokerPosition,
    Fill,
    OpenOrder,
    PlacedBracket,
    WhatIf,
)


class PaperVenue:
    no_orders = "this market places no orders (live trading needs the IBKR broker)"
    _connected = False

    # --- connection: a market in this process is there as soon as it is asked for ----------

    async def connect(self) -> None:
        self._connected = True

    async def disconnect(self) -> None:
        self._connected = False

    def is_connected(self) -> bool:
        return self._connected

    async def what_if(
        self, contract: OptionContract, action: str, quantity: int, limit: float
    ) -> WhatIf:
        """A margin check the IBKR way: a long option's margin is its premium."""
        outlay = limit * contract.multiplier * quantity
        return WhatIf(
            init_margin_change=outlay, maint_margin_change=outlay, commission=0.65 * quantity
        )

    async def place_bracket(
        self, intent: OrderIntent, quantity: int, account: str
    ) -> PlacedBracket:
        raise BrokerError(self.no_orders)

    def stop_entries(self) -> None:
        return None  # it sends none anyway

    async def place_order(
        self,
        contract: OptionContract,
        action: str,
        quantity: int,
        limit: float,
        account: str,
        order_ref: str,
    ) -> int:
        raise BrokerError(self.no_orders)

    async def place_stock_order(
        self, symbol: str, action: str, quantity: int, limit: float, account: str, order_ref: str
    ) -> int:
        raise BrokerError(self.no_orders)

    async def place_exit(
        self,
        contract: OptionContract,
        order_type: str,
        quantity: int,
        price: float,
        account: str,
        order_ref: str,
        oca_group: str,
    ) -> tuple[int, int]:
        raise BrokerError(self.no_orders)

    async def cancel_order(self, order_id: int) -> None:
        raise BrokerError(self.no_orders)

    async def refresh_orders(self) -> None:
        return None  # no orders held

    async def completed_refs(self) -> list[str]:
        return []

    def open_orders(self) -> list[OpenOrder]:
        return []

    def fills(self) -> list[Fill]:
        return []

    def positions(self) -> list[BrokerPosition]:
        return []
