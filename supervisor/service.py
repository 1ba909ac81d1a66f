"""Serves worker requests from the broker: one request in, exactly one Reply out.

Every answer is bounded by a timeout and every failure becomes an error Reply, so a worker
never waits on a request that will not be answered.
"""

from __future__ import annotations

import asyncio
import logging
import time

from common.messages import (
    BarsRequest,
    ChainRequest,
    OptionQuotesRequest,
    QuoteRequest,
    Reply,
    ReplyValue,
    Request,
)
from supervisor.broker.base import Broker, BrokerError

log = logging.getLogger("supervisor.service")


class DataService:
    def __init__(self, broker: Broker, timeout_s: float) -> None:
        self.broker = broker
        self.timeout_s = timeout_s
        self.served = 0
        self.failed = 0
        self.busy_s = 0.0

    async def answer(self, request: Request) -> Reply:
        started = time.monotonic()
        try:
            value = await asyncio.wait_for(self._fetch(request), self.timeout_s)
            reply = Reply(request.request_id, value=value)
        except TimeoutError:
            reply = self._error(request, f"timed out after {self.timeout_s:g}s")
        except BrokerError as exc:
            reply = self._error(request, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a broker bug must not hang the worker waiting on it
            log.exception("serving %s failed", type(request).__name__)
            reply = self._error(request, f"internal error: {type(exc).__name__}: {exc}")
        self.served += 1
        self.busy_s += time.monotonic() - started
        return reply

    def _error(self, request: Request, text: str) -> Reply:
        self.failed += 1
        log.warning("%s for %s: %s", type(request).__name__, request.symbol, text,
                    extra={"event": "request_failed", "symbol": request.symbol})
        return Reply(request.request_id, error=text)

    async def _fetch(self, request: Request) -> ReplyValue:
        match request:
            case QuoteRequest(symbol=symbol):
                return await self.broker.quote(symbol)
            case BarsRequest(symbol=symbol, minutes=minutes, bar_minutes=bar_minutes):
                return await self.broker.bars(symbol, minutes, bar_minutes)
            case ChainRequest(symbol=symbol):
                return await self.broker.chain(symbol)
            case OptionQuotesRequest(contracts=contracts):
                return await self.broker.option_quotes(contracts)
        raise TypeError(f"not a request: {request!r}")
