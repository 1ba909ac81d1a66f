"""The exits before expiry on a timer of their own, not only when a cycle starts.

    held(now)          what is held, each with its exit time (its expiry's close less
                       risk.exit_before_expiry_min) and that close: the paper book's active
                       positions, or (live) the account's option positions this bot bought
    next_exit_at(now)  the earliest exit time among them (None: nothing held)
    run(now)           the exits that are due, now: paper -> the book's due positions stepped
                       (sold at the bid) or settled; live -> orders and fills followed, then
                       every due position sold at the bid (live_exits.py)
    expiring(now)      what is still held inside its exit window (for a stop: close it first)

With ``schedule.interval_s: 1200`` cycles may start at 15:40 and next on Monday: a position
expiring at 16:00 must still be closed at 15:45. The runtime calls ``run`` at each exit time
(runtime/expiry_timer.py); every rule it applies is the one a cycle's start applies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from common.calendar import expiry_close
from supervisor.trading.desk import Desk

log = logging.getLogger("supervisor.trading.expiry_guard")


@dataclass(frozen=True)
class Held:
    key: str  # the contract, as "SPY 20261204 680C"
    exit_at: float  # epoch seconds: its expiry's close less exit_before_expiry_min
    close: float  # its expiry's close


class ExpiryGuard:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self.exit_before_s = desk.settings.risk.exit_before_expiry_min * 60

    async def held(self, now_ts: float) -> list[Held]:
        desk = self.desk
        candidates = await desk.book.exit_candidates(now_ts)
        found = []
        for c in dict.fromkeys(candidates):  # held and working: once
            close = await desk.sessions.expiry_close(c.symbol, c.expiry, now_ts)
            close = close if close is not None else expiry_close(c.expiry)
            if close is not None:
                found.append(Held(c.key, close - self.exit_before_s, close))
        return found

    async def next_exit_at(self, now_ts: float) -> float | None:
        held = await self.held(now_ts)
        return min((h.exit_at for h in held), default=None)

    async def expiring(self, now_ts: float) -> list[Held]:
        """Held inside the exit window: its exit time has come, its close not yet."""
        return [h for h in await self.held(now_ts) if h.exit_at <= now_ts < h.close]

    async def run(self, now_ts: float) -> None:
        """Every exit due at ``now_ts``, without a cycle."""
        desk = self.desk
        due = [h for h in await self.held(now_ts) if h.exit_at <= now_ts]
        if not due:
            return
        log.info(
            "expiry guard: %d position(s) at or past their exit time: %s",
            len(due),
            ", ".join(h.key for h in due),
            extra={"event": "expiry_guard", "contracts": [h.key for h in due]},
        )
        halted = desk.state.halted if desk.state is not None else False
        # the book's exits (paper: stepped or settled; live: orders followed first, then sold)
        for_want_of_a_bid = await desk.book.run_exits(now_ts, {h.key for h in due}, halted)
        left = [h.key for h in await self.expiring(now_ts)]
        if left and for_want_of_a_bid:  # (live: an exit order may be working; live_exits says)
            log.warning(
                "expiry guard: still held after its exit time (no bid to sell to "
                "yet): %s; tried again until the close",
                ", ".join(left),
                extra={"event": "expiry_guard_held", "contracts": left},
            )
