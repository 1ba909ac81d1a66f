"""How many symbols a cycle keeps in flight, and how long it may take: from IBKR's budgets.

One connection may send 50 messages a second and hold 100 market-data lines; everything a
cycle does is paid from those two. Measured on the simulator with IBKR's timing
(tools/bench.py --sim): a steady symbol-cycle costs ~7 messages (quote, bars, option
snapshots and their cancels) and the first of the day ~11 (contract details, the chain, the
option expiries qualified); a symbol spends ~1-2 s waiting on the gateway. So:

- in flight (``universe.max_concurrent_symbols: auto``): enough symbols that the governor
  always has messages waiting (pace x 2 s / 7), but no more than the lines can serve with a
  third of them kept free (each symbol holds up to ``options.strike_count`` at once);
- the deadline (``schedule.cycle_deadline_s: auto``): the first cycle's messages at the
  governor's pace, half as long again, plus 30 s; never under 45 s.

A number set in the settings is used as it is.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from common.config import PACING_SLOT_SHARE, Settings

STEADY_MESSAGES = 7.0  # per symbol-cycle
FIRST_MESSAGES = 12.0  # per symbol, the first cycle of the day
WAIT_PER_SYMBOL_S = 2.0  # a symbol's time waiting on the gateway
MIN_DEADLINE_S = 45.0
MAX_IN_FLIGHT = 64


class CycleBudget(NamedTuple):
    in_flight: int
    deadline_s: float


def cycle_budget(settings: Settings, symbols: int) -> CycleBudget:
    """The in-flight cap and the deadline for a cycle of ``symbols`` symbols."""
    pace = math.floor(settings.pacing.max_messages_per_s) * PACING_SLOT_SHARE  # a second
    in_flight = settings.universe.max_concurrent_symbols
    if in_flight == "auto":
        by_pace = math.ceil(pace * WAIT_PER_SYMBOL_S / STEADY_MESSAGES)
        lines = settings.pacing.max_market_data_lines * 2 // 3
        by_lines = max(1, lines // max(1, settings.options.strike_count))
        in_flight = max(2, min(by_pace, by_lines, MAX_IN_FLIGHT, symbols))
    deadline = settings.schedule.cycle_deadline_s
    if deadline == "auto":
        deadline = max(MIN_DEADLINE_S, 30.0 + 1.5 * symbols * FIRST_MESSAGES / pace)
    return CycleBudget(int(in_flight), float(deadline))
