"""Whole trading days of 1-minute bars from IBKR's historical data, paced by IBKR's rules.

    fetch-history --> HistoricalBars.day(symbol, session) --> HistoricalPacer.acquire
                        one request per symbol-day:          |  IBKR's historical-data rules,
                        1 min TRADES bars, useRTH, "1 D"     |  on our clock, with a margin
                        ending at the session's close        v
                                                           Requests.request --> gateway

IBKR's documented limits (TWS API, "Historical Data Limitations"; ../shared/TWS_PROTOCOL.md):

- a pacing violation (error 162) is any of: an identical request within 15 s; six or more
  requests for the same contract, exchange and tick type within 2 s; more than 60 requests in
  any 10 minutes. BID_ASK requests count twice.
- at most 50 historical requests open at once (error 322); we send one at a time.
- step sizes: 1-minute bars come at most "1 D" per request, so a day is one request and a
  year of one symbol is 252 requests: 42 minutes at 60 per 10 minutes, whatever the machine.

IBKR has said the limits for bars of a minute and more are "lifted" in favour of a softer
throttle; we keep to the documented ones anyway: a refusal costs far more than the wait, and
the gateway also counts what other clients of the account ask (a running bot's own bars).
A refusal nevertheless (error 162 whose text says "pacing violation") is waited out
(``REFUSAL_WAIT_S``, doubling up to the whole window) and the day asked again. Error 162 also
carries other answers (errors.hmds_refusal): "no data" is an empty day; "No market data
permissions" fails at once as ``NoDataPermission`` (no day of the symbol can come); anything
else (query cancelled, connected from a different IP) fails the day at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from common.calendar import Session
from common.config import IBKRSettings
from supervisor.broker.base import NoDataPermission
from supervisor.broker.ibkr import errors
from supervisor.broker.ibkr.contracts import Contracts
from supervisor.broker.ibkr.link import Link
from supervisor.broker.ibkr.requests import IBKRRequestError, Requests

Row = tuple[float, float, float, float, float, float]  # ts (bar start), o, h, l, c, volume
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
HMDS_ERROR = 162  # pacing violation, no data, no permission ...: errors.hmds_refusal
PERMISSION_HINT = (
    "no market-data subscription for this symbol's exchange, so no historical data either: "
    "subscribe to it in the IBKR account; every day of the symbol is skipped"
)
REFUSAL_WAIT_S = 60.0  # a refusal rests this long, doubling to the window's length
REFUSALS_MAX = 4  # then the day fails (something else is spending the account's budget)
# a day's bars take IBKR a second or two, but its softer throttle answers late rather than
# refusing: waiting a minute costs less than asking again (and spending the budget)
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class HistoricalRules:
    """IBKR's historical-data pacing (the defaults are its documented numbers)."""

    max_requests: int = 60  # in any window_s; one more is a violation
    window_s: float = 600.0
    identical_s: float = 15.0  # the same request again within this is a violation
    same_contract: int = 5  # allowed within same_contract_s for one contract (6 is not)
    same_contract_s: float = 2.0
    # our clock is not the gateway's: a request stamped here arrives a little later, and the
    # one before it may have arrived later still; one second covers that jitter many times
    margin_s: float = 1.0


@dataclass(frozen=True)
class Sent:
    at: float
    identity: Hashable
    contract: Hashable
    weight: int


def wait_s(rules: HistoricalRules, sent: deque[Sent], now: float, want: Sent) -> float:
    """How long from ``now`` until ``want`` may be sent without breaking a rule (0: now)."""
    m = rules.margin_s
    waits = [0.0]
    same = [s.at for s in sent if s.identity == want.identity]
    if same:
        waits.append(max(same) + rules.identical_s + m - now)
    recent = sorted(
        s.at for s in sent if s.contract == want.contract and now - s.at < rules.same_contract_s + m
    )
    over = len(recent) + 1 - rules.same_contract
    if over > 0:  # the over-th oldest must leave the 2 s window first
        waits.append(recent[over - 1] + rules.same_contract_s + m - now)
    inside = [s for s in sent if now - s.at < rules.window_s + m]
    excess = sum(s.weight for s in inside) + want.weight - rules.max_requests
    if excess > 0:  # the oldest requests leave the window until enough weight has gone
        gone = 0
        for s in inside:  # oldest first
            gone += s.weight
            if gone >= excess:
                waits.append(s.at + rules.window_s + m - now)
                break
    return max(waits)


