"""The contract layer: symbols and options qualified once, chains, and trading hours.

A stock is qualified once per session (its conId does not change); an option, an unknown
symbol and a chain are remembered for the trading day, because listings change overnight:
the first call of a new day clears those caches. The day is the exchange's (``tz``, from
``calendar_tz``: New York for schedule.calendar XNYS; schedule.timezone, whose other use is
how reports show times, counts only with calendar: weekdays). The options are also
capped at ``MAX_CACHED_OPTIONS`` contracts, the expiries least recently used dropped first:
each expiry asked brings every strike listed, and the day's set keeps growing as signals
reach more symbols and expiries (200 symbols against the simulator: 5,180 contracts after
the first cycle, 6,107 after the tenth); a dropped expiry costs one request when it is asked
again. Each lookup runs under a per-key lock, so callers asking for the same contract at
once send one request. ``unknown(symbols)`` qualifies a whole universe at once, for the
supervisor's check at the first cycle.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.calendar import TradingHours, parse_hours, trading_day
from common.config import IBKRSettings
from common.messages import OptionChain, OptionContract
from supervisor.broker.base import BrokerError, ConnectionLost, SymbolDataError
from supervisor.broker.ibkr.client import ibi, num
from supervisor.broker.ibkr.link import Link
from supervisor.broker.ibkr.requests import IBKRRequestError, Requests

# The adapter's one logger, as before it was split into layers: log filters keep working.
log = logging.getLogger("supervisor.broker.ibkr.broker")

# Abbreviations some gateways send as timeZoneId ("EST (Eastern Standard Time)"): the zone
# with daylight saving, not the fixed-offset zone of the same name.
TZ_ALIASES = {
    "EST": "America/New_York",
    "EDT": "America/New_York",
    "CST": "America/Chicago",
    "CDT": "America/Chicago",
    "MST": "America/Denver",
    "PST": "America/Los_Angeles",
}
# A bound, not a working size: the simulator's 1,000-symbol day (~31 strikes an expiry, ~1
# expiry and right a symbol) is ~30,000-50,000; below a day's set, every expiry is evicted
# before it is used again (symbols come in the same order each cycle): one request each.
MAX_CACHED_OPTIONS = 100_000  # ~600 bytes each: ~60 MB at most
Group = tuple[Any, ...]  # (symbol, expiry, right, exchange, multiplier, trading class)


@dataclass
class Stock:
    contract: Any  # qualified ibi.Contract (conId set)
    hours: TradingHours | None
    hours_day: date


class Contracts:
    """Qualified contracts, chains and hours, cached; see the module docstring."""

    def __init__(
        self,
        link: Link,
        requests: Requests,
        cfg: IBKRSettings,
        *,
        tz: str,
        now: Callable[[], float],
        max_options: int = MAX_CACHED_OPTIONS,
    ) -> None:
        self._link = link
        self._requests = requests
        self._cfg = cfg
        self._tz = tz
        self._zone = ZoneInfo(tz)
        self._now = now
        self._stocks: dict[str, Stock] = {}
        self._options: dict[OptionContract, Any] = {}  # qualified contract, None = unknown
        # expiries and rights asked today, least recently used first, with their contracts
        self._groups: OrderedDict[Group, list[OptionContract]] = OrderedDict()
        self._max_options = max(1, max_options)
        self._unknown: dict[str, str] = {}  # symbol -> why, for today
        self._chains: dict[str, OptionChain] = {}
        self._day: date | None = None

    def _today(self) -> date:
        """The exchange's trading day (``tz``); a new day drops the per-day caches."""
        day = trading_day(self._now(), self._tz)
        if day != self._day:
            self._day = day
            self._options.clear()
            self._groups.clear()
            self._unknown.clear()
            self._chains.clear()
        return day

    async def _details(self, contract: Any, what: str) -> list[Any]:
        return list(
            await self._requests.request(
                what,
                lambda rid: self._link.ib.client.reqContractDetails(rid, contract),
                self._cfg.request_timeout_s,
                contract=contract,
            )
        )

    # --- stocks and their hours --------------------------------------------------------------

    async def stock(self, symbol: str) -> Stock:
        info = self._stocks.get(symbol)
        if info is not None:
            return info
        async with self._requests.lock_for(("stock", symbol)):
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
                log.warning(
                    "%s: %d contracts match; using conId %s",
                    symbol,
                    len(found),
                    found[0].contract.conId,
                )
            contract = found[0].contract
            contract.exchange = "SMART"  # a primary exchange here would bypass smart routing
            info = self._stocks[symbol] = Stock(contract, self._hours(found[0]), day)
            return info

    async def unknown(self, symbols: Sequence[str]) -> dict[str, str]:
        """The symbols IBKR has no stock for (error 200, or no match), each with why; all
        asked at once. One that could not be checked (a timeout) is not among them: its own
        requests will say what is wrong. ConnectionLost if the link went down meanwhile."""
        outcomes = await asyncio.gather(*(self.stock(s) for s in symbols), return_exceptions=True)
        for symbol, outcome in zip(symbols, outcomes, strict=True):
            if isinstance(outcome, ConnectionLost):
                raise outcome
            if isinstance(outcome, BrokerError):
                if symbol not in self._unknown:
                    log.info("%s not checked at IBKR (%s): kept in the universe", symbol, outcome)
            elif isinstance(outcome, BaseException):  # a bug, or a cancel: not swallowed
                raise outcome
        return {s: self._unknown[s] for s in symbols if s in self._unknown}

    def _hours(self, details: Any) -> TradingHours | None:
        tz_id = (details.timeZoneId or "").split(" ")[0]
        tz_id = TZ_ALIASES.get(tz_id, tz_id)
        try:
            zone = ZoneInfo(tz_id) if tz_id else self._zone
        except (ZoneInfoNotFoundError, ValueError):
            log.debug("unknown time zone %r: using %s", details.timeZoneId, self._zone)
            zone = self._zone
        try:
            return parse_hours(details.liquidHours or "", zone)
        except ValueError as exc:
            log.warning("cannot parse liquid hours %r: %s", details.liquidHours, exc)
            return None

    async def regular_hours(self, symbol: str) -> TradingHours | None:
        """The contract's liquid hours (refreshed daily); None if unknown or unreachable."""
        day = trading_day(self._now(), self._tz)
        try:
            stock = await self.stock(symbol)
            if stock.hours_day != day or stock.hours is None:
                found = await self._details(stock.contract, f"hours {symbol}")
                if found:
                    stock.hours, stock.hours_day = self._hours(found[0]), day
        except BrokerError as exc:  # yesterday's listing still covers the coming days
            log.info("market hours of %s not refreshed: %s", symbol, exc)
        known = self._stocks.get(symbol)
        return known.hours if known else None

    # --- options -----------------------------------------------------------------------------

    async def option(self, oc: OptionContract) -> Any:
        """The qualified contract, or None when IBKR does not list it (cached for the day).

        One request qualifies a whole expiry and right (the strike left out: IBKR answers
        with every strike listed), so the strikes a moving price brings into the window later
        cost no message: one per contract made option qualification most of the first cycle.
        """
        self._today()
        group = (oc.symbol, oc.expiry, oc.right, oc.exchange, oc.multiplier, oc.trading_class)
        if oc in self._options:
            if group in self._groups:  # always, but a KeyError here would fail a quote
                self._groups.move_to_end(group)
            return self._options[oc]
        async with self._requests.lock_for(("options", group)):
            if oc not in self._options and group not in self._groups:
                await self._qualify_expiry(oc, group)
            if oc not in self._options:  # not among those listed: unknown, for the day
                self._options[oc] = None
                self._groups.setdefault(group, []).append(oc)
                self._evict()
            return self._options[oc]

    def _evict(self) -> None:
        """Drop the least recently used expiries while over the cap (never the last one)."""
        while len(self._options) > self._max_options and len(self._groups) > 1:
            _group, keys = self._groups.popitem(last=False)
            for key in keys:
                self._options.pop(key, None)
            self._link.counts["option_expiries_evicted_total"] += 1

    async def _qualify_expiry(self, oc: OptionContract, group: Group) -> None:
        wanted = ibi.Option(
            oc.symbol,
            oc.expiry,
            0.0,
            oc.right.value,
            oc.exchange,
            str(oc.multiplier),
            "USD",
            tradingClass=oc.trading_class,
        )
        what = f"options {oc.symbol} {oc.expiry} {oc.right.value}"
        try:
            found = await self._details(wanted, what)
        except IBKRRequestError as exc:
            if exc.code != 200:
                raise
            found = []
        self._link.counts["option_expiries_qualified_total"] += 1
        by_strike: dict[float, list[Any]] = {}
        keys: list[OptionContract] = []
        for details in found:
            by_strike.setdefault(float(details.contract.strike), []).append(details.contract)
        for strike, contracts in by_strike.items():
            # two contracts on one strike (SPX and SPXW, an adjusted deliverable): which one
            # is meant is not known, so neither is used (an exit must never sell the other)
            contract = contracts[0] if len(contracts) == 1 else None
            if contract is not None:
                contract.exchange = oc.exchange
            key = replace(oc, strike=strike)
            self._options[key] = contract
            keys.append(key)
        self._groups[group] = keys
        self._groups.move_to_end(group)
        self._evict()

    async def tradable(self, oc: OptionContract) -> Any:
        """The qualified contract; SymbolDataError when IBKR does not list it."""
        contract = await self.option(oc)
        if contract is None:
            raise SymbolDataError(f"option {oc.key}: not listed at IBKR")
        return contract

    async def chain(self, symbol: str) -> OptionChain:
        self._today()
        cached = self._chains.get(symbol)
        counts = self._link.counts
        if cached is not None:
            counts["chain_cache_hits_total"] += 1
            return cached
        async with self._requests.lock_for(("chain", symbol)):
            if symbol in self._chains:
                counts["chain_cache_hits_total"] += 1
                return self._chains[symbol]
            stock = await self.stock(symbol)
            con_id = stock.contract.conId
            counts["chain_requests_total"] += 1
            params = await self._requests.request(
                f"chain {symbol}",
                lambda rid: self._link.ib.client.reqSecDefOptParams(rid, symbol, "", "STK", con_id),
                self._cfg.request_timeout_s,
            )
            if not params:
                raise SymbolDataError(f"chain {symbol}: IBKR lists no options")
            smart = [p for p in params if p.exchange == "SMART"] or list(params)
            best = max(
                smart, key=lambda p: (len(p.strikes), len(p.expirations), p.tradingClass == symbol)
            )
            multiplier = num(best.multiplier)
            chain = OptionChain(
                symbol=symbol,
                expirations=tuple(sorted(best.expirations)),
                strikes=tuple(sorted({float(k) for k in best.strikes})),
                multiplier=int(multiplier) if math.isfinite(multiplier) else 100,
                exchange=best.exchange,
                trading_class=best.tradingClass,
            )
            self._chains[symbol] = chain
            return chain

    def stats(self) -> dict[str, float]:
        return {"options_cached": float(len(self._options))}
