"""The trader's controls of a running bot: pause, resume, flatten, kill.

    pause    no new entry from the next intent on (risk rule ``paused``, checked before every
             other rule); exits keep working; journaled, so a restart stays paused
    resume   lifts the pause
    flatten  the desk's working entries cancelled and every option position it holds closed
             (paper: at the bid; live: closing limit orders at the bid, position_book.flatten;
             not exercised shares), then paused, so the next cycle does not enter again
    kill     the kill switch tripped (the one the daily loss trips: no new entry for the rest
             of the day, journaled in the day's state)

Each control is journaled (journal/control_rows.py: who, when, from where, what came of it),
logged and alerted; a flatten's row first, before it acts (it pauses, and a restart must stay
paused while positions are being closed), finished with its result, or "flatten failed: ..."
(journaled, alerted, then raised to the caller: the CLI's 500, Telegram's answer).

``apply`` runs on the supervisor's event loop only (the HTTP thread hands a control over
through runtime/controls.py): flatten and kill take the desk's lock, so they act between a
cycle's steps, never in the middle of one; pause and resume are a flag the risk step reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from supervisor.observe.alerts import Alerter
from supervisor.trading.desk import Desk

log = logging.getLogger("supervisor.trading.controls")

ACTIONS = ("pause", "resume", "flatten", "kill")


@dataclass(frozen=True)
class Control:
    action: str  # one of ACTIONS
    source: str  # who asked: "cli" (python -m supervisor pause), "http" or "telegram"
    peer: str  # from where: the peer's address, "127.0.0.1:53122"


class Controls:
    def __init__(self, desk: Desk, alerter: Alerter | None) -> None:
        self.desk = desk
        self.alerter = alerter

    async def apply(self, control: Control, now_ts: float) -> str:
        """What the control did, in a line (journaled, logged, alerted)."""
        if control.action not in ACTIONS:
            raise ValueError(f"unknown control {control.action!r}")
        desk = self.desk
        if control.action == "pause":
            result = "paused: new entries refused" if not desk.paused else "already paused"
            desk.pause(True)
        elif control.action == "resume":
            result = "resumed: entries allowed" if desk.paused else "was not paused"
            desk.pause(False)
        else:
            async with desk.lock:  # between a cycle's steps and the expiry guard's runs
                return await self._acted(control, now_ts)
        self._say(control, result, now_ts)
        return result

    async def _acted(self, control: Control, now_ts: float) -> str:
        """A flatten or kill, said whatever comes of it: a flatten's row is journaled before
        it acts (the pause it leaves holds across a restart even if it fails midway), and a
        failure is journaled, logged and alerted, then raised to the caller."""
        row = None
        if control.action == "flatten":
            row = self._journal(control, "started: paused, closing (not finished)", now_ts)
        try:
            result = await self._locked(control, now_ts)
        except Exception as exc:
            paused = " (paused: check what is held)" if control.action == "flatten" else ""
            self._say(control, f"{control.action} failed: {exc}{paused}", now_ts, row)
            raise
        self._say(control, result, now_ts, row)
        return result

    async def _locked(self, control: Control, now_ts: float) -> str:
        desk = self.desk
        if control.action == "kill":
            if desk.state is None:
                await desk.open_day(now_ts)  # a trip needs the day
            desk.trip(f"kill by {control.source} from {control.peer}", now_ts, key="control")
            return "kill switch tripped: no new entries for the rest of the day"
        desk.pause(True)  # first: nothing enters again while the positions are closed
        done = await desk.flatten(now_ts)
        return f"flattened: {done}; paused"

    def _journal(self, control: Control, result: str, now_ts: float) -> int:
        desk = self.desk
        day = desk.state.day if desk.state is not None else desk.day_of(now_ts)
        return desk.journal.controls.record(
            day, now_ts, control.action, control.source, control.peer, result
        )

    def _say(self, control: Control, result: str, now_ts: float, row: int | None = None) -> None:
        """Journaled (``row``: its row written before, now finished), logged, alerted."""
        if row is None:
            self._journal(control, result, now_ts)
        else:
            self.desk.journal.controls.finish(row, result)
        log.warning(
            "control %s by %s from %s: %s",
            control.action,
            control.source,
            control.peer,
            result,
            extra={
                "event": "control",
                "action": control.action,
                "source": control.source,
                "peer": control.peer,
            },
        )
        if self.alerter is not None:
            self.alerter.send(
                "control", f"{control.action} by {control.source} from {control.peer}: {result}"
            )
