"""The end-of-day summary alert: the day a trader reads on the phone after the close.

    the loop finds the market closed after today's session (waits.wait_for_market)
        --> ``send_day_summary``: the journal's day (the report's numbers) and the outages of
            the session, in one alert ("day_summary"), once a day: journaled with its key
            first, so a restart after the close does not send it again

    LIVE day 2026-12-04: 3 trade(s), 2 closed (2 won), 1 open; P&L +123.45 (realized +133.45,
    unrealized -10.00, commissions 6.50); IBKR's day +120.00
    decisions: 3 accepted, 41 refused (max_positions 30, quote 11); controls: pause, resume
    health: 390 cycles, 2 unfinished, 3 symbol failures (QQQ 3); 1 outage (12m00s); kill
    switch not tripped

``alerts.day_summary: false`` sends none. ``day_summary_text`` is pure (tests give it a
summary).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from common.calendar import Session
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
    pnl = s["pnl"]
    commissions = s["fills"]["commission"]
    line = (
        f"{mode_label(mode)} day {s['day']}: {positions['opened']} trade(s), "
        f"{len(closed)} closed ({won} won), {len(still)} open; P&L {_signed(pnl['total'])} "
        f"(realized {_signed(pnl['realized'])}, unrealized {_signed(pnl['unrealized'])}"
        + (f", commissions {commissions:.2f}" if commissions else "")
        + ")"
    )
    broker = s["broker"]
    if broker is not None and broker["daily"] is not None:
        line += f"; IBKR's day {_signed(broker['daily'])}"
    return line


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
