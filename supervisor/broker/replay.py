"""ReplayBroker: a recorded run's market, answered again at the replay clock's now.

Market data comes from the recording (supervisor/recording/reader.py reads it into a
``Recorded``) by the rule of supervisor/broker/replay_index.py: within a cycle, the answers
the original cycle got, in its order. What the recording cannot answer:

- an option quote never recorded (another strike, another expiry; or none for
  ``OPTION_MAX_AGE_S``): modelled (supervisor/broker/modelled.py: Black–Scholes at the IV
  interpolated from the recorded quotes of the same expiry, else of the symbol's nearest
  recorded expiry) and noted in ``modelled`` (the replay command journals each as an alert
  of kind ``modelled`` and counts them);
- the account, when the recording holds none: the settings' stub equity, noted as modelled;
- a quote, bars or a chain never recorded for the symbol: a SymbolDataError (the symbol is
  skipped, as a venue's refusal would skip it); hours or a close never recorded: None (the
  exchange calendar decides; a settlement waits), as a venue that says nothing.

Orders are never sent anywhere: a replay runs the paper book (dry run), as the offline
driver builds it; the order methods refuse as every paper market's (broker/paper_venue.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, TypeVar

from common.calendar import TradingHours
from common.messages import Bars, OptionChain, OptionContract, OptionQuote, Quote
from common.quotes import usable
from supervisor.broker.base import (
    AccountSnapshot,
    BrokerError,
    ConnectionLost,
    GatewayUnavailable,
    SymbolDataError,
)
from supervisor.broker.modelled import (
    SmilePoint,
    half_spread,
    interpolate_iv,
    model_quote,
    quote_iv,
)
from supervisor.broker.paper_venue import PaperVenue
from supervisor.broker.replay_index import Answer, AnswerIndex, Timeline

V = TypeVar("V")
RAISED: dict[str, type[BrokerError]] = {
    k.__name__: k for k in (SymbolDataError, ConnectionLost, GatewayUnavailable, BrokerError)
}
OPTION_MAX_AGE_S = 300.0  # an older recorded option quote is not "now": modelled instead
REPLAY_ACCOUNT = "REPLAY"  # the account id when the recording names none
OPTION_QUOTE, ACCOUNT = "option_quote", "account"  # what a ModelledAnswer stands for

OptionKey = tuple[str, str, float, str]  # symbol, expiry, strike, right
BarsKey = tuple[str, int, bool]  # symbol, bar minutes, regular hours only
CloseKey = tuple[str, str]  # symbol, day (YYYY-MM-DD)


def recorded_error(text: str) -> Exception:
    """The error a recorded ``error`` cell names (format.error_text: ``Class: text``), raised
    again as that kind: a timeout as a timeout (the caller cancelled it on its deadline), a
    lost connection as one; anything else as the symbol's data error, with the whole text."""
    name, _, message = text.partition(": ")
    if name in ("CancelledError", "TimeoutError"):
        return TimeoutError(message)
    kind = RAISED.get(name)
    return kind(message) if kind is not None else SymbolDataError(text)


def option_key(contract: OptionContract) -> OptionKey:
    return (contract.symbol, contract.expiry, float(contract.strike), contract.right.value)


@dataclass(frozen=True)
class Recorded:
    """A recording's answers by request, as the reader gives them. An option quote's value
    None without an error: the venue's answer left that contract out."""

    cycles: tuple[float, ...]  # each cycle's start on the session clock
    quotes: Sequence[tuple[str, Answer[Quote]]] = ()
    bars: Sequence[tuple[BarsKey, Answer[Bars]]] = ()
    chains: Sequence[tuple[str, Answer[OptionChain]]] = ()
    option_quotes: Sequence[tuple[OptionKey, Answer[OptionQuote]]] = ()
    hours: Sequence[tuple[str, Answer[TradingHours]]] = ()
    closes: Sequence[tuple[CloseKey, Answer[float]]] = ()
    accounts: Sequence[Answer[AccountSnapshot]] = ()
    account: str = REPLAY_ACCOUNT


@dataclass(frozen=True)
class ModelledAnswer:
    """One answer the recording could not give and the model did."""

    ts: float
    kind: str  # option_quote | account
    key: str  # the contract's key ("SPY 20261201 680C"), or the account
    how: str  # what it was modelled from


