"""Strategies for tests, loaded by dotted path inside real worker processes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from common.config import Settings
from common.messages import OptionQuote, OrderIntent, Signal
from workers.signals import SignalDecision
from workers.strategy import MarketView
from workers.strikes import Selection

KILL_MARKER_ENV = "TEST_KILL_MARKER"  # a path: the first worker to see it absent dies
KILL_SYMBOL_ENV = "TEST_KILL_SYMBOL"


class _Holds:
    wants_hourly_bars = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def choose(
        self,
        view: MarketView,
        decision: SignalDecision,
        selection: Selection,
        quotes: Sequence[OptionQuote],
    ) -> tuple[tuple[OrderIntent, ...], tuple[str, ...]]:
        return (), ()


class ModuleProbe(_Holds):
    """Reports which broker libraries the worker process has imported."""

    def decide(self, view: MarketView) -> SignalDecision:
        loaded = sorted(m for m in ("ib_insync", "ib_async", "eventkit") if m in sys.modules)
        return SignalDecision(Signal.HOLD, 0.0, (f"loaded={','.join(loaded) or 'none'}",))


class DieOnce(_Holds):
    """Kills its worker process the first time it sees TEST_KILL_SYMBOL, then behaves."""

    def decide(self, view: MarketView) -> SignalDecision:
        marker = Path(os.environ[KILL_MARKER_ENV])
        if view.task.symbol == os.environ.get(KILL_SYMBOL_ENV) and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(17)
        return SignalDecision(Signal.HOLD, 0.0, (f"attempt {view.task.attempt}",))


HANG_SYMBOL_ENV = "TEST_HANG_SYMBOL"


class HangOn(_Holds):
    """Never returns on TEST_HANG_SYMBOL (as a strategy's endless loop or a stuck C call);
    every other symbol is a HOLD. Sleeps rather than spins, to spare a shared CI machine."""

    def decide(self, view: MarketView) -> SignalDecision:
        while view.task.symbol == os.environ.get(HANG_SYMBOL_ENV):
            time.sleep(0.5)
        return SignalDecision(Signal.HOLD, 0.0, ("fine",))


class AlwaysDie(_Holds):
    """Kills its worker on TEST_KILL_SYMBOL every time: the symbol must end up failed."""

    def decide(self, view: MarketView) -> SignalDecision:
        if view.task.symbol == os.environ.get(KILL_SYMBOL_ENV):
            os._exit(18)
        return SignalDecision(Signal.HOLD, 0.0, ("fine",))


class Raises(_Holds):
    """A strategy bug: must cost one symbol an error result, not the worker."""

    def decide(self, view: MarketView) -> SignalDecision:
        raise ZeroDivisionError("strategy bug for the test")


class Chatty(_Holds):
    """Writes a lot to its channel before every decision: log lines bigger than a pipe's
    buffer, so a worker killed while it talks dies in the middle of a message."""

    def decide(self, view: MarketView) -> SignalDecision:
        import logging

        chatter = logging.getLogger("tests.chatty")
        for i in range(8):
            chatter.warning("chatter %d %s", i, "x" * 200_000)
        return SignalDecision(Signal.HOLD, 0.0, ("said a lot",))


class ReadsTheQuote(_Holds):
    """Decides on the underlying's snapshot: it asks for it with the bars."""

    decides_on_quote = True

    def decide(self, view: MarketView) -> SignalDecision:
        assert view.quote is not None and view.check is not None
        return SignalDecision(
            Signal.HOLD,
            0.0,
            (f"quote mid {view.check.mid}", f"price {view.price} {view.price_source}"),
        )


def refuses_to_build(settings: Settings) -> _Holds:
    """A strategy factory that raises, as a user's buggy one would."""
    raise RuntimeError("this strategy needs a license key")


class HangFirst(_Holds):
    """On its first attempt at any of TEST_KILL_SYMBOLS, writes its pid to a marker named
    for the symbol and hangs: the test then kills those workers at one instant."""

    def decide(self, view: MarketView) -> SignalDecision:
        symbols = os.environ.get(KILL_SYMBOL_ENV, "").split(",")
        if view.task.symbol in symbols and view.task.attempt == 1:
            (Path(os.environ[KILL_MARKER_ENV]) / view.task.symbol).write_text(str(os.getpid()))
            time.sleep(60)
        return SignalDecision(Signal.HOLD, 0.0, (f"attempt {view.task.attempt}",))


class BuysEverySymbol:
    """A directional signal on every symbol (calls, puts for QQQ), the seed strategy's own
    choice of contracts: positions to hold into an expiry's last minutes."""

    wants_hourly_bars = False

    def __init__(self, settings: Settings) -> None:
        from workers.strategy import ScalpWhaleStrategy

        self.inner = ScalpWhaleStrategy(settings)

    def decide(self, view: MarketView) -> SignalDecision:
        signal = Signal.SELL if view.task.symbol == "QQQ" else Signal.BUY
        return SignalDecision(signal, 0.9, ("always",))

    def choose(
        self,
        view: MarketView,
        decision: SignalDecision,
        selection: Selection,
        quotes: Sequence[OptionQuote],
    ) -> tuple[tuple[OrderIntent, ...], tuple[str, ...]]:
        return self.inner.choose(view, decision, selection, quotes)
