"""The market-data layer: snapshots of stocks and options, each on its own line and reqId.

IBKR sends a snapshot's data within tens of milliseconds but its ``tickSnapshotEnd`` only
about 11 s after the request. So a quote is complete as soon as the fields the decision
needs are in (bid/ask/last/close for a stock; bid/ask and model greeks for an option, and
its volume when ``options.min_volume`` has the intent step read it); the rest is what came
with them (the ticks of one snapshot can arrive in several reads: a stock's volume may). Its
line then goes back as early as the budgets allow: while ``pacing.line_reserve`` lines are
free, the snapshot is left to end by itself (no message spent; the pace is the scarcer
budget); when lines run short it is cancelled at once (one message, the line back now). A
snapshot that completes and still never ends is cancelled after the timeout. If the end or
the timeout comes before the fields, the data received so far is used; with none, the
request fails and says which fields never came. A line (the governor's semaphore) is held
until the gateway has let go of it: at the end, or until the cancel is sent. Each snapshot
runs on a copy of the contract, because ib_insync files tickers by ``id(contract)`` (ib_async
by its hash), and its ticker is removed afterwards, under whichever key the library used.
Delayed data is refused when live or frozen data was asked for, and a delayed quote is
stamped with its true age.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from common.config import IBKRSettings
from common.messages import OptionContract, OptionQuote, Quote
from supervisor.broker.base import ConnectionLost, SymbolDataError
from supervisor.broker.ibkr import errors
from supervisor.broker.ibkr.client import NAN, ibi, or_nan
from supervisor.broker.ibkr.contracts import Contracts
from supervisor.broker.ibkr.link import MARKET_DATA_TYPES, Link
from supervisor.broker.ibkr.pacing import PacingGovernor
from supervisor.broker.ibkr.requests import IBKRRequestError, Requests, request_error

STOCK_FIELDS = ("bid", "ask", "last", "close")
OPTION_FIELDS = ("bid", "ask", "modelGreeks")
DELAYED_TYPES = (3, 4)
DELAYED_AGE_S = 15 * 60.0  # IBKR's delayed US quotes are 15 minutes old
END_GRACE_S = 2.0  # a snapshot left to end is cancelled if its end is this much overdue
LINE_RESERVE = 8  # pacing.line_reserve's default: see common/config.py

# The adapter's one logger, as before it was split into layers: log filters keep working.
log = logging.getLogger("supervisor.broker.ibkr.broker")


class MarketData:
    """Quotes from snapshots; see the module docstring."""

    def __init__(
        self,
        link: Link,
        requests: Requests,
        contracts: Contracts,
        pacer: PacingGovernor,
        cfg: IBKRSettings,
        *,
        now: Callable[[], float],
        option_needs: Sequence[str] = OPTION_FIELDS,
        line_reserve: int = LINE_RESERVE,
    ) -> None:
        self._link = link
        self._requests = requests
        self._contracts = contracts
        self._pacer = pacer
        self._cfg = cfg
        self._now = now
        self._option_needs = tuple(option_needs)
        self._reserve = max(1, line_reserve)

    async def quote(self, symbol: str) -> Quote:
        stock = await self._contracts.stock(symbol)
        t = await self._quote(stock.contract, f"quote {symbol}", STOCK_FIELDS)
        return Quote(
            symbol=symbol,
            bid=float(t.bid),
            ask=float(t.ask),
            last=float(t.last),
            close=float(t.close),
            bid_size=float(t.bidSize),
            ask_size=float(t.askSize),
            volume=float(t.volume),
            ts=self._stamp(t),
        )

    async def option_quotes(self, contracts: Sequence[OptionContract]) -> tuple[OptionQuote, ...]:
        """Snapshots with model greeks. A contract IBKR does not list, or whose snapshot
        fails, comes back as an all-NaN OptionQuote; only when none succeeds does the call
        fail (SymbolDataError naming the first reason)."""
        if not contracts:
            return ()
        outcomes = await asyncio.gather(
            *(self._option_quote(oc) for oc in contracts), return_exceptions=True
        )
        quotes: list[OptionQuote] = []
        reasons: list[str] = []
        for oc, outcome in zip(contracts, outcomes, strict=True):
            if isinstance(outcome, OptionQuote):
                quotes.append(outcome)
            elif isinstance(outcome, SymbolDataError):
                reasons.append(str(outcome))
                quotes.append(OptionQuote(oc, ts=self._now()))
            else:
                raise outcome
        if len(reasons) == len(contracts):
            raise SymbolDataError(f"no option of {len(contracts)} quoted; first: {reasons[0]}")
        return tuple(quotes)

    async def _option_quote(self, oc: OptionContract) -> OptionQuote:
        contract = await self._contracts.tradable(oc)
        t = await self._quote(contract, f"option {oc.key}", self._option_needs)
        g = t.modelGreeks
        iv = delta = gamma = vega = theta = und = NAN
        if g is not None:
            # ib_insync keeps vega/theta -2 ("not computed") where it makes the rest None
            computed = g.delta is not None or g.gamma is not None
            iv, delta, gamma, und = (
                or_nan(g.impliedVol),
                or_nan(g.delta),
                or_nan(g.gamma),
                or_nan(g.undPrice),
            )
            vega = or_nan(g.vega) if computed else NAN
            theta = or_nan(g.theta) if computed else NAN
        return OptionQuote(
            contract=oc,
            bid=float(t.bid),
            ask=float(t.ask),
            last=float(t.last),
            volume=float(t.volume),
            iv=iv,
            delta=delta,
            gamma=gamma,
            vega=vega,
            theta=theta,
            und_price=und,
            ts=self._stamp(t),
        )

    # --- snapshots ---------------------------------------------------------------------------

    async def _quote(self, contract: Any, what: str, needs: Sequence[str]) -> Any:
        """A snapshot; without a live subscription, once more on delayed data if allowed."""
        asked = self._link.data_type
        try:
            return await self._snapshot(contract, what, needs)
        except IBKRRequestError as exc:
            if (
                exc.code not in errors.NO_SUBSCRIPTION
                or not self._cfg.delayed_fallback
                or asked in ("delayed", "delayed_frozen")
            ):  # delayed already: no cure
                raise
            await self._link.fall_back_to_delayed(str(exc))
            return await self._snapshot(contract, what, needs)

    async def _snapshot(self, contract: Any, what: str, needs: Sequence[str]) -> Any:
        """One snapshot, complete when ``needs`` are in; see the module docstring."""
        link = self._link
        await self._pacer.acquire_line()
        contract = copy.copy(contract)  # ib_insync files tickers by id(contract): one each
        req_id: int | None = None
        ended = line_passed = False
        snapshot = self._cfg.quote_mode == "snapshot"
        try:
            await link.pace(1)
            req_id = link.new_req_id()
            future = link.ib.wrapper.startReq(req_id, contract)
            ticker = link.ib.wrapper.startTicker(req_id, contract, _kind(snapshot))
            link.watch(req_id)
            link.ib.client.reqMktData(req_id, contract, "", snapshot, False, [])
            link.counts["snapshots_total"] += 1
            try:
                ended = await self._until_complete(future, ticker, needs)
            except ibi.RequestError as exc:
                ended = True
                raise request_error(what, exc) from None
            except ConnectionError:
                ended = True
                raise ConnectionLost(f"{what}: connection lost") from None
            self._refuse_delayed(req_id, what)
            return self._outcome(ticker, needs, what, ended)
        finally:
            if req_id is not None:
                if ended or not link.ib.isConnected():
                    self._drop_ticker(req_id, contract)
                else:
                    line_passed = True
                    to_end = snapshot and not missing(ticker, needs)
                    link.spawn(self._let_go(req_id, contract, future, to_end, link.generation))
            if not line_passed:
                self._pacer.release_line()

    async def _let_go(
        self, req_id: int, contract: Any, future: asyncio.Future[Any], to_end: bool, generation: int
    ) -> None:
        """Give a request's line back: while lines are plentiful a complete snapshot is left
        to end by itself (IBKR ends it within ~11 s; no message spent), else it is
        cancelled now (one message, the line back at once); a stream is always cancelled."""
        try:
            if to_end and self._pacer.lines_free() >= self._line_reserve():
                try:
                    await asyncio.wait_for(
                        asyncio.shield(future), self._cfg.snapshot_timeout_s + END_GRACE_S
                    )
                    self._link.counts["snapshots_left_to_end_total"] += 1
                    return
                except TimeoutError:
                    pass  # it did not end after all: cancel it
                except (ibi.RequestError, ConnectionError):
                    return  # ended by an error or the drop: the gateway let go of it
            await self._cancel_snapshot(req_id, generation)
        finally:
            if self._link.generation == generation:  # else a new connection owns the reqId
                self._drop_ticker(req_id, contract)
            self._pacer.release_line()

    def _line_reserve(self) -> int:
        """Free lines kept for new requests: snapshots waiting for their end use no more."""
        return self._reserve

    async def _until_complete(
        self, future: asyncio.Future[Any], ticker: Any, needs: Sequence[str]
    ) -> bool:
        """Wait for the needed fields, the snapshot's end or the timeout, whichever is
        first; True when the gateway ended the snapshot (an error raises from here)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._cfg.snapshot_timeout_s
        changed = asyncio.Event()

        def wake(*_args: Any) -> None:
            changed.set()

        ticker.updateEvent += wake
        future.add_done_callback(wake)
        try:
            while not future.done():
                remaining = deadline - loop.time()
                if not missing(ticker, needs) or remaining <= 0:
                    return False
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), remaining)
            future.result()  # the gateway's error for this request, if any
            return True
        finally:
            ticker.updateEvent -= wake

    def _outcome(self, ticker: Any, needs: Sequence[str], what: str, ended: bool) -> Any:
        """The ticker to quote from, or the reason there is nothing to quote."""
        counts = self._link.counts
        lacking = missing(ticker, needs)
        if not lacking:
            counts["snapshots_complete_total"] += 1
            return ticker
        if ended:
            counts["snapshots_partial_total"] += 1
            return ticker  # the gateway says this is all there is: the checks judge it
        counts["snapshot_timeouts_total"] += 1
        if any(_present(getattr(ticker, f, None)) for f in ("bid", "ask", "last", "close")):
            counts["snapshots_partial_total"] += 1
            log.debug(
                "%s: no %s within %gs; using what came",
                what,
                ", ".join(lacking),
                self._cfg.snapshot_timeout_s,
            )
            return ticker
        raise SymbolDataError(
            f"{what}: no data within {self._cfg.snapshot_timeout_s:g}s "
            f"(missing {', '.join(lacking)}); cancelled"
        )

    def _stamp(self, ticker: Any) -> float:
        """When the quote was true: a delayed quote is ``DELAYED_AGE_S`` old on arrival."""
        delayed = getattr(ticker, "marketDataType", 1) in DELAYED_TYPES
        return self._now() - (DELAYED_AGE_S if delayed else 0.0)

    def _refuse_delayed(self, req_id: int, what: str) -> None:
        codes = self._link.codes(req_id)
        wanted = MARKET_DATA_TYPES[self._link.data_type]
        if errors.DELAYED_DATA_SHOWN in codes and wanted in (1, 2):
            raise IBKRRequestError(
                f"{what}: error 10167: only delayed data, but "
                f"market_data_type is {self._link.data_type}",
                errors.DELAYED_DATA_SHOWN,
            )

    def _drop_ticker(self, req_id: int, contract: Any) -> None:
        wrapper = self._link.ib.wrapper
        ticker = wrapper.reqId2Ticker.pop(req_id, None)
        # ib_insync files tickers by id(contract), ib_async by hash(contract): remove the
        # entry that holds this ticker, whatever its key (else ib_async leaks one a request)
        for key in [k for k, t in wrapper.tickers.items() if t is ticker or k == id(contract)]:
            del wrapper.tickers[key]
        if ticker is not None:
            for kind in ("snapshot", "mktData"):
                wrapper.ticker2ReqId[kind].pop(ticker, None)
            wrapper.pendingTickers.discard(ticker)
        self._requests.forget(req_id)

    async def _cancel_snapshot(self, req_id: int, generation: int) -> None:
        # IB.cancelMktData(contract) looks under 'mktData', not 'snapshot': cancel by reqId.
        link = self._link
        link.cancelled(req_id)

        def cancel() -> None:
            # after a reconnect the gateway forgot the request, and the reqId may be reused
            if link.generation == generation:
                link.ib.client.cancelMktData(req_id)
                link.counts["snapshot_cancels_total"] += 1

        try:
            await self._requests.paced_send(cancel)
        except ConnectionError:
            log.debug("snapshot %d not cancelled: disconnected (the gateway drops it)", req_id)

    def stats(self) -> dict[str, float]:
        return {"live_tickers": float(len(self._link.ib.wrapper.tickers))}


def option_fields(min_volume: int) -> tuple[str, ...]:
    """What an option quote waits for: bid, ask and model greeks, and its volume when the
    intent step reads it (``options.min_volume`` > 0): a quote taken before its volume
    tick would refuse the option for a volume that was on its way."""
    return (*OPTION_FIELDS, "volume") if min_volume > 0 else OPTION_FIELDS


def _kind(snapshot: bool) -> str:
    """ib_insync's name for the request: it files tickers by it."""
    return "snapshot" if snapshot else "mktData"


def missing(ticker: Any, needs: Sequence[str]) -> list[str]:
    """The needed ticker fields that have not arrived (NaN or None)."""
    return [f for f in needs if not _present(getattr(ticker, f, None))]


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))
