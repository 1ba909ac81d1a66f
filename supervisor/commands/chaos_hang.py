"""The hung worker ``chaos`` injects: the built-in strategy, except that it never returns on
the symbol it meets first once a cue file appears (an endless loop or a stuck C call in a
strategy). Fenced to chaos: the strategy is named only in the settings chaos writes, and the
cue is a file whose path only chaos puts in the environment (``CHAOS_HANG_CUE``).

    driver                         worker (spawned; the environment is inherited)
    writes <out>/hang.cue   ->     decide(): renames it to hang.cue.taken (one worker wins),
                                   writes the symbol there, then sleeps until it is killed
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from common.config import Settings
from workers.signals import SignalDecision
from workers.strategy import MarketView, ScalpWhaleStrategy

HANG_CUE_ENV = "CHAOS_HANG_CUE"
STRATEGY = "supervisor.commands.chaos_hang:HangsOnCue"


class HangsOnCue(ScalpWhaleStrategy):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        cue = os.environ.get(HANG_CUE_ENV)
        self.cue = Path(cue) if cue else None

    def decide(self, view: MarketView) -> SignalDecision:
        if self.cue is not None and claim(self.cue, view.task.symbol):
            while True:  # never returns: the pool's watchdog must kill this worker
                time.sleep(0.5)
        return super().decide(view)


def claim(cue: Path, symbol: str) -> bool:
    """Whether this call takes the cue (the first of all workers to try, once per cue)."""
    taken = cue.with_name(cue.name + ".taken")
    try:
        os.rename(cue, taken)
    except FileNotFoundError:
        return False
    taken.write_text(f"{symbol} {os.getpid()}\n", encoding="utf-8")
    return True
