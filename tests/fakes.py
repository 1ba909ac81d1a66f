"""A fake supervisor: answers a worker's requests from a StubBroker, by hand, synchronously."""

from __future__ import annotations

import asyncio
from typing import Any

from common.calendar import nyse
from common.config import Settings
from common.messages import (
    BarsRequest,
    ChainRequest,
    OptionQuotesRequest,
    QuoteRequest,
    Reply,
)
from supervisor.broker.stub import StubBroker
from supervisor.runtime.serving import fetch_bars


class FakeSupervisor:
    def __init__(self, settings: Settings, now: float) -> None:
        self.now = now
        self.broker = StubBroker(settings.stub, lambda: self.now)
        self.seen: list[Any] = []

    def answer(self, request: Any) -> Reply:
        self.seen.append(request)
        return Reply(request.request_id, value=asyncio.run(self._fetch(request)))

    async def _fetch(self, request: Any) -> Any:
        if isinstance(request, QuoteRequest):
            return await self.broker.quote(request.symbol)
        if isinstance(request, BarsRequest):
            return await fetch_bars(
                self.broker,
                nyse(),
                self.now,
                request.symbol,
                request.count,
                request.bar_minutes,
                request.rth,
            )
        if isinstance(request, ChainRequest):
            return await self.broker.chain(request.symbol)
        if isinstance(request, OptionQuotesRequest):
            return await self.broker.option_quotes(request.contracts)
        raise AssertionError(f"not a request: {request!r}")
