"""A fake supervisor: answers a worker's requests from a StubBroker, by hand, synchronously."""

from __future__ import annotations

import asyncio

from common.calendar import nyse
from common.config import Settings
from common.messages import (
    BarsReply,
    BarsRequest,
    ChainReply,
    ChainRequest,
    OptionQuotesReply,
    OptionQuotesRequest,
    QuoteReply,
    QuoteRequest,
    Reply,
    Request,
)
from supervisor.broker.stub import StubBroker
from supervisor.runtime.serving import fetch_bars


class FakeSupervisor:
    def __init__(self, settings: Settings, now: float) -> None:
        self.now = now
        self.broker = StubBroker(settings.stub, lambda: self.now)
        self.seen: list[Request] = []

    def answer(self, request: Request) -> Reply:
        self.seen.append(request)
        return asyncio.run(self._fetch(request))

    async def _fetch(self, request: Request) -> Reply:
        rid = request.request_id
        if isinstance(request, QuoteRequest):
            return QuoteReply(rid, await self.broker.quote(request.symbol))
        if isinstance(request, BarsRequest):
            bars = await fetch_bars(
                self.broker,
                nyse(),
                self.now,
                request.symbol,
                request.count,
                request.bar_minutes,
                request.rth,
            )
            return BarsReply(rid, bars)
        if isinstance(request, ChainRequest):
            return ChainReply(rid, await self.broker.chain(request.symbol))
        if isinstance(request, OptionQuotesRequest):
            return OptionQuotesReply(rid, await self.broker.option_quotes(request.contracts))
        raise AssertionError(f"not a request: {request!r}")
