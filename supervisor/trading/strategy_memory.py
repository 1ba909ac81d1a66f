"""The strategy's state between cycles: what its rules remember, journaled, restored at start.

    journal strategy_memory --restore--> StrategyMemory --whale_last--> each SymbolTask
    SymbolResult.whale_fired_ts --note--> StrategyMemory --fire--> journal (one row a symbol)

Workers are stateless (a task carries all a symbol's decision needs), so what a rule must
remember lives here, beside the book and the risk state. Today that is the whale rule's last
firing per symbol, which debounces it for days: kept only in memory, a restart forgot it and
the rule fired again at once.
"""

from __future__ import annotations

from collections.abc import Mapping

from common.messages import SymbolResult
from supervisor.journal.strategy_rows import StrategyRows

WHALE = "whale"  # the rule's name in the journal


class StrategyMemory:
    def __init__(self, rows: StrategyRows) -> None:
        self._rows = rows
        self._whale_last = rows.fired(WHALE)  # restored: a restart keeps the debounce

    @property
    def whale_last(self) -> Mapping[str, float]:
        """The whale rule's last firing per symbol, for the next cycle's tasks."""
        return self._whale_last

    def note(self, result: SymbolResult) -> None:
        """What a symbol's result says the rules did: a whale firing is kept and journaled."""
        fired = result.whale_fired_ts
        if fired is None or self._whale_last.get(result.symbol) == fired:
            return
        self._rows.fire(WHALE, result.symbol, fired)
        self._whale_last[result.symbol] = fired
