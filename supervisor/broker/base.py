"""The broker boundary: what the supervisor asks of a market-data and order venue.

Implementations: ``StubBroker`` (in memory, seeded) and ``IBKRBroker`` (ib_insync). Nothing
outside ``supervisor/broker/`` imports ib_insync; everything that crosses this boundary is a
frozen dataclass of plain values, so the trading code never sees a library's objects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from common.calendar import TradingHours
from common.messages import Bars, OptionChain, OptionContract, OptionQuote, OrderIntent, Quote

NAN = math.nan


class BrokerError(Exception):
    """Base of everything a broker raises."""


class SymbolDataError(BrokerError):
    """One symbol's data could not be had (no permission, unknown contract, timeout)."""


class NoDataPermission(SymbolDataError):
    """The account lacks the market-data subscription a symbol's data needs: asking again
    (another day, later) cannot help until the subscription is bought."""


class ConnectionLost(BrokerError):
    """The connection to the gateway is down; the supervisor waits for the reconnect."""


class GatewayUnavailable(BrokerError):
    """A connect found no gateway ready to talk: nothing listening, no answer, the connection
    closed unanswered, or an answer but not ready (not logged in yet). Waiting can fix it:
    ``run`` probes again on the reconnect policy; other commands fail at once."""


class NotAGateway(BrokerError):
    """The port answered with something that is not the TWS API (an HTTP server, another
    program): waiting cannot fix it, so even ``run`` stops at once."""


class EntriesStopped(BrokerError):
    """Not sent: a stop was asked for before the bracket's first message left (checked after
    the pacing slot, right before the write). Nothing of it reached the gateway."""


