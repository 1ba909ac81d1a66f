"""A cycle's rows in the journal, written from trading: the runtime runs the cycle and says
what happened; what is kept of it is decided here, beside the book and the risk state.

    CycleRunner --start--> cycles row (the cycle's day and start)
                --result-> signals row (committed with others, soon) + the strategy's memory
                --end----> the cycles row closed (durable: fsyncs the cycle's signals too)
"""

from __future__ import annotations

from common.messages import SymbolResult
from supervisor.journal.store import Journal
from supervisor.trading.strategy_memory import StrategyMemory


class CycleRecord:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.memory = StrategyMemory(journal.strategy)  # restored from the journal

    def last_cycle_id(self) -> int:
        """The last cycle ever journaled (0 for none): ids keep growing across restarts."""
        return self.journal.next_cycle_id() - 1

    def start(self, cycle_id: int, day: str, ts: float) -> None:
        self.journal.start_cycle(cycle_id, day, ts)

    def result(self, result: SymbolResult, day: str) -> None:
        """A symbol's signal, and what the strategy's rules remember of it."""
        self.memory.note(result)
        self.journal.record_signal(
            result.cycle_id,
            day,
            result.symbol,
            result.signal.value,
            result.confidence,
            result.reasons,
            result.skipped,
            result.error,
        )

    def end(self, cycle_id: int, ts: float, ok: int, failed: int, seconds: float) -> None:
        self.journal.end_cycle(cycle_id, ts, ok, failed, seconds)
