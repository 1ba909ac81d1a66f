"""The end-of-day summary alert: the day a trader reads on the phone after the close.

    the loop finds the market closed after today's session (waits.wait_for_market)
    regular_hours_only false: a cycle after the exchange's close (``DayEnd.at_close``)
    at start, at shutdown, after a reconnect: the journal's latest day, if its session is
    over (``DayEnd.latest``: a stop or crash after the close, an outage past midnight)
        --> ``send_day_summary``: the journal's day (the report's numbers) and the outages of
            the session, in one alert ("day_summary"), once a day: journaled with its key
            first, so a restart after the close does not send it again

    LIVE day 2026-12-04: 3 trade(s), 2 closed (2 won), 1 open; P&L +123.45 (realized +133.45,
    unrealized -10.00, commissions 6.50); IBKR's day +120.00
    decisions: 3 accepted, 41 refused (max_positions 30, quote 11); controls: pause, resume
    health: 390 cycles, 2 unfinished, 3 symbol failures (QQQ 3); 1 outage (12m00s); kill
    switch not tripped

A position still open whose expiry is the day or before is said "expired/settled at the next
start" (the next start settles it), not "open". ``alerts.day_summary: false`` sends none.
``day_summary_text`` is pure (tests give it a summary).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date

from common.calendar import ExchangeCalendar, Session, parse_expiry, trading_day
from common.config import Settings
from supervisor.journal.outage_rows import Outage
from supervisor.journal.store import Journal
from supervisor.journal.summary_types import DaySummary
from supervisor.observe.alerts import Alerter, mode_label
from supervisor.runtime.status import duration

log = logging.getLogger("supervisor.runtime.day_end")

KIND = "day_summary"


def send_day_summary(
    journal: Journal, alerter: Alerter, session: Session, mode: str, now_ts: float
) -> bool:
    """The day of ``session`` (over by ``now_ts``) alerted once; True when sent now."""
    day = session.day.isoformat()
    if journal.latest_day() is None:
        return False  # nothing ever ran: no day to tell of
    summary = journal.day_summary(day)
    if not summary["cycles"]["count"]:
        return False  # the bot did not trade that day (started after its close)
    outages = [o for o in journal.outages.since(session.open_ts) if o.started_ts < now_ts]
    text = day_summary_text(summary, mode, outages, now_ts)
    if not journal.record_alert_once(day, KIND, "day", text, now_ts):
        return False  # said already (before a restart)
    log.info(text.replace("\n", "; "), extra={"event": KIND, "day": day})
    alerter.send(KIND, text, {"day": day})
    return True


class DayEnd:
    """The days whose summary this process looked at (each day looked at once a run; the
    journal keeps each day sent once across runs)."""

    def __init__(self, settings: Settings, alerter: Alerter, calendar: ExchangeCalendar) -> None:
        self.on = settings.alerts.day_summary
        self.mode = settings.execution.mode
        self.regular_hours_only = settings.schedule.regular_hours_only
        self.alerter = alerter
        self.calendar = calendar  # the exchange's sessions: no broker asked (it may be away)
        self._looked: set[date] = set()

    def over(self, journal: Journal | None, session: Session, now_ts: float) -> None:
        """``session`` is over by ``now_ts``: its summary alerted (once a day)."""
        if journal is None or not self.on or session.day in self._looked:
            return
        if not journal.days_between(session.day.isoformat(), session.day.isoformat()):
            return  # no cycle that day yet (a run started after the close): asked again later
        self._looked.add(session.day)
        send_day_summary(journal, self.alerter, session, self.mode, now_ts)

    def latest(self, journal: Journal | None, now_ts: float) -> None:
        """The journal's latest day, if its session is over: at start, at shutdown and after a
        reconnect (a stop or crash after the close, an outage past midnight)."""
        day = journal.latest_day() if journal is not None and self.on else None
        if day is None:
            return
        session = self.calendar.session(date.fromisoformat(day))
        if session is not None and now_ts >= session.close_ts:
            self.over(journal, session, now_ts)

    def at_close(self, journal: Journal | None, now_ts: float) -> None:
        """regular_hours_only false: cycles go on after the close, and the day's summary is
        sent at the exchange's close all the same (with it true, the wait for the open does)."""
        if self.regular_hours_only:
            return
        session = self.calendar.session(trading_day(now_ts, self.calendar.tz))
        if session is not None and now_ts >= session.close_ts:
            self.over(journal, session, now_ts)


def day_summary_text(
    summary: DaySummary, mode: str, outages: Sequence[Outage], now_ts: float
) -> str:
    return "\n".join(
        (_trades(summary, mode), _decisions(summary), _health(summary, outages, now_ts))
    )


def _trades(s: DaySummary, mode: str) -> str:
    positions = s["positions"]
    closed, still = positions["closed"], positions["open"]
    won = sum(1 for p in closed if (p["pnl"] or 0.0) > 0)
    expired = sum(1 for p in still if _expired(p["contract"], s["day"]))
    pnl = s["pnl"]
    commissions = s["fills"]["commission"]
    line = (
        f"{mode_label(mode)} day {s['day']}: {positions['opened']} trade(s), "
        f"{len(closed)} closed ({won} won), {len(still) - expired} open"
        + (f", {expired} expired/settled at the next start" if expired else "")
        + f"; P&L {_signed(pnl['total'])} "
        f"(realized {_signed(pnl['realized'])}, unrealized {_signed(pnl['unrealized'])}"
        + (f", commissions {commissions:.2f}" if commissions else "")
        + ")"
    )
    broker = s["broker"]
    if broker is not None and broker["daily"] is not None:
        line += f"; IBKR's day {_signed(broker['daily'])}"
    return line


def _expired(contract: str, day: str) -> bool:
    """The contract ("SPY 20261204 680C") expired by the close of ``day``."""
    parts = contract.split()
    expiry = parse_expiry(parts[1]) if len(parts) > 1 else None
    return expiry is not None and expiry <= date.fromisoformat(day)


def _decisions(s: DaySummary) -> str:
    d = s["decisions"]
    by_rule = sorted(d["refused_by_rule"].items(), key=lambda kv: (-kv[1], kv[0]))
    rules = ", ".join(f"{rule} {n}" for rule, n in by_rule)
    line = f"decisions: {d['accepted']} accepted, {d['refused']} refused" + (
        f" ({rules})" if rules else ""
    )
    controls = [c["action"] for c in s.get("controls", [])]
    return line + (f"; controls: {', '.join(controls)}" if controls else "")


def _health(s: DaySummary, outages: Sequence[Outage], now_ts: float) -> str:
    cycles = s["cycles"]
    parts = [f"{cycles['count']} cycles"]
    if cycles["unfinished"]:
        parts.append(f"{cycles['unfinished']} unfinished")
    if cycles["symbols_failed"]:
        worst = sorted(cycles["failed_symbols"].items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        named = ", ".join(f"{symbol} {n}" for symbol, n in worst)
        parts.append(f"{cycles['symbols_failed']} symbol failures ({named})")
    line = "health: " + ", ".join(parts)
    if outages:
        spells = ", ".join(duration((o.ended_ts or now_ts) - o.started_ts) for o in outages)
        line += f"; {len(outages)} outage(s) ({spells})"
    kill = s["kill_switch"]
    line += (
        f"; kill switch tripped: {kill['reason']}"
        if kill["halted"]
        else "; kill switch not tripped"
    )
    return line


def _signed(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.2f}"
