"""fetch-history: IBKR's historical-data pacing (pure, on a fake clock), the day's rows, the
files it writes, and whole runs against the simulated gateway enforcing the same rules."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import deque
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from common.calendar import nyse
from supervisor.broker.ibkr.broker import IBKRBroker
from supervisor.broker.ibkr.history import (
    HistoricalPacer,
    HistoricalRules,
    Sent,
    session_rows,
    wait_s,
)
from supervisor.commands.fetch_history import (
    HistoryFileError,
    fetch,
    read_days,
    sessions,
    write_days,
)
from tests.conftest import REPO_ROOT
from tests.conftest_sim import make_scenario, run_client
from tests.sessions import MONDAY_0931
from tests.test_ibkr_broker import settings as broker_settings
from tools.gateway_sim import ThreadedSim
from tools.gateway_sim.rules import HistoricalPacing
from tools.gateway_sim.scenario import RulesSpec

IBKR = HistoricalRules()
TZ = "America/New_York"


def sent(*items: tuple[float, str, str]) -> deque[Sent]:
    return deque(Sent(at, ident, contract, 1) for at, ident, contract in items)


# --- the rules, pure ---------------------------------------------------------------------------


def test_sixty_requests_go_at_once_and_the_61st_waits_for_the_first_to_leave_the_window() -> None:
    history = sent(*((float(i), f"r{i}", f"c{i}") for i in range(60)))
    # The 61st at t=100 waits until the first (t=0) is 10 minutes old, plus the margin
    assert wait_s(IBKR, history, 100.0, Sent(0, "new", "cnew", 1)) == pytest.approx(501.0)
    # 59 in the window: the next goes now
    history.popleft()
    assert wait_s(IBKR, history, 100.0, Sent(0, "new", "cnew", 1)) == 0.0
    # BID_ASK counts twice: it must wait for one more to leave
    assert wait_s(IBKR, history, 100.0, Sent(0, "new", "cnew", 2)) == pytest.approx(502.0)


def test_an_identical_request_waits_15_s_and_a_sixth_for_one_contract_waits_2_s() -> None:
    assert wait_s(IBKR, sent((10.0, "a", "SPY")), 12.0, Sent(0, "a", "SPY", 1)) == 14.0
    five = sent(*((10.0 + i * 0.1, f"d{i}", "SPY") for i in range(5)))
    # the sixth for SPY within 2 s waits until the oldest is 2 s (+ margin) old
    assert wait_s(IBKR, five, 10.5, Sent(0, "d5", "SPY", 1)) == pytest.approx(2.5)
    assert wait_s(IBKR, five, 10.5, Sent(0, "x", "QQQ", 1)) == 0.0  # another contract: now


def test_the_pacer_never_breaks_the_simulators_independent_rule_check() -> None:
    # Given 150 day requests over 3 symbols, paced on a fake clock
    now = [0.0]

    async def sleep(s: float) -> None:
        now[0] += s

    pacer = HistoricalPacer(IBKR, clock=lambda: now[0], sleep=sleep)
    judge = HistoricalPacing(RulesSpec(historical_pacing=True))  # the gateway's own count
    reasons = []

    async def main() -> None:
        for day in range(50):
            for sym in ("SPY", "QQQ", "AAPL"):
                await pacer.acquire((sym, day), sym)
                reasons.append(judge.check((sym, day), sym, now=now[0]))
                now[0] += 0.05  # the answer's round trip

    asyncio.run(main())
    # Then the gateway's judge refused none, and 150 requests took 2 windows and a bit: the
    # first 60 at once, the rest at 60 per 10 minutes
    assert set(reasons) == {""}
    assert 1200 < now[0] < 1300
    # And the ETA of 90 more from here is their steady pace
    assert pacer.eta_s(90) == pytest.approx(900.0)


# --- rows and files ----------------------------------------------------------------------------


class FakeBar:
    def __init__(self, ts: float, close: float) -> None:
        self.date, self.open, self.high, self.low, self.close = ts, close, close, close, close
        self.volume = 100.0


def test_a_days_rows_are_its_session_only_sorted_and_once_each() -> None:
    session = nyse().session(date(2026, 11, 27))  # the day after Thanksgiving: 13:00 close
    assert session is not None
    o, c = session.open_ts, session.close_ts
    bars = [FakeBar(o + 60, 2.0), FakeBar(o - 60, 9.0), FakeBar(o, 1.0), FakeBar(c, 9.0)]
    bars.append(FakeBar(o + 60, 3.0))  # the same minute again: the last one wins
    assert [(r[0] - o, r[4]) for r in session_rows(bars, session)] == [(0, 1.0), (60, 3.0)]


def test_sessions_skip_the_holiday_and_keep_the_early_close() -> None:
    found = sessions(nyse(), date(2026, 11, 25), date(2026, 11, 30))
    assert [s.day.day for s in found] == [25, 27, 30]  # Thanksgiving, the weekend: none
    assert (found[1].close_ts - found[1].open_ts) / 60 == 210


def test_a_file_round_trips_by_day_and_a_foreign_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "SPY.csv"
    rows = {
        date(2026, 12, 1): [["2026-12-01T09:30:00-05:00", "1", "2", "0.5", "1.5", "10"]],
        date(2026, 11, 30): [["2026-11-30T15:59:00-05:00", "1", "1", "1", "1", "0"]],
    }
    write_days(path, rows)
    assert path.read_text().splitlines()[:2] == [
        "ts,open,high,low,close,volume",
        "2026-11-30T15:59:00-05:00,1,1,1,1,0",
    ]
    assert read_days(path, TZ) == rows
    path.write_text("date,price\n2026-12-01,1\n")
    with pytest.raises(HistoryFileError, match=r"SPY.csv: line 1: header 'date,price'"):
        read_days(path, TZ)


# --- against the simulator ---------------------------------------------------------------------

# IBKR's rules scaled down so that a test sees a full window in seconds: 4 requests in 6 s,
# an identical one within 1 s, 5 per contract in 2 s (IBKR's). A day's request takes the
# simulator ~0.3 s, so 4 go well inside a window
SIM_RULES = {
    "historical_pacing": True,
    "hist_max_requests": 4,
    "hist_window_s": 6.0,
    "hist_identical_window_s": 1.0,
}
FAST = HistoricalRules(max_requests=4, window_s=6.0, identical_s=1.0, margin_s=0.2)
# 3 sessions: Thanksgiving (26th) is none, the 27th a half day, then the weekend
DAYS = sessions(nyse(), date(2026, 11, 26), date(2026, 12, 1))


def run_fetch(
    sim: ThreadedSim, out: Path, rules: HistoricalRules, refusal_wait_s: float = 60.0
) -> tuple[Any, ...]:
    async def main() -> tuple[Any, ...]:
        broker = IBKRBroker(broker_settings(sim.port), now=sim.now)
        history = broker.history
        history.pacer = HistoricalPacer(rules)
        history.refusal_wait_s = refusal_wait_s
        await broker.connect()
        lines: list[str] = []
        try:
            result = await fetch(
                history, ["SPY", "QQQ"], DAYS, out, now=sim.now(), tz=TZ, echo=lines.append
            )
            return result, lines
        finally:
            await broker.disconnect()

    return run_client(main, 60)


def history_requests(sim: ThreadedSim) -> int:
    return int(sim.stats()["messages_by_type"].get("20", 0))


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_a_paced_fetch_is_never_refused_and_a_second_run_asks_for_nothing(tmp_path: Path) -> None:
    # Given a gateway enforcing the historical rules (scaled down), Monday after the range
    with ThreadedSim(make_scenario(MONDAY_0931, rules=SIM_RULES)) as sim:
        # When two symbols' five sessions are fetched with the pacer on the same rules
        result, lines = run_fetch(sim, tmp_path, FAST)
        # Then no request was refused, six were sent, and each day is one line with its ETA
        assert sim.stats()["violations"] == {}
        assert history_requests(sim) == 6 and len(lines) == 6
        assert lines[0].startswith("SPY 2026-11-27: 210 bars (1/6, ETA ")
        # And a second run finds every day in the files: nothing is asked
        again, _ = run_fetch(sim, tmp_path, FAST)
        assert history_requests(sim) == 6
    assert result.days == {"SPY": 3, "QQQ": 3} and result.bars["SPY"] == 2 * 390 + 210
    assert again.kept == {"SPY": 3, "QQQ": 3} and again.days == {"SPY": 0, "QQQ": 0}
    spy = read_days(tmp_path / "SPY.csv", TZ)
    assert sorted(spy) == [s.day for s in DAYS]
    assert spy[date(2026, 11, 27)][-1][0] == "2026-11-27T12:59:00-05:00"  # the half day


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_without_pacing_the_gateway_refuses_and_the_refusals_are_waited_out(
    tmp_path: Path,
) -> None:
    # Given the same gateway, and a pacer that lets everything through at once
    lax = HistoricalRules(max_requests=1000, identical_s=0, same_contract=100, margin_s=0)
    with ThreadedSim(make_scenario(MONDAY_0931, rules=SIM_RULES)) as sim:
        result, _ = run_fetch(sim, tmp_path, lax, refusal_wait_s=1.0)
        refused = sim.stats()["violations"].get("162", 0)
    # Then the gateway refused some with 162, each was waited out and asked again, and every
    # day still arrived
    assert refused > 0 and result.refusals == refused
    assert result.days == {"SPY": 3, "QQQ": 3} and not result.failed


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_the_command_writes_the_backtest_files_from_the_simulator(tmp_path: Path) -> None:
    out = tmp_path / "data"
    cmd = [sys.executable, "-m", "supervisor", "fetch-history", "--sim"]
    cmd += ["--start", MONDAY_0931.isoformat(), "--symbols", "spy,AAPL"]
    cmd += ["--from", "2026-11-30", "--to", "2026-12-07", "--out", str(out)]
    done = subprocess.run(
        cmd,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "SUPERVISOR_HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert "SPY: 5 days, 1,950 bars fetched" in done.stdout
    assert "not over yet (left for a later run): 2026-12-07" in done.stdout
    assert "violations 0" in done.stderr
    lines = (out / "AAPL.csv").read_text().splitlines()
    assert lines[0] == "ts,open,high,low,close,volume" and len(lines) == 1 + 1950
    assert lines[1].startswith("2026-11-30T09:30:00-05:00,")


def test_the_command_refuses_what_it_cannot_do_before_asking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from supervisor.commands.cli import main

    base = ["fetch-history", "--out", str(tmp_path), "--symbols", "SPY"]
    day = ["--from", "2026-12-01", "--to", "2026-12-01"]
    # a backwards range, the stub (no history to fetch): exit 2
    assert main([*base, "--from", "2026-12-02", "--to", "2026-12-01"]) == 2
    assert main([*base, "--broker", "stub", *day]) == 2
    # no gateway: exit 3, and no claim that anything was kept
    assert main([*base, "--port", "9", *day]) == 3
    assert "nothing listening" in capsys.readouterr().err
    # a file it did not write: exit 2 naming it, before connecting (port 9 is never tried)
    (tmp_path / "SPY.csv").write_text("date,price\n")
    assert main([*base, "--port", "9", *day]) == 2
    assert "SPY.csv: line 1: header 'date,price'" in capsys.readouterr().err


def test_a_range_without_a_session_is_exit_2_before_asking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a weekend: it connected, fetched nothing and said "-> SPY.csv", a file it never wrote
    from supervisor.commands.cli import main

    out = tmp_path / "bars"
    weekend = ["--from", "2026-12-05", "--to", "2026-12-06", "--port", "9"]
    assert main(["fetch-history", "--out", str(out), "--symbols", "SPY", *weekend]) == 2
    assert "no trading session from 2026-12-05 to 2026-12-06" in capsys.readouterr().err
    assert not out.exists()


# --- the run's bookkeeping, on a fake gateway --------------------------------------------------


class FakeHistory:
    """``HistoricalBars``' interface: a day's rows, a failure, or the connection lost."""

    def __init__(self, answers: dict[tuple[str, date], Any]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, date]] = []
        self.pacer, self.refusals = HistoricalPacer(IBKR), 0

    async def day(self, symbol: str, session: Any) -> list[Any]:
        self.asked.append((symbol, session.day))
        answer = self.answers.get((symbol, session.day), [])
        if isinstance(answer, Exception):
            raise answer
        return [(session.open_ts + 60 * i, 1.0, 1.0, 1.0, 1.0, 5.0) for i in range(answer)]


def test_a_failed_day_is_named_and_a_lost_connection_keeps_what_was_fetched(
    tmp_path: Path,
) -> None:
    from supervisor.broker.base import ConnectionLost, SymbolDataError

    days = sessions(nyse(), date(2026, 11, 30), date(2026, 12, 2))  # Mon, Tue, Wed
    first, second, third = (s.day for s in days)
    fake = FakeHistory(
        {
            ("SPY", first): 2,
            ("SPY", second): SymbolDataError("history SPY: error 162: no permissions"),
            ("SPY", third): 3,
            ("QQQ", first): 1,
            ("QQQ", second): ConnectionLost("history QQQ: connection lost"),
        }
    )

    async def main() -> Any:
        return await fetch(
            fake,  # type: ignore[arg-type]
            ["SPY", "QQQ"],
            days,
            tmp_path,
            now=days[-1].close_ts - 1,  # Wednesday is not over yet
            tz=TZ,
            echo=lambda _line: None,
        )

    with pytest.raises(ConnectionLost):
        asyncio.run(main())
    # Then Wednesday was never asked (not over), SPY's failed day is missing from its file,
    # and QQQ's Monday, fetched before the connection went, is on disk
    assert fake.asked == [("SPY", first), ("SPY", second), ("QQQ", first), ("QQQ", second)]
    assert sorted(read_days(tmp_path / "SPY.csv", TZ)) == [first]
    assert sorted(read_days(tmp_path / "QQQ.csv", TZ)) == [first]
    # And a run after it asks only for what is missing, and names the failure again
    fake.asked.clear()
    fake.answers[("QQQ", second)] = 4
    result = asyncio.run(main())
    assert fake.asked == [("SPY", second), ("QQQ", second)]
    assert result.failed == [f"SPY {second}: history SPY: error 162: no permissions"]
    assert result.not_over == [str(third)] and result.kept == {"SPY": 1, "QQQ": 1}
