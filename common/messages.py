"""Everything that crosses a process boundary: small frozen dataclasses of plain values.

No ib_insync object ever appears here. Bulk data (bars) travels as columns (``array('d')``),
one per field, because one object per bar costs more than half the throughput.

Each worker has two pipes of its own, and no other process writes to either (spawned in
supervisor/runtime/pool.py, framed in supervisor/runtime/channels.py, served by
workers/main.py):

    supervisor event loop                                          worker w (spawned)
    pool.send(w, m) -> FrameWriter ----- inbox[w] pipe ---------> Connection.recv
        ToWorker:   SymbolTask, Replies (one per Requests), Stop
    pool._drain <- FrameReader <-------- channel[w] pipe -------- Connection.send
        FromWorker: WorkerReady (first), Requests (one per pipeline step), SymbolResult;
                    and the worker's log records (logging.LogRecord), when it forwards them

What becomes due together (in one pass of the supervisor's loop, or from one inbox message
in the worker) goes as one Bundle. A Requests holds one pipeline step's requests (each a
QuoteRequest, BarsRequest, ChainRequest or OptionQuotesRequest); its Replies holds one reply
of the matching kind for each (QuoteReply, BarsReply, ChainReply, OptionQuotesReply), found
by request id.
"""

from __future__ import annotations

import logging
import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Generic, Protocol, TypeVar, overload

NAN = math.nan


class Signal(StrEnum):
    BUY = "BUY"  # directional long: buy calls
    SELL = "SELL"  # directional short: buy puts
    HOLD = "HOLD"


class Right(StrEnum):
    CALL = "C"
    PUT = "P"


# --- market data -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    """A raw underlying snapshot. Prices may be NaN, -1 or 0 (IBKR's "none"): see common.quotes."""

    symbol: str
    bid: float = NAN
    ask: float = NAN
    last: float = NAN
    close: float = NAN
    bid_size: float = NAN
    ask_size: float = NAN
    volume: float = NAN
    ts: float = NAN  # epoch seconds when the snapshot was taken


@dataclass(frozen=True)
class Bars:
    """1-minute bars as columns; ``ts`` is the bar's start in epoch seconds, oldest first."""

    symbol: str
    ts: array[float] = field(default_factory=lambda: array("d"))
    open: array[float] = field(default_factory=lambda: array("d"))
    high: array[float] = field(default_factory=lambda: array("d"))
    low: array[float] = field(default_factory=lambda: array("d"))
    close: array[float] = field(default_factory=lambda: array("d"))
    volume: array[float] = field(default_factory=lambda: array("d"))

    def __len__(self) -> int:
        return len(self.ts)


@dataclass(frozen=True)
class OptionChain:
    """Listed expiries (YYYYMMDD) and strikes of one underlying, as reqSecDefOptParams gives."""

    symbol: str
    expirations: tuple[str, ...]
    strikes: tuple[float, ...]
    multiplier: int = 100
    exchange: str = "SMART"
    trading_class: str = ""


@dataclass(frozen=True)
class OptionContract:
    symbol: str
    expiry: str  # YYYYMMDD
    strike: float
    right: Right
    multiplier: int = 100
    exchange: str = "SMART"
    trading_class: str = ""

    @property
    def key(self) -> str:
        return f"{self.symbol} {self.expiry} {self.strike:g}{self.right.value}"


@dataclass(frozen=True)
class OptionQuote:
    """An option snapshot with the model greeks IBKR sent (NaN where it sent none)."""

    contract: OptionContract
    bid: float = NAN
    ask: float = NAN
    last: float = NAN
    volume: float = NAN
    iv: float = NAN
    delta: float = NAN
    gamma: float = NAN
    vega: float = NAN
    theta: float = NAN
    und_price: float = NAN
    ts: float = NAN


# --- worker -> supervisor requests, supervisor -> worker replies -----------------------------
#
# Each request kind has its own reply kind, and says which (``answered_by``): a pipeline takes
# a reply's value with ``value_of(replies, request)``, typed by the request it asked, so no
# reader narrows a value by hand. Replies are matched to requests by id, not by position.

