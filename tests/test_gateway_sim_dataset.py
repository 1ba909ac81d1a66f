"""The simulator serving a backtest data set as its market (``market.data``): the bars served
are the files' rows, prices follow the data, a bad file is a scenario error naming it."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from array import array
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.calendar import nyse
from supervisor.backtest.data import MinuteBars
from supervisor.commands.fetch_history import row_text, sessions, write_days
from tests.conftest import REPO_ROOT
from tests.conftest_sim import DEFAULT_SCENARIO
from tests.sessions import TUESDAY_MORNING
from tools.gateway_sim import ScenarioError, load_scenario, scenario_from_dict
from tools.gateway_sim.codec import ContractFields
from tools.gateway_sim.datapath import DataPath
from tools.gateway_sim.hours import SessionClock
from tools.gateway_sim.market import Market
from tools.gateway_sim.scenario import Scenario

TZ = "America/New_York"
DAYS = sessions(nyse(), date(2026, 11, 27), date(2026, 12, 1))  # a half day, a weekend


def base_scenario(**market: Any) -> dict[str, Any]:
    data = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    data["clock"]["start"] = TUESDAY_MORNING.isoformat()
    if market:
        data["market"] = market
    return data


def market_of(scenario: Scenario) -> Market:
    return Market(scenario, SessionClock(scenario.session))


def stock(market: Market, symbol: str) -> Any:
    fields = ContractFields(0, symbol, "STK", "", 0.0, "", "", "SMART", "", "USD", "", "")
    return market.book.resolve(fields, market.now())[0]


def row_of(bar: Any, scale: float) -> tuple[float, float, float, float, float, float]:
    o, h, low, c = (round(scale * p, 2) for p in (bar.open, bar.high, bar.low, bar.close))
    return (float(bar.start), o, h, low, c, float(bar.volume))


def write_data(folder: Path, scale: float = 1.0) -> Market:
    """The synthetic market's regular-session bars of DAYS as data files (prices x scale)."""
    synthetic = market_of(scenario_from_dict(base_scenario()))
    folder.mkdir(parents=True, exist_ok=True)
    for symbol in ("SPY", "QQQ", "AAPL"):
        inst, days = stock(synthetic, symbol), {}
        for s in DAYS:
            bars = synthetic.bars(inst, s.close_ts, 86_400, 60, True, s.close_ts)
            days[s.day] = [row_text(row_of(b, scale), TZ) for b in bars]
        write_days(folder / f"{symbol}.csv", days)
    return synthetic


def test_the_bars_served_are_the_files_rows_and_none_where_it_has_none(tmp_path: Path) -> None:
    # Given the synthetic market's bars written as a data set, and a scenario serving it
    synthetic = write_data(tmp_path / "data")
    served = market_of(
        scenario_from_dict(
            base_scenario(
                data=str(tmp_path / "data"), first_day="2026-11-27", last_day="2026-12-01"
            )
        )
    )
    spy, now = stock(served, "SPY"), served.now()
    # When five days of 1-minute bars are asked for (from Thanksgiving), extended hours too
    got = served.bars(spy, now, 5 * 86_400, 60, False, now)
    want = synthetic.bars(stock(synthetic, "SPY"), now, 5 * 86_400, 60, True, now)

    # Then they are the regular-session rows exactly (no bar where the data has none: not
    # the pre-market, not the weekend); the bar in progress is cut at now
    def plain(bars: list[Any]) -> list[tuple[Any, ...]]:
        return [(b.start, b.open, b.high, b.low, b.close, b.volume) for b in bars]

    assert plain(got[:-1]) == plain(want[:-1]) and len(got) == 210 + 390 + 60
    # And the chain is laid around the data's first open
    assert served.scenario.symbols[0].price == got[0].open


def test_prices_follow_the_data_set_not_the_synthetic_path(tmp_path: Path) -> None:
    write_data(tmp_path / "data", scale=2.0)
    served = market_of(scenario_from_dict(base_scenario(data=str(tmp_path / "data"))))
    synthetic = market_of(scenario_from_dict(base_scenario()))
    now = served.now()
    doubled = served.quote(stock(served, "AAPL"), now).last
    plain = synthetic.quote(stock(synthetic, "AAPL"), now).last
    assert doubled is not None and plain is not None
    assert doubled == pytest.approx(2 * plain, rel=0.002)


def test_a_bad_data_file_is_a_scenario_error_naming_file_and_line(tmp_path: Path) -> None:
    write_data(tmp_path / "data")
    spy = tmp_path / "data" / "SPY.csv"
    lines = spy.read_text().splitlines()
    lines[2], lines[3] = lines[3], lines[2]  # two rows out of order
    spy.write_text("\n".join(lines) + "\n")
    file = tmp_path / "scenario.yaml"  # the data folder named relative to the file
    file.write_text(yaml.safe_dump(base_scenario(data="data", first_day="2026-11-27")))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(file)
    text = str(caught.value)
    assert f"market.data {tmp_path / 'data'}" in text and "SPY.csv" in text
    assert "line 4" in text or "line 3" in text


