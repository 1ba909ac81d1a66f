"""The broker boundary: what the supervisor asks of a market-data and order venue.

Implementations: ``StubBroker`` (in memory, seeded) and ``IBKRBroker`` (ib_insync). Nothing
outside ``supervisor/broker/`` imports ib_insync.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from common.messages import Bars, OptionChain, OptionContract, OptionQuote, Quote


class BrokerError(Exception):
    """Base of everything a broker raises."""


class SymbolDataError(BrokerError):
    """One symbol's data could not be had (no permission, unknown contract, timeout)."""


class ConnectionLost(BrokerError):
    """The connection to the gateway is down; the supervisor waits for the reconnect."""


@dataclass(frozen=True)
class AccountSnapshot:
    account: str
    net_liquidation: float
    available_funds: float
    currency: str = "USD"


class Broker(Protocol):
    name: str

    async def connect(self) -> None: ...

    async def disconnect(self) -> None: ...

    def is_connected(self) -> bool: ...

    async def quote(self, symbol: str) -> Quote: ...

    async def bars(self, symbol: str, minutes: int, bar_minutes: int = 1) -> Bars: ...

    async def chain(self, symbol: str) -> OptionChain: ...

    async def option_quotes(
        self, contracts: Sequence[OptionContract]
    ) -> tuple[OptionQuote, ...]: ...

    async def account(self) -> AccountSnapshot: ...

    async def market_open(self, symbol: str, now_ts: float) -> bool | None:
        """True/False from the venue's trading hours; None when the venue does not say."""
        ...

    def stats(self) -> dict[str, float]:
        """Buffer measures for the monitor (live tickers, pending requests, pacing waits ...)."""
        ...
