"""``check`` (Phase 1): one symbol through the real pipeline, and what it found.

    broker --DataService--> Reply <--- Request --- workers.pipeline.process_symbol
                                                     (run here, in process, with a probe
                                                      strategy that always wants calls)
    report: price and its source, chain size, expiry, ATM, window, usable option quotes

The worker pipeline itself runs (quote and bars, sanitising, chain, ATM and window, candidate
snapshots), answered the way the supervisor answers its workers, so the check proves the path a
cycle takes, against the stub, the simulated gateway or a real one. Only the signal is forced:
a check wants the option side exercised whatever the market says.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from common.calendar import exchange_calendar
from common.config import Settings
from common.messages import (
    OptionChain,
    OptionQuote,
    OrderIntent,
    Reply,
    ReplyValue,
    Signal,
    SymbolResult,
)
from supervisor import exitcodes
from supervisor.broker.base import Broker, BrokerError
from supervisor.commands.options import MARKET_ERRORS, load, market_error, market_for
from supervisor.runtime.cycle import symbol_task
from supervisor.runtime.serving import DataService
from supervisor.runtime.sessions import broker_session
from supervisor.trading.sessions import SessionBook
from workers.pipeline import Pipeline, process_symbol, request_ids
from workers.signals import SignalDecision
from workers.strategy import MarketView
from workers.strikes import Selection

log = logging.getLogger("supervisor.commands.check")


@dataclass
class CheckReport:
    symbol: str
    broker: str
    ok: bool = False
    price: float | None = None
    price_source: str = ""
    strikes: int = 0
    expirations: int = 0
    expiry: str = ""
    atm: float | None = None
    window: tuple[float, ...] = ()
    option_quotes_usable: int = 0
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    unknown: str = ""  # the venue's words when it lists no such symbol

    def lines(self) -> list[str]:
        if self.unknown:
            return [
                f"check {self.symbol} via {self.broker}: FAILED: {self.symbol} is unknown at "
                f"the gateway ({self.unknown}); check the ticker (--symbol, universe.symbols)"
            ]
        head = f"check {self.symbol} via {self.broker}: {'OK' if self.ok else 'FAILED'} "
        head += f"in {self.seconds:.2f}s"
        if self.price is None and not self.strikes:
            # nothing was found (no connection, no quote): the cause is the report, not a
            # "warning" after a screenful of empty fields
            cause, *rest = self.warnings or ["nothing found"]
            return [f"{head}: {cause}", *(f"  warning: {w}" for w in rest)]
        window = ", ".join(f"{k:g}" for k in self.window) or "none"
        price = f"{self.price:.2f}" if self.price is not None else "n/a"
        return [
            head,
            f"  price {price} ({self.price_source or '-'})",
            f"  chain: {self.strikes} strikes, {self.expirations} expirations; "
            f"expiry {self.expiry or 'n/a'}",
            f"  ATM {f'{self.atm:g}' if self.atm is not None else 'n/a'}; window "
            f"({len(self.window)}): {window}",
            f"  option snapshots with a usable bid and ask: {self.option_quotes_usable}",
            *(f"  warning: {w}" for w in self.warnings),
        ]


class ProbeStrategy:
    """Always wants calls, and keeps what the pipeline showed it."""

    wants_hourly_bars = False
    decides_on_quote = True  # the report shows the snapshot's price and flags

    def __init__(self) -> None:
        self.view: MarketView | None = None
        self.selection: Selection | None = None
        self.quotes: tuple[OptionQuote, ...] = ()

    def decide(self, view: MarketView) -> SignalDecision:
        self.view = view
        return SignalDecision(Signal.BUY, 1.0, ("check: the option side is probed",))

    def choose(
        self,
        view: MarketView,
        decision: SignalDecision,
        selection: Selection,
        quotes: Sequence[OptionQuote],
    ) -> tuple[tuple[OrderIntent, ...], tuple[str, ...]]:
        self.selection, self.quotes = selection, tuple(quotes)
        return (), ()


async def drive(pipeline: Pipeline, service: DataService, served: list[ReplyValue]) -> SymbolResult:
    """Answer the pipeline's requests as the supervisor answers a worker's, to its end."""
    replies: tuple[Reply, ...] | None = None
    while True:
        try:
            requests = next(pipeline) if replies is None else pipeline.send(replies)
        except StopIteration as done:
            result: SymbolResult = done.value
            return result
        replies = tuple(await asyncio.gather(*(service.answer(r) for r in requests)))
        served += [r.value for r in replies if r.value is not None]


def _fill(
    report: CheckReport, result: SymbolResult, probe: ProbeStrategy, served: list[ReplyValue]
) -> None:
    if probe.view is not None:
        report.price, report.price_source = probe.view.price, probe.view.price_source
        check = probe.view.check
        report.warnings += [f"quote flag {f}" for f in (check.flags if check else ())]
    chain = next((v for v in served if isinstance(v, OptionChain)), None)
    if chain is not None:
        report.strikes, report.expirations = len(chain.strikes), len(chain.expirations)
    selection = probe.selection
    if selection is not None:
        report.expiry, report.atm, report.window = selection.expiry, selection.atm, selection.window
        report.option_quotes_usable = sum(1 for q in probe.quotes if q.bid > 0 and q.ask > 0)
    report.ok = selection is not None and bool(probe.quotes)
    stopped = result.skipped or (result.error or "").partition("\n")[0]
    if not report.ok and stopped:  # where the pipeline stopped, and why
        report.warnings.append(plain(stopped))


CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(?:Error|Lost|Unavailable|Gateway): ")


def plain(text: str) -> str:
    """``text`` without the exception class names the code adds ('SymbolDataError: ')."""
    return CLASS_NAME.sub("", text)


async def run_check(broker: Broker, settings: Settings, symbol: str, now_ts: float) -> CheckReport:
    report = CheckReport(symbol, broker.name)
    started = time.monotonic()
    try:
        await broker.connect()
        unknown = await broker.unknown_symbols([symbol])
        if symbol in unknown:  # a typo: no pipeline step would say more than this
            report.unknown = unknown[symbol].removeprefix(f"{symbol}: ")
            return report
        probe = ProbeStrategy()
        served: list[ReplyValue] = []
        calendar = exchange_calendar(settings.schedule)
        task = await symbol_task(0, symbol, now_ts, SessionBook(broker, calendar))
        pipeline = process_symbol(task, 0, settings, probe, request_ids())
        service = DataService(broker, settings.ibkr.request_timeout_s, calendar, lambda: now_ts)
        result = await drive(pipeline, service, served)
        _fill(report, result, probe, served)
    except BrokerError as exc:
        report.warnings.append(plain(str(exc)))
    finally:
        report.seconds = time.monotonic() - started
        try:
            await broker.disconnect()
        except BrokerError as exc:
            log.warning("disconnect after the check failed: %s", exc)
    return report


def cmd_check(args: argparse.Namespace) -> int:
    settings = load(args)
    if settings is None:
        return exitcodes.USAGE
    symbol = (args.symbol or settings.universe.symbols[0]).upper()
    market = market_for(args, settings)
    if market is None:
        return exitcodes.USAGE
    try:
        with broker_session(
            settings, market, args.scenario, start=args.start, sim_clock=args.sim_clock
        ) as (broker, clock, used):
            report = asyncio.run(run_check(broker, used, symbol, clock.now()))
    except MARKET_ERRORS as exc:
        return market_error(exc)
    print("\n".join(report.lines()))
    return exit_code(report)


def exit_code(report: CheckReport) -> int:
    if report.unknown:
        return exitcodes.USAGE  # a bad --symbol (or universe), not a connection problem
    return exitcodes.OK if report.ok else exitcodes.CANNOT_CONNECT