def eta_s(rules: HistoricalRules, sent: deque[Sent], now: float, remaining: int) -> float:
    """About how long ``remaining`` more requests take: what the window still holds goes
    at once, the rest at its steady pace (window_s / max_requests each)."""
    inside = sum(s.weight for s in sent if now - s.at < rules.window_s + rules.margin_s)
    later = remaining - max(0, rules.max_requests - inside)
    return max(0.0, later) * rules.window_s / rules.max_requests


class HistoricalPacer:
    """Requests wait here until IBKR's historical-data rules allow them (one at a time)."""

    def __init__(
        self,
        rules: HistoricalRules | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.rules = rules or HistoricalRules()
        self._clock, self._sleep = clock, sleep
        self.sent: deque[Sent] = deque()
        self._lock = asyncio.Lock()
        self.waited_s = 0.0

    async def acquire(self, identity: Hashable, contract: Hashable, weight: int = 1) -> None:
        """Wait until the request may go; it counts as sent now."""
        async with self._lock:
            want = Sent(0.0, identity, contract, weight)
            while True:
                now = self._clock()
                self._forget(now)
                pause = wait_s(self.rules, self.sent, now, want)
                if pause <= 0:
                    break
                self.waited_s += pause
                await self._sleep(pause)
            self.sent.append(Sent(now, identity, contract, weight))

    def eta_s(self, remaining: int) -> float:
        return eta_s(self.rules, self.sent, self._clock(), remaining)

    def _forget(self, now: float) -> None:
        horizon = max(self.rules.window_s, self.rules.identical_s, self.rules.same_contract_s)
        while self.sent and now - self.sent[0].at > horizon + self.rules.margin_s:
            self.sent.popleft()


def end_text(ts: float) -> str:
    """An explicit end in UTC (``YYYYMMDD-HH:MM:SS``): the day is ours, not the gateway's."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%d-%H:%M:%S")


def bar_row(bar: Any) -> Row:
    when = bar.date
    ts = when.timestamp() if isinstance(when, datetime) else float(when)
    return (ts, float(bar.open), float(bar.high), float(bar.low), float(bar.close), bar.volume)


def session_rows(bars: list[Any], session: Session) -> list[Row]:
    """The bars that start inside the regular session, oldest first, one per start."""
    rows = {row[0]: row for row in map(bar_row, bars) if session.contains(row[0])}
    return [rows[ts] for ts in sorted(rows)]


class HistoricalBars:
    """A trading day's 1-minute TRADES bars per request; see the module docstring."""

    def __init__(
        self,
        link: Link,
        requests: Requests,
        contracts: Contracts,
        cfg: IBKRSettings,
        pacer: HistoricalPacer | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
        refusal_wait_s: float = REFUSAL_WAIT_S,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self._link, self._requests, self._contracts, self._cfg = link, requests, contracts, cfg
        self.pacer = pacer or HistoricalPacer()
        self._sleep = sleep
        self.refusal_wait_s = refusal_wait_s
        self.refusals = 0
        self.timeout_s = max(timeout_s, cfg.historical_timeout_s)

    async def day(self, symbol: str, session: Session) -> list[Row]:
        """The regular session's 1-minute bars of ``session.day`` (none: IBKR has no data)."""
        contract = (await self._contracts.stock(symbol)).contract
        end = end_text(session.close_ts)
        refused = 0
        while True:
            await self.pacer.acquire((symbol, end, "1 D", "1 min"), (symbol, "TRADES"))
            try:
                return session_rows(
                    await self._ask(contract, f"history {symbol} {end}", end), session
                )
            except IBKRRequestError as exc:
                if exc.code != HMDS_ERROR:
                    raise
                answer = errors.hmds_refusal(str(exc))
                if answer == errors.HMDS_NO_DATA:  # HMDS query returned no data: an answer
                    return []
                if answer == errors.HMDS_PERMISSION:
                    raise NoDataPermission(f"{exc} ({PERMISSION_HINT})") from exc
                if answer != errors.HMDS_PACING:  # cancelled, another IP ...: waiting won't do
                    raise
                refused += 1
                self.refusals += 1
                if refused > REFUSALS_MAX:
                    raise
                window = self.pacer.rules.window_s
                await self._sleep(min(self.refusal_wait_s * 2 ** (refused - 1), window))

    async def _ask(self, contract: Any, what: str, end: str) -> list[Any]:
        ib = self._link.ib
        self._link.counts["history_requests_total"] += 1
        got: list[Any] = await self._requests.request(
            what,
            lambda rid: ib.client.reqHistoricalData(
                rid, contract, end, "1 D", "1 min", "TRADES", True, 2, False, []
            ),
            self.timeout_s,
            contract=contract,
            on_timeout=lambda rid: self._link.spawn(
                self._requests.paced_send(lambda: ib.client.cancelHistoricalData(rid))
            ),
        )
        return got
