"""How fast a backtest runs, against the stub pipeline measured beside it on this machine.

    python tools/bench_backtest.py [--days 5] [--repeat 3] [--out var/bench-backtest.json]

Writes ``--days`` sessions of synthetic 1-minute bars for SPY, QQQ and AAPL (tools/
backtest_data.py, from Monday 2026-11-30 on), then alternates, ``--repeat`` times each:

    backtest  the command's own path (data loaded and checked, HistoryBroker, run_offline,
              the last day closed): its cycles' symbol-cycles a second, and its whole time
    stub      tools/bench_stub.py's sequential run of the same three symbols and as many
              cycles (the stub pipeline in one process, the pool's baseline)

and reports the medians, their ratio (the issue's goal: >= 0.5), and a year of the three
symbols (252 sessions x 390 minutes) extrapolated from the backtest's whole time (goal: <= 15
minutes), at its wall time and at its CPU time (the backtest is one process on one core: on
a machine nobody else uses, its wall time); ``--days 252`` runs the year itself. Prints JSON
and writes it to ``--out``. A benchmark, not a test: a busy machine makes both slower, the
ratio less so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.calendar import nyse  # noqa: E402
from common.settings_file import parse_settings  # noqa: E402
from supervisor.backtest.data import count_cycles, load  # noqa: E402
from supervisor.commands.backtest import Plan, backtest  # noqa: E402
from tools.backtest_data import write_data  # noqa: E402
from tools.bench_stub import sequential  # noqa: E402

SYMBOLS = ("SPY", "QQQ", "AAPL")
FIRST = date(2026, 11, 30)
YEAR_CYCLES = 252 * 390


def settings_for(work: Path) -> Any:
    return parse_settings(
        {
            "universe": {"symbols": list(SYMBOLS)},
            "schedule": {"interval_s": 0, "regular_hours_only": False},
            "logging": {"level": "WARNING", "json_path": str(work / "bench.jsonl")},
            "execution": {"journal_path": str(work / "journal.sqlite")},
        },
        "bench",
        environ={},
    )


def last_day(days: int) -> date:
    """The ``days``-th session from FIRST by the exchange calendar."""
    day, found = FIRST, 0
    while True:
        if nyse().session(day) is not None:
            found += 1
            if found == days:
                return day
        day += timedelta(days=1)


def one_backtest(work: Path, folder: Path, last: date, n: int) -> dict[str, Any]:
    journal = work / f"backtest-{n}.sqlite"
    settings = settings_for(work)
    started, cpu = time.perf_counter(), time.process_time()
    data = load(folder, SYMBOLS, FIRST, last, nyse())
    loaded = time.perf_counter() - started
    run, broker = asyncio.run(backtest(settings, data, Plan(folder, FIRST, last, SYMBOLS, journal)))
    total, cpu = time.perf_counter() - started, time.process_time() - cpu
    for path in work.glob(f"{journal.name}*"):
        path.unlink()
    return {
        "symbol_cycles_per_s": round(run.symbol_cycles / run.seconds, 1),
        "cycles": run.cycles,
        "cycles_s": round(run.seconds, 2),
        "load_s": round(loaded, 2),
        "total_s": round(total, 2),
        # one process on one core: its CPU time is what an idle machine's wall time would be
        "cpu_s": round(cpu, 2),
        "model_priced": broker.modelled > 0,
    }


def one_stub(work: Path, cycles: int, n: int) -> dict[str, Any]:
    figures = sequential(settings_for(work), cycles, work / f"stub-{n}.sqlite")
    return {"symbol_cycles_per_s": figures["symbol_cycles_per_s"], "cycles": cycles}


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: r["symbol_cycles_per_s"])
    return {**ordered[len(ordered) // 2], "runs": [r["symbol_cycles_per_s"] for r in runs]}


def measure(days: int, repeat: int, work: Path) -> dict[str, Any]:
    folder = work / "data"
    shutil.rmtree(folder, ignore_errors=True)
    last = last_day(days)
    write_data(folder, SYMBOLS, FIRST, last)
    cycles = count_cycles(nyse(), FIRST, last)
    tests, stubs = [], []
    for n in range(max(1, repeat)):
        order = ("backtest", "stub") if n % 2 == 0 else ("stub", "backtest")
        for which in order:
            if which == "backtest":
                tests.append(one_backtest(work, folder, last, n))
            else:
                stubs.append(one_stub(work, min(cycles, 390), n))
    bt, stub = median_of(tests), median_of(stubs)
    year_s = YEAR_CYCLES * bt["total_s"] / bt["cycles"]
    year_cpu_s = YEAR_CYCLES * bt["cpu_s"] / bt["cycles"]
    return {
        "measured": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "symbols": list(SYMBOLS),
        "days": days,
        "backtest": bt,
        "stub_sequential": stub,
        "backtest_vs_stub": round(bt["symbol_cycles_per_s"] / stub["symbol_cycles_per_s"], 2),
        "year_3_symbols_min": round(year_s / 60, 1),  # at this run's wall time
        "year_3_symbols_cpu_min": round(year_cpu_s / 60, 1),  # at its CPU time (idle machine)
        "year_extrapolated": days < 252,
    }


def _commit() -> str | None:
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return found.stdout.strip() or None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=5, help="sessions of bars (default 5)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument("--work", default="var/bench-backtest", help="its files' folder")
    parser.add_argument("--out", default="var/bench-backtest.json", help="the figures' file")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the kill switch's lines are the strategy's, not ours
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    figures = measure(args.days, args.repeat, work)
    text = json.dumps(figures, indent=2)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
