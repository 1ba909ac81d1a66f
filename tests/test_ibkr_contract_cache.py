"""The options cache of the IBKR contract layer is bounded: cleared at the trading day's
change and capped in contracts, the expiries least recently used dropped first (issue 22:
at 200 symbols against the simulator it grew ~160 KB a cycle all day)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Hashable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from common.config import IBKRSettings
from common.messages import OptionContract, Right
from supervisor.broker.ibkr.client import ibi
from supervisor.broker.ibkr.contracts import Contracts
from tests.sessions import TUESDAY_MORNING

STRIKES = (95.0, 100.0, 105.0, 110.0)


class FakeRequests:
    """Answers an expiry's contract details with every strike of STRIKES; counts requests."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self._locks: dict[Hashable, asyncio.Lock] = {}

    def lock_for(self, key: Hashable) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def request(
        self,
        what: str,
        send: Any,
        timeout_s: float,
        *,
        contract: Any = None,
        on_timeout: Any = None,
    ) -> list[Any]:
        self.asked.append(what)
        return [
            SimpleNamespace(
                contract=ibi.Option(
                    contract.symbol,
                    contract.lastTradeDateOrContractMonth,
                    strike,
                    contract.right,
                    "SMART",
                    "100",
                    "USD",
                    conId=1000 + int(strike),
                )
            )
            for strike in STRIKES
        ]


class Clock:
    def __init__(self) -> None:
        self.ts = TUESDAY_MORNING.timestamp()

    def __call__(self) -> float:
        return self.ts


def contracts(max_options: int) -> tuple[Contracts, FakeRequests, Clock]:
    requests, clock = FakeRequests(), Clock()
    link = SimpleNamespace(counts=Counter())
    layer = Contracts(
        link,  # type: ignore[arg-type]
        requests,  # type: ignore[arg-type]
        IBKRSettings(),
        tz="America/New_York",
        now=clock,
        max_options=max_options,
    )
    return layer, requests, clock


def option(symbol: str, strike: float = 100.0, expiry: str = "20261204") -> OptionContract:
    return OptionContract(symbol, expiry, strike, Right.CALL)


def test_the_options_cache_keeps_at_most_its_cap_dropping_the_least_recently_used() -> None:
    async def run() -> None:
        layer, requests, _ = contracts(max_options=2 * len(STRIKES))
        for symbol in ("AAA", "BBB"):
            assert (await layer.tradable(option(symbol))).conId == 1100
        await layer.tradable(option("AAA", 105.0))  # AAA used last: BBB is the oldest
        await layer.tradable(option("CCC"))
        assert layer.stats()["options_cached"] == 2 * len(STRIKES)
        assert len(requests.asked) == 3
        await layer.tradable(option("AAA", 95.0))  # kept: no request
        assert len(requests.asked) == 3
        await layer.tradable(option("BBB", 110.0))  # dropped: asked again, still right
        assert requests.asked[-1] == "options BBB 20261204 C"
        assert layer.stats()["options_cached"] <= 2 * len(STRIKES)
        assert layer._link.counts["option_expiries_evicted_total"] == 2

    asyncio.run(run())


def test_an_unlisted_strike_counts_against_the_cap_and_goes_with_its_expiry() -> None:
    async def run() -> None:
        layer, requests, _ = contracts(max_options=len(STRIKES) + 1)
        assert await layer.option(option("AAA", 101.0)) is None  # listed: not this strike
        assert layer.stats()["options_cached"] == len(STRIKES) + 1
        await layer.tradable(option("BBB"))
        assert layer.stats()["options_cached"] == len(STRIKES)  # AAA and its 101 are gone
        assert await layer.option(option("AAA", 101.0)) is None
        assert len(requests.asked) == 3

    asyncio.run(run())


def test_the_options_cache_is_emptied_at_the_next_trading_day() -> None:
    async def run() -> None:
        layer, requests, clock = contracts(max_options=1000)
        await layer.tradable(option("AAA"))
        await layer.tradable(option("BBB"))
        assert layer.stats()["options_cached"] == 2 * len(STRIKES)
        clock.ts = (TUESDAY_MORNING + timedelta(days=1)).timestamp()
        await layer.tradable(option("AAA", expiry="20261211"))
        assert layer.stats()["options_cached"] == len(STRIKES)  # yesterday's expiries gone
        assert len(requests.asked) == 3

    asyncio.run(run())