V = TypeVar("V")


@dataclass(frozen=True)
class ReplyOf(Generic[V]):
    """The answer to one request: a value, or an error crossing the boundary as text."""

    request_id: int
    value: V | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class QuoteReply(ReplyOf[Quote]):
    pass


@dataclass(frozen=True)
class BarsReply(ReplyOf[Bars]):
    pass


@dataclass(frozen=True)
class ChainReply(ReplyOf[OptionChain]):
    pass


@dataclass(frozen=True)
class OptionQuotesReply(ReplyOf[tuple[OptionQuote, ...]]):
    pass


Reply = QuoteReply | BarsReply | ChainReply | OptionQuotesReply
ReplyValue = Quote | Bars | OptionChain | tuple[OptionQuote, ...]


@dataclass(frozen=True)
class QuoteRequest:
    request_id: int
    worker_id: int
    symbol: str

    @property
    def answered_by(self) -> type[QuoteReply]:
        return QuoteReply


@dataclass(frozen=True)
class BarsRequest:
    request_id: int
    worker_id: int
    symbol: str
    count: int  # the newest completed bars wanted, over as many trading days as that takes
    bar_minutes: int = 1  # 1 for the scalp rule, 60 for the whale rule
    rth: bool = True  # regular-session bars only (no pre- or post-market)

    @property
    def answered_by(self) -> type[BarsReply]:
        return BarsReply


@dataclass(frozen=True)
class ChainRequest:
    request_id: int
    worker_id: int
    symbol: str

    @property
    def answered_by(self) -> type[ChainReply]:
        return ChainReply


@dataclass(frozen=True)
class OptionQuotesRequest:
    request_id: int
    worker_id: int
    symbol: str
    contracts: tuple[OptionContract, ...]

    @property
    def answered_by(self) -> type[OptionQuotesReply]:
        return OptionQuotesReply


Request = QuoteRequest | BarsRequest | ChainRequest | OptionQuotesRequest


class Asks(Protocol[V]):
    """A request whose reply carries a ``V`` (each request kind above is one)."""

    @property
    def request_id(self) -> int: ...

    @property
    def answered_by(self) -> type[ReplyOf[V]]: ...


class RemoteError(Exception):
    """The supervisor answered a request with an error."""


def value_of(replies: Sequence[Reply], request: Asks[V]) -> V:
    """The value answering ``request``; RemoteError when the supervisor sent an error.

    A reply missing, or of another kind than the request's, is a bug on the channel, not a
    symbol's bad data: it raises TypeError (the worker fails the symbol with the traceback)."""
    kind = request.answered_by
    reply = next((r for r in replies if r.request_id == request.request_id), None)
    if not isinstance(reply, kind):
        got = "none" if reply is None else type(reply).__name__
        raise TypeError(f"request {request.request_id} wants a {kind.__name__}, got {got}")
    if reply.error is not None:
        raise RemoteError(reply.error)
    if reply.value is None:
        raise TypeError(f"{kind.__name__} {request.request_id} has neither value nor error")
    return reply.value


def failed(request: Request, error: str) -> Reply:
    """The reply saying ``request`` could not be answered, of the kind it expects."""
    return request.answered_by(request.request_id, error=error)


@dataclass(frozen=True)
class Requests:
    """One pipeline step's requests as one message: the step goes on only once every one
    is answered, so sending them apart would only cost a pickle and a queue trip each."""

    worker_id: int
    requests: tuple[Request, ...]


@dataclass(frozen=True)
class Replies:
    """The answers to one ``Requests``, in its order, as one message."""

    replies: tuple[Reply, ...]


# --- tasks and results -----------------------------------------------------------------------