def test_a_data_path_between_and_inside_bars() -> None:
    col = lambda *v: array("d", v)  # noqa: E731
    bars = MinuteBars(
        "X", col(600, 660), col(10, 11), col(12, 13), col(9, 10), col(11, 12), col(100, 50)
    )
    path = DataPath(bars, key=1)
    assert path.price(0) == 10  # before the data: its first open
    assert path.price(630) == 10.5  # half way from open to close
    assert path.price(690) == 11.5 and path.price(5_000) == 12  # after: the last close
    cut = path.minute_bar(11, until=690)  # the bar in progress, half way
    assert (cut.open, cut.close, cut.volume) == (11, 11.5, 25)
    assert not path.has_minute(12) and path.minute_bar(12).volume == 0
    assert path.day_volume(600, 660) == 100 and path.day_volume(0, 10_000) == 150


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_run_sim_trades_the_data_sets_day_with_the_backtests_signals(tmp_path: Path) -> None:
    # Given a data set at twice the synthetic prices and a scenario that serves it
    write_data(tmp_path / "data", scale=2.0)
    scenario = tmp_path / "day.yaml"
    scenario.write_text(yaml.safe_dump(base_scenario(data="data", first_day="2026-11-27")))
    # When the bot runs two cycles against it
    cmd = [sys.executable, "-m", "supervisor", "run", "--sim", "--scenario", str(scenario)]
    done = subprocess.run(
        [*cmd, "--cycles", "2", "--interval", "0.5"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "SUPERVISOR_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=110,
    )
    # Then every symbol was served, and the prices the bot saw are the data's
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("symbols ok 3/3") == 2, done.stdout
    assert "violations 0" in done.stderr
    events = map(json.loads, (tmp_path / "var" / "bot.jsonl").read_text().splitlines())
    closes = [  # the signal's reasons name the last close it saw ("close 1343.90 > vwap ...")
        float(found.group(1))
        for event in events
        if event.get("event") == "symbol_result" and event.get("symbol") == "SPY"
        for found in [re.search(r"close (\d+\.\d+)", event["message"])]
        if found
    ]
    assert len(closes) == 2 and all(1_200 < c < 1_500 for c in closes), closes  # ~2 x 670
    # And a backtest of the same data signals the same at the same minute (the bars and the
    # price the signal reads are the data's on both paths; the chains differ, so the
    # strike reasons after the first four may too)
    backtest = [sys.executable, "-m", "supervisor", "backtest", "--data", "data"]
    backtest += ["--from", "2026-12-01", "--to", "2026-12-01", "--journal", "bt.sqlite"]
    done = subprocess.run(
        backtest,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "SUPERVISOR_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    at = TUESDAY_MORNING.timestamp()
    sim_signals = signals(tmp_path / "var" / "journal-sim.sqlite", "c.cycle_id = 1", ())
    bt_signals = signals(tmp_path / "bt.sqlite", "c.started_ts = ?", (at,))
    assert sim_signals == bt_signals and len(sim_signals) == 3, (sim_signals, bt_signals)


def signals(journal: Path, where: str, args: tuple[float, ...]) -> list[tuple[Any, ...]]:
    query = (
        "SELECT s.symbol, s.signal, s.confidence, s.reasons FROM signals s "
        f"JOIN cycles c USING (cycle_id) WHERE {where} ORDER BY s.symbol"
    )
    with closing(sqlite3.connect(journal)) as db:
        rows = db.execute(query, args).fetchall()
    return [(sym, sig, conf, json.loads(reasons)[:4]) for sym, sig, conf, reasons in rows]


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_run_sim_on_its_own_recording_decides_as_the_recorded_run(tmp_path: Path) -> None:
    # Given a run on the default scenario, recorded (recording.enabled is on for sim)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    base = [sys.executable, "-m", "supervisor", "run", "--sim", "--cycles", "2"]
    base += ["--interval", "0.5"]
    first, second = tmp_path / "first", tmp_path / "second"
    for home in (first, second):
        home.mkdir()
    done = subprocess.run(
        base,
        cwd=first,
        env={**env, "SUPERVISOR_HOME": str(first)},
        capture_output=True,
        text=True,
        timeout=80,
    )
    assert done.returncode == 0, done.stderr
    (recording,) = (first / "var" / "recordings").iterdir()
    # When the simulator serves that recording as its market (clock: its first cycle)
    scenario = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    scenario["clock"]["start"] = None
    scenario["market"] = {"recording": str(recording.relative_to(tmp_path))}
    (tmp_path / "again.yaml").write_text(yaml.safe_dump(scenario))
    done = subprocess.run(
        [*base, "--scenario", str(tmp_path / "again.yaml")],
        cwd=second,
        env={**env, "SUPERVISOR_HOME": str(second)},
        capture_output=True,
        text=True,
        timeout=80,
    )
    assert done.returncode == 0, done.stderr

    # Then the second run journals the same signals (hourly whale figures included), the
    # same intents and the same risk decisions
    def journal(home: Path) -> tuple[list[Any], ...]:
        queries = (
            "SELECT cycle_id, symbol, signal, confidence, reasons FROM signals",
            "SELECT intent_id, cycle_id, symbol, strike, option_right, entry_limit, take_profit,"
            " stop_loss, bid, ask FROM intents",
            "SELECT intent_id, accepted, quantity, rule FROM decisions",
        )
        with closing(sqlite3.connect(home / "var" / "journal-sim.sqlite")) as db:
            return tuple(sorted(db.execute(q).fetchall()) for q in queries)

    recorded, served = journal(first), journal(second)
    assert served == recorded and len(recorded[0]) == 6 and recorded[1], (recorded, served)
