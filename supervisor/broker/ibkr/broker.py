"""IBKRBroker: the Broker protocol over ib_insync, inside the supervisor's running loop.

A thin facade over one module per layer; each layer only calls the ones below it::

    DataService / executor            IBKRBroker (broker.py: builds the layers, delegates)
    ----------------------              |
    quote, option_quotes  ----------->  marketdata.py  snapshots: a line each, cancel by reqId
    bars  --------------------------->  bars.py        incremental bar cache, resampling,
                                                       pacing (162) cooldowns
    account, what_if, place_bracket,    orders.py      account values, what-if, brackets,
    open_orders, fills, positions --->    |            open orders, fills, positions
    place_exit  --------------------->  exits.py       one exit of a bracket placed again
    place_stock_order  -------------->  stock_orders.py  shares an exercise delivered, closed
    completed_refs  ----------------->  completed.py   completed orders' orderRefs
    chain, regular_hours, ----------->  contracts.py   conIds, chains, hours, per-day negatives
    unknown_symbols                       |
                                          v
                                        requests.py    wrapper futures by reqId, bounded,
                                          |            cleaned up; per-key locks; cancels
                                          v
                                        link.py        PacingGovernor.acquire / line,
                                          |            reqIds, tasks, counters;
                                          |            errorEvent -> errors.classify;
                                          |            disconnectedEvent -> reconnect loop
                                          |            (Backoff + CircuitBreaker)
                                          v
                                        client.py      ib_insync (or ib_async)  --->  IB Gateway
                                                       (one governor: its throttle    / TWS (or
                                                        is switched off)              gateway_sim)

Only ``*Async`` style calls run here (never ``ib.sleep``, ``util.run`` or the blocking
wrappers): every request is sent through the wrapper's own request/future machinery with a
reqId the broker knows, so it can bound every wait, cancel what the gateway still holds
(snapshots, historical requests) and leave no future, ticker or line behind.

Errors: a failed request raises ``SymbolDataError`` (``IBKRRequestError`` with the code when
the gateway named one); while the link is down every call raises ``ConnectionLost`` at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import date

from common.calendar import TradingHours, calendar_tz
from common.config import Settings
from common.messages import Bars, OptionChain, OptionContract, OptionQuote, OrderIntent, Quote
from supervisor.broker.base import (
    AccountSnapshot,
    BrokerPosition,
    Fill,
    OpenOrder,
    PlacedBracket,
    WhatIf,
)
from supervisor.broker.ibkr.bars import BarHistory, ib_duration
from supervisor.broker.ibkr.client import ibi
from supervisor.broker.ibkr.completed import completed_refs
from supervisor.broker.ibkr.contracts import Contracts
from supervisor.broker.ibkr.exits import place_exit
from supervisor.broker.ibkr.history import HistoricalBars
from supervisor.broker.ibkr.link import Link
from supervisor.broker.ibkr.marketdata import MarketData, option_fields
from supervisor.broker.ibkr.orders import Orders
from supervisor.broker.ibkr.pacing import PacingGovernor
from supervisor.broker.ibkr.requests import IBKRRequestError, Requests
from supervisor.broker.ibkr.stock_orders import place_stock_order

# The order the monitor has always recorded the measures in; the *_total counters follow.
STATS_ORDER = (
    "connected",
    "live_tickers",
    "pending_requests",
    "lines_in_use",
    "background_tasks",
    "circuit_state",
    "bars_cached",
    "recv_buffer_bytes",
    "wrapper_results",
    "messages_sent_total",
    "bytes_received_total",
    "paced_messages_total",
    "pacing_waits_total",
    "pacing_wait_s_total",
    "line_waits_total",
    "circuit_opened_total",
)


class IBKRBroker:
    """One IB connection for the supervisor; see the module docstring."""

    name = "ibkr"

    def __init__(self, settings: Settings, now: Callable[[], float] = time.time) -> None:
        cfg = settings.ibkr
        tz = calendar_tz(settings.schedule)  # the exchange's trading day, not a display zone
        self.now = now
        self._cfg = cfg
        self.pacer = PacingGovernor(
            settings.pacing.max_messages_per_s, settings.pacing.max_market_data_lines
        )
        self._link = Link(cfg, self.pacer)
        self._requests = Requests(self._link)
        self._contracts = Contracts(self._link, self._requests, cfg, tz=tz, now=now)
        self._market = MarketData(
            self._link,
            self._requests,
            self._contracts,
            self.pacer,
            cfg,
            now=now,
            option_needs=option_fields(settings.options.min_volume),
            line_reserve=settings.pacing.line_reserve,
        )
        self._bars = BarHistory(self._link, self._requests, self._contracts, cfg, tz=tz, now=now)
        self._orders = Orders(self._link, self._requests, self._contracts, cfg, now=now)
        # whole days of 1-minute bars for fetch-history, on their own pacing (history.py)
        self.history = HistoricalBars(self._link, self._requests, self._contracts, cfg)

    @property
    def ib(self) -> ibi.IB:
        return self._link.ib

    @property
    def client_id(self) -> int | None:
        return self._link.client_id

    # --- connection --------------------------------------------------------------------------

    def is_connected(self) -> bool:
        return self._link.is_connected()

    def managed_accounts(self) -> list[str]:
        return list(self._link.accounts)

    async def connect(self) -> None:
        await self._link.connect()

    async def disconnect(self) -> None:
        await self._link.disconnect()

    # --- market data -------------------------------------------------------------------------

    async def quote(self, symbol: str) -> Quote:
        return await self._market.quote(symbol)

    async def option_quotes(self, contracts: Sequence[OptionContract]) -> tuple[OptionQuote, ...]:
        return await self._market.option_quotes(contracts)

    async def bars(
        self, symbol: str, minutes: int, bar_minutes: int = 1, rth: bool = False
    ) -> Bars:
        return await self._bars.bars(symbol, minutes, bar_minutes, rth)

    async def closing_price(self, symbol: str, day: date) -> float | None:
        return await self._bars.closing_price(symbol, day)

    async def chain(self, symbol: str) -> OptionChain:
        return await self._contracts.chain(symbol)

    async def regular_hours(self, symbol: str) -> TradingHours | None:
        return await self._contracts.regular_hours(symbol)

    async def unknown_symbols(self, symbols: Sequence[str]) -> dict[str, str]:
        return await self._contracts.unknown(symbols)

    # --- account and orders ------------------------------------------------------------------

    async def account(self) -> AccountSnapshot:
        return await self._orders.account()

    async def what_if(
        self, contract: OptionContract, action: str, quantity: int, limit: float
    ) -> WhatIf:
        return await self._orders.what_if(contract, action, quantity, limit)

    async def place_bracket(
        self, intent: OrderIntent, quantity: int, account: str
    ) -> PlacedBracket:
        return await self._orders.place_bracket(intent, quantity, account)

    def stop_entries(self) -> None:
        self._orders.entries_stopped = True

    async def place_order(
        self,
        contract: OptionContract,
        action: str,
        quantity: int,
        limit: float,
        account: str,
        order_ref: str,
    ) -> int:
        return await self._orders.place_order(contract, action, quantity, limit, account, order_ref)

    async def place_stock_order(
        self, symbol: str, action: str, quantity: int, limit: float, account: str, order_ref: str
    ) -> int:
        return await place_stock_order(
            self._link, self._contracts, symbol, action, quantity, limit, account, order_ref
        )

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
        return await place_exit(
            self._link,
            self._contracts,
            self._cfg,
            contract,
            order_type,
            quantity,
            price,
            account,
            order_ref,
            oca_group,
        )

    async def cancel_order(self, order_id: int) -> None:
        await self._orders.cancel_order(order_id)

    async def refresh_orders(self) -> None:
        await self._orders.refresh_orders()

    async def completed_refs(self) -> list[str]:
        return await completed_refs(self._link, self._cfg)

    def open_orders(self) -> list[OpenOrder]:
        return self._orders.open_orders()

    def fills(self) -> list[Fill]:
        return self._orders.fills()

    def positions(self) -> list[BrokerPosition]:
        return self._orders.positions()

    # --- stats -------------------------------------------------------------------------------

    def stats(self) -> dict[str, float]:
        parts = {
            **self._link.stats(),
            **self._requests.stats(),
            **self._market.stats(),
            **self._bars.stats(),
            **self._contracts.stats(),
        }
        out = {key: parts.pop(key) for key in STATS_ORDER}
        out.update(parts)  # a measure a layer adds later, after the known ones
        out.update({k: float(v) for k, v in self._link.counts.items()})
        return out


__all__ = ["IBKRBroker", "IBKRRequestError", "ib_duration"]
