"""The journal's strategy rows: what a strategy's rules remember between cycles.

    a rule fired for a symbol -> strategy_memory (rule, symbol): the firing's time, replaced
                                 by a later one (one row a rule and symbol, never a history)
    start                     -> every row of a rule, restored into the strategy's memory
                                 (supervisor/trading/strategy_memory.py)

Today's one rule with a memory is the whale rule (debounced for days after it fires), which a
restart must not forget: it would fire again at once. A part of ``Journal``
(supervisor/journal/store.py) as ``journal.strategy``, given its store (the connection and
the transactions), as the other parts are.
"""

from __future__ import annotations

from supervisor.journal.commits import Store


class StrategyRows:
    def __init__(self, store: Store) -> None:
        self.store = store  # its connection is read at each call: it follows a moved file

    def fired(self, rule: str) -> dict[str, float]:
        """The last firing of ``rule`` per symbol."""
        rows = self.store.db.execute(
            "SELECT symbol, ts FROM strategy_memory WHERE rule = ?", (rule,)
        )
        return {str(symbol): float(ts) for symbol, ts in rows}

    def fire(self, rule: str, symbol: str, ts: float) -> None:
        """``rule`` fired for ``symbol`` at ``ts``. Not fsynced on its own: the cycle's end is
        durable and covers it, as it covers the signal that came with it."""
        with self.store.tx(False) as db:
            db.execute(
                "INSERT INTO strategy_memory (rule, symbol, ts) VALUES (?, ?, ?) "
                "ON CONFLICT (rule, symbol) DO UPDATE SET ts = excluded.ts",
                (rule, symbol, ts),
            )
