"""The end-of-day summary alert (issue 25): trades, P&L, refusals by rule and health in one
alert after the session's close, once a day across restarts."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
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


def _day_end(tmp_path: Path, alerts: Alerts, regular_hours_only: bool = True) -> Any:
    from common.calendar import nyse
    from supervisor.runtime.day_end import DayEnd

    settings = make_settings(tmp_path, schedule={"regular_hours_only": regular_hours_only})
    return DayEnd(settings, alerts, nyse())  # type: ignore[arg-type]


def test_the_latest_day_is_told_at_start_or_stop_once_its_session_is_over(
    tmp_path: Path,
) -> None:
    # Given a journal whose latest day is Friday 2026-12-04 (a stop at the close, a crash
    # after it, or an outage that ran past midnight: no wait for the next open said it)
    alerts = Alerts()
    with Journal(tmp_path / "j.sqlite") as journal:
        _traded_day(journal)
        day_end = _day_end(tmp_path, alerts)
        # a stop before the close says nothing: the session is not over
        day_end.latest(journal, CLOSE - 60)
        assert alerts.sent == []
        # at the close (or Monday's start) the day is told, once
        _day_end(tmp_path, alerts).latest(journal, CLOSE)
        _day_end(tmp_path, alerts).latest(journal, CLOSE + 3 * 86_400)
        assert [kind for kind, _ in alerts.sent] == ["day_summary"]
        assert alerts.sent[0][1].startswith("dry_run day 2026-12-04:")
    with Journal(tmp_path / "empty.sqlite") as empty:  # nothing ever ran: nothing to tell
        _day_end(tmp_path, alerts).latest(empty, CLOSE + 60)
    assert len(alerts.sent) == 1


@pytest.mark.parametrize("regular_hours_only, told", [(False, ["day_summary"]), (True, [])])
def test_without_regular_hours_only_the_exchange_close_tells_the_day(
    tmp_path: Path, regular_hours_only: bool, told: list[str]
) -> None:
    alerts = Alerts()
    with Journal(tmp_path / "j.sqlite") as journal:
        day_end = _day_end(tmp_path, alerts, regular_hours_only)
        day_end.at_close(journal, CLOSE + 1)  # a run started after the close: no cycle yet
        _traded_day(journal)
        day_end.at_close(journal, CLOSE - 1)  # cycles after the close go on: not yet
        assert alerts.sent == []
        day_end.at_close(journal, CLOSE + 1)
        day_end.at_close(journal, CLOSE + 61)  # the next cycle: said already
    # with regular_hours_only the wait for the next open tells it (wait_for_market)
    assert [kind for kind, _ in alerts.sent] == told


def _line(contract: str) -> dict[str, Any]:
    return {"contract": contract, "pnl": None}


def test_positions_past_their_expiry_are_said_settled_at_the_next_start(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        _traded_day(journal)
        summary = journal.day_summary(DAY.isoformat())
    # Given two positions open at Friday's close: one expiring that day, one next Friday
    summary["positions"]["opened"] = 2
    summary["positions"]["open"] = [
        _line("SPY 20261204 680C"),  # type: ignore[list-item]
        _line("QQQ 20261211 600P"),  # type: ignore[list-item]
    ]
    trades = day_summary_text(summary, "live", [], CLOSE + 60).split("\n")[0]
    assert trades.startswith(
        "LIVE day 2026-12-04: 2 trade(s), 0 closed (0 won), 1 open, "
        "1 expired/settled at the next start; P&L"
    )


def _summaries(path: Path | str) -> list[str]:
    import sqlite3

    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT day FROM alerts WHERE kind = 'day_summary' ORDER BY day")
        return [str(day) for (day,) in rows]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_run_tells_the_last_day_at_start_and_without_regular_hours_at_the_close(
    tmp_path: Path,
) -> None:
    from tests.sessions import TUESDAY_CLOSE
    from tests.test_loop import run_supervisor

    # Given a journal whose latest day, Monday 2026-11-30, was never told (a crash after
    # the close), and a run without regular_hours_only from Tuesday 15:59 to 16:01
    settings = make_settings(
        tmp_path,
        schedule={"regular_hours_only": False, "cycles": 3, "interval_s": 60},
        stub={"start": (TUESDAY_CLOSE - timedelta(seconds=60)).isoformat()},
    )
    monday_open = SESSION.open_ts - 4 * 86_400  # 2026-11-30 09:30 New York
    with Journal(settings.execution.journal_path) as journal:
        journal.start_cycle(1, "2026-11-30", monday_open + 60)
        journal.end_cycle(1, monday_open + 61, 3, 0, 1.0)
    sup = run_supervisor(settings, tmp_path)
    assert len(sup.summaries) == 3
    # Then Monday was told at the start, and Tuesday at its close although cycles went on
    assert _summaries(settings.execution.journal_path) == ["2026-11-30", "2026-12-01"]


def test_a_stop_after_the_close_tells_the_day(tmp_path: Path) -> None:
    from supervisor.broker.stub import StubBroker
    from supervisor.runtime.clock import SimClock
    from supervisor.runtime.loop import Supervisor

    settings = make_settings(tmp_path)
    clock = SimClock(CLOSE + 30)  # the bot stopped (or crashed) just after Friday's close
    sup = Supervisor(settings, StubBroker(settings.stub, clock.now), clock, lambda _: None)
    sup.journal = Journal(settings.execution.journal_path)
    _traded_day(sup.journal)
    asyncio.run(sup._shutdown())
    assert _summaries(settings.execution.journal_path) == ["2026-12-04"]
