"""Serves worker requests from the broker: one request in, exactly one Reply out.

Every answer is bounded by a timeout and every failure becomes an error Reply, so a worker
never waits on a request that will not be answered. A symbol whose data keeps failing
(timeouts, no permissions) is left alone for a while — doubling from ``base_s`` up to
``max_s`` — instead of spending pacing budget and market-data lines on it every cycle.
Failures are counted per step (quote, bars of each size, chain, option quotes), so a step
that fails every cycle makes the symbol rest even while its other steps succeed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from common.bars import tail
from common.calendar import ExchangeCalendar, bars_start
from common.messages import (
    Bars,
    BarsReply,
    BarsRequest,
    ChainReply,
    ChainRequest,
    OptionQuotesReply,
    OptionQuotesRequest,
    QuoteReply,
    QuoteRequest,
    Replies,
    Reply,
    Request,
    failed,
)
from supervisor.broker.base import Broker, BrokerError, ConnectionLost

log = logging.getLogger("supervisor.runtime.serving")
LOST = "ConnectionLost: "  # how a reply says the connection failed, not the symbol


def connection_lost(text: str | None) -> bool:
    """Whether a failure (a symbol's error or skip reason) came from a lost connection."""
    return text is not None and LOST in text


class SymbolBackoff:
    """Consecutive failures per (symbol, step); after ``after`` of one step the symbol rests.

    A success clears only its own step's count: the quote succeeding every cycle must not
    hide bars that fail every cycle (the symbol would then never rest).
    """

    def __init__(
        self,
        after: int = 3,
        base_s: float = 60.0,
        max_s: float = 1800.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.after, self.base_s, self.max_s, self.clock = after, base_s, max_s, clock
        self.failures: dict[str, dict[str, int]] = {}  # symbol -> step -> failures in a row
        self.until: dict[str, float] = {}
        self.why: dict[str, str] = {}  # symbol -> the step that made it rest

    def resting(self, symbol: str) -> float:
        """Seconds the symbol still rests (0: ask the broker)."""
        return max(0.0, self.until.get(symbol, 0.0) - self.clock())

    def failed(self, symbol: str, step: str) -> None:
        steps = self.failures.setdefault(symbol, {})
        n = steps[step] = steps.get(step, 0) + 1
        if n >= self.after:
            rest = min(self.base_s * 2 ** (n - self.after), self.max_s)
            self.until[symbol] = self.clock() + rest
            self.why[symbol] = step
            log.warning(
                "%s: %s failed %d times in a row: resting %.0fs",
                symbol,
                step,
                n,
                rest,
                extra={"event": "symbol_backoff", "symbol": symbol, "step": step, "rest_s": rest},
            )

    def succeeded(self, symbol: str, step: str) -> None:
        steps = self.failures.get(symbol, {})
        steps.pop(step, None)
        if not steps:  # nothing of the symbol is failing any more
            self.failures.pop(symbol, None)
            self.until.pop(symbol, None)
            self.why.pop(symbol, None)


def step_of(request: Request) -> str:
    """The step a request serves, as the back-off counts it (each bar size on its own)."""
    match request:
        case BarsRequest(bar_minutes=bar_minutes):
            return f"bars {bar_minutes}m"
        case ChainRequest():
            return "chain"
        case OptionQuotesRequest():
            return "option quotes"
    return "quote"


class DataService:
    def __init__(
        self,
        broker: Broker,
        timeout_s: float,
        calendar: ExchangeCalendar,
        now: Callable[[], float],
        backoff: SymbolBackoff | None = None,
    ) -> None:
        self.broker = broker
        self.timeout_s = timeout_s
        self.calendar = calendar  # counts bars over trading days, not clock hours
        self.now = now
        self.backoff = backoff or SymbolBackoff()
        self.served = 0
        self.failed = 0
        self.busy_s = 0.0

    async def answer_all(self, requests: tuple[Request, ...]) -> Replies:
        """One step's requests, asked together, answered in their order."""
        if len(requests) == 1:  # most steps: no task to gather
            return Replies((await self.answer(requests[0]),))
        return Replies(tuple(await asyncio.gather(*(self.answer(r) for r in requests))))

    async def answer(self, request: Request) -> Reply:
        symbol, step = request.symbol, step_of(request)
        resting = self.backoff.resting(symbol)
        if resting:
            self.served += 1
            return failed(
                request,
                f"{symbol} rests {resting:.0f}s after "
                f"repeated failures ({self.backoff.why.get(symbol, step)})",
            )
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):  # no task of its own, as wait_for has
                reply = await self._fetch(request)
            self.backoff.succeeded(symbol, step)
        except TimeoutError:
            reply = self._failed(request, f"timed out after {self.timeout_s:g}s")
        except ConnectionLost as exc:  # the connection's fault, not the symbol's
            reply = self._error(request, f"{LOST}{exc}")
        except BrokerError as exc:
            reply = self._failed(request, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a broker bug must not hang the worker waiting on it
            log.exception("serving %s failed", type(request).__name__)
            reply = self._error(request, f"internal error: {type(exc).__name__}: {exc}")
        self.served += 1
        self.busy_s += time.monotonic() - started
        return reply

    def _failed(self, request: Request, text: str) -> Reply:
        """A timeout or an error: the symbol's, charged to its back-off, unless the
        connection is down by now (a gateway that went silent timed it out: its probe
        gives the link up within seconds, and what it held fails as ConnectionLost)."""
        if not self.broker.is_connected():
            return self._error(request, f"{LOST}{text} (the connection is down)")
        self.backoff.failed(request.symbol, step_of(request))
        return self._error(request, text)

    def _error(self, request: Request, text: str) -> Reply:
        self.failed += 1
        log.warning(
            "%s for %s: %s",
            type(request).__name__,
            request.symbol,
            text,
            extra={"event": "request_failed", "symbol": request.symbol},
        )
        return failed(request, text)

    async def _fetch(self, request: Request) -> Reply:
        """The broker's answer, in the reply kind the request expects."""
        rid = request.request_id
        match request:
            case QuoteRequest(symbol=symbol):
                return QuoteReply(rid, await self.broker.quote(symbol))
            case BarsRequest(symbol=symbol, count=count, bar_minutes=bar_minutes, rth=rth):
                bars = await fetch_bars(
                    self.broker, self.calendar, self.now(), symbol, count, bar_minutes, rth
                )
                return BarsReply(rid, bars)
            case ChainRequest(symbol=symbol):
                return ChainReply(rid, await self.broker.chain(symbol))
            case OptionQuotesRequest(contracts=contracts):
                return OptionQuotesReply(rid, await self.broker.option_quotes(contracts))
        raise TypeError(f"not a request: {request!r}")


async def fetch_bars(
    broker: Broker,
    calendar: ExchangeCalendar,
    now_ts: float,
    symbol: str,
    count: int,
    bar_minutes: int,
    rth: bool,
) -> Bars:
    """The newest ``count`` completed bars, however many trading days they span."""
    start = bars_start(calendar, now_ts, count, bar_minutes * 60, rth)
    minutes = max(bar_minutes, math.ceil((now_ts - start) / 60))
    return tail(await broker.bars(symbol, minutes, bar_minutes, rth), count)
