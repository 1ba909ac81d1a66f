"""One symbol, one cycle, as a generator: it yields the requests it needs, receives the replies.

    bars (+ hourly bars) -> signal -> HOLD: done (no snapshot: a HOLD reads none)
                                   -> BUY/SELL: underlying snapshot + chain -> sanitise ->
                                      ATM/window -> option snapshots of the candidates ->
                                      strategy -> SymbolResult

The signal is computed from bars alone, so the underlying's snapshot (two messages at the
gateway: the request, and its cancel when lines are short) is spent only on a decision that
reads it: the ATM strike and the entry's reference price. Until then the view's price is the
last completed bar's close (``price_source`` "bar close"). A strategy whose ``decide`` reads
the quote says so with ``decides_on_quote = True``: it then gets the snapshot with the bars,
as before. With ``quotes.underlying_price: last_bar`` no snapshot is asked at all: the ATM
comes from the last bar's close, and fallback greeks take the option quotes' own underlying
price where they carry one.

Written as a generator so the same code runs inside a worker process (driven by queue
messages) and inside a test (driven by hand), and so one worker can have several symbols
waiting on the supervisor at once without threads.
"""

from __future__ import annotations

import itertools
import math
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
    RemoteError,
    Reply,
    Request,
    Right,
    Signal,
    SymbolResult,
    SymbolTask,
    value_of,
)
from common.quotes import check_underlying, usable
from workers.signals import SignalDecision
from workers.strategy import MarketView, Strategy
from workers.strikes import ChainError, Selection, select_contracts

Pipeline = Generator[tuple[Request, ...], tuple[Reply, ...], SymbolResult]

BAR_CLOSE = "bar close"  # a view's price_source before (or without) the snapshot


@dataclass(frozen=True)
class DataFailure:
    """The supervisor could not get the symbol's market data."""

    reason: str


# a step that ends with the view, why the data is unusable (a skip), or why there is none
Step = Generator[tuple[Request, ...], tuple[Reply, ...], MarketView | DataFailure | str]


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
    result = replace(
        result,
        signal=decision.signal,
        confidence=decision.confidence,
        whale_fired_ts=decision.whale_fired_ts,
    )
    if decision.signal is Signal.HOLD:
        return replace(result, reasons=decision.reasons, timings=tuple(timer.marks))
    return (yield from _option_side(view, decision, result, settings, strategy, ids, timer))


def decides_on_quote(strategy: Strategy) -> bool:
    """Whether the strategy's ``decide`` reads the underlying's snapshot (default: no)."""
    return bool(getattr(strategy, "decides_on_quote", False))


def _market_view(
    task: SymbolTask,
    worker_id: int,
    settings: Settings,
    strategy: Strategy,
    ids: Iterator[int],
    timer: _Timer,
) -> Step:
    """Bars (hourly too, for the whale rule) and, only for a strategy that decides on it,
    the quote: the view, why the data is unusable (a skip), or why there is none (a
    failure)."""
    rth = not settings.strategy.extended_hours
    minute_bars = BarsRequest(
        next(ids),
        worker_id,
        task.symbol,
        minute_bars_wanted(task, settings.strategy.scalp.bars_minutes),
        1,
        rth,
    )
    requests: list[Request] = [minute_bars]
    hourly_bars = None
    if getattr(strategy, "wants_hourly_bars", False):
        hours = settings.strategy.whale.lookback_bars + 2
        hourly_bars = BarsRequest(next(ids), worker_id, task.symbol, hours, 60, rth)
        requests.append(hourly_bars)
    quote_request = None
    if decides_on_quote(strategy):
        quote_request = QuoteRequest(next(ids), worker_id, task.symbol)
        requests.append(quote_request)
    replies = yield tuple(requests)
    timer.lap("market_data")
    try:
        bars = value_of(replies, minute_bars)
        hourly = None if hourly_bars is None else value_of(replies, hourly_bars)
        quote = None if quote_request is None else value_of(replies, quote_request)
    except RemoteError as exc:
        return DataFailure(f"market data: {exc}")
    view = MarketView(task, task.day, None, None, last_close(bars), BAR_CLOSE, bars, hourly)
    return view if quote is None else priced(view, quote, settings)


def last_close(bars: Bars) -> float:
    """The newest usable close (NaN with none): a HOLD's price, read from no snapshot."""
    for close in reversed(bars.close):
        if usable(close):
            return float(close)
    return math.nan


def priced(view: MarketView, quote: Quote, settings: Settings) -> MarketView | str:
    """The view with the underlying's snapshot and its reference price, or why it has none."""
    check, ref = check_underlying(quote, settings.quotes)
    if ref is None:
        return f"no usable price ({', '.join(check.flags) or 'none'})"
    price, source = ref
    return replace(view, quote=quote, check=check, price=price, price_source=source)


