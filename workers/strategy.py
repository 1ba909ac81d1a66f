"""The Strategy interface, the seed's scalp+whale strategy, and loading one by dotted path.

A strategy sees plain dataclasses only and answers two questions: which way (a signal), and
which of the candidate option snapshots become order intents. Quantity is never its business:
the supervisor's risk step sizes every intent.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from common.config import Settings
from common.messages import Bars, OptionQuote, OrderIntent, Quote, SymbolTask
from common.quotes import QuoteCheck
from workers.intents import best_intent, fill_greeks
from workers.signals import SignalDecision, combined_signal
from workers.strikes import Selection

BUILTIN = "scalp_whale"


@dataclass(frozen=True)
class MarketView:
    """What a strategy knows of one symbol in one cycle.

    ``decide`` sees the bars only: ``quote`` and ``check`` are None and ``price`` is the last
    completed bar's close (``price_source`` "bar close"), unless the strategy sets
    ``decides_on_quote = True`` (then the snapshot comes with the bars). ``choose`` always
    sees the underlying's snapshot and its reference price (``price_source`` mid, last or
    close, as ``quotes.price_sources`` orders them)."""

    task: SymbolTask
    today: date
    quote: Quote | None  # the underlying's snapshot: asked only when a decision reads it
    check: QuoteCheck | None
    price: float
    price_source: str
    bars: Bars  # 1-minute
    hourly: Bars | None  # 60-minute, when the whale rule wants them


class Strategy(Protocol):
    wants_hourly_bars: bool
    # optional (default False): True makes ``decide`` see the underlying's snapshot, at the
    # cost of one snapshot (and often its cancel) for every symbol, HOLDs included

    def decide(self, view: MarketView) -> SignalDecision: ...

    def choose(
        self,
        view: MarketView,
        decision: SignalDecision,
        selection: Selection,
        quotes: Sequence[OptionQuote],
    ) -> tuple[tuple[OrderIntent, ...], tuple[str, ...]]:
        """Intents for the candidates, and the reasons the others were dropped."""
        ...


class ScalpWhaleStrategy:
    """The original bot's rules: EMA/RSI/VWAP scalp on 1-minute bars, whale breaks on hourly."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.wants_hourly_bars = settings.strategy.whale.enabled

    def decide(self, view: MarketView) -> SignalDecision:
        hourly = view.hourly if view.hourly is not None else Bars(view.task.symbol)
        return combined_signal(
            view.bars,
            hourly,
            self.settings.strategy,
            view.task.now_ts,
            view.task.whale_last_ts,
            view.task.session_open_ts,
        )

    def choose(
        self,
        view: MarketView,
        decision: SignalDecision,
        selection: Selection,
        quotes: Sequence[OptionQuote],
    ) -> tuple[tuple[OrderIntent, ...], tuple[str, ...]]:
        intent, rejected = best_intent(
            [fill_greeks(q, view.today, spot=view.price) for q in quotes],
            selection.target,
            cycle_id=view.task.cycle_id,
            day=view.today.isoformat(),
            signal=decision.signal,
            confidence=decision.confidence,
            reasons=decision.reasons + selection.reasons,
            opts=self.settings.options,
        )
        return ((intent,) if intent is not None else ()), rejected


class StrategyLoadError(ValueError):
    """The configured strategy cannot be imported or built: a user mistake, said plainly."""


def load_strategy(settings: Settings) -> Strategy:
    """The built-in by name, or ``package.module:Class`` / ``package.module.Class``."""
    name = settings.strategy.name
    if name == BUILTIN:
        return ScalpWhaleStrategy(settings)
    module_name, _, attr = name.replace(":", ".").rpartition(".")
    if not module_name:
        raise StrategyLoadError(f"strategy.name: {name!r}: not {BUILTIN!r} and not a dotted path")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: a SyntaxError or its own raise is theirs
        raise StrategyLoadError(
            f"strategy.name: {name!r}: cannot import {module_name}: {type(exc).__name__}: {exc}"
        ) from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise StrategyLoadError(f"strategy.name: {name!r}: {module_name} has no {attr!r}")
    try:
        strategy = factory(settings)
    except Exception as exc:
        raise StrategyLoadError(
            f"strategy.name: {name!r}: {attr}(settings) raised {type(exc).__name__}: {exc}"
        ) from None
    missing = [m for m in ("decide", "choose") if not callable(getattr(strategy, m, None))]
    if missing:
        raise StrategyLoadError(f"strategy.name: {name!r}: lacks {', '.join(missing)}()")
    return strategy