@dataclass
class _Books:
    """The per-kind indexes over one timeline."""

    timeline: Timeline
    quotes: AnswerIndex[str, Quote]
    bars: AnswerIndex[BarsKey, Bars]
    chains: AnswerIndex[str, OptionChain]
    options: AnswerIndex[OptionKey, OptionQuote]
    hours: AnswerIndex[str, TradingHours]
    closes: AnswerIndex[CloseKey, float]
    accounts: AnswerIndex[str, AccountSnapshot]
    expiries: dict[tuple[str, str], list[OptionKey]] = field(default_factory=dict)
    # (window, symbol) -> the time of the symbol's last market answer in that cycle's window
    last_answer: dict[tuple[int, str], float] = field(default_factory=dict)


def _books(recorded: Recorded) -> _Books:
    timeline = Timeline(recorded.cycles)
    books = _Books(
        timeline,
        AnswerIndex(timeline, recorded.quotes),
        AnswerIndex(timeline, recorded.bars),
        AnswerIndex(timeline, recorded.chains),
        AnswerIndex(timeline, recorded.option_quotes),
        AnswerIndex(timeline, recorded.hours),
        AnswerIndex(timeline, recorded.closes),
        AnswerIndex(timeline, (("", a) for a in recorded.accounts)),
    )
    for key in books.options.keys():  # noqa: SIM118 (an index, not a dict)
        books.expiries.setdefault(key[:2], []).append(key)
    kinds: tuple[Sequence[tuple[Any, Answer[Any]]], ...] = (
        recorded.quotes,
        recorded.bars,
        recorded.chains,
        recorded.option_quotes,
    )
    for answers in kinds:
        for key, answer in answers:
            at = (timeline.index(answer.ts), key if isinstance(key, str) else key[0])
            books.last_answer[at] = max(books.last_answer.get(at, answer.ts), answer.ts)
    return books