MAX_MINUTE_BARS = 24 * 60


def minute_bars_wanted(task: SymbolTask, lookback: int) -> int:
    """The signal's lookback, or every completed bar since today's open if there are more:
    the session VWAP starts at the open however old the session is (the supervisor's bar
    cache asks the gateway only for what is new)."""
    since_open = task.minutes_since_open
    if since_open is None or since_open <= lookback:
        return lookback
    return min(MAX_MINUTE_BARS, int(since_open))


def _chain_and_price(
    view: MarketView, worker_id: int, settings: Settings, ids: Iterator[int], timer: _Timer
) -> Generator[
    tuple[Request, ...],
    tuple[Reply, ...],
    tuple[MarketView | DataFailure | str, OptionChain | RemoteError],
]:
    """The chain, and the underlying's snapshot unless the view already has it: asked in one
    step (the option side needs both). The priced view (or why there is no price, or no
    snapshot), and the chain (or the RemoteError that stands for it)."""
    symbol = view.task.symbol
    from_bar = settings.quotes.underlying_price == "last_bar"
    chain_request = ChainRequest(next(ids), worker_id, symbol)
    if view.quote is not None or from_bar:
        replies = yield (chain_request,)
        quote_request = None
    else:
        quote_request = QuoteRequest(next(ids), worker_id, symbol)
        replies = yield (chain_request, quote_request)
    timer.lap("chain")
    chain: OptionChain | RemoteError
    try:
        chain = value_of(replies, chain_request)
    except RemoteError as exc:
        chain = exc
    if view.quote is not None:
        return view, chain
    if quote_request is None:  # quotes.underlying_price: last_bar: no snapshot at all
        return (view if usable(view.price) else "no usable price (no bar close)"), chain
    try:
        quote = value_of(replies, quote_request)
    except RemoteError as exc:  # as before the reorder: no snapshot is a failure
        return DataFailure(f"market data: {exc}"), chain
    return priced(view, quote, settings), chain


def _option_side(
    view: MarketView,
    decision: SignalDecision,
    result: SymbolResult,
    settings: Settings,
    strategy: Strategy,
    ids: Iterator[int],
    timer: _Timer,
) -> Pipeline:
    """Chain and the snapshot, ATM and window, the candidates' snapshots, then the
    strategy's intents."""
    worker_id = result.worker_id
    with_price, chain = yield from _chain_and_price(view, worker_id, settings, ids, timer)
    result = replace(result, reasons=decision.reasons)
    if not isinstance(with_price, MarketView):
        return _unpriced(result, with_price, timer)
    view = with_price
    selection = _selection(view, decision, chain, settings)
    if isinstance(selection, str):
        return replace(result, skipped=f"chain: {selection}", timings=tuple(timer.marks))
    timer.lap("strikes")
    request = OptionQuotesRequest(next(ids), worker_id, view.task.symbol, selection.candidates)
    replies = yield (request,)
    timer.lap("option_quotes")
    try:
        quotes = value_of(replies, request)
    except RemoteError as exc:
        return replace(result, skipped=f"option quotes: {exc}", timings=tuple(timer.marks))
    intents, rejected = strategy.choose(view, decision, selection, quotes)
    timer.lap("intents")
    return replace(
        result,
        intents=intents,
        reasons=decision.reasons + selection.reasons + rejected,
        skipped=None if intents else "no liquid candidate",
        timings=tuple(timer.marks),
    )


def _unpriced(result: SymbolResult, why: DataFailure | str, timer: _Timer) -> SymbolResult:
    """No price is no decision (as when the snapshot came first): a whale break is not spent
    on a symbol that could not be traded, it may fire again next cycle."""
    result = replace(result, whale_fired_ts=None, timings=tuple(timer.marks))
    if isinstance(why, DataFailure):
        return replace(result, error=why.reason)
    return replace(result, skipped=why)


def _selection(
    view: MarketView,
    decision: SignalDecision,
    chain: OptionChain | RemoteError,
    settings: Settings,
) -> Selection | str:
    """The expiry, the ATM and the candidates on the signal's side, or why there are none."""
    if isinstance(chain, RemoteError):
        return str(chain)
    right = Right.CALL if decision.signal is Signal.BUY else Right.PUT
    try:
        return select_contracts(
            chain,
            view.price,
            right,
            view.today,
            settings.options,
            minutes_left_today=view.task.minutes_left,
        )
    except ChainError as exc:
        return str(exc)


def request_ids() -> Iterator[int]:
    """Request ids need only be unique within one worker: replies go to its own inbox."""
    return itertools.count(1)
