"""Results a trader reads (supervisor/journal/results.py): hand-built trades, every figure
worked out by hand, and the same read back from a journal."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from common.messages import OptionContract, Right
from supervisor.journal.records import DayState, Position
from supervisor.journal.results import (
    Held,
    compute,
    exposure,
    max_drawdown,
    run_results,
    sharpe,
    sortino,
    trade_of,
)
from supervisor.journal.store import Journal

pytestmark = pytest.mark.timeout(30)

D1, D2 = "2026-01-08", "2026-01-09"
T = datetime(2026, 1, 8, 15, 30, tzinfo=UTC).timestamp()  # 10:30 in New York
U = T + 86400
SPY = OptionContract("SPY", "20260109", 680.0, Right.CALL)
QQQ = OptionContract("QQQ", "20260109", 610.0, Right.PUT)
CYCLES = [(D1, T), (D1, T + 60), (D1, T + 120), (D1, T + 180), (D2, U), (D2, U + 60)]


def position(
    intent_id: str, contract: OptionContract, quantity: int, filled: float, entry: float
) -> Position:
    return Position(
        intent_id,
        contract.symbol,
        contract,
        quantity,
        entry,
        entry * 1.5,
        entry * 0.7,
        "open",
        filled,
        entry_price=entry,
        filled_ts=filled,
        mark=entry,
    )


def closed(p: Position, ts: float, price: float, reason: str, commission: float = 0) -> Position:
    return replace(
        p,
        status="closed",
        exit_price=price,
        closed_ts=ts,
        exit_reason=reason,  # type: ignore[arg-type]
        commission=commission,
        mark=price,
    )


# A: SPY 1 x 2.00 -> 3.00 on D1 (+100); B: QQQ 2 x 2.00 -> 1.50 on D2 with 2.00 commission
# (gross -100, net -102); C: SPY 1 x 1.00 still open, marked 1.50 (+50 unrealized)
A = closed(position("a", SPY, 1, T, 2.0), T + 120, 3.0, "take_profit")
B = closed(position("b", QQQ, 2, U, 2.0), U + 60, 1.5, "stop_loss", commission=2.0)
C = replace(position("c", SPY, 1, U + 60, 1.0), mark=1.5)
HELD = [Held(A, D1), Held(B, D2), Held(C, None)]
EQUITY = {D1: 100_000.0, D2: 100_000.0}


def test_the_run_figures_by_hand() -> None:
    r = compute([D1, D2], CYCLES, HELD, EQUITY)
    f = r.run
    assert (f.cycles, f.trades, f.wins, f.win_rate) == (6, 2, 1, 0.5)
    assert (f.gross_pnl, f.commissions, f.net_pnl) == pytest.approx((0.0, 2.0, -2.0))
    # 100,000 -> 100,100 (A) -> 99,998 (B) -> 100,048 (C's mark): fell 102 from 100,100
    assert [x for point in r.equity for x in point] == pytest.approx(
        [T, 100_000.0, T + 120, 100_100.0, U + 60, 99_998.0, U + 60, 100_048.0]
    )
    assert f.max_drawdown == pytest.approx(102.0)
    assert f.max_drawdown_pct == pytest.approx(102.0 / 100_100.0)
    # held in T, T+60 (A), U (B) and U+60 (C; B's exit at U+60 is not a holding): 4 of 6
    assert f.exposure == pytest.approx(4 / 6)
    daily = [100 / 100_000, -102 / 100_000]
    mean = (daily[0] + daily[1]) / 2
    spread = math.sqrt(((daily[0] - mean) ** 2 + (daily[1] - mean) ** 2) / 1)
    assert f.sharpe_daily == pytest.approx(mean / spread * math.sqrt(252))
    assert f.sortino_daily == pytest.approx(mean / math.sqrt(daily[1] ** 2 / 2) * math.sqrt(252))
    assert (r.open_positions, r.unrealized, r.start_equity) == (1, pytest.approx(50.0), 100_000)
    assert [(t.intent_id, t.day, t.gross_pnl, t.net_pnl) for t in r.trades] == [
        ("a", D1, pytest.approx(100.0), pytest.approx(100.0)),
        ("b", D2, pytest.approx(-100.0), pytest.approx(-102.0)),
    ]


def test_per_day_and_per_symbol() -> None:
    r = compute([D1, D2], CYCLES, HELD, EQUITY)
    d1, d2 = (d.figures for d in r.by_day)
    assert (d1.cycles, d1.trades, d1.net_pnl, d1.exposure) == (4, 1, 100.0, 0.5)
    assert (d2.cycles, d2.trades, d2.net_pnl, d2.exposure) == (2, 1, -102.0, 1.0)
    assert d1.sharpe_daily is None and d2.max_drawdown == pytest.approx(102.0)  # from 0
    by = {s.symbol: s.figures for s in r.by_symbol}
    assert sorted(by) == ["QQQ", "SPY"]
    assert (by["SPY"].trades, by["SPY"].net_pnl, by["SPY"].exposure) == (1, 100.0, 0.5)
    assert (by["QQQ"].trades, by["QQQ"].net_pnl, by["QQQ"].exposure) == (1, -102.0, 1 / 6)


def test_days_chosen_and_an_empty_run() -> None:
    only = compute([D2], [c for c in CYCLES if c[0] == D2], HELD, EQUITY)
    assert [t.intent_id for t in only.trades] == ["b"]
    assert only.run.sharpe_daily is None  # one day: no ratio, not a made-up one
    assert isinstance(only.by_symbol[0].figures.gross_pnl, float)
    quiet = compute([D1], CYCLES[:1], [], EQUITY).run  # no trade: money is 0.00, not 0
    assert [type(x) for x in (quiet.gross_pnl, quiet.commissions, quiet.net_pnl)] == [float] * 3
    empty = compute([], [], [], {})
    assert (empty.run.trades, empty.run.win_rate, empty.run.exposure, empty.equity) == (
        0,
        None,
        None,
        (),
    )


def test_a_past_range_leaves_the_open_marks_out() -> None:
    r = compute([D1, D2], CYCLES, HELD, EQUITY, marked_at_end=False)
    assert r.unrealized == 0.0 and r.equity[-1] == (U + 60, pytest.approx(99_998.0))


def test_the_pure_measures() -> None:
    assert max_drawdown([0, 10, 4, 12, 1, 5]) == (11, 12)
    assert max_drawdown([1, 2, 3]) == (0.0, 1)
    assert sharpe([1.0]) is None and sharpe([1.0, 1.0]) is None  # no spread
    assert sortino([1.0, 2.0]) is None  # no losing day
    assert sharpe([1.0, 3.0]) == pytest.approx(2 / math.sqrt(2) * math.sqrt(252))
    assert exposure([0.0, 1.0, 2.0, 3.0], [(0.5, 2.0), (0.8, 1.5)]) == 0.25  # overlap once
    assert exposure([0.0, 1.0], [(0.0, math.inf)]) == 1.0
    assert exposure([], []) is None


def test_json_is_rounded_and_strict() -> None:
    out = compute([D1, D2], CYCLES, HELD, EQUITY).as_json()
    run = out["run"]
    assert isinstance(run, dict) and run["net_pnl"] == -2.0 and run["exposure"] == 0.6667
    assert out["equity"][0] == [T, 100_000.0]  # type: ignore[index]


def test_read_from_a_journal_matches_the_day_report(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:
        for n, (day, ts) in enumerate(CYCLES, 1):
            j.start_cycle(n, day, ts)
            j.end_cycle(n, ts + 1, ok=2, failed=0, seconds=1.0)
        j.save_day_state(DayState(D1, 100_000.0))
        j.save_day_state(DayState(D2, 100_000.0))
        j.save_position(A, D1)
        j.save_position(B, D2)
        j.save_position(C, D2)
        never = replace(position("n", SPY, 1, T, 2.0), status="closed", entry_price=None)
        j.save_position(replace(never, filled_ts=None, exit_reason="cancelled"), D1)
        r = run_results(j)
        assert r == compute([D1, D2], CYCLES, HELD, EQUITY)  # the unfilled entry: no trade
        for d in r.by_day:
            assert d.figures.net_pnl == pytest.approx(j.day_summary(d.day)["pnl"]["realized"])
        first = run_results(j, [D1, "2026-02-01"])  # a day without cycles is none
        assert first.days == (D1,) and first.unrealized == 0.0 and first.run.trades == 1


def test_a_live_trade_sold_in_parts_counts_its_commissions_as_ibkr_does() -> None:
    # 4 bought at 2.00 (entry commission 2.60), sold 4 at 2.50 in parts (exit commission 2.60)
    p = replace(
        closed(position("live", SPY, 4, T, 2.0), T + 60, 2.5, "take_profit", commission=5.2),
        exited=4,
        exit_commission=2.6,
    )
    trade = trade_of(Held(p, D1))
    assert (trade.quantity, trade.gross_pnl, trade.commission) == (4, 200.0, pytest.approx(5.2))
    assert trade.net_pnl == pytest.approx(p.realized_pnl) == pytest.approx(194.8)


def test_the_sessions_of_the_run_for_a_picture_without_nights() -> None:
    from supervisor.observe.results_plot import session_x

    r = compute([D1, D2], CYCLES, HELD, EQUITY)
    assert r.sessions == ((D1, T, T + 180), (D2, U, U + 60))
    # D1's start at 0, its last cycle at the end of its step; the night after it stays there;
    # D2 from 1
    x = session_x([T, T + 90, T + 180, T + 3600, U, U + 30], r.sessions)
    assert x == pytest.approx([0.0, 0.49, 0.98, 0.98, 1.0, 1.49])
