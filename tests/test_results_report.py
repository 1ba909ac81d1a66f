"""``report``'s results: --journal (any file), the day's results section, --results,
--compare J1 J2 and --plot DIR, in process over journals built by hand (tests/test_results.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from supervisor.commands.cli import main
from supervisor.journal.day_chart import day_chart, price_in
from supervisor.journal.records import DayState, Position
from supervisor.journal.results import run_results
from supervisor.journal.store import Journal
from tests.test_results import CYCLES, D1, D2, A, B, C, T, U

pytestmark = pytest.mark.timeout(60)


def build(path: Path, positions: tuple[Position, ...] = (A, B, C)) -> Path:
    """A journal of two days: six cycles whose SPY signals name SPY's price, the positions."""
    with Journal(path) as j:
        for n, (day, ts) in enumerate(CYCLES, 1):
            j.start_cycle(n, day, ts)
            price = f"{600 + n:.2f}"
            j.record_signal(
                n, day, "SPY", "HOLD", 0.0, ("ema8 1 > ema21 0", f"close {price} > vwap 1.00")
            )
            j.record_signal(n, day, "QQQ", "HOLD", 0.0, (f"atm 500 for price {500 + n}",))
            j.end_cycle(n, ts + 1, ok=2, failed=0, seconds=1.0)
        for day in (D1, D2):
            j.save_day_state(DayState(day, 100_000.0))
        for p in positions:
            j.save_position(p, D1 if p.closed_ts is not None and p.closed_ts < U else D2)
    return path


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["report", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_any_journal_file_with_its_day_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = build(tmp_path / "elsewhere" / "backtest.sqlite")
    code, out, _ = report(capsys, "--journal", str(path))
    assert code == 0
    assert out.splitlines()[:2] == [f"day report {D2} (times America/New_York)", f"journal: {path}"]
    assert (
        "results: trades 1, wins 0 (0.0%), gross -100.00, commissions 2.00, net -102.00, "
        "max drawdown 102.00 (0.10%), exposure 100.0%"
    ) in out
    code, out, _ = report(capsys, "--journal", str(path), "--day", D1, "--json")
    day = json.loads(out)
    assert code == 0 and day["journal"] == str(path)
    assert day["results"]["run"]["net_pnl"] == 100.0 and day["results"]["days"] == [D1]
    code, _, err = report(capsys, "--journal", str(tmp_path / "none.sqlite"))
    assert code == 2 and f"no journal at {tmp_path / 'none.sqlite'}" in err


def test_results_of_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = build(tmp_path / "j.sqlite")
    code, out, _ = report(capsys, "--journal", str(path), "--results", "--json")
    with Journal(path, readonly=True) as j:
        expected = run_results(j).as_json()
    assert code == 0 and json.loads(out) == {
        "journal": str(path),
        **json.loads(json.dumps(expected)),
    }
    code, out, _ = report(capsys, "--journal", str(path), "--results")
    lines = out.splitlines()
    assert lines[0] == f"results {D1}..{D2} (2 days, 6 cycles)"
    assert lines[2].startswith(
        "run: trades 2, wins 1 (50.0%), gross +0.00, commissions 2.00, net -2.00"
    )
    assert "max drawdown 102.00 (0.10%)" in lines[2]
    assert lines[3].startswith("  daily Sharpe -0.11, Sortino -0.22;")
    code, out, _ = report(capsys, "--journal", str(path), "--results", "--day", D2, "--json")
    assert json.loads(out)["days"] == [D2]


def test_two_runs_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = build(tmp_path / "a.sqlite")
    # B: the same, but A's take-profit at 4.00 (+200, not +100)
    b = build(tmp_path / "b.sqlite", (replace(A, exit_price=4.0), B, C))
    code, out, _ = report(capsys, "--compare", str(a), str(b), "--json")
    both = json.loads(out)
    assert code == 0 and (both["a"]["journal"], both["b"]["journal"]) == (str(a), str(b))
    assert both["a"]["run"]["net_pnl"] == -2.0 and both["b"]["run"]["net_pnl"] == 98.0
    assert both["delta"]["net_pnl"] == 100.0 and both["delta"]["trades"] == 0
    assert "trades" not in both["a"]  # the lists of trades stay in each run's own report
    code, out, _ = report(capsys, "--compare", str(a), str(b))
    rows = {line.split("  ")[0]: line.split() for line in out.splitlines()}
    assert rows["net P&L"][-3:] == ["-2.00", "98.00", "+100.00"]
    assert rows["SPY net P&L"][3:] == ["100.00", "(1)", "200.00", "(1)", "+100.00"]
    code, _, err = report(capsys, "--compare", str(a), str(tmp_path / "missing.sqlite"))
    assert code == 2 and "no journal at" in err
    code, _, err = report(capsys, "--compare", str(a), str(b), "--plot", str(tmp_path), "--results")
    assert code == 2 and "not with --plot, --results" in err


def test_the_day_chart_reads_the_prices_the_signals_named(tmp_path: Path) -> None:
    assert price_in(["rsi 40.0 in [45, 75]", "close 671.45 < vwap 675.68"]) == 671.45
    assert price_in(["atm 671 for price 671.45"]) == 671.45
    assert price_in(["not enough bars (have 3, need 22)"]) is None
    with Journal(build(tmp_path / "j.sqlite"), readonly=True) as j:
        chart = day_chart(j, D1)
    assert chart.prices["SPY"] == ((T, 601.0), (T + 60, 602.0), (T + 120, 603.0), (T + 180, 604.0))
    assert chart.prices["QQQ"][0] == (T, 501.0)
    assert [(m.kind, m.symbol, m.ts, m.price) for m in chart.markers] == [
        ("entry", "SPY", T, 2.0),
        ("exit", "SPY", T + 120, 3.0),
    ]
    assert chart.markers[1].pnl == pytest.approx(100.0)


@pytest.mark.slow
def test_plot_writes_the_equity_curve_and_the_day_charts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = build(tmp_path / "j.sqlite")
    monkeypatch.setattr("supervisor.commands.report.MAX_DAY_CHARTS", 1)  # of the 2 days
    out = tmp_path / "plots"
    code, _, err = report(
        capsys, "--journal", str(path), "--from", D1, "--to", D2, "--plot", str(out)
    )
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["equity.png", f"{D2}-QQQ.png", f"{D2}-SPY.png"])
    assert all((out / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)
    assert "day charts of the latest 1 of the 2 days" in err
    assert f"report: 3 pictures in {out}" in err
