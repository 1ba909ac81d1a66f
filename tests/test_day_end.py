"""The end-of-day summary alert (issue 25): trades, P&L, refusals by rule and health in one
alert after the session's close, once a day across restarts."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from common.calendar import Session
from supervisor.journal.outage_rows import Outage
from supervisor.journal.store import Journal
from supervisor.runtime.day_end import day_summary_text, send_day_summary
from supervisor.runtime.waits import wait_for_market
from supervisor.trading.risk import RiskDecision
from tests.conftest import make_settings
from tests.test_gateway_wait import Alerts

pytestmark = pytest.mark.timeout(30)

DAY = date(2026, 12, 4)
OPEN, CLOSE = 1_796_394_600.0, 1_796_418_000.0  # 2026-12-04 09:30 and 16:00 New York
SESSION = Session(DAY, OPEN, CLOSE)


def _traded_day(journal: Journal) -> None:
    journal.start_cycle(1, DAY.isoformat(), OPEN + 60)
    journal.end_cycle(1, OPEN + 61, 3, 0, 1.0)
    for n, rule in enumerate(["max_positions", "max_positions", "quote", "ok"]):
        decision = RiskDecision(f"i-{n}", rule == "ok", 1 if rule == "ok" else 0, rule, "why")
        journal.record_decision(decision, DAY.isoformat(), OPEN + 60)


def test_the_text_says_trades_pnl_refusals_by_rule_and_health(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        _traded_day(journal)
        summary = journal.day_summary(DAY.isoformat())
    summary["pnl"] = {"realized": 133.456, "unrealized": -10.0, "total": 123.456}
    summary["kill_switch"]["halted"] = False
    outage = Outage(1, "gateway", OPEN + 600, "down", True, 2, OPEN + 600 + 720)
    text = day_summary_text(summary, "live", [outage], CLOSE + 60)
    trades, decisions, health = text.split("\n")
    assert trades.startswith("LIVE day 2026-12-04: 0 trade(s), 0 closed (0 won), 0 open")
    assert "P&L +123.46 (realized +133.46, unrealized -10.00)" in trades
    assert decisions == "decisions: 1 accepted, 3 refused (max_positions 2, quote 1)"
    assert health == "health: 1 cycles; 1 outage(s) (12m00s); kill switch not tripped"


def test_sent_once_a_day_across_restarts_and_not_for_a_day_without_cycles(tmp_path: Path) -> None:
    path, alerts = tmp_path / "j.sqlite", Alerts()
    with Journal(path) as journal:
        # a day the bot never ran: nothing to say
        assert not send_day_summary(journal, alerts, SESSION, "dry_run", CLOSE + 60)  # type: ignore[arg-type]
        _traded_day(journal)
        assert send_day_summary(journal, alerts, SESSION, "dry_run", CLOSE + 60)  # type: ignore[arg-type]
    with Journal(path) as journal:  # a restart after the close
        assert not send_day_summary(journal, alerts, SESSION, "dry_run", CLOSE + 900)  # type: ignore[arg-type]
    ((kind, text),) = alerts.sent
    assert kind == "day_summary" and text.startswith("dry_run day 2026-12-04:")


class ClosedClock:
    """The session clock after the close; its sleep is where a stop comes."""

    rate = 1.0

    def now(self) -> float:
        return CLOSE + 120

    async def sleep(self, seconds: float, stop: asyncio.Event) -> None:
        stop.set()


class TodaysSessions:
    calendar: Any = None

    async def today(self, symbol: str, now: float) -> Session:
        return SESSION


class Feed:
    market_open = True


def test_the_wait_for_the_next_open_says_the_day_is_over(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    over: list[tuple[Session, float]] = []
    sessions = TodaysSessions()
    from common.calendar import nyse

    sessions.calendar = nyse()
    stopped = not asyncio.run(
        wait_for_market(
            asyncio.Event(),
            ClosedClock(),
            sessions,  # type: ignore[arg-type]
            settings,
            Feed(),  # type: ignore[arg-type]
            lambda session, now: over.append((session, now)),
        )
    )
    assert stopped and over == [(SESSION, CLOSE + 120)]
