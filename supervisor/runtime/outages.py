"""One alert per outage of the gateway, not one per restart; its end alerted once.

    at start, the first failed connect  --> ``down(text)``: the journal's open outage, or a new
    mid-run, lost for alerts.outage_after_s   one; alerted ("connection") only if that outage
                                              was not alerted yet (a restart during it was:
                                              counted, logged, not alerted again)
    connected (start or mid-run)        --> ``up()``: the open outage ended; its end alerted
                                              ("connection_back": how long, restarts) if its
                                              start was
    lost mid-run while positions expiring --> alerted at once, saying why (``exits_at_stake``:
    today are inside (or within               a 15:58 loss would otherwise be said at 16:00,
    outage_after_s of) their exit window      after the exits could have run)
    the bot stops with exit 3 during an --> ``ongoing``: the stop's own "exit" alert is left out
    alerted outage                            (the outage alert said it; the end will say more)

Under systemd (``Restart=on-failure``) a gateway down for the night made the bot exit 3 and
restart every few minutes, and each start alerted "waiting for the gateway" and "exit 3"
again. The outage lives in the journal (journal/outage_rows.py), which every start opens before
it connects. Times are the wall clock's (``wall_clock``: tests pass their own).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from supervisor.broker.base import BrokerError
from supervisor.journal.outage_rows import Outage, OutageRows
from supervisor.observe.alerts import Alerter, Fields
from supervisor.runtime.status import duration
from supervisor.trading.expiry_guard import ExpiryGuard, Held

log = logging.getLogger("supervisor.runtime.outages")

GATEWAY = "gateway"


class OutageAlerts:
    def __init__(
        self,
        alerter: Alerter,
        rows: OutageRows | None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.alerter = alerter
        self.rows = rows  # None: no journal (the tools' connects): every outage alerted
        self.wall_clock = wall_clock
        self.ongoing = False  # this process is inside an outage that was alerted
        self._seen: set[int] = set()  # outages this process opened or counted itself in

    def down(self, text: str, fields: Fields | None = None) -> bool:
        """The gateway is away (``text`` says how); True when this alerted it."""
        if self.rows is None:
            self.alerter.send("connection", text, fields)
            self.ongoing = True
            return True
        before = self.rows.current(GATEWAY)
        outage = before or self.rows.open(GATEWAY, self.wall_clock(), text)
        if outage.id not in self._seen:
            if before is not None:
                self.rows.restarted(outage.id)  # this start came inside an open outage
            self._seen.add(outage.id)
        if outage.alerted:
            self.ongoing = True
            log.info(
                "the gateway is still away: the outage since %s ago, alerted then; not "
                "alerted again (its end will be)",
                duration(self.wall_clock() - outage.started_ts),
                extra={"event": "outage_ongoing", "since_ts": outage.started_ts},
            )
            return False
        self.alerter.send(
            "connection", f"{text} (alerted once for this outage; its end is alerted)", fields
        )
        self.rows.alerted(outage.id)
        self.ongoing = True
        return True

    def lost(self, lost_s: float, exc: Exception, why: str | None = None) -> bool:
        """A connection lost mid-run ``lost_s`` ago (``alerts.outage_after_s``): an outage;
        ``why``: why it is alerted at once (``exits_at_stake``)."""
        urgent = f", alerted at once: {why}" if why else ""
        return self.down(
            f"connection to the gateway lost {duration(lost_s)} ago ({exc}){urgent}: no cycles "
            "until it is back"
        )

    def up(self, where: str) -> Outage | None:
        """Connected to the gateway at ``where``: the open outage ended, its end alerted once
        if its start was; the ended outage (None: there was none)."""
        self.ongoing = False
        if self.rows is None:
            return None
        ended = self.rows.close(GATEWAY, self.wall_clock())
        if ended is None or not ended.alerted:
            return ended
        assert ended.ended_ts is not None
        restarts = f", {ended.restarts} restart(s) of the bot during it" if ended.restarts else ""
        self.alerter.send(
            "connection_back",
            f"the gateway at {where} answers again after "
            f"{duration(ended.ended_ts - ended.started_ts)} away{restarts}",
            {"where": where, "since_ts": ended.started_ts},
        )
        return ended


def at_stake(held: Sequence[Held], now_ts: float, after_s: float) -> str | None:
    """Why a lost connection is alerted at once: positions expiring today whose exit window
    (exit time to close) has come, or comes within ``after_s``; None when none."""
    due = [h.key for h in held if h.exit_at - after_s <= now_ts < h.close]
    if not due:
        return None
    return f"positions expiring today inside their exit window ({', '.join(due)})"


async def exits_at_stake(
    guard: ExpiryGuard | None, now: Callable[[], float], after_s: float
) -> Callable[[], str | None] | None:
    """What is held when the connection is lost, judged again each second of the wait by
    ``at_stake`` on the market clock ``now`` (a 15:40 loss becomes urgent at 15:43)."""
    if guard is None:
        return None
    try:
        held = await guard.held(now())
    except BrokerError as exc:  # what is held is not known: the outage waits outage_after_s
        log.info("held positions not known during the outage: %s", exc)
        return None
    return lambda: at_stake(held, now(), after_s) if held else None