class OrderRejected(BrokerError):
    """The gateway refused an order: its error code and text (201 and the reason, say)."""

    def __init__(
        self, message: str, code: int, order_ids: Sequence[int] = (), filled: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.order_ids = tuple(order_ids)
        self.filled = filled  # a part had filled before the refusal: something is held


@dataclass(frozen=True)
class PlacedBracket:
    """A bracket the gateway accepted: entry, take-profit and stop, by order id and by permId
    (IBKR's id for an order across client ids and reconnects)."""

    order_ids: tuple[int, int, int]
    perm_ids: tuple[int, int, int]


@dataclass(frozen=True)
class AccountSnapshot:
    account: str
    net_liquidation: float
    available_funds: float
    currency: str = "USD"
    # the venue's own P&L of the account today (IBKR reqPnL); NaN when it gives none
    daily_pnl: float = NAN
    realized_pnl: float = NAN
    unrealized_pnl: float = NAN


@dataclass(frozen=True)
class WhatIf:
    """IBKR's what-if margin check of one limit order (NaN where the venue gave nothing)."""

    init_margin_change: float
    maint_margin_change: float
    commission: float
    equity_with_loan_change: float = NAN
    init_margin_after: float = NAN
    maint_margin_after: float = NAN


@dataclass(frozen=True)
class OpenOrder:
    """An order working at the venue, as the account's open orders list it."""

    order_id: int
    order_ref: str  # our intent id, for orders this bot placed
    status: str  # the venue's: PreSubmitted, Submitted, ...
    action: str  # BUY | SELL
    quantity: float
    order_type: str  # LMT | STP ...
    symbol: str = ""
    sec_type: str = ""
    expiry: str = ""
    strike: float = 0.0
    right: str = ""
    limit: float = NAN
    aux: float = NAN
    perm_id: int = 0
    filled: float = 0.0  # of quantity, so far
    client_id: int = 0  # only the client id that placed an order may cancel it (IBKR)
    multiplier: int = 100
    parent_id: int = 0
    oca_group: str = ""
    account: str = ""

    @property
    def remaining(self) -> float:
        return max(self.quantity - self.filled, 0.0)


@dataclass(frozen=True)
class Fill:
    """One execution (exec id unique; IBKR replays the day's on reconnect)."""

    exec_id: str
    order_id: int
    order_ref: str
    side: str  # BOT | SLD
    shares: float
    price: float
    ts: float
    commission: float | None = None  # None until the venue's commission report arrives
    perm_id: int = 0


@dataclass(frozen=True)
class BrokerPosition:
    """A position the venue holds for an account (any contract, not only ours)."""

    account: str
    symbol: str
    sec_type: str
    quantity: float
    avg_cost: float
    con_id: int = 0
    expiry: str = ""
    strike: float = 0.0
    right: str = ""
    market_price: float = NAN  # per share/contract unit, as the venue marks it


class Broker(Protocol):
    name: str

    async def connect(self) -> None: ...

    async def disconnect(self) -> None: ...

    def is_connected(self) -> bool: ...

    def managed_accounts(self) -> list[str]:
        """The accounts the login manages (live trading needs ibkr.account among them)."""
        ...

    # --- market data ---------------------------------------------------------------------------

    async def quote(self, symbol: str) -> Quote: ...

    async def bars(
        self, symbol: str, minutes: int, bar_minutes: int = 1, rth: bool = False
    ) -> Bars:
        """Completed bars starting within the last ``minutes``, oldest first; ``rth``: the
        regular session's only (what IBKR calls useRTH)."""
        ...

    async def chain(self, symbol: str) -> OptionChain: ...

    async def option_quotes(
        self, contracts: Sequence[OptionContract]
    ) -> tuple[OptionQuote, ...]: ...

    async def account(self) -> AccountSnapshot: ...

    async def regular_hours(self, symbol: str) -> TradingHours | None:
        """The symbol's regular sessions as the venue lists them (IBKR: liquidHours, days
        ahead, holidays and early closes included); None when the venue does not say."""
        ...

    async def closing_price(self, symbol: str, day: date) -> float | None:
        """The symbol's regular-session close of ``day`` (what expiring options settle on);
        None until the venue has it."""
        ...

    async def unknown_symbols(self, symbols: Sequence[str]) -> dict[str, str]:
        """Those of ``symbols`` the venue lists no contract for (IBKR: error 200), each with
        the venue's words; a symbol that could not be checked is not among them."""
        ...

    # --- orders --------------------------------------------------------------------------------

    async def what_if(
        self, contract: OptionContract, action: str, quantity: int, limit: float
    ) -> WhatIf: ...

    async def place_bracket(
        self, intent: OrderIntent, quantity: int, account: str
    ) -> PlacedBracket:
        """A bracket (one OCA group), once the gateway accepted it; OrderRejected with the
        code if it refused; BrokerError if its fate is not known in time; EntriesStopped if
        ``stop_entries`` came first."""
        ...

    def stop_entries(self) -> None:
        """From now on no bracket (a new entry) is sent, whatever is already on its way to
        the socket; exits (``place_order``) and cancels still are. Called from a signal."""
        ...

    async def place_order(
        self,
        contract: OptionContract,
        action: str,
        quantity: int,
        limit: float,
        account: str,
        order_ref: str,
    ) -> int:
        """One DAY limit order (an exit before expiry); returns its id."""
        ...

    async def place_stock_order(
        self, symbol: str, action: str, quantity: int, limit: float, account: str, order_ref: str
    ) -> int:
        """One DAY limit order for shares, regular hours only (shares an exercise delivered,
        closed); returns its id."""
        ...

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
        """One exit of a bracket placed again: SELL ``LMT`` at ``price`` or ``STP`` triggered
        at ``price``, GTC, in the OCA group ``oca_group`` (a fill reduces the other exits);
        (order id, permId) once the gateway accepted it; OrderRejected if it refused;
        BrokerError if its fate is not known in time."""
        ...

    async def cancel_order(self, order_id: int) -> None: ...

    async def refresh_orders(self) -> None:
        """Ask the venue for every open order of the account whichever client id placed it
        (IBKR reqAllOpenOrders) and for today's executions: after a reconnect under another
        client id, orders placed before are only seen this way."""
        ...

    async def completed_refs(self) -> list[str]:
        """orderRefs of the account's completed orders, filled or cancelled (IBKR
        reqCompletedOrders): what was sent though neither the open orders nor today's
        executions show it any more (an entry cancelled unfilled)."""
        ...

    def open_orders(self) -> list[OpenOrder]: ...

    def fills(self) -> list[Fill]: ...

    def positions(self) -> list[BrokerPosition]: ...

    def stats(self) -> dict[str, float]:
        """Buffer measures for the monitor (live tickers, pending requests, pacing waits ...)."""
        ...
