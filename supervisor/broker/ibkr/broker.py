"""IBKRBroker: the Broker protocol over ib_insync, inside the supervisor's running loop.

::

    DataService / executor              IBKRBroker                           IB Gateway / TWS
    ----------------------              ----------                           (or gateway_sim)
    quote, bars, chain, option_quotes   caches: conIds, bars, chains, hours,
    account, market_open, what_if  -->  per-day negatives
    place_bracket, open_orders ...        |
                                          v
                                        PacingGovernor.acquire / line  --->  ib_insync client
                                          |  (one governor: ib_insync's        (socket)
                                          |   throttle is switched off)           |
                                        wrapper futures by reqId  <---------------+
                                          ^  errorEvent -> errors.classify        |
                                          +- disconnectedEvent -> reconnect loop -+
                                             (Backoff + CircuitBreaker)

Only ``*Async`` style calls run here (never ``ib.sleep``, ``util.run`` or the blocking
wrappers): every request is sent through the wrapper's own request/future machinery with a
reqId the broker knows, so it can bound every wait, cancel what the gateway still holds
(snapshots, historical requests) and leave no future, ticker or line behind.

Errors: a failed request raises ``SymbolDataError`` (``IBKRRequestError`` with the code when
the gateway named one); while the link is down every call raises ``ConnectionLost`` at once.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import time
import weakref
from array import array
from collections import Counter
from collections.abc import Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

try:
    import ib_insync as ibi
except ImportError:  # pragma: no cover - ib_async is a drop-in replacement where installed
    import ib_async as ibi  # type: ignore[no-redef]

from common.bars import resample, tail
from common.calendar import TradingHours, parse_hours, trading_day
from common.config import Settings
from common.messages import Bars, OptionChain, OptionContract, OptionQuote, OrderIntent, Quote
from supervisor.broker.base import (
    AccountSnapshot,
    BrokerError,
    BrokerPosition,
    ConnectionLost,
    Fill,
    OpenOrder,
    SymbolDataError,
    WhatIf,
)
from supervisor.broker.ibkr import errors
from supervisor.broker.ibkr.pacing import Backoff, CircuitBreaker, PacingGovernor

log = logging.getLogger("supervisor.broker.ibkr.broker")

MARKET_DATA_TYPES = {"live": 1, "frozen": 2, "delayed": 3, "delayed_frozen": 4}
# startApi + positions, open orders, completed orders, account updates (single and multi),
# executions (+ auto-open-orders for client id 0): sent by ib_insync's connectAsync itself.
CONNECT_MESSAGES = 8
BAR_SIZES = {1: "1 min", 2: "2 mins", 3: "3 mins", 5: "5 mins", 10: "10 mins", 15: "15 mins",
             20: "20 mins", 30: "30 mins", 60: "1 hour", 120: "2 hours", 180: "3 hours",
             240: "4 hours", 480: "8 hours"}
UNSET_DOUBLE = 1.7976931348623157e308
# Abbreviations some gateways send as timeZoneId ("EST (Eastern Standard Time)"): the zone
# with daylight saving, not the fixed-offset zone of the same name.
TZ_ALIASES = {"EST": "America/New_York", "EDT": "America/New_York", "CST": "America/Chicago",
              "CDT": "America/Chicago", "MST": "America/Denver", "PST": "America/Los_Angeles"}
NAN = math.nan
Row = tuple[float, float, float, float, float, float]


class IBKRRequestError(SymbolDataError):
    """A request the gateway answered with an error code (200, 354, 162 ...)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _ClientIdInUse(BrokerError):
    pass


def ib_duration(seconds: float) -> str:
    """An IBKR duration covering ``seconds``: ``N S`` up to a day, whole days beyond."""
    whole = max(60, math.ceil(seconds))
    return f"{whole} S" if whole <= 86_400 else f"{math.ceil(whole / 86_400)} D"


