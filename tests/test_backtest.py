"""The backtest's market (supervisor/backtest/market.py) and the command end to end: prices at
the clock's now and nothing later, the model flag, fills at the quote, exit 2 on bad data."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from common.calendar import nyse, zone
from common.config import BacktestSettings
from common.messages import OptionContract, Right
from supervisor.backtest.data import DataSet, load
from supervisor.backtest.market import HistoryBroker
from supervisor.broker.modelled import model_quote
from supervisor.commands.cli import main
from supervisor.journal.store import Journal
from tools.backtest_data import write_bars

pytestmark = pytest.mark.timeout(60)

MON, TUE = date(2026, 11, 30), date(2026, 12, 1)
FRI = date(2026, 11, 27)  # the day after Thanksgiving: closes at 13:00


def at(day: date, hh: int, mm: int, ss: int = 0) -> float:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=zone()).timestamp()


class Clock:
    def __init__(self, ts: float) -> None:
        self.ts = ts

    def __call__(self) -> float:
        return self.ts


def market(
    folder: Path, first: date, last: date, settings: BacktestSettings | None = None
) -> tuple[HistoryBroker, DataSet, Clock]:
    data = load(folder, ["SPY"], first, last, nyse())
    clock = Clock(at(first, 9, 30))
    return HistoryBroker(data, clock, settings or BacktestSettings(), nyse()), data, clock


@pytest.fixture
def two_days(tmp_path: Path) -> Path:
    write_bars(tmp_path, "SPY", MON, TUE)
    return tmp_path


def test_the_quote_is_the_minute_s_open_while_it_runs_and_its_close_after(two_days: Path) -> None:
    broker, data, clock = market(two_days, MON, TUE)
    bars = data.bars["SPY"]
    i = bars.at_or_before(at(TUE, 10, 0))  # Tuesday's 31st bar
    clock.ts = at(TUE, 10, 0)
    quote = asyncio.run(broker.quote("SPY"))
    assert quote.last == bars.open[i] and (quote.bid, quote.ask) == (
        round(bars.open[i] - 0.01, 2),
        round(bars.open[i] + 0.01, 2),
    )
    assert quote.close == bars.close[389]  # Monday's last bar
    assert quote.volume == sum(bars.volume[390:i])  # Tuesday's completed bars only
    clock.ts = at(MON, 16, 30)  # after the close: the last bar's close
    assert asyncio.run(broker.quote("SPY")).last == bars.close[389]


def test_bars_are_completed_ones_and_hourly_ones_are_built_on_the_hour(two_days: Path) -> None:
    broker, data, clock = market(two_days, MON, TUE)
    clock.ts = at(MON, 10, 15, 30)
    minute = asyncio.run(broker.bars("SPY", 10))
    assert len(minute) == 10 and minute.ts[-1] == at(MON, 10, 14)  # 10:15 is still forming
    clock.ts = at(TUE, 10, 15)
    hourly = asyncio.run(broker.bars("SPY", 24 * 60, 60))
    starts = [datetime.fromtimestamp(t, zone()).strftime("%d %H:%M") for t in hourly.ts]
    # Monday's 09:00 bar holds 09:30-09:59, 15:00 the last hour; Tuesday's 10:00 is forming
    assert starts == [f"30 {h:02d}:00" for h in range(10, 16)] + ["01 09:00"]
    bars = data.bars["SPY"]
    assert hourly.open[-1] == bars.open[390] and hourly.close[-1] == bars.close[419]
    assert hourly.high[-1] == max(bars.high[390:420]) and hourly.volume[-1] == sum(
        bars.volume[390:420]
    )


def test_an_option_without_data_is_model_priced_and_counted(tmp_path: Path) -> None:
    write_bars(tmp_path, "SPY", MON, TUE)
    (tmp_path / "IV.csv").write_text("date,iv\n2026-12-01,0.31\n")
    settings = BacktestSettings(iv=0.18, option_half_spread=0.03)
    broker, data, clock = market(tmp_path, MON, TUE, settings)
    call = OptionContract("SPY", "20261204", 680.0, Right.CALL)
    clock.ts = at(MON, 11, 0)
    spot = data.bars["SPY"].open[90]
    [quote] = asyncio.run(broker.option_quotes([call]))
    assert quote == model_quote(call, spot, 0.18, clock.ts, 0.03)  # the setting's IV
    assert quote.ask > quote.last > quote.bid > 0
    clock.ts = at(TUE, 11, 0)
    [tuesday] = asyncio.run(broker.option_quotes([call]))
    assert tuesday.iv == 0.31  # IV.csv from its day on
    assert broker.modelled == 2 and dict(broker.modelled_days) == {
        "2026-11-30": 1,
        "2026-12-01": 1,
    }
    expired = OptionContract("SPY", "20261130", 680.0, Right.CALL)
    [gone] = asyncio.run(broker.option_quotes([expired]))  # Tuesday: Monday's has expired
    assert math.isnan(gone.bid) and math.isnan(gone.ask) and broker.modelled == 2


def test_an_options_file_answers_its_contracts_on_their_day_only(two_days: Path) -> None:
    (two_days / "SPY_options.csv").write_text(
        "ts,expiry,strike,right,bid,ask,iv\n"
        "2026-11-30T10:00:00-05:00,2026-12-04,680,C,4.10,4.20,0.17\n"
        "2026-11-30T10:05:00-05:00,20261204,680,C,4.30,4.40,\n"
    )
    broker, _, clock = market(two_days, MON, TUE)
    call = OptionContract("SPY", "20261204", 680.0, Right.CALL)
    seen = []
    for ts in (at(MON, 9, 59), at(MON, 10, 0), at(MON, 10, 7), at(TUE, 10, 0)):
        clock.ts = ts
        [q] = asyncio.run(broker.option_quotes([call]))
        seen.append((q.bid, q.ask))
    # before its first row: the model; then each row from its instant; not the next day
    assert seen[1:3] == [(4.10, 4.20), (4.30, 4.40)]
    assert broker.quoted == 2 and broker.modelled == 2
    clock.ts = at(MON, 10, 7)
    chain = asyncio.run(broker.chain("SPY"))
    assert (chain.expirations, chain.strikes) == (("20261204",), (680.0,))


def test_the_close_is_known_after_the_session_even_an_early_one(tmp_path: Path) -> None:
    write_bars(tmp_path, "SPY", FRI, MON)
    broker, data, clock = market(tmp_path, FRI, MON)
    clock.ts = at(FRI, 12, 59)
    assert asyncio.run(broker.closing_price("SPY", FRI)) is None
    clock.ts = at(FRI, 13, 0)
    assert asyncio.run(broker.closing_price("SPY", FRI)) == data.bars["SPY"].close[209]
    clock.ts = at(MON, 9, 45)
    chain = asyncio.run(broker.chain("SPY"))
    spot = data.bars["SPY"].open[210 + 15]
    assert "20261204" in chain.expirations and min(chain.strikes) < spot < max(chain.strikes)


def run_cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["backtest", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_day_of_bars_trades_at_the_quote_and_says_it_was_model_priced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, journal = tmp_path / "data", tmp_path / "bt.sqlite"
    write_bars(data_dir, "SPY", MON, MON)
    code, out, err = run_cli(
        "--data", str(data_dir), "--from", "2026-11-30", "--to", "2026-11-30",
        "--journal", str(journal), "--json", capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["cycles"], summary["symbol_cycles"], summary["model_priced"]) == (
        390,
        390,
        True,
    )
    assert summary["journal"] == str(journal) and set(summary["per_symbol"]) <= {"SPY"}
    assert summary["trades"] == summary["results"]["run"]["trades"] > 0
    assert summary["max_drawdown"] >= 0
    # every fill at the quote of its instant: entries at the ask, stops and exits at the bid
    broker, _, clock = market(data_dir, MON, MON)
    with Journal(journal, readonly=True) as j:
        positions = j.positions("2026-11-30")
    filled = [p for p in positions if p.entry_price is not None]
    assert filled
    for p in filled:
        clock.ts = p.filled_ts or 0.0
        [q] = asyncio.run(broker.option_quotes([p.contract]))
        assert p.entry_price == q.ask != (q.bid + q.ask) / 2
        if p.exit_reason in ("stop_loss", "expiry", "closed"):
            clock.ts = p.closed_ts or 0.0
            [q] = asyncio.run(broker.option_quotes([p.contract]))
            assert p.exit_price == q.bid
        elif p.exit_reason == "take_profit":
            clock.ts = p.closed_ts or 0.0
            [q] = asyncio.run(broker.option_quotes([p.contract]))
            assert p.exit_price == p.take_profit <= q.bid
    with sqlite3.connect(journal) as db:
        kinds = db.execute(
            "SELECT kind, key, ts FROM alerts WHERE kind = 'model_priced'"
        ).fetchall()
    first_cycle = at(MON, 9, 30)
    assert [(k, key) for k, key, _ in kinds] == [("model_priced", "options")]
    assert first_cycle <= kinds[0][2] < at(MON, 16, 0)  # the session clock's, not the wall's


def test_bad_data_is_exit_2_naming_the_line_and_nothing_is_journaled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, journal = tmp_path / "data", tmp_path / "bt.sqlite"
    path = write_bars(data_dir, "SPY", MON, MON)
    rows = path.read_text().splitlines(keepends=True)
    path.write_text("".join([*rows[:5], *rows[6:]]))
    code, out, err = run_cli(
        "--data", str(data_dir), "--from", "2026-11-30", "--to", "2026-11-30",
        "--journal", str(journal), capsys=capsys,
    )  # fmt: skip
    assert code == 2 and out == ""
    assert f"{path}: line 6: gap: no bars from 09:34 to 09:34 inside the session" in err
    assert not journal.exists()
    journal.write_text("")
    write_bars(data_dir, "SPY", MON, MON)
    code, _, err = run_cli(
        "--data", str(data_dir), "--from", "2026-11-30", "--to", "2026-11-30",
        "--journal", str(journal), capsys=capsys,
    )  # fmt: skip
    assert code == 2 and "exists; name another with --journal" in err


def offline_friday(tmp_path: Path, close_day: bool) -> list[Any]:
    """SPY bought at 10:00 on Friday 2026-12-04 (a same-day expiry), cycles until 10:02."""
    from supervisor.runtime.clock import SimClock
    from supervisor.runtime.offline import run_offline
    from tests.conftest import make_settings

    write_bars(tmp_path / "data", "SPY", FRIDAY, FRIDAY)
    settings = make_settings(
        tmp_path,
        universe={"symbols": ["SPY"]},
        strategy={"name": "tests.strategies:BuysEverySymbol"},
        options={"min_dte": 0, "expiry_rule": "nearest", "entry_price": "ask"},
    )
    data = load(tmp_path / "data", ["SPY"], FRIDAY, FRIDAY, nyse())
    times = [at(FRIDAY, 10, m) for m in range(3)]
    clock = SimClock(times[0], frozen=True)
    broker = HistoryBroker(data, clock.now, settings.backtest, nyse())
    journal = tmp_path / f"close-{close_day}.sqlite"
    asyncio.run(run_offline(settings, broker, clock, times, journal, close_day=close_day))
    with Journal(journal, readonly=True) as j:
        return j.positions("2026-12-04")


FRIDAY = date(2026, 12, 4)


def test_the_last_day_is_driven_to_its_close_by_the_expiry_exit(tmp_path: Path) -> None:
    [held] = offline_friday(tmp_path / "open", close_day=False)
    assert held.status == "open" and held.contract.expiry == "20261204"
    [closed] = offline_friday(tmp_path / "closed", close_day=True)
    exit_at = at(FRIDAY, 16, 0) - 15 * 60  # the close less risk.exit_before_expiry_min
    assert (closed.status, closed.exit_reason, closed.closed_ts) == ("closed", "expiry", exit_at)
    assert closed.intent_id == held.intent_id and closed.entry_price == held.entry_price


def test_a_range_without_a_session_is_exit_2_and_journals_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, journal = tmp_path / "data", tmp_path / "bt.sqlite"
    write_bars(data_dir, "SPY", MON, MON)
    code, out, err = run_cli(
        "--data", str(data_dir), "--from", "2026-12-05", "--to", "2026-12-06",
        "--journal", str(journal), capsys=capsys,
    )  # fmt: skip
    assert code == 2 and out == ""
    assert "no trading session from 2026-12-05 to 2026-12-06" in err
    assert not journal.exists()


def test_ctrl_c_mid_backtest_leaves_no_half_written_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import supervisor.commands.backtest as command

    real = command.run_offline

    async def interrupted(settings: Any, broker: Any, clock: Any, times: Any, *a: Any, **k: Any):
        def until_ctrl_c() -> Any:  # Ctrl-C after three cycles, as asyncio.run raises it
            for n, t in enumerate(times):
                if n == 3:
                    raise KeyboardInterrupt
                yield t

        return await real(settings, broker, clock, until_ctrl_c(), *a, **k)

    monkeypatch.setattr(command, "run_offline", interrupted)
    data_dir, journal = tmp_path / "data", tmp_path / "bt.sqlite"
    write_bars(data_dir, "SPY", MON, MON)
    code, out, err = run_cli(
        "--data", str(data_dir), "--from", "2026-11-30", "--to", "2026-11-30",
        "--journal", str(journal), capsys=capsys,
    )  # fmt: skip
    assert code == 0 and out == ""
    assert "interrupted" in err and f"{journal} removed" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no journal, -wal, .lock
