"""Everything that crosses a process boundary: small frozen dataclasses of plain values.

No ib_insync object ever appears here. Bulk data (bars) travels as columns (``array('d')``),
one per field, because one object per bar costs more than half the throughput.

    supervisor --inbox[w]--> worker w      SymbolTask, Reply
    worker w   --outbox----> supervisor    Request (QuoteRequest, BarsRequest, ChainRequest,
                                           OptionQuotesRequest), SymbolResult
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

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
    ts: array = field(default_factory=lambda: array("d"))
    open: array = field(default_factory=lambda: array("d"))
    high: array = field(default_factory=lambda: array("d"))
    low: array = field(default_factory=lambda: array("d"))
    close: array = field(default_factory=lambda: array("d"))
    volume: array = field(default_factory=lambda: array("d"))

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


@dataclass(frozen=True)
class QuoteRequest:
    request_id: int
    worker_id: int
    symbol: str


@dataclass(frozen=True)
class BarsRequest:
    request_id: int
    worker_id: int
    symbol: str
    count: int  # the newest completed bars wanted, over as many trading days as that takes
    bar_minutes: int = 1  # 1 for the scalp rule, 60 for the whale rule
    rth: bool = True  # regular-session bars only (no pre- or post-market)


@dataclass(frozen=True)
class ChainRequest:
    request_id: int
    worker_id: int
    symbol: str


@dataclass(frozen=True)
class OptionQuotesRequest:
    request_id: int
    worker_id: int
    symbol: str
    contracts: tuple[OptionContract, ...]


Request = QuoteRequest | BarsRequest | ChainRequest | OptionQuotesRequest


@dataclass(frozen=True)
class Requests:
    """One pipeline step's requests as one message: the step goes on only once every one
    is answered, so sending them apart would only cost a pickle and a queue trip each."""

    worker_id: int
    requests: tuple[Request, ...]


ReplyValue = Quote | Bars | OptionChain | tuple[OptionQuote, ...]


@dataclass(frozen=True)
class Reply:
    """The answer to one request: a value, or an error crossing the boundary as text."""

    request_id: int
    value: ReplyValue | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


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
class Bundle:
    """Messages for one process that became due together, sent as one: a pickle and a pipe
    trip each cost more than most of the messages carry."""

    messages: tuple[Any, ...]


def unbundled(message: Any) -> tuple[Any, ...]:
    """The messages a received one stands for."""
    return message.messages if isinstance(message, Bundle) else (message,)


def bundled(messages: list[Any]) -> Any:
    """What to send for ``messages`` (not empty): the one itself, or a Bundle of them."""
    return messages[0] if len(messages) == 1 else Bundle(tuple(messages))


@dataclass(frozen=True)
class WorkerReady:
    """A worker's first message: it imported everything and waits for tasks."""

    worker_id: int
    pid: int


@dataclass(frozen=True)
class Stop:
    """Asks a worker to finish: put on its inbox at shutdown."""