@dataclass(frozen=True)
class SymbolTask:
    """One symbol for one cycle, with everything exchange time decides already decided.

    The supervisor computes the exchange's trading day and the symbol's session once
    (common/calendar.py, in the exchange's zone); a worker never reads a time zone, so a
    display setting can never change which contracts are traded."""

    cycle_id: int
    symbol: str
    now_ts: float  # the cycle's clock (epoch seconds); workers never read the wall clock
    day: date  # the exchange's trading day of now_ts: expiries and intent ids count from it
    attempt: int = 1
    whale_last_ts: float | None = None  # last whale signal for this symbol, for debouncing
    # the symbol's regular session today (None: closed or unknown): VWAP is anchored to its
    # open, and a same-day expiry's time left is counted to its close
    session_open_ts: float | None = None
    session_close_ts: float | None = None

    @property
    def minutes_left(self) -> float | None:
        """Minutes from the cycle's clock to today's close; None when no session today."""
        close = self.session_close_ts
        return None if close is None else (close - self.now_ts) / 60.0

    @property
    def minutes_since_open(self) -> float | None:
        """Minutes from today's open to the cycle's clock; None when no session today."""
        opened = self.session_open_ts
        return None if opened is None else (self.now_ts - opened) / 60.0


@dataclass(frozen=True)
class OrderIntent:
    """A bracket entry the strategy wants; the supervisor's risk step decides the quantity."""

    intent_id: str  # stable for (day, symbol, contract, signal): duplicates are detectable
    cycle_id: int
    symbol: str
    contract: OptionContract
    signal: Signal
    entry_limit: float
    take_profit: float
    stop_loss: float
    premium: float  # the option's reference price (mid) the prices derive from
    confidence: float  # 0..1
    reasons: tuple[str, ...]
    bid: float = NAN
    ask: float = NAN
    quote_ts: float = NAN
    # the order's side: always BUY to open (calls for a BUY signal, puts for a SELL signal);
    # exits SELL what was bought
    action: str = "BUY"


@dataclass(frozen=True)
class SymbolResult:
    cycle_id: int
    symbol: str
    worker_id: int
    signal: Signal = Signal.HOLD
    confidence: float = 0.0
    intents: tuple[OrderIntent, ...] = ()
    reasons: tuple[str, ...] = ()  # why this signal, or why the symbol was skipped
    skipped: str | None = None  # a skip reason (no usable price, not enough bars, ...)
    error: str | None = None  # a failure, with the remote traceback text
    timings: tuple[tuple[str, float], ...] = ()  # (stage, seconds)
    whale_fired_ts: float | None = None
    attempt: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class WorkerReady:
    """A worker's first message: it imported everything and waits for tasks."""

    worker_id: int
    pid: int


@dataclass(frozen=True)
class Stop:
    """Asks a worker to finish: put on its inbox at shutdown."""


# --- what each way of the channel carries ----------------------------------------------------

ToWorker = SymbolTask | Replies | Stop
FromWorker = SymbolResult | Requests | WorkerReady

M = TypeVar("M")


@dataclass(frozen=True)
class Bundle(Generic[M]):
    """Messages for one process that became due together, sent as one: a pickle and a pipe
    trip each cost more than most of the messages carry."""

    messages: tuple[M, ...]


# what a worker's inbox pipe carries, and what its own channel to the supervisor carries
# (its log records too, when it forwards them)
ToWorkerFrame = ToWorker | Bundle[ToWorker]
FromWorkerFrame = FromWorker | Bundle[FromWorker] | logging.LogRecord


@overload
def unbundled(message: Bundle[M]) -> tuple[M, ...]: ...


@overload
def unbundled(message: M) -> tuple[M, ...]: ...


def unbundled(message: M | Bundle[M]) -> tuple[M, ...]:
    """The messages a received one stands for."""
    return message.messages if isinstance(message, Bundle) else (message,)


def bundled(messages: Sequence[M]) -> M | Bundle[M]:
    """What to send for ``messages`` (not empty): the one itself, or a Bundle of them."""
    return messages[0] if len(messages) == 1 else Bundle(tuple(messages))
