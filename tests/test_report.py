"""The day report: a journal with known content, rendered; every number worked out by hand."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from common.config import Settings
from common.messages import OptionContract, OptionQuote, OrderIntent, Right, Signal
from supervisor.commands.report import journal_to_read, render_json, render_text
from supervisor.journal.order_status import OrderStatus
from supervisor.journal.records import DayState
from supervisor.journal.store import Journal
from supervisor.journal.summary_types import DaySummary
from supervisor.trading.paper import open_from, step
from supervisor.trading.risk import RiskDecision

pytestmark = pytest.mark.timeout(30)

DAY = "2026-01-08"
T = datetime(2026, 1, 8, 15, 30, tzinfo=UTC).timestamp()  # 10:30 in New York
SPY_CALL = OptionContract("SPY", "20260109", 680.0, Right.CALL)
QQQ_PUT = OptionContract("QQQ", "20260109", 610.0, Right.PUT)


def intent(intent_id: str, contract: OptionContract, signal: Signal) -> OrderIntent:
    return OrderIntent(
        intent_id,
        1,
        contract.symbol,
        contract,
        signal,
        entry_limit=2.00,
        take_profit=3.00,
        stop_loss=1.40,
        premium=2.00,
        confidence=0.6,
        reasons=("hand-built",),
    )


def fill_journal(j: Journal) -> None:
    # cycles: two finished, one interrupted (no end)
    j.start_cycle(1, DAY, T)
    j.end_cycle(1, T + 2, ok=3, failed=0, seconds=2.0)
    j.start_cycle(2, DAY, T + 60)
    j.end_cycle(2, T + 61, ok=2, failed=1, seconds=1.0)
    j.start_cycle(3, DAY, T + 120)
    j.start_cycle(4, "2026-01-07", T - 86400)  # another day: never counted
    # signals: BUY 2, SELL 1, HOLD 2 (one of them skipped); AAPL failed once
    j.record_signal(1, DAY, "SPY", "BUY", 0.6, ("ema up",))
    j.record_signal(1, DAY, "QQQ", "SELL", 0.5, ("ema down",))
    j.record_signal(1, DAY, "AAPL", "HOLD", 0.0, ())
    j.record_signal(2, DAY, "SPY", "BUY", 0.6, ("ema up",))
    j.record_signal(2, DAY, "QQQ", "HOLD", 0.0, (), skipped="no usable price")
    j.record_signal(2, DAY, "AAPL", "HOLD", 0.0, (), error="Traceback: worker died")
    j.record_signal(4, "2026-01-07", "SPY", "SELL", 0.5, ())
    # intents and decisions: 2 accepted (3 + 2 contracts), 3 refused by 3 rules
    spy, qqq = intent("i1", SPY_CALL, Signal.BUY), intent("i2", QQQ_PUT, Signal.SELL)
    assert j.record_intent(spy, DAY) and j.record_intent(qqq, DAY)
    j.record_decision(RiskDecision("i1", True, 3, "ok", "3 contracts"), DAY, T + 1)
    j.record_decision(RiskDecision("i2", True, 2, "ok", "2 contracts"), DAY, T + 1)
    j.record_decision(RiskDecision("i1", False, 0, "duplicate", "sent today"), DAY, T + 61)
    j.record_decision(RiskDecision("i3", False, 0, "max_orders_per_cycle", "5"), DAY, T + 61)
    j.record_decision(RiskDecision("i4", False, 0, "sizing", "< 1"), DAY, T + 61)
    j.record_decision(RiskDecision("i9", False, 0, "sizing", "< 1"), "2026-01-07", T - 86400)
    # orders and a what-if
    j.orders.record("i1", "dry_run", OrderStatus.SIMULATED, 3, T + 1)
    j.orders.record("i2", "whatif", OrderStatus.CHECKED, 2, T + 1)
    j.orders.record_whatif("i2", 1234.5, 1000.0, 1.3, T + 1)
    # the book: SPY filled at 1.98, marked 2.45 (open, +141); QQQ filled at 2.00, stopped at
    # the 1.20 bid (closed, (1.20 - 2.00) x 2 x 100 = -160)
    p1 = step(open_from(spy, 3, T), OptionQuote(SPY_CALL, bid=1.90, ask=1.98), T + 5, 60)
    p1 = step(p1, OptionQuote(SPY_CALL, bid=2.40, ask=2.50), T + 65, 60)
    p2 = step(open_from(qqq, 2, T + 1), OptionQuote(QQQ_PUT, bid=1.95, ask=2.00), T + 5, 60)
    p2 = step(p2, OptionQuote(QQQ_PUT, bid=1.20, ask=1.30), T + 65, 60)
    assert (p1.status, p2.status) == ("open", "closed")
    for p in (p1, p2):
        j.save_position(p, DAY)
    # the kill switch tripped, with its alert, and a plain alert earlier
    j.save_day_state(DayState(DAY, 48000.0, True, "daily loss 3.10% >= limit 3%", T + 180))
    j.record_alert(DAY, "worker", "worker 2 respawned", T + 90)
    j.record_alert_once(DAY, "kill_switch", "daily_loss", "trading halted", T + 180)


@pytest.fixture
def summary(tmp_path: Path) -> DaySummary:
    with Journal(tmp_path / "journal.sqlite3") as j:
        fill_journal(j)
        return j.day_summary(DAY)


def test_summary_numbers(summary: dict[str, Any]) -> None:
    assert summary["cycles"] == {
        "count": 3,
        "first_ts": T,
        "last_ts": T + 120,
        "unfinished": 1,
        "symbols_ok": 5,
        "symbols_failed": 1,
        "failed_symbols": {"AAPL": 1},
    }
    assert summary["signals"] == {
        "by_kind": {"BUY": 2, "HOLD": 2, "SELL": 1},
        "skipped": 1,
        "errors": 1,
    }
    assert summary["decisions"] == {
        "accepted": 2,
        "refused": 3,
        "contracts": 5,
        "refused_by_rule": {"duplicate": 1, "max_orders_per_cycle": 1, "sizing": 1},
    }
    assert summary["pnl"]["realized"] == pytest.approx(-160.0)
    assert summary["pnl"]["unrealized"] == pytest.approx(141.0)
    assert summary["pnl"]["total"] == pytest.approx(-19.0)
    assert summary["kill_switch"] == {
        "halted": True,
        "reason": "daily loss 3.10% >= limit 3%",
        "ts": T + 180,
        "start_equity": 48000.0,
    }


def test_render_text(summary: dict[str, Any]) -> None:
    text = render_text(summary)
    assert text.splitlines() == [
        "day report 2026-01-08 (times UTC)",
        "cycles: 3, first 15:30:00, last 15:32:00, unfinished 1 | symbols ok 5 failed 1",
        "failed symbols: AAPL 1",
        "signals: BUY 2, HOLD 2, SELL 1 | skipped 1 | errors 1",
        "intents: 2 journaled | decisions: accepted 2 (5 contracts), refused 3",
        "rejections by rule: duplicate 1, max_orders_per_cycle 1, sizing 1",
        "orders: dry_run simulated 1 (3 contracts), whatif checked 1 (2 contracts)",
        "fills: 0, commission 0.00",
        "what-if: 1",
        "  QQQ 20260109 610P: init margin +1,234.50, maint margin +1,000.00, "
        "commission 1.30 at 15:30:01",
        "positions: opened 2, open 1, closed 1",
        # the order's side first, then the signal that asked for it
        "  open   BUY 3 x SPY 20260109 680C (signal BUY, confidence 0.60) entry 1.98 "
        "(limit 2.00) tp 3.00 sl 1.40 open mark 2.45 unrealized +141.00",
        "  closed BUY 2 x QQQ 20260109 610P (signal SELL, confidence 0.60) entry 2.00 "
        "(limit 2.00) tp 3.00 sl 1.40 stop_loss exit 1.20 realized -160.00",
        "P&L: realized -160.00, unrealized +141.00, total -19.00",
        "kill switch: HALTED at 15:33:00: daily loss 3.10% >= limit 3% (start equity 48,000.00)",
        "alerts: 2",
        "  15:31:30 worker: worker 2 respawned",
        "  15:33:00 kill_switch [daily_loss]: trading halted",
    ]


def test_render_text_in_the_exchange_time_zone(summary: dict[str, Any]) -> None:
    text = render_text(summary, tz="America/New_York")
    assert "cycles: 3, first 10:30:00, last 10:32:00" in text
    assert "kill switch: HALTED at 10:33:00" in text


def test_render_json_parses_and_matches(summary: dict[str, Any]) -> None:
    parsed = json.loads(render_json(summary))
    assert parsed == summary
    assert parsed["positions"]["closed"][0]["exit_reason"] == "stop_loss"
    assert parsed["positions"]["open"][0]["pnl"] == pytest.approx(141.0)
    assert parsed["whatifs"][0]["init_margin_change"] == 1234.5
    assert parsed["orders"] == [
        {"mode": "dry_run", "status": "simulated", "count": 1, "quantity": 3},
        {"mode": "whatif", "status": "checked", "count": 1, "quantity": 2},
    ]


def test_an_empty_day_renders_and_json_has_no_nan(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite3") as j:
        empty = j.day_summary("2026-01-10")
    text = render_text(empty)
    assert "cycles: 0, first n/a, last n/a, unfinished 0 | symbols ok 0 failed 0" in text
    assert "signals: none | skipped 0 | errors 0" in text
    assert "P&L: realized +0.00, unrealized +0.00, total +0.00" in text
    assert "kill switch: off (start equity n/a)" in text
    assert json.loads(render_json({"x": math.nan, "y": (1.0, math.inf)})) == {
        "x": None,
        "y": [1.0, None],
    }


def _report_cli(tmp_path: Path, *args: str, extra: str = "") -> Any:
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    config = tmp_path / "settings.yaml"
    config.write_text(
        f"{extra}execution:\n  journal_path: {tmp_path / 'journal-{broker}.sqlite'}\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "supervisor", "report", "--config", str(config), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )


@pytest.fixture
def journal_file(tmp_path: Path) -> Path:
    path = tmp_path / "journal-stub.sqlite"
    with Journal(path) as j:
        fill_journal(j)
    return path


@pytest.mark.parametrize(
    "flags, said",
    [
        (("--day", "2025-13-01"), "--day '2025-13-01': not a date as YYYY-MM-DD"),
        (("--day", "yesterday"), "--day 'yesterday': not a date"),
        (("--from", "2026-02-30"), "--from '2026-02-30': not a date"),
        (("--from", "2026-01-09", "--to", "2026-01-07"), "--from 2026-01-09 is after --to"),
        (("--day", "2026-01-08", "--to", "2026-01-09"), "give one or the other"),
    ],
)
def test_bad_dates_are_exit_2_naming_the_flag(
    tmp_path: Path, journal_file: Path, flags: tuple[str, ...], said: str
) -> None:
    done = _report_cli(tmp_path, *flags)
    assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr


@pytest.mark.timeout(150)  # four cold starts of the CLI (~1.7 s each alone): CPU-bound
def test_a_range_reports_each_journaled_day_and_an_empty_day_says_so(
    tmp_path: Path, journal_file: Path
) -> None:
    done = _report_cli(tmp_path, "--from", "2026-01-01", "--to", "2026-01-31", "--json")
    assert done.returncode == 0, done.stderr
    assert [d["day"] for d in json.loads(done.stdout)] == ["2026-01-07", DAY]
    empty = _report_cli(tmp_path, "--day", "2026-01-20")
    assert empty.returncode == 0
    assert empty.stdout.strip() == (
        f"day report 2026-01-20: nothing journaled that day in {journal_file}"
    )
    none = _report_cli(tmp_path, "--from", "2027-01-01")
    assert none.returncode == 0 and none.stdout == f"no days in {journal_file} from 2027-01-01\n"
    # a script reading --json gets a value, not nothing: no days, []
    none_json = _report_cli(tmp_path, "--from", "2027-01-01", "--json")
    assert none_json.returncode == 0 and json.loads(none_json.stdout) == []


def test_a_reader_that_goes_away_is_not_a_traceback(tmp_path: Path, journal_file: Path) -> None:
    import subprocess
    import sys
    from datetime import date, timedelta

    from tests.conftest import REPO_ROOT

    with Journal(journal_file) as j:  # far more report than a pipe holds
        for n in range(300):
            day = str(date(2025, 1, 1) + timedelta(days=n))
            j.start_cycle(100 + n, day, T - 86400 * (400 - n))
            j.end_cycle(100 + n, T - 86400 * (400 - n) + 1, ok=3, failed=0, seconds=1.0)

    config = tmp_path / "settings.yaml"
    config.write_text(f"execution:\n  journal_path: {tmp_path / 'journal-{broker}.sqlite'}\n")
    pipeline = subprocess.run(
        f"{sys.executable} -m supervisor report --config {config} --from 2025-01-01 | head -1",
        shell=True,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pipeline.stdout.startswith("day report 2025-01-01")
    assert "Traceback" not in pipeline.stderr and "BrokenPipe" not in pipeline.stderr


def test_a_journal_a_failed_connect_left_empty_is_not_a_second_choice(
    tmp_path: Path, journal_file: Path
) -> None:
    # Given the stub's journal with days, and the ibkr one a run that never connected created
    Journal(tmp_path / "journal-ibkr.sqlite").close()
    settings = Settings().model_copy(deep=True)
    template = str(tmp_path / "journal-{broker}.sqlite")
    settings = settings.model_copy(
        update={"execution": settings.execution.model_copy(update={"journal_path": template})}
    )
    # Then report reads the one with days, without asking for --broker
    assert journal_to_read(settings, None) == journal_file
    assert journal_to_read(settings, "ibkr") == tmp_path / "journal-ibkr.sqlite"


def test_an_empty_journal_says_no_days_and_its_json_is_a_value(tmp_path: Path) -> None:
    path = tmp_path / "journal-ibkr.sqlite"
    Journal(path).close()
    done = _report_cli(tmp_path)
    assert done.returncode == 0 and done.stdout == f"no days in {path}\n", done.stdout
    as_json = _report_cli(tmp_path, "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout) == [], as_json.stdout
    results = _report_cli(tmp_path, "--json", "--results")
    assert json.loads(results.stdout)["run"]["trades"] == 0, results.stdout


def test_report_reads_the_journal_of_the_settings_broker_and_names_it(
    tmp_path: Path, journal_file: Path
) -> None:
    # Given the stub's journal with days, and an ibkr one a run that never connected left
    ibkr = tmp_path / "journal-ibkr.sqlite"
    Journal(ibkr).close()
    # When the settings trade ibkr: their journal, not the stub's day (with a hint to it)
    empty = _report_cli(tmp_path, extra="broker: ibkr\n")
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout == f"no days in {ibkr} ({journal_file} has days: --broker stub)\n"
    # and once both hold days, still theirs (not "several journals: name one"), named
    with Journal(ibkr) as j:
        fill_journal(j)
    both = _report_cli(tmp_path, extra="broker: ibkr\n")
    assert both.returncode == 0, both.stderr
    assert both.stdout.splitlines()[1] == f"journal: {ibkr}"
    # --broker says otherwise; the JSON names its journal too
    stub = _report_cli(tmp_path, "--broker", "stub", "--json", extra="broker: ibkr\n")
    assert json.loads(stub.stdout)["journal"] == str(journal_file)


def test_no_journal_of_the_settings_broker_names_the_one_there_is(
    tmp_path: Path, journal_file: Path
) -> None:
    done = _report_cli(tmp_path, extra="broker: sim\n")
    assert done.returncode == 2
    assert f"no journal at {tmp_path / 'journal-sim.sqlite'}: run the bot first" in done.stderr
    assert f"({journal_file} has days: --broker stub)" in done.stderr


@pytest.mark.parametrize("flag", [["--json"], ["--results"], ["--plot", "plots"]])
def test_html_with_a_flag_it_would_ignore_is_refused(
    flag: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a script's `report --html F --json | jq` got the page's text line on stdout, not JSON
    from supervisor.commands.cli import main

    journal, out = tmp_path / "j.sqlite", tmp_path / "day.html"
    Journal(journal).close()
    assert main(["report", "--journal", str(journal), "--html", str(out), *flag]) == 2
    _, err = capsys.readouterr()
    assert f"report --html writes one day's page: not with {flag[0]}" in err
    assert not out.exists()