class ReplayBroker(PaperVenue):
    """A recording's answers at ``now``; ``equity``: the account's net liquidation when the
    recording holds no account answer. Orders: none sent (the paper book fills them)."""

    name = "replay"
    no_orders = "a replay places no orders (its paper book fills them from the recorded quotes)"

    def __init__(
        self,
        recorded: Recorded,
        now: Callable[[], float],
        equity: float,
        advance: Callable[[float], None] | None = None,
    ) -> None:
        self.recorded = recorded
        self.now = now
        self.advance = advance  # moves the replay's clock on (an offline run's frozen one)
        self.equity = equity
        self._books = _books(recorded)
        self.requests = 0
        self.modelled: list[ModelledAnswer] = []

    # connect, disconnect, is_connected and the order half: PaperVenue's

    def managed_accounts(self) -> list[str]:
        return [self.recorded.account]

    def arrival_order(self, symbols: Sequence[str], now: float) -> list[str]:
        """``symbols`` in the order the recorded run acted on them in ``now``'s cycle: the live
        runner acts on each result as it arrives (the per-cycle caps count in that order), and
        a symbol's result arrived right after its last answer. Those the cycle never asked for
        follow, in their own order."""
        window = self._books.timeline.index(now)
        last = self._books.last_answer
        asked = sorted((s for s in symbols if (window, s) in last), key=lambda s: last[window, s])
        return asked + [s for s in symbols if (window, s) not in last]

    # --- market data -------------------------------------------------------------------------

    def _follow(self, answer: Answer[V] | None) -> Answer[V] | None:
        """The clock moved on to when the original got ``answer``, if that is later: what
        the replay does next (a decision, an entry) is stamped when the original's was, near
        enough (an entry's timeout counts from it). Never backwards, never past the cycle:
        a cycle's answers were all given before the next cycle started."""
        if answer is not None and self.advance is not None and answer.ts > self.now():
            self.advance(answer.ts)
        return answer

    def _value(self, answer: Answer[V] | None, what: str) -> V:
        """A recorded answer's value; its error raised again as the kind it was."""
        self.requests += 1
        self._follow(answer)
        if answer is None:
            raise SymbolDataError(f"the recording has no {what} at {self.now():.0f}")
        if answer.error is not None:
            raise recorded_error(answer.error)
        assert answer.value is not None  # the reader gives an answer a value or an error
        return answer.value

    async def quote(self, symbol: str) -> Quote:
        answer = self._books.quotes.at(symbol, self.now())
        return self._value(answer, f"quote of {symbol}")

    async def bars(
        self, symbol: str, minutes: int, bar_minutes: int = 1, rth: bool = False
    ) -> Bars:
        """The bars the original got (however many minutes it asked: the caller keeps the
        newest it wants; a replay asking longer history than recorded gets what there is)."""
        answer = self._books.bars.at((symbol, bar_minutes, rth), self.now())
        return self._value(answer, f"{bar_minutes}-minute bars of {symbol}")

    async def chain(self, symbol: str) -> OptionChain:
        answer = self._books.chains.at(symbol, self.now())
        return self._value(answer, f"option chain of {symbol}")

    async def option_quotes(self, contracts: Sequence[OptionContract]) -> tuple[OptionQuote, ...]:
        self.requests += 1
        now = self.now()
        quotes = []
        for contract in contracts:
            answer = self._follow(
                self._books.options.at(option_key(contract), now, OPTION_MAX_AGE_S)
            )
            if answer is None:
                quotes.append(self._model(contract, now))
            elif answer.error is not None:
                raise recorded_error(answer.error)  # the whole call failed, as recorded
            elif answer.value is not None:  # else the venue's answer left it out
                quotes.append(replace(answer.value, contract=contract))
        return tuple(quotes)

    def _model(self, contract: OptionContract, now: float) -> OptionQuote:
        spot = self._spot(contract.symbol, now)
        if spot is None:
            raise SymbolDataError(f"{contract.key}: no recorded price of {contract.symbol}")
        for expiry, how in self._expiries_to_model_from(contract):
            smile = self._smile(contract.symbol, expiry, now, spot)
            iv = interpolate_iv(
                [SmilePoint(q.contract.strike, v) for q, v in smile], contract.strike
            )
            if iv is not None:
                spread = half_spread([q for q, _ in smile])
                quote = model_quote(contract, spot, iv, now, spread)
                self.modelled.append(
                    ModelledAnswer(now, OPTION_QUOTE, contract.key, f"{how}, IV {iv:.4f}")
                )
                return quote
        raise SymbolDataError(f"{contract.key}: no recorded option quote to model it from")

    def _expiries_to_model_from(self, contract: OptionContract) -> list[tuple[str, str]]:
        """The contract's own expiry first, then the symbol's other recorded expiries,
        nearest first."""
        own = contract.expiry
        others = sorted(
            {e for s, e in self._books.expiries if s == contract.symbol and e != own},
            key=lambda e: (abs(int(e) - int(own)) if e.isdigit() and own.isdigit() else 0, e),
        )
        return [(own, f"Black-Scholes at the IV of {own}'s recorded quotes")] + [
            (e, f"Black-Scholes at the IV of {e}'s recorded quotes (none of {own})") for e in others
        ]

    def _smile(
        self, symbol: str, expiry: str, now: float, spot: float
    ) -> list[tuple[OptionQuote, float]]:
        """The latest recorded quote of each contract of (symbol, expiry), with its IV."""
        smile = []
        for key in self._books.expiries.get((symbol, expiry), ()):
            answer = self._books.options.latest(key, now, OPTION_MAX_AGE_S)
            if answer is None or answer.value is None:
                continue
            iv = quote_iv(answer.value, now, spot)
            if iv is not None:
                smile.append((answer.value, iv))
        return smile

    def _spot(self, symbol: str, now: float) -> float | None:
        """The underlying's recorded price: its quote's mid, else last; else the und_price
        the recorded option quotes carry."""
        answer = self._books.quotes.latest(symbol, now)
        if answer is not None and answer.value is not None:
            q = answer.value
            if usable(q.bid) and usable(q.ask) and q.ask >= q.bid:
                return (q.bid + q.ask) / 2
            if usable(q.last):
                return q.last
        for (s, _), keys in self._books.expiries.items():
            for key in keys if s == symbol else ():
                found = self._books.options.latest(key, now, OPTION_MAX_AGE_S)
                if found is not None and found.value is not None and usable(found.value.und_price):
                    return found.value.und_price
        return None

    # --- account and hours -------------------------------------------------------------------

    async def account(self) -> AccountSnapshot:
        answer = self._follow(self._books.accounts.at("", self.now()))
        if answer is not None and answer.value is not None:
            return answer.value
        if not any(m.kind == ACCOUNT for m in self.modelled):
            how = f"none recorded: net liquidation {self.equity:g} (stub.equity)"
            self.modelled.append(ModelledAnswer(self.now(), ACCOUNT, self.recorded.account, how))
        return AccountSnapshot(self.recorded.account, self.equity, self.equity)

    async def regular_hours(self, symbol: str) -> TradingHours | None:
        answer = self._follow(self._books.hours.at(symbol, self.now()))
        return None if answer is None else answer.value

    async def closing_price(self, symbol: str, day: date) -> float | None:
        answer = self._follow(self._books.closes.at((symbol, day.isoformat()), self.now()))
        if answer is None or answer.value is None or math.isnan(answer.value):
            return None
        return answer.value

    async def unknown_symbols(self, symbols: Sequence[str]) -> dict[str, str]:
        return {}  # a symbol never recorded fails request by request

    def stats(self) -> dict[str, float]:
        return {
            "requests_total": float(self.requests),
            "live_tickers": 0.0,
            "modelled": float(len(self.modelled)),
        }
