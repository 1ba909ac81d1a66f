"""One symbol, one cycle, as a generator: it yields the requests it needs, receives the replies.

    quote + bars (+ hourly bars) -> sanitise -> signal -> chain -> ATM/window -> option
    snapshots of the candidates -> strategy -> SymbolResult

Written as a generator so the same code runs inside a worker process (driven by queue
messages) and inside a test (driven by hand), and so one worker can have several symbols
waiting on the supervisor at once without threads.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace

from common.config import Settings
from common.messages import (
    Bars,
    BarsRequest,
    ChainRequest,
    OptionChain,
    OptionQuotesRequest,
    Quote,
    QuoteRequest,
    Reply,
    Request,
    Right,
    Signal,
    SymbolResult,
    SymbolTask,
)
from common.quotes import check_underlying
from workers.signals import SignalDecision
from workers.strategy import MarketView, Strategy
from workers.strikes import ChainError, select_contracts

Pipeline = Generator[tuple[Request, ...], tuple[Reply, ...], SymbolResult]


class RemoteError(Exception):
    """The supervisor answered a request with an error."""


@dataclass(frozen=True)
class DataFailure:
    """The supervisor could not get the symbol's market data."""

    reason: str


def _value(reply: Reply) -> object:
    if reply.error is not None:
        raise RemoteError(reply.error)
    return reply.value


class _Timer:
    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []
        self._t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.marks.append((stage, now - self._t))
        self._t = now


def process_symbol(
    task: SymbolTask,
    worker_id: int,
    settings: Settings,
    strategy: Strategy,
    ids: Iterator[int],
) -> Pipeline:
    timer = _Timer()
    result = SymbolResult(task.cycle_id, task.symbol, worker_id, attempt=task.attempt)
    view = yield from _market_view(task, worker_id, settings, strategy, ids, timer)
    if isinstance(view, DataFailure):
        # no data is a failure, not a HOLD: the cycle line must not count it as a decision
        return replace(result, error=view.reason, timings=tuple(timer.marks))
    if isinstance(view, str):
        return replace(result, skipped=view, timings=tuple(timer.marks))
    decision = strategy.decide(view)
    timer.lap("signal")
    result = replace(result, signal=decision.signal, confidence=decision.confidence,
                     whale_fired_ts=decision.whale_fired_ts)
    if decision.signal is Signal.HOLD:
        return replace(result, reasons=decision.reasons, timings=tuple(timer.marks))
    return (yield from _option_side(view, decision, result, settings, strategy, ids, timer))


def _market_view(task: SymbolTask, worker_id: int, settings: Settings, strategy: Strategy,
                 ids: Iterator[int], timer: _Timer
                 ) -> Generator[tuple[Request, ...], tuple[Reply, ...],
                                MarketView | DataFailure | str]:
    """Quote and bars (hourly too, for the whale rule), sanitised: the view, why the data
    is unusable (a skip), or why there is none (a failure)."""
    rth = not settings.strategy.extended_hours
    requests: list[Request] = [
        QuoteRequest(next(ids), worker_id, task.symbol),
        BarsRequest(next(ids), worker_id, task.symbol,
                    minute_bars_wanted(task, settings.strategy.scalp.bars_minutes), 1, rth),
    ]
    if getattr(strategy, "wants_hourly_bars", False):
        hours = settings.strategy.whale.lookback_bars + 2
        requests.append(BarsRequest(next(ids), worker_id, task.symbol, hours, 60, rth))
    replies = yield tuple(requests)
    timer.lap("market_data")
    try:
        quote, bars = _value(replies[0]), _value(replies[1])
        hourly = _value(replies[2]) if len(replies) > 2 else None
    except RemoteError as exc:
        return DataFailure(f"market data: {exc}")
    assert isinstance(quote, Quote) and isinstance(bars, Bars)
    check, ref = check_underlying(quote, settings.quotes)
    if ref is None:
        return f"no usable price ({', '.join(check.flags) or 'none'})"
    price, source = ref
    return MarketView(task, task.day, quote, check, price, source, bars,
                      hourly if isinstance(hourly, Bars) else None)


MAX_MINUTE_BARS = 24 * 60


def minute_bars_wanted(task: SymbolTask, lookback: int) -> int:
    """The signal's lookback, or every completed bar since today's open if there are more:
    the session VWAP starts at the open however old the session is (the supervisor's bar
    cache asks the gateway only for what is new)."""
    since_open = task.minutes_since_open
    if since_open is None or since_open <= lookback:
        return lookback
    return min(MAX_MINUTE_BARS, int(since_open))


def _option_side(view: MarketView, decision: SignalDecision, result: SymbolResult,
                 settings: Settings, strategy: Strategy, ids: Iterator[int], timer: _Timer
                 ) -> Pipeline:
    """Chain, ATM and window, the candidates' snapshots, then the strategy's intents."""
    symbol, worker_id = view.task.symbol, result.worker_id
    (chain_reply,) = yield (ChainRequest(next(ids), worker_id, symbol),)
    timer.lap("chain")
    right = Right.CALL if decision.signal is Signal.BUY else Right.PUT
    try:
        chain = _value(chain_reply)
        assert isinstance(chain, OptionChain)
        selection = select_contracts(chain, view.price, right, view.today, settings.options,
                                     minutes_left_today=view.task.minutes_left)
    except (RemoteError, ChainError) as exc:
        return replace(result, reasons=decision.reasons, skipped=f"chain: {exc}",
                       timings=tuple(timer.marks))
    timer.lap("strikes")
    (quotes_reply,) = yield (
        OptionQuotesRequest(next(ids), worker_id, symbol, selection.candidates),
    )
    timer.lap("option_quotes")
    try:
        quotes = _value(quotes_reply)
    except RemoteError as exc:
        return replace(result, reasons=decision.reasons, skipped=f"option quotes: {exc}",
                       timings=tuple(timer.marks))
    assert isinstance(quotes, tuple)
    intents, rejected = strategy.choose(view, decision, selection, quotes)
    timer.lap("intents")
    reasons = decision.reasons + selection.reasons + rejected
    skipped = None if intents else "no liquid candidate"
    return replace(result, intents=intents, reasons=reasons, skipped=skipped,
                   timings=tuple(timer.marks))


def request_ids() -> Iterator[int]:
    """Request ids need only be unique within one worker: replies go to its own inbox."""
    return itertools.count(1)