def _num(value: Any) -> float:
    """A float from an IBKR number or numeric string; NaN for empty and 'unset' values."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return NAN
    return NAN if abs(x) >= UNSET_DOUBLE else x


def _opt(value: float | None) -> float:
    return NAN if value is None else float(value)


@dataclass
class _Stock:
    contract: Any  # qualified ibi.Contract (conId set)
    hours: TradingHours | None
    hours_day: date


@dataclass
class _BarCache:
    rows: dict[float, Row] = field(default_factory=dict)
    covered_from: float = math.inf  # completed bars starting in [covered_from, covered_to)
    covered_to: float = -math.inf  # are all known (IBKR sends none for closed periods)
    span_s: float = 0.0  # the longest window asked for: what the cache keeps


class IBKRBroker:
    """One IB connection for the supervisor; see the module docstring."""

    name = "ibkr"

    def __init__(self, settings: Settings, now: Callable[[], float] = time.time) -> None:
        self.cfg = settings.ibkr
        self.tz = settings.schedule.timezone
        self.zone = ZoneInfo(self.tz)
        self.now = now
        self.pacer = PacingGovernor(settings.pacing.max_messages_per_s,
                                    settings.pacing.max_market_data_lines)
        self.backoff = Backoff(self.cfg.reconnect_initial_s, self.cfg.reconnect_max_s,
                               self.cfg.reconnect_jitter)
        self.breaker = CircuitBreaker(self.cfg.circuit_failures, self.cfg.circuit_cooldown_s)
        self.ib = ibi.IB()
        # One governor, not two stacked: ib_insync's own throttle would release queued
        # requests in a burst exactly a second later, which the gateway counts against us.
        self.ib.client.MaxRequests = 0
        self.ib.RaiseRequestErrors = True  # errors on a reqId end its future with the code
        self.ib.errorEvent += self._on_error
        self.ib.disconnectedEvent += self._on_disconnected
        self.ib.client.conn.hasData += self._on_bytes
        self.client_id: int | None = None
        self._accounts: list[str] = []
        self._state = "new"  # new | connecting | connected | reconnecting | closed
        self._link_up = True  # False between error 1100 and 1101/1102
        self._id_rejected = asyncio.Event()
        self._connect_lock = asyncio.Lock()
        self._watched: dict[int, list[int]] = {}  # our reqIds -> codes seen on them
        self._tasks: set[asyncio.Task[Any]] = set()
        self._locks: weakref.WeakValueDictionary[Hashable, asyncio.Lock] = (
            weakref.WeakValueDictionary())
        self._stocks: dict[str, _Stock] = {}
        self._options: dict[OptionContract, Any] = {}  # qualified contract, None = unknown
        self._unknown: dict[str, str] = {}  # symbol -> why, for today
        self._chains: dict[str, OptionChain] = {}
        self._bars: dict[tuple[str, int], _BarCache] = {}
        self._day: date | None = None
        self._counts: Counter[str] = Counter()
        self._sent_base = 0
        self._bytes_in = 0

    # --- connection --------------------------------------------------------------------------

    def is_connected(self) -> bool:
        return self._state == "connected" and self._link_up and self.ib.isConnected()

    def managed_accounts(self) -> list[str]:
        return list(self._accounts)

    async def connect(self) -> None:
        async with self._connect_lock:  # a second caller waits, then finds it connected
            if self.is_connected():
                return
            if self._state == "reconnecting":  # the reconnect loop owns the connection
                raise ConnectionLost(f"reconnecting to {self._where()}; wait for it")
            self._state = "connecting"
            try:
                await self._connect_any_client_id()
            except BrokerError:
                self._state = "new"
                self._counts["connect_failures_total"] += 1
                raise
            self._state = "connected"

    async def disconnect(self) -> None:
        self._state = "closed"
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.ib.isConnected():
            self.ib.disconnect()
        else:
            self.ib.client.disconnect()

    async def _connect_any_client_id(self) -> None:
        first = self.cfg.client_id
        last = first + self.cfg.client_id_attempts - 1
        for client_id in range(first, last + 1):
            try:
                await self._connect_once(client_id)
                return
            except _ClientIdInUse:
                log.warning("client id %d is in use at %s (error 326)%s", client_id,
                            self._where(), "; trying the next" if client_id < last else "")
        raise BrokerError(f"client ids {first}..{last} are all in use at {self._where()} "
                          "(error 326): another session holds them")

    async def _connect_once(self, client_id: int) -> None:
        self._id_rejected.clear()
        self._link_up = True
        conn = self.ib.client.conn
        self._sent_base += conn.numMsgSent
        conn.numMsgSent = 0
        await self.pacer.acquire(CONNECT_MESSAGES)
        connecting = asyncio.ensure_future(self.ib.connectAsync(
            self.cfg.host, self.cfg.port, clientId=client_id, timeout=self.cfg.connect_timeout_s))
        rejected = asyncio.ensure_future(self._id_rejected.wait())
        try:
            await asyncio.wait({connecting, rejected}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (connecting, rejected):
                task.cancel()
            # ib_insync's cleanup may itself raise (disconnect before "ready"): collected here
            outcome = (await asyncio.gather(connecting, rejected, return_exceptions=True))[0]
        if self._id_rejected.is_set() or isinstance(outcome, BaseException):
            self.ib.client.disconnect()
            if self._id_rejected.is_set():
                raise _ClientIdInUse(f"client id {client_id} in use")
            raise self._connect_error(outcome) from None
        self.client_id = client_id
        self._accounts = list(self.ib.managedAccounts())
        await self._apply_market_data_type()
        if not self.ib.isConnected():  # dropped while we were finishing: no event will come
            raise BrokerError(f"the connection to {self._where()} dropped right after connecting")
        self.breaker.success()
        log.info("connected to %s as client id %d; accounts %s; market data %s",
                 self._where(), client_id, ",".join(self._accounts), self.cfg.market_data_type,
                 extra={"event": "broker_connected", "client_id": client_id})

    def _connect_error(self, exc: BaseException) -> BrokerError:
        where = self._where()
        if isinstance(exc, ConnectionRefusedError):
            return BrokerError(
                f"cannot connect to IB Gateway/TWS at {where}: nothing listening there "
                "(connection refused); start the gateway with the API enabled or fix "
                "ibkr.host / ibkr.port (paper gateway 4002, live 4001)")
        if isinstance(exc, TimeoutError):
            return BrokerError(
                f"IB Gateway/TWS at {where} did not finish the API handshake within "
                f"{self.cfg.connect_timeout_s:g}s (not logged in yet, or 127.0.0.1 not a "
                "trusted API client?)")
        if isinstance(exc, asyncio.CancelledError):
            return BrokerError(f"connecting to {where} was cancelled")
        if isinstance(exc, OSError):
            return BrokerError(f"cannot connect to {where}: {exc.strerror or exc}")
        return BrokerError(f"connecting to {where} failed: {type(exc).__name__}: {exc}")

    def _where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    async def _apply_market_data_type(self) -> None:
        await self.pacer.acquire(1)
        if self.ib.isConnected():
            self.ib.reqMarketDataType(MARKET_DATA_TYPES[self.cfg.market_data_type])

    def _on_disconnected(self) -> None:
        if self._state != "connected":
            return  # a failed connect attempt, or our own disconnect()
        self._state = "reconnecting"
        self._counts["disconnects_total"] += 1
        log.warning("lost the connection to %s (client id %s); reconnecting", self._where(),
                    self.client_id, extra={"event": "broker_disconnected"})
        self._spawn(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        attempt = 0
        while self._state == "reconnecting":
            if not self.breaker.allow():
                log.error("circuit open after %d failed connects: next try in %.0fs",
                          self.breaker.failures, self.breaker.remaining_s(),
                          extra={"event": "broker_circuit_open"})
                await asyncio.sleep(self.breaker.remaining_s())
                continue
            if self.breaker.state != CircuitBreaker.HALF_OPEN:
                await asyncio.sleep(self.backoff.delay(attempt))
            if self._state != "reconnecting":
                return
            try:
                await self._connect_any_client_id()
            except Exception as exc:  # every failure counts; the loop is the retry
                attempt += 1
                self.breaker.failure()
                self._counts["connect_failures_total"] += 1
                log.warning("reconnect attempt %d failed: %s", attempt, exc,
                            exc_info=not isinstance(exc, BrokerError))
                continue
            if self._state != "reconnecting":  # disconnect() was called meanwhile
                self.ib.disconnect()
                return
            self._state = "connected"
            self._counts["reconnects_total"] += 1
            log.warning("reconnected to %s after %d failed attempts", self._where(), attempt,
                        extra={"event": "broker_reconnected"})
            return

    # --- events ------------------------------------------------------------------------------

    def _on_error(self, req_id: int, code: int, message: str, _contract: Any) -> None:
        self._counts[errors.stats_key(code)] += 1
        watched = self._watched.get(req_id)
        if watched is not None:
            watched.append(code)
        log.log(errors.log_level(code, ours=watched is not None), "IBKR %s (reqId %s)",
                errors.describe(code, message), req_id,
                extra={"event": "ibkr_error", "code": code, "req_id": req_id})
        if code == errors.CLIENT_ID_IN_USE:
            self._id_rejected.set()
        elif code == errors.LINK_LOST:
            self._link_up = False
        elif code in (errors.LINK_RESTORED, errors.LINK_RESTORED_DATA_LOST):
            self._link_up = True
            if code == errors.LINK_RESTORED_DATA_LOST:  # the gateway forgot our data type
                self._spawn(self._apply_market_data_type())
        elif code == errors.RATE_EXCEEDED:
            log.error("the gateway says we sent over 50 messages/s: a pacing bug")

    def _on_bytes(self, data: bytes) -> None:
        self._bytes_in += len(data)

    # --- request plumbing --------------------------------------------------------------------

    def _require_connected(self) -> None:
        if self.is_connected():
            return
        if self._state == "connected" and not self._link_up:
            raise ConnectionLost("IB Gateway lost its link to IBKR (error 1100); waiting "
                                 "for 1101/1102")
        if self._state in ("reconnecting", "connecting"):
            raise ConnectionLost(f"disconnected from {self._where()}; reconnecting")
        raise ConnectionLost(f"not connected to {self._where()}")

    async def _pace(self, n: int = 1) -> None:
        """Pass the governor, and only then check that there is still a link to send on."""
        self._require_connected()
        await self.pacer.acquire(n)
        self._require_connected()

    def _new_req_id(self) -> int:
        try:
            return self.ib.client.getReqId()
        except ConnectionError:
            raise ConnectionLost(f"not connected to {self._where()}") from None

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _lock_for(self, key: Hashable) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _forget(self, req_id: int) -> None:
        wrapper = self.ib.wrapper
        wrapper._futures.pop(req_id, None)
        wrapper._results.pop(req_id, None)
        wrapper._reqId2Contract.pop(req_id, None)
        self._watched.pop(req_id, None)

    async def _request(self, what: str, send: Callable[[int], None], timeout_s: float, *,
                       contract: Any = None,
                       on_timeout: Callable[[int], object] | None = None) -> Any:
        """Send one request through the wrapper's future for its reqId; bounded, cleaned up."""
        await self._pace(1)
        req_id = self._new_req_id()
        future = self.ib.wrapper.startReq(req_id, contract)
        self._watched[req_id] = []
        try:
            send(req_id)
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            if on_timeout is not None:
                on_timeout(req_id)
            raise SymbolDataError(f"{what}: no answer within {timeout_s:g}s") from None
        except ibi.RequestError as exc:
            raise IBKRRequestError(f"{what}: {errors.describe(exc.code, exc.message)}",
                                   exc.code) from None
        except ConnectionError:
            raise ConnectionLost(f"{what}: connection lost") from None
        finally:
            self._forget(req_id)

    async def _paced_send(self, send: Callable[[], None]) -> None:
        """Fire-and-forget messages (cancels) still pass the governor."""
        await self.pacer.acquire(1)
        if self.ib.isConnected():
            send()

    async def _snapshot(self, contract: Any, what: str) -> Any:
        """One snapshot; its market-data line is held until the gateway has let go of it."""
        await self.pacer.acquire_line()
        contract = copy.copy(contract)  # ib_insync files tickers by id(contract): one each
        req_id: int | None = None
        ended = line_passed = False
        try:
            await self._pace(1)
            req_id = self._new_req_id()
            future = self.ib.wrapper.startReq(req_id, contract)
            ticker = self.ib.wrapper.startTicker(req_id, contract, "snapshot")
            self._watched[req_id] = []
            self.ib.client.reqMktData(req_id, contract, "", True, False, [])
            self._counts["snapshots_total"] += 1
            try:
                await asyncio.wait_for(future, self.cfg.snapshot_timeout_s)
            except TimeoutError:
                self._counts["snapshot_timeouts_total"] += 1
                raise SymbolDataError(f"{what}: snapshot did not end within "
                                      f"{self.cfg.snapshot_timeout_s:g}s; cancelled") from None
            except ibi.RequestError as exc:
                ended = True
                raise IBKRRequestError(f"{what}: {errors.describe(exc.code, exc.message)}",
                                       exc.code) from None
            except ConnectionError:
                ended = True
                raise ConnectionLost(f"{what}: connection lost") from None
            ended = True
            self._refuse_delayed(req_id, what)
            return ticker
        finally:
            if req_id is not None:
                self._drop_ticker(req_id, contract)
                if not ended and self.ib.isConnected():
                    line_passed = True
                    self._spawn(self._cancel_snapshot(req_id))
            if not line_passed:
                self.pacer.release_line()

    def _refuse_delayed(self, req_id: int, what: str) -> None:
        codes = self._watched.get(req_id, [])
        wanted = MARKET_DATA_TYPES[self.cfg.market_data_type]
        if errors.DELAYED_DATA_SHOWN in codes and wanted in (1, 2):
            raise IBKRRequestError(f"{what}: error 10167: only delayed data, but "
                                   f"market_data_type is {self.cfg.market_data_type}",
                                   errors.DELAYED_DATA_SHOWN)

    def _drop_ticker(self, req_id: int, contract: Any) -> None:
        wrapper = self.ib.wrapper
        ticker = wrapper.reqId2Ticker.pop(req_id, None)
        wrapper.tickers.pop(id(contract), None)
        if ticker is not None:
            wrapper.ticker2ReqId["snapshot"].pop(ticker, None)
            wrapper.pendingTickers.discard(ticker)
        self._forget(req_id)

    async def _cancel_snapshot(self, req_id: int) -> None:
        # IB.cancelMktData(contract) looks under 'mktData', not 'snapshot': cancel by reqId.
        try:
            await self._paced_send(lambda: self.ib.client.cancelMktData(req_id))
            self._counts["snapshot_cancels_total"] += 1
        except ConnectionError:
            log.debug("snapshot %d not cancelled: disconnected (the gateway drops it)", req_id)
        finally:
            self.pacer.release_line()

    def _today(self) -> date:
        """The trading day (schedule.timezone); a new day drops the per-day caches."""
        day = trading_day(self.now(), self.tz)
        if day != self._day:
            self._day = day
            self._options.clear()
            self._unknown.clear()
            self._chains.clear()
        return day

    # --- contracts ---------------------------------------------------------------------------

    async def _details(self, contract: Any, what: str) -> list[Any]:
        return list(await self._request(
            what, lambda rid: self.ib.client.reqContractDetails(rid, contract),
            self.cfg.request_timeout_s, contract=contract))

    async def _stock(self, symbol: str) -> _Stock:
        info = self._stocks.get(symbol)
        if info is not None:
            return info
        async with self._lock_for(("stock", symbol)):
            info = self._stocks.get(symbol)
            if info is not None:
                return info
            day = self._today()
            if symbol in self._unknown:
                raise SymbolDataError(self._unknown[symbol])
            try:
                found = await self._details(ibi.Stock(symbol, "SMART", "USD"), f"{symbol}")
            except IBKRRequestError as exc:
                if exc.code == 200:
                    self._unknown[symbol] = str(exc)
                raise
            if not found:
                self._unknown[symbol] = f"{symbol}: no such stock at IBKR (SMART, USD)"
                raise SymbolDataError(self._unknown[symbol])
            if len(found) > 1:
                log.warning("%s: %d contracts match; using conId %s", symbol, len(found),
                            found[0].contract.conId)
            contract = found[0].contract
            contract.exchange = "SMART"  # a primary exchange here would bypass smart routing
            info = self._stocks[symbol] = _Stock(contract, self._hours(found[0]), day)
            return info

    def _hours(self, details: Any) -> TradingHours | None:
        tz_id = (details.timeZoneId or "").split(" ")[0]
        tz_id = TZ_ALIASES.get(tz_id, tz_id)
        try:
            zone = ZoneInfo(tz_id) if tz_id else self.zone
        except (ZoneInfoNotFoundError, ValueError):
            log.debug("unknown time zone %r: using %s", details.timeZoneId, self.zone)
            zone = self.zone
        try:
            return parse_hours(details.liquidHours or "", zone)
        except ValueError as exc:
            log.warning("cannot parse liquid hours %r: %s", details.liquidHours, exc)
            return None

    async def _option(self, oc: OptionContract) -> Any:
        """The qualified contract, or None when IBKR does not list it (cached for the day)."""
        self._today()
        if oc in self._options:
            return self._options[oc]
        async with self._lock_for(("option", oc)):
            if oc in self._options:
                return self._options[oc]
            wanted = ibi.Option(oc.symbol, oc.expiry, oc.strike, oc.right.value, oc.exchange,
                                str(oc.multiplier), "USD", tradingClass=oc.trading_class)
            try:
                found = await self._details(wanted, f"option {oc.key}")
            except IBKRRequestError as exc:
                if exc.code != 200:
                    raise
                found = []
            contract = found[0].contract if len(found) == 1 else None
            if contract is not None:
                contract.exchange = oc.exchange
            self._options[oc] = contract
            return contract

    # --- market data -------------------------------------------------------------------------

    async def quote(self, symbol: str) -> Quote:
        stock = await self._stock(symbol)
        t = await self._snapshot(stock.contract, f"quote {symbol}")
        return Quote(symbol=symbol, bid=float(t.bid), ask=float(t.ask), last=float(t.last),
                     close=float(t.close), bid_size=float(t.bidSize),
                     ask_size=float(t.askSize), volume=float(t.volume), ts=self.now())

    async def option_quotes(self, contracts: Sequence[OptionContract]
                            ) -> tuple[OptionQuote, ...]:
        """Snapshots with model greeks. A contract IBKR does not list, or whose snapshot
        fails, comes back as an all-NaN OptionQuote; only when none succeeds does the call
        fail (SymbolDataError naming the first reason)."""
        if not contracts:
            return ()
        outcomes = await asyncio.gather(*(self._option_quote(oc) for oc in contracts),
                                        return_exceptions=True)
        quotes: list[OptionQuote] = []
        reasons: list[str] = []
        for oc, outcome in zip(contracts, outcomes, strict=True):
            if isinstance(outcome, OptionQuote):
                quotes.append(outcome)
            elif isinstance(outcome, SymbolDataError):
                reasons.append(str(outcome))
                quotes.append(OptionQuote(oc, ts=self.now()))
            else:
                raise outcome
        if len(reasons) == len(contracts):
            raise SymbolDataError(f"no option of {len(contracts)} quoted; first: {reasons[0]}")
        return tuple(quotes)

    async def _option_quote(self, oc: OptionContract) -> OptionQuote:
        contract = await self._option(oc)
        if contract is None:
            raise SymbolDataError(f"option {oc.key}: not listed at IBKR")
        t = await self._snapshot(contract, f"option {oc.key}")
        g = t.modelGreeks
        iv = delta = gamma = vega = theta = und = NAN
        if g is not None:
            # ib_insync keeps vega/theta -2 ("not computed") where it makes the rest None
            computed = g.delta is not None or g.gamma is not None
            iv, delta, gamma, und = (_opt(g.impliedVol), _opt(g.delta), _opt(g.gamma),
                                     _opt(g.undPrice))
            vega = _opt(g.vega) if computed else NAN
            theta = _opt(g.theta) if computed else NAN
        return OptionQuote(contract=oc, bid=float(t.bid), ask=float(t.ask), last=float(t.last),
                           volume=float(t.volume), iv=iv, delta=delta, gamma=gamma, vega=vega,
                           theta=theta, und_price=und, ts=self.now())

    async def chain(self, symbol: str) -> OptionChain:
        self._today()
        cached = self._chains.get(symbol)
        if cached is not None:
            self._counts["chain_cache_hits_total"] += 1
            return cached
        async with self._lock_for(("chain", symbol)):
            if symbol in self._chains:
                self._counts["chain_cache_hits_total"] += 1
                return self._chains[symbol]
            stock = await self._stock(symbol)
            con_id = stock.contract.conId
            self._counts["chain_requests_total"] += 1
            params = await self._request(
                f"chain {symbol}",
                lambda rid: self.ib.client.reqSecDefOptParams(rid, symbol, "", "STK", con_id),
                self.cfg.request_timeout_s)
            if not params:
                raise SymbolDataError(f"chain {symbol}: IBKR lists no options")
            smart = [p for p in params if p.exchange == "SMART"] or list(params)
            best = max(smart, key=lambda p: (len(p.strikes), len(p.expirations),
                                             p.tradingClass == symbol))
            multiplier = _num(best.multiplier)
            chain = OptionChain(
                symbol=symbol, expirations=tuple(sorted(best.expirations)),
                strikes=tuple(sorted({float(k) for k in best.strikes})),
                multiplier=int(multiplier) if math.isfinite(multiplier) else 100,
                exchange=best.exchange, trading_class=best.tradingClass)
            self._chains[symbol] = chain
            return chain

    # --- bars --------------------------------------------------------------------------------

    async def bars(self, symbol: str, minutes: int, bar_minutes: int = 1) -> Bars:
        """Completed TRADES bars covering the last ``minutes``, oldest first.

        Cached per (symbol, bar size): a call asks IBKR only for the bars since the last
        cached one (plus one bar of overlap), or for nothing when the cache already reaches
        the newest completed bar. Sizes IBKR does not offer are resampled from 1-minute bars.
        """
        if minutes < 1 or bar_minutes < 1:
            raise SymbolDataError(f"bars {symbol}: minutes and bar_minutes must be >= 1")
        if bar_minutes not in BAR_SIZES:
            return await self._resampled(symbol, minutes, bar_minutes)
        bar_s = bar_minutes * 60
        count = max(1, minutes // bar_minutes)
        key = (symbol, bar_s)
        async with self._lock_for(("bars", *key)):
            end = math.floor(self.now() / bar_s) * bar_s  # the forming bar starts here
            need_from = end - count * bar_s
            cache = self._bars.get(key) or _BarCache()
            if cache.covered_from <= need_from and cache.covered_to >= end:
                self._counts["bars_cache_hits_total"] += 1
            else:
                cache = await self._fetch_bars(symbol, bar_s, need_from, end, cache)
                self._bars[key] = cache
            cache.span_s = max(cache.span_s, count * bar_s)
            rows = sorted(r for ts, r in cache.rows.items() if need_from <= ts < end)
        cols = [array("d", col) for col in zip(*rows, strict=True)] if rows else []
        return Bars(symbol, *cols) if cols else Bars(symbol)

    async def _fetch_bars(self, symbol: str, bar_s: int, need_from: float, end: float,
                          cache: _BarCache) -> _BarCache:
        contiguous = cache.covered_from <= need_from and cache.covered_to >= need_from
        start = max(need_from, cache.covered_to - bar_s) if contiguous else need_from
        # An explicit end (UTC) rather than "now": the window is the broker's, whatever the
        # gateway's clock says; one bar of margin before the start.
        end_text = datetime.fromtimestamp(end, UTC).strftime("%Y%m%d-%H:%M:%S")
        duration = ib_duration(end - start + bar_s)
        stock = await self._stock(symbol)
        contract = stock.contract
        self._counts["bars_requests_total"] += 1
        got = await self._request(
            f"bars {symbol} {BAR_SIZES[bar_s // 60]} {duration} to {end_text}",
            lambda rid: self.ib.client.reqHistoricalData(
                rid, contract, end_text, duration, BAR_SIZES[bar_s // 60], "TRADES", False, 2,
                False, []),
            self.cfg.historical_timeout_s, contract=contract,
            on_timeout=lambda rid: self._spawn(self._paced_send(
                lambda: self.ib.client.cancelHistoricalData(rid))))
        fresh = {row[0]: row for row in map(self._bar_row, got) if row[0] < end}
        merged = {**cache.rows, **fresh} if contiguous else fresh
        keep_from = end - max(cache.span_s, end - need_from)
        rows = {ts: r for ts, r in merged.items() if ts >= keep_from}
        covered_from = max(cache.covered_from if contiguous else need_from, keep_from)
        return _BarCache(rows, covered_from, end, cache.span_s)

    def _bar_row(self, bar: Any) -> Row:
        when = bar.date
        if isinstance(when, datetime):
            ts = when.timestamp()
        else:  # daily bars come as dates: the day starts at midnight in the exchange's zone
            ts = datetime.combine(when, datetime.min.time(), self.zone).timestamp()
        return (ts, float(bar.open), float(bar.high), float(bar.low), float(bar.close),
                float(bar.volume))

    async def _resampled(self, symbol: str, minutes: int, bar_minutes: int) -> Bars:
        width = bar_minutes * 60
        ones = await self.bars(symbol, minutes + bar_minutes, 1)
        if not len(ones):
            return ones
        done = math.floor(self.now() / 60) * 60  # every minute before this is complete
        out = resample(ones, bar_minutes)
        keep = [i for i in range(len(out))
                if out.ts[i] + width <= done and out.ts[i] >= ones.ts[0]]
        if not keep:
            return Bars(symbol)
        sliced = Bars(symbol, *(col[keep[0]:keep[-1] + 1] for col in
                                (out.ts, out.open, out.high, out.low, out.close, out.volume)))
        return tail(sliced, max(1, minutes // bar_minutes))

    # --- account and hours -------------------------------------------------------------------

    async def account(self) -> AccountSnapshot:
        """From the account updates ib_insync keeps current since connect (no request)."""
        self._require_connected()
        account = self._order_account("", strict=False) or self.cfg.account
        values = {(v.tag, v.account): v for v in self.ib.accountValues()}
        wanted = [a for a in (account, *self._accounts) if a]
        for acct in wanted:
            net = values.get(("NetLiquidation", acct))
            funds = values.get(("AvailableFunds", acct))
            if net is not None:
                return AccountSnapshot(acct, _num(net.value),
                                       _num(funds.value) if funds else NAN,
                                       net.currency or "USD")
        raise SymbolDataError(f"no account values received for {wanted or 'any account'}")

    async def market_open(self, symbol: str, now_ts: float) -> bool | None:
        """From the contract's liquid hours (refreshed daily); None if unknown or unreachable."""
        day = trading_day(now_ts, self.tz)
        try:
            stock = await self._stock(symbol)
            if stock.hours_day != day or stock.hours is None:
                found = await self._details(stock.contract, f"hours {symbol}")
                if found:
                    stock.hours, stock.hours_day = self._hours(found[0]), day
        except BrokerError as exc:  # yesterday's listing still covers the coming days
            log.info("market hours of %s not refreshed: %s", symbol, exc)
        known = self._stocks.get(symbol)
        return known.hours.is_open(now_ts) if known and known.hours else None

    # --- orders ------------------------------------------------------------------------------

    def _order_account(self, account: str, strict: bool = True) -> str:
        if account:
            if self._accounts and account not in self._accounts:
                raise BrokerError(f"account {account} is not one of this login's "
                                  f"{self._accounts}")
            return account
        if self.cfg.account and self.cfg.account in self._accounts:
            return self.cfg.account
        if len(self._accounts) == 1:
            return self._accounts[0]
        if strict and self._accounts:
            raise BrokerError(f"several accounts {self._accounts}: name the one to use")
        return ""

    async def _tradable(self, oc: OptionContract) -> Any:
        contract = await self._option(oc)
        if contract is None:
            raise SymbolDataError(f"option {oc.key}: not listed at IBKR")
        return contract

    async def what_if(self, contract: OptionContract, action: str, quantity: int,
                      limit: float) -> WhatIf:
        """IBKR's margin check for a limit order: margin changes and commission."""
        qualified = await self._tradable(contract)
        order = ibi.LimitOrder(action, quantity, limit, whatIf=True, tif="DAY",
                               account=self._order_account("", strict=False))

        def send(req_id: int) -> None:
            order.orderId = req_id
            self.ib.client.placeOrder(req_id, qualified, order)

        state = await self._request(f"what-if {action} {quantity} {contract.key}", send,
                                    self.cfg.request_timeout_s, contract=qualified)
        return WhatIf(init_margin_change=_num(state.initMarginChange),
                      maint_margin_change=_num(state.maintMarginChange),
                      commission=_num(state.commission),
                      equity_with_loan_change=_num(state.equityWithLoanChange),
                      init_margin_after=_num(state.initMarginAfter),
                      maint_margin_after=_num(state.maintMarginAfter))

    async def place_bracket(self, intent: OrderIntent, quantity: int, account: str
                            ) -> tuple[int, int, int]:
        """Parent BUY limit (not transmitted), take-profit SELL limit and stop SELL, one OCA
        group, orderRef = intent id; the stop's transmit sends all three. Returns the ids."""
        if quantity < 1:
            raise BrokerError(f"bracket {intent.intent_id}: quantity {quantity} < 1")
        acct = self._order_account(account)
        contract = await self._tradable(intent.contract)
        await self._pace(3)
        parent_id, tp_id, sl_id = (self._new_req_id() for _ in range(3))
        common = {"orderRef": intent.intent_id, "account": acct, "tif": "DAY"}
        oca = {"ocaGroup": f"oca-{intent.intent_id}", "ocaType": 1, "parentId": parent_id}
        orders = [
            ibi.LimitOrder("BUY", quantity, intent.entry_limit, orderId=parent_id,
                           transmit=False, **common),
            ibi.LimitOrder("SELL", quantity, intent.take_profit, orderId=tp_id,
                           transmit=False, **common, **oca),
            ibi.StopOrder("SELL", quantity, intent.stop_loss, orderId=sl_id, transmit=True,
                          **common, **oca),
        ]
        for order in orders:
            self.ib.placeOrder(contract, order)
        log.info("bracket %s placed: %s", intent.intent_id, [parent_id, tp_id, sl_id])
        return parent_id, tp_id, sl_id

    def open_orders(self) -> list[OpenOrder]:
        return [OpenOrder(order_id=t.order.orderId, order_ref=t.order.orderRef,
                          status=t.orderStatus.status, action=t.order.action,
                          quantity=float(t.order.totalQuantity), order_type=t.order.orderType,
                          symbol=t.contract.symbol, sec_type=t.contract.secType,
                          expiry=t.contract.lastTradeDateOrContractMonth,
                          strike=float(t.contract.strike), right=t.contract.right,
                          limit=_num(t.order.lmtPrice), aux=_num(t.order.auxPrice),
                          perm_id=t.order.permId, parent_id=t.order.parentId,
                          oca_group=t.order.ocaGroup, account=t.order.account)
                for t in self.ib.openTrades()]

    def fills(self) -> list[Fill]:
        """This session's executions (IBKR replays the day's on reconnect)."""
        return [Fill(exec_id=f.execution.execId, order_id=f.execution.orderId,
                     order_ref=f.execution.orderRef, side=f.execution.side,
                     shares=float(f.execution.shares), price=float(f.execution.price),
                     ts=f.time.timestamp() if f.time else self.now(),
                     commission=(_num(f.commissionReport.commission)
                                 if f.commissionReport else None))
                for f in self.ib.fills()]

    def positions(self) -> list[BrokerPosition]:
        return [BrokerPosition(account=p.account, symbol=p.contract.symbol,
                               sec_type=p.contract.secType, quantity=float(p.position),
                               avg_cost=float(p.avgCost), con_id=p.contract.conId,
                               expiry=p.contract.lastTradeDateOrContractMonth,
                               strike=float(p.contract.strike), right=p.contract.right)
                for p in self.ib.positions()]

    async def cancel_order(self, order_id: int) -> None:
        trades = [t for t in self.ib.openTrades() if t.order.orderId == order_id]
        order = trades[0].order if trades else ibi.Order(orderId=order_id)
        await self._pace(1)
        self.ib.cancelOrder(order)

    # --- stats -------------------------------------------------------------------------------

    def stats(self) -> dict[str, float]:
        wrapper = self.ib.wrapper
        out = {
            "connected": 1.0 if self.is_connected() else 0.0,
            "live_tickers": float(len(wrapper.tickers)),
            "pending_requests": float(len(wrapper._futures)),
            "lines_in_use": float(self.pacer.lines_in_use),
            "background_tasks": float(len(self._tasks)),
            "circuit_state": float(self.breaker.state),
            "bars_cached": float(sum(len(c.rows) for c in self._bars.values())),
            # bytes received but not yet a whole message: the client side of "buffer growth"
            "recv_buffer_bytes": float(len(getattr(self.ib.client, "_data", b""))),
            "wrapper_results": float(len(getattr(wrapper, "_results", {}))),
            "messages_sent_total": float(self._sent_base + self.ib.client.conn.numMsgSent),
            "bytes_received_total": float(self._bytes_in),
            "paced_messages_total": float(self.pacer.messages_total),
            "pacing_waits_total": float(self.pacer.waits_total),
            "pacing_wait_s_total": round(self.pacer.wait_s_total, 3),
            "line_waits_total": float(self.pacer.line_waits_total),
            "circuit_opened_total": float(self.breaker.opened_total),
        }
        out.update({k: float(v) for k, v in self._counts.items()})
        return out


__all__ = ["IBKRBroker", "IBKRRequestError", "ib_duration"]
