"""The IB client library for the tests, taken from the one place the bot takes it
(supervisor/broker/ibkr/client.py): ib_insync, or ib_async where it is the one installed or
``IBKR_CLIENT_LIB=ib_async`` asks for it. `.ci/run` runs the integration tests with both."""

from __future__ import annotations

import importlib

from supervisor.broker.ibkr.client import ibi

LIBRARY: str = ibi.__name__
IB = ibi.IB
AccountValue = ibi.AccountValue
Contract = ibi.Contract
LimitOrder = ibi.LimitOrder
Option = ibi.Option
PnL = ibi.PnL
PortfolioItem = ibi.PortfolioItem
Stock = ibi.Stock
StopOrder = ibi.StopOrder
Trade = ibi.Trade
if LIBRARY == "ib_async":
    # ib_async files tickers by hash(contract) and refuses to hash a contract without a conId;
    # these tests send plain unqualified contracts to the simulator (as ib_insync allows, one
    # ticker per contract object), so their contracts hash by identity here. The bot itself
    # always qualifies first and runs unchanged on either library.
    class Stock(ibi.Stock):  # type: ignore[no-redef]
        def __hash__(self) -> int:
            return id(self)

    class Option(ibi.Option):  # type: ignore[no-redef]
        def __hash__(self) -> int:
            return id(self)


Client = importlib.import_module(f"{LIBRARY}.client").Client
Decoder = importlib.import_module(f"{LIBRARY}.decoder").Decoder
